//! Helpers of the protocols' unit tests.
use super::FieldRules;

/// A stand-in for the callback client's URL rules: http(s) only.
fn check_url(raw: &str, _allow_private: bool) -> Result<(), String> {
    let u = url::Url::parse(raw).map_err(|e| format!("is not a valid URL ({e})"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".into());
    }
    Ok(())
}

static NETWORKS: std::sync::LazyLock<crate::domain::network::Networks> =
    std::sync::LazyLock::new(crate::domain::network::Networks::presets);

pub fn rules() -> FieldRules<'static> {
    FieldRules {
        networks: &NETWORKS,
        default_network: "tron",
        allow_private_callbacks: false,
        check_url,
        epay: super::fields::EPayDefaults {
            token: "USDT",
            network: "tron",
            currency: "CNY",
        },
    }
}

/// The merchant secret of the vectors.
pub const SECRET: &str = "s3cret-key";

/// A created order as the create reply shows it.
pub fn view() -> super::OrderView<'static> {
    super::OrderView {
        trade_id: "T1",
        order_id: "A1",
        amount: rust_decimal::Decimal::from(42),
        actual_amount: rust_decimal::Decimal::new(58333, 4),
        currency: "CNY",
        network: crate::domain::network::Network::TRON,
        token: "USDT",
        trade_type: "usdt.trc20".into(),
        address: "TWallet",
        status: 1,
        expires_at: 1_700_000_600,
        payment_url: "https://pay.example.com/pay/checkout-counter/T1".into(),
    }
}

/// A paid order of merchant 1001 as its callback shows it.
pub fn paid() -> super::CallbackOrder<'static> {
    super::CallbackOrder {
        pid: 1001,
        trade_id: "T1",
        order_id: "A1",
        amount: rust_decimal::Decimal::new(4200, 2),
        actual_amount: rust_decimal::Decimal::new(58_333, 4),
        currency: "CNY",
        token: "USDT",
        network: Some(crate::domain::network::Network::TRON),
        address: "TWallet",
        name: "Book",
        block_transaction_id: "0xabc",
        status: 2,
        notify_url: "https://shop.example.com/notify?x=1",
        epay_type: "",
    }
}
