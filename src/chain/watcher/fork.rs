//! Stepping back over a reorg below the cursor, and raising transfers recorded from blocks
//! that are no longer on the chain.
use std::collections::BTreeSet;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tokio::sync::watch;

use super::{Cursor, RoundError, Watcher, cursor::move_cursor};
use crate::{
    audit::{ACTOR_SYSTEM, AuditEvent, actions},
    chain::{MIN_REORG_STEP, Scanner, reorg},
    store::entities::transfer,
};

impl<S: Scanner> Watcher<S> {
    /// The cursor block's hash changed: the chain reorganised below our cursor (deeper than
    /// the configured confirmations). Find the fork point — the newest stored checkpoint (see
    /// [`reorg`]) at least max(2 × confirmations, [`MIN_REORG_STEP`]) blocks back whose hash
    /// the chain still has — and rescan from there. Transfers recorded from blocks that are no
    /// longer on the chain are raised (error log, metric `epusdt_reorged_transfers_total`,
    /// audit event) every time they are found, **before** the cursor moves: an RPC failure
    /// during the check leaves the cursor where it is, so the next round checks again.
    pub(super) async fn step_back(
        &mut self,
        cursor: &Cursor,
        now_hash: &str,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), RoundError> {
        let network = self.network();
        let depth = i64::try_from(self.settings.confirmations)
            .unwrap_or(i64::MAX)
            .saturating_mul(2)
            .max(MIN_REORG_STEP);
        let limit = cursor.block.saturating_sub(depth);
        let checkpoints = reorg::load(&self.db, network).await?;
        let mut next = None;
        let mut probed = 0usize;
        for (block, stored) in checkpoints.iter().rev().filter(|(b, _)| *b <= limit) {
            let Ok(at) = u64::try_from(*block) else {
                continue;
            };
            probed += 1;
            if Self::stoppable(stop, self.scanner.block_hash(at)).await? == *stored {
                next = Some(Cursor {
                    block: *block,
                    hash: stored.clone(),
                });
                break;
            }
        }
        let next = match next {
            Some(c) => c,
            None => {
                // Nothing stored agrees (none kept yet, or a reorg deeper than every one of
                // them): step back by the minimum below the deepest block known to differ.
                let deepest = checkpoints
                    .iter()
                    .filter(|(b, _)| *b <= limit)
                    .map(|(b, _)| *b)
                    .min()
                    .unwrap_or(cursor.block);
                let block = deepest.saturating_sub(depth).max(-1).min(limit.max(-1));
                if probed > 0 {
                    tracing::error!(%network, cursor = cursor.block, new_cursor = block, probed, "reorg deeper than every stored block hash: rescanning from a guess; payments in older replaced blocks may be missed — check the chain and set networks.{network}.start_block if needed");
                }
                let hash = match u64::try_from(block) {
                    Ok(at) => Self::stoppable(stop, self.scanner.block_hash(at)).await?,
                    Err(_) => String::new(),
                };
                Cursor { block, hash }
            }
        };
        tracing::warn!(
            %network,
            cursor = cursor.block,
            stored_hash = %cursor.hash,
            chain_hash = %now_hash,
            new_cursor = next.block,
            "reorg below the cursor: the cursor block changed hash; stepping back to rescan (replay is a no-op). Consider raising networks.{network}.confirmations"
        );
        crate::telemetry::metrics::chain_reorg(network);

        // Transfers already recorded above the new cursor: still on the chain?
        let recorded = transfer::Entity::find()
            .filter(transfer::Column::Network.eq(network.as_str()))
            .filter(transfer::Column::BlockNumber.gt(next.block))
            .filter(transfer::Column::BlockNumber.lte(cursor.block))
            .all(&self.db)
            .await?;
        let blocks: BTreeSet<(i64, String)> = recorded
            .iter()
            .filter(|t| !t.block_hash.is_empty())
            .map(|t| (t.block_number, t.block_hash.clone()))
            .collect();
        let mut failed = None;
        for (number, recorded_hash) in blocks {
            let Ok(at) = u64::try_from(number) else {
                continue;
            };
            // One failed call must not hide the others: check every block, report what was
            // found, then fail the round (the cursor stays; the next round checks again).
            let chain_hash = match Self::stoppable(stop, self.scanner.block_hash(at)).await {
                Ok(h) => h,
                Err(RoundError::Stopped) => return Err(RoundError::Stopped),
                Err(e) => {
                    tracing::warn!(%network, block = number, error = %e, "could not check a recorded block after a reorg; checking again next round");
                    failed.get_or_insert(e);
                    continue;
                }
            };
            if chain_hash != recorded_hash {
                for t in recorded.iter().filter(|t| t.block_number == number) {
                    self.raise_reorged(t, &chain_hash).await;
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if !self.lease.held() {
            return Err(RoundError::LeaseLost);
        }
        let txn = crate::store::begin_write(&self.db).await?;
        if !move_cursor(&txn, network, cursor, &next).await? {
            txn.rollback().await?;
            return Err(RoundError::CursorMoved);
        }
        reorg::record(
            &txn,
            network,
            (cursor.block, &cursor.hash),
            (next.block, &next.hash),
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// A recorded (maybe credited) transfer whose block is no longer on the chain: error log,
    /// metric and audit event, for an operator to review the order by hand.
    async fn raise_reorged(&self, t: &transfer::Model, chain_hash: &str) {
        let network = self.network();
        tracing::error!(
            %network,
            tx = %t.tx_hash,
            log_index = t.log_index,
            block = t.block_number,
            recorded_hash = %t.block_hash,
            chain_hash = %chain_hash,
            order_id = ?t.order_id,
            kind = %t.kind,
            "transfer was recorded from a block that is no longer on the chain (reorg deeper than the confirmations): review this order by hand and raise networks.{network}.confirmations"
        );
        crate::telemetry::metrics::reorged_transfers(network, 1);
        let event = AuditEvent::new(
            ACTOR_SYSTEM,
            actions::CHAIN_TRANSFER_REORGED,
            format!(
                "transfer:{}:{}:{}",
                network.as_str(),
                t.tx_hash,
                t.log_index
            ),
        )
        .with_details(serde_json::json!({
            "block": t.block_number,
            "recorded_hash": t.block_hash,
            "chain_hash": chain_hash,
            "order_id": t.order_id,
            "kind": t.kind,
            "amount": t.amount,
            "to": t.to_address,
        }));
        if let Err(e) = self.audit.record(event).await {
            tracing::error!(%network, tx = %t.tx_hash, error = %e, "could not write the audit event of a reorged transfer");
        }
    }
}
