//! Placeholders: a GMPay order created without `token` and `network` waits for the payer to
//! choose them (upstream's status 4). It lives in `order_choices`, not in `orders`: it has no
//! network, address or payable amount, so the watcher, the slot index, the expiry job and the
//! callbacks never see it. `switch::switch_network` turns it into an `orders` row with the same
//! trade_id; from then on the order row is the truth ([`lookup`] reads it first).
//!
//! Must never: hold a slot, be credited, or call a merchant back.
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, Set, sea_query::Expr,
};

use super::{
    Created, NewOrder, OrderError, OrderRules,
    create::{new_trade_id, repeat_or_conflict, request_hash},
    find_by_merchant_order as find_order_by_merchant_order, find_by_trade_id,
};
use crate::{
    config::Config,
    domain::{
        amount,
        order::{MerchantId, Order, OrderStatus},
    },
    service::{merchant::Merchant, now},
    store::{self, entities::order_choice},
};

pub use order_choice::Model as Choice;

/// `order_choices.status` values.
pub mod choice_state {
    pub const CHOOSING: i16 = 0;
    /// An `orders` row with this trade_id exists.
    pub const CHOSEN: i16 = 1;
    pub const CANCELLED: i16 = 2;
}

/// Upstream's status code of a placeholder: "waiting for the payer to choose token and network".
pub const STATUS_CHOOSING: i16 = 4;

/// The status code a client sees for a choice at `now`: 4 while the payer may choose (and, as
/// for a cancelled order, after a cancel), 3 once past its expiry.
pub fn choice_status(c: &Choice, now: i64) -> i16 {
    match c.status {
        choice_state::CANCELLED => OrderStatus::Cancelled.code(),
        _ if c.expires_at <= now => OrderStatus::Expired.code(),
        choice_state::CHOSEN => OrderStatus::Waiting.code(),
        _ => STATUS_CHOOSING,
    }
}

/// Whether the payer can still choose.
pub fn is_choosing(c: &Choice, now: i64) -> bool {
    c.status == choice_state::CHOOSING && c.expires_at > now
}

/// What a trade_id names: an order (a completed placeholder is one), or a placeholder.
#[derive(Debug, Clone)]
pub enum Lookup {
    Order(Order),
    Choice(Choice),
}

/// The order or placeholder with this trade_id; the order row wins.
pub async fn lookup(
    db: &impl ConnectionTrait,
    trade_id: &str,
) -> Result<Option<Lookup>, OrderError> {
    if let Some(o) = find_by_trade_id(db, trade_id).await? {
        return Ok(Some(Lookup::Order(o)));
    }
    let Some(c) = find_choice(db, trade_id).await? else {
        return Ok(None);
    };
    // Chosen between the two reads: the order row exists now.
    if c.status == choice_state::CHOSEN
        && let Some(o) = find_by_trade_id(db, trade_id).await?
    {
        return Ok(Some(Lookup::Order(o)));
    }
    Ok(Some(Lookup::Choice(c)))
}

/// [`lookup`] through the process' cache (`service::cache`) for check-status and the checkout
/// page: a paid or cancelled order never changes again, so it is served from memory; anything
/// still moving (waiting, expired — a late payment can still be credited — or a placeholder)
/// is read from the database every time.
pub async fn lookup_cached(
    db: &impl ConnectionTrait,
    cache: &crate::service::cache::TtlMap<String, Lookup>,
    trade_id: &str,
) -> Result<Option<Lookup>, OrderError> {
    let key = trade_id.to_string();
    if let Some(found) = cache.get(&key) {
        return Ok(Some(found));
    }
    let found = lookup(db, trade_id).await?;
    if let Some(l @ Lookup::Order(o)) = &found
        && matches!(o.status, OrderStatus::Paid | OrderStatus::Cancelled)
    {
        cache.put(key, l.clone());
    }
    Ok(found)
}

pub async fn find_choice(
    db: &impl ConnectionTrait,
    trade_id: &str,
) -> Result<Option<Choice>, DbErr> {
    order_choice::Entity::find()
        .filter(order_choice::Column::TradeId.eq(trade_id))
        .one(db)
        .await
}

pub(super) async fn find_by_merchant_order(
    db: &impl ConnectionTrait,
    merchant_id: i64,
    order_id: &str,
) -> Result<Option<Choice>, DbErr> {
    order_choice::Entity::find()
        .filter(order_choice::Column::MerchantId.eq(merchant_id))
        .filter(order_choice::Column::OrderId.eq(order_id))
        .one(db)
        .await
}

/// The result of a placeholder create: the placeholder (new or an identical repeat), or — for
/// a repeat after the payer chose — the order it became.
#[derive(Debug, Clone)]
pub enum PlaceholderCreated {
    Choice { choice: Choice, repeated: bool },
    Order(Created),
}

