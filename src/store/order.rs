//! Row ↔ aggregate: an `orders` row becomes a [`domain::order::Order`] only if every typed
//! column parses. A row that does not parse is a [`RowError`] naming the order and the column —
//! a corrupt row is never silently defaulted (a status read as "cancelled" or an amount read as
//! zero would move money wrongly). The reverse builds the row for an insert.
//!
//! [`domain::order::Order`]: crate::domain::order::Order

use rust_decimal::Decimal;
use sea_orm::{ActiveValue::NotSet, Set};

use super::entities::order;
use crate::domain::{
    network::Network,
    order::{MerchantId, Order, OrderId, OrderStatus, TradeId},
    protocol::Protocol,
};

/// An `orders` row whose column does not hold what the aggregate needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("orders row {id}: column `{column}` holds {value:?}, which is not {expected}")]
pub struct RowError {
    /// The row's primary key.
    pub id: i64,
    pub column: &'static str,
    pub value: String,
    pub expected: &'static str,
}

fn bad(id: i64, column: &'static str, value: impl ToString, expected: &'static str) -> RowError {
    RowError {
        id,
        column,
        value: value.to_string(),
        expected,
    }
}

/// Canonical decimal text as stored (plain digits, optional fraction; exact).
fn decimal(id: i64, column: &'static str, text: &str) -> Result<Decimal, RowError> {
    crate::domain::amount::parse_plain(text, false)
        .ok_or_else(|| bad(id, column, text, "a decimal amount"))
}

impl TryFrom<order::Model> for Order {
    type Error = RowError;

    fn try_from(r: order::Model) -> Result<Self, RowError> {
        let id = r.id;
        let paid_amount = match &r.paid_amount {
            Some(t) => Some(decimal(id, "paid_amount", t)?),
            None => None,
        };
        Ok(Order {
            id: OrderId(id),
            trade_id: TradeId::parse(&r.trade_id)
                .map_err(|_| bad(id, "trade_id", &r.trade_id, "a trade id"))?,
            merchant_id: MerchantId(r.merchant_id),
            protocol: Protocol::parse(&r.protocol)
                .ok_or_else(|| bad(id, "protocol", &r.protocol, "a protocol name"))?,
            network: crate::domain::network::valid_name(&r.network)
                .map(|()| Network::named(&r.network))
                .map_err(|_| bad(id, "network", &r.network, "a network name"))?,
            amount: decimal(id, "amount", &r.amount)?,
            rate: decimal(id, "rate", &r.rate)?,
            actual_amount: decimal(id, "actual_amount", &r.actual_amount)?,
            status: OrderStatus::from_code(r.status)
                .ok_or_else(|| bad(id, "status", r.status, "a status code 1..=4"))?,
            live_slot: r.live_slot.is_some(),
            paid_amount,
            order_id: r.order_id,
            token: r.token,
            currency: r.currency,
            address: r.address,
            flags: r.flags,
            notify_url: r.notify_url,
            redirect_url: r.redirect_url,
            name: r.name,
            request_hash: r.request_hash,
            block_transaction_id: r.block_transaction_id,
            callback_state: r.callback_state,
            callback_attempts: r.callback_attempts,
            callback_due_at: r.callback_due_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            expires_at: r.expires_at,
            paid_at: r.paid_at,
            sign_alg: r.sign_alg,
            epay_type: r.epay_type,
            parent_trade_id: r.parent_trade_id,
        })
    }
}

/// Amounts are stored as their text, exactly as the aggregate holds them (callers build them
/// canonical with `domain::amount::canonical`).
fn text(d: Decimal) -> String {
    d.to_string()
}

/// The row for inserting `o`: every column but the primary key, which the database assigns.
pub fn new_row(o: &Order) -> order::ActiveModel {
    order::ActiveModel {
        id: NotSet,
        trade_id: Set(o.trade_id.as_str().to_owned()),
        merchant_id: Set(o.merchant_id.get()),
        order_id: Set(o.order_id.clone()),
        protocol: Set(o.protocol.as_str().into()),
        network: Set(o.network.as_str().into()),
        token: Set(o.token.clone()),
        currency: Set(o.currency.clone()),
        amount: Set(text(o.amount)),
        rate: Set(text(o.rate)),
        actual_amount: Set(text(o.actual_amount)),
        address: Set(o.address.clone()),
        status: Set(o.status.code()),
        live_slot: Set(o.live_slot.then_some(1)),
        flags: Set(o.flags),
        notify_url: Set(o.notify_url.clone()),
        redirect_url: Set(o.redirect_url.clone()),
        name: Set(o.name.clone()),
        request_hash: Set(o.request_hash.clone()),
        block_transaction_id: Set(o.block_transaction_id.clone()),
        paid_amount: Set(o.paid_amount.map(text)),
        callback_state: Set(o.callback_state),
        callback_attempts: Set(o.callback_attempts),
        callback_due_at: Set(o.callback_due_at),
        created_at: Set(o.created_at),
        updated_at: Set(o.updated_at),
        expires_at: Set(o.expires_at),
        paid_at: Set(o.paid_at),
        sign_alg: Set(o.sign_alg.clone()),
        epay_type: Set(o.epay_type.clone()),
        parent_trade_id: Set(o.parent_trade_id.clone()),
    }
}

