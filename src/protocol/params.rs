//! Request parameters as the merchant sent them, from a JSON body, a form body or a query
//! string. JSON numbers keep their exact text (via `RawValue`), so signatures and amounts never
//! pass through `f64`. This is how a JSON body becomes a canonical string: per type,
//! `null` and `""` are dropped, numbers are signed in shortest decimal form parsed from their
//! exact text (or as written when no `Decimal` holds them), strings as is, and booleans, arrays
//! and objects as the JSON text the merchant sent.
use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde_json::value::RawValue;

use super::ProtocolError;
use crate::crypto::sign::SignValue;

#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(String),
    /// A JSON number: the text as sent, and the one spelling every use reads (the signature,
    /// the nonce, the order id, the pid): shortest decimal form when a `Decimal` holds it
    /// (`996170651E0` → `996170651`, `1000.0` → `1000`), else as sent. A request re-spelt with
    /// another notation is therefore the same request, not a new nonce or a new order.
    Number {
        raw: String,
        canonical: String,
    },
    /// true/false, arrays and objects: their compact JSON text.
    Other(String),
}

#[derive(Debug, Clone, Default)]
pub struct Params(pub BTreeMap<String, Param>);

impl Params {
    /// Parses a body by content type; with none, JSON is tried first, then a form.
    pub fn from_body(content_type: Option<&str>, body: &[u8]) -> Result<Self, ProtocolError> {
        let ct = content_type.unwrap_or("").to_ascii_lowercase();
        if ct.contains("json") {
            return Self::from_json(body);
        }
        if ct.contains("x-www-form-urlencoded") {
            return Ok(Self::from_query(body));
        }
        if ct.contains("multipart/") {
            return Err(ProtocolError::Multipart);
        }
        let trimmed = body
            .iter()
            .skip_while(|b| b.is_ascii_whitespace())
            .copied()
            .next();
        match trimmed {
            None => Ok(Self::default()),
            Some(b'{') => Self::from_json(body),
            Some(_) => Ok(Self::from_query(body)),
        }
    }

    pub fn from_json(body: &[u8]) -> Result<Self, ProtocolError> {
        let raw: BTreeMap<String, Box<RawValue>> =
            serde_json::from_slice(body).map_err(ProtocolError::NotJsonObject)?;
        let mut out = BTreeMap::new();
        for (k, v) in raw {
            let text = v.get().trim();
            let p = match text.as_bytes().first() {
                Some(b'"') => {
                    Param::Text(serde_json::from_str::<String>(text).map_err(|source| {
                        ProtocolError::BadString {
                            key: k.clone(),
                            source,
                        }
                    })?)
                }
                Some(b'n') => continue, // null
                Some(b'-' | b'0'..=b'9') => Param::Number {
                    raw: text.to_string(),
                    canonical: canonical_number(text),
                },
                _ => Param::Other(text.to_string()),
            };
            out.insert(k, p);
        }
        Ok(Self(out))
    }

    pub fn from_query(q: &[u8]) -> Self {
        Self(
            url::form_urlencoded::parse(q)
                .map(|(k, v)| (k.into_owned(), Param::Text(v.into_owned())))
                .collect(),
        )
    }

    /// Merges query parameters under body parameters (body wins).
    pub fn merged_with_query(mut self, q: Option<&str>) -> Self {
        if let Some(q) = q {
            for (k, v) in Self::from_query(q.as_bytes()).0 {
                self.0.entry(k).or_insert(v);
            }
        }
        self
    }

    /// The value as sent (a number keeps its exact text, so an amount keeps its scale);
    /// empty strings count as absent.
    pub fn get(&self, key: &str) -> Option<&str> {
        match self.0.get(key)? {
            Param::Text(s) | Param::Number { raw: s, .. } | Param::Other(s) => {
                let s = s.as_str();
                (!s.trim().is_empty()).then_some(s)
            }
        }
    }

