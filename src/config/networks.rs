//! Chain watchers: [`NetworkConfig`] (`[networks.<name>]` as written), the mainnet defaults of
//! each network, and [`Config::chains`], which resolves them into validated [`ChainSettings`].

use serde::{Deserialize, Serialize};

use super::{
    Config, ConfigError, Secret,
    values::{list_from_seq_or_string, redact_rpc_urls},
};

/// One chain watcher (`[networks.<name>]`). Every field is optional: unset ones take the
/// network's mainnet defaults (DESIGN §6), see [`Config::chains`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// `false` stops watching the network without removing its settings.
    pub enabled: bool,
    /// JSON-RPC (EVM) or FullNode HTTP API (TRON) base URLs, tried in order with failover.
    /// A list, or one string of comma-separated URLs. Printed by `config check` with the path
    /// redacted (providers put API keys there).
    #[serde(
        deserialize_with = "list_from_seq_or_string",
        serialize_with = "redact_rpc_urls"
    )]
    pub rpc_urls: Vec<String>,
    /// EVM chain id the RPC must report (checked at start-up). Default 1 / 56 / 137.
    pub chain_id: Option<u64>,
    /// Token contract (EVM `0x…`, TRON base58 `T…`). Default: the network's USDT.
    pub usdt_contract: Option<String>,
    /// Token decimals; checked against the contract's `decimals()` at start-up and before the first scan (EVM and TRON).
    pub decimals: Option<u32>,
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
            rpc_urls: Vec::new(),
            chain_id: None,
            usdt_contract: None,
            decimals: None,
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

