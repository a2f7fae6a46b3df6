//! The cursor loop against a [`FakeScanner`] on a migrated SQLite database: what a round
//! writes, and what it must not.
use std::time::Duration;

use migration::MigratorTrait;
use rust_decimal::Decimal;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use tokio::sync::watch;

use super::{Round, RoundError, Watcher};
use crate::{
    audit::{AuditLog, actions},
    chain::{Deps, MIN_REORG_STEP, Registry, ScanError, fake::FakeScanner},
    config::ChainSettings,
    domain::{network::Network, transfer::IncomingTransfer},
    queue::{JobQueue, QueueBackend},
    service::order::OrderRules,
    store::entities::{audit_log, chain_cursor, transfer, wallet},
};

const WALLET: &str = "0x00000000000000000000000000000000000000aa";

struct Setup {
    _dir: tempfile::TempDir,
    deps: Deps,
    _stop_tx: watch::Sender<bool>,
    stop: watch::Receiver<bool>,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("chain.db").display()
    );
    let db = crate::store::connect(&url).await.expect("sqlite");
    migration::Migrator::up(&db, None)
        .await
        .expect("migrations");
    wallet::ActiveModel {
        merchant_id: Set(None),
        network: Set(Network::ETHEREUM.as_str().into()),
        address: Set(WALLET.into()),
        label: Set("test".into()),
        enabled: Set(true),
        created_at: Set(0),
        ..Default::default()
    }
    .insert(&db)
    .await
    .expect("wallet");
    let queue = JobQueue::connect(QueueBackend::Sqlite(
        db.get_sqlite_connection_pool().clone(),
    ))
    .await
    .expect("queue");
    let audit = AuditLog::open(db.clone(), &dir.path().join("audit")).expect("audit");
    let (stop_tx, stop) = watch::channel(false);
    Setup {
        deps: Deps {
            db,
            queue,
            audit,
            registry: Registry::default(),
            rules: OrderRules::default(),
            data_dir: dir.path().to_path_buf(),
        },
        _dir: dir,
        _stop_tx: stop_tx,
        stop,
    }
}

fn settings(confirmations: u64, max_block_range: u64) -> ChainSettings {
    ChainSettings {
        network: Network::ETHEREUM,
        kind: crate::domain::network::NetworkKind::Evm,
        rpc_urls: Vec::new(),
        chain_id: None,
        tokens: vec![crate::domain::network::TokenInfo {
            token: crate::domain::network::Token::USDT,
            contract: "0x0000000000000000000000000000000000000055".into(),
            decimals: 6,
            ..Default::default()
        }],
        confirmations,
        api_key: None,
        poll_interval: Duration::from_millis(10),
        max_block_range,
        start_block: Some(1),
        lease_ttl: Duration::from_secs(30),
        request_timeout: Duration::from_secs(1),
        show_confirming: true,
    }
}

/// A watcher that holds its lease (so rounds scan).
async fn watcher(fake: &FakeScanner, settings: ChainSettings, deps: &Deps) -> Watcher<FakeScanner> {
    let mut w = Watcher::new(fake.clone(), settings, deps);
    w.lease.start(deps.db.clone());
    w.lease.wait_held(Duration::from_secs(10)).await;
    assert!(w.lease.held(), "the lease of a lone watcher");
    w
}

fn transfer_at(block: i64, tx: &str) -> IncomingTransfer {
    IncomingTransfer {
        network: Network::ETHEREUM,
        token: crate::domain::network::Token::USDT,
        tx_hash: tx.into(),
        log_index: 0,
        block_number: block,
        block_hash: String::new(),
        token_contract: "0x0000000000000000000000000000000000000055".into(),
        from_address: "0x00000000000000000000000000000000000000bb".into(),
        to_address: WALLET.into(),
        amount: Decimal::new(1_500_000, 6),
        block_time: 1_700_000_000,
    }
}

async fn cursor(deps: &Deps) -> (i64, String) {
    let row = chain_cursor::Entity::find_by_id(Network::ETHEREUM.as_str())
        .one(&deps.db)
        .await
        .expect("query")
        .expect("a cursor row");
    (row.block_number, row.block_hash)
}

