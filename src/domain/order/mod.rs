//! The `Order` aggregate: an order as the gateway reasons about it, with typed fields (status,
//! network, protocol, exact amounts, id newtypes), the status graph ([`status`]) and the ids
//! ([`ids`]). Pure: the store converts rows to and from it (`store::order`); nothing here reads
//! a clock or a database — "now" is always a parameter.

pub mod ids;
pub mod status;

use rust_decimal::Decimal;

pub use ids::{MerchantId, OrderId, TradeId, check_trade_id};
pub use status::{OrderStatus, TransitionError, flags};

use super::{network::Network, protocol::Protocol};

/// One order. Field names follow the `orders` columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: OrderId,
    pub trade_id: TradeId,
    pub merchant_id: MerchantId,
    /// The merchant's own order id (unique per merchant).
    pub order_id: String,
    pub protocol: Protocol,
    pub network: Network,
    pub token: String,
    pub currency: String,
    /// Fiat amount.
    pub amount: Decimal,
    /// Fiat units per token at creation.
    pub rate: Decimal,
    /// Payable token amount (the slot).
    pub actual_amount: Decimal,
    pub address: String,
    /// The stored status; what a client sees is [`Order::effective_status`].
    pub status: OrderStatus,
    /// Whether the order still reserves its (network, address, amount) slot: while waiting,
    /// and for the slot-reuse grace period after it expired or was cancelled.
    pub live_slot: bool,
    /// Bit set of [`flags`].
    pub flags: i32,
    pub notify_url: String,
    pub redirect_url: String,
    pub name: String,
    pub request_hash: String,
    pub block_transaction_id: Option<String>,
    pub paid_amount: Option<Decimal>,
    /// Callback delivery state (`service::order::callback_state`).
    pub callback_state: i16,
    pub callback_attempts: i32,
    /// When the next callback attempt is due (unix seconds), while the callback is queued.
    pub callback_due_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub expires_at: i64,
    pub paid_at: Option<i64>,
    /// The create request's signature algorithm (`md5`, `hmac_sha256`); empty = the protocol's
    /// own. The callback is signed the same way.
    pub sign_alg: String,
    /// The EPay `type` as the shop sent it (empty when none), echoed in the EPay notify.
    pub epay_type: String,
    /// The order a payer's network switch was made from.
    pub parent_trade_id: Option<String>,
}

impl Order {
    /// The status a client sees at `now` (unix seconds): a waiting order at or past its
    /// `expires_at` reads as expired even before the expiry job has run.
    pub fn effective_status(&self, now: i64) -> OrderStatus {
        match self.status {
            OrderStatus::Waiting if self.expires_at <= now => OrderStatus::Expired,
            s => s,
        }
    }

    /// Does this order carry the flag bit?
    pub fn has_flag(&self, flag: i32) -> bool {
        self.flags & flag != 0
    }
}

#[cfg(test)]
pub(crate) mod fixture {
    use super::*;

    /// A waiting TRON order for tests, created at `created_at`, expiring at `expires_at`.
    pub fn order(id: i64, status: OrderStatus, created_at: i64, expires_at: i64) -> Order {
        Order {
            id: OrderId(id),
            trade_id: TradeId::parse(&format!("t{id}")).expect("trade id"),
            merchant_id: MerchantId(1),
            order_id: format!("o{id}"),
            protocol: Protocol::V1,
            network: Network::TRON,
            token: "USDT".into(),
            currency: "CNY".into(),
            amount: Decimal::new(10, 0),
            rate: Decimal::new(72, 1),
            actual_amount: Decimal::new(139, 2),
            address: "T".into(),
            status,
            live_slot: false,
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
            sign_alg: String::new(),
            epay_type: String::new(),
            parent_trade_id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::*;
    use super::*;

    #[test]
    fn waiting_past_expiry_reads_as_expired() {
        let o = fixture::order(1, Waiting, 1000, 1600);
        assert_eq!(o.effective_status(999), Waiting);
        assert_eq!(o.effective_status(1599), Waiting);
        // At the expiry second the order is no longer payable (the checkout agrees).
        assert_eq!(o.effective_status(1600), Expired);
        assert_eq!(o.effective_status(1601), Expired);
        // Other statuses read as stored, before and after the expiry time.
        for s in [Paid, Expired, Cancelled] {
            let o = fixture::order(2, s, 1000, 1600);
            assert_eq!(o.effective_status(1500), s);
            assert_eq!(o.effective_status(2000), s);
        }
    }

    #[test]
    fn flags_are_bits() {
        let mut o = fixture::order(1, Paid, 0, 1);
        assert!(!o.has_flag(flags::LATE));
        o.flags = flags::LATE | flags::PAID_TWICE;
        assert!(o.has_flag(flags::LATE) && o.has_flag(flags::PAID_TWICE));
        assert!(!o.has_flag(flags::PARTIAL));
    }
}
