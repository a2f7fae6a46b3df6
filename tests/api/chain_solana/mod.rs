//! The Solana scanner against a JSON-RPC double answering with agave's shapes and failures
//! (double.rs): through the real `Watcher` loop — a USDT `transferChecked` to a watched
//! owner's ATA pays an order (signed callback), a USDC transfer carried as an inner
//! instruction is recorded, failed transactions, look-alike mints and transfers to a token
//! account that is not the ATA are ignored, a `null` transaction stalls the cursor until the
//! node has it, a 429 backs off for its `Retry-After` — and directly through `Scanner`:
//! paging over signature pages (`before`, then `until`), a lagging node (`-32016`) failed
//! over, skipped slots, the mint checks at start; and the whole path by configuration
//! (`[networks.solana]`, `trade_type=usdt.solana`).
//!
//! The watcher-level tests run the scanner under `polygon`, a name no other watcher of their
//! test app uses (the scanner only stamps transfers with it).
mod double;

use std::{collections::HashSet, time::Duration};

use double::{SolanaDouble, Transfer, TxBuilder, fake_id};
use epusdt::{
    chain::{
        ScanError, Scanner, Watcher,
        solana::{
            SolanaScanner, SolanaSettings, SolanaToken,
            address::{Pubkey, USDC_MINT, USDT_MINT, associated_token_address},
        },
    },
    config::ChainSettings,
    domain::network::Network,
    store::entities::wallet,
};
use sea_orm::{ActiveModelTrait, Set};

use crate::{chain_support, common};

const NET: Network = Network::POLYGON;
/// A mainnet owner and its published USDC ATA (not derived by the code under test).
const OWNER: &str = "86xCnPeV69n6t3DnyGvkKobf9FdN2H9oiVDdaMpo2MMY";
const OWNER_USDC: &str = "9SHQTA66Ekh7ZgMnKWsjxXk6DwXku8przs45E8bcEe38";
const PAYER: &str = "B8UwBUUnKwCyKuGMbFKWaG7exYdDk2ozZrPg72NyVbfj";
const PAYER_ACCOUNT: &str = "DShWnroshVbeUp28oopA3Pu7oFPDBtC1DBmPECXXAQ9n";
/// Another mint with the same decimals (spl-token's test mint).
const LOOKALIKE: &str = "7o36UsWR1JQLpZ9PE2gn9L4SQ69CNNiWAXd4Jt7rqz9Z";

fn ata(owner: &str, mint: &str) -> String {
    let key = |s: &str| Pubkey::parse(s).unwrap();
    associated_token_address(&key(owner), &key(mint), &key(double::TOKEN_PROGRAM))
        .unwrap()
        .to_base58()
}

fn settings(urls: &[&str], page: usize) -> SolanaSettings {
    SolanaSettings {
        network: NET,
        rpc_urls: urls.iter().map(|u| u.parse().unwrap()).collect(),
        tokens: vec![
            SolanaToken::spl(epusdt::domain::network::Token::USDT, USDT_MINT, 6),
            SolanaToken::spl(epusdt::domain::network::Token::USDC, USDC_MINT, 6),
        ],
        request_timeout: Duration::from_secs(5),
        signatures_page: page,
    }
}

fn pay(label: &str, mint: &str, to_owner: &str, to_account: &str, units: u64) -> TxBuilder {
    TxBuilder {
        label: label.into(),
        transfers: vec![Transfer {
            checked: true,
            mint: mint.into(),
            decimals: 6,
            from_owner: PAYER.into(),
            from_account: PAYER_ACCOUNT.into(),
            to_owner: to_owner.into(),
            to_account: to_account.into(),
            units,
        }],
        ..Default::default()
    }
}

async fn double(finalized: u64) -> SolanaDouble {
    epusdt::net::install_crypto_provider();
    SolanaDouble::start(finalized, &[(USDT_MINT, 6), (USDC_MINT, 6), (LOOKALIKE, 6)]).await
}

