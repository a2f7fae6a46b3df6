//! `epusdt rate set CUR RATE`: an admin-set fiat → USDT rate (fiat units per 1 USDT);
//! `epusdt rate price COIN PRICE`: an admin-set native coin price (USDT per 1 coin).
use clap::Subcommand;
use epusdt::{
    app,
    audit::{ACTOR_CLI, AuditEvent, AuditLog, actions},
    config::Config,
    service,
};
use rust_decimal::Decimal;

use super::{CliError, CliResult};

#[derive(Subcommand)]
pub enum RateAction {
    /// e.g. `epusdt rate set CNY 7.2`
    Set { currency: String, rate: String },
    /// USDT per 1 native coin, e.g. `epusdt rate price TRX 0.25` (the coin must be configured
    /// with `native = true` on some network).
    Price { coin: String, price: String },
}

pub async fn run(action: RateAction, config: &Config) -> CliResult {
    let (currency, rate) = match action {
        RateAction::Set { currency, rate } => (currency, rate),
        RateAction::Price { coin, price } => return set_price(config, &coin, &price).await,
    };
    let currency = epusdt::domain::currency::normalize(&currency);
    if !epusdt::domain::currency::is_fiat_code(&currency) {
        return Err(CliError::Currency(currency).into());
    }
    let rate = epusdt::domain::amount::parse_plain(rate.trim(), false)
        .filter(|r| *r > Decimal::ZERO)
        .ok_or_else(|| CliError::Rate(rate.clone()))?;
    let db = app::open_database(config).await?;
    service::rate::set_rate(&db, &currency, rate).await?;
    // Audited like the admin API's rate change, with the CLI as the actor.
    AuditLog::open(db.clone(), &config.data_dir.join("audit"))
        .map_err(|e| app::AppError::Audit(e.to_string()))?
        .record(
            AuditEvent::new(ACTOR_CLI, actions::RATE_SET, format!("rate:{currency}"))
                .with_details(serde_json::json!({ "rate": rate.normalize().to_string() })),
        )
        .await?;
    println!("rate set: 1 USDT = {rate} {currency}");
    Ok(())
}

async fn set_price(config: &Config, coin: &str, price: &str) -> CliResult {
    let coins = service::rate::configured_coins(config);
    let Some(token) = coins
        .keys()
        .find(|t| t.as_str().eq_ignore_ascii_case(coin.trim()))
        .copied()
    else {
        return Err(CliError::Invalid(format!(
            "`{coin}` is not a configured native coin ({}); configure it first with [networks.<name>.tokens.<coin>] native = true",
            if coins.is_empty() {
                "none is configured".to_string()
            } else {
                coins.keys().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
            }
        ))
        .into());
    };
    let price = epusdt::domain::amount::parse_plain(price.trim(), false)
        .filter(|r| *r > Decimal::ZERO)
        .ok_or_else(|| {
            CliError::Invalid(format!(
                "`{price}` is not a price: use USDT per 1 {token} as a positive decimal, e.g. 0.25"
            ))
        })?;
    let db = app::open_database(config).await?;
    service::rate::set_price(&db, token, price).await?;
    AuditLog::open(db.clone(), &config.data_dir.join("audit"))
        .map_err(|e| app::AppError::Audit(e.to_string()))?
        .record(
            AuditEvent::new(ACTOR_CLI, actions::PRICE_SET, format!("price:{token}"))
                .with_details(serde_json::json!({ "usdt_price": price.normalize().to_string() })),
        )
        .await?;
    println!("price set: 1 {token} = {} USDT", price.normalize());
    Ok(())
}
