//! Networks and tokens: canonical names, the aliases merchants already send, and per-network
//! defaults (DESIGN §6). Pure data; never performs I/O.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A chain the gateway can watch. Canonical names are `tron`, `ethereum`, `bsc`, `polygon`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    Tron,
    Ethereum,
    Bsc,
    Polygon,
}

impl Network {
    pub const ALL: [Network; 4] = [
        Network::Tron,
        Network::Ethereum,
        Network::Bsc,
        Network::Polygon,
    ];

    /// Accepts canonical names and every alias merchants send: `trc20`, `erc20`, `bep20`,
    /// `binance`, `bnb`, `matic`, `usdt.trc20`, `usdt.polygon`, `USDT-TRC20`, … (case-insensitive).
    pub fn parse(s: &str) -> Option<Network> {
        let s = s.trim().to_ascii_lowercase();
        // Trade types: `usdt.trc20`, `usdt-trc20`, `usdt_trc20`, `trc20.usdt`.
        let s = s
            .strip_prefix("usdt.")
            .or_else(|| s.strip_prefix("usdt-"))
            .or_else(|| s.strip_prefix("usdt_"))
            .or_else(|| s.strip_suffix(".usdt"))
            .unwrap_or(&s);
        Some(match s {
            "tron" | "trc20" | "trx" => Network::Tron,
            "ethereum" | "eth" | "erc20" => Network::Ethereum,
            "bsc" | "binance" | "bep20" | "bnb" | "bnb smart chain" => Network::Bsc,
            "polygon" | "matic" | "pol" | "polygon-pos" => Network::Polygon,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Network::Tron => "tron",
            Network::Ethereum => "ethereum",
            Network::Bsc => "bsc",
            Network::Polygon => "polygon",
        }
    }

    /// Upstream `trade_type` for callbacks and responses (`usdt.trc20`, ...).
    pub fn trade_type(self) -> &'static str {
        match self {
            Network::Tron => "usdt.trc20",
            Network::Ethereum => "usdt.erc20",
            Network::Bsc => "usdt.bep20",
            Network::Polygon => "usdt.polygon",
        }
    }

    /// Human label for the checkout page.
    pub fn label(self) -> &'static str {
        match self {
            Network::Tron => "TRON (TRC20)",
            Network::Ethereum => "Ethereum (ERC20)",
            Network::Bsc => "BNB Smart Chain (BEP20)",
            Network::Polygon => "Polygon PoS",
        }
    }

    pub fn is_evm(self) -> bool {
        !matches!(self, Network::Tron)
    }

    /// Normalises and validates a receive address for this network.
    pub fn parse_address(self, s: &str) -> Result<String, super::address::AddressError> {
        match self {
            Network::Tron => super::address::parse_tron(s),
            _ => super::address::parse_evm(s),
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases() {
        for (s, n) in [
            ("tron", Network::Tron),
            ("USDT.TRC20", Network::Tron),
            ("trc20", Network::Tron),
            ("usdt.erc20", Network::Ethereum),
            ("binance", Network::Bsc),
            ("bep20", Network::Bsc),
            ("usdt.bep20", Network::Bsc),
            ("usdt.polygon", Network::Polygon),
            ("matic", Network::Polygon),
        ] {
            assert_eq!(Network::parse(s), Some(n), "{s}");
        }
        assert_eq!(Network::parse("solana"), None);
        assert_eq!(Network::parse(""), None);
        for n in Network::ALL {
            assert_eq!(Network::parse(n.as_str()), Some(n));
            assert_eq!(Network::parse(n.trade_type()), Some(n));
        }
    }
}
