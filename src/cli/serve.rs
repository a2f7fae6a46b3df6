//! `epusdt serve` (and its upstream alias `epusdt http start`): run the gateway until
//! SIGTERM/SIGINT, reloading the configuration on SIGHUP; `epusdt migrate`: apply the database
//! migrations and exit.
use clap::Subcommand;
use epusdt::{
    app::{self, App, Reloader},
    config::{Config, Sources},
    telemetry::{self, LogGuard},
};

use super::{CliError, CliResult};

#[derive(Subcommand)]
pub enum HttpAction {
    Start,
}

/// Telemetry (stdout + rotated log file) → `App::build` → serve until a shutdown signal;
/// SIGHUP re-reads `sources` and applies the new configuration (or refuses it and keeps the
/// running one).
pub async fn serve(config: Config, sources: Sources) -> CliResult {
    // First of all, so a HUP during start-up is queued for the reloader instead of killing
    // the process (the default action of SIGHUP).
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(CliError::Signal)?;
    let guard = telemetry::init(&config).map_err(CliError::LogDir)?;
    raise_open_files_limit();
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
    let reloads = tokio::spawn(reload_on_hangup(hangups, sources, app.reloader(), guard));
    let served = app.run_until_stopped(app::shutdown_signal()).await;
    reloads.abort();
    // The log guard (inside the reload task) flushes the file writer when dropped.
    let _ = reloads.await;
    served?;
    Ok(())
}

/// On each SIGHUP: load the configuration the way start-up did, apply it, log what changed,
/// what needs a restart, or why it was refused.
async fn reload_on_hangup(
    mut hangups: tokio::signal::unix::Signal,
    sources: Sources,
    reloader: Reloader,
    log: LogGuard,
) {
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the configuration");
        let new = match Config::load(&sources) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(
                    error = %epusdt::redact::secrets(&e.to_string()),
                    "configuration reload refused: the running configuration stays in force"
                );
                continue;
            }
        };
        let level = new.log_level.clone();
        match reloader.apply(new).await {
            Ok(changes) if changes.is_empty() => {
                tracing::info!("configuration reloaded: nothing changed")
            }
            Ok(changes) => {
                let applied = app::reload::keys(&changes, false);
                let restart = app::reload::keys(&changes, true);
                if applied.contains(&"log_level") {
                    match log.set_level(&level) {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!("log_level changed but RUST_LOG is set and wins")
                        }
                        Err(e) => tracing::error!(error = %e, "log_level not applied"),
                    }
                }
                tracing::info!(
                    applied = %applied.join(", "),
                    needs_restart = %restart.join(", "),
                    "configuration reloaded"
                );
                if !restart.is_empty() {
                    tracing::warn!(
                        keys = %restart.join(", "),
                        "these keys changed but are read only at start-up: restart to apply them"
                    );
                }
            }
            Err(e) => tracing::error!(
                error = %epusdt::redact::secrets(&e.to_string()),
                "configuration reload refused: the running configuration stays in force"
            ),
        }
    }
}

/// Raises the soft open-files limit to the hard one: every connection, database and Redis
/// socket is a file descriptor, and a low soft limit (1024 is common) caps the server early.
fn raise_open_files_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write only the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= lim.rlim_max {
            return;
        }
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            tracing::warn!(
                soft = lim.rlim_cur,
                hard = lim.rlim_max,
                "could not raise the open-files limit to the hard limit"
            );
        }
    }
}

pub async fn migrate(config: &Config) -> CliResult {
    app::open_database(config).await?;
    println!(
        "migrations applied to {}",
        epusdt::redact::secrets(&config.effective_database_url())
    );
    Ok(())
}