struct Running {
    app: common::TestApp,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// A test app watching `OWNER` under [`NET`] with a real `Watcher` over the double, the
/// cursor starting at `start - 1`.
async fn watch(d: &SolanaDouble, start: u64) -> Option<Running> {
    let app = common::spawn_app(common::Backend::Sqlite).await?;
    wallet::ActiveModel {
        merchant_id: Set(None),
        network: Set(NET.as_str().into()),
        address: Set(OWNER.into()),
        label: Set("sol".into()),
        enabled: Set(true),
        created_at: Set(0),
        ..Default::default()
    }
    .insert(&app.state.db)
    .await
    .expect("wallet");
    let s = settings(&[&d.url], 1000);
    let chain = ChainSettings {
        network: NET,
        rpc_urls: s.rpc_urls.clone(),
        kind: epusdt::domain::network::NetworkKind::Solana,
        chain_id: None,
        tokens: vec![epusdt::domain::network::TokenInfo {
            token: epusdt::domain::network::Token::USDT,
            contract: USDT_MINT.into(),
            decimals: 6,
            ..Default::default()
        }],
        confirmations: 0,
        api_key: None,
        poll_interval: Duration::from_millis(100),
        max_block_range: 1000,
        start_block: Some(start),
        lease_ttl: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        show_confirming: true,
    };
    let scanner = SolanaScanner::new(&s).expect("scanner");
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(Watcher::new(scanner, chain, &chain_support::deps(&app)).run(stop_rx));
    chain_support::wait_cursor(&app, NET.as_str(), i64::try_from(start).unwrap() - 1, 20).await;
    Some(Running { app, stop, task })
}

impl Running {
    async fn end(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.app.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usdt_payment_through_the_watcher_and_what_is_ignored() {
    let d = double(1000).await;
    let Some(r) = watch(&d, 1001).await else {
        return;
    };
    let (merchant, murl) = common::Merchant::start(0, "ok").await;
    let (trade_id, amount, address) = chain_support::create_order(
        &r.app,
        "SOL-1",
        "100",
        "usdt.polygon",
        &format!("{murl}/notify"),
    )
    .await;
    assert_eq!(address, OWNER, "the only wallet of the network");
    let units = u64::try_from(chain_support::units(&amount, 6)).unwrap();
    let owner_usdt = ata(OWNER, USDT_MINT);
    let paid = d.push_tx(
        1005,
        pay("usdt", USDT_MINT, OWNER, &owner_usdt, units).build(),
    );
    // Failed, with the exact amount.
    let mut failed = pay("failed", USDT_MINT, OWNER, &owner_usdt, units);
    failed.failed = true;
    d.push_tx(1005, failed.build());
    // A look-alike mint to the owner's ATA of that mint (never listed for our ATAs), and a
    // node claiming a look-alike mint into our USDC account.
    d.push_tx(
        1006,
        pay("lookalike", LOOKALIKE, OWNER, &ata(OWNER, LOOKALIKE), units).build(),
    );
    d.push_tx(
        1006,
        pay("lying", LOOKALIKE, OWNER, OWNER_USDC, units).build(),
    );
    // The owner's token account that is not its ATA: not seen (documented limit).
    d.push_tx(
        1007,
        pay(
            "other",
            USDC_MINT,
            OWNER,
            &fake_id("other account", 32),
            units,
        )
        .build(),
    );
    // USDC routed through another program: an inner plain `transfer`.
    let mut routed = pay("routed", USDC_MINT, OWNER, OWNER_USDC, 7_500_000);
    routed.transfers[0].checked = false;
    routed.inner = true;
    let routed = d.push_tx(1008, routed.build());
    d.with(|c| c.skipped.insert(1009));
    d.finalize(1012);

    let calls = merchant.wait_for(1, 20).await;
    let body: serde_json::Value = serde_json::from_str(&calls[0].body).unwrap();
    assert_eq!(body["trade_id"], trade_id.as_str());
    assert_eq!(body["block_transaction_id"], paid.as_str());
    chain_support::wait_cursor(&r.app, NET.as_str(), 1012, 20).await;
    assert_eq!(chain_support::order_status(&r.app, &trade_id).await, 2);
    let mut rows = chain_support::transfers(&r.app.state.db, NET.as_str()).await;
    rows.sort_by_key(|t| t.block_number);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].tx_hash, paid);
    assert_eq!(
        rows[0].log_index, 1,
        "instruction 1 (after the compute budget)"
    );
    assert_eq!(rows[0].to_address, OWNER);
    assert_eq!(rows[0].from_address, PAYER);
    assert_eq!(rows[0].token_contract, USDT_MINT);
    assert_eq!(rows[0].block_number, 1005);
    assert_eq!(rows[0].block_hash, double::blockhash(1005));
    assert_eq!(rows[0].block_time, d.block_time(1005));
    assert_eq!(rows[0].kind, "matched");
    assert_eq!(rows[1].tx_hash, routed);
    assert_eq!(rows[1].log_index, 2000, "inner 0 of instruction 1");
    assert_eq!(rows[1].token_contract, USDC_MINT);
    assert_eq!(rows[1].amount, "7.5");
    // Nothing above the finalized slot was asked for; everything with commitment finalized.
    for q in d.requests() {
        if q.method == "getSignaturesForAddress" {
            assert_eq!(q.params[1]["commitment"], "finalized", "{q:?}");
            assert!(q.params[1]["minContextSlot"].as_u64().unwrap() <= 1012);
        }
        if q.method == "getTransaction" {
            assert_eq!(q.params[1]["encoding"], "jsonParsed");
            assert_eq!(q.params[1]["commitment"], "finalized");
        }
    }
    // Failed transactions are dropped from the signature list: never fetched.
    let fetched: HashSet<String> = d
        .requests()
        .iter()
        .filter(|q| q.method == "getTransaction")
        .map(|q| q.params[0].as_str().unwrap().to_string())
        .collect();
    assert_eq!(fetched.len(), 3, "paid, lying, routed: {fetched:?}");
    r.end().await;
}

/// `getTransaction` answers `null` for a listed signature (a node without it): the range
/// fails and is retried; the cursor never passes the slot until the transfer is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_transaction_is_retried_never_skipped() {
    let d = double(500).await;
    let Some(r) = watch(&d, 501).await else {
        return;
    };
    let sig = d.push_tx(
        505,
        pay("late", USDC_MINT, OWNER, OWNER_USDC, 1_230_000).build(),
    );
    d.with(|c| c.null_tx.insert(sig.clone(), 9));
    d.finalize(510);
    common::eventually(
        20,
        "the watcher to ask for the transaction 6 times",
        || async {
            let asked = d
                .requests()
                .iter()
                .filter(|q| q.method == "getTransaction" && q.params[0] == sig.as_str())
                .count();
            (asked >= 6).then_some(())
        },
    )
    .await;
    let cursor = chain_support::cursor(&r.app.state.db, NET.as_str())
        .await
        .unwrap();
    assert!(
        cursor < 505,
        "cursor {cursor} passed a slot it could not read"
    );
    chain_support::wait_cursor(&r.app, NET.as_str(), 510, 30).await;
    let rows = chain_support::transfers(&r.app.state.db, NET.as_str()).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].tx_hash, sig);
    assert_eq!(rows[0].amount, "1.23");
    r.end().await;
}

