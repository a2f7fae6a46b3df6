//! `epusdt config check`: the effective config, validated, printed with secrets redacted.
use clap::Subcommand;
use epusdt::config::Config;

use super::CliResult;

#[derive(Subcommand)]
pub enum ConfigAction {
    /// Validate the effective config and print it with secrets redacted.
    Check,
}

/// The config was validated while loading; reaching here means it is ok.
pub fn run(action: ConfigAction, config: &Config) -> CliResult {
    match action {
        ConfigAction::Check => {
            println!("{}", toml_like(config)?);
            for w in config.startup_warnings() {
                println!("# warning: {w}");
            }
            if !config.has_configured_rate() {
                println!(
                    "# warning: no fiat rate in the config (forced_usdt_rate, usdt_rates); an admin-set rate (`epusdt rate set CNY 7.2`) also serves"
                );
            }
            println!(
                "# config ok; database: {}",
                epusdt::redact::secrets(&config.effective_database_url())
            );
        }
    }
    Ok(())
}

/// The effective config as `key = value` lines (secrets already redacted by `Secret`).
fn toml_like(config: &Config) -> Result<String, serde_json::Error> {
    let v = serde_json::to_value(config)?;
    let mut out = String::from("# effective configuration (secrets redacted)\n");
    if let serde_json::Value::Object(map) = v {
        for (k, v) in map {
            out.push_str(&format!("{k} = {v}\n"));
        }
    }
    Ok(out)
}
