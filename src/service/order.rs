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
use crate::{
    config::Config,
    domain::{
        amount,
        network::Network,
        order::{OrderStatus, TransitionError, flags},
    },
    jobs::{Job, JobError, JobQueue},
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

/// How far back a transfer's block time may precede the order's creation (clock skew between
/// this server and the chain).
const CLOCK_SKEW_SECS: i64 = 60;
/// How long after expiry a matching transfer is still recorded against the order as late.
const LATE_WINDOW_SECS: i64 = 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    V1,
    GmPay,
    EPay,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::V1 => "v1",
            Protocol::GmPay => "gmpay",
            Protocol::EPay => "epay",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "v1" => Protocol::V1,
            "gmpay" => Protocol::GmPay,
            "epay" => Protocol::EPay,
            _ => return None,
        })
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
                        // Without its expiry job the slot would stay reserved: give it back.
                        let _ = change_status(db, &order, OrderStatus::Cancelled).await;
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
/// changed the order first (the caller re-reads if it cares).
async fn change_status(
    db: &impl ConnectionTrait,
    o: &order::Model,
    to: OrderStatus,
) -> Result<bool, OrderError> {
    let from = status_of(o);
    from.transition(to)?;
    let live: Option<i16> = if to.is_live() { Some(1) } else { None };
    let res = order::Entity::update_many()
        .col_expr(order::Column::Status, Expr::value(to.code()))
        .col_expr(order::Column::LiveSlot, Expr::value(live))
        .col_expr(order::Column::UpdatedAt, Expr::value(now()))
        .filter(order::Column::Id.eq(o.id))
        .filter(order::Column::Status.eq(from.code()))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Merchant-initiated cancel of a waiting order.
pub async fn cancel_order(
    db: &DatabaseConnection,
    merchant: &Merchant,
    trade_id: &str,
) -> Result<order::Model, OrderError> {
    let o = find_by_trade_id(db, trade_id)
        .await?
        .filter(|o| o.merchant_id == merchant.id)
        .ok_or(OrderError::NotFound)?;
    if !change_status(db, &o, OrderStatus::Cancelled).await? {
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
    Ok(if change_status(db, &o, OrderStatus::Expired).await? {
        tracing::info!(trade_id, "order expired");
        ExpireOutcome::Expired
    } else {
        ExpireOutcome::Settled
    })
}

/// A token transfer seen on chain at or below the confirmed head.
#[derive(Debug, Clone)]
pub struct IncomingTransfer {
    pub network: Network,
    pub tx_hash: String,
    pub log_index: i64,
    pub block_number: i64,
    pub block_hash: String,
    pub token_contract: String,
    pub from_address: String,
    /// Normalised like wallets' addresses (TRON base58, EVM lower-case 0x).
    pub to_address: String,
    /// Token amount (already divided by the token's decimals).
    pub amount: Decimal,
    /// Unix seconds.
    pub block_time: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreditOutcome {
    /// The order is now paid; its callback must be queued.
    Paid {
        order_id: i64,
        trade_id: String,
    },
    /// This (network, tx, log index) was recorded before: replay, no effect.
    Duplicate,
    /// Matches an order whose window had closed; flagged, not credited.
    Late {
        order_id: i64,
    },
    /// Went to an address with exactly one waiting order, with a different amount; flagged.
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
            CreditOutcome::Partial { .. } => "partial",
            CreditOutcome::Overpaid { .. } => "overpaid",
            CreditOutcome::Unmatched => "unmatched",
        }
    }
}

/// Records the transfer and credits the order it pays, inside the caller's transaction (the
/// chain watcher commits it together with its cursor). Idempotent: a replayed transfer is a
/// no-op. The caller queues the callback after commit with [`queue_callback`]; the sweeper
/// queues it if the process dies in between.
pub async fn credit_transfer_in(
    txn: &sea_orm::DatabaseTransaction,
    t: &IncomingTransfer,
) -> Result<CreditOutcome, OrderError> {
    let amount_text = amount::canonical(t.amount);
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
    // Unique (network, tx_hash, log_index): a replay stops here. The insert runs in a savepoint
    // so a violation leaves the caller's transaction usable on PostgreSQL.
    let existing = transfer::Entity::find()
        .filter(transfer::Column::Network.eq(t.network.as_str()))
        .filter(transfer::Column::TxHash.eq(&t.tx_hash))
        .filter(transfer::Column::LogIndex.eq(t.log_index))
        .one(txn)
        .await?;
    if existing.is_some() {
        return Ok(CreditOutcome::Duplicate);
    }
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

    // Same slot, paid within the order's window (waiting, or expired by a job that ran before
    // the watcher saw the block).
    let candidates = order::Entity::find()
        .filter(order::Column::Network.eq(t.network.as_str()))
        .filter(order::Column::Address.eq(&t.to_address))
        .filter(order::Column::ActualAmount.eq(&amount_text))
        .filter(order::Column::Status.is_in([
            OrderStatus::Waiting.code(),
            OrderStatus::Expired.code(),
            OrderStatus::Cancelled.code(),
        ]))
        .filter(order::Column::CreatedAt.lte(t.block_time + CLOCK_SKEW_SECS))
        .filter(order::Column::ExpiresAt.gte(t.block_time - LATE_WINDOW_SECS))
        .order_by_desc(order::Column::Id)
        .limit(16)
        .all(txn)
        .await?;
    let candidate = match pick_order(&candidates, t.block_time) {
        Pick::Credit(o) => Some((o.clone(), true)),
        Pick::Late(o) => Some((o.clone(), false)),
        Pick::Nothing => None,
    };

    let outcome = match candidate {
        Some((o, true)) => {
            let from = status_of(&o);
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
            if res.rows_affected == 1 {
                CreditOutcome::Paid {
                    order_id: o.id,
                    trade_id: o.trade_id,
                }
            } else {
                // Paid by another transfer a moment ago: this one is extra money to the address.
                CreditOutcome::Unmatched
            }
        }
        Some((o, false)) => {
            set_flag(txn, o.id, flags::LATE).await?;
            CreditOutcome::Late { order_id: o.id }
        }
        None => {
            // Exactly one waiting order on that address: the payer probably mistyped the amount.
            let waiting = order::Entity::find()
                .filter(order::Column::Network.eq(t.network.as_str()))
                .filter(order::Column::Address.eq(&t.to_address))
                .filter(order::Column::Status.eq(OrderStatus::Waiting.code()))
                .limit(2)
                .all(txn)
                .await?;
            match waiting.as_slice() {
                [o] => {
                    let paid_less = amount::canonical(t.amount) != o.actual_amount
                        && Decimal::from_str_exact(&o.actual_amount)
                            .map(|a| t.amount < a)
                            .unwrap_or(false);
                    if paid_less {
                        set_flag(txn, o.id, flags::PARTIAL).await?;
                        CreditOutcome::Partial { order_id: o.id }
                    } else {
                        set_flag(txn, o.id, flags::OVERPAID).await?;
                        CreditOutcome::Overpaid { order_id: o.id }
                    }
                }
                _ => CreditOutcome::Unmatched,
            }
        }
    };
    let order_ref = match &outcome {
        CreditOutcome::Paid { order_id, .. }
        | CreditOutcome::Late { order_id }
        | CreditOutcome::Partial { order_id }
        | CreditOutcome::Overpaid { order_id } => Some(*order_id),
        _ => None,
    };
    transfer::Entity::update_many()
        .col_expr(transfer::Column::Kind, Expr::value(outcome.kind()))
        .col_expr(transfer::Column::OrderId, Expr::value(order_ref))
        .filter(transfer::Column::Id.eq(transfer_id))
        .exec(txn)
        .await?;
    tracing::info!(network = %t.network, tx = %t.tx_hash, log_index = t.log_index, amount = %amount_text, outcome = outcome.kind(), "transfer recorded");
    Ok(outcome)
}

/// Which order a transfer mined at `block_time` pays, among the orders that hold or held its
/// (network, address, amount) slot — a slot is reused once an order expires, so several can match.
#[derive(Debug, PartialEq)]
enum Pick<'a> {
    /// Credit this order.
    Credit(&'a order::Model),
    /// Record against this order as late (or paid after a cancel); never credited.
    Late(&'a order::Model),
    Nothing,
}

/// 1. the newest creditable (waiting or expired, not cancelled) order whose window
///    `[created_at, expires_at]` contains the block time;
/// 2. else the newest one whose window contains it allowing `CLOCK_SKEW_SECS` before creation (the
///    chain's clock behind ours);
/// 3. else the newest order the payment came too late for, or that was cancelled: flagged only.
///
/// Rule 1 before rule 2 matters: a payment mined just before order A expired, but seen after
/// A's slot went to a new order B, pays A — not B, even though B is newer and within the skew.
fn pick_order(cands: &[order::Model], block_time: i64) -> Pick<'_> {
    fn newest_of<'a>(it: impl Iterator<Item = &'a order::Model>) -> Option<&'a order::Model> {
        it.max_by_key(|o| (o.created_at, o.id))
    }
    let creditable = |o: &&order::Model| status_of(o) != OrderStatus::Cancelled;
    if let Some(o) = newest_of(
        cands
            .iter()
            .filter(creditable)
            .filter(|o| o.created_at <= block_time && block_time <= o.expires_at),
    ) {
        return Pick::Credit(o);
    }
    if let Some(o) = newest_of(
        cands
            .iter()
            .filter(creditable)
            .filter(|o| o.created_at - CLOCK_SKEW_SECS <= block_time && block_time <= o.expires_at),
    ) {
        return Pick::Credit(o);
    }
    match newest_of(
        cands
            .iter()
            .filter(|o| o.created_at - CLOCK_SKEW_SECS <= block_time),
    ) {
        Some(o) => Pick::Late(o),
        None => Pick::Nothing,
    }
}

