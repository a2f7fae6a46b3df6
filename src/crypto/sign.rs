//! Merchant signatures for the three upstream-compatible protocols.
//!
//! This module owns the byte-exact rules that turn request or callback
//! parameters into a canonical string and sign it: MD5 with the secret
//! appended (epusdt v1, EPay, GMPay) and HMAC-SHA256 keyed with the secret
//! (GMPay), the per-merchant GMPay [`SignMode`], and the constant-time
//! comparison of a provided signature. It must never do I/O, never log or
//! return a secret, never format an amount through `f64` (amounts are
//! [`Decimal`]; the one `f64` here, [`go_number`], only reproduces how upstream
//! spells a JSON number in the string it signs), and never compare signatures
//! with `==`.
//!
//! The canonical string is built the same way for every protocol, as upstream's
//! Go `sign.MapToParams` builds it:
//!
//! 1. drop the keys listed in `skip` (the signature fields themselves);
//! 2. drop empty strings (and JSON `null`; callers drop `None` before calling);
//! 3. format decimals in their shortest form (`100.00` → `100`, `0.10` → `0.1`);
//! 4. sort the whole `key=value` strings in byte order (Go `sort.Strings`:
//!    `name-2=x` sorts before `name=y`, since `-` < `=`) and join them with `&`.

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

/// Builds the canonical string: drop the keys in `skip` (e.g. "signature", "sign", "sign_type"),
/// drop empty strings (callers drop None before), format decimals in shortest form (100.00 →
/// "100", 42.50 → "42.5", 0.10 → "0.1"; `Decimal::normalize`, never f64), sort the whole `k=v`
/// strings in byte order (Go `sort.Strings`), join with '&'.
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

/// Constant-time comparison of a provided hex signature to the expected one, byte for byte:
/// upstream compares exactly, so an upper-case signature does not match (every signature this
/// crate makes is lower-case hex). Uses `subtle`.
///
/// An empty `provided` signature never matches, even if `expected` is
/// (wrongly) empty too. The lengths themselves are not secret: a mismatch in
/// length returns early.
#[must_use]
pub fn signature_matches(expected: &str, provided: &str) -> bool {
    if provided.is_empty() {
        return false;
    }
    expected.as_bytes().ct_eq(provided.as_bytes()).into()
}

/// Shortest decimal form: no trailing zeros, no exponent, `-0` becomes `0`.
fn format_decimal(d: Decimal) -> String {
    d.normalize().to_string()
}

/// Sorts the `k=v` strings in byte order, as Go's `sort.Strings` does, and joins them with `&`.
///
/// The whole string decides the order, not the key alone: `a-b=3` sorts before `a=1`
/// because `-` (0x2d) < `=` (0x3d).
fn join_sorted(pairs: Vec<(&str, String)>) -> String {
    let mut items: Vec<String> = pairs
        .into_iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    items.sort_unstable();
    items.join("&")
}

/// How upstream (Go: a JSON number decoded into `float64`, then
/// `strconv.FormatFloat(v, 'f', -1, 64)`) spells a JSON number in the string it signs: the
/// shortest decimal that reads back as the same `float64`, never an exponent (`1e21` →
/// `1000000000000000000000`, `100.00` → `100`, `-0` → `-0`, `0.30000000000000004` as is,
/// `18446744073709551615` → `18446744073709552000`). `None` when the number is outside `f64`'s
/// range (upstream cannot decode it and answers with a signature error).
///
/// Rust's `Display` for `f64` is the same shortest round-trip digit string, written without an
/// exponent, so the two agree digit for digit. This is a spelling for the signature only: no
/// amount is ever computed from it.
#[must_use]
pub fn go_number(text: &str) -> Option<String> {
    let v: f64 = text.trim().parse().ok()?;
    v.is_finite().then(|| format!("{v}"))
}

/// A signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignAlg {
    /// md5(canonical + secret), lower-case hex.
    Md5,
    /// hex(HMAC-SHA256(key = secret, canonical)), lower-case.
    HmacSha256,
}

