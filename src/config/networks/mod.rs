//! Networks and tokens as configuration: [`NetworkConfig`] (`[networks.<name>]` as written,
//! with `[networks.<name>.tokens.<symbol>]`), resolved over the built-in presets
//! (`domain::network::presets`) into the registry ([`Networks`]: what merchants may select and
//! how it is shown) and the validated [`ChainSettings`] of every watched network.
//!
//! A preset name (`tron`, `arbitrum`, …) needs only `rpc_urls`; any other name is a network
//! of its own and needs `kind` (and `chain_id` for EVM) and its tokens. Errors name the key
//! (`networks.base.tokens.usdc.contract`) and say how to fix it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    Config, ConfigError, Secret,
    values::{list_from_seq_or_string, redact_rpc_urls},
};
use crate::domain::network::{
    self, Network, NetworkInfo, NetworkKind, Networks, Token, TokenInfo, presets,
};

/// One chain watcher (`[networks.<name>]`). Every field is optional for a preset network:
/// unset ones take its mainnet defaults, see [`Config::chains`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// `false` stops watching the network without removing its settings.
    pub enabled: bool,
    /// Scanner family: `evm`, `tron` or `solana`. Required for a name no preset has; a
    /// preset's kind cannot change.
    pub kind: Option<String>,
    /// JSON-RPC (EVM, Solana) or FullNode HTTP API (TRON) base URLs, tried in order with
    /// failover. A list, or one string of comma-separated URLs. Printed by `config check` with
    /// the path redacted (providers put API keys there).
    #[serde(
        deserialize_with = "list_from_seq_or_string",
        serialize_with = "redact_rpc_urls"
    )]
    pub rpc_urls: Vec<String>,
    /// EVM chain id every RPC URL must report (checked per URL). Required for an EVM network
    /// no preset has.
    pub chain_id: Option<u64>,
    /// Label on the checkout page, the admin panel and Telegram (default: the preset's, or
    /// the name).
    pub display_name: Option<String>,
    /// Explorer link of a transaction, `{}` = the hash (e.g. `https://arbiscan.io/tx/{}`).
    pub explorer_tx_url: Option<String>,
    /// Legacy: the USDT contract (same as `tokens.usdt.contract`).
    pub usdt_contract: Option<String>,
    /// Legacy: the USDT decimals (same as `tokens.usdt.decimals`).
    pub decimals: Option<u32>,
    /// The tokens paid on this network, by symbol (`[networks.base.tokens.usdc]`): they
    /// override or extend the preset's.
    pub tokens: BTreeMap<String, TokenConfig>,
    /// Blocks below the head before a transfer counts (TRON: below the solidified head).
    pub confirmations: Option<u64>,
    /// TRON only: sent as the `TRON-PRO-API-KEY` header (TronGrid).
    pub api_key: Option<Secret>,
    /// Pause between scan rounds once caught up.
    pub poll_interval_ms: Option<u64>,
    /// Largest block range per request (EVM `eth_getLogs`) or per round (TRON); shrinks on
    /// provider errors and grows back.
    pub max_block_range: Option<u64>,
    /// First block to scan when the network has no cursor yet; default: a few blocks below the
    /// confirmed head at first start.
    pub start_block: Option<u64>,
    /// Seconds the scanning lease lasts without renewal (one instance scans a network); the
    /// holder renews it every quarter of this, a standby takes over this long after the
    /// holder died. Default 5 (a standby takeover then keeps payment → callback under 10 s).
    pub lease_ttl_secs: Option<u64>,
    /// Seconds one RPC request may take.
    pub request_timeout_secs: Option<u64>,
    /// Show a transfer seen above the confirmed head as "confirming" (check-status 5) until it
    /// is credited; costs one extra read per round (EVM: one `eth_getLogs` over the
    /// unconfirmed blocks; TRON: each new unsolidified block once). Never credits anything.
    pub show_confirming: bool,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            kind: None,
            rpc_urls: Vec::new(),
            chain_id: None,
            display_name: None,
            explorer_tx_url: None,
            usdt_contract: None,
            decimals: None,
            tokens: BTreeMap::new(),
            confirmations: None,
            api_key: None,
            poll_interval_ms: None,
            max_block_range: None,
            start_block: None,
            lease_ttl_secs: None,
            request_timeout_secs: None,
            show_confirming: true,
        }
    }
}