async fn transfers(deps: &Deps) -> Vec<transfer::Model> {
    transfer::Entity::find()
        .filter(transfer::Column::Network.eq(Network::ETHEREUM.as_str()))
        .all(&deps.db)
        .await
        .expect("transfers")
}

#[tokio::test]
async fn the_cursor_advances_to_the_confirmed_head_and_no_further() {
    let s = setup().await;
    let fake = FakeScanner::new(50);
    fake.add_transfer(transfer_at(47, "0xconfirmed"));
    fake.add_transfer(transfer_at(48, "0xunconfirmed"));
    let mut w = watcher(&fake, settings(3, 10), &s.deps).await;
    let mut stop = s.stop.clone();

    assert!(matches!(w.round(&mut stop).await, Ok(Round::CaughtUp)));
    assert_eq!(cursor(&s.deps).await, (47, "h47".into()), "head 50 − 3");
    assert!(
        fake.scans().iter().all(|(_, to)| *to <= 47),
        "{:?}",
        fake.scans()
    );
    assert_eq!(fake.scans().first(), Some(&(1, 10)), "from start_block");
    let rows = transfers(&s.deps).await;
    assert_eq!(rows.len(), 1, "only the confirmed transfer: {rows:?}");
    assert_eq!(rows[0].tx_hash, "0xconfirmed");
    assert_eq!(rows[0].block_hash, "h47");
    let status = s.deps.registry.snapshot()["ethereum"].clone();
    assert_eq!(
        (status.role, status.cursor, status.lag_blocks),
        ("active", Some(47), Some(0))
    );

    // Two more blocks: one more is confirmed.
    fake.set_head(52);
    assert!(matches!(w.round(&mut stop).await, Ok(Round::CaughtUp)));
    assert_eq!(cursor(&s.deps).await, (49, "h49".into()));
    assert_eq!(fake.scans().last(), Some(&(48, 49)));
    assert_eq!(transfers(&s.deps).await.len(), 2);
}

#[tokio::test]
async fn a_failed_range_moves_nothing_and_halves_the_range() {
    let s = setup().await;
    let fake = FakeScanner::new(30);
    fake.add_transfer(transfer_at(15, "0xlate"));
    fake.script_scans([None, Some(ScanError::Unavailable("node down".into()))]);
    let mut w = watcher(&fake, settings(0, 10), &s.deps).await;
    let mut stop = s.stop.clone();

    let err = w.round(&mut stop).await.err().expect("the round fails");
    assert!(
        matches!(err, RoundError::Scan(ScanError::Unavailable(ref m)) if m == "node down"),
        "{err}"
    );
    assert_eq!(
        cursor(&s.deps).await,
        (10, "h10".into()),
        "only the good range"
    );
    assert!(
        transfers(&s.deps).await.is_empty(),
        "nothing of the failed range"
    );
    assert_eq!(w.range, 5, "halved after the failure");

    assert!(matches!(w.round(&mut stop).await, Ok(Round::CaughtUp)));
    assert_eq!(cursor(&s.deps).await, (30, "h30".into()));
    assert_eq!(&fake.scans()[..3], &[(1, 10), (11, 20), (11, 15)]);
    let rows = transfers(&s.deps).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].tx_hash, "0xlate");
}

#[tokio::test]
async fn a_refused_range_shrinks_at_once_and_lowers_the_ceiling() {
    let s = setup().await;
    let fake = FakeScanner::new(40);
    fake.refuse_above(5);
    let mut w = watcher(&fake, settings(0, 16), &s.deps).await;
    let mut stop = s.stop.clone();

    // No failure: the round reaches the head within itself.
    assert!(matches!(w.round(&mut stop).await, Ok(Round::CaughtUp)));
    assert_eq!(cursor(&s.deps).await, (40, "h40".into()));
    let scans = fake.scans();
    assert_eq!(
        &scans[..3],
        &[(1, 16), (1, 8), (1, 4)],
        "halved per refusal"
    );
    assert!(
        w.ceiling <= 5,
        "ceiling {} below every refused size",
        w.ceiling
    );
    let refused = scans.iter().filter(|(f, t)| t - f + 1 > 5).count();
    assert!(refused <= 5, "a refused size is not retried: {scans:?}");
    // Every block scanned exactly once by the accepted ranges.
    let mut next = 1;
    for (from, to) in scans.iter().filter(|(f, t)| t - f < 5) {
        assert_eq!(*from, next, "{scans:?}");
        next = to + 1;
    }
    assert_eq!(next, 41);
}

