//! Request parameters as the merchant sent them, from a JSON body, a form body or a query
//! string. JSON numbers keep their exact text (via `RawValue`), so amounts never pass through
//! `f64`. This is how a request becomes an epusdt/GMPay canonical string, as upstream's Go
//! builds it from the body decoded into a map: per type, `null` and `""` are dropped, strings
//! (and every form value) are signed as sent, numbers as Go spells the `float64` they decode to
//! ([`sign::go_number`]), and booleans, arrays and objects cannot be signed (upstream answers a
//! signature error).
use std::collections::BTreeMap;

use serde_json::value::RawValue;

use super::ProtocolError;
use crate::crypto::sign::{self, SignValue};

#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(String),
    /// A JSON number: the text as sent, and the one spelling every use reads (the signature,
    /// the nonce, the order id, the pid): upstream's spelling of the `float64` it decodes to
    /// (`996170651E0` → `996170651`, `1000.0` → `1000`; [`sign::go_number`]), or the text as
    /// sent when no `f64` holds it. A request re-spelt with another notation is therefore the
    /// same request, not a new nonce or a new order.
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

    /// A query string or form body. A repeated key keeps its first value, as upstream (Go's
    /// `url.ParseQuery`, then `values[0]`) reads it.
    pub fn from_query(q: &[u8]) -> Self {
        let mut out = BTreeMap::new();
        for (k, v) in url::form_urlencoded::parse(q) {
            out.entry(k.into_owned())
                .or_insert_with(|| Param::Text(v.into_owned()));
        }
        Self(out)
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

    /// Values for the epusdt/GMPay canonical string, as upstream signs them: text as sent,
    /// numbers in their one spelling ([`Self::canonical`]). `Err(reason)` when a value cannot be
    /// signed: a boolean, array or object, or a number outside `f64`'s range.
    pub fn sign_values(&self) -> Result<Vec<(&str, SignValue<'_>)>, String> {
        self.0
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Param::Text(t) => SignValue::Str(t),
                    Param::Number { raw, canonical } => {
                        if sign::go_number(raw).is_none() {
                            return Err(format!("{k}: the number {raw} is out of range"));
                        }
                        SignValue::Str(canonical)
                    }
                    Param::Other(t) => {
                        return Err(format!(
                            "{k}: {} values cannot be signed; send a string or a number",
                            json_kind(t)
                        ));
                    }
                };
                Ok((k.as_str(), value))
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

/// What kind of JSON value a non-string, non-number text is.
fn json_kind(text: &str) -> &'static str {
    match text.as_bytes().first() {
        Some(b'[') => "array",
        Some(b'{') => "object",
        _ => "boolean",
    }
}

