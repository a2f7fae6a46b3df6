//! The persisted scan position of a network (`chain_cursors`): initialised once, then moved
//! only by a compare-and-swap in the same transaction as the range's transfers.
use std::collections::BTreeMap;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, Set,
    sea_query::Expr,
};
use tokio::sync::watch;

use super::{Cursor, RoundError, Watcher};
use crate::{
    chain::{START_MARGIN, Scanner, reorg},
    domain::network::Network,
    service::{
        self,
        order::{CreditOutcome, IncomingTransfer},
    },
    store::entities::chain_cursor,
};

impl<S: Scanner> Watcher<S> {
    pub(super) async fn load_cursor(
        &self,
        confirmed: i64,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Cursor, RoundError> {
        let network = self.network();
        if let Some(row) = chain_cursor::Entity::find_by_id(network.as_str())
            .one(&self.db)
            .await?
        {
            return Ok(Cursor {
                block: row.block_number,
                hash: row.block_hash,
            });
        }
        let block = match self.settings.start_block {
            Some(b) => i64::try_from(b).unwrap_or(i64::MAX).saturating_sub(1),
            None => confirmed.saturating_sub(START_MARGIN),
        }
        .max(-1);
        let hash = match u64::try_from(block) {
            Ok(at) if block <= confirmed => {
                Self::stoppable(stop, self.scanner.block_hash(at)).await?
            }
            _ => String::new(),
        };
        let row = chain_cursor::ActiveModel {
            network: Set(network.as_str().into()),
            block_number: Set(block),
            block_hash: Set(hash.clone()),
            updated_at: Set(service::now()),
        };
        if let Err(e) = row.insert(&self.db).await {
            // Lost a race with another instance: use its row.
            return match chain_cursor::Entity::find_by_id(network.as_str())
                .one(&self.db)
                .await?
            {
                Some(row) => Ok(Cursor {
                    block: row.block_number,
                    hash: row.block_hash,
                }),
                None => Err(e.into()),
            };
        }
        tracing::info!(%network, cursor = block, "chain cursor initialised; scanning starts at the next block");
        Ok(Cursor { block, hash })
    }

    /// Writes the range's transfers and the new cursor in one transaction. The cursor update
    /// is a compare-and-swap on the previous cursor: if anyone moved it meanwhile, nothing of
    /// this range is written.
    pub(super) async fn commit(
        &self,
        prev: &Cursor,
        next: &Cursor,
        transfers: &[IncomingTransfer],
    ) -> Result<Vec<CreditOutcome>, RoundError> {
        // A watcher that lost the lease (renewals failing, or taken over) writes nothing; the
        // cursor compare-and-swap below catches what slips between this check and the commit.
        if !self.lease.held() {
            return Err(RoundError::LeaseLost);
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.commit_once(prev, next, transfers).await {
                Err(RoundError::Db(e) | RoundError::Credit(service::order::OrderError::Db(e)))
                    if crate::store::is_transient(&e)
                        && attempt < crate::store::TRANSIENT_ATTEMPTS =>
                {
                    tracing::debug!(network = %self.network(), attempt, error = %e, "transient conflict committing a range; retrying");
                    crate::store::transient_pause(attempt).await;
                }
                other => return other,
            }
        }
    }

    async fn commit_once(
        &self,
        prev: &Cursor,
        next: &Cursor,
        transfers: &[IncomingTransfer],
    ) -> Result<Vec<CreditOutcome>, RoundError> {
        let txn = crate::store::begin_write(&self.db).await?;
        let mut outcomes = Vec::with_capacity(transfers.len());
        for t in transfers {
            outcomes.push(service::order::credit_transfer_in(&txn, &self.rules, t).await?);
        }
        let moved = move_cursor(&txn, self.network(), prev, next).await?;
        if !moved {
            txn.rollback().await?;
            return Err(RoundError::CursorMoved);
        }
        reorg::record(
            &txn,
            self.network(),
            (prev.block, &prev.hash),
            (next.block, &next.hash),
        )
        .await?;
        txn.commit().await?;
        Ok(outcomes)
    }
}

/// Compare-and-swap of the cursor row from `prev` to `next`; `false` when it was not `prev`.
pub(super) async fn move_cursor(
    txn: &sea_orm::DatabaseTransaction,
    network: Network,
    prev: &Cursor,
    next: &Cursor,
) -> Result<bool, DbErr> {
    let res = chain_cursor::Entity::update_many()
        .col_expr(chain_cursor::Column::BlockNumber, Expr::value(next.block))
        .col_expr(
            chain_cursor::Column::BlockHash,
            Expr::value(next.hash.clone()),
        )
        .col_expr(chain_cursor::Column::UpdatedAt, Expr::value(service::now()))
        .filter(chain_cursor::Column::Network.eq(network.as_str()))
        .filter(chain_cursor::Column::BlockNumber.eq(prev.block))
        .filter(chain_cursor::Column::BlockHash.eq(prev.hash.clone()))
        .exec(txn)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Persisted cursors of every network (for `/health` on instances that do not hold the lease).
pub async fn cursors(db: &DatabaseConnection) -> Result<BTreeMap<String, i64>, DbErr> {
    Ok(chain_cursor::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|c| (c.network, c.block_number))
        .collect())
}
