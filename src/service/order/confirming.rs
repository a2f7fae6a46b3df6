//! "Confirming" (BEpusdt's status 5): a transfer a chain watcher sees in a block above the
//! confirmed head that would pay an order. It is shown by check-status and the checkout page
//! with its confirmations so far and the confirmations needed, and nothing more.
//!
//! The state lives in `pending_transfers` so every instance can answer check-status, not only
//! the one holding the scanning lease; check-status reads the (small) table whole at most once a
//! second per process (`service::cache`), so a waiting order's poll costs no extra query. The watcher replaces a network's rows after each round
//! ([`replace`]): a transfer whose block vanished (reorg) is gone at the next round, and the
//! order reads as waiting again. A row is believed only until its `fresh_until`, so a watcher
//! that stopped cannot leave an order "confirming" for ever.
//!
//! Must never: credit anything, change an order's status or flags, or touch `transfers`.
//! Matching uses crediting's own rules, read-only ([`credit::slot_order_ids`] and
//! [`credit::pick_order`]): only a transfer that would pay the order when confirmed shows.
use std::{collections::HashMap, sync::Arc};

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use super::{
    IncomingTransfer, OrderError, OrderRules,
    choice::{Lookup, choice_status, lookup_cached},
    credit::{self, Pick},
    orders,
};
use crate::{
    domain::{
        amount,
        network::Network,
        order::{Order, OrderStatus},
    },
    service::{
        cache::{Caches, Confirming, TtlMap},
        now,
    },
    store::{
        self,
        entities::{order, pending_transfer},
    },
};

/// The status code check-status answers while a transfer is confirming.
pub const CONFIRMING: i16 = 5;

/// A transfer seen above the confirmed head that pays an order once confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub order_id: i64,
    pub trade_id: String,
    pub tx_hash: String,
    pub log_index: i64,
    pub block_number: i64,
    /// Blocks from the transfer's block to the head, both counted (1 = in the newest block).
    pub confirmations: i64,
    /// Confirmations at which its block is at the confirmed head (and it gets credited).
    pub required: i64,
}

/// What check-status shows for a trade_id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicStatus {
    /// 1 waiting, 2 paid, 3 expired, 4 cancelled (or choosing), 5 confirming.
    pub status: i16,
    /// `(confirmations, confirmations_required)` when `status` is 5.
    pub confirmations: Option<(i64, i64)>,
}

/// The transfers among `transfers` (seen in blocks above the confirmed head, `head` being the
/// newest block, `required` the confirmations a transfer needs to be credited) that would pay
/// an order now, by crediting's rules. Reads only.
pub async fn matching(
    db: &impl ConnectionTrait,
    rules: &OrderRules,
    transfers: &[IncomingTransfer],
    head: i64,
    required: i64,
) -> Result<Vec<Seen>, OrderError> {
    let mut out = Vec::new();
    for t in transfers {
        let amount_text = amount::canonical(t.amount);
        let ids = credit::slot_order_ids(db, rules, t, &amount_text).await?;
        if ids.is_empty() {
            continue;
        }
        let cands: Vec<Order> = orders(
            order::Entity::find()
                .filter(order::Column::Id.is_in(ids))
                .all(db)
                .await?,
        )?;
        if let Pick::Credit(o) =
            credit::pick_order(&cands, t.block_time, rules.clock_tolerance_secs)
        {
            out.push(Seen {
                order_id: o.id.get(),
                trade_id: o.trade_id.to_string(),
                tx_hash: t.tx_hash.clone(),
                log_index: t.log_index,
                block_number: t.block_number,
                confirmations: (head - t.block_number + 1).clamp(1, required.max(1)),
                required,
            });
        }
    }
    Ok(out)
}