/// HTTP 429 with rpcpool's body: a rate limit (with `Retry-After`) for the scanner, and the
/// watcher waits at least that long before asking again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_backs_off() {
    let d = double(300).await;
    let s = SolanaScanner::new(&settings(&[&d.url], 1000)).unwrap();
    d.with(|c| {
        c.rate_limit_next = 1;
        c.retry_after = Some(7);
    });
    match s.heads().await {
        Err(ScanError::RateLimited {
            retry_after,
            message,
        }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
            assert!(message.contains("429"), "{message}");
        }
        other => panic!("expected a rate limit, got {other:?}"),
    }
    let heads = s.heads().await.expect("answers again");
    assert_eq!((heads.finalized, heads.head), (300, 332));

    let Some(r) = watch(&d, 301).await else {
        return;
    };
    let sig = d.push_tx(
        303,
        pay("after 429", USDC_MINT, OWNER, OWNER_USDC, 2_000_000).build(),
    );
    d.with(|c| {
        c.rate_limit_next = 1;
        c.retry_after = Some(2);
    });
    let limited_at = std::time::Instant::now();
    d.finalize(305);
    chain_support::wait_cursor(&r.app, NET.as_str(), 305, 20).await;
    assert!(
        limited_at.elapsed() >= Duration::from_secs(2),
        "the watcher did not wait for Retry-After"
    );
    let rows = chain_support::transfers(&r.app.state.db, NET.as_str()).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].tx_hash, sig);
    r.end().await;
}

