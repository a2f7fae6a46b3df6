//! The status compare-and-swap and what drives it without a payment: merchant cancel, expiry
//! ([`expire_due`], every second from the orders' own `expires_at`; [`expire_order`] for a
//! stored legacy expiry job), and the periodic [`sweep`] (lost callbacks, slot release).
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::Expr,
};

use super::{OrderError, OrderRules, callback_state, find_by_trade_id, queue_callback};
use crate::{
    domain::order::{MerchantId, Order, OrderId, OrderStatus, TransitionError},
    queue::{Job, JobQueue},
    service::{merchant::Merchant, now},
    store::entities::order,
    telemetry::metrics,
};

/// The compare-and-swap every status change goes through. Returns `false` when another actor
/// changed the order first (the caller re-reads if it cares). With `hold_slot` an order that
/// stops waiting keeps its amount slot (released later by [`sweep`] after the grace period).
pub(super) async fn change_status(
    db: &impl ConnectionTrait,
    id: OrderId,
    from: OrderStatus,
    to: OrderStatus,
    hold_slot: bool,
) -> Result<bool, OrderError> {
    from.transition(to)?;
    let mut update = order::Entity::update_many()
        .col_expr(order::Column::Status, Expr::value(to.code()))
        .col_expr(order::Column::UpdatedAt, Expr::value(now()));
    if to.is_live() {
        update = update.col_expr(order::Column::LiveSlot, Expr::value(Some(1i16)));
    } else if !hold_slot {
        update = update.col_expr(order::Column::LiveSlot, Expr::value(Option::<i16>::None));
    }
    let res = update
        .filter(order::Column::Id.eq(id.get()))
        .filter(order::Column::Status.eq(from.code()))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Merchant-initiated cancel of a waiting order.
pub async fn cancel_order(
    db: &DatabaseConnection,
    rules: &OrderRules,
    merchant: &Merchant,
    trade_id: &str,
) -> Result<Order, OrderError> {
    let o = find_by_trade_id(db, trade_id)
        .await?
        .filter(|o| o.merchant_id == MerchantId(merchant.id))
        .ok_or(OrderError::NotFound)?;
    let hold = rules.slot_reuse_grace_secs > 0;
    if !change_status(db, o.id, o.status, OrderStatus::Cancelled, hold).await? {
        let now = find_by_trade_id(db, trade_id)
            .await?
            .ok_or(OrderError::NotFound)?;
        return Err(TransitionError {
            from: now.status,
            to: OrderStatus::Cancelled,
        }
        .into());
    }
    metrics::order_event(
        metrics::OrderEvent::Cancelled,
        o.network,
        &o.token,
        o.actual_amount,
    );
    super::switch::end_children(db, trade_id, OrderStatus::Cancelled, hold).await?;
    find_by_trade_id(db, trade_id)
        .await?
        .ok_or(OrderError::NotFound)
}

/// What a (legacy) expiry job should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum ExpireOutcome {
    Expired,
    /// Not waiting any more (paid, cancelled, already expired): nothing to do.
    Settled,
    /// Not due yet (e.g. the job ran early): run again at this unix time.
    NotYet(i64),
}

pub async fn expire_order(
    db: &DatabaseConnection,
    rules: &OrderRules,
    trade_id: &str,
) -> Result<ExpireOutcome, OrderError> {
    let Some(o) = find_by_trade_id(db, trade_id).await? else {
        return Ok(ExpireOutcome::Settled);
    };
    if o.status != OrderStatus::Waiting {
        return Ok(ExpireOutcome::Settled);
    }
    if o.expires_at > now() {
        return Ok(ExpireOutcome::NotYet(o.expires_at));
    }
    let hold = rules.slot_reuse_grace_secs > 0;
    Ok(
        if change_status(db, o.id, o.status, OrderStatus::Expired, hold).await? {
            tracing::info!(trade_id, "order expired");
            metrics::order_event(
                metrics::OrderEvent::Expired,
                o.network,
                &o.token,
                o.actual_amount,
            );
            super::switch::end_children(db, trade_id, OrderStatus::Expired, hold).await?;
            ExpireOutcome::Expired
        } else {
            ExpireOutcome::Settled
        },
    )
}

/// Most orders one [`expire_due`] pass expires; the rest follow on the next pass.
pub const EXPIRE_BATCH: u64 = 1000;