async fn set_flag(txn: &impl ConnectionTrait, order_id: i64, flag: i32) -> Result<(), DbErr> {
    // flags | flag, written portably as a read-modify-write inside the caller's transaction.
    if let Some(o) = order::Entity::find_by_id(order_id).one(txn).await? {
        order::Entity::update_many()
            .col_expr(order::Column::Flags, Expr::value(o.flags | flag))
            .col_expr(order::Column::UpdatedAt, Expr::value(now()))
            .filter(order::Column::Id.eq(order_id))
            .exec(txn)
            .await?;
    }
    Ok(())
}

/// [`credit_transfer_in`] in its own transaction, then queues the callback.
pub async fn credit_transfer(
    db: &DatabaseConnection,
    queue: &JobQueue,
    t: &IncomingTransfer,
) -> Result<CreditOutcome, OrderError> {
    let txn = store::begin_write(db).await?;
    let outcome = credit_transfer_in(&txn, t).await?;
    txn.commit().await?;
    if let CreditOutcome::Paid { order_id, .. } = &outcome {
        queue_callback(db, queue, *order_id).await?;
    }
    Ok(outcome)
}

/// Queues the first callback attempt and marks it queued. If this fails (or the process dies
/// first) the order stays `PENDING` and [`sweep`] queues it.
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
        .filter(order::Column::Id.eq(order_id))
        .filter(order::Column::CallbackState.eq(callback_state::PENDING))
        .exec(db)
        .await?;
    Ok(())
}

