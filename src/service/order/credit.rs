//! Crediting: the entry point the chain watchers call — [`credit_transfer`], "this transfer pays
//! that order" — which records the transfer once, picks the order whose window holds it, moves
//! it to paid with a compare-and-swap, and queues its callback ([`queue_callback`]).
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait, sea_query::Expr,
};

use super::{IncomingTransfer, OrderError, OrderRules, orders};
use crate::{
    domain::{
        amount,
        order::{Order, OrderId, OrderStatus, flags},
    },
    queue::JobQueue,
    service::now,
    store::{
        self,
        entities::{order, transfer},
    },
};

/// How long after expiry a matching transfer is still recorded against the order as late.
const LATE_WINDOW_SECS: i64 = 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreditOutcome {
    /// The order is now paid; its callback must be queued.
    Paid {
        order_id: i64,
        trade_id: String,
    },
    /// This transfer was recorded before (same network, tx hash and log index, or the same tx
    /// and token transfer re-mined at another position by a reorg): replay, no effect.
    Duplicate,
    /// Matches an order whose window had closed (or that was cancelled); flagged, not credited.
    Late {
        order_id: i64,
    },
    /// Matches the slot of an order that is already paid: a second payment; flagged, not
    /// credited again.
    PaidTwice {
        order_id: i64,
    },
    /// Went to an address with a waiting order, with a different amount; flagged.
    Partial {
        order_id: i64,
    },
    Overpaid {
        order_id: i64,
    },
    /// Nothing to match (e.g. a transfer to a watched address without an order).
    Unmatched,
}

impl CreditOutcome {
    /// The `transfers.kind` value (and metrics label) of this outcome.
    pub fn kind(&self) -> &'static str {
        match self {
            CreditOutcome::Paid { .. } => "matched",
            CreditOutcome::Duplicate => "duplicate",
            CreditOutcome::Late { .. } => "late",
            CreditOutcome::PaidTwice { .. } => "paid_twice",
            CreditOutcome::Partial { .. } => "partial",
            CreditOutcome::Overpaid { .. } => "overpaid",
            CreditOutcome::Unmatched => "unmatched",
        }
    }

    /// The order the transfer was recorded against, if any.
    pub fn order_ref(&self) -> Option<i64> {
        match self {
            CreditOutcome::Paid { order_id, .. }
            | CreditOutcome::Late { order_id }
            | CreditOutcome::PaidTwice { order_id }
            | CreditOutcome::Partial { order_id }
            | CreditOutcome::Overpaid { order_id } => Some(*order_id),
            CreditOutcome::Duplicate | CreditOutcome::Unmatched => None,
        }
    }
}

