//! Transfers in the blocks above the confirmed (solidified) head, for the "confirming" status
//! only: `/wallet/gettransactioninfobyblocknum` (the unsolidified API) per block. TRON has no
//! range query, so each block is read **once**: a block with receipts is remembered until it
//! falls below the window; an empty answer is not (java-tron answers `[]` for a block it does
//! not have yet), so it is asked again next round. Steady state: one request per new block.
//!
//! A block that a TRON fork replaces before it solidifies (rare, one or two blocks) keeps
//! showing its transfer until that height leaves the window (about a minute); it is never
//! credited, since crediting reads solidified blocks only.
use std::{
    collections::{BTreeMap, HashSet},
    sync::Mutex,
};

use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use super::{CONCURRENCY, TronScanner, api::TxInfo};
use crate::{
    chain::{ScanError, rpc::CallError},
    domain::transfer::IncomingTransfer,
    redact::truncate,
};

/// The receipts of recent unsolidified blocks (by number) and the watched set they were
/// filtered for (a different set starts over).
#[derive(Default)]
pub(super) struct Recent {
    inner: Mutex<Blocks>,
}

#[derive(Default)]
struct Blocks {
    watched: HashSet<String>,
    transfers: BTreeMap<u64, Vec<IncomingTransfer>>,
}

impl Recent {
    fn lock(&self) -> std::sync::MutexGuard<'_, Blocks> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl TronScanner {
    pub(super) async fn unconfirmed(
        &self,
        from: u64,
        to: u64,
        watched: &HashSet<String>,
    ) -> Result<Vec<IncomingTransfer>, ScanError> {
        if watched.is_empty() || from > to {
            return Ok(Vec::new());
        }
        let missing: Vec<u64> = {
            let mut g = self.recent.lock();
            if g.watched != *watched {
                g.watched = watched.clone();
                g.transfers.clear();
            }
            g.transfers = g.transfers.split_off(&from);
            (from..=to)
                .filter(|n| !g.transfers.contains_key(n))
                .collect()
        };
        let fetched: Vec<(u64, Option<Vec<IncomingTransfer>>)> = self
            .endpoints
            .call("gettransactioninfobyblocknum (unsolidified)", |c| {
                let missing = missing.clone();
                async move {
                    futures::stream::iter(missing)
                        .map(|n| {
                            let c = c.clone();
                            async move {
                                let v: Value = c
                                    .post("wallet/gettransactioninfobyblocknum", json!({ "num": n }))
                                    .await?;
                                let Value::Array(items) = v else {
                                    return Err(CallError::Failed(format!(
                                        "wallet/gettransactioninfobyblocknum {n}: unexpected answer {}",
                                        truncate(&v.to_string(), 200)
                                    )));
                                };
                                let infos: Vec<TxInfo> = items
                                    .into_iter()
                                    .filter_map(|i| serde_json::from_value(i).ok())
                                    .collect();
                                // `[]`: empty, or not on this node yet — ask again next round.
                                // Receipts of another block: a lagging backend; same.
                                if infos.is_empty() || infos.iter().any(|i| i.block_number != n) {
                                    return Ok((n, None));
                                }
                                Ok((n, self.transfers(n, &infos, watched).ok()))
                            }
                        })
                        .buffered(CONCURRENCY)
                        .try_collect()
                        .await
                }
            })
            .await?;
        let mut g = self.recent.lock();
        for (n, found) in fetched {
            if let Some(found) = found {
                g.transfers.insert(n, found);
            }
        }
        Ok(g.transfers
            .range(from..=to)
            .flat_map(|(_, ts)| ts.iter().cloned())
            .collect())
    }
}