/// Safety net run periodically by every instance: expires overdue waiting orders whose expiry
/// job was lost and queues callbacks of paid orders that were never queued. Both are idempotent.
pub async fn sweep(
    db: &DatabaseConnection,
    queue: &JobQueue,
) -> Result<(usize, usize), OrderError> {
    let now = now();
    let overdue = order::Entity::find()
        .filter(order::Column::Status.eq(OrderStatus::Waiting.code()))
        .filter(order::Column::ExpiresAt.lt(now - 5))
        .limit(500)
        .all(db)
        .await?;
    let mut expired = 0;
    for o in &overdue {
        if change_status(db, o, OrderStatus::Expired).await? {
            expired += 1;
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
    Ok((expired, unqueued.len()))
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
            created_at,
            updated_at: created_at,
            expires_at,
            paid_at: None,
        }
    }

    #[test]
    fn a_reused_slot_credits_the_order_whose_window_holds_the_payment() {
        use OrderStatus::*;
        // A: 1000..1600, expired; B got the slot at 1610. Payment mined at 1590, seen later.
        let a = row(1, Expired, 1000, 1600);
        let b = row(2, Waiting, 1610, 2210);
        let cands = vec![b.clone(), a.clone()];
        assert_eq!(pick_order(&cands, 1590), Pick::Credit(&a));
        // Mined after B was created: B.
        assert_eq!(pick_order(&cands, 1700), Pick::Credit(&b));
        // Chain clock slightly behind ours, no other order: B within the skew.
        assert_eq!(pick_order(std::slice::from_ref(&b), 1590), Pick::Credit(&b));
        // After A expired and before B existed (and beyond the skew): late for A.
        assert_eq!(pick_order(std::slice::from_ref(&a), 1700), Pick::Late(&a));
        // A cancelled order is never credited.
        let c = row(3, Cancelled, 1000, 1600);
        assert_eq!(pick_order(std::slice::from_ref(&c), 1500), Pick::Late(&c));
        // Before any order existed: nothing.
        assert_eq!(pick_order(&[b], 1000), Pick::Nothing);
    }

    #[test]
    fn trade_ids_are_upstream_shaped() {
        let t = new_trade_id();
        assert_eq!(t.len(), 24);
        assert!(t.chars().all(|c| c.is_ascii_digit()));
    }
}
