#![allow(clippy::result_large_err)] // figment::Jail's closure signature, not ours
use super::NATIVE_EVM_RANGE;
use crate::config::{Config, NetworkConfig, Secret, Sources, TokenConfig};
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
        assert_eq!(eth.tokens[0].decimals, 6);
        assert_eq!(eth.tokens[1].token.as_str(), "USDC");
        assert_eq!(eth.chain_id, Some(1));
        assert_eq!(eth.poll_interval, std::time::Duration::from_millis(250));
        assert_eq!(
            eth.tokens[0].contract,
            "0xdac17f958d2ee523a2206206994597c13d831ec7"
        );
        let tron = &chains[1];
        assert_eq!(
            tron.tokens[0].contract,
            "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
        );
        assert_eq!(
            tron.tokens[1].contract,
            "TEkxiTehnzSmSe2XqrBj4w32RUN966rdz8"
        );
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
        // The legacy single-token form keeps its meaning: that contract is the only token.
        let c = Config::load(&src).expect("valid");
        let eth = c.chains().expect("ok").remove(0);
        assert_eq!(eth.tokens.len(), 1);
        assert_eq!(
            eth.tokens[0].contract,
            "0x00000000000000000000000000000000000000aa"
        );
        jail.set_env("EPUSDT_NETWORKS__NOWHERE__RPC_URLS", "http://127.0.0.1:1");
        let e = Config::load(&src).expect_err("invalid").to_string();
        assert!(e.contains("networks.nowhere.kind"), "{e}");
        Ok(())
    });
}

#[test]
fn preset_networks_carry_usdt_and_usdc_and_custom_networks_need_their_kind() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "epusdt.toml",
            r#"
