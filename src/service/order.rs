//! Orders: creation with a unique payable amount, repeat semantics, cancel, expiry, and the entry
//! point the chain watchers call — [`credit_transfer`], "this transfer pays that order".
//!
//! Invariants:
//! - the (network, address, amount) slot of a waiting order is reserved by the database's unique
//!   index `orders_live_slot_key`, never by an in-process lock, so any number of instances can
//!   create orders concurrently;
//! - every status change goes through `OrderStatus::transition` and a compare-and-swap update;
//! - a transfer is recorded once (unique on network + tx hash + log index) and credits at most
//!   one order, once.
use rust_decimal::Decimal;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait, sea_query::Expr,
};
use sha2::{Digest, Sha256};

use super::{merchant::Merchant, now, rate, wallet};
pub use crate::domain::{protocol::Protocol, transfer::IncomingTransfer};
use crate::{
    config::Config,
    domain::{
        amount,
        network::Network,
        order::{OrderStatus, TransitionError, flags},
    },
    queue::{Job, JobError, JobQueue},
    store::{
        self,
        entities::{order, transfer},
    },
};

/// Callback delivery state stored in `orders.callback_state`.
pub mod callback_state {
    /// Paid, callback not yet queued (the sweeper queues it).
    pub const PENDING: i16 = 0;
    pub const QUEUED: i16 = 1;
    pub const DELIVERED: i16 = 2;
    /// Gave up after `notify_max_attempts`; an admin can resend.
    pub const FAILED: i16 = 3;
}

/// How long after expiry a matching transfer is still recorded against the order as late.
const LATE_WINDOW_SECS: i64 = 24 * 3600;

/// The configurable rules of order matching and slot reuse (see `Config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderRules {
    /// How far a transfer's block time may precede an order's creation and still pay it.
    pub clock_tolerance_secs: i64,
    /// How long an expired or cancelled order keeps its amount slot.
    pub slot_reuse_grace_secs: i64,
    /// How overdue a queued callback must be before the sweeper queues it again.
    pub callback_requeue_after_secs: i64,
}

impl OrderRules {
    pub fn from_config(c: &Config) -> Self {
        Self {
            clock_tolerance_secs: i64::from(c.payment_clock_tolerance_secs),
            slot_reuse_grace_secs: i64::from(c.slot_reuse_grace_secs),
            callback_requeue_after_secs: i64::from(c.callback_requeue_after_secs),
        }
    }
}

impl Default for OrderRules {
    fn default() -> Self {
        Self::from_config(&Config::default())
    }
}

/// A validated create-order request (the HTTP layer has checked shapes and signatures).
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub merchant: Merchant,
    pub protocol: Protocol,
    pub order_id: String,
    pub currency: String,
    /// Fiat amount.
    pub amount: Decimal,
    pub network: Network,
    pub notify_url: String,
    pub redirect_url: String,
    pub name: String,
    /// Seconds; `None` = `order_expiration_time`.
    pub timeout_secs: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error(
        "order_id `{0}` already exists with different parameters or is no longer payable; use a new order_id"
    )]
    Exists(String),
    #[error("no enabled wallet for network {0}; add one with `epusdt wallet add`")]
    NoWallet(Network),
    #[error("payable amount {0} USDT is below the minimum {1}")]
    AmountTooSmall(Decimal, Decimal),
    #[error(
        "no free amount slot on network {0}: too many waiting orders for this amount; retry later"
    )]
    NoFreeSlot(Network),
    #[error("no USDT rate configured for {0}; set forced_usdt_rate (CNY) or usdt_rates")]
    NoRate(String),
    #[error("order not found")]
    NotFound,
    #[error("order is not paid; only paid orders have callbacks")]
    NotPaid,
    #[error("{0}")]
    Transition(#[from] TransitionError),
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error("job queue: {0}")]
    Queue(#[from] JobError),
    #[error("merchant: {0}")]
    Merchant(#[from] super::merchant::MerchantError),
}

/// The result of a create call: a new order, or the existing one for an identical repeat.
#[derive(Debug, Clone)]
pub struct Created {
    pub order: order::Model,
    pub repeated: bool,
}

fn request_hash(r: &NewOrder) -> String {
    let canon = [
        r.protocol.as_str(),
        &r.order_id,
        &r.currency,
        &amount::canonical(r.amount),
        r.network.as_str(),
        &r.notify_url,
        &r.redirect_url,
        &r.name,
        &r.timeout_secs.map(|t| t.to_string()).unwrap_or_default(),
    ]
    .join("\u{1f}");
    hex::encode(Sha256::digest(canon.as_bytes()))
}

/// Trade ids look like upstream's: `yyyymmddHHMMSS` + 10 random digits.
fn new_trade_id() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    format!(
        "{}{:010}",
        chrono::Utc::now().format("%Y%m%d%H%M%S"),
        rng.random_range(0..10_000_000_000u64)
    )
}

