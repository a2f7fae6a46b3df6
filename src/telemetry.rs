//! Logging: JSON lines to stdout and to `<log_dir>/epusdt.log`, rotated daily and when it
//! reaches `log_max_size_mb` (rotated files are `epusdt.log.1`, `.2`, … newest first; at most
//! `log_max_files` are kept). The level filter can be replaced while running (SIGHUP reload).
//!
//! Never log a secret: secrets are `secret::Secret`, whose `Debug` is redacted. sqlx is capped at
//! `warn` by default because it logs every statement at `info`.
pub mod metrics;

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

/// `<log_dir>/epusdt.log`, rotated daily and at `log_max_size_mb`, `log_max_files` in all.
fn file_appender(config: &Config) -> std::io::Result<BasicRollingFileAppender> {
    let log_dir = config.effective_log_dir();
    std::fs::create_dir_all(&log_dir)?;
    let mut condition = RollingConditionBasic::new().daily();
    if config.log_max_size_mb > 0 {
        condition = condition.max_size(config.log_max_size_mb.saturating_mul(1024 * 1024));
    }
    // The crate's `max_files` counts the rotated files besides the current one.
    BasicRollingFileAppender::new(
        log_dir.join("epusdt.log"),
        condition,
        config.log_max_files.saturating_sub(1).max(1),
    )
}

/// Installs the global subscriber with `log_level`, `log_dir`, `log_max_size_mb` and
/// `log_max_files` from `config`; `RUST_LOG` overrides the level.
pub fn init(config: &Config) -> std::io::Result<LogGuard> {
    let (file_writer, guard) = tracing_appender::non_blocking(file_appender(config)?);
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn the_log_file_rotates_by_size_and_keeps_log_max_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config {
            log_max_size_mb: 1,
            log_max_files: 3,
            ..Config::for_tests(dir.path())
        };
        let mut file = file_appender(&config).expect("appender");
        let line = [b'x'; 1023];
        for _ in 0..(5 * 1024) {
            file.write_all(&line).expect("write");
            file.write_all(b"\n").expect("write");
        }
        file.flush().expect("flush");
        let logs = config.effective_log_dir();
        let mut names: Vec<String> = std::fs::read_dir(&logs)
            .expect("log dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["epusdt.log", "epusdt.log.1", "epusdt.log.2"]);
        for n in &names {
            let len = std::fs::metadata(logs.join(n)).expect("meta").len();
            assert!(len <= 1024 * 1024, "{n}: {len} bytes");
        }
    }
}