#[tokio::test]
async fn a_reorg_below_the_cursor_steps_back_and_raises_reorged_transfers() {
    let s = setup().await;
    let fake = FakeScanner::new(40);
    fake.add_transfer(transfer_at(38, "0xreorged"));
    let mut w = watcher(&fake, settings(0, 10), &s.deps).await;
    let mut stop = s.stop.clone();
    assert!(matches!(w.round(&mut stop).await, Ok(Round::CaughtUp)));
    assert_eq!(cursor(&s.deps).await, (40, "h40".into()));

    // Blocks from 35 on are replaced.
    fake.reorg_from(35, "x");
    assert!(matches!(w.round(&mut stop).await, Ok(Round::Continue)));
    let (block, hash) = cursor(&s.deps).await;
    assert!(block <= 40 - MIN_REORG_STEP, "stepped back to {block}");
    assert_eq!(hash, fake.hash(u64::try_from(block).expect("not negative")));
    let raised = audit_log::Entity::find()
        .filter(audit_log::Column::Action.eq(actions::CHAIN_TRANSFER_REORGED))
        .all(&s.deps.db)
        .await
        .expect("audit");
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert!(
        raised[0].target.contains("0xreorged"),
        "{}",
        raised[0].target
    );

    // The rescan follows the new chain.
    assert!(matches!(w.round(&mut stop).await, Ok(Round::CaughtUp)));
    assert_eq!(cursor(&s.deps).await, (40, "x40".into()));
}

#[tokio::test]
async fn a_stop_request_ends_run() {
    let s = setup().await;
    let fake = FakeScanner::new(5);
    let w = Watcher::new(fake.clone(), settings(0, 10), &s.deps);
    let (stop_tx, stop) = watch::channel(false);
    let task = tokio::spawn(w.run(stop));
    // Wait for the first round to catch up.
    for _ in 0..500 {
        if s.deps
            .registry
            .snapshot()
            .get("ethereum")
            .and_then(|c| c.cursor)
            == Some(5)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s.deps.registry.snapshot()["ethereum"].cursor, Some(5));
    stop_tx.send(true).expect("send");
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops")
        .expect("no panic");
    assert_eq!(s.deps.registry.snapshot()["ethereum"].role, "stopped");
}

// ---------------------------------------------------------------------------------------------
// Ranges scanned at once (`Scanner::ranges_at_once`): scanned ahead, committed in order.

#[tokio::test]
async fn ranges_scanned_at_once_are_committed_in_order() {
    let s = setup().await;
    let fake = FakeScanner::new(100);
    fake.set_ranges_at_once(3);
    for block in [5, 15, 25, 55, 99] {
        fake.add_transfer(transfer_at(block, &format!("0x{block}")));
    }
    let mut w = watcher(&fake, settings(1, 10), &s.deps).await;
    let mut stop = s.stop.clone();

    assert!(matches!(w.round(&mut stop).await, Ok(Round::CaughtUp)));
    assert_eq!(cursor(&s.deps).await, (99, "h99".into()), "head 100 − 1");
    let scans = fake.scans();
    // Three ranges of the starting size were under way before the first commit doubled it.
    assert_eq!(&scans[..3], &[(1, 10), (11, 20), (21, 30)], "{scans:?}");
    // Every block scanned exactly once, in order, nothing above the confirmed head.
    let mut next = 1;
    for (from, to) in &scans {
        assert_eq!(*from, next, "{scans:?}");
        next = to + 1;
    }
    assert_eq!(next, 100);
    let mut rows: Vec<i64> = transfers(&s.deps)
        .await
        .iter()
        .map(|t| t.block_number)
        .collect();
    rows.sort_unstable();
    assert_eq!(rows, vec![5, 15, 25, 55, 99]);
}

