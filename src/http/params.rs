//! Request parameters as the merchant sent them, from a JSON body, a form body or a query
//! string. JSON numbers keep their exact text (via `RawValue`), so signatures and amounts never
//! pass through `f64`.
use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde_json::value::RawValue;

use crate::crypto::sign::SignValue;

#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(String),
    /// A JSON number, exact text.
    Number(String),
    /// true/false, arrays and objects: their compact JSON text.
    Other(String),
}

#[derive(Debug, Clone, Default)]
pub struct Params(pub BTreeMap<String, Param>);

impl Params {
    /// Parses a body by content type; with none, JSON is tried first, then a form.
    pub fn from_body(content_type: Option<&str>, body: &[u8]) -> Result<Self, String> {
        let ct = content_type.unwrap_or("").to_ascii_lowercase();
        if ct.contains("json") {
            return Self::from_json(body);
        }
        if ct.contains("x-www-form-urlencoded") {
            return Ok(Self::from_query(body));
        }
        if ct.contains("multipart/") {
            return Err(
                "multipart bodies are not supported; send JSON or a urlencoded form".into(),
            );
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

    pub fn from_json(body: &[u8]) -> Result<Self, String> {
        let raw: BTreeMap<String, Box<RawValue>> =
            serde_json::from_slice(body).map_err(|e| format!("body is not a JSON object ({e})"))?;
        let mut out = BTreeMap::new();
        for (k, v) in raw {
            let text = v.get().trim();
            let p = match text.as_bytes().first() {
                Some(b'"') => Param::Text(
                    serde_json::from_str::<String>(text).map_err(|e| format!("{k}: {e}"))?,
                ),
                Some(b'n') => continue, // null
                Some(b'-' | b'0'..=b'9') => Param::Number(text.to_string()),
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

    /// The value as text; empty strings count as absent.
    pub fn get(&self, key: &str) -> Option<&str> {
        match self.0.get(key)? {
            Param::Text(s) | Param::Number(s) | Param::Other(s) => {
                let s = s.as_str();
                (!s.trim().is_empty()).then_some(s)
            }
        }
    }

    pub fn is_number(&self, key: &str) -> bool {
        matches!(self.0.get(key), Some(Param::Number(_)))
    }

    /// Values for the epusdt/GMPay canonical string: JSON numbers and the `decimal_keys` are
    /// formatted in shortest decimal form (`100.00` → `100`), everything else verbatim.
    pub fn sign_values<'a>(&'a self, decimal_keys: &[&str]) -> Vec<(&'a str, SignValue<'a>)> {
        self.0
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Param::Number(n) => {
                        match Decimal::from_str_exact(n).or_else(|_| Decimal::from_scientific(n)) {
                            Ok(d) => SignValue::Dec(d),
                            Err(_) => SignValue::Str(n),
                        }
                    }
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
                Param::Text(s) | Param::Number(s) | Param::Other(s) => {
                    (k.as_str(), SignValue::Str(s))
                }
            })
            .collect()
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

    #[test]
    fn bad_json_is_an_error_not_a_panic() {
        assert!(Params::from_body(Some("application/json"), b"[1,2]").is_err());
        assert!(Params::from_body(Some("application/json"), b"{").is_err());
    }
}