    /// The value in its one spelling (a number as the signature reads it): what every field
    /// that names something reads — order id, trade id, pid, nonce, timestamp — so a request
    /// re-spelt in another notation is recognised as the same request.
    pub fn canonical(&self, key: &str) -> Option<&str> {
        match self.0.get(key)? {
            Param::Number { canonical, .. } => Some(canonical.as_str()),
            _ => self.get(key),
        }
    }

    pub fn is_number(&self, key: &str) -> bool {
        matches!(self.0.get(key), Some(Param::Number { .. }))
    }

    /// Values for the epusdt/GMPay canonical string: JSON numbers and the `decimal_keys` are
    /// formatted in shortest decimal form (`100.00` → `100`), everything else verbatim.
    pub fn sign_values<'a>(&'a self, decimal_keys: &[&str]) -> Vec<(&'a str, SignValue<'a>)> {
        self.0
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Param::Number { raw, .. } => match number_value(raw) {
                        Some(d) => SignValue::Dec(d),
                        None => SignValue::Str(raw),
                    },
                    Param::Text(t) if decimal_keys.contains(&k.as_str()) => {
                        match Decimal::from_str_exact(t.trim()) {
                            Ok(d) => SignValue::Dec(d),
                            Err(_) => SignValue::Str(t),
                        }
                    }
                    Param::Text(t) | Param::Other(t) => SignValue::Str(t),
                };
                (k.as_str(), value)
            })
            .collect()
    }

    /// Values verbatim (EPay signs the strings as sent).
    pub fn raw_values(&self) -> Vec<(&str, SignValue<'_>)> {
        self.0
            .iter()
            .map(|(k, v)| match v {
                Param::Text(s) | Param::Number { raw: s, .. } | Param::Other(s) => {
                    (k.as_str(), SignValue::Str(s))
                }
            })
            .collect()
    }
}

/// A JSON number's value, from its exact text (plain or scientific), when a `Decimal` holds it.
fn number_value(text: &str) -> Option<Decimal> {
    Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .ok()
}

