//! An operator's resolution of a transfer the watcher could not credit on its own (late,
//! partial, overpaid, paid twice, unmatched): credit it to an order — through the same paid
//! compare-and-swap as the watcher (`credit::pay`), callback queued — or dismiss it.
//!
//! Never twice: the transfer's `kind` moves to `credited` or `dismissed` with a compare-and-swap
//! on its previous kind in the same transaction as the order's, so a second resolve (or two at
//! once) of one transfer finds it resolved. The caller audits the reason.
use rust_decimal::Decimal;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, sea_query::Expr,
};

use super::{CreditOutcome, IncomingTransfer, OrderError, OrderRules, credit, queue_callback};
use crate::{
    domain::{network::Network, order::OrderStatus},
    queue::JobQueue,
    store::{
        self,
        entities::{order, transfer},
    },
};

/// The transfer kinds an operator may resolve.
pub const RESOLVABLE: [&str; 5] = ["late", "partial", "overpaid", "paid_twice", "unmatched"];
/// `transfers.kind` after a resolve.
pub const CREDITED: &str = "credited";
pub const DISMISSED: &str = "dismissed";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Credit,
    Dismiss,
}

/// Which transfer: its id, or its transaction hash on the order's network; neither = the one
/// unresolved transfer recorded against the order.
#[derive(Debug, Clone, Default)]
pub struct TransferRef {
    pub id: Option<i64>,
    pub tx: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("order not found")]
    OrderNotFound,
    #[error("no such transfer for this order's network")]
    TransferNotFound,
    /// Several candidates: the operator must name one with `transfer_id`.
    #[error("{0}")]
    Ambiguous(String),
    #[error("transfer {0} was not sent to this order's address on its network")]
    NotForOrder(i64),
    #[error("transfer {id} is already {kind}; a transfer is resolved once")]
    Resolved { id: i64, kind: String },
    #[error("order is already paid; dismiss the transfer or refund the payer")]
    AlreadyPaid,
    #[error("{0}")]
    Order(#[from] OrderError),
    #[error("database: {0}")]
    Db(#[from] DbErr),
}

/// What a resolve did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub transfer_id: i64,
    pub tx_hash: String,
    pub amount: String,
    pub previous_kind: String,
    pub kind: &'static str,
    /// The order whose callback was queued (a switched child pays its parent).
    pub paid_order: Option<String>,
}

/// Resolves one transfer of order `trade_id`; on a credit, queues the callback after commit.
pub async fn resolve(
    db: &DatabaseConnection,
    queue: &JobQueue,
    rules: &OrderRules,
    trade_id: &str,
    which: &TransferRef,
    action: Action,
) -> Result<Resolved, ResolveError> {
    let txn = store::begin_write(db).await?;
    let id: i64 = order::Entity::find()
        .filter(order::Column::TradeId.eq(trade_id))
        .one(&txn)
        .await?
        .ok_or(ResolveError::OrderNotFound)?
        .id;
    let o = credit::lock_orders(&txn, &[id])
        .await?
        .into_iter()
        .next()
        .ok_or(ResolveError::OrderNotFound)?;
    let t = find_transfer(&txn, &o, which).await?;
    if !RESOLVABLE.contains(&t.kind.as_str()) {
        return Err(ResolveError::Resolved {
            id: t.id,
            kind: t.kind,
        });
    }
    // A transfer of another token never pays the order (USDC for a USDT order).
    let belongs = t.network == o.network.as_str()
        && t.token == o.token
        && match t.order_id {
            Some(oid) => oid == o.id.get(),
            None => t.to_address == o.address,
        };
    if !belongs {
        return Err(ResolveError::NotForOrder(t.id));
    }
    let (kind, paid) = match action {
        Action::Dismiss => (DISMISSED, None),
        Action::Credit => {
            if o.status == OrderStatus::Paid {
                return Err(ResolveError::AlreadyPaid);
            }
            o.status
                .transition(OrderStatus::Paid)
                .map_err(OrderError::from)?;
            (CREDITED, Some(()))
        }
    };
    // The transfer's compare-and-swap first: a concurrent resolve of it misses here.
    let swapped = transfer::Entity::update_many()
        .col_expr(transfer::Column::Kind, Expr::value(kind))
        .col_expr(transfer::Column::OrderId, Expr::value(Some(o.id.get())))
        .filter(transfer::Column::Id.eq(t.id))
        .filter(transfer::Column::Kind.eq(t.kind.as_str()))
        .exec(&txn)
        .await?;
    if swapped.rows_affected != 1 {
        return Err(ResolveError::Resolved {
            id: t.id,
            kind: "resolved".into(),
        });
    }
    let mut queued = None;
    if paid.is_some() {
        let incoming = incoming(&t)?;
        let outcome = credit::pay(&txn, rules, &o, &incoming, &t.amount).await?;
        if let CreditOutcome::Paid { order_id, trade_id } = outcome {
            queued = Some((order_id, trade_id, incoming.amount));
        }
    }
    txn.commit().await?;
    let paid_order = match queued {
        Some((order_id, trade_id, amount)) => {
            crate::telemetry::metrics::order_event(
                crate::telemetry::metrics::OrderEvent::Paid,
                o.network,
                &o.token,
                amount,
            );
            queue_callback(db, queue, order_id).await?;
            Some(trade_id)
        }
        None => None,
    };
    tracing::info!(trade_id, transfer = t.id, tx = %t.tx_hash, from = %t.kind, to = kind, "transfer resolved by an operator");
    Ok(Resolved {
        transfer_id: t.id,
        tx_hash: t.tx_hash,
        amount: t.amount,
        previous_kind: t.kind,
        kind,
        paid_order,
    })
}

