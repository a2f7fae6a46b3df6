//! Transfers in the blocks above the confirmed head, for the "confirming" status only: one
//! `eth_getLogs` per chunk of watched addresses over the unconfirmed blocks (at most
//! `confirmations` of them), plus one header per block that holds a match (its timestamp, for
//! the order window). None of the scan's proofs (bloom checks, header re-reads): nothing read
//! here is ever credited — a missed or stale answer only delays or drops the display, and the
//! next round reads the window again, so a transfer whose block vanished disappears.
use std::collections::{BTreeMap, HashSet};

use alloy::providers::Provider;

use super::{EvmScanner, errors::logs_error, header, to_transfer};
use crate::{chain::ScanError, domain::transfer::IncomingTransfer};

impl EvmScanner {
    pub(super) async fn unconfirmed(
        &self,
        from: u64,
        to: u64,
        watched: &HashSet<String>,
    ) -> Result<Vec<IncomingTransfer>, ScanError> {
        if watched.is_empty() || from > to {
            return Ok(Vec::new());
        }
        let (_, filters) = self.log_filters(watched, from, to);
        let net = self.settings.network;
        let contracts = &self.contracts;
        let filters = &filters;
        self.endpoints
            .call("eth_getLogs (unconfirmed blocks)", |n| {
                self.on(n, |p| async move {
                    let mut logs = Vec::new();
                    for filter in filters {
                        logs.extend(
                            p.get_logs(filter)
                                .await
                                .map_err(|e| logs_error(e, to - from + 1))?,
                        );
                    }
                    let mut times: BTreeMap<u64, (String, i64)> = BTreeMap::new();
                    let mut out = Vec::new();
                    for log in logs {
                        let Some(mut t) = to_transfer(&log, net, contracts, watched, from, to)?
                        else {
                            continue;
                        };
                        let number = log.block_number.unwrap_or_default();
                        let (hash, time) = match times.get(&number) {
                            Some(known) => known.clone(),
                            None => {
                                // A node without the header yet: shown next round.
                                let Ok(h) = header(&p, number).await else {
                                    continue;
                                };
                                let known = (
                                    format!("{:#x}", h.hash),
                                    i64::try_from(h.timestamp.to::<u64>()).unwrap_or(i64::MAX),
                                );
                                times.insert(number, known.clone());
                                known
                            }
                        };
                        // The block changed between the two reads: the next round sees it.
                        if hash != t.block_hash {
                            continue;
                        }
                        t.block_time = time;
                        out.push(t);
                    }
                    out.sort_by_key(|t| (t.block_number, t.log_index));
                    Ok(out)
                })
            })
            .await
    }
}
