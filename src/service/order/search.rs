//! Order search for the admin API: filters, free text and keyset pagination (newest first).
//! Read only; never changes an order.
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use crate::{
    domain::order::OrderStatus,
    store::entities::{callback_attempt, merchant, order, transfer},
};

/// Largest page.
pub const MAX_LIMIT: u64 = 200;

/// What to look for. `cursor` is the `next_cursor` of the previous page.
#[derive(Debug, Default, Clone)]
pub struct OrderQuery {
    pub status: Option<OrderStatus>,
    pub network: Option<String>,
    pub merchant_id: Option<i64>,
    /// The merchant's public pid (looked up to its id).
    pub merchant_pid: Option<i64>,
    /// Exact receive address (which orders use a wallet).
    pub address: Option<String>,
    /// Substring of order_id, trade_id, receive address or transaction hash.
    pub q: Option<String>,
    pub created_from: Option<i64>,
    pub created_to: Option<i64>,
    pub cursor: Option<i64>,
    pub limit: u64,
}

/// A page of orders and the cursor of the next one (`None` on the last page).
#[derive(Debug)]
pub struct OrderPage {
    pub orders: Vec<order::Model>,
    pub next_cursor: Option<i64>,
}

/// Escapes `%`, `_` and `\` for a LIKE pattern with `\` as the escape character.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub async fn search(db: &DatabaseConnection, q: &OrderQuery) -> Result<OrderPage, DbErr> {
    use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr};
    let limit = q.limit.clamp(1, MAX_LIMIT);
    let mut cond = Condition::all();
    if let Some(s) = q.status {
        cond = cond.add(order::Column::Status.eq(s.code()));
    }
    if let Some(n) = &q.network {
        cond = cond.add(order::Column::Network.eq(n.as_str()));
    }
    if let Some(m) = q.merchant_id {
        cond = cond.add(order::Column::MerchantId.eq(m));
    }
    if let Some(pid) = q.merchant_pid {
        let id = merchant::Entity::find()
            .filter(merchant::Column::Pid.eq(pid))
            .one(db)
            .await?
            .map(|m| m.id);
        let Some(id) = id else {
            return Ok(OrderPage {
                orders: Vec::new(),
                next_cursor: None,
            });
        };
        cond = cond.add(order::Column::MerchantId.eq(id));
    }
    if let Some(a) = q
        .address
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        // EVM addresses are stored lower-case; TRON ones as given (base58 is case-sensitive).
        cond = cond.add(
            Condition::any()
                .add(order::Column::Address.eq(a))
                .add(order::Column::Address.eq(a.to_ascii_lowercase())),
        );
    }
    if let Some(from) = q.created_from {
        cond = cond.add(order::Column::CreatedAt.gte(from));
    }
    if let Some(to) = q.created_to {
        cond = cond.add(order::Column::CreatedAt.lt(to));
    }
    if let Some(c) = q.cursor {
        cond = cond.add(order::Column::Id.lt(c));
    }
    if let Some(text) = q.q.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        let pattern = format!("%{}%", like_escape(text));
        let like =
            |col: order::Column| Expr::col(col).like(LikeExpr::new(pattern.clone()).escape('\\'));
        cond = cond.add(
            Condition::any()
                .add(like(order::Column::OrderId))
                .add(like(order::Column::TradeId))
                .add(like(order::Column::Address))
                .add(like(order::Column::BlockTransactionId)),
        );
    }
    let mut orders = order::Entity::find()
        .filter(cond)
        .order_by_desc(order::Column::Id)
        .limit(limit + 1)
        .all(db)
        .await?;
    let next_cursor = if orders.len() as u64 > limit {
        orders.truncate(limit as usize);
        orders.last().map(|o| o.id)
    } else {
        None
    };
    Ok(OrderPage {
        orders,
        next_cursor,
    })
}

/// An order row with its transfers and every callback attempt.
#[derive(Debug)]
pub struct OrderDetail {
    pub order: order::Model,
    pub transfers: Vec<transfer::Model>,
    pub attempts: Vec<callback_attempt::Model>,
}

pub async fn detail(db: &DatabaseConnection, trade_id: &str) -> Result<Option<OrderDetail>, DbErr> {
    let Some(order) = order::Entity::find()
        .filter(order::Column::TradeId.eq(trade_id))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let transfers = transfer::Entity::find()
        .filter(transfer::Column::OrderId.eq(order.id))
        .order_by_asc(transfer::Column::Id)
        .all(db)
        .await?;
    let attempts = callback_attempt::Entity::find()
        .filter(callback_attempt::Column::OrderId.eq(order.id))
        .order_by_asc(callback_attempt::Column::Id)
        .all(db)
        .await?;
    Ok(Some(OrderDetail {
        order,
        transfers,
        attempts,
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(super::like_escape("50%_a\\b"), "50\\%\\_a\\\\b");
    }
}
