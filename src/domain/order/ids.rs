//! Thin id newtypes of an order: the row id, the public trade id and the merchant id. Each
//! prints as its value; none carries any rule beyond the shape of a trade id.

use std::fmt;

use serde::Serialize;

/// Checks the shape of a trade id from a client (path or field) before it reaches any query:
/// 1..=64 ASCII letters, digits, `-` or `_` (ours are 24 digits; upstream's are alphanumeric).
/// Anything else (NUL, control characters, non-ASCII) cannot name an order.
pub fn check_trade_id(s: &str) -> Result<(), &'static str> {
    if s.is_empty() || s.len() > 64 {
        return Err("must be 1 to 64 characters");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("may contain only letters, digits, `-` and `_`");
    }
    Ok(())
}

/// The primary key of an `orders` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct OrderId(pub i64);

impl OrderId {
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The id of a merchant (the `merchants` row id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct MerchantId(pub i64);

impl MerchantId {
    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for MerchantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The public id of an order (`yyyymmddHHMMSS` + 10 digits for ours), shaped as
/// [`check_trade_id`] says; it can be built only through that check.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TradeId(String);

impl TradeId {
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        check_trade_id(s)?;
        Ok(Self(s.to_owned()))
    }

    /// A new id shaped like upstream's: `yyyymmddHHMMSS` at `at` + `random` as 10 digits
    /// (taken modulo 10¹⁰).
    pub fn upstream(at: chrono::DateTime<chrono::Utc>, random: u64) -> Self {
        Self(format!(
            "{}{:010}",
            at.format("%Y%m%d%H%M%S"),
            random % 10_000_000_000
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TradeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads as the text it holds wherever a `&str` is expected (it is one, checked).
impl std::ops::Deref for TradeId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for TradeId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for TradeId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for TradeId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for TradeId {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trade_ids_are_checked_before_any_query() {
        assert!(check_trade_id("202512020312345678901234").is_ok());
        assert!(check_trade_id("Ab_9-x").is_ok());
        for bad in ["", "a\0b", "\0", "a b", "é", "a/b", "a%00", &"1".repeat(65)] {
            assert!(check_trade_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids_are_thin() {
        assert_eq!(OrderId(7).to_string(), "7");
        assert_eq!(OrderId(7).get(), 7);
        assert_eq!(MerchantId(3).to_string(), "3");
        let t = TradeId::parse("202512020312345678901234").unwrap();
        assert_eq!(t.as_str(), "202512020312345678901234");
        assert_eq!(t.to_string(), t.as_str());
        assert!(t == "202512020312345678901234");
        // JSON shows the bare values, as the rows' columns did.
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"202512020312345678901234\""
        );
        assert_eq!(serde_json::to_string(&OrderId(7)).unwrap(), "7");
        assert!(TradeId::parse("a b").is_err());
        assert!(TradeId::parse("").is_err());
        let at = chrono::DateTime::from_timestamp(1_764_645_000, 0).unwrap();
        let u = TradeId::upstream(at, 42);
        assert_eq!(u.as_str(), "202512020310000000000042");
        assert!(check_trade_id(u.as_str()).is_ok());
        assert_eq!(TradeId::upstream(at, u64::MAX).as_str().len(), 24);
    }
}
