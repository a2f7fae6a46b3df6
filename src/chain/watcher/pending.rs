//! The "confirming" display, once a round has reached the confirmed head: the transfers the
//! scanner sees in the blocks above it (`confirmed + 1 ..= head`) that would pay an order, by
//! crediting's own rules, replace the network's `pending_transfers` rows
//! (`service::order::confirming`). Display only: it never credits, never moves the cursor and
//! never fails the round — a failed read leaves the rows to expire at their `fresh_until`.
use std::{collections::HashSet, time::Duration};

use tokio::sync::watch;

use super::{Heads, Scanner, Watcher};
use crate::service::{self, order::confirming};

/// Most unconfirmed blocks read per round (the newest ones): a chain configured with more
/// confirmations shows a payment only in its last this-many blocks before it is credited.
pub const MAX_WINDOW: i64 = 1_000;

/// What this watcher last wrote, so an empty window costs no database write.
#[derive(Debug, Default)]
pub(super) struct Pending {
    /// Rows last written for the network; `None` before the first write (rows of an earlier
    /// run may still be there).
    written: Option<usize>,
}

impl<S: Scanner> Watcher<S> {
    /// Refreshes the network's confirming transfers (see the module comment).
    pub(super) async fn show_unconfirmed(
        &mut self,
        heads: &Heads,
        confirmed: i64,
        watched: &HashSet<String>,
        stop: &mut watch::Receiver<bool>,
    ) {
        let network = self.network();
        let head = i64::try_from(heads.head).unwrap_or(i64::MAX);
        let from = confirmed
            .saturating_add(1)
            .max(head - MAX_WINDOW + 1)
            .max(0);
        if self.settings.show_confirming && head < from {
            // No block above the confirmed head: nothing read, nothing to conclude (TRON's
            // head falls back to the solidified one when `/wallet/getnowblock` fails). Rows
            // written before expire on their own.
            return;
        }
        let seen = if !self.settings.show_confirming || watched.is_empty() {
            Vec::new()
        } else {
            let (Ok(from_u), Ok(to_u)) = (u64::try_from(from), u64::try_from(head)) else {
                return;
            };
            let read = tokio::select! {
                r = self.scanner.scan_unconfirmed(from_u, to_u, watched) => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            let transfers = match read {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(%network, error = %e, from, to = head, "could not read the unconfirmed blocks; the confirming display waits for the next round");
                    return;
                }
            };
            let required = head.saturating_sub(confirmed).saturating_add(1);
            match confirming::matching(&self.db, &self.rules, &transfers, head, required).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(%network, error = %e, "could not match the unconfirmed transfers to orders");
                    return;
                }
            }
        };
        if seen.is_empty() && self.pending.written == Some(0) {
            return;
        }
        if !self.lease.held() {
            return;
        }
        let fresh_until = service::now().saturating_add(self.fresh_secs());
        match confirming::replace(&self.db, network, &seen, fresh_until).await {
            Ok(()) => self.pending.written = Some(seen.len()),
            Err(e) => {
                tracing::warn!(%network, error = %e, "could not store the confirming transfers");
            }
        }
    }

    /// How long written rows are believed: a few rounds, and at least a minute.
    fn fresh_secs(&self) -> i64 {
        let rounds = self
            .settings
            .poll_interval
            .saturating_mul(4)
            .saturating_add(self.settings.lease_ttl)
            .max(Duration::from_secs(60));
        i64::try_from(rounds.as_secs()).unwrap_or(i64::MAX)
    }
}
