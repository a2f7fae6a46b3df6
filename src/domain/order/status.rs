//! The order status graph (DESIGN §5). Every status change in the gateway is checked here and
//! persisted by the store with a compare-and-swap (`UPDATE … WHERE status = from`), so watcher,
//! expiry job and merchant cancel can race without double-crediting or reviving an order.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Upstream status codes: 1 waiting, 2 paid, 3 expired, 4 cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    Waiting,
    Paid,
    Expired,
    Cancelled,
}

/// Internal flags visible to admins (bit set in `orders.flags`).
pub mod flags {
    /// A matching transfer arrived after the order expired (not credited automatically).
    pub const LATE: i32 = 1;
    /// A transfer to this order's address carried less than the payable amount.
    pub const PARTIAL: i32 = 2;
    /// A transfer to this order's address carried more than the payable amount.
    pub const OVERPAID: i32 = 4;
    /// A second payment matched this order's slot after it was already paid.
    pub const PAID_TWICE: i32 = 8;
}

/// In JSON a status is its upstream code (`1`..`4`), as every merchant protocol shows it — never
/// the variant name.
impl Serialize for OrderStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i16(self.code())
    }
}

impl<'de> Deserialize<'de> for OrderStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = i16::deserialize(d)?;
        Self::from_code(code).ok_or_else(|| {
            serde::de::Error::custom(format!("order status {code} is not one of 1, 2, 3, 4"))
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("order cannot go from {from:?} to {to:?}")]
pub struct TransitionError {
    pub from: OrderStatus,
    pub to: OrderStatus,
}

impl OrderStatus {
    pub fn code(self) -> i16 {
        match self {
            OrderStatus::Waiting => 1,
            OrderStatus::Paid => 2,
            OrderStatus::Expired => 3,
            OrderStatus::Cancelled => 4,
        }
    }

    pub fn from_code(code: i16) -> Option<Self> {
        Some(match code {
            1 => OrderStatus::Waiting,
            2 => OrderStatus::Paid,
            3 => OrderStatus::Expired,
            4 => OrderStatus::Cancelled,
            _ => return None,
        })
    }

    /// The status as operators read it (admin API, bot, dashboard): `waiting`, `paid`,
    /// `expired`, `cancelled`, or `unknown` for a code no version wrote.
    pub fn word_of(code: i16) -> &'static str {
        match Self::from_code(code) {
            Some(OrderStatus::Waiting) => "waiting",
            Some(OrderStatus::Paid) => "paid",
            Some(OrderStatus::Expired) => "expired",
            Some(OrderStatus::Cancelled) => "cancelled",
            None => "unknown",
        }
    }

    /// Only a waiting order holds its amount slot.
    pub fn is_live(self) -> bool {
        self == OrderStatus::Waiting
    }

    /// The one transition function. Paid and cancelled are terminal. Expired → paid exists for
    /// exactly one case, which the crediting service enforces: the transfer's block time is within
    /// the order's validity window (paid on time, seen after the expiry job ran). A payment mined
    /// after expiry never revives an order; it is flagged [`flags::LATE`] for admins.
    pub fn transition(self, to: OrderStatus) -> Result<OrderStatus, TransitionError> {
        use OrderStatus::*;
        match (self, to) {
            (Waiting, Paid) | (Waiting, Expired) | (Waiting, Cancelled) | (Expired, Paid) => Ok(to),
            _ => Err(TransitionError { from: self, to }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::*;
    use super::*;

    #[test]
    fn only_waiting_moves_except_on_time_payment() {
        let all = [Waiting, Paid, Expired, Cancelled];
        for from in all {
            for to in all {
                let ok = (from == Waiting && to != Waiting) || (from == Expired && to == Paid);
                assert_eq!(from.transition(to).is_ok(), ok, "{from:?} -> {to:?}");
            }
        }
        for s in all {
            assert_eq!(OrderStatus::from_code(s.code()), Some(s));
        }
        assert_eq!(OrderStatus::from_code(0), None);
        assert_eq!(Waiting.code(), 1);
        assert_eq!(Cancelled.code(), 4);
    }
}