impl SignAlg {
    /// The name stored in `orders.sign_alg`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SignAlg::Md5 => "md5",
            SignAlg::HmacSha256 => "hmac_sha256",
        }
    }

    /// Reads a stored name; `None` for anything else (including the empty "protocol's own").
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "md5" => Some(SignAlg::Md5),
            "hmac_sha256" => Some(SignAlg::HmacSha256),
            _ => None,
        }
    }

    /// Signs `canonical` with `secret` (lower-case hex).
    #[must_use]
    pub fn sign(self, canonical: &str, secret: &str) -> String {
        match self {
            SignAlg::Md5 => md5_sign(canonical, secret),
            SignAlg::HmacSha256 => hmac_sha256_sign(canonical, secret),
        }
    }
}

/// How a merchant's GMPay requests are verified (`merchants.sign_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignMode {
    /// HMAC-SHA256 or MD5, whichever the request was signed with (the default).
    #[default]
    Dual,
    /// MD5 only (upstream GMWalletApp/epusdt's algorithm).
    Md5,
    /// HMAC-SHA256 only.
    HmacSha256,
}

impl SignMode {
    pub const NAMES: &'static str = "dual, md5, hmac_sha256";

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SignMode::Dual => "dual",
            SignMode::Md5 => "md5",
            SignMode::HmacSha256 => "hmac_sha256",
        }
    }

    /// Reads a mode name (`dual`, `md5`, `hmac_sha256`; case-insensitive, surrounding spaces
    /// ignored).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "dual" => Some(SignMode::Dual),
            "md5" => Some(SignMode::Md5),
            "hmac_sha256" => Some(SignMode::HmacSha256),
            _ => None,
        }
    }

    /// The algorithms this mode accepts, in the order they are tried.
    #[must_use]
    pub fn algorithms(self) -> &'static [SignAlg] {
        match self {
            SignMode::Dual => &[SignAlg::HmacSha256, SignAlg::Md5],
            SignMode::Md5 => &[SignAlg::Md5],
            SignMode::HmacSha256 => &[SignAlg::HmacSha256],
        }
    }

    /// Which accepted algorithm produced `provided` over `canonical`, compared in constant time
    /// (exact lower-case hex); `None` when none did.
    #[must_use]
    pub fn verify(self, canonical: &str, secret: &str, provided: &str) -> Option<SignAlg> {
        // Every accepted algorithm is computed and compared, so the time taken does not say
        // which one came close.
        let mut found = None;
        for &alg in self.algorithms() {
            if signature_matches(&alg.sign(canonical, secret), provided) && found.is_none() {
                found = Some(alg);
            }
        }
        found
    }
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
    fn whole_k_v_strings_sort_in_byte_order_as_go_sort_strings() {
        let params = [
            ("b", SignValue::Int(2)),
            ("a-b", SignValue::Int(3)),
            ("a", SignValue::Int(1)),
            ("B", SignValue::Int(4)),
            ("a_b", SignValue::Int(5)),
        ];
        // Uppercase sorts before lowercase; "a-b=3" sorts before "a=1" because '-' < '='
        // (Go sorts the joined strings, not the keys); '_' > '=' so "a=1" precedes "a_b=5".
        assert_eq!(canonical_string(&params, SKIP), "B=4&a-b=3&a=1&a_b=5&b=2");
        let prefix = [
            ("name", SignValue::Str("x")),
            ("name-2", SignValue::Str("y")),
            ("name2", SignValue::Str("z")),
        ];
        assert_eq!(canonical_string(&prefix, SKIP), "name-2=y&name2=z&name=x");
    }

    /// GMWalletApp/epusdt wiki/API.md, "GMPay 签名": the documented request and signature.
    #[test]
    fn upstream_gmpay_documented_example() {
        let params = [
            ("pid", SignValue::Str("1000")),
            ("order_id", SignValue::Str("ORD202605230001")),
            ("currency", SignValue::Str("cny")),
            ("token", SignValue::Str("usdt")),
            ("network", SignValue::Str("tron")),
            ("amount", SignValue::Dec(Decimal::from(100))),
            (
                "notify_url",
                SignValue::Str("https://merchant.example/notify"),
            ),
            (
                "redirect_url",
                SignValue::Str("https://merchant.example/return"),
            ),
            ("name", SignValue::Str("VIP")),
            (
                "signature",
                SignValue::Str("476412c422f4dd75c3d533f5c47a9cac"),
            ),
        ];
        let canonical = canonical_string(&params, &["signature"]);
        assert_eq!(
            canonical,
            "amount=100&currency=cny&name=VIP&network=tron&notify_url=https://merchant.example/notify&order_id=ORD202605230001&pid=1000&redirect_url=https://merchant.example/return&token=usdt"
        );
        assert_eq!(
            md5_sign(&canonical, "epusdt_secret_key"),
            "476412c422f4dd75c3d533f5c47a9cac"
        );
        assert_eq!(
            SignMode::Dual.verify(
                &canonical,
                "epusdt_secret_key",
                "476412c422f4dd75c3d533f5c47a9cac"
            ),
            Some(SignAlg::Md5)
        );
    }

    /// GMWalletApp/epusdt wiki/API.md, "EPay 兼容创建交易": the documented string and sign.
    #[test]
    fn upstream_epay_documented_example() {
        let params = [
            ("pid", SignValue::Str("1000")),
            ("money", SignValue::Str("100")),
            ("out_trade_no", SignValue::Str("ORD202605230001")),
            (
                "notify_url",
                SignValue::Str("https://merchant.example/notify"),
            ),
            (
                "return_url",
                SignValue::Str("https://merchant.example/return"),
            ),
            ("name", SignValue::Str("VIP")),
            ("type", SignValue::Str("alipay")),
            ("sign", SignValue::Str("b865b0acbb2b01554c35a1bd33351452")),
            ("sign_type", SignValue::Str("MD5")),
        ];
        let canonical = canonical_string(&params, &["sign", "sign_type"]);
        assert_eq!(
            canonical,
            "money=100&name=VIP&notify_url=https://merchant.example/notify&out_trade_no=ORD202605230001&pid=1000&return_url=https://merchant.example/return&type=alipay"
        );
        assert_eq!(
            md5_sign(&canonical, "epusdt_secret_key"),
            "b865b0acbb2b01554c35a1bd33351452"
        );
    }

    #[test]
    fn json_numbers_are_spelt_as_go_formatfloat_f_minus_1() {
        let cases = [
            ("1e21", "1000000000000000000000"),
            ("0.1", "0.1"),
            ("100.00", "100"),
            ("-0", "-0"),
            ("-0.0", "-0"),
            ("42", "42"),
            ("4.2e1", "42"),
            ("1.5E-7", "0.00000015"),
            ("0.30000000000000004", "0.30000000000000004"),
            ("18446744073709551615", "18446744073709552000"),
            ("1000.0", "1000"),
            ("1e-400", "0"),
        ];
        for (input, want) in cases {
            assert_eq!(go_number(input).as_deref(), Some(want), "{input}");
        }
        assert_eq!(go_number("1e400"), None);
        assert_eq!(go_number("-1e400"), None);
        assert_eq!(go_number("1e300").map(|s| s.len()), Some(301));
    }

    #[test]
    fn sign_modes_accept_their_algorithms_only() {
        let c = "amount=1&pid=1001";
        let md5 = md5_sign(c, "k");
        let hmac = hmac_sha256_sign(c, "k");
        assert_eq!(SignMode::Dual.verify(c, "k", &md5), Some(SignAlg::Md5));
        assert_eq!(
            SignMode::Dual.verify(c, "k", &hmac),
            Some(SignAlg::HmacSha256)
        );
        assert_eq!(SignMode::Md5.verify(c, "k", &md5), Some(SignAlg::Md5));
        assert_eq!(SignMode::Md5.verify(c, "k", &hmac), None);
        assert_eq!(
            SignMode::HmacSha256.verify(c, "k", &hmac),
            Some(SignAlg::HmacSha256)
        );
        assert_eq!(SignMode::HmacSha256.verify(c, "k", &md5), None);
        assert_eq!(
            SignMode::Dual.verify(c, "k", &md5.to_ascii_uppercase()),
            None
        );
        assert_eq!(SignMode::Dual.verify(c, "k", ""), None);
        for m in [SignMode::Dual, SignMode::Md5, SignMode::HmacSha256] {
            assert_eq!(SignMode::parse(m.as_str()), Some(m));
        }
        assert_eq!(SignMode::parse(" HMAC_SHA256 "), Some(SignMode::HmacSha256));
        assert_eq!(SignMode::parse("sha1"), None);
        assert_eq!(SignMode::default(), SignMode::Dual);
        for a in [SignAlg::Md5, SignAlg::HmacSha256] {
            assert_eq!(SignAlg::parse(a.as_str()), Some(a));
        }
        assert_eq!(SignAlg::parse(""), None);
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
        // Exact comparison, as upstream: upper-case hex is refused.
        assert!(!signature_matches(
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
