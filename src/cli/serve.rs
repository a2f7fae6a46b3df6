//! `epusdt serve` (and its upstream alias `epusdt http start`): run the gateway until
//! SIGTERM/SIGINT; `epusdt migrate`: apply the database migrations and exit.
use clap::Subcommand;
use epusdt::{
    app::{self, App},
    config::Config,
    telemetry,
};

use super::{CliError, CliResult};

#[derive(Subcommand)]
pub enum HttpAction {
    Start,
}

/// Telemetry (stdout + daily log file) → `App::build` → serve until a shutdown signal.
pub async fn serve(config: Config) -> CliResult {
    let _guard = telemetry::init(&config.log_level, &config.effective_log_dir())
        .map_err(CliError::LogDir)?;
    // Reported once, before anything else can fail: what the config cannot do.
    for w in config.startup_warnings() {
        tracing::warn!("{w}");
    }
    let app = App::build(config).await?;
    let (db, config) = (&app.state().db, &app.state().config);
    if !epusdt::service::rate::any_rate(db, config).await? {
        tracing::warn!(
            "no fiat rate: orders in fiat fail with 10006; set forced_usdt_rate (CNY per USDT) or usdt_rates in the config, or `epusdt rate set CNY 7.2`"
        );
    }
    if !epusdt::service::wallet::list(db)
        .await?
        .iter()
        .any(|w| w.enabled)
    {
        tracing::warn!(
            "no wallet is enabled: orders fail with 10003; add one with `epusdt wallet add --network tron --address T…` (or `epusdt import upstream`)"
        );
    }
    app.run_until_stopped(app::shutdown_signal()).await?;
    Ok(())
}

pub async fn migrate(config: &Config) -> CliResult {
    app::open_database(config).await?;
    println!(
        "migrations applied to {}",
        epusdt::redact::secrets(&config.effective_database_url())
    );
    Ok(())
}
