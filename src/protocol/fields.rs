//! The request fields the protocols share, each validated with a message that says what to fix
//! (`"{field} {problem}"`). This is the one place a merchant's currency, amount, URLs, network and
//! timeout are checked; the service trusts a [`super::CreateRequest`].
use rust_decimal::Decimal;

use super::{Params, ProtocolError};
use crate::domain::{
    amount, currency,
    network::{Asset, Networks},
};

/// What field validation needs from the gateway's configuration.
#[derive(Clone, Copy)]
pub struct FieldRules<'a> {
    /// The networks and tokens of the configuration: what a request may select.
    pub networks: &'a Networks,
    /// The network of a request that names none (`default_network`).
    pub default_network: &'a str,
    /// `allow_private_callbacks`.
    pub allow_private_callbacks: bool,
    /// Judges a callback URL's shape (the SSRF rules of the callback client): `Err(problem)`.
    pub check_url: fn(&str, bool) -> Result<(), String>,
    /// What an EPay request that names no token, network or currency gets.
    pub epay: EPayDefaults<'a>,
}

/// The EPay settings `epay_default_token`, `epay_default_network` (in effect: falls back to
/// `default_network`) and `epay_default_currency`, validated at start.
#[derive(Clone, Copy)]
pub struct EPayDefaults<'a> {
    pub token: &'a str,
    pub network: &'a str,
    pub currency: &'a str,
}

pub fn required<'a>(p: &'a Params, key: &str) -> Result<&'a str, ProtocolError> {
    p.get(key)
        .ok_or_else(|| ProtocolError::bad_param(key, "is required"))
}