/// Records the transfer and credits the order it pays, inside the caller's transaction (the
/// chain watcher commits it together with its cursor). Idempotent: a replayed transfer is a
/// no-op. The caller queues the callback after commit with [`queue_callback`]; the sweeper
/// queues it if the process dies in between.
///
/// Races: the candidate orders are re-read with a row lock (`FOR UPDATE` by primary key on
/// PostgreSQL and MySQL; SQLite's write transaction is exclusive already), so an expiry or
/// cancel that committed first is seen as it is now and an on-time payment still pays an
/// order the expiry job has just expired.
pub async fn credit_transfer_in(
    txn: &sea_orm::DatabaseTransaction,
    rules: &OrderRules,
    t: &IncomingTransfer,
) -> Result<CreditOutcome, OrderError> {
    let amount_text = amount::canonical(t.amount);
    // Unique (network, tx_hash, log_index): a replay stops here.
    let existing = transfer::Entity::find()
        .filter(transfer::Column::Network.eq(t.network.as_str()))
        .filter(transfer::Column::TxHash.eq(&t.tx_hash))
        .filter(transfer::Column::LogIndex.eq(t.log_index))
        .one(txn)
        .await?;
    if existing.is_some() {
        return Ok(CreditOutcome::Duplicate);
    }
    // The same transaction's transfer re-mined at another position (a reorg moves it to another
    // block, so another log index): already recorded, never credited twice. Two identical
    // transfers inside one transaction share the block hash and are both recorded.
    let remined = transfer::Entity::find()
        .filter(transfer::Column::Network.eq(t.network.as_str()))
        .filter(transfer::Column::TxHash.eq(&t.tx_hash))
        .filter(transfer::Column::ToAddress.eq(&t.to_address))
        .filter(transfer::Column::Amount.eq(&amount_text))
        .filter(transfer::Column::BlockHash.ne(&t.block_hash))
        .one(txn)
        .await?;
    if let Some(prev) = remined {
        tracing::warn!(network = %t.network, tx = %t.tx_hash, log_index = t.log_index, block = t.block_number, previous_block = prev.block_number, previous_log_index = prev.log_index, "transfer re-mined at another position after a reorg; already recorded, not credited again");
        return Ok(CreditOutcome::Duplicate);
    }
    let row = transfer::ActiveModel {
        network: Set(t.network.as_str().into()),
        tx_hash: Set(t.tx_hash.clone()),
        log_index: Set(t.log_index),
        block_number: Set(t.block_number),
        block_hash: Set(t.block_hash.clone()),
        token_contract: Set(t.token_contract.clone()),
        token: Set(t.token.to_string()),
        from_address: Set(t.from_address.clone()),
        to_address: Set(t.to_address.clone()),
        amount: Set(amount_text.clone()),
        block_time: Set(t.block_time),
        order_id: Set(None),
        kind: Set("pending".into()),
        created_at: Set(now()),
        ..Default::default()
    };
    // The insert runs in a savepoint so a violation leaves the caller's transaction usable on
    // PostgreSQL.
    let savepoint = txn.begin().await?;
    let transfer_id = match row.insert(&savepoint).await {
        Ok(r) => {
            savepoint.commit().await?;
            r.id
        }
        Err(e)
            if store::is_unique_violation(
                &e,
                "transfers_network_tx_log_key",
                "transfers.network, transfers.tx_hash, transfers.log_index",
            ) =>
        {
            savepoint.rollback().await?;
            return Ok(CreditOutcome::Duplicate);
        }
        Err(e) => return Err(e.into()),
    };

    // Every order that holds or held this (network, token, address, amount) slot around the
    // block time, paid ones included (a second payment is recorded against the order it
    // repeats). Only orders of the transfer's token: a USDC transfer never pays a USDT order.
    let slot_ids = slot_order_ids(txn, rules, t, &amount_text).await?;
    let candidates = lock_orders(txn, &slot_ids).await?;

    let outcome = match pick_order(&candidates, t.block_time, rules.clock_tolerance_secs) {
        Pick::Credit(o) => pay(txn, rules, o, t, &amount_text).await?,
        Pick::Late(o) if o.status == OrderStatus::Paid => {
            set_flag(txn, o.id, flags::PAID_TWICE).await?;
            CreditOutcome::PaidTwice {
                order_id: o.id.get(),
            }
        }
        Pick::Late(o) => {
            set_flag(txn, o.id, flags::LATE).await?;
            CreditOutcome::Late {
                order_id: o.id.get(),
            }
        }
        Pick::Nothing => wrong_amount(txn, rules, t).await?,
    };
    transfer::Entity::update_many()
        .col_expr(transfer::Column::Kind, Expr::value(outcome.kind()))
        .col_expr(transfer::Column::OrderId, Expr::value(outcome.order_ref()))
        .filter(transfer::Column::Id.eq(transfer_id))
        .exec(txn)
        .await?;
    tracing::info!(network = %t.network, tx = %t.tx_hash, log_index = t.log_index, amount = %amount_text, outcome = outcome.kind(), order_id = ?outcome.order_ref(), "transfer recorded");
    Ok(outcome)
}

/// Every order that holds or held the transfer's (network, address, amount) slot around its
/// block time, paid ones included (a second payment is recorded against the order it repeats);
/// newest first. Also read by `confirming`, which must match exactly as crediting does.
pub(super) async fn slot_order_ids(
    conn: &impl ConnectionTrait,
    rules: &OrderRules,
    t: &IncomingTransfer,
    amount_text: &str,
) -> Result<Vec<i64>, DbErr> {
    order::Entity::find()
        .select_only()
        .column(order::Column::Id)
        .filter(order::Column::Network.eq(t.network.as_str()))
        .filter(order::Column::Token.eq(t.token.as_str()))
        .filter(order::Column::Address.eq(&t.to_address))
        .filter(order::Column::ActualAmount.eq(amount_text))
        .filter(order::Column::CreatedAt.lte(t.block_time + rules.clock_tolerance_secs))
        .filter(order::Column::ExpiresAt.gte(t.block_time - LATE_WINDOW_SECS))
        .order_by_desc(order::Column::Id)
        .limit(16)
        .into_tuple()
        .all(conn)
        .await
}

