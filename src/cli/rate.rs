//! `epusdt rate set CUR RATE`: an admin-set fiat → USDT rate (fiat units per 1 USDT).
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
}

pub async fn run(action: RateAction, config: &Config) -> CliResult {
    let RateAction::Set { currency, rate } = action;
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