pub fn text(p: &Params, key: &str, max: usize, required_: bool) -> Result<String, ProtocolError> {
    let v = match p.canonical(key) {
        Some(v) => v.trim(),
        None if required_ => return Err(ProtocolError::bad_param(key, "is required")),
        None => return Ok(String::new()),
    };
    if v.chars().count() > max {
        return Err(ProtocolError::bad_param(
            key,
            format!("is too long ({} characters, max {max})", v.chars().count()),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(ProtocolError::bad_param(
            key,
            "must not contain control characters",
        ));
    }
    Ok(v.to_string())
}

pub fn order_id(p: &Params, key: &str) -> Result<String, ProtocolError> {
    let v = text(p, key, 32, true)?;
    if v.chars().any(char::is_whitespace) {
        return Err(ProtocolError::bad_param(key, "must not contain spaces"));
    }
    Ok(v)
}

pub fn amount(p: &Params, key: &str) -> Result<Decimal, ProtocolError> {
    let v = required(p, key)?;
    // A JSON number is signed as the float64 upstream reads (`sign::go_number`). An accepted
    // amount (≤ 1e9, ≤ 2 decimals: ≤ 12 significant digits) reads back from a float64
    // exactly, so the value charged is the value signed.
    amount::parse_positive(v, 2, Decimal::new(1, 2)).map_err(|e| ProtocolError::bad_param(key, e))
}

pub fn url(
    p: &Params,
    key: &str,
    required_: bool,
    allow_private: bool,
    rules: &FieldRules,
) -> Result<String, ProtocolError> {
    let v = text(p, key, 512, required_)?;
    if v.is_empty() {
        return Ok(v);
    }
    (rules.check_url)(&v, allow_private).map_err(|e| ProtocolError::bad_param(key, e))?;
    Ok(v)
}

/// The callback URL: required, private targets only when the gateway allows them.
pub fn notify_url(p: &Params, key: &str, rules: &FieldRules) -> Result<String, ProtocolError> {
    url(p, key, true, rules.allow_private_callbacks, rules)
}

/// Where the checkout page sends the buyer afterwards: optional, any address (the buyer's
/// browser goes there, not the gateway).
pub fn redirect_url(p: &Params, key: &str, rules: &FieldRules) -> Result<String, ProtocolError> {
    url(p, key, false, true, rules)
}

/// A fiat currency code (three letters, upper-cased) or `USDT`.
pub fn currency(p: &Params, key: &str, default: Option<&str>) -> Result<String, ProtocolError> {
    let v = match (p.get(key), default) {
        (Some(v), _) => currency::normalize(v),
        (None, Some(d)) => d.to_string(),
        (None, None) => {
            return Err(ProtocolError::bad_param(
                key,
                "is required, e.g. CNY or USD",
            ));
        }
    };
    if !currency::is_price_currency(&v) {
        return Err(ProtocolError::bad_param(
            key,
            format!("`{v}` is not a currency code; use e.g. CNY or USD"),
        ));
    }
    Ok(v)
}

/// The asset a `trade_type` / network field selects (`usdt.trc20`, `usdc.base`, `binance`, …;
/// `default_network` when absent). Unknown or unconfigured: the message names what is offered.
pub fn asset(p: &Params, key: &str, rules: &FieldRules) -> Result<Asset, ProtocolError> {
    let v = p.get(key).unwrap_or(rules.default_network);
    rules
        .networks
        .asset(v)
        .map_err(|e| ProtocolError::bad_param(key, e.to_string()))
}

pub fn timeout(p: &Params) -> Result<Option<i64>, ProtocolError> {
    match p.get("timeout") {
        None => Ok(None),
        Some(t) => match t.trim().parse::<i64>() {
            Ok(s) if (60..=86_400).contains(&s) => Ok(Some(s)),
            _ => Err(ProtocolError::bad_param(
                "timeout",
                format!("`{t}` must be a whole number of seconds between 60 and 86400"),
            )),
        },
    }
}

/// A merchant id: `pid`, a positive whole number sent as a string (`"1000"`), an integer
/// (`1000`) or an integral float (`1000.0`; a JSON number reads as upstream spells it). Anything
/// else names no merchant: upstream answers a signature error, and so do we
/// ([`ProtocolError::NoMerchant`]).
pub fn pid(p: &Params) -> Result<i64, ProtocolError> {
    let raw = p
        .canonical("pid")
        .ok_or_else(|| ProtocolError::NoMerchant("pid is required".into()))?;
    match raw.trim().parse::<i64>() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => Err(ProtocolError::NoMerchant(format!(
            "pid `{raw}` must be a positive whole number"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::test_support::rules;

    fn q(s: &str) -> Params {
        Params::from_query(s.as_bytes())
    }

    fn e<T: std::fmt::Debug>(r: Result<T, ProtocolError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn messages_name_the_field_and_the_fix() {
        assert_eq!(e(order_id(&q(""), "order_id")), "order_id is required");
        assert_eq!(
            e(order_id(&q("order_id=a%20b"), "order_id")),
            "order_id must not contain spaces"
        );
        assert_eq!(
            e(currency(&q("currency=yen1"), "currency", None)),
            "currency `YEN1` is not a currency code; use e.g. CNY or USD"
        );
        assert_eq!(
            e(currency(&q(""), "currency", None)),
            "currency is required, e.g. CNY or USD"
        );
        assert_eq!(
            e(timeout(&q("timeout=5"))),
            "timeout `5` must be a whole number of seconds between 60 and 86400"
        );
        assert_eq!(
            e(pid(&q("pid=x"))),
            "pid `x` must be a positive whole number"
        );
        assert!(matches!(
            pid(&q("pid=0")),
            Err(ProtocolError::NoMerchant(_))
        ));
        assert!(matches!(pid(&q("")), Err(ProtocolError::NoMerchant(_))));
        assert_eq!(
            e(notify_url(&q("notify_url=ftp://x"), "notify_url", &rules())),
            "notify_url must be an http:// or https:// URL"
        );
    }

    #[test]
    fn a_json_amount_is_the_value_its_signature_reads() {
        let j = |s: &str| Params::from_json(s.as_bytes()).unwrap();
        for text in ["42.50", "999999999.99", "0.01", "1000000000"] {
            let p = j(&format!(r#"{{"a":{text}}}"#));
            let charged = amount(&p, "a").unwrap();
            let signed = Decimal::from_str_exact(p.canonical("a").unwrap()).unwrap();
            assert_eq!(charged, signed, "{text}");
        }
        assert!(amount(&j(r#"{"a":12345678901.25}"#), "a").is_err());
        assert!(amount(&j(r#"{"a":1.005}"#), "a").is_err());
    }

    #[test]
    fn currency_defaults_and_usdt() {
        assert_eq!(currency(&q(""), "c", Some("CNY")).unwrap(), "CNY");
        assert_eq!(currency(&q("c=usdt"), "c", None).unwrap(), "USDT");
        assert_eq!(currency(&q("c=%20usd%20"), "c", None).unwrap(), "USD");
    }
}