/// Pays `o` (locked by this transaction) with `t`: the paid compare-and-swap, then a switched
/// child settles its parent, or a parent ends its waiting children. Shared by the watcher's
/// match and an admin's resolve (`resolve`), so both take the same path.
pub(super) async fn pay(
    txn: &sea_orm::DatabaseTransaction,
    rules: &OrderRules,
    o: &Order,
    t: &IncomingTransfer,
    amount_text: &str,
) -> Result<CreditOutcome, OrderError> {
    mark_paid(txn, o, t, amount_text).await?;
    Ok(match &o.parent_trade_id {
        // A child of a payer's network switch pays its parent (`switch`).
        Some(parent) => super::switch::settle_parent(txn, o, parent, t, amount_text).await?,
        None => {
            let hold = rules.slot_reuse_grace_secs > 0;
            super::switch::end_children(txn, o.trade_id.as_str(), OrderStatus::Expired, hold)
                .await?;
            CreditOutcome::Paid {
                order_id: o.id.get(),
                trade_id: o.trade_id.to_string(),
            }
        }
    })
}

/// The orders with these ids as they are now, locked until the transaction ends (in id order,
/// so two crediting transactions cannot deadlock). Locking by primary key takes no gap locks
/// on MySQL, so concurrent order creation is not blocked.
pub(super) async fn lock_orders(
    txn: &sea_orm::DatabaseTransaction,
    ids: &[i64],
) -> Result<Vec<Order>, OrderError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut q = order::Entity::find()
        .filter(order::Column::Id.is_in(ids.iter().copied()))
        .order_by_asc(order::Column::Id);
    if txn.get_database_backend() != sea_orm::DbBackend::Sqlite {
        q = q.lock_exclusive();
    }
    orders(q.all(txn).await?)
}

/// A transfer that matches no slot: if the address has waiting orders, the payer most likely
/// sent the wrong amount for the nearest one. Flag that order (partial or overpaid) so an admin
/// sees it; never credit it.
async fn wrong_amount(
    txn: &sea_orm::DatabaseTransaction,
    rules: &OrderRules,
    t: &IncomingTransfer,
) -> Result<CreditOutcome, OrderError> {
    let waiting = order::Entity::find()
        .filter(order::Column::Network.eq(t.network.as_str()))
        .filter(order::Column::Token.eq(t.token.as_str()))
        .filter(order::Column::Address.eq(&t.to_address))
        .filter(order::Column::Status.eq(OrderStatus::Waiting.code()))
        .filter(order::Column::CreatedAt.lte(t.block_time + rules.clock_tolerance_secs))
        .limit(200)
        .all(txn)
        .await?;
    let waiting = orders(waiting)?;
    let nearest = waiting
        .iter()
        .map(|o| (o, o.actual_amount))
        .min_by_key(|(o, a)| ((*a - t.amount).abs(), o.created_at, o.id));
    Ok(match nearest {
        Some((o, expected)) if t.amount < expected => {
            set_flag(txn, o.id, flags::PARTIAL).await?;
            CreditOutcome::Partial {
                order_id: o.id.get(),
            }
        }
        Some((o, _)) => {
            set_flag(txn, o.id, flags::OVERPAID).await?;
            CreditOutcome::Overpaid {
                order_id: o.id.get(),
            }
        }
        None => CreditOutcome::Unmatched,
    })
}

/// Which order a transfer mined at `block_time` pays, among the orders that hold or held its
/// (network, address, amount) slot — a slot is reused once an order expires, so several can match.
#[derive(Debug, PartialEq)]
pub(super) enum Pick<'a> {
    /// Credit this order.
    Credit(&'a Order),
    /// Record against this order (late, cancelled, or already paid); never credited.
    Late(&'a Order),
    Nothing,
}

/// 1. the newest creditable (waiting or expired) order whose window `[created_at − tolerance,
///    expires_at]` contains the block time — an order created after the transfer was mined
///    (beyond the clock tolerance) is never paid by it;
/// 2. else the newest order that held the slot before the transfer was mined (it came too late
///    for it, the order was cancelled, or it is already paid): flagged only.
///
/// Rule 1 prefers the exact window: a payment mined just before order A expired, but seen
/// after A's slot went to a new order B, pays A — not B.
pub(super) fn pick_order(cands: &[Order], block_time: i64, tolerance: i64) -> Pick<'_> {
    fn newest_of<'a>(it: impl Iterator<Item = &'a Order>) -> Option<&'a Order> {
        it.max_by_key(|o| (o.created_at, o.id))
    }
    let held_before = |o: &&Order| o.created_at - tolerance <= block_time;
    let creditable = |o: &&Order| {
        matches!(o.status, OrderStatus::Waiting | OrderStatus::Expired)
            && block_time <= o.expires_at
    };
    if let Some(o) = newest_of(
        cands
            .iter()
            .filter(creditable)
            .filter(|o| o.created_at <= block_time),
    ) {
        return Pick::Credit(o);
    }
    if let Some(o) = newest_of(cands.iter().filter(creditable).filter(held_before)) {
        return Pick::Credit(o);
    }
    match newest_of(cands.iter().filter(held_before)) {
        Some(o) => Pick::Late(o),
        None => Pick::Nothing,
    }
}