/// Creates a placeholder, or returns the identical live one (the repeat rule of orders, DESIGN
/// §5): the same order_id with different parameters is `Exists` (10002).
pub async fn create_placeholder(
    db: &DatabaseConnection,
    config: &Config,
    req: NewOrder,
) -> Result<PlaceholderCreated, OrderError> {
    let hash = request_hash(&req, "");
    let merchant_id = req.merchant.id;
    if let Some(existing) =
        find_order_by_merchant_order(db, MerchantId(merchant_id), &req.order_id).await?
    {
        return repeat_or_conflict(existing, &hash, &req.order_id).map(PlaceholderCreated::Order);
    }
    let now = now();
    let ttl = req
        .timeout_secs
        .unwrap_or(i64::from(config.order_expiration_time) * 60);
    let row = order_choice::ActiveModel {
        trade_id: Set(new_trade_id().to_string()),
        merchant_id: Set(merchant_id),
        order_id: Set(req.order_id.clone()),
        protocol: Set(req.protocol.as_str().into()),
        currency: Set(req.currency.clone()),
        amount: Set(amount::canonical(req.amount.normalize())),
        notify_url: Set(req.notify_url.clone()),
        redirect_url: Set(req.redirect_url.clone()),
        name: Set(req.name.clone()),
        request_hash: Set(hash.clone()),
        sign_alg: Set(req.sign_alg.clone()),
        epay_type: Set(req.epay_type.clone()),
        timeout_secs: Set(req.timeout_secs),
        status: Set(choice_state::CHOOSING),
        created_at: Set(now),
        updated_at: Set(now),
        expires_at: Set(now + ttl),
        ..Default::default()
    };
    match row.insert(db).await {
        Ok(choice) => {
            // An order created concurrently under this order_id (another table, so no unique
            // index sees both): this placeholder yields.
            if find_order_by_merchant_order(db, MerchantId(merchant_id), &req.order_id)
                .await?
                .is_some()
            {
                order_choice::Entity::update_many()
                    .col_expr(
                        order_choice::Column::Status,
                        Expr::value(choice_state::CANCELLED),
                    )
                    .filter(order_choice::Column::Id.eq(choice.id))
                    .filter(order_choice::Column::Status.eq(choice_state::CHOOSING))
                    .exec(db)
                    .await?;
                return Err(OrderError::Exists(req.order_id));
            }
            Ok(PlaceholderCreated::Choice {
                choice,
                repeated: false,
            })
        }
        Err(e)
            if store::is_unique_violation(
                &e,
                "order_choices_merchant_order_id_key",
                "order_choices.merchant_id, order_choices.order_id",
            ) =>
        {
            let existing = find_by_merchant_order(db, merchant_id, &req.order_id)
                .await?
                .ok_or(OrderError::NotFound)?;
            if existing.request_hash != hash {
                return Err(OrderError::Exists(req.order_id));
            }
            if existing.status == choice_state::CHOSEN
                && let Some(o) = find_by_trade_id(db, &existing.trade_id).await?
            {
                return repeat_or_conflict(o, &hash, &req.order_id).map(PlaceholderCreated::Order);
            }
            if is_choosing(&existing, now) {
                Ok(PlaceholderCreated::Choice {
                    choice: existing,
                    repeated: true,
                })
            } else {
                Err(OrderError::Exists(req.order_id))
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Merchant cancel of an order or a placeholder: `(trade_id, status code)` afterwards.
pub async fn cancel(
    db: &DatabaseConnection,
    rules: &OrderRules,
    merchant: &Merchant,
    trade_id: &str,
) -> Result<(String, i16), OrderError> {
    match super::cancel_order(db, rules, merchant, trade_id).await {
        Err(OrderError::NotFound) => {}
        other => return other.map(|o| (o.trade_id.to_string(), o.status.code())),
    }
    let c = find_choice(db, trade_id)
        .await?
        .filter(|c| c.merchant_id == merchant.id)
        .ok_or(OrderError::NotFound)?;
    let res = order_choice::Entity::update_many()
        .col_expr(
            order_choice::Column::Status,
            Expr::value(choice_state::CANCELLED),
        )
        .col_expr(order_choice::Column::UpdatedAt, Expr::value(now()))
        .filter(order_choice::Column::Id.eq(c.id))
        .filter(order_choice::Column::Status.eq(choice_state::CHOOSING))
        .exec(db)
        .await?;
    if res.rows_affected == 1 {
        tracing::info!(trade_id, "placeholder cancelled");
        return Ok((c.trade_id, OrderStatus::Cancelled.code()));
    }
    // The payer chose in the meantime: cancel the order it became.
    let o = super::cancel_order(db, rules, merchant, trade_id).await?;
    Ok((o.trade_id.to_string(), o.status.code()))
}

/// Marks a placeholder chosen (compare-and-swap from choosing). `false`: it was cancelled or
/// chosen by someone else first.
pub(super) async fn mark_chosen(db: &impl ConnectionTrait, id: i64) -> Result<bool, DbErr> {
    let res = order_choice::Entity::update_many()
        .col_expr(
            order_choice::Column::Status,
            Expr::value(choice_state::CHOSEN),
        )
        .col_expr(order_choice::Column::UpdatedAt, Expr::value(now()))
        .filter(order_choice::Column::Id.eq(id))
        .filter(order_choice::Column::Status.eq(choice_state::CHOOSING))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(status: i16, expires_at: i64) -> Choice {
        Choice {
            id: 1,
            trade_id: "t".into(),
            merchant_id: 1,
            order_id: "o".into(),
            protocol: "gmpay".into(),
            currency: "CNY".into(),
            amount: "10".into(),
            notify_url: String::new(),
            redirect_url: String::new(),
            name: String::new(),
            request_hash: String::new(),
            sign_alg: String::new(),
            epay_type: String::new(),
            timeout_secs: None,
            status,
            created_at: 0,
            updated_at: 0,
            expires_at,
        }
    }

    #[test]
    fn a_placeholder_reads_4_until_its_expiry_then_3() {
        let c = choice(choice_state::CHOOSING, 100);
        assert_eq!(choice_status(&c, 99), 4);
        assert!(is_choosing(&c, 99));
        // At the expiry second it is over, as for orders.
        assert_eq!(choice_status(&c, 100), 3);
        assert!(!is_choosing(&c, 100));
        // Cancelled reads as a cancelled order (4), and is never choosable.
        let c = choice(choice_state::CANCELLED, 100);
        assert_eq!(choice_status(&c, 50), 4);
        assert!(!is_choosing(&c, 50));
        assert!(!is_choosing(&choice(choice_state::CHOSEN, 100), 50));
    }
}
