//! Long-running tasks of `run_until_stopped` that follow the live configuration: the chain
//! watchers (restarted when their settings change on a reload) and the retention schedule
//! (finished jobs, audit files, SQLite WAL checkpoint).
use std::time::Duration;

use tokio::{sync::watch, time::Instant};

use crate::{chain, config::Config, service, state::AppState};

/// What the watchers are built from: a reload that changes none of it leaves them running.
fn watcher_inputs(c: &Config) -> impl PartialEq + use<'_> {
    (&c.networks, c.payment_clock_tolerance_secs)
}

/// Runs one watcher per configured network until `stop`; when a reload changes the chain
/// settings, stops them (each gets `shutdown_timeout_secs`) and starts them again from the new
/// configuration. The cursor and the lease live in the database, so a restart resumes where
/// the last one stopped.
pub(super) async fn chain_watchers(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut config_rx = state.config.subscribe();
    loop {
        let spawned = *config_rx.borrow_and_update();
        let (gen_tx, gen_rx) = watch::channel(false);
        let handles = chain::spawn_all(spawned, &state.chain_deps(), gen_rx);
        let restart = loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break Some(false),
                changed = config_rx.changed() => {
                    if changed.is_err() {
                        break None;
                    }
                    let now = *config_rx.borrow_and_update();
                    if watcher_inputs(now) != watcher_inputs(spawned) {
                        break Some(true);
                    }
                }
            }
        };
        let restart = match restart {
            Some(r) => r,
            None => {
                // The configuration can no longer change: run until the stop.
                let _ = stop.wait_for(|s| *s).await;
                false
            }
        };
        let _ = gen_tx.send(true);
        let grace = Duration::from_secs(state.config.shutdown_timeout_secs);
        for h in handles {
            if tokio::time::timeout(grace, h).await.is_err() {
                tracing::warn!("a chain watcher did not stop within the grace period");
            }
        }
        if !restart {
            return;
        }
        let next = *config_rx.borrow();
        if let Ok(chains) = next.chains() {
            let keep: Vec<_> = chains.iter().map(|c| c.network).collect();
            state.chains.retain(&keep);
        }
        tracing::info!("chain settings changed: chain watchers restarting");
    }
}

/// Trims finished jobs and old audit files every `retention_interval_secs` (first run at
/// start) and checkpoints the SQLite WAL every `sqlite_checkpoint_secs`; a reload that changes
/// an interval takes effect at once.
pub(super) async fn retention(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut config_rx = state.config.subscribe();
    let mut reloadable = true;
    let mut last_trim: Option<Instant> = None;
    let mut last_checkpoint = Instant::now();
    loop {
        let now = Instant::now();
        let config = state.config.get();
        let next_trim = last_trim
            .map(|t| t + Duration::from_secs(config.retention_interval_secs))
            .unwrap_or(now);
        let next_checkpoint = (config.sqlite_checkpoint_secs > 0)
            .then(|| last_checkpoint + Duration::from_secs(config.sqlite_checkpoint_secs));
        let wake = next_checkpoint.map_or(next_trim, |c| c.min(next_trim));
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = stop.wait_for(|s| *s) => return,
            // A reload: compute the next runs from the new intervals.
            changed = config_rx.changed(), if reloadable => {
                // Err: the configuration can no longer change; wake on the timers only.
                reloadable = changed.is_ok();
                continue;
            }
        }
        let now = Instant::now();
        if now >= next_trim {
            service::retention::trim(&state.queue, &state.audit, config).await;
            last_trim = Some(Instant::now());
        }
        if next_checkpoint.is_some_and(|c| now >= c) {
            service::retention::checkpoint(&state.db, &state.queue).await;
            last_checkpoint = Instant::now();
        }
    }
}