/// `flags = flags | flag` in one statement (a read-then-write could lose a concurrent bit).
pub(super) async fn set_flag(
    txn: &impl ConnectionTrait,
    order_id: OrderId,
    flag: i32,
) -> Result<(), DbErr> {
    order::Entity::update_many()
        .col_expr(
            order::Column::Flags,
            sea_orm::sea_query::ExprTrait::binary(
                Expr::col(order::Column::Flags),
                sea_orm::sea_query::BinOper::BitOr,
                flag,
            ),
        )
        .col_expr(order::Column::UpdatedAt, Expr::value(now()))
        .filter(order::Column::Id.eq(order_id.get()))
        .exec(txn)
        .await?;
    Ok(())
}

/// Counts a committed credit in the metrics: the transfer by what it did, and a newly paid
/// order with the amount received. Call it after the transaction that recorded it commits.
pub fn observe_credit(t: &IncomingTransfer, outcome: &CreditOutcome) {
    use crate::telemetry::metrics;
    metrics::transfer(t.network, outcome.kind());
    if matches!(outcome, CreditOutcome::Paid { .. }) {
        metrics::order_event(
            metrics::OrderEvent::Paid,
            t.network,
            t.token.as_str(),
            t.amount,
        );
    }
}

/// [`credit_transfer_in`] in its own transaction (retried whole on a deadlock), then queues the
/// callback.
pub async fn credit_transfer(
    db: &DatabaseConnection,
    queue: &JobQueue,
    rules: &OrderRules,
    t: &IncomingTransfer,
) -> Result<CreditOutcome, OrderError> {
    let mut attempt = 0;
    let outcome = loop {
        attempt += 1;
        let result = async {
            let txn = store::begin_write(db).await?;
            let outcome = credit_transfer_in(&txn, rules, t).await?;
            txn.commit().await?;
            Ok::<_, OrderError>(outcome)
        }
        .await;
        match result {
            Err(OrderError::Db(e))
                if store::is_transient(&e) && attempt < store::TRANSIENT_ATTEMPTS =>
            {
                tracing::debug!(tx = %t.tx_hash, attempt, error = %e, "transient conflict while crediting; retrying the transaction");
                store::transient_pause(attempt).await;
            }
            other => break other?,
        }
    };
    observe_credit(t, &outcome);
    if let CreditOutcome::Paid { order_id, .. } = &outcome {
        super::queue_callback(db, queue, *order_id).await?;
    }
    Ok(outcome)
}

/// Whether transaction `tx_hash` is already recorded on `network` (a transfer of it) or names
/// the payment of any order (orders imported from upstream carry only that column): a payer
/// must not submit it again, for this order or another one.
pub async fn tx_hash_used(
    db: &impl ConnectionTrait,
    network: crate::domain::network::Network,
    tx_hash: &str,
) -> Result<bool, OrderError> {
    let recorded = transfer::Entity::find()
        .filter(transfer::Column::Network.eq(network.as_str()))
        .filter(transfer::Column::TxHash.eq(tx_hash))
        .one(db)
        .await?;
    if recorded.is_some() {
        return Ok(true);
    }
    let paid = order::Entity::find()
        .select_only()
        .column(order::Column::Id)
        .filter(order::Column::BlockTransactionId.eq(tx_hash))
        .into_tuple::<i64>()
        .one(db)
        .await?;
    Ok(paid.is_some())
}