/// The effective settings of one watched network: [`NetworkConfig`] with defaults applied and
/// every value validated and normalised (contract address in the wallets' form).
#[derive(Debug, Clone)]
pub struct ChainSettings {
    pub network: crate::domain::network::Network,
    pub rpc_urls: Vec<url::Url>,
    pub chain_id: Option<u64>,
    /// Normalised: TRON base58 `T…`, EVM lower-case `0x…`.
    pub usdt_contract: String,
    pub decimals: u32,
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

/// Mainnet defaults per network: (contract, decimals, chain id, confirmations, poll ms, range).
fn network_defaults(
    n: crate::domain::network::Network,
) -> (&'static str, u32, Option<u64>, u64, u64, u64) {
    use crate::domain::network::Network;
    match n {
        // Solidified blocks are final; no extra confirmations needed.
        Network::Tron => ("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", 6, None, 0, 3_000, 20),
        Network::Ethereum => (
            "0xdAC17F958D2ee523a2206206994597C13D831ec7",
            6,
            Some(1),
            12,
            4_000,
            1_000,
        ),
        Network::Bsc => (
            "0x55d398326f99059fF775485246999027B3197955",
            18,
            Some(56),
            15,
            3_000,
            1_000,
        ),
        Network::Polygon => (
            "0xc2132D05D31c914a87C6611C10748AEb04B58e8F",
            6,
            Some(137),
            64,
            2_000,
            1_000,
        ),
    }
}

impl Config {
    /// The networks to watch: enabled entries of `networks` that have `rpc_urls`, with defaults
    /// applied. Errors name the key (`networks.ethereum.rpc_urls`) and say how to fix it.
    pub fn chains(&self) -> Result<Vec<ChainSettings>, ConfigError> {
        use crate::domain::network::Network;
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
            let network = match Network::parse(name) {
                Some(n) if n.as_str() == name => n,
                Some(n) => {
                    return bad(
                        "",
                        format!("use the canonical network name `{n}` as the section name"),
                    );
                }
                None => {
                    return bad(
                        "",
                        format!(
                            "`{name}` is not a supported network; use tron, ethereum, bsc or polygon (further EVM chains are not supported yet)"
                        ),
                    );
                }
            };
            let (contract, decimals, chain_id, confirmations, poll_ms, range) =
                network_defaults(network);
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
            let usdt_contract = nc.usdt_contract.as_deref().unwrap_or(contract);
            let usdt_contract = match network.parse_address(usdt_contract) {
                Ok(a) => a,
                Err(e) => return bad("usdt_contract", e.to_string()),
            };
            let decimals = nc.decimals.unwrap_or(decimals);
            if decimals > 24 {
                return bad(
                    "decimals",
                    format!("{decimals} is out of range; USDT uses 6 (18 on BSC); use 0..=24"),
                );
            }
            if network == Network::Tron {
                if nc.chain_id.is_some() {
                    return bad(
                        "chain_id",
                        "is for EVM networks only; remove it from networks.tron".into(),
                    );
                }
            } else if nc.api_key.is_some() {
                return bad(
                    "api_key",
                    "is sent as TRON-PRO-API-KEY and only used for tron; EVM providers take their key in the rpc URL".into(),
                );
            }
            let confirmations = nc.confirmations.unwrap_or(confirmations);
            if confirmations > 10_000 {
                return bad("confirmations", "use 0..=10000 blocks".into());
            }
            let poll_ms = nc.poll_interval_ms.unwrap_or(poll_ms);
            if !(10..=600_000).contains(&poll_ms) {
                return bad("poll_interval_ms", "use 10..=600000 milliseconds".into());
            }
            let range = nc.max_block_range.unwrap_or(range);
            let max_range = if network == Network::Tron {
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
            if !nc.enabled || urls.is_empty() {
                continue;
            }
            out.push(ChainSettings {
                network,
                rpc_urls: urls,
                chain_id: nc.chain_id.or(chain_id),
                usdt_contract,
                decimals,
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
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature, not ours
mod tests {
    use crate::config::{Config, Secret, Sources};
    use figment::Jail;

    #[test]
    fn networks_from_toml_env_and_dotenv_with_defaults() {
        Jail::expect_with(|jail| {
            // No networks at all: nothing watched.
            let c = Config::load(&Sources::default()).expect("valid");
            assert!(c.chains().expect("ok").is_empty());
            jail.create_file(
                "epusdt.toml",
                "[networks.ethereum]\nrpc_urls = [\"https://eth.example.com/v3/KEY1\", \"http://127.0.0.1:8545\"]\nconfirmations = 3\n[networks.polygon]\nenabled = false\nrpc_urls = \"https://p.example.com\"\n[networks.bsc]\n",
            )?;
            jail.create_file(
                ".env",
                "networks__tron__rpc_urls=https://api.trongrid.io\nnetworks__tron__api_key=12345\n",
            )?;
            jail.set_env("EPUSDT_NETWORKS__ETHEREUM__POLL_INTERVAL_MS", "250");
            let src = Sources {
                process_env: true,
                ..Default::default()
            };
            let c = Config::load(&src).expect("valid");
            let chains = c.chains().expect("ok");
            // polygon is disabled and bsc has no rpc_urls: neither is watched.
            let names: Vec<_> = chains.iter().map(|c| c.network.as_str()).collect();
            assert_eq!(names, ["ethereum", "tron"]);
            let eth = &chains[0];
            assert_eq!(eth.rpc_urls.len(), 2);
            assert_eq!(eth.confirmations, 3);
            assert_eq!(eth.decimals, 6);
            assert_eq!(eth.chain_id, Some(1));
            assert_eq!(eth.poll_interval, std::time::Duration::from_millis(250));
            assert_eq!(
                eth.usdt_contract,
                "0xdac17f958d2ee523a2206206994597c13d831ec7"
            );
            let tron = &chains[1];
            assert_eq!(tron.usdt_contract, "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t");
            assert_eq!(tron.api_key.as_ref().map(Secret::expose), Some("12345"));
            // `config check` output hides URL paths (API keys) and the TRON key.
            let shown = serde_json::to_string(&c).expect("json");
            assert!(
                !shown.contains("KEY1") && !shown.contains("12345"),
                "{shown}"
            );
            // Errors name the key.
            jail.set_env("EPUSDT_NETWORKS__ETHEREUM__RPC_URLS", "ftp://x");
            let e = Config::load(&src).expect_err("invalid").to_string();
            assert!(e.contains("networks.ethereum.rpc_urls"), "{e}");
            jail.set_env("EPUSDT_NETWORKS__ETHEREUM__RPC_URLS", "http://127.0.0.1:1");
            jail.set_env("EPUSDT_NETWORKS__ETHEREUM__USDT_CONTRACT", "0x12");
            let e = Config::load(&src).expect_err("invalid").to_string();
            assert!(e.contains("networks.ethereum.usdt_contract"), "{e}");
            jail.set_env(
                "EPUSDT_NETWORKS__ETHEREUM__USDT_CONTRACT",
                "0x00000000000000000000000000000000000000aa",
            );
            jail.set_env("EPUSDT_NETWORKS__ARBITRUM__RPC_URLS", "http://127.0.0.1:1");
            let e = Config::load(&src).expect_err("invalid").to_string();
            assert!(e.contains("networks.arbitrum"), "{e}");
            Ok(())
        });
    }
}
