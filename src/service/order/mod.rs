//! Orders: creation with a unique payable amount, repeat semantics, cancel, expiry, and the entry
//! point the chain watchers call — [`credit_transfer`], "this transfer pays that order".
//!
//! Invariants:
//! - the (network, token, address, amount) slot of a waiting order is reserved by the
//!   database's unique index `orders_live_slot_key`, never by an in-process lock, so any number of instances can
//!   create orders concurrently;
//! - every status change goes through `OrderStatus::transition` and a compare-and-swap update;
//! - a transfer is recorded once (unique on network + tx hash + log index) and credits at most
//!   one order, once.
//!
//! Rooms: [`create`] (creation, repeats), [`credit`] (transfers → payments, callbacks queued),
//! [`expire`] (the status compare-and-swap, cancel, expiry, the sweeper). This module holds the
//! shared types, the error and the finders; every public item is re-exported here.
mod callback;
pub mod choice;
pub mod confirming;
mod create;
mod credit;
mod expire;
pub mod resolve;
pub mod search;
pub mod switch;

use rust_decimal::Decimal;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

pub use self::{
    callback::queue_callback,
    create::{Created, create_order},
    credit::{CreditOutcome, credit_transfer, credit_transfer_in, observe_credit, tx_hash_used},
    expire::{ExpireOutcome, Swept, cancel_order, expire_due, expire_order, sweep},
    switch::{Switched, children, supported_assets, supported_networks, switch_network},
};
use super::merchant::Merchant;
pub use crate::domain::{protocol::Protocol, transfer::IncomingTransfer};
use crate::{
    config::Config,
    domain::{
        network::{Network, Token},
        order::{MerchantId, Order, TransitionError},
    },
    queue::JobError,
    store::{self, entities::order},
};

/// Callback delivery state stored in `orders.callback_state`.
pub mod callback_state {
    /// Paid, callback not yet queued (the sweeper queues it).
    pub const PENDING: i16 = 0;
    pub const QUEUED: i16 = 1;
    pub const DELIVERED: i16 = 2;
    /// Gave up after `notify_max_attempts`; an admin can resend.
    pub const FAILED: i16 = 3;
    /// A child order made by a payer's network switch: never called back itself (its parent
    /// is, see `switch`).
    pub const NONE: i16 = 4;
}

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
    /// The token paid (`orders.token`): USDT, USDC.
    pub token: Token,
    pub notify_url: String,
    pub redirect_url: String,
    pub name: String,
    /// Seconds; `None` = `order_expiration_time`.
    pub timeout_secs: Option<i64>,
    /// The algorithm the create request was signed with (`orders.sign_alg`; empty = the
    /// protocol's own): the callback is signed the same way.
    pub sign_alg: String,
    /// EPay's `type` as sent (empty for other protocols).
    pub epay_type: String,
}

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error(
        "order_id `{0}` already exists with different parameters or is no longer payable; use a new order_id"
    )]
    Exists(String),
    #[error("no enabled wallet for network {0}; add one with `epusdt wallet add`")]
    NoWallet(Network),
    #[error("payable amount {0} is below the minimum {1}")]
    AmountTooSmall(Decimal, Decimal),
    #[error(
        "no free amount slot on network {0}: too many waiting orders for this amount; retry later"
    )]
    NoFreeSlot(Network),
    #[error("no USDT rate configured for {0}; set forced_usdt_rate (CNY) or usdt_rates")]
    NoRate(String),
    /// A native coin without a price (10006 too).
    #[error(
        "no USDT price for {coin} on {network}: set one with `epusdt rate price {coin} <USDT per 1 {coin}>` (or PUT /admin/api/v1/prices/{coin}), or usdt_price in [networks.{network}.tokens.{lower}]",
        lower = coin.lower()
    )]
    NoPrice { coin: Token, network: Network },
    #[error("order not found")]
    NotFound,
    #[error("order is not paid; only paid orders have callbacks")]
    NotPaid,
    /// Switch-network: the asset is not offered here (upstream 10016).
    #[error("supported asset not found: {0}; see /payments/gmpay/v1/config")]
    UnsupportedAsset(String),
    /// Switch-network: the order already has its one child (upstream 10011).
    #[error("exceeded maximum sub-order limit: this order was already switched to another network")]
    SubOrderLimit,
    /// Switch-network on a child order (upstream 10012).
    #[error("cannot switch network on a sub-order; switch the original order")]
    CannotSwitchChild,
    /// Switch-network on an order that is not waiting for payment (upstream 10013).
    #[error("order is not awaiting payment")]
    NotWaiting,
    #[error("{0}")]
    Transition(#[from] TransitionError),
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error("job queue: {0}")]
    Queue(#[from] JobError),
    #[error("merchant: {0}")]
    Merchant(#[from] super::merchant::MerchantError),
    /// A stored order that does not parse (see `store::order`).
    #[error("{0}")]
    Row(#[from] store::order::RowError),
}

/// Rows → aggregates; the first row that does not parse fails the whole read.
pub(crate) fn orders(rows: Vec<order::Model>) -> Result<Vec<Order>, OrderError> {
    rows.into_iter()
        .map(|r| Order::try_from(r).map_err(OrderError::from))
        .collect()
}

/// Row → aggregate, if there is a row.
pub(crate) fn maybe_order(row: Option<order::Model>) -> Result<Option<Order>, OrderError> {
    Ok(row.map(Order::try_from).transpose()?)
}

async fn find_by_merchant_order(
    db: &impl ConnectionTrait,
    merchant_id: MerchantId,
    order_id: &str,
) -> Result<Option<Order>, OrderError> {
    let row = order::Entity::find()
        .filter(order::Column::MerchantId.eq(merchant_id.get()))
        .filter(order::Column::OrderId.eq(order_id))
        .one(db)
        .await?;
    maybe_order(row)
}

pub async fn find_by_trade_id(
    db: &impl ConnectionTrait,
    trade_id: &str,
) -> Result<Option<Order>, OrderError> {
    let row = order::Entity::find()
        .filter(order::Column::TradeId.eq(trade_id))
        .one(db)
        .await?;
    maybe_order(row)
}

/// The order with this row id.
pub async fn find_by_id(db: &impl ConnectionTrait, id: i64) -> Result<Option<Order>, OrderError> {
    maybe_order(order::Entity::find_by_id(id).one(db).await?)
}