/// Inserts `o` unless the merchant holds a placeholder (`order_choices`) with its order_id —
/// one statement: `INSERT … SELECT … WHERE NOT EXISTS (…) RETURNING *`. `None`: a placeholder
/// holds the order_id, nothing was inserted.
///
/// Race-free on SQLite only: it has one writer, and a write statement runs on the newest
/// snapshot (else it fails with `SQLITE_BUSY_SNAPSHOT`, a transient error), so no placeholder
/// can be committed between the check and the insert. On a server database the check would run
/// on the statement's snapshot while a concurrent placeholder commits unseen; there the caller
/// inserts, then reads (each side of the race writes before it reads, so one of them sees the
/// other).
pub async fn insert_unless_placeholder(
    db: &impl sea_orm::ConnectionTrait,
    o: &Order,
) -> Result<Option<order::Model>, sea_orm::DbErr> {
    use sea_orm::{
        ActiveModelTrait, ActiveValue, ColumnTrait, EntityTrait, Iterable,
        sea_query::{Expr, ExprTrait, Query},
    };

    use super::entities::order_choice;

    let row = new_row(o);
    let (columns, values): (Vec<order::Column>, Vec<Expr>) = order::Column::iter()
        .filter_map(|c| match row.get(c) {
            ActiveValue::Set(v) | ActiveValue::Unchanged(v) => Some((c, Expr::val(v))),
            ActiveValue::NotSet => None,
        })
        .unzip();
    let placeholder = Query::select()
        .expr(Expr::val(1))
        .from(order_choice::Entity)
        .and_where(order_choice::Column::MerchantId.eq(o.merchant_id.get()))
        .and_where(order_choice::Column::OrderId.eq(o.order_id.as_str()))
        .to_owned();
    let select = Query::select()
        .exprs(values)
        .and_where(Expr::exists(placeholder).not())
        .to_owned();
    let insert = Query::insert()
        .into_table(order::Entity)
        .columns(columns)
        .select_from(select)
        .map_err(|e| sea_orm::DbErr::Custom(format!("insert orders: {e}")))?
        .returning_all()
        .to_owned();
    order::Entity::find()
        .from_raw_sql(db.get_database_backend().build(&insert))
        .one(db)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> order::Model {
        order::Model {
            id: 42,
            trade_id: "202512020312345678901234".into(),
            merchant_id: 1,
            order_id: "o-1".into(),
            protocol: "gmpay".into(),
            network: "bsc".into(),
            token: "USDT".into(),
            currency: "CNY".into(),
            amount: "100".into(),
            rate: "7.2".into(),
            actual_amount: "13.89".into(),
            address: "0xabc".into(),
            status: 2,
            live_slot: None,
            flags: 4,
            notify_url: "https://shop/n".into(),
            redirect_url: String::new(),
            name: "n".into(),
            request_hash: "h".into(),
            block_transaction_id: Some("0xtx".into()),
            paid_amount: Some("13.89".into()),
            callback_state: 1,
            callback_attempts: 2,
            callback_due_at: Some(5),
            created_at: 1,
            updated_at: 2,
            expires_at: 3,
            paid_at: Some(2),
            sign_alg: String::new(),
            epay_type: String::new(),
            parent_trade_id: None,
        }
    }

    #[test]
    fn a_row_round_trips_through_the_aggregate() {
        let r = row();
        let o = Order::try_from(r.clone()).expect("parses");
        assert_eq!(o.id, OrderId(42));
        assert_eq!(o.status, OrderStatus::Paid);
        assert_eq!(o.network, Network::BSC);
        assert_eq!(o.protocol, Protocol::GmPay);
        assert_eq!(o.actual_amount, Decimal::new(1389, 2));
        assert_eq!(o.paid_amount, Some(Decimal::new(1389, 2)));
        // Back to a row: the same columns (the id is the database's to assign).
        let back = new_row(&o);
        assert_eq!(back.id, NotSet);
        let mut with_id = back;
        with_id.id = Set(42);
        let model: order::Model = with_id.try_into().expect("all columns set");
        assert_eq!(model, r);
        // Every status code survives the trip.
        for s in [1, 2, 3, 4] {
            let o = Order::try_from(order::Model { status: s, ..row() }).unwrap();
            assert_eq!(o.status.code(), s);
        }
        let live = Order::try_from(order::Model {
            live_slot: Some(1),
            ..row()
        })
        .unwrap();
        assert!(live.live_slot);
        assert_eq!(new_row(&live).live_slot, Set(Some(1)));
    }

    #[test]
    fn a_corrupt_row_is_an_error_naming_the_column_and_order() {
        let cases: [(order::Model, &str); 7] = [
            (order::Model { status: 9, ..row() }, "status"),
            (
                order::Model {
                    network: "Sol ana!".into(),
                    ..row()
                },
                "network",
            ),
            (
                order::Model {
                    protocol: "x".into(),
                    ..row()
                },
                "protocol",
            ),
            (
                order::Model {
                    actual_amount: "".into(),
                    ..row()
                },
                "actual_amount",
            ),
            (
                order::Model {
                    amount: "1e3".into(),
                    ..row()
                },
                "amount",
            ),
            (
                order::Model {
                    paid_amount: Some("-1".into()),
                    ..row()
                },
                "paid_amount",
            ),
            (
                order::Model {
                    trade_id: "a b".into(),
                    ..row()
                },
                "trade_id",
            ),
        ];
        for (r, column) in cases {
            let e = Order::try_from(r).expect_err(column);
            assert_eq!(e.column, column);
            assert_eq!(e.id, 42);
            assert!(e.to_string().contains("orders row 42"), "{e}");
            assert!(e.to_string().contains(column), "{e}");
        }
    }
}