/// One token of a network (`[networks.<name>.tokens.<symbol>]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// `false` drops a preset's token from this network.
    pub enabled: bool,
    /// Token contract (EVM `0x…`, TRON base58 `T…`, Solana mint).
    pub contract: Option<String>,
    /// The chain's own coin (TRX, ETH, BNB, …): paid by plain value transfers, no contract.
    /// A network has at most one; a preset's native coin is offered only when configured.
    /// Solana's SOL is refused (not built).
    pub native: bool,
    /// Checked against the contract's `decimals()` at start-up. A native coin's default comes
    /// from the preset (TRX 6, ETH/BNB/POL/AVAX 18).
    pub decimals: Option<u32>,
    /// Decimal places of this token's payable amounts (default: the preset native coin's, e.g.
    /// TRX 2, ETH 6, BNB 5; the global `amount_precision` for contract tokens).
    pub amount_precision: Option<u32>,
    /// Step between candidate amounts of one slot (default: one unit at `amount_precision`
    /// for a native coin; the global `amount_step` for contract tokens).
    pub amount_step: Option<rust_decimal::Decimal>,
    /// Native coins: USDT per 1 coin, used when no admin has set a price
    /// (`epusdt rate price <COIN> <USDT>`). Never defaulted: without either, orders in this
    /// coin fail with 10006.
    pub usdt_price: Option<rust_decimal::Decimal>,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            contract: None,
            native: false,
            decimals: None,
            amount_precision: None,
            amount_step: None,
            usdt_price: None,
        }
    }
}

/// The effective settings of one watched network: [`NetworkConfig`] over its preset, every
/// value validated and normalised (contracts in the wallets' form).
#[derive(Debug, Clone)]
pub struct ChainSettings {
    pub network: Network,
    pub kind: NetworkKind,
    pub rpc_urls: Vec<url::Url>,
    pub chain_id: Option<u64>,
    /// Every token watched on this network (at least one).
    pub tokens: Vec<TokenInfo>,
    pub confirmations: u64,
    pub api_key: Option<Secret>,
    pub poll_interval: std::time::Duration,
    pub max_block_range: u64,
    pub start_block: Option<u64>,
    pub lease_ttl: std::time::Duration,
    pub request_timeout: std::time::Duration,
    /// See [`NetworkConfig::show_confirming`].
    pub show_confirming: bool,
}

impl ChainSettings {
    /// The config key of a token's `field` (`contract`, `decimals`), as errors name it: the
    /// legacy `networks.<name>.decimals` / `usdt_contract` for USDT, else
    /// `networks.<name>.tokens.<symbol>.<field>`.
    pub fn token_key(&self, token: Token, field: &str) -> String {
        let net = self.network;
        match (token == Token::USDT, field) {
            (true, "contract") => format!("networks.{net}.usdt_contract"),
            (true, f) => format!("networks.{net}.{f}"),
            (false, f) => format!("networks.{net}.tokens.{}.{f}", token.lower()),
        }
    }

    /// The token whose contract is `contract` (normalised form).
    pub fn token_by_contract(&self, contract: &str) -> Option<&TokenInfo> {
        self.tokens.iter().find(|t| t.contract == contract)
    }
}

/// Default `max_block_range` of an EVM network with a native coin (each block is read in full).
pub const NATIVE_EVM_RANGE: u64 = 100;

/// Defaults of a network no preset has: (confirmations, poll ms, block range).
fn kind_defaults(kind: NetworkKind) -> (u64, u64, u64) {
    match kind {
        NetworkKind::Evm => (12, 3_000, 1_000),
        NetworkKind::Tron => (0, 3_000, 20),
        NetworkKind::Solana => (0, 2_000, 100),
    }
}

/// The configuration's networks, resolved once per `Config` (cleared by `clone`, so a
/// modified copy resolves again). Not a config key; public only so `Config { .. }` literals
/// can use `..Default::default()`.
#[derive(Default)]
pub struct Resolved(std::sync::OnceLock<std::sync::Arc<Networks>>);

impl Clone for Resolved {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("..")
    }
}