async fn find_transfer(
    txn: &sea_orm::DatabaseTransaction,
    o: &crate::domain::order::Order,
    which: &TransferRef,
) -> Result<transfer::Model, ResolveError> {
    let mut q = transfer::Entity::find().filter(transfer::Column::Network.eq(o.network.as_str()));
    q = match (which.id, which.tx.as_deref()) {
        (Some(id), tx) => {
            let q = q.filter(transfer::Column::Id.eq(id));
            match tx {
                Some(tx) => q.filter(transfer::Column::TxHash.eq(tx)),
                None => q,
            }
        }
        (None, Some(tx)) => q.filter(transfer::Column::TxHash.eq(tx)),
        (None, None) => q
            .filter(transfer::Column::OrderId.eq(o.id.get()))
            .filter(transfer::Column::Kind.is_in(RESOLVABLE)),
    };
    // A locking read sees the latest row even under MySQL's repeatable read, so a resolve
    // that lost a race reports the transfer as resolved.
    let mut q = q.order_by_asc(transfer::Column::Id);
    if txn.get_database_backend() != sea_orm::DbBackend::Sqlite {
        q = q.lock_exclusive();
    }
    let mut found = q.all(txn).await?.into_iter();
    let first = found.next().ok_or(ResolveError::TransferNotFound)?;
    if found.next().is_some() {
        return Err(ResolveError::Ambiguous(
            "several transfers match; name one with transfer_id (see the order's transfers)".into(),
        ));
    }
    Ok(first)
}

/// The stored transfer as the watcher handed it over (what `credit::pay` records).
fn incoming(t: &transfer::Model) -> Result<IncomingTransfer, ResolveError> {
    let bad = |what: &str| DbErr::Custom(format!("transfer {}: stored {what} unreadable", t.id));
    Ok(IncomingTransfer {
        network: crate::domain::network::valid_name(&t.network)
            .map(|()| Network::named(&t.network))
            .map_err(|_| bad("network"))?,
        tx_hash: t.tx_hash.clone(),
        log_index: t.log_index,
        block_number: t.block_number,
        block_hash: t.block_hash.clone(),
        token: crate::domain::network::Token::named(&t.token),
        token_contract: t.token_contract.clone(),
        from_address: t.from_address.clone(),
        to_address: t.to_address.clone(),
        amount: t.amount.parse::<Decimal>().map_err(|_| bad("amount"))?,
        block_time: t.block_time,
    })
}