/// Creates an order or returns the identical live one (DESIGN §5).
pub async fn create_order(
    db: &DatabaseConnection,
    config: &Config,
    queue: &JobQueue,
    req: NewOrder,
) -> Result<Created, OrderError> {
    let hash = request_hash(&req);
    if let Some(existing) = find_by_merchant_order(db, req.merchant.id, &req.order_id).await? {
        return repeat_or_conflict(existing, &hash, &req.order_id);
    }
    let rate = rate::usdt_rate(db, config, &req.currency)
        .await?
        .ok_or_else(|| OrderError::NoRate(req.currency.clone()))?;
    let min = config.amount_step;
    let base = amount::fiat_to_token(req.amount, rate, config.amount_precision)
        .ok_or_else(|| OrderError::NoRate(req.currency.clone()))?;
    if base < min {
        return Err(OrderError::AmountTooSmall(base, min));
    }
    let wallets = wallet::receiving(db, req.network, req.merchant.id).await?;
    if wallets.is_empty() {
        return Err(OrderError::NoWallet(req.network));
    }
    let candidates: Vec<String> =
        amount::candidates(base, config.amount_step, config.amount_max_tries)
            .map(amount::canonical)
            .collect();
    // Usually one of the first slots is free: try them without reading anything (a collision
    // costs one failed insert, an index probe). After a few collisions, read which candidate
    // slots waiting orders hold (one query) and skip those. The unique index decides every race
    // either way. Wallets are tried from a random one onwards at each amount, so concurrent
    // orders for one amount spread over the wallets instead of all colliding on the first.
    const OPTIMISTIC_TRIES: usize = 4;
    let mut taken: std::collections::HashSet<(String, String)> = Default::default();
    let mut taken_loaded = false;
    let mut transient = 0;
    let offset = {
        use rand::Rng;
        rand::rng().random_range(0..wallets.len())
    };

    let now = now();
    let ttl = req
        .timeout_secs
        .unwrap_or(i64::from(config.order_expiration_time) * 60);
    for amount_text in &candidates {
        for i in 0..wallets.len() {
            let w = &wallets[(offset + i) % wallets.len()];
            let slot = (w.address.clone(), amount_text.clone());
            if taken.contains(&slot) {
                continue;
            }
            if !taken_loaded && taken.len() >= OPTIMISTIC_TRIES {
                taken_loaded = true;
                taken.extend(live_slots(db, req.network, &wallets, &candidates).await?);
                if taken.contains(&slot) {
                    continue;
                }
            }
            let row = order::ActiveModel {
                trade_id: Set(new_trade_id()),
                merchant_id: Set(req.merchant.id),
                order_id: Set(req.order_id.clone()),
                protocol: Set(req.protocol.as_str().into()),
                network: Set(req.network.as_str().into()),
                token: Set("USDT".into()),
                currency: Set(req.currency.clone()),
                amount: Set(amount::canonical(req.amount)),
                rate: Set(amount::canonical(rate)),
                actual_amount: Set(amount_text.clone()),
                address: Set(w.address.clone()),
                status: Set(OrderStatus::Waiting.code()),
                live_slot: Set(Some(1)),
                flags: Set(0),
                notify_url: Set(req.notify_url.clone()),
                redirect_url: Set(req.redirect_url.clone()),
                name: Set(req.name.clone()),
                request_hash: Set(hash.clone()),
                block_transaction_id: Set(None),
                paid_amount: Set(None),
                callback_state: Set(callback_state::PENDING),
                callback_attempts: Set(0),
                created_at: Set(now),
                updated_at: Set(now),
                expires_at: Set(now + ttl),
                paid_at: Set(None),
                ..Default::default()
            };
            match row.insert(db).await {
                Ok(order) => {
                    let at = chrono::DateTime::from_timestamp(order.expires_at, 0);
                    if let Err(e) = queue
                        .push(
                            Job::Expire {
                                trade_id: order.trade_id.clone(),
                            },
                            at,
                        )
                        .await
                    {
                        // Without its expiry job the slot would stay reserved: give it back
                        // (nobody saw this order, so no grace period). If even that fails the
                        // sweeper expires it once overdue; either way the caller gets the error.
                        tracing::error!(trade_id = %order.trade_id, error = %e, "could not schedule the expiry job; the order is cancelled and the request fails");
                        if let Err(c) =
                            change_status(db, &order, OrderStatus::Cancelled, false).await
                        {
                            tracing::error!(trade_id = %order.trade_id, error = %c, "could not cancel the order whose expiry job failed; the sweeper expires it when overdue");
                        }
                        return Err(e.into());
                    }
                    return Ok(Created {
                        order,
                        repeated: false,
                    });
                }
                Err(e)
                    if store::is_unique_violation(
                        &e,
                        "orders_live_slot_key",
                        "orders.network, orders.address, orders.actual_amount",
                    ) =>
                {
                    taken.insert(slot);
                }
                Err(e)
                    if store::is_unique_violation(
                        &e,
                        "orders_merchant_order_id_key",
                        "orders.merchant_id, orders.order_id",
                    ) =>
                {
                    // A concurrent identical request won the race.
                    let existing = find_by_merchant_order(db, req.merchant.id, &req.order_id)
                        .await?
                        .ok_or(OrderError::NotFound)?;
                    return repeat_or_conflict(existing, &hash, &req.order_id);
                }
                Err(e) if store::is_transient(&e) && transient < store::TRANSIENT_ATTEMPTS => {
                    // A deadlock with a concurrent credit (MySQL locks the unique index's gap on a
                    // duplicate check): the insert was rolled back; try the next slot.
                    transient += 1;
                    tracing::debug!(attempt = transient, error = %e, "transient conflict creating an order; retrying");
                    store::transient_pause(transient).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Err(OrderError::NoFreeSlot(req.network))
}

/// (address, amount) slots among `candidates` that waiting orders hold on these wallets.
async fn live_slots(
    db: &DatabaseConnection,
    network: Network,
    wallets: &[crate::store::entities::wallet::Model],
    candidates: &[String],
) -> Result<Vec<(String, String)>, DbErr> {
    order::Entity::find()
        .select_only()
        .column(order::Column::Address)
        .column(order::Column::ActualAmount)
        .filter(order::Column::Network.eq(network.as_str()))
        .filter(order::Column::LiveSlot.eq(1))
        .filter(order::Column::Address.is_in(wallets.iter().map(|w| w.address.clone())))
        .filter(order::Column::ActualAmount.is_in(candidates.iter().cloned()))
        .into_tuple::<(String, String)>()
        .all(db)
        .await
}

fn repeat_or_conflict(
    existing: order::Model,
    hash: &str,
    order_id: &str,
) -> Result<Created, OrderError> {
    let live = existing.status == OrderStatus::Waiting.code() && existing.expires_at > now();
    if live && existing.request_hash == hash {
        Ok(Created {
            order: existing,
            repeated: true,
        })
    } else {
        Err(OrderError::Exists(order_id.to_string()))
    }
}

async fn find_by_merchant_order(
    db: &impl ConnectionTrait,
    merchant_id: i64,
    order_id: &str,
) -> Result<Option<order::Model>, DbErr> {
    order::Entity::find()
        .filter(order::Column::MerchantId.eq(merchant_id))
        .filter(order::Column::OrderId.eq(order_id))
        .one(db)
        .await
}

pub async fn find_by_trade_id(
    db: &impl ConnectionTrait,
    trade_id: &str,
) -> Result<Option<order::Model>, DbErr> {
    order::Entity::find()
        .filter(order::Column::TradeId.eq(trade_id))
        .one(db)
        .await
}

pub fn status_of(o: &order::Model) -> OrderStatus {
    OrderStatus::from_code(o.status).unwrap_or(OrderStatus::Cancelled)
}

/// The compare-and-swap every status change goes through. Returns `false` when another actor
/// changed the order first (the caller re-reads if it cares). With `hold_slot` an order that
/// stops waiting keeps its amount slot (released later by [`sweep`] after the grace period).
async fn change_status(
    db: &impl ConnectionTrait,
    o: &order::Model,
    to: OrderStatus,
    hold_slot: bool,
) -> Result<bool, OrderError> {
    let from = status_of(o);
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
        .filter(order::Column::Id.eq(o.id))
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
) -> Result<order::Model, OrderError> {
    let o = find_by_trade_id(db, trade_id)
        .await?
        .filter(|o| o.merchant_id == merchant.id)
        .ok_or(OrderError::NotFound)?;
    let hold = rules.slot_reuse_grace_secs > 0;
    if !change_status(db, &o, OrderStatus::Cancelled, hold).await? {
        let now = find_by_trade_id(db, trade_id)
            .await?
            .ok_or(OrderError::NotFound)?;
        return Err(TransitionError {
            from: status_of(&now),
            to: OrderStatus::Cancelled,
        }
        .into());
    }
    find_by_trade_id(db, trade_id)
        .await?
        .ok_or(OrderError::NotFound)
}

/// What the expiry job should do next.
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
    if status_of(&o) != OrderStatus::Waiting {
        return Ok(ExpireOutcome::Settled);
    }
    if o.expires_at > now() {
        return Ok(ExpireOutcome::NotYet(o.expires_at));
    }
    let hold = rules.slot_reuse_grace_secs > 0;
    Ok(
        if change_status(db, &o, OrderStatus::Expired, hold).await? {
            tracing::info!(trade_id, "order expired");
            ExpireOutcome::Expired
        } else {
            ExpireOutcome::Settled
        },
    )
}

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

    // Every order that holds or held this (network, address, amount) slot around the block
    // time, paid ones included (a second payment is recorded against the order it repeats).
    let slot_ids: Vec<i64> = order::Entity::find()
        .select_only()
        .column(order::Column::Id)
        .filter(order::Column::Network.eq(t.network.as_str()))
        .filter(order::Column::Address.eq(&t.to_address))
        .filter(order::Column::ActualAmount.eq(&amount_text))
        .filter(order::Column::CreatedAt.lte(t.block_time + rules.clock_tolerance_secs))
        .filter(order::Column::ExpiresAt.gte(t.block_time - LATE_WINDOW_SECS))
        .order_by_desc(order::Column::Id)
        .limit(16)
        .into_tuple()
        .all(txn)
        .await?;
    let candidates = lock_orders(txn, &slot_ids).await?;

    let outcome = match pick_order(&candidates, t.block_time, rules.clock_tolerance_secs) {
        Pick::Credit(o) => {
            let from = status_of(o);
            from.transition(OrderStatus::Paid)?;
            let res = order::Entity::update_many()
                .col_expr(order::Column::Status, Expr::value(OrderStatus::Paid.code()))
                .col_expr(order::Column::LiveSlot, Expr::value(Option::<i16>::None))
                .col_expr(
                    order::Column::BlockTransactionId,
                    Expr::value(t.tx_hash.clone()),
                )
                .col_expr(order::Column::PaidAmount, Expr::value(amount_text.clone()))
                .col_expr(order::Column::PaidAt, Expr::value(t.block_time))
                .col_expr(order::Column::UpdatedAt, Expr::value(now()))
                .filter(order::Column::Id.eq(o.id))
                .filter(order::Column::Status.eq(from.code()))
                .exec(txn)
                .await?;
            if res.rows_affected != 1 {
                // The row is locked by this transaction: nobody can have changed it since the
                // read. Fail the whole range rather than record the payment wrongly.
                return Err(OrderError::Db(DbErr::Custom(format!(
                    "order {} changed while locked for crediting tx {}",
                    o.trade_id, t.tx_hash
                ))));
            }
            CreditOutcome::Paid {
                order_id: o.id,
                trade_id: o.trade_id.clone(),
            }
        }
        Pick::Late(o) if status_of(o) == OrderStatus::Paid => {
            set_flag(txn, o.id, flags::PAID_TWICE).await?;
            CreditOutcome::PaidTwice { order_id: o.id }
        }
        Pick::Late(o) => {
            set_flag(txn, o.id, flags::LATE).await?;
            CreditOutcome::Late { order_id: o.id }
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

/// The orders with these ids as they are now, locked until the transaction ends (in id order,
/// so two crediting transactions cannot deadlock). Locking by primary key takes no gap locks
/// on MySQL, so concurrent order creation is not blocked.
async fn lock_orders(
    txn: &sea_orm::DatabaseTransaction,
    ids: &[i64],
) -> Result<Vec<order::Model>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut q = order::Entity::find()
        .filter(order::Column::Id.is_in(ids.iter().copied()))
        .order_by_asc(order::Column::Id);
    if txn.get_database_backend() != sea_orm::DbBackend::Sqlite {
        q = q.lock_exclusive();
    }
    q.all(txn).await
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
        .filter(order::Column::Address.eq(&t.to_address))
        .filter(order::Column::Status.eq(OrderStatus::Waiting.code()))
        .filter(order::Column::CreatedAt.lte(t.block_time + rules.clock_tolerance_secs))
        .limit(200)
        .all(txn)
        .await?;
    let nearest = waiting
        .iter()
        .filter_map(|o| {
            Decimal::from_str_exact(&o.actual_amount)
                .ok()
                .map(|a| (o, a))
        })
        .min_by_key(|(o, a)| ((*a - t.amount).abs(), o.created_at, o.id));
    Ok(match nearest {
        Some((o, expected)) if t.amount < expected => {
            set_flag(txn, o.id, flags::PARTIAL).await?;
            CreditOutcome::Partial { order_id: o.id }
        }
        Some((o, _)) => {
            set_flag(txn, o.id, flags::OVERPAID).await?;
            CreditOutcome::Overpaid { order_id: o.id }
        }
        None => CreditOutcome::Unmatched,
    })
}

/// Which order a transfer mined at `block_time` pays, among the orders that hold or held its
/// (network, address, amount) slot — a slot is reused once an order expires, so several can match.
#[derive(Debug, PartialEq)]
enum Pick<'a> {
    /// Credit this order.
    Credit(&'a order::Model),
    /// Record against this order (late, cancelled, or already paid); never credited.
    Late(&'a order::Model),
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
fn pick_order(cands: &[order::Model], block_time: i64, tolerance: i64) -> Pick<'_> {
    fn newest_of<'a>(it: impl Iterator<Item = &'a order::Model>) -> Option<&'a order::Model> {
        it.max_by_key(|o| (o.created_at, o.id))
    }
    let held_before = |o: &&order::Model| o.created_at - tolerance <= block_time;
    let creditable = |o: &&order::Model| {
        matches!(status_of(o), OrderStatus::Waiting | OrderStatus::Expired)
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
async fn set_flag(txn: &impl ConnectionTrait, order_id: i64, flag: i32) -> Result<(), DbErr> {
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
        .filter(order::Column::Id.eq(order_id))
        .exec(txn)
        .await?;
    Ok(())
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
    if let CreditOutcome::Paid { order_id, .. } = &outcome {
        queue_callback(db, queue, *order_id).await?;
    }
    Ok(outcome)
}

/// Queues the first callback attempt and marks it queued (due now). If this fails (or the
/// process dies first) the order stays `PENDING` and [`sweep`] queues it.
pub async fn queue_callback(
    db: &DatabaseConnection,
    queue: &JobQueue,
    order_id: i64,
) -> Result<(), OrderError> {
    queue
        .push(
            Job::Notify {
                order_id,
                attempt: 1,
            },
            None,
        )
        .await?;
    order::Entity::update_many()
        .col_expr(
            order::Column::CallbackState,
            Expr::value(callback_state::QUEUED),
        )
        .col_expr(order::Column::CallbackDueAt, Expr::value(Some(now())))
        .filter(order::Column::Id.eq(order_id))
        .filter(order::Column::CallbackState.eq(callback_state::PENDING))
        .exec(db)
        .await?;
    Ok(())
}

/// What one [`sweep`] repaired.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Waiting orders past their expiry whose expiry job was lost.
    pub expired: usize,
    /// Paid orders whose first callback was never queued.
    pub queued: usize,
    /// Queued callbacks long overdue: their job was lost, queued again.
    pub requeued: usize,
    /// Amount slots of expired/cancelled orders released after the grace period.
    pub released: u64,
}

impl Swept {
    pub fn repaired(&self) -> bool {
        self.expired + self.queued + self.requeued > 0
    }
}

/// Safety net run periodically by every instance: expires overdue waiting orders whose expiry
/// job was lost, queues callbacks of paid orders that were never queued, re-queues queued
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
    let overdue = order::Entity::find()
        .filter(order::Column::Status.eq(OrderStatus::Waiting.code()))
        .filter(order::Column::ExpiresAt.lt(now - 5))
        .limit(500)
        .all(db)
        .await?;
    for o in &overdue {
        if change_status(db, o, OrderStatus::Expired, hold).await? {
            swept.expired += 1;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, status: OrderStatus, created_at: i64, expires_at: i64) -> order::Model {
        order::Model {
            id,
            trade_id: format!("t{id}"),
            merchant_id: 1,
            order_id: format!("o{id}"),
            protocol: "v1".into(),
            network: "tron".into(),
            token: "USDT".into(),
            currency: "CNY".into(),
            amount: "10".into(),
            rate: "7.2".into(),
            actual_amount: "1.39".into(),
            address: "T".into(),
            status: status.code(),
            live_slot: None,
            flags: 0,
            notify_url: String::new(),
            redirect_url: String::new(),
            name: String::new(),
            request_hash: String::new(),
            block_transaction_id: None,
            paid_amount: None,
            callback_state: 0,
            callback_attempts: 0,
            callback_due_at: None,
            created_at,
            updated_at: created_at,
            expires_at,
            paid_at: None,
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

    #[test]
    fn trade_ids_are_upstream_shaped() {
        let t = new_trade_id();
        assert_eq!(t.len(), 24);
        assert!(t.chars().all(|c| c.is_ascii_digit()));
    }
}