/// More signatures than one page: walked back with `before` down to the range's first slot;
/// the next range stops at the newest signature already seen (`until`).
#[tokio::test]
async fn pages_through_signatures_then_uses_until() {
    let d = double(2100).await;
    let s = SolanaScanner::new(&settings(&[&d.url], 2)).unwrap();
    let mut sigs = Vec::new();
    for (i, slot) in [1990u64, 1995, 2001, 2002, 2002, 2004, 2005, 2010, 2011]
        .iter()
        .enumerate()
    {
        let units = 1_000_000 * (i as u64 + 1);
        sigs.push(d.push_tx(
            *slot,
            pay(&format!("p{i}"), USDC_MINT, OWNER, OWNER_USDC, units).build(),
        ));
    }
    let watched: HashSet<String> = [OWNER.to_string()].into();
    let batch = s.scan(2001, 2005, &watched).await.expect("scan");
    let got: Vec<&str> = batch.transfers.iter().map(|t| t.tx_hash.as_str()).collect();
    assert_eq!(got.len(), 5, "{got:?}");
    for sig in &sigs[2..7] {
        assert!(got.contains(&sig.as_str()), "{sig} missing");
    }
    assert_eq!(batch.transfers[0].block_number, 2001);
    assert_eq!(batch.transfers[0].amount.to_string(), "3.000000");
    assert_eq!(batch.to_hash, double::blockhash(2005));
    let listed: Vec<_> = d
        .requests()
        .into_iter()
        .filter(|q| q.method == "getSignaturesForAddress" && q.params[0] == OWNER_USDC)
        .collect();
    assert!(listed.len() >= 4, "pages of 2: {listed:?}");
    assert!(listed[1].params[1]["before"].is_string());
    assert!(listed.iter().all(|q| q.params[1]["until"].is_null()));
    assert_eq!(
        d.count("getTransaction"),
        5,
        "only signatures in range are fetched"
    );

    let before = d.requests().len();
    let batch = s.scan(2006, 2011, &watched).await.expect("scan");
    assert_eq!(batch.transfers.len(), 2);
    let next: Vec<_> = d.requests()[before..]
        .iter()
        .filter(|q| q.method == "getSignaturesForAddress" && q.params[0] == OWNER_USDC)
        .cloned()
        .collect();
    assert_eq!(next[0].params[1]["until"], sigs[6].as_str(), "{next:?}");
}

/// A node behind (`minContextSlot` not reached, -32016) is failed over; alone, the range
/// fails naming the lag. Skipped slots have no hash and fail nothing.
#[tokio::test]
async fn lagging_node_and_skipped_slots() {
    let d = double(800).await;
    let lagging = d.add_node(50).await;
    let watched: HashSet<String> = [OWNER.to_string()].into();
    d.push_tx(790, pay("x", USDC_MINT, OWNER, OWNER_USDC, 1).build());
    let both = SolanaScanner::new(&settings(&[&lagging, &d.url], 1000)).unwrap();
    let batch = both
        .scan(780, 800, &watched)
        .await
        .expect("the current node answers");
    assert_eq!(batch.transfers.len(), 1);
    assert!(
        d.requests()
            .iter()
            .any(|q| q.node == 1 && q.method == "getSignaturesForAddress")
    );

    let alone = SolanaScanner::new(&settings(&[&lagging], 1000)).unwrap();
    match alone.scan(780, 800, &watched).await {
        Err(ScanError::Unavailable(m)) => {
            assert!(
                m.contains("-32016") && m.contains("behind") && m.contains("750"),
                "{m}"
            )
        }
        other => panic!("expected unavailable, got {other:?}"),
    }

    d.with(|c| {
        c.skipped.insert(795);
    });
    assert_eq!(
        both.block_hash(795).await.unwrap(),
        "",
        "a skipped slot has no block"
    );
    assert_eq!(both.block_hash(796).await.unwrap(), double::blockhash(796));
    let batch = both
        .scan(791, 795, &watched)
        .await
        .expect("range ending on a skipped slot");
    assert_eq!(batch.to_hash, "");
}