[networks.arbitrum]
rpc_urls = ["http://127.0.0.1:8545"]
[networks.base]
rpc_urls = "http://127.0.0.1:8546"
display_name = "Base mainnet"
[networks.base.tokens.usdc]
decimals = 6
[networks.mychain]
kind = "evm"
chain_id = 31337
rpc_urls = ["http://127.0.0.1:8547"]
explorer_tx_url = "https://scan.example.com/tx/{}"
[networks.mychain.tokens.usdt]
contract = "0x00000000000000000000000000000000000000aa"
decimals = 6
"#,
        )?;
        jail.create_file(
            ".env",
            "networks__mychain__tokens__usdc__contract=0x00000000000000000000000000000000000000BB\nnetworks__mychain__tokens__usdc__decimals=18\n",
        )?;
        let src = Sources {
            process_env: true,
            ..Default::default()
        };
        let c = Config::load(&src).expect("valid");
        let chains = c.chains().expect("ok");
        let names: Vec<_> = chains.iter().map(|c| c.network.as_str()).collect();
        assert_eq!(names, ["arbitrum", "base", "mychain"]);
        let arb = &chains[0];
        assert_eq!(arb.chain_id, Some(42161));
        let syms: Vec<_> = arb.tokens.iter().map(|t| t.token.as_str()).collect();
        assert_eq!(syms, ["USDT", "USDC"]);
        assert_eq!(
            arb.tokens[1].contract,
            "0xaf88d065e77c8cc2239327c5edb3a432268e5831"
        );
        assert_eq!(chains[1].tokens.len(), 1, "base has USDC only");
        let my = &chains[2];
        assert_eq!(my.chain_id, Some(31337));
        assert_eq!(
            my.tokens
                .iter()
                .map(|t| (t.token.as_str(), t.contract.as_str(), t.decimals))
                .collect::<Vec<_>>(),
            [
                ("USDC", "0x00000000000000000000000000000000000000bb", 18),
                ("USDT", "0x00000000000000000000000000000000000000aa", 6)
            ]
        );
        let r = c.registry();
        assert_eq!(
            r.label(crate::domain::network::Network::BASE),
            "Base mainnet"
        );
        let a = r.asset("usdc.mychain").expect("configured");
        assert_eq!(a.network.as_str(), "mychain");
        assert_eq!(
            r.explorer_tx_url(a.network, "0x1").as_deref(),
            Some("https://scan.example.com/tx/0x1")
        );
        // Only watched networks are offered in errors.
        let e = r.asset("usdt.nowhere").expect_err("unknown").to_string();
        assert!(
            e.ends_with("usdt.arbitrum, usdc.arbitrum, usdc.base, usdc.mychain, usdt.mychain"),
            "{e}"
        );

        // Clear errors, each naming its key.
        for (var, value, key, says) in [
            (
                "EPUSDT_NETWORKS__OTHER__RPC_URLS",
                "http://127.0.0.1:1",
                "networks.other.kind",
                "is required",
            ),
            (
                "EPUSDT_NETWORKS__OTHER__KIND",
                "cosmos",
                "networks.other.kind",
                "not a network kind; use evm, tron or solana",
            ),
            (
                "EPUSDT_NETWORKS__BASE__KIND",
                "tron",
                "networks.base.kind",
                "is a evm network",
            ),
            (
                "EPUSDT_NETWORKS__BASE__TOKENS__DAI__DECIMALS",
                "18",
                "networks.base.tokens.dai.contract",
                "is required",
            ),
            (
                "EPUSDT_NETWORKS__SOLANA__TOKENS__SOL__NATIVE",
                "true",
                "networks.solana.tokens.sol.native",
                "native SOL is not supported in this build",
            ),
            (
                "EPUSDT_NETWORKS__BSC__TOKENS__ETH__NATIVE",
                "true",
                "networks.bsc.tokens.eth.native",
                "the native coin of `bsc` is BNB; name the section [networks.bsc.tokens.bnb]",
            ),
            (
                "EPUSDT_NETWORKS__BINANCE__RPC_URLS",
                "http://127.0.0.1:1",
                "networks.binance",
                "canonical network name `bsc`",
            ),
            (
                "EPUSDT_NETWORKS__BASE__EXPLORER_TX_URL",
                "https://basescan.org/tx/",
                "networks.base.explorer_tx_url",
                "{}",
            ),
        ] {
            jail.clear_env();
            jail.set_env(var, value);
            if var.contains("OTHER__KIND") {
                jail.set_env("EPUSDT_NETWORKS__OTHER__RPC_URLS", "http://127.0.0.1:1");
            }
            let e = Config::load(&src).expect_err(var).to_string();
            assert!(e.contains(key) && e.contains(says), "{var}: {e}");
        }
        jail.clear_env();
        jail.set_env("EPUSDT_NETWORKS__OTHER__KIND", "evm");
        let e = Config::load(&src).expect_err("no chain id").to_string();
        assert!(
            e.contains("networks.other.chain_id") && e.contains("is required"),
            "{e}"
        );
        jail.set_env("EPUSDT_NETWORKS__OTHER__CHAIN_ID", "5");
        let e = Config::load(&src).expect_err("no token").to_string();
        assert!(
            e.contains("networks.other.tokens") && e.contains("has no token"),
            "{e}"
        );
        // An unknown field is refused by name.
        jail.clear_env();
        jail.set_env("EPUSDT_NETWORKS__BASE__TOKENS__USDC__ADDRESS", "0x1");
        let e = Config::load(&src).expect_err("unknown field").to_string();
        assert!(e.contains("address"), "{e}");
        // A solana network is accepted by the configuration (its watcher is refused at start).
        jail.clear_env();
        jail.set_env("EPUSDT_NETWORKS__SOLANA__RPC_URLS", "http://127.0.0.1:1");
        let c = Config::load(&src).expect("solana configured");
        let sol = c
            .chains()
            .expect("ok")
            .into_iter()
            .find(|s| s.network.as_str() == "solana")
            .expect("watched");
        assert_eq!(sol.kind, crate::domain::network::NetworkKind::Solana);
        assert_eq!(sol.tokens.len(), 2);
        Ok(())
    });
}

fn with_tokens(network: &str, tokens: &[(&str, TokenConfig)]) -> Config {
    Config {
        networks: [(
            network.to_string(),
            NetworkConfig {
                rpc_urls: vec!["http://127.0.0.1:9/".into()],
                tokens: tokens
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
                ..Default::default()
            },
        )]
        .into(),
        ..Default::default()
    }
}

fn native() -> TokenConfig {
    TokenConfig {
        native: true,
        ..Default::default()
    }
}