/// Marks `o` (locked by this transaction) paid by `t`: the status graph's check, then a
/// compare-and-swap on its status. The row is locked, so nobody can have changed it since the
/// read; if the swap still misses, the whole range fails rather than record the payment wrongly.
pub(super) async fn mark_paid(
    txn: &sea_orm::DatabaseTransaction,
    o: &Order,
    t: &IncomingTransfer,
    amount_text: &str,
) -> Result<(), OrderError> {
    let from = o.status;
    from.transition(OrderStatus::Paid)?;
    let res = order::Entity::update_many()
        .col_expr(order::Column::Status, Expr::value(OrderStatus::Paid.code()))
        .col_expr(order::Column::LiveSlot, Expr::value(Option::<i16>::None))
        .col_expr(
            order::Column::BlockTransactionId,
            Expr::value(t.tx_hash.clone()),
        )
        .col_expr(
            order::Column::PaidAmount,
            Expr::value(amount_text.to_string()),
        )
        .col_expr(order::Column::PaidAt, Expr::value(t.block_time))
        .col_expr(order::Column::UpdatedAt, Expr::value(now()))
        .filter(order::Column::Id.eq(o.id.get()))
        .filter(order::Column::Status.eq(from.code()))
        .exec(txn)
        .await?;
    if res.rows_affected != 1 {
        return Err(OrderError::Db(DbErr::Custom(format!(
            "order {} changed while locked for crediting tx {}",
            o.trade_id, t.tx_hash
        ))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, status: OrderStatus, created_at: i64, expires_at: i64) -> Order {
        crate::domain::order::fixture::order(id, status, created_at, expires_at)
    }

    #[test]
    fn every_outcome_kind_is_a_zeroed_transfer_series() {
        for o in [
            CreditOutcome::Paid {
                order_id: 1,
                trade_id: String::new(),
            },
            CreditOutcome::Duplicate,
            CreditOutcome::Late { order_id: 1 },
            CreditOutcome::PaidTwice { order_id: 1 },
            CreditOutcome::Partial { order_id: 1 },
            CreditOutcome::Overpaid { order_id: 1 },
            CreditOutcome::Unmatched,
        ] {
            assert!(
                crate::telemetry::metrics::TRANSFER_KINDS.contains(&o.kind()),
                "{}",
                o.kind()
            );
        }
    }

    #[test]
    fn a_reused_slot_credits_the_order_whose_window_holds_the_payment() {
        use OrderStatus::*;
        let tol = 5;
        // A: 1000..1600, expired; B got the slot at 1610. Payment mined at 1590, seen later.
        let a = row(1, Expired, 1000, 1600);
        let b = row(2, Waiting, 1610, 2210);
        let cands = vec![b.clone(), a.clone()];
        assert_eq!(pick_order(&cands, 1590, tol), Pick::Credit(&a));
        // Mined after B was created: B.
        assert_eq!(pick_order(&cands, 1700, tol), Pick::Credit(&b));
        // Chain clock a few seconds behind ours, no other order: B within the tolerance.
        assert_eq!(
            pick_order(std::slice::from_ref(&b), 1607, tol),
            Pick::Credit(&b)
        );
        // Mined after A expired and before B existed (beyond the tolerance): late for A, and
        // never B — B's payer has not paid yet.
        assert_eq!(pick_order(&cands, 1604, tol), Pick::Late(&a));
        assert_eq!(
            pick_order(std::slice::from_ref(&a), 1700, tol),
            Pick::Late(&a)
        );
        // Without A's row, a transfer mined before B existed does not pay B either.
        assert_eq!(
            pick_order(std::slice::from_ref(&b), 1590, tol),
            Pick::Nothing
        );
        // A cancelled order is never credited.
        let c = row(3, Cancelled, 1000, 1600);
        assert_eq!(
            pick_order(std::slice::from_ref(&c), 1500, tol),
            Pick::Late(&c)
        );
        // A paid holder of the slot gets a second payment recorded against it.
        let p = row(4, Paid, 1000, 1600);
        assert_eq!(
            pick_order(std::slice::from_ref(&p), 1550, tol),
            Pick::Late(&p)
        );
        // A waiting order beside a paid one on the same slot: the waiting one is credited.
        assert_eq!(
            pick_order(&[p.clone(), b.clone()], 1700, tol),
            Pick::Credit(&b)
        );
        // Before any order existed: nothing.
        assert_eq!(pick_order(&[b], 1000, tol), Pick::Nothing);
    }
}
