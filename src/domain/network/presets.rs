//! The built-in networks: mainnet chain ids, token contracts and decimals, and the watcher
//! defaults (confirmations, poll interval, block range) of every network a `[networks.<name>]`
//! section may name without spelling them out. Pure data; wiki/CHAINS.md shows the same table.
//!
//! Sources: the issuers' contract lists (Tether, Circle), the chains' own documentation for
//! chain ids, and BEpusdt's `app/conf/const.go` (contracts and decimals cross-checked against
//! it). Every contract is also checked at start-up: its `decimals()` must answer with the
//! configured value on every RPC URL, so a wrong preset stops the watcher instead of crediting.

use super::NetworkKind;

/// One token of a preset: symbol, contract (EVM `0x…`, TRON base58, Solana mint), decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresetToken {
    pub symbol: &'static str,
    pub contract: &'static str,
    pub decimals: u32,
}

/// A preset's native coin: symbol, decimals, and the default payable precision (decimal
/// places; the slot step is one unit there). Offered only when configured
/// (`[networks.<name>.tokens.<symbol>] native = true`): it costs extra RPC reads and needs a price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresetNative {
    pub symbol: &'static str,
    pub decimals: u32,
    /// Payable amounts are rounded to this many places and stepped by one unit there: each
    /// preset's is worth about a cent or less.
    pub precision: u32,
}

const fn native(symbol: &'static str, decimals: u32, precision: u32) -> PresetNative {
    PresetNative {
        symbol,
        decimals,
        precision,
    }
}

/// A built-in network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    pub name: &'static str,
    pub kind: NetworkKind,
    pub chain_id: Option<u64>,
    pub display_name: &'static str,
    /// `{}` is replaced by the transaction hash.
    pub explorer_tx_url: &'static str,
    /// Blocks below the head before a transfer counts (TRON: below the solidified head).
    pub confirmations: u64,
    pub poll_interval_ms: u64,
    pub max_block_range: u64,
    /// Roughly how long `confirmations` take, for the docs and the admin view.
    pub finality: &'static str,
    /// The name BEpusdt's `trade_type` uses for this network when it is not the network's
    /// own (`usdt.trc20`, `usdt.erc20`, `usdt.bep20`).
    pub trade_alias: Option<&'static str>,
    /// Further names merchants send for the network (`binance`, `matic`, …).
    pub aliases: &'static [&'static str],
    pub tokens: &'static [PresetToken],
    /// The chain's own coin (TRX, ETH, BNB, …).
    pub native: PresetNative,
}

const fn t(symbol: &'static str, contract: &'static str, decimals: u32) -> PresetToken {
    PresetToken {
        symbol,
        contract,
        decimals,
    }
}