/// The one spelling of a JSON number: upstream's, exactly as the canonical string signs it;
/// text no `f64` holds stays as sent (and cannot be signed).
fn canonical_number(text: &str) -> String {
    sign::go_number(text).unwrap_or_else(|| text.to_string())
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
        let c = canonical_string(&p.sign_values().unwrap(), &["signature"]);
        assert_eq!(
            md5_sign(&c, "epusdt_password_xasddawqe"),
            "1cd4b52df5587cfb1968b0c0c6e156cd"
        );
        // A form value is text, signed as sent (upstream's rule): 42.00 stays 42.00.
        let form = b"order_id=20220201030210321&amount=42.00&notify_url=http%3A%2F%2Fexample.com%2Fnotify&redirect_url=http://example.com/redirect&signature=x";
        let p = Params::from_body(None, form).unwrap();
        let c2 = canonical_string(&p.sign_values().unwrap(), &["signature"]);
        assert_eq!(c2, c.replace("amount=42&", "amount=42.00&"));
    }

    const SKIP: &[&str] = &["signature", "sign", "sign_type"];
    const UPSTREAM_CANONICAL: &str = "amount=42&notify_url=http://example.com/notify&order_id=20220201030210321&redirect_url=http://example.com/redirect";
    const UPSTREAM_SIGNATURE: &str = "1cd4b52df5587cfb1968b0c0c6e156cd";

    /// The canonical string of a JSON body (moved from `crypto::sign::canonical_from_json`,
    /// which had no caller: this is the path a request takes).
    fn json_canonical(body: &str) -> String {
        let p = Params::from_json(body.as_bytes()).unwrap();
        canonical_string(&p.sign_values().unwrap(), SKIP)
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
    fn json_numbers_are_spelt_as_go_float64() {
        assert_eq!(
            json_canonical(
                r#"{"a":100.00,"b":1.50,"c":0.01,"d":12345678.123456,"e":0.1,
                "f":1e-7,"g":-7,"h":18446744073709551615,"i":0.30000000000000004,"j":-0}"#
            ),
            "a=100&b=1.5&c=0.01&d=12345678.123456&e=0.1&f=0.0000001&g=-7\
             &h=18446744073709552000&i=0.30000000000000004&j=-0"
        );
    }

    #[test]
    fn json_numbers_beyond_decimal_are_expanded_and_beyond_f64_refused() {
        let canonical = json_canonical(r#"{"big":1e300,"tiny":1e-300}"#);
        assert_eq!(
            canonical,
            format!("big=1{}&tiny=0.{}1", "0".repeat(300), "0".repeat(299))
        );
        let p = Params::from_json(br#"{"huge":1e400}"#).unwrap();
        assert_eq!(
            p.sign_values().unwrap_err(),
            "huge: the number 1e400 is out of range"
        );
    }

    #[test]
    fn json_exponents_are_expanded() {
        assert_eq!(
            json_canonical(r#"{"a":1e21,"b":1.5E-7,"c":2.5e+3}"#),
            "a=1000000000000000000000&b=0.00000015&c=2500"
        );
    }

    #[test]
    fn json_booleans_arrays_and_objects_cannot_be_signed() {
        for (body, kind) in [
            (r#"{"a":"1","ok":true}"#, "ok: boolean"),
            (r#"{"no":false}"#, "no: boolean"),
            (r#"{"list":[1, "x", null]}"#, "list: array"),
            (r#"{"obj":{"z":1}}"#, "obj: object"),
            (r#"{"empty_list":[]}"#, "empty_list: array"),
        ] {
            let p = Params::from_json(body.as_bytes()).unwrap();
            let e = p.sign_values().unwrap_err();
            assert!(e.starts_with(kind), "{body}: {e}");
        }
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
            canonical_string(&a.sign_values().unwrap(), &[]),
            canonical_string(&b.sign_values().unwrap(), &[])
        );
        // Past 15 significant digits, two spellings that upstream reads as one float64 sign
        // alike; the order id reads that same spelling, so it is the same order too.
        let c = Params::from_json(br#"{"order_id":12345678901234567891}"#).unwrap();
        let d = Params::from_json(br#"{"order_id":12345678901234567892}"#).unwrap();
        assert_eq!(c.canonical("order_id"), Some("12345678901234567000"));
        assert_eq!(c.canonical("order_id"), d.canonical("order_id"));
        // EPay signs what was sent.
        assert_eq!(
            b.raw_values()[1],
            ("order_id", SignValue::Str("996170651E0"))
        );
    }

    #[test]
    fn a_repeated_form_key_keeps_its_first_value() {
        let p = Params::from_query(b"amount=1&amount=2&a=x");
        assert_eq!(p.get("amount"), Some("1"));
        assert_eq!(
            canonical_string(&p.sign_values().unwrap(), SKIP),
            "a=x&amount=1"
        );
    }

    #[test]
    fn bad_json_is_an_error_not_a_panic() {
        assert!(Params::from_body(Some("application/json"), b"[1,2]").is_err());
        assert!(Params::from_body(Some("application/json"), b"{").is_err());
    }
}
