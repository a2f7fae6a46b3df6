//! Merchant signatures for the three upstream-compatible protocols.
//!
//! This module owns the byte-exact rules that turn request or callback
//! parameters into a canonical string and sign it: MD5 with the secret
//! appended (epusdt v1 and EPay) and HMAC-SHA256 keyed with the secret
//! (GMPay). It also owns the constant-time comparison of a provided signature.
//! It must never do I/O, never log or return a secret, never format amounts
//! through `f64` (only [`Decimal`]), and never compare signatures with `==`.
//!
//! The canonical string is built the same way for every protocol:
//!
//! 1. drop the keys listed in `skip` (the signature fields themselves);
//! 2. drop empty strings (and JSON `null`; callers drop `None` before calling);
//! 3. format decimals in their shortest form (`100.00` → `100`, `0.10` → `0.1`);
//! 4. sort by key in byte order and join the `key=value` pairs with `&`.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use rust_decimal::Decimal;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// A parameter value as it appears in a signed request/callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignValue<'a> {
    /// Text, signed as is. An empty string is left out of the canonical string.
    Str(&'a str),
    /// An amount, signed in its shortest decimal form (`42.50` → `42.5`).
    Dec(Decimal),
    /// An integer, signed in plain decimal notation.
    Int(i64),
}

impl<'a> From<&'a str> for SignValue<'a> {
    fn from(value: &'a str) -> Self {
        SignValue::Str(value)
    }
}

impl From<Decimal> for SignValue<'_> {
    fn from(value: Decimal) -> Self {
        SignValue::Dec(value)
    }
}

impl From<i64> for SignValue<'_> {
    fn from(value: i64) -> Self {
        SignValue::Int(value)
    }
}

