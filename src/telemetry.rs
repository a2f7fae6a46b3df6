//! Logging: JSON lines to stdout and to `<log_dir>/epusdt.log`, rotated daily and when it
//! reaches `log_max_size_mb` (rotated files are `epusdt.log.1`, `.2`, … newest first; at most
//! `log_max_files` are kept). The level filter can be replaced while running (SIGHUP reload).
//!
//! Never log a secret: secrets are `secret::Secret`, whose `Debug` is redacted. sqlx is capped at
//! `warn` by default because it logs every statement at `info`.
use rolling_file::{BasicRollingFileAppender, RollingConditionBasic};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::{
    EnvFilter, Registry, fmt, layer::SubscriberExt, reload, util::SubscriberInitExt,
};

use crate::config::Config;

/// Keep the guard alive for the life of the process: dropping it flushes the file writer.
pub struct LogGuard {
    _file: WorkerGuard,
    /// `None` when `RUST_LOG` sets the filter: it then wins over `log_level`, also on reload.
    filter: Option<reload::Handle<EnvFilter, Registry>>,
}

impl LogGuard {
    /// Puts the filter `level` (a `log_level` value) in force. `Ok(false)`: `RUST_LOG` governs
    /// the filter and `level` was not applied.
    pub fn set_level(&self, level: &str) -> Result<bool, String> {
        let Some(handle) = &self.filter else {
            return Ok(false);
        };
        let filter = default_filter(level).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())?;
        Ok(true)
    }
}

fn default_filter(level: &str) -> Result<EnvFilter, tracing_subscriber::filter::ParseError> {
    EnvFilter::try_new(format!("sqlx=warn,sea_orm=warn,{level}"))
}

/// Installs the global subscriber with `log_level`, `log_dir`, `log_max_size_mb` and
/// `log_max_files` from `config`; `RUST_LOG` overrides the level.
pub fn init(config: &Config) -> std::io::Result<LogGuard> {
    let log_dir = config.effective_log_dir();
    std::fs::create_dir_all(&log_dir)?;
    let mut condition = RollingConditionBasic::new().daily();
    if config.log_max_size_mb > 0 {
        condition = condition.max_size(config.log_max_size_mb.saturating_mul(1024 * 1024));
    }
    // `max_files` counts the rotated files besides the current one.
    let appender = BasicRollingFileAppender::new(
        log_dir.join("epusdt.log"),
        condition,
        config.log_max_files.saturating_sub(1).max(1),
    )?;
    let (file_writer, guard) = tracing_appender::non_blocking(appender);
    let (filter, handle) = match EnvFilter::try_from_env("RUST_LOG") {
        Ok(f) => (f, None),
        Err(_) => {
            let f = default_filter(&config.log_level)
                .unwrap_or_else(|_| EnvFilter::new("sqlx=warn,sea_orm=warn,info"));
            (f, Some(()))
        }
    };
    let (filter, reload_handle) = reload::Layer::new(filter);
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
    Ok(LogGuard {
        _file: guard,
        filter: handle.map(|()| reload_handle),
    })
}