/// Every preset, in the order lists show them.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "tron",
        kind: NetworkKind::Tron,
        chain_id: None,
        display_name: "TRON (TRC20)",
        explorer_tx_url: "https://tronscan.org/#/transaction/{}",
        // Solidified blocks are final; no extra confirmations needed.
        confirmations: 0,
        poll_interval_ms: 3_000,
        max_block_range: 20,
        finality: "≈ 1 min (solidified, 19 of 27 SRs)",
        trade_alias: Some("trc20"),
        aliases: &["trc20", "trx"],
        tokens: &[
            t("USDT", "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", 6),
            t("USDC", "TEkxiTehnzSmSe2XqrBj4w32RUN966rdz8", 6),
        ],
        native: native("TRX", 6, 2),
    },
    Preset {
        name: "ethereum",
        kind: NetworkKind::Evm,
        chain_id: Some(1),
        display_name: "Ethereum (ERC20)",
        explorer_tx_url: "https://etherscan.io/tx/{}",
        confirmations: 12,
        poll_interval_ms: 4_000,
        max_block_range: 1_000,
        finality: "≈ 2.5 min (12 × 12 s)",
        trade_alias: Some("erc20"),
        aliases: &["erc20", "eth"],
        tokens: &[
            t("USDT", "0xdAC17F958D2ee523a2206206994597C13D831ec7", 6),
            t("USDC", "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", 6),
        ],
        native: native("ETH", 18, 6),
    },
    Preset {
        name: "bsc",
        kind: NetworkKind::Evm,
        chain_id: Some(56),
        display_name: "BNB Smart Chain (BEP20)",
        explorer_tx_url: "https://bscscan.com/tx/{}",
        confirmations: 15,
        poll_interval_ms: 3_000,
        max_block_range: 1_000,
        finality: "≈ 10 s (15 × 0.75 s)",
        trade_alias: Some("bep20"),
        aliases: &["bep20", "binance", "bnb", "bnb smart chain"],
        tokens: &[
            t("USDT", "0x55d398326f99059fF775485246999027B3197955", 18),
            t("USDC", "0x8AC76a51cc950d9822D68b83fE1Ad97B32Cd580d", 18),
        ],
        native: native("BNB", 18, 5),
    },
    Preset {
        name: "polygon",
        kind: NetworkKind::Evm,
        chain_id: Some(137),
        display_name: "Polygon PoS",
        explorer_tx_url: "https://polygonscan.com/tx/{}",
        confirmations: 64,
        poll_interval_ms: 2_000,
        max_block_range: 1_000,
        finality: "≈ 2 min (64 × 2 s)",
        trade_alias: None,
        aliases: &["matic", "pol", "polygon-pos"],
        tokens: &[
            t("USDT", "0xc2132D05D31c914a87C6611C10748AEb04B58e8F", 6),
            t("USDC", "0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359", 6),
        ],
        native: native("POL", 18, 2),
    },
    Preset {
        name: "arbitrum",
        kind: NetworkKind::Evm,
        chain_id: Some(42161),
        display_name: "Arbitrum One",
        explorer_tx_url: "https://arbiscan.io/tx/{}",
        confirmations: 40,
        poll_interval_ms: 1_000,
        max_block_range: 2_000,
        finality: "≈ 10 s (40 × 0.25 s, sequencer-ordered)",
        trade_alias: None,
        aliases: &["arb", "arbitrum one"],
        tokens: &[
            t("USDT", "0xFd086bC7CD5C481DCC9C85ebE478A1C0b69FCbb9", 6),
            t("USDC", "0xaf88d065e77c8cC2239327C5EDb3A432268e5831", 6),
        ],
        native: native("ETH", 18, 6),
    },
    Preset {
        name: "base",
        kind: NetworkKind::Evm,
        chain_id: Some(8453),
        display_name: "Base",
        explorer_tx_url: "https://basescan.org/tx/{}",
        confirmations: 10,
        poll_interval_ms: 2_000,
        max_block_range: 1_000,
        finality: "≈ 20 s (10 × 2 s, sequencer-ordered)",
        trade_alias: None,
        aliases: &[],
        tokens: &[t("USDC", "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", 6)],
        native: native("ETH", 18, 6),
    },
    Preset {
        name: "optimism",
        kind: NetworkKind::Evm,
        chain_id: Some(10),
        display_name: "OP Mainnet",
        explorer_tx_url: "https://optimistic.etherscan.io/tx/{}",
        confirmations: 10,
        poll_interval_ms: 2_000,
        max_block_range: 1_000,
        finality: "≈ 20 s (10 × 2 s, sequencer-ordered)",
        trade_alias: None,
        aliases: &["op", "op mainnet"],
        tokens: &[
            t("USDT", "0x94b008aA00579c1307B0EF2c499aD98a8ce58e58", 6),
            t("USDC", "0x0b2C639c533813f4Aa9D7837CAf62653d097Ff85", 6),
        ],
        native: native("ETH", 18, 6),
    },
    Preset {
        name: "xlayer",
        kind: NetworkKind::Evm,
        chain_id: Some(196),
        display_name: "X Layer",
        explorer_tx_url: "https://www.okx.com/web3/explorer/xlayer/tx/{}",
        confirmations: 10,
        poll_interval_ms: 2_000,
        max_block_range: 1_000,
        finality: "≈ 10 s (10 × 1 s, sequencer-ordered)",
        trade_alias: None,
        aliases: &["x layer", "x-layer"],
        tokens: &[
            t("USDT", "0x779Ded0c9e1022225f8E0630b35a9b54bE713736", 6),
            t("USDC", "0x74b7F16337b8972027F6196A17a631aC6dE26d22", 6),
        ],
        native: native("OKB", 18, 4),
    },
    Preset {
        name: "plasma",
        kind: NetworkKind::Evm,
        chain_id: Some(9745),
        display_name: "Plasma",
        explorer_tx_url: "https://plasmascan.to/tx/{}",
        confirmations: 5,
        poll_interval_ms: 1_000,
        max_block_range: 1_000,
        finality: "≈ 5 s (5 × 1 s; PlasmaBFT finality)",
        trade_alias: None,
        aliases: &[],
        tokens: &[t("USDT", "0xB8CE59FC3717ada4C02eaDF9682A9e934F625ebb", 6)],
        native: native("XPL", 18, 2),
    },
    Preset {
        name: "avalanche",
        kind: NetworkKind::Evm,
        chain_id: Some(43114),
        display_name: "Avalanche C-Chain",
        explorer_tx_url: "https://snowtrace.io/tx/{}",
        confirmations: 3,
        poll_interval_ms: 2_000,
        max_block_range: 1_000,
        finality: "≈ 6 s (3 × 2 s; Snowman finality ≈ 1 s)",
        trade_alias: None,
        aliases: &["avax", "avalanche-c"],
        tokens: &[
            t("USDT", "0x9702230A8Ea53601f5cD2dc00fDBc13d4dF4A8c7", 6),
            t("USDC", "0xB97EF9Ef8734C71904D8002F8b6Bc66Dd9c48a6E", 6),
        ],
        native: native("AVAX", 18, 4),
    },
    Preset {
        name: "solana",
        kind: NetworkKind::Solana,
        chain_id: None,
        display_name: "Solana",
        explorer_tx_url: "https://solscan.io/tx/{}",
        // Commitment `finalized` already (≈ 32 slots); no further confirmations.
        confirmations: 0,
        poll_interval_ms: 2_000,
        max_block_range: 100,
        finality: "≈ 13 s (commitment finalized)",
        trade_alias: None,
        aliases: &["sol", "spl"],
        tokens: &[
            t("USDT", "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB", 6),
            t("USDC", "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", 6),
        ],
        native: native("SOL", 9, 4),
    },
];