/// Builds the canonical string: drop the keys in `skip` (e.g. "signature", "sign", "sign_type"), drop empty strings (and callers drop None before),
/// format decimals in shortest form (100.00 -> "100", 42.50 -> "42.5", 0.10 -> "0.1"; use Decimal::normalize, never f64), sort the `k=v` strings by key (byte order), join with '&'.
#[must_use]
pub fn canonical_string(params: &[(&str, SignValue<'_>)], skip: &[&str]) -> String {
    let pairs = params
        .iter()
        .filter(|(key, _)| !skip.contains(key))
        .filter_map(|&(key, value)| {
            let text = match value {
                SignValue::Str("") => return None,
                SignValue::Str(s) => s.to_owned(),
                SignValue::Dec(d) => format_decimal(d),
                SignValue::Int(i) => i.to_string(),
            };
            Some((key, text))
        })
        .collect();
    join_sorted(pairs)
}

/// epusdt v1 and EPay: md5(canonical + secret) lower-case hex (secret appended with no separator).
#[must_use]
pub fn md5_sign(canonical: &str, secret: &str) -> String {
    let mut hasher = Md5::new();
    hasher.update(canonical.as_bytes());
    hasher.update(secret.as_bytes());
    hex::encode(hasher.finalize())
}

/// GMPay: hex(HMAC-SHA256(key = secret, msg = canonical)), lower-case.
#[must_use]
pub fn hmac_sha256_sign(canonical: &str, secret: &str) -> String {
    // HMAC hashes long keys and pads short ones, so no key length is invalid
    // and this `expect` cannot fire.
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(canonical.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Constant-time comparison of a provided hex signature to the expected one (case-insensitive on the provided side: lower-case it first); uses `subtle`.
///
/// An empty `provided` signature never matches, even if `expected` is
/// (wrongly) empty too. The lengths themselves are not secret: a mismatch in
/// length returns early.
#[must_use]
pub fn signature_matches(expected: &str, provided: &str) -> bool {
    if provided.is_empty() {
        return false;
    }
    let provided = provided.to_ascii_lowercase();
    expected.as_bytes().ct_eq(provided.as_bytes()).into()
}

/// Shortest decimal form: no trailing zeros, no exponent, `-0` becomes `0`.
fn format_decimal(d: Decimal) -> String {
    d.normalize().to_string()
}

/// Sorts `(key, value)` pairs by key in byte order and joins them as `k=v&k=v`.
///
/// Only the key decides the order (not the whole `k=v` string), matching
/// upstream's sort of the key list: `a=1` comes before `a-b=2`.
fn join_sorted(mut pairs: Vec<(&str, String)>) -> String {
    // `str` ordering is byte order; the sort is stable for repeated keys.
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::new();
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    const SKIP: &[&str] = &["signature", "sign", "sign_type"];
    const UPSTREAM_CANONICAL: &str = "amount=42&notify_url=http://example.com/notify&order_id=20220201030210321&redirect_url=http://example.com/redirect";
    const UPSTREAM_TOKEN: &str = "epusdt_password_xasddawqe";
    const UPSTREAM_SIGNATURE: &str = "1cd4b52df5587cfb1968b0c0c6e156cd";

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn upstream_epusdt_vector_from_typed_params() {
        let params = [
            ("order_id", SignValue::Str("20220201030210321")),
            ("signature", SignValue::Str("to-be-skipped")),
            (
                "redirect_url",
                SignValue::Str("http://example.com/redirect"),
            ),
            ("amount", SignValue::Dec(Decimal::new(4200, 2))),
            ("notify_url", SignValue::Str("http://example.com/notify")),
        ];
        let canonical = canonical_string(&params, SKIP);
        assert_eq!(canonical, UPSTREAM_CANONICAL);
        assert_eq!(md5_sign(&canonical, UPSTREAM_TOKEN), UPSTREAM_SIGNATURE);
    }

    #[test]
    fn md5_appends_secret_without_separator() {
        // RFC 1321: MD5("abc").
        assert_eq!(md5_sign("a", "bc"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(md5_sign("", ""), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn hmac_sha256_rfc4231_case_2() {
        assert_eq!(
            hmac_sha256_sign("what do ya want for nothing?", "Jefe"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn hmac_sha256_accepts_any_key_length() {
        // Expected values computed independently with Python's `hmac` module.
        let long_key = "k".repeat(200);
        assert_eq!(
            hmac_sha256_sign("amount=1.5&order_id=A1", &long_key),
            "12e0b984383f5703bd8f859939312d2cdaf77a18283be7442c059d61ef3d930f"
        );
        assert_eq!(
            hmac_sha256_sign("", ""),
            "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad"
        );
    }

    #[test]
    fn decimals_are_formatted_in_shortest_form() {
        let cases = [
            ("100.00", "100"),
            ("1.50", "1.5"),
            ("0.01", "0.01"),
            ("0.10", "0.1"),
            ("42.50", "42.5"),
            ("12345678.123456", "12345678.123456"),
            ("0.000001", "0.000001"),
            ("-0.00", "0"),
            ("-3.10", "-3.1"),
        ];
        for (input, want) in cases {
            let params = [("amount", SignValue::Dec(dec(input)))];
            assert_eq!(
                canonical_string(&params, SKIP),
                format!("amount={want}"),
                "formatting {input}"
            );
        }
    }

    #[test]
    fn empty_strings_and_nulls_are_dropped() {
        let params = [
            ("b", SignValue::Str("")),
            ("a", SignValue::Str("1")),
            ("c", SignValue::Int(0)),
            ("d", SignValue::Dec(Decimal::ZERO)),
        ];
        assert_eq!(canonical_string(&params, SKIP), "a=1&c=0&d=0");
        assert_eq!(canonical_string(&[], SKIP), "");
    }

    #[test]
    fn keys_sort_in_byte_order_by_key_only() {
        let params = [
            ("b", SignValue::Int(2)),
            ("a-b", SignValue::Int(3)),
            ("a", SignValue::Int(1)),
            ("B", SignValue::Int(4)),
            ("a_b", SignValue::Int(5)),
        ];
        // Uppercase sorts before lowercase; "a" sorts before "a-b" even
        // though '-' < '=' in the joined text.
        assert_eq!(canonical_string(&params, SKIP), "B=4&a=1&a-b=3&a_b=5&b=2");
    }

    #[test]
    fn all_skip_keys_are_dropped_and_only_exactly() {
        let params = [
            ("sign", SignValue::Str("x")),
            ("sign_type", SignValue::Str("MD5")),
            ("signature", SignValue::Str("y")),
            ("Sign", SignValue::Str("kept")),
            ("pid", SignValue::Int(1001)),
        ];
        assert_eq!(canonical_string(&params, SKIP), "Sign=kept&pid=1001");
        assert_eq!(
            canonical_string(&params, &[]),
            "Sign=kept&pid=1001&sign=x&sign_type=MD5&signature=y"
        );
    }

    #[test]
    fn signature_matches_rules() {
        let expected = md5_sign(UPSTREAM_CANONICAL, UPSTREAM_TOKEN);
        assert!(signature_matches(&expected, UPSTREAM_SIGNATURE));
        assert!(signature_matches(
            &expected,
            &UPSTREAM_SIGNATURE.to_ascii_uppercase()
        ));
        // Same length, last digit differs.
        assert!(!signature_matches(
            &expected,
            "1cd4b52df5587cfb1968b0c0c6e156ce"
        ));
        // Different lengths.
        assert!(!signature_matches(&expected, &UPSTREAM_SIGNATURE[..31]));
        assert!(!signature_matches(
            &expected,
            &format!("{UPSTREAM_SIGNATURE}0")
        ));
        // Empty never matches, not even an empty expectation.
        assert!(!signature_matches(&expected, ""));
        assert!(!signature_matches("", ""));
    }
}
