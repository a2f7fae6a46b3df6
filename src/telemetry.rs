//! Logging: JSON lines to stdout and to a daily-rotated file under the log directory.
//!
//! Never log a secret: secrets are `secret::Secret`, whose `Debug` is redacted. sqlx is capped at
//! `warn` by default because it logs every statement at `info`.
pub mod metrics;

use std::path::Path;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt};

/// Keep the guard alive for the life of the process: dropping it flushes the file writer.
pub struct LogGuard {
    _file: WorkerGuard,
}

/// Installs the global subscriber. `level` is a tracing filter (`info`, `epusdt=debug`, ...);
/// `RUST_LOG` overrides it.
pub fn init(level: &str, log_dir: &Path) -> std::io::Result<LogGuard> {
    std::fs::create_dir_all(log_dir)?;
    let appender = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix("epusdt")
        .filename_suffix("log")
        .max_log_files(30)
        .build(log_dir)
        .map_err(std::io::Error::other)?;
    let (file_writer, guard) = tracing_appender::non_blocking(appender);
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("sqlx=warn,sea_orm=warn,{level}")));
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt::layer().json().with_current_span(false))
        .with(
            fmt::layer()
                .json()
                .with_current_span(false)
                .with_writer(file_writer),
        )
        .try_init()
        .map_err(std::io::Error::other)?;
    Ok(LogGuard { _file: guard })
}