impl Config {
    /// The networks to watch: enabled entries of `networks` that have `rpc_urls`, over their
    /// presets. Errors name the key (`networks.ethereum.rpc_urls`) and say how to fix it.
    pub fn chains(&self) -> Result<Vec<ChainSettings>, ConfigError> {
        Ok(self.resolve()?.1)
    }

    /// The registry of this configuration: every preset plus every `[networks.<name>]`,
    /// watched or not. A configuration that does not resolve (refused at load) gives the
    /// presets. Resolved once per value: change `networks` before the first call (a clone
    /// resolves again).
    pub fn registry(&self) -> &Networks {
        self.resolved.0.get_or_init(|| {
            std::sync::Arc::new(
                self.resolve()
                    .map(|r| r.0)
                    .unwrap_or_else(|_| Networks::presets()),
            )
        })
    }

    /// [`Config::registry`] without its cache (for validation before the value is final).
    pub(super) fn resolve_registry(&self) -> Networks {
        self.resolve()
            .map(|r| r.0)
            .unwrap_or_else(|_| Networks::presets())
    }

    fn resolve(&self) -> Result<(Networks, Vec<ChainSettings>), ConfigError> {
        let mut list: Vec<NetworkInfo> = presets::PRESETS
            .iter()
            .map(NetworkInfo::from_preset)
            .collect();
        let known = Networks::new(list.clone());
        let mut out = Vec::new();
        for (name, nc) in &self.networks {
            let bad = |field: &str, message: String| {
                let key = if field.is_empty() {
                    format!("networks.{name}")
                } else {
                    format!("networks.{name}.{field}")
                };
                Err(ConfigError::InvalidKey { key, message })
            };
            let preset = presets::preset(name);
            if preset.is_none() {
                if let Some(n) = known.network(name) {
                    return bad(
                        "",
                        format!("use the canonical network name `{n}` as the section name"),
                    );
                }
                if let Err(e) = network::valid_name(name) {
                    return bad("", e);
                }
            }
            let network = Network::named(name);
            let kind = match (nc.kind.as_deref(), preset) {
                (Some(k), p) => {
                    let Some(kind) = NetworkKind::parse(k) else {
                        return bad(
                            "kind",
                            format!("`{k}` is not a network kind; use evm, tron or solana"),
                        );
                    };
                    if let Some(p) = p
                        && p.kind != kind
                    {
                        return bad(
                            "kind",
                            format!(
                                "`{name}` is a {} network; remove `kind` or use another section name for a network of your own",
                                p.kind
                            ),
                        );
                    }
                    kind
                }
                (None, Some(p)) => p.kind,
                (None, None) => {
                    return bad(
                        "kind",
                        format!(
                            "is required: `{name}` is not a built-in network ({}); set kind = \"evm\" (with chain_id and tokens), \"tron\" or \"solana\"",
                            presets::PRESETS
                                .iter()
                                .map(|p| p.name)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                }
            };
            let (def_conf, def_poll, def_range) = match preset {
                Some(p) => (p.confirmations, p.poll_interval_ms, p.max_block_range),
                None => kind_defaults(kind),
            };
            let mut urls = Vec::new();
            for raw in &nc.rpc_urls {
                match url::Url::parse(raw.trim()) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                        urls.push(u)
                    }
                    _ => {
                        return bad(
                            "rpc_urls",
                            format!(
                                "`{}` is not an http(s) URL; use e.g. https://rpc.example.com/KEY",
                                crate::redact::rpc_url(raw)
                            ),
                        );
                    }
                }
            }
            let chain_id = nc.chain_id.or(preset.and_then(|p| p.chain_id));
            match kind {
                NetworkKind::Evm if chain_id.is_none() => {
                    return bad(
                        "chain_id",
                        format!(
                            "is required for the EVM network `{name}` (every RPC URL is checked against it); e.g. chain_id = 42161"
                        ),
                    );
                }
                NetworkKind::Tron | NetworkKind::Solana if nc.chain_id.is_some() => {
                    return bad(
                        "chain_id",
                        format!("is for EVM networks only; remove it from networks.{name}"),
                    );
                }
                _ => {}
            }
            if kind != NetworkKind::Tron && nc.api_key.is_some() {
                return bad(
                    "api_key",
                    "is sent as TRON-PRO-API-KEY and only used for tron; EVM providers take their key in the rpc URL".into(),
                );
            }
            let tokens = match resolve_tokens(name, kind, preset, nc) {
                Ok(t) => t,
                Err((field, message)) => return bad(&field, message),
            };
            if let Some(u) = &nc.explorer_tx_url {
                let ok = u.contains("{}")
                    && url::Url::parse(&u.replace("{}", "x"))
                        .is_ok_and(|p| matches!(p.scheme(), "http" | "https"));
                if !ok {
                    return bad(
                        "explorer_tx_url",
                        format!(
                            "`{u}` must be an http(s) URL with {{}} where the transaction hash goes, e.g. https://arbiscan.io/tx/{{}}"
                        ),
                    );
                }
            }
            if let Some(d) = &nc.display_name
                && (d.trim().is_empty() || d.chars().count() > 64)
            {
                return bad("display_name", "use 1..=64 characters".into());
            }
            let confirmations = nc.confirmations.unwrap_or(def_conf);
            if confirmations > 10_000 {
                return bad("confirmations", "use 0..=10000 blocks".into());
            }
            let poll_ms = nc.poll_interval_ms.unwrap_or(def_poll);
            if !(10..=600_000).contains(&poll_ms) {
                return bad("poll_interval_ms", "use 10..=600000 milliseconds".into());
            }
            // A native coin on an EVM chain reads every block in full: smaller default ranges.
            let def_range = if kind == NetworkKind::Evm && tokens.iter().any(|t| t.native) {
                def_range.min(NATIVE_EVM_RANGE)
            } else {
                def_range
            };
            let range = nc.max_block_range.unwrap_or(def_range);
            let max_range = if kind == NetworkKind::Tron {
                200
            } else {
                100_000
            };
            if !(1..=max_range).contains(&range) {
                return bad("max_block_range", format!("use 1..={max_range} blocks"));
            }
            let lease = nc.lease_ttl_secs.unwrap_or(5);
            if !(2..=3_600).contains(&lease) {
                return bad("lease_ttl_secs", "use 2..=3600 seconds".into());
            }
            let timeout = nc.request_timeout_secs.unwrap_or(15);
            if !(1..=300).contains(&timeout) {
                return bad("request_timeout_secs", "use 1..=300 seconds".into());
            }
            if let Some(start) = nc.start_block
                && i64::try_from(start).is_err()
            {
                return bad("start_block", "is too large".into());
            }
            let watched = nc.enabled && !urls.is_empty();
            let info = NetworkInfo {
                network,
                kind,
                chain_id,
                display_name: nc
                    .display_name
                    .as_deref()
                    .map(|d| d.trim().to_string())
                    .or_else(|| preset.map(|p| p.display_name.to_string()))
                    .unwrap_or_else(|| name.clone()),
                explorer_tx_url: nc
                    .explorer_tx_url
                    .clone()
                    .or_else(|| preset.map(|p| p.explorer_tx_url.to_string())),
                tokens: tokens.clone(),
                watched,
                selectable: true,
                trade_alias: preset.and_then(|p| p.trade_alias).map(str::to_string),
                aliases: preset
                    .map(|p| p.aliases.iter().map(|a| a.to_string()).collect())
                    .unwrap_or_default(),
            };
            match list.iter_mut().find(|i| i.network == network) {
                Some(slot) => *slot = info,
                None => list.push(info),
            }
            if !watched {
                continue;
            }
            out.push(ChainSettings {
                network,
                kind,
                rpc_urls: urls,
                chain_id,
                tokens,
                confirmations,
                api_key: nc.api_key.clone().filter(|k| !k.expose().trim().is_empty()),
                poll_interval: std::time::Duration::from_millis(poll_ms),
                max_block_range: range,
                start_block: nc.start_block,
                lease_ttl: std::time::Duration::from_secs(lease),
                request_timeout: std::time::Duration::from_secs(timeout),
                show_confirming: nc.show_confirming,
            });
        }
        Ok((Networks::new(list), out))
    }
}

mod tokens;
use tokens::resolve_tokens;

#[cfg(test)]
mod tests;
