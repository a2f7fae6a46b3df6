use super::*;

/// Every preset, as if each had a `[networks.<name>]` section.
fn registry() -> Networks {
    let mut list: Vec<NetworkInfo> = Networks::presets().iter().cloned().collect();
    list.iter_mut().for_each(|i| i.selectable = true);
    Networks::new(list)
}

fn asset(s: &str) -> (String, String) {
    let a = registry().asset(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    (a.network.to_string(), a.token.to_string())
}

#[test]
fn trade_types_and_aliases_select_network_and_token() {
    for (s, net, tok) in [
        ("tron", "tron", "USDT"),
        ("USDT.TRC20", "tron", "USDT"),
        ("trc20", "tron", "USDT"),
        ("usdt.erc20", "ethereum", "USDT"),
        ("binance", "bsc", "USDT"),
        ("bep20", "bsc", "USDT"),
        ("usdt.bep20", "bsc", "USDT"),
        ("usdt.polygon", "polygon", "USDT"),
        ("matic", "polygon", "USDT"),
        ("usdt-trc20", "tron", "USDT"),
        ("usdt_trc20", "tron", "USDT"),
        ("trc20.usdt", "tron", "USDT"),
        // BEpusdt's trade types beyond the four.
        ("usdt.arbitrum", "arbitrum", "USDT"),
        ("usdt.xlayer", "xlayer", "USDT"),
        ("usdt.plasma", "plasma", "USDT"),
        ("usdc.erc20", "ethereum", "USDC"),
        ("usdc.trc20", "tron", "USDC"),
        ("usdc.polygon", "polygon", "USDC"),
        ("usdc.bep20", "bsc", "USDC"),
        ("usdc.arbitrum", "arbitrum", "USDC"),
        ("USDC.Base", "base", "USDC"),
        ("usdc.xlayer", "xlayer", "USDC"),
        ("usdt.solana", "solana", "USDT"),
        ("usdc.solana", "solana", "USDC"),
        ("usdt.optimism", "optimism", "USDT"),
        ("usdc.avalanche", "avalanche", "USDC"),
        // A bare network without USDT selects its only token.
        ("base", "base", "USDC"),
    ] {
        assert_eq!(asset(s), (net.to_string(), tok.to_string()), "{s}");
    }
    let r = registry();
    for i in r.iter() {
        for t in &i.tokens {
            let tt = i.trade_type(t.token);
            let a = r.asset(&tt).expect(&tt);
            assert_eq!((a.network, a.token), (i.network, t.token), "{tt}");
        }
    }
    assert_eq!(
        r.trade_type(Asset {
            network: Network::TRON,
            token: Token::USDC
        }),
        "usdc.trc20"
    );
    assert_eq!(
        r.trade_type(Asset {
            network: Network::BASE,
            token: Token::USDC
        }),
        "usdc.base"
    );
}

#[test]
fn refusals_name_what_is_offered() {
    let r = registry();
    let e = r
        .asset("usdt.base")
        .expect_err("no USDT on base")
        .to_string();
    assert!(
        e.starts_with(
            "USDT is not configured on base; use one of usdt.trc20, usdc.trc20, usdt.erc20"
        ),
        "{e}"
    );
    let e = r.asset("tron.trx").expect_err("native").to_string();
    assert!(
        e.starts_with("`tron.trx` is a native coin that is not configured here (it needs [networks.tron.tokens.trx] native = true and a price); use one of usdt.trc20"),
        "{e}"
    );
    let e = r.asset("bsc.bnb").expect_err("native").to_string();
    assert!(e.contains("[networks.bsc.tokens.bnb] native = true"), "{e}");
    let e = r.asset("usdt.nowhere").expect_err("unknown").to_string();
    assert!(
        e.starts_with("`usdt.nowhere` is not a network or trade type here"),
        "{e}"
    );
    assert!(r.asset("").is_err());
    assert!(r.asset("dai.erc20").is_err());
    // Only watched networks are offered once some are.
    let mut list: Vec<NetworkInfo> = r.iter().cloned().collect();
    list.iter_mut()
        .for_each(|i| i.selectable = i.network == Network::ARBITRUM || i.network == Network::BSC);
    list.iter_mut()
        .filter(|i| i.network == Network::ARBITRUM)
        .for_each(|i| i.watched = true);
    let r = Networks::new(list);
    let e = r.asset("usdt.nowhere").expect_err("unknown").to_string();
    assert!(
        e.ends_with("use one of usdt.arbitrum, usdc.arbitrum"),
        "{e}"
    );
    // GMPay's pair.
    let a = r.asset_of("usdc", "binance").expect("pair");
    assert_eq!((a.network, a.token), (Network::BSC, Token::USDC));
    assert!(
        r.asset_of("trx", "tron")
            .expect_err("native")
            .to_string()
            .contains("native")
    );
    assert!(r.asset_of("usdt", "mars").is_err());
}

#[test]
fn names_are_interned_handles() {
    assert_eq!(Network::named("tron"), Network::TRON);
    let a = Network::named("mychain");
    let b = Network::named(&String::from("mychain"));
    assert_eq!(a, b);
    assert!(std::ptr::eq(a.as_str(), b.as_str()));
    assert_eq!(Token::named("usdc"), Token::USDC);
    assert!(valid_name("mychain").is_ok());
    assert!(valid_name("MyChain").is_err());
    assert!(valid_name("a-very-long-network-name").is_err());
    assert!(valid_symbol("usdt").is_ok());
    assert!(valid_symbol("us.dt").is_err());
    let json = serde_json::to_string(&Network::BSC).expect("json");
    assert_eq!(json, "\"bsc\"");
    let back: Network = serde_json::from_str(&json).expect("back");
    assert_eq!(back, Network::BSC);
}

/// Configured native coins: `<network>.<coin>` is their trade type, `<coin>.<network>` and
/// GMPay's pair select them too; an unconfigured one names what is offered.
#[test]
fn native_coins_select_by_trade_type_when_configured() {
    let mut list: Vec<NetworkInfo> = Networks::presets().iter().cloned().collect();
    for i in list.iter_mut() {
        let coin = match i.network.as_str() {
            "tron" => "TRX",
            "ethereum" => "ETH",
            "bsc" => "BNB",
            _ => continue,
        };
        i.watched = true;
        i.tokens.push(TokenInfo {
            token: Token::named(coin),
            decimals: if coin == "TRX" { 6 } else { 18 },
            native: true,
            ..Default::default()
        });
    }
    let r = Networks::new(list);
    for (asked, net, coin) in [
        ("tron.trx", Network::TRON, "TRX"),
        ("TRX.TRON", Network::TRON, "TRX"),
        ("trx.trc20", Network::TRON, "TRX"),
        ("ethereum.eth", Network::ETHEREUM, "ETH"),
        ("eth.ethereum", Network::ETHEREUM, "ETH"),
        ("eth-erc20", Network::ETHEREUM, "ETH"),
        ("bsc.bnb", Network::BSC, "BNB"),
        ("bnb.bep20", Network::BSC, "BNB"),
    ] {
        let a = r.asset(asked).unwrap_or_else(|e| panic!("{asked}: {e}"));
        assert_eq!((a.network, a.token.as_str()), (net, coin), "{asked}");
    }
    assert_eq!(
        r.trade_type(Asset {
            network: Network::TRON,
            token: Token::named("TRX")
        }),
        "tron.trx"
    );
    // Bare network names keep selecting USDT, even `trx` (an alias of tron).
    assert_eq!(r.asset("trx").expect("alias").token, Token::USDT);
    let a = r.asset_of("TRX", "tron").expect("gmpay pair");
    assert_eq!((a.network, a.token.as_str()), (Network::TRON, "TRX"));
    // POL is not configured: 10009's message names the configured trade types.
    let e = r
        .asset("polygon.pol")
        .expect_err("not configured")
        .to_string();
    assert!(
        e.contains("[networks.polygon.tokens.pol] native = true")
            && e.contains("tron.trx")
            && e.contains("ethereum.eth")
            && e.contains("bsc.bnb"),
        "{e}"
    );
    // ETH is configured on ethereum only.
    assert!(r.asset("eth.bsc").is_err());
}
