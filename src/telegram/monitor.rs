//! Watches this instance's chain watchers and raises a `chain` notice when one falls
//! `tg_lag_alert_blocks` behind or has had no working RPC URL for [`RPC_DOWN_AFTER_SECS`], and
//! again when it recovers. Only watchers holding the lease count (a standby does not scan), so
//! several instances do not repeat each other.
use std::{collections::BTreeMap, future::Future, time::Duration};

use crate::{domain::notice::Notice, service, state::AppState};

/// How often the watchers are looked at.
pub const CHECK_EVERY: Duration = Duration::from_secs(30);
/// A watcher without a good round for this long while reporting an error counts as down.
pub const RPC_DOWN_AFTER_SECS: i64 = 300;

/// What is wrong with one watcher now, if anything.
pub fn problem(c: &crate::chain::ChainStatus, threshold: u64, now: i64) -> Option<String> {
    if c.role != "active" {
        return None;
    }
    let lag = match (c.confirmed_head, c.cursor) {
        (Some(h), Some(k)) => Some((h - k).max(0)),
        _ => c.lag_blocks,
    };
    if let Some(lag) = lag
        && u64::try_from(lag).unwrap_or(0) >= threshold
    {
        return Some(format!("{lag} blocks behind (alert at {threshold})"));
    }
    let stale = c
        .last_ok_unix
        .is_none_or(|t| now.saturating_sub(t) >= RPC_DOWN_AFTER_SECS);
    match &c.error {
        Some(e) if stale => Some(format!("no working RPC URL: {e}")),
        _ => None,
    }
}

pub async fn run(state: AppState, stop: impl Future<Output = ()> + Send) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(CHECK_EVERY);
    let mut raised: BTreeMap<&'static str, bool> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {}
        }
        let now = service::now();
        for (network, c) in state.chains.snapshot() {
            let p = problem(&c, state.config.tg_lag_alert_blocks, now);
            let was = raised.get(network).copied().unwrap_or(false);
            let notice = match (&p, was) {
                (Some(p), false) => Some(p.clone()),
                (None, true) => Some("recovered".to_string()),
                _ => None,
            };
            if let Some(problem) = notice {
                let n = Notice::Chain {
                    network: network.to_string(),
                    problem,
                };
                match service::telegram::raise(&state.queue, n).await {
                    Ok(()) => {
                        raised.insert(network, p.is_some());
                    }
                    Err(e) => tracing::warn!(error = %e, "could not queue a chain notice"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::ChainStatus;

    #[test]
    fn lag_and_dead_rpc_are_problems_only_for_the_lease_holder() {
        let now = 10_000;
        let lagging = ChainStatus {
            role: "active",
            confirmed_head: Some(500),
            cursor: Some(380),
            last_ok_unix: Some(now),
            ..Default::default()
        };
        assert!(problem(&lagging, 100, now).is_some_and(|p| p.contains("120 blocks")));
        assert_eq!(problem(&lagging, 200, now), None);
        let standby = ChainStatus {
            role: "standby",
            ..lagging.clone()
        };
        assert_eq!(problem(&standby, 100, now), None);
        let down = ChainStatus {
            role: "active",
            error: Some("all RPC URLs failed".into()),
            last_ok_unix: Some(now - RPC_DOWN_AFTER_SECS),
            ..Default::default()
        };
        assert!(problem(&down, 100, now).is_some_and(|p| p.contains("no working RPC URL")));
        let blip = ChainStatus {
            last_ok_unix: Some(now - 10),
            ..down.clone()
        };
        assert_eq!(
            problem(&blip, 100, now),
            None,
            "a short error is not an outage"
        );
    }
}