/// The one spelling of a JSON number: the shortest decimal form of its value, exactly as the
/// canonical string signs it; text no `Decimal` holds stays as sent.
fn canonical_number(text: &str) -> String {
    match number_value(text) {
        // As `crypto::sign` formats a `SignValue::Dec`.
        Some(d) => d.normalize().to_string(),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::sign::{canonical_string, md5_sign};

    #[test]
    fn json_numbers_keep_their_text_and_sign_like_upstream() {
        let body = br#"{"order_id":"20220201030210321","amount":42.00,"notify_url":"http://example.com/notify","redirect_url":"http://example.com/redirect","signature":"x","name":null}"#;
        let p = Params::from_body(Some("application/json"), body).unwrap();
        assert_eq!(p.get("amount"), Some("42.00"));
        assert_eq!(p.get("name"), None);
        let c = canonical_string(&p.sign_values(&["amount"]), &["signature"]);
        assert_eq!(
            md5_sign(&c, "epusdt_password_xasddawqe"),
            "1cd4b52df5587cfb1968b0c0c6e156cd"
        );
        let form = b"order_id=20220201030210321&amount=42.00&notify_url=http%3A%2F%2Fexample.com%2Fnotify&redirect_url=http://example.com/redirect&signature=x";
        let p = Params::from_body(None, form).unwrap();
        let c2 = canonical_string(&p.sign_values(&["amount"]), &["signature"]);
        assert_eq!(c, c2);
    }

    const SKIP: &[&str] = &["signature", "sign", "sign_type"];
    const UPSTREAM_CANONICAL: &str = "amount=42&notify_url=http://example.com/notify&order_id=20220201030210321&redirect_url=http://example.com/redirect";
    const UPSTREAM_SIGNATURE: &str = "1cd4b52df5587cfb1968b0c0c6e156cd";

    /// The canonical string of a JSON body (moved from `crypto::sign::canonical_from_json`,
    /// which had no caller: this is the path a request takes).
    fn json_canonical(body: &str) -> String {
        let p = Params::from_json(body.as_bytes()).unwrap();
        canonical_string(&p.sign_values(&[]), SKIP)
    }

    #[test]
    fn upstream_epusdt_vector_from_json() {
        for amount in ["42.00", "42", "42.0", "4.2e1"] {
            let body = format!(
                r#"{{"order_id":"20220201030210321","amount":{amount},
                    "notify_url":"http://example.com/notify",
                    "redirect_url":"http://example.com/redirect",
                    "signature":"{UPSTREAM_SIGNATURE}"}}"#
            );
            let canonical = json_canonical(&body);
            assert_eq!(canonical, UPSTREAM_CANONICAL, "amount given as {amount}");
            assert_eq!(
                md5_sign(&canonical, "epusdt_password_xasddawqe"),
                UPSTREAM_SIGNATURE
            );
        }
    }

    #[test]
    fn json_numbers_are_formatted_without_float_noise() {
        assert_eq!(
            json_canonical(
                r#"{"a":100.00,"b":1.50,"c":0.01,"d":12345678.123456,"e":0.1,
                "f":1e-7,"g":-7,"h":18446744073709551615,"i":0.30000000000000004}"#
            ),
            "a=100&b=1.5&c=0.01&d=12345678.123456&e=0.1&f=0.0000001&g=-7\
             &h=18446744073709551615&i=0.30000000000000004"
        );
    }

    #[test]
    fn json_numbers_too_large_for_decimal_are_kept_as_written() {
        let canonical = json_canonical(r#"{"big":1e300,"tiny":1e-300}"#);
        assert_eq!(canonical, "big=1e300&tiny=1e-300");
        assert!(!canonical.contains("000000"));
    }

    #[test]
    fn json_exponents_within_decimal_range_are_expanded() {
        assert_eq!(
            json_canonical(r#"{"a":1e21,"b":1.5E-7,"c":2.5e+3}"#),
            "a=1000000000000000000000&b=0.00000015&c=2500"
        );
    }

    #[test]
    fn json_other_types_are_signed_as_sent() {
        assert_eq!(
            json_canonical(
                r#"{"ok":true,"no":false,"list":[1, "x", null],
                "obj":{"z":1, "a":"b"},"empty_list":[]}"#
            ),
            r#"empty_list=[]&list=[1, "x", null]&no=false&obj={"z":1, "a":"b"}&ok=true"#
        );
    }

    #[test]
    fn json_empty_strings_and_nulls_are_dropped() {
        assert_eq!(
            json_canonical(r#"{"b":"","a":"1","n":null,"s":" "}"#),
            "a=1&s= "
        );
        assert_eq!(json_canonical("{}"), "");
    }

    #[test]
    fn a_re_spelt_number_reads_as_the_same_value_everywhere() {
        let a = Params::from_json(br#"{"order_id":996170651,"nonce":12345,"pid":1000}"#).unwrap();
        let b = Params::from_json(br#"{"order_id":996170651E0,"nonce":1.2345e4,"pid":1000.0}"#)
            .unwrap();
        for key in ["order_id", "nonce", "pid"] {
            assert_eq!(a.canonical(key), b.canonical(key), "{key}");
        }
        assert_eq!(b.canonical("order_id"), Some("996170651"));
        assert_eq!(b.get("order_id"), Some("996170651E0"));
        assert_eq!(
            canonical_string(&a.sign_values(&[]), &[]),
            canonical_string(&b.sign_values(&[]), &[])
        );
        // EPay signs what was sent.
        assert_eq!(
            b.raw_values()[1],
            ("order_id", SignValue::Str("996170651E0"))
        );
    }

    #[test]
    fn bad_json_is_an_error_not_a_panic() {
        assert!(Params::from_body(Some("application/json"), b"[1,2]").is_err());
        assert!(Params::from_body(Some("application/json"), b"{").is_err());
    }
}
