//! Money math with `rust_decimal` only — never `f64`. Fiat amounts, rates and the payable USDT
//! amount, plus the canonical text form stored in the database and used for the amount slot.

use rust_decimal::{Decimal, RoundingStrategy};

/// Canonical text of an amount: normalised (no trailing zeros), e.g. `14.3`, `100`. Used for the
/// unique amount slot, so two spellings of one amount can never hold two slots.
pub fn canonical(d: Decimal) -> String {
    d.normalize().to_string()
}

/// Why an amount a client sent was refused; `Display` says what is wrong and what to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("is empty; send a positive number like 100.00")]
    Empty,
    #[error("`{0}` is not a decimal number; send e.g. 100.00")]
    NotDecimal(String),
    #[error("`{0}` must be greater than zero")]
    NotPositive(String),
    #[error("`{text}` has more than {max_dp} decimal places")]
    TooPrecise { text: String, max_dp: u32 },
    #[error("`{text}` is below the minimum {min}")]
    BelowMinimum { text: String, min: Decimal },
    #[error("`{0}` is too large (max 1000000000)")]
    TooLarge(String),
}

/// Parses an amount a client sent, which must be plain decimal text (`12`, `12.5`, `0.01`).
pub fn parse_positive(text: &str, max_dp: u32, min: Decimal) -> Result<Decimal, AmountError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(AmountError::Empty);
    }
    // A leading `-` is let through here only to say "must be greater than zero" below.
    let d = parse_plain(t, true).ok_or_else(|| AmountError::NotDecimal(t.into()))?;
    if d.is_sign_negative() || d.is_zero() {
        return Err(AmountError::NotPositive(t.into()));
    }
    if d.normalize().scale() > max_dp {
        return Err(AmountError::TooPrecise {
            text: t.into(),
            max_dp,
        });
    }
    if d < min {
        return Err(AmountError::BelowMinimum {
            text: t.into(),
            min,
        });
    }
    if d > Decimal::from(1_000_000_000u64) {
        return Err(AmountError::TooLarge(t.into()));
    }
    Ok(d)
}

/// Is `t` plain decimal text: ASCII digits with at most one `.` that has digits on both sides,
/// and — only when `signed` — one leading `-`? `rust_decimal`'s parsers also take `1_000`,
/// `1__0.5_0` and more, which no protocol or config key means; everything that reads an amount
/// from text goes through here first.
pub fn is_plain(t: &str, signed: bool) -> bool {
    let digits = match t.strip_prefix('-') {
        Some(rest) if signed => rest,
        _ => t,
    };
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    all_digits(int) && frac.is_none_or(all_digits)
}

/// Plain decimal text ([`is_plain`]) as a `Decimal`; `None` for anything else or out of range.
pub fn parse_plain(t: &str, signed: bool) -> Option<Decimal> {
    if !is_plain(t, signed) {
        return None;
    }
    Decimal::from_str_exact(t).ok()
}

/// Fiat → token amount at `rate` fiat units per token, rounded half-up to `precision` places.
pub fn fiat_to_token(fiat: Decimal, rate: Decimal, precision: u32) -> Option<Decimal> {
    if rate <= Decimal::ZERO {
        return None;
    }
    fiat.checked_div(rate)
        .map(|d| d.round_dp_with_strategy(precision, RoundingStrategy::MidpointAwayFromZero))
}

/// The candidate payable amounts: base, base+step, base+2·step, … (`tries` of them).
pub fn candidates(base: Decimal, step: Decimal, tries: u32) -> impl Iterator<Item = Decimal> {
    (0..tries).map(move |i| base + step * Decimal::from(i))
}

/// Integer base units → token amount (`decimals` places), exact.
pub fn from_base_units(units: u128, decimals: u32) -> Option<Decimal> {
    let i = i128::try_from(units).ok()?;
    Decimal::try_from_i128_with_scale(i, decimals).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn conversion_rounds_half_up() {
        assert_eq!(fiat_to_token(d("100"), d("7.2"), 2), Some(d("13.89")));
        assert_eq!(fiat_to_token(d("1.005"), d("1"), 2), Some(d("1.01")));
        assert_eq!(fiat_to_token(d("10"), d("0"), 2), None);
        assert_eq!(canonical(d("14.300")), "14.3");
        assert_eq!(canonical(d("100.00")), "100");
    }

    #[test]
    fn parsing_says_what_is_wrong() {
        let min = d("0.01");
        assert_eq!(parse_positive("42.00", 2, min), Ok(d("42.00")));
        assert!(
            parse_positive("-1", 2, min)
                .unwrap_err()
                .to_string()
                .contains("greater than zero")
        );
        assert!(
            parse_positive("1.001", 2, min)
                .unwrap_err()
                .to_string()
                .contains("decimal places")
        );
        assert!(
            parse_positive("abc", 2, min)
                .unwrap_err()
                .to_string()
                .contains("not a decimal")
        );
        assert!(
            parse_positive("0.001", 3, min)
                .unwrap_err()
                .to_string()
                .contains("minimum")
        );
        assert!(parse_positive("1e3", 2, min).is_err());
        for bad in [
            "1_000", "1__0.5_0", "_1", "1_", "+1", "1.", ".5", "1.2.3", "0x10", " 1 2", "--1", "١",
        ] {
            assert!(
                parse_positive(bad, 2, min)
                    .unwrap_err()
                    .to_string()
                    .contains("not a decimal"),
                "{bad}"
            );
        }
        assert_eq!(parse_positive(" 1000 ", 2, min), Ok(d("1000")));
        assert!(is_plain("-7.2", true) && !is_plain("-7.2", false));
    }

    #[test]
    fn candidates_step() {
        let v: Vec<_> = candidates(d("1.00"), d("0.01"), 3).collect();
        assert_eq!(v, vec![d("1.00"), d("1.01"), d("1.02")]);
        assert_eq!(from_base_units(1_500_000, 6), Some(d("1.5")));
        assert_eq!(
            from_base_units(1_500_000_000_000_000_000, 18),
            Some(d("1.5"))
        );
    }
}