/// Replaces `network`'s confirming transfers with `seen` in one transaction (first-seen times
/// of transfers still there are kept); each row is believed until `fresh_until`. Rows of any
/// network left unrefreshed for an hour are deleted on the way.
pub async fn replace(
    db: &DatabaseConnection,
    network: Network,
    seen: &[Seen],
    fresh_until: i64,
) -> Result<(), DbErr> {
    let now = now();
    let txn = store::begin_write(db).await?;
    let before = pending_transfer::Entity::find()
        .filter(pending_transfer::Column::Network.eq(network.as_str()))
        .all(&txn)
        .await?;
    // Rows nobody refreshed for an hour (a network no longer watched) go too.
    pending_transfer::Entity::delete_many()
        .filter(
            sea_orm::Condition::any()
                .add(pending_transfer::Column::Network.eq(network.as_str()))
                .add(pending_transfer::Column::FreshUntil.lt(now - 3_600)),
        )
        .exec(&txn)
        .await?;
    let rows: Vec<pending_transfer::ActiveModel> = seen
        .iter()
        .map(|s| {
            let seen_at = before
                .iter()
                .find(|b| b.tx_hash == s.tx_hash && b.log_index == s.log_index)
                .map_or(now, |b| b.seen_at);
            pending_transfer::ActiveModel {
                network: Set(network.as_str().into()),
                tx_hash: Set(s.tx_hash.clone()),
                log_index: Set(s.log_index),
                block_number: Set(s.block_number),
                order_id: Set(s.order_id),
                trade_id: Set(s.trade_id.clone()),
                confirmations: Set(s.confirmations),
                confirmations_required: Set(s.required),
                seen_at: Set(seen_at),
                fresh_until: Set(fresh_until),
                ..Default::default()
            }
        })
        .collect();
    if !rows.is_empty() {
        pending_transfer::Entity::insert_many(rows)
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    for s in seen {
        if !before
            .iter()
            .any(|b| b.tx_hash == s.tx_hash && b.log_index == s.log_index)
        {
            tracing::info!(%network, trade_id = %s.trade_id, tx = %s.tx_hash, block = s.block_number, confirmations = s.confirmations, required = s.required, "payment seen above the confirmed head; the order shows as confirming");
        }
    }
    for b in &before {
        let kept = seen
            .iter()
            .any(|s| s.tx_hash == b.tx_hash && s.log_index == b.log_index);
        if !kept && b.fresh_until >= now {
            tracing::debug!(%network, trade_id = %b.trade_id, tx = %b.tx_hash, "confirming transfer no longer above the confirmed head (credited, or its block vanished)");
        }
    }
    Ok(())
}

/// Every order with a fresh confirming transfer: order id → (confirmations, required) of its
/// most confirmed one. The table holds only payments confirming now, so it is read whole.
pub async fn all_seen(
    db: &impl ConnectionTrait,
    now: i64,
) -> Result<HashMap<i64, (i64, i64)>, DbErr> {
    let rows = pending_transfer::Entity::find()
        .filter(pending_transfer::Column::FreshUntil.gte(now))
        .order_by_asc(pending_transfer::Column::Confirmations)
        .limit(10_000)
        .all(db)
        .await?;
    // Ascending: the most confirmed transfer of an order is inserted last.
    Ok(rows
        .into_iter()
        .map(|r| (r.order_id, (r.confirmations, r.confirmations_required)))
        .collect())
}

/// The fresh confirming transfers of order `order_id` (the admin order view).
pub async fn of_order(
    db: &impl ConnectionTrait,
    order_id: i64,
) -> Result<Vec<pending_transfer::Model>, DbErr> {
    pending_transfer::Entity::find()
        .filter(pending_transfer::Column::OrderId.eq(order_id))
        .filter(pending_transfer::Column::FreshUntil.gte(now()))
        .order_by_asc(pending_transfer::Column::BlockNumber)
        .all(db)
        .await
}

/// [`all_seen`] through the process' cache (`service::cache`, one read a second at most).
async fn seen_for(
    db: &impl ConnectionTrait,
    cache: &TtlMap<(), Confirming>,
    order_id: i64,
    now: i64,
) -> Result<Option<(i64, i64)>, DbErr> {
    let all = match cache.get(&()) {
        Some(all) => all,
        None => {
            let all: Confirming = Arc::new(all_seen(db, now).await?);
            cache.put((), all.clone());
            all
        }
    };
    Ok(all.get(&order_id).copied())
}

/// What check-status shows for `trade_id`: an order's effective status — 5 instead while it
/// is waiting (or expired, its payment mined in time) and a transfer that pays it is
/// confirming — or a placeholder's [`choice_status`].
pub async fn public_status(
    db: &impl ConnectionTrait,
    caches: &Caches,
    trade_id: &str,
) -> Result<Option<PublicStatus>, OrderError> {
    let now = now();
    let Some(found) = lookup_cached(db, &caches.trades, trade_id).await? else {
        return Ok(None);
    };
    let status = match found {
        Lookup::Order(o) => {
            let status = o.effective_status(now);
            if matches!(status, OrderStatus::Waiting | OrderStatus::Expired)
                && let Some(seen) = seen_for(db, &caches.confirming, o.id.get(), now).await?
            {
                return Ok(Some(PublicStatus {
                    status: CONFIRMING,
                    confirmations: Some(seen),
                }));
            }
            status.code()
        }
        Lookup::Choice(c) => choice_status(&c, now),
    };
    Ok(Some(PublicStatus {
        status,
        confirmations: None,
    }))
}