/// Expires every waiting order whose `expires_at` has passed (at most [`EXPIRE_BATCH`] per
/// call, oldest first) through the status compare-and-swap, ending switched children with
/// their parent. Run every second by every instance (`app`): the order row is the durable
/// schedule, so a restart, a second instance or a lost job changes nothing. Returns how many
/// it expired.
pub async fn expire_due(db: &DatabaseConnection, rules: &OrderRules) -> Result<usize, OrderError> {
    let now = now();
    let due: Vec<(i64, String, Option<String>, String, String, String)> = order::Entity::find()
        .select_only()
        .column(order::Column::Id)
        .column(order::Column::TradeId)
        .column(order::Column::ParentTradeId)
        .column(order::Column::Network)
        .column(order::Column::Token)
        .column(order::Column::ActualAmount)
        .filter(order::Column::Status.eq(OrderStatus::Waiting.code()))
        .filter(order::Column::ExpiresAt.lte(now))
        .order_by_asc(order::Column::ExpiresAt)
        .limit(EXPIRE_BATCH)
        .into_tuple()
        .all(db)
        .await?;
    let hold = rules.slot_reuse_grace_secs > 0;
    let mut expired = 0;
    for (id, trade_id, parent, network, token, amount) in due {
        if change_status(
            db,
            OrderId(id),
            OrderStatus::Waiting,
            OrderStatus::Expired,
            hold,
        )
        .await?
        {
            expired += 1;
            tracing::info!(trade_id, "order expired");
            // Only a parent (an order without one) can have switched children. A child is
            // not counted: its parent is (as for created orders).
            if parent.is_none() {
                super::switch::end_children(db, &trade_id, OrderStatus::Expired, hold).await?;
                if crate::domain::network::valid_name(&network).is_ok() {
                    let network = crate::domain::network::Network::named(&network);
                    let amount = amount.parse().unwrap_or_default();
                    metrics::order_event(metrics::OrderEvent::Expired, network, &token, amount);
                }
            }
        }
    }
    Ok(expired)
}

/// What one [`sweep`] repaired.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Waiting orders past their expiry (normally [`expire_due`] has done it already).
    pub expired: usize,
    /// Paid orders whose first callback was never queued.
    pub queued: usize,
    /// Queued callbacks long overdue: their job was lost, queued again.
    pub requeued: usize,
    /// Amount slots of expired/cancelled orders released after the grace period.
    pub released: u64,
}

impl Swept {
    /// Whether a lost job was made good (expiring orders is routine, not a repair).
    pub fn repaired(&self) -> bool {
        self.queued + self.requeued > 0
    }
}

/// Safety net run periodically by every instance: expires overdue waiting orders (as
/// [`expire_due`] does every second), queues callbacks of paid orders that were never queued, re-queues queued
/// callbacks whose job was lost, and releases amount slots held past the grace period. Each
/// step is idempotent and safe with several instances sweeping at once.
pub async fn sweep(
    db: &DatabaseConnection,
    queue: &JobQueue,
    rules: &OrderRules,
) -> Result<Swept, OrderError> {
    let now = now();
    let mut swept = Swept::default();
    let hold = rules.slot_reuse_grace_secs > 0;
    swept.expired = expire_due(db, rules).await?;
    let unqueued = order::Entity::find()
        .filter(order::Column::Status.eq(OrderStatus::Paid.code()))
        .filter(order::Column::CallbackState.eq(callback_state::PENDING))
        .filter(order::Column::UpdatedAt.lt(now - 10))
        .limit(500)
        .all(db)
        .await?;
    for o in &unqueued {
        queue_callback(db, queue, o.id).await?;
    }
    swept.queued = unqueued.len();

    // A queued callback is due at `callback_due_at`; long after that, nothing will run it.
    let stale = now - rules.callback_requeue_after_secs;
    let lost = order::Entity::find()
        .filter(order::Column::Status.eq(OrderStatus::Paid.code()))
        .filter(order::Column::CallbackState.eq(callback_state::QUEUED))
        .filter(
            sea_orm::Condition::any()
                .add(order::Column::CallbackDueAt.lt(stale))
                .add(
                    sea_orm::Condition::all()
                        .add(order::Column::CallbackDueAt.is_null())
                        .add(order::Column::UpdatedAt.lt(stale)),
                ),
        )
        .limit(500)
        .all(db)
        .await?;
    for o in &lost {
        // Claim it first (compare-and-swap on the due time) so two sweeping instances queue it
        // once; the next attempt number follows the attempts already recorded.
        let claimed = order::Entity::update_many()
            .col_expr(order::Column::CallbackDueAt, Expr::value(Some(now)))
            .filter(order::Column::Id.eq(o.id))
            .filter(order::Column::CallbackState.eq(callback_state::QUEUED))
            .filter(match o.callback_due_at {
                Some(at) => order::Column::CallbackDueAt.eq(at),
                None => order::Column::CallbackDueAt.is_null(),
            })
            .exec(db)
            .await?;
        if claimed.rows_affected != 1 {
            continue;
        }
        let attempt = u32::try_from(o.callback_attempts)
            .unwrap_or(0)
            .saturating_add(1);
        tracing::warn!(trade_id = %o.trade_id, attempt, due_at = ?o.callback_due_at, "queued callback long overdue (its job was lost); queueing it again");
        queue
            .push(
                Job::Notify {
                    order_id: o.id,
                    attempt,
                },
                None,
            )
            .await?;
        swept.requeued += 1;
    }

    if hold {
        let released = order::Entity::update_many()
            .col_expr(order::Column::LiveSlot, Expr::value(Option::<i16>::None))
            .filter(order::Column::LiveSlot.eq(1))
            .filter(
                order::Column::Status
                    .is_in([OrderStatus::Expired.code(), OrderStatus::Cancelled.code()]),
            )
            .filter(order::Column::UpdatedAt.lte(now - rules.slot_reuse_grace_secs))
            .exec(db)
            .await?;
        swept.released = released.rows_affected;
    }
    Ok(swept)
}