/// `native = true`: preset decimals and rounding, a smaller EVM range, clear refusals.
#[test]
fn native_coins_resolve_over_presets_and_refuse_what_cannot_work() {
    use rust_decimal::Decimal;
    let c = with_tokens("tron", &[("trx", native())]);
    let tron = c.chains().expect("valid").remove(0);
    let trx = tron.tokens.iter().find(|t| t.native).expect("trx");
    assert_eq!(
        (
            trx.token.as_str(),
            trx.decimals,
            trx.amount_precision,
            trx.amount_step
        ),
        ("TRX", 6, Some(2), Some(Decimal::new(1, 2)))
    );
    assert_eq!(tron.tokens.len(), 3, "USDT, USDC and TRX");
    assert_eq!(
        c.registry().trade_type(crate::domain::network::Asset {
            network: tron.network,
            token: trx.token
        }),
        "tron.trx"
    );
    let c = with_tokens(
        "ethereum",
        &[(
            "eth",
            TokenConfig {
                usdt_price: Some(Decimal::new(3500, 0)),
                ..native()
            },
        )],
    );
    let eth = c.chains().expect("valid").remove(0);
    let coin = eth.tokens.iter().find(|t| t.native).expect("eth");
    assert_eq!(
        (
            coin.decimals,
            coin.amount_precision,
            coin.amount_step,
            coin.usdt_price
        ),
        (
            18,
            Some(6),
            Some(Decimal::new(1, 6)),
            Some(Decimal::new(3500, 0))
        )
    );
    assert_eq!(
        eth.max_block_range, NATIVE_EVM_RANGE,
        "full blocks: smaller default range"
    );
    let bnb = with_tokens("bsc", &[("bnb", native())])
        .chains()
        .expect("valid")
        .remove(0);
    assert_eq!(
        bnb.tokens
            .iter()
            .find(|t| t.native)
            .map(|t| (t.amount_precision, t.amount_step)),
        Some((Some(5), Some(Decimal::new(1, 5))))
    );
    // Without `native = true` the coin is not offered.
    let plain = Config::default();
    assert!(
        plain
            .registry()
            .get(crate::domain::network::Network::TRON)
            .expect("tron")
            .native()
            .is_none()
    );

    for (net, tokens, key, says) in [
        (
            "solana",
            vec![("sol", native())],
            "networks.solana.tokens.sol.native",
            "native SOL is not supported in this build",
        ),
        (
            "tron",
            vec![(
                "trx",
                TokenConfig {
                    contract: Some("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t".into()),
                    ..native()
                },
            )],
            "networks.tron.tokens.trx.contract",
            "a native coin has no contract",
        ),
        (
            "bsc",
            vec![("eth", native())],
            "networks.bsc.tokens.eth.native",
            "the native coin of `bsc` is BNB",
        ),
        (
            "tron",
            vec![(
                "trx",
                TokenConfig {
                    decimals: Some(18),
                    ..native()
                },
            )],
            "networks.tron.tokens.trx.decimals",
            "TRX has 6 decimals",
        ),
        (
            "tron",
            vec![(
                "trx",
                TokenConfig {
                    amount_precision: Some(7),
                    ..native()
                },
            )],
            "networks.tron.tokens.trx.amount_precision",
            "finer than the token's 6 decimals",
        ),
        (
            "tron",
            vec![(
                "trx",
                TokenConfig {
                    amount_step: Some(Decimal::new(1, 3)),
                    ..native()
                },
            )],
            "networks.tron.tokens.trx.amount_step",
            "more places than amount_precision (2)",
        ),
        (
            "tron",
            vec![(
                "trx",
                TokenConfig {
                    amount_step: Some(Decimal::ZERO),
                    ..native()
                },
            )],
            "networks.tron.tokens.trx.amount_step",
            "must be greater than 0",
        ),
        (
            "tron",
            vec![(
                "trx",
                TokenConfig {
                    usdt_price: Some(Decimal::ZERO),
                    ..native()
                },
            )],
            "networks.tron.tokens.trx.usdt_price",
            "is not a price",
        ),
        (
            "tron",
            vec![(
                "usdt",
                TokenConfig {
                    usdt_price: Some(Decimal::ONE),
                    ..Default::default()
                },
            )],
            "networks.tron.tokens.usdt.usdt_price",
            "is for native coins only",
        ),
        (
            "mychain",
            vec![("coin", native())],
            "networks.mychain",
            "kind",
        ),
    ] {
        let e = with_tokens(net, &tokens)
            .chains()
            .expect_err(key)
            .to_string();
        assert!(e.contains(key) && e.contains(says), "{key}: {e}");
    }
    // A network of one's own: decimals are required for its coin.
    let mut c = with_tokens(
        "mychain",
        &[
            ("coin", native()),
            (
                "usdt",
                TokenConfig {
                    contract: Some("0x00000000000000000000000000000000000000aa".into()),
                    decimals: Some(6),
                    ..Default::default()
                },
            ),
        ],
    );
    if let Some(n) = c.networks.get_mut("mychain") {
        n.kind = Some("evm".into());
        n.chain_id = Some(5);
    }
    let e = c.chains().expect_err("decimals").to_string();
    assert!(
        e.contains("networks.mychain.tokens.coin.decimals") && e.contains("is required"),
        "{e}"
    );
}
