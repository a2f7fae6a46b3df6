//! Currency codes: the one rule for what a fiat code and a price currency look like (merchant
//! fields, `usdt_rates` keys, `epusdt rate set`).

/// A fiat currency code as stored and configured: three upper-case ASCII letters (ISO 4217's
/// shape, e.g. `CNY`, `USD`).
pub fn is_fiat_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

/// A currency an order may be priced in: a fiat code or `USDT` itself.
pub fn is_price_currency(code: &str) -> bool {
    code == "USDT" || is_fiat_code(code)
}

/// How a code typed by a person or sent by a shop is read: trimmed, upper-cased.
pub fn normalize(raw: &str) -> String {
    raw.trim().to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fiat_codes_are_three_upper_case_letters() {
        assert!(is_fiat_code("CNY"));
        assert!(!is_fiat_code("cny"));
        assert!(!is_fiat_code("CN"));
        assert!(!is_fiat_code("YEN1"));
        assert!(!is_fiat_code("ÉUR"));
        assert!(!is_fiat_code("USDT"));
    }

    #[test]
    fn orders_may_be_priced_in_usdt() {
        assert!(is_price_currency("USDT"));
        assert!(is_price_currency("USD"));
        assert!(!is_price_currency("USDC1"));
        assert_eq!(normalize(" usd "), "USD");
    }
}