#[tokio::test]
async fn a_failed_range_drops_the_ranges_scanned_after_it() {
    let s = setup().await;
    let fake = FakeScanner::new(60);
    fake.set_ranges_at_once(3);
    fake.add_transfer(transfer_at(25, "0xafter_the_failure"));
    // (1, 10) good, (11, 20) fails, (21, 30) good but behind a failed range.
    fake.script_scans([None, Some(ScanError::Unavailable("node down".into())), None]);
    let mut w = watcher(&fake, settings(0, 10), &s.deps).await;
    let mut stop = s.stop.clone();

    let err = w.round(&mut stop).await.err().expect("the round fails");
    assert!(
        matches!(err, RoundError::Scan(ScanError::Unavailable(ref m)) if m == "node down"),
        "{err}"
    );
    assert!(fake.scans().contains(&(21, 30)), "{:?}", fake.scans());
    assert_eq!(
        cursor(&s.deps).await,
        (10, "h10".into()),
        "nothing past the failed range"
    );
    assert!(
        transfers(&s.deps).await.is_empty(),
        "the range scanned after the failed one is not written"
    );
    assert_eq!(w.range, 5, "halved after the failure");
    assert_eq!(
        w.at_once, 1,
        "the next round's first range is scanned alone"
    );
    assert_eq!(w.at_once_max, 3, "an outage is not a rate limit");

    assert!(matches!(w.round(&mut stop).await, Ok(Round::CaughtUp)));
    assert_eq!(cursor(&s.deps).await, (60, "h60".into()));
    let rows = transfers(&s.deps).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].tx_hash, "0xafter_the_failure");
}

#[tokio::test]
async fn a_rate_limit_halves_the_ranges_scanned_at_once() {
    let s = setup().await;
    let fake = FakeScanner::new(60);
    fake.set_ranges_at_once(4);
    fake.script_scans([Some(ScanError::RateLimited {
        message: "429".into(),
        retry_after: None,
    })]);
    let mut w = watcher(&fake, settings(0, 10), &s.deps).await;
    let mut stop = s.stop.clone();
    assert!(matches!(
        w.round(&mut stop).await,
        Err(RoundError::Scan(ScanError::RateLimited { .. }))
    ));
    assert_eq!((w.at_once, w.at_once_max), (1, 2));
    assert_eq!(cursor(&s.deps).await.0, 0, "nothing written");
    assert!(matches!(w.round(&mut stop).await, Ok(Round::CaughtUp)));
    assert_eq!(cursor(&s.deps).await, (60, "h60".into()));
    assert_eq!((w.at_once, w.at_once_max), (2, 2), "stays lowered");
}

#[tokio::test]
async fn a_refused_range_with_ranges_at_once_rescans_from_the_cursor() {
    let s = setup().await;
    let fake = FakeScanner::new(40);
    fake.set_ranges_at_once(3);
    fake.refuse_above(5);
    for block in [3, 17, 33] {
        fake.add_transfer(transfer_at(block, &format!("0x{block}")));
    }
    let mut w = watcher(&fake, settings(0, 16), &s.deps).await;
    let mut stop = s.stop.clone();

    assert!(matches!(w.round(&mut stop).await, Ok(Round::CaughtUp)));
    assert_eq!(cursor(&s.deps).await, (40, "h40".into()));
    assert!(w.ceiling <= 5, "ceiling {}", w.ceiling);
    let mut rows: Vec<i64> = transfers(&s.deps)
        .await
        .iter()
        .map(|t| t.block_number)
        .collect();
    rows.sort_unstable();
    assert_eq!(rows, vec![3, 17, 33], "each transfer once");
}

#[tokio::test]
async fn a_reorg_below_the_cursor_is_found_with_ranges_at_once() {
    let s = setup().await;
    let fake = FakeScanner::new(40);
    fake.set_ranges_at_once(3);
    let mut w = watcher(&fake, settings(0, 5), &s.deps).await;
    let mut stop = s.stop.clone();
    assert!(matches!(w.round(&mut stop).await, Ok(Round::CaughtUp)));
    assert_eq!(cursor(&s.deps).await, (40, "h40".into()));

    fake.set_head(60);
    fake.reorg_from(35, "x");
    assert!(matches!(w.round(&mut stop).await, Ok(Round::Continue)));
    let (block, hash) = cursor(&s.deps).await;
    assert!(block <= 40 - MIN_REORG_STEP, "stepped back to {block}");
    assert_eq!(hash, fake.hash(u64::try_from(block).expect("not negative")));
    assert!(matches!(w.round(&mut stop).await, Ok(Round::CaughtUp)));
    assert_eq!(cursor(&s.deps).await, (60, "x60".into()));
}