/// At start: every mint must exist, belong to the token program and have the configured
/// decimals, on every URL.
#[tokio::test]
async fn prepare_checks_the_mints() {
    let d = double(100).await;
    let s = SolanaScanner::new(&settings(&[&d.url], 1000)).unwrap();
    s.prepare().await.expect("both mints match");
    assert_eq!(d.count("getAccountInfo"), 2);
    d.with(|c| {
        c.accounts.insert(
            USDC_MINT.into(),
            double::mint_account(9, double::TOKEN_PROGRAM),
        )
    });
    match s.prepare().await {
        Err(ScanError::Fatal(m)) => assert!(m.contains("6 decimals but the mint has 9"), "{m}"),
        other => panic!("expected fatal, got {other:?}"),
    }
    d.with(|c| {
        c.accounts.insert(
            USDC_MINT.into(),
            double::mint_account(6, "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb"),
        )
    });
    assert!(matches!(s.prepare().await, Err(ScanError::Fatal(m)) if m.contains("program")));
    d.with(|c| c.accounts.remove(USDC_MINT));
    assert!(matches!(s.prepare().await, Err(ScanError::Fatal(m)) if m.contains("does not exist")));
}

/// Solana by configuration alone: `[networks.solana] rpc_urls` (the preset's mints, commitment
/// finalized), a wallet added by its owner address, an order with `trade_type=usdt.solana`,
/// paid by a `transferChecked` into the owner's ATA, with a signed callback — through the
/// app's own start-up (mint check) and watcher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn solana_by_configuration_pays_a_usdt_solana_order() {
    let d = double(2000).await;
    let url = d.url.clone();
    let Some(app) = common::spawn_app_with(common::Backend::Sqlite, |c| {
        c.networks.insert(
            "solana".into(),
            epusdt::config::NetworkConfig {
                rpc_urls: vec![url],
                start_block: Some(2001),
                poll_interval_ms: Some(100),
                ..Default::default()
            },
        );
    })
    .await
    else {
        return;
    };
    epusdt::service::wallet::add(
        &app.state.db,
        app.state.config.registry(),
        "solana",
        OWNER,
        None,
        "sol",
    )
    .await
    .expect("a Solana owner address is a wallet");
    let (merchant, murl) = common::Merchant::start(0, "ok").await;
    let (trade_id, amount, address) = chain_support::create_order(
        &app,
        "SOL-CFG",
        "100",
        "usdt.solana",
        &format!("{murl}/notify"),
    )
    .await;
    assert_eq!(address, OWNER);
    let units = u64::try_from(chain_support::units(&amount, 6)).unwrap();
    // USDC of the same amount into the USDC ATA first: never pays the USDT order.
    d.push_tx(
        2003,
        pay("usdc", USDC_MINT, OWNER, OWNER_USDC, units).build(),
    );
    d.push_tx(
        2004,
        pay("usdt", USDT_MINT, OWNER, &ata(OWNER, USDT_MINT), units).build(),
    );
    d.finalize(2006);
    let calls = merchant.wait_for(1, 30).await;
    let body: serde_json::Value = serde_json::from_str(&calls[0].body).unwrap();
    assert_eq!(body["trade_id"], trade_id.as_str());
    assert_eq!(body["status"], 2);
    assert_eq!(chain_support::order_status(&app, &trade_id).await, 2);
    let rows = chain_support::transfers(&app.state.db, "solana").await;
    assert_eq!(rows.len(), 2, "both transfers recorded: {rows:?}");
    assert!(
        rows.iter()
            .any(|t| t.token == "USDC" && t.order_id.is_none()),
        "the USDC transfer paid nothing: {rows:?}"
    );
    app.stop().await;
}