/// The preset named `name` (canonical name only).
pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_well_formed() {
        let mut names = std::collections::HashSet::new();
        for p in PRESETS {
            assert!(names.insert(p.name), "{} twice", p.name);
            assert!(p.name.len() <= super::super::MAX_NAME_LEN);
            assert_eq!(
                p.kind == NetworkKind::Evm,
                p.chain_id.is_some(),
                "{}",
                p.name
            );
            assert!(p.explorer_tx_url.contains("{}"), "{}", p.name);
            assert!(!p.tokens.is_empty(), "{}", p.name);
            for t in p.tokens {
                if p.kind == NetworkKind::Evm {
                    assert!(
                        crate::domain::address::parse_evm(t.contract).is_ok(),
                        "{} {}",
                        p.name,
                        t.symbol
                    );
                }
                if p.kind == NetworkKind::Tron {
                    assert!(crate::domain::address::parse_tron(t.contract).is_ok());
                }
            }
        }
        // BEpusdt's contracts (app/conf/const.go), lower-cased there.
        for (net, sym, contract) in [
            (
                "arbitrum",
                "USDT",
                "0xfd086bc7cd5c481dcc9c85ebe478a1c0b69fcbb9",
            ),
            (
                "arbitrum",
                "USDC",
                "0xaf88d065e77c8cc2239327c5edb3a432268e5831",
            ),
            ("base", "USDC", "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913"),
            (
                "xlayer",
                "USDT",
                "0x779ded0c9e1022225f8e0630b35a9b54be713736",
            ),
            (
                "xlayer",
                "USDC",
                "0x74b7f16337b8972027f6196a17a631ac6de26d22",
            ),
            (
                "plasma",
                "USDT",
                "0xb8ce59fc3717ada4c02eadf9682a9e934f625ebb",
            ),
            (
                "polygon",
                "USDC",
                "0x3c499c542cef5e3811e1192ce70d8cc03d5c3359",
            ),
            ("bsc", "USDC", "0x8ac76a51cc950d9822d68b83fe1ad97b32cd580d"),
            (
                "ethereum",
                "USDC",
                "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48",
            ),
        ] {
            let p = preset(net).expect(net);
            let tok = p.tokens.iter().find(|t| t.symbol == sym).expect(sym);
            assert_eq!(tok.contract.to_ascii_lowercase(), contract, "{net} {sym}");
        }
    }
}
