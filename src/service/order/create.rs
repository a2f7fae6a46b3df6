//! Creating an order: the rate, the payable amount, a free (network, address, amount) slot
//! claimed by the unique index `orders_live_slot_key` (its `expires_at` is the expiry
//! schedule, swept every second); and the repeat rule (an
//! identical live request returns the same order, anything else with that `order_id` is refused).
use rust_decimal::Decimal;
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use sha2::{Digest, Sha256};

use super::{NewOrder, OrderError, find_by_merchant_order};
use crate::{
    config::Config,
    domain::{
        amount,
        network::Network,
        order::{MerchantId, Order, OrderId, OrderStatus, TradeId},
    },
    service::{cache, now, rate, wallet},
    store::{self, entities::order, order_inserts::Batched},
};

/// The receiving wallets cache `place_order` reads through.
pub type WalletCache = cache::TtlMap<(Network, i64), cache::Wallets>;

/// The result of a create call: a new order, or the existing one for an identical repeat.
#[derive(Debug, Clone)]
pub struct Created {
    pub order: Order,
    pub repeated: bool,
}

/// The identity of a create request: a repeat with the same hash is the same request. `network`
/// is empty for a placeholder (no token/network sent), so it never equals a concrete request.
pub(super) fn request_hash(r: &NewOrder, network: &str) -> String {
    let canon = [
        r.protocol.as_str(),
        &r.order_id,
        &r.currency,
        &amount::canonical(r.amount),
        network,
        &r.notify_url,
        &r.redirect_url,
        &r.name,
        &r.timeout_secs.map(|t| t.to_string()).unwrap_or_default(),
    ]
    .join("\u{1f}");
    hex::encode(Sha256::digest(canon.as_bytes()))
}

/// The network (and token, when not USDT: hashes of USDT orders stay what they were) a request
/// asks for, as its hash includes it.
pub(super) fn asset_key(r: &NewOrder) -> String {
    if r.token == crate::domain::network::Token::USDT {
        r.network.as_str().to_string()
    } else {
        format!("{}/{}", r.network, r.token)
    }
}

/// Trade ids look like upstream's: `yyyymmddHHMMSS` + 10 random digits.
pub(super) fn new_trade_id() -> TradeId {
    use rand::Rng;
    TradeId::upstream(
        chrono::Utc::now(),
        rand::rng().random_range(0..10_000_000_000u64),
    )
}

/// Creates an order or returns the identical live one (DESIGN §5).
///
/// The common case is two statements: the INSERT (the unique indexes on the merchant's
/// order_id and on the live slot decide every race; a repeat is found by its violation, never
/// by a read before) and one read of the placeholders table, which no index shares with orders.
/// Concurrent creates share their INSERT and their read of the placeholders
/// (`store::order_inserts`: a group commit). `caches` holds the process' receiving wallets and
/// that queue (`service::cache`).
pub async fn create_order(
    db: &DatabaseConnection,
    config: &Config,
    caches: &cache::Caches,
    req: NewOrder,
) -> Result<Created, OrderError> {
    let hash = request_hash(&req, &asset_key(&req));
    let order = place_order(
        db,
        config,
        &caches.wallets,
        &req,
        Placement {
            request_hash: hash.clone(),
            sign_alg: req.sign_alg.clone(),
            epay_type: req.epay_type.clone(),
            unless_placeholder: true,
            inserts: Some(&caches.order_inserts),
            ..Placement::default()
        },
    )
    .await;
    match order {
        Ok(PlacedOrder {
            order,
            placeholder_checked,
        }) => {
            // A placeholder holds this order_id (made before, or concurrently: the two live in
            // different tables, so no unique index sees both). Neither may stand twice: this
            // order yields, and is removed rather than cancelled so that it cannot block the
            // placeholder's own order later. Nobody has seen it: its amount and address were
            // never answered to anyone.
            // (Unless the insert already read the placeholders: on SQLite the insert itself
            // checks, `store::order::insert_unless_placeholder`; a grouped insert reads them for
            // its whole group after its commit.)
            if !placeholder_checked
                && super::choice::find_by_merchant_order(db, req.merchant.id, &req.order_id)
                    .await?
                    .is_some()
            {
                withdraw(db, order.id).await?;
                return Err(OrderError::Exists(req.order_id.clone()));
            }
            crate::telemetry::metrics::order_event(
                crate::telemetry::metrics::OrderEvent::Created,
                order.network,
                &order.token,
                order.actual_amount,
            );
            Ok(Created {
                order,
                repeated: false,
            })
        }
        Err(Placed::Exists) => {
            // This order_id is taken: an identical live repeat gets the same order back.
            let existing = find_by_merchant_order(db, MerchantId(req.merchant.id), &req.order_id)
                .await?
                .ok_or(OrderError::NotFound)?;
            repeat_or_conflict(existing, &hash, &req.order_id)
        }
        Err(Placed::Failed(e)) => Err(e),
    }
}

/// Does the order insert itself refuse an order_id a placeholder holds (SQLite: one writer, see
/// `store::order::insert_unless_placeholder`)? Elsewhere the insert is followed by a read.
fn checks_placeholder_in_insert(db: &DatabaseConnection) -> bool {
    db.get_database_backend() == sea_orm::DbBackend::Sqlite
}

/// Removes an order that was just inserted and never answered to anyone, if it is still
/// waiting (a paid one — impossible in practice, nobody knew its amount — stays).
async fn withdraw(db: &DatabaseConnection, id: OrderId) -> Result<(), OrderError> {
    order::Entity::delete_many()
        .filter(order::Column::Id.eq(id.get()))
        .filter(order::Column::Status.eq(OrderStatus::Waiting.code()))
        .exec(db)
        .await?;
    Ok(())
}

/// How [`place_order`] shapes the new order beyond the request: a placeholder keeps its
/// trade_id, a payer's network switch makes a child without a callback of its own.
#[derive(Debug, Clone, Default)]
pub(super) struct Placement<'a> {
    /// `None`: a fresh upstream-shaped trade id.
    pub trade_id: Option<TradeId>,
    pub parent_trade_id: Option<String>,
    pub request_hash: String,
    pub callback_state: i16,
    /// The protocol fields the create request carried (see `Order`).
    pub sign_alg: String,
    pub epay_type: String,
    /// A merchant's own create: an order_id held by a placeholder is refused (on SQLite by the
    /// insert itself). `false` for the orders a placeholder becomes.
    pub unless_placeholder: bool,
    /// The group commit a merchant's create goes through first (`None`: insert alone).
    pub inserts: Option<&'a store::order_inserts::InsertQueue>,
}

/// A placed order, and whether its insert already checked that no placeholder holds its
/// order_id (see [`Placement::unless_placeholder`]).
#[derive(Debug)]
pub(super) struct PlacedOrder {
    pub order: Order,
    pub placeholder_checked: bool,
}

/// Why [`place_order`] placed nothing.
#[derive(Debug)]
pub(super) enum Placed {
    /// The merchant's order_id (or the trade_id) is taken.
    Exists,
    Failed(OrderError),
}

impl<E: Into<OrderError>> From<E> for Placed {
    fn from(e: E) -> Self {
        Placed::Failed(e.into())
    }
}

/// How many slots a merchant's create offers the group commit at once (the first free one
/// stands). On SQLite 4: enough that a create almost never falls back to inserting alone (and
/// waiting for the one writer again) even with a third of the slots around its amount taken
/// (0.33⁴ ≈ 1 %), few enough that the refused rows (a few unique-index probes each) cost little.
/// On PostgreSQL 1: there, alternatives made the grouped statements slow (create-order fell
/// from ~3,900 to ~1,100–1,500 req/s, 270 with one writer; not in PostgreSQL's execution time
/// per `pg_stat_statements`, cause not found — see wiki/BENCHMARKS.md), and inserting alone
/// after a collision does not queue behind one writer.
fn grouped_alternatives(backend: sea_orm::DbBackend) -> usize {
    match backend {
        sea_orm::DbBackend::Sqlite => 4,
        _ => 1,
    }
}

/// Finds a free (network, address, amount) slot for `req` and inserts the waiting order there
/// (DESIGN §5): one statement, one write transaction. Expiry needs no job of its own: the
/// order's `expires_at` is its durable schedule, and [`super::expire_due`] (every second, on
/// every instance, over the `orders_status_expires_idx` index) expires it on time.
pub(super) async fn place_order(
    db: &DatabaseConnection,
    config: &Config,
    wallet_cache: &WalletCache,
    req: &NewOrder,
    place: Placement<'_>,
) -> Result<PlacedOrder, Placed> {
    let hash = place.request_hash.clone();
    let usdt_rate = rate::usdt_rate(db, config, &req.currency)
        .await?
        .ok_or_else(|| OrderError::NoRate(req.currency.clone()))?;
    let token = config.registry().token(req.network, req.token);
    let precision = token
        .and_then(|t| t.amount_precision)
        .unwrap_or(config.amount_precision);
    let step = token
        .and_then(|t| t.amount_step)
        .unwrap_or(config.amount_step);
    // A native coin: fiat per coin = fiat per USDT × USDT per coin, stored as the order's rate.
    let rate = match token.filter(|t| t.native) {
        Some(t) => {
            let (price, _) =
                rate::coin_price(db, t.token, t.usdt_price)
                    .await?
                    .ok_or(OrderError::NoPrice {
                        coin: t.token,
                        network: req.network,
                    })?;
            usdt_rate
                .checked_mul(price)
                .ok_or_else(|| OrderError::NoRate(req.currency.clone()))?
        }
        None => usdt_rate,
    };
    let min = step;
    let base = amount::fiat_to_token(req.amount, rate, precision)
        .ok_or_else(|| OrderError::NoRate(req.currency.clone()))?;
    if base < min {
        return Err(OrderError::AmountTooSmall(base, min).into());
    }
    let wallets = wallet::receiving_cached(db, wallet_cache, req.network, req.merchant.id).await?;
    if wallets.is_empty() {
        return Err(OrderError::NoWallet(req.network).into());
    }
    let amounts: Vec<Decimal> = amount::candidates(base, step, config.amount_max_tries)
        .map(|d| d.normalize())
        .collect();
    let candidates: Vec<String> = amounts.iter().map(|d| amount::canonical(*d)).collect();
    // Usually one of the first slots is free: try them without reading anything (a collision
    // costs one failed insert, an index probe). After a few collisions, read which wallets
    // waiting orders hold at each amount before trying it (one indexed query per amount) and
    // skip those. The unique index decides every race either way. Wallets are tried from a
    // random one onwards at each amount, so concurrent orders for one amount spread over the
    // wallets instead of all colliding on the first.
    const OPTIMISTIC_TRIES: usize = 4;
    let mut taken: std::collections::HashSet<(String, String)> = Default::default();
    let mut loaded_amount: Option<&String> = None;
    let mut transient = 0;
    let offset = {
        use rand::Rng;
        rand::rng().random_range(0..wallets.len())
    };

    let now = now();
    let ttl = req
        .timeout_secs
        .unwrap_or(i64::from(config.order_expiration_time) * 60);
    let draft = |address: &str, actual: Decimal, trade_id: TradeId| Order {
        id: OrderId(0),
        trade_id,
        merchant_id: MerchantId(req.merchant.id),
        order_id: req.order_id.clone(),
        protocol: req.protocol,
        network: req.network,
        token: req.token.to_string(),
        currency: req.currency.clone(),
        amount: req.amount.normalize(),
        rate: rate.normalize(),
        actual_amount: actual,
        address: address.to_string(),
        status: OrderStatus::Waiting,
        live_slot: true,
        flags: 0,
        notify_url: req.notify_url.clone(),
        redirect_url: req.redirect_url.clone(),
        name: req.name.clone(),
        request_hash: hash.clone(),
        block_transaction_id: None,
        paid_amount: None,
        callback_state: place.callback_state,
        callback_attempts: 0,
        callback_due_at: None,
        created_at: now,
        updated_at: now,
        expires_at: now + ttl,
        paid_at: None,
        sign_alg: place.sign_alg.clone(),
        epay_type: place.epay_type.clone(),
        parent_trade_id: place.parent_trade_id.clone(),
    };
    // In the search order: each amount from the lowest, its wallets from a random one onwards.
    let wallets: &[crate::store::entities::wallet::Model] = &wallets;
    let slots = amounts.iter().zip(&candidates).flat_map(|(actual, text)| {
        (0..wallets.len()).map(move |i| (&wallets[(offset + i) % wallets.len()], actual, text))
    });

    // A merchant's create first goes through the group commit with its first few slots as
    // alternatives: the first free one stands (see `store::order_inserts`). If none does, the
    // search below goes on after them, one insert at a time, where a refusal is named.
    let groups = store::order_inserts::InsertQueue::groups(db.get_database_backend());
    if let Some(queue) = place.inserts.filter(|_| place.unless_placeholder && groups) {
        let trade_id = place.trade_id.clone().unwrap_or_else(new_trade_id);
        let tried: Vec<_> = slots
            .clone()
            .take(grouped_alternatives(db.get_database_backend()))
            .collect();
        let alternatives = tried
            .iter()
            .map(|(w, actual, _)| draft(&w.address, **actual, trade_id.clone()))
            .collect();
        match queue.insert(db, alternatives).await {
            Batched::Inserted {
                row,
                placeholder: Some(true),
            } => {
                // A placeholder holds this order_id: the order yields (see `create_order`).
                withdraw(db, OrderId(row.id)).await?;
                return Err(OrderError::Exists(req.order_id.clone()).into());
            }
            Batched::Inserted { row, placeholder } => {
                return Ok(PlacedOrder {
                    order: Order::try_from(*row)?,
                    placeholder_checked: placeholder.is_some(),
                });
            }
            Batched::NotInserted => {
                taken.extend(
                    tried
                        .iter()
                        .map(|(w, _, text)| (w.address.clone(), (*text).clone())),
                );
            }
        }
    }

    for (w, actual, amount_text) in slots {
        let slot = (w.address.clone(), amount_text.clone());
        if taken.contains(&slot) {
            continue;
        }
        if taken.len() >= OPTIMISTIC_TRIES && loaded_amount != Some(amount_text) {
            loaded_amount = Some(amount_text);
            taken.extend(
                live_slots_at(db, req.network, req.token, amount_text, wallets)
                    .await?
                    .into_iter()
                    .map(|address| (address, amount_text.clone())),
            );
            if taken.contains(&slot) {
                continue;
            }
        }
        {
            let draft = draft(
                &w.address,
                *actual,
                place.trade_id.clone().unwrap_or_else(new_trade_id),
            );
            let inserted = {
                let _turn = store::write_turn(db).await;
                if place.unless_placeholder && checks_placeholder_in_insert(db) {
                    store::order::insert_unless_placeholder(db, &draft).await
                } else {
                    store::order::new_row(&draft).insert(db).await.map(Some)
                }
            };
            match inserted {
                Ok(Some(row)) => {
                    return Ok(PlacedOrder {
                        order: Order::try_from(row)?,
                        placeholder_checked: place.unless_placeholder
                            && checks_placeholder_in_insert(db),
                    });
                }
                Ok(None) => return Err(OrderError::Exists(req.order_id.clone()).into()),
                Err(e)
                    if store::is_unique_violation(
                        &e,
                        "orders_live_slot_key",
                        "orders.network, orders.token, orders.address, orders.actual_amount",
                    ) =>
                {
                    taken.insert(slot);
                }
                Err(e)
                    if store::is_unique_violation(
                        &e,
                        "orders_merchant_order_id_key",
                        "orders.merchant_id, orders.order_id",
                    ) || store::is_unique_violation(
                        &e,
                        "orders_trade_id_key",
                        "orders.trade_id",
                    ) || store::is_unique_violation(
                        &e,
                        "orders_parent_trade_id_key",
                        "orders.parent_trade_id",
                    ) =>
                {
                    return Err(Placed::Exists);
                }
                Err(e) if store::is_transient(&e) && transient < store::TRANSIENT_ATTEMPTS => {
                    // A deadlock with a concurrent credit (MySQL locks the unique index's gap on a
                    // duplicate check): the insert was rolled back; try the next slot.
                    transient += 1;
                    tracing::debug!(attempt = transient, error = %e, "transient conflict creating an order; retrying");
                    store::transient_pause(transient).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Err(OrderError::NoFreeSlot(req.network).into())
}

/// Which of `wallets` waiting orders of `token` hold `amount` on: one probe of the unique slot
/// key `orders_live_slot_key` per wallet, equality on each of its columns, as a `UNION ALL`
/// of one `SELECT` per address — the form every planner answers with exact index lookups.
/// (PostgreSQL 15 turns `address IN (…)` or an `OR` of the probes into a filter over every
/// order of the network: 21–34 ms at 300,000 orders, against 0.24 ms for the union. One query
/// over all candidate amounts, with `IN` lists, was planned as a scan of every live order:
/// 14–90 ms at 20,000–35,000 waiting orders. An index of its own keyed by amount cost every
/// insert a random page: dropped by migration m000014.)
async fn live_slots_at(
    db: &DatabaseConnection,
    network: Network,
    token: crate::domain::network::Token,
    amount: &str,
    wallets: &[crate::store::entities::wallet::Model],
) -> Result<Vec<String>, DbErr> {
    use sea_orm::{
        ConnectionTrait,
        sea_query::{Query, SelectStatement, UnionType},
    };
    let probe = |address: &str| -> SelectStatement {
        Query::select()
            .column(order::Column::Address)
            .from(order::Entity)
            .and_where(order::Column::Network.eq(network.as_str()))
            .and_where(order::Column::Token.eq(token.as_str()))
            .and_where(order::Column::Address.eq(address))
            .and_where(order::Column::ActualAmount.eq(amount))
            .and_where(order::Column::LiveSlot.eq(1))
            .to_owned()
    };
    let mut held = Vec::new();
    // SQLite refuses a compound SELECT of more than 500 terms (SQLITE_MAX_COMPOUND_SELECT).
    for chunk in wallets.chunks(PROBES_PER_QUERY) {
        let mut query = probe(&chunk[0].address);
        for w in &chunk[1..] {
            query.union(UnionType::All, probe(&w.address));
        }
        for row in db
            .query_all_raw(db.get_database_backend().build(&query))
            .await?
        {
            held.push(row.try_get::<String>("", "address")?);
        }
    }
    Ok(held)
}

/// Wallets probed by one statement of [`live_slots_at`].
const PROBES_PER_QUERY: usize = 200;

pub(super) fn repeat_or_conflict(
    existing: Order,
    hash: &str,
    order_id: &str,
) -> Result<Created, OrderError> {
    let live = existing.effective_status(now()) == OrderStatus::Waiting;
    if live && existing.request_hash == hash {
        Ok(Created {
            order: existing,
            repeated: true,
        })
    } else {
        Err(OrderError::Exists(order_id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trade_ids_are_upstream_shaped() {
        let t = new_trade_id();
        assert_eq!(t.as_str().len(), 24);
        assert!(t.as_str().chars().all(|c| c.is_ascii_digit()));
    }

    /// The free-slot search sees exactly the wallets whose waiting order holds the amount (not
    /// other amounts, tokens or finished orders), over more wallets than one statement probes.
    #[tokio::test]
    async fn live_slots_at_finds_the_held_wallets_among_many() {
        use migration::MigratorTrait;
        use sea_orm::{ActiveModelTrait, Set};

        use crate::domain::network::Token;
        let tmp = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", tmp.path().join("s.db").display());
        let db = store::connect(&url).await.unwrap();
        migration::Migrator::up(&db, None).await.unwrap();
        // More than SQLite's 500 terms of one compound SELECT.
        let wallets: Vec<_> = (0..550u32)
            .map(|i| crate::store::entities::wallet::Model {
                id: i64::from(i) + 1,
                merchant_id: None,
                network: "tron".into(),
                address: format!("TWallet{i:04}"),
                label: String::new(),
                enabled: true,
                created_at: 0,
            })
            .collect();
        // (wallet, amount, token, live): only 7 and 420 hold 10.00 USDT while waiting.
        let rows = [
            (7, "10.00", "USDT", true),
            (420, "10.00", "USDT", true),
            (8, "10.01", "USDT", true),
            (9, "10.00", "USDC", true),
            (10, "10.00", "USDT", false),
        ];
        for (k, (w, amount, token, live)) in rows.into_iter().enumerate() {
            let mut row = order::ActiveModel {
                trade_id: Set(format!("2026120400000000000000{k:02}")),
                merchant_id: Set(1),
                order_id: Set(format!("o{k}")),
                protocol: Set("v1".into()),
                network: Set("tron".into()),
                token: Set(token.into()),
                currency: Set("CNY".into()),
                amount: Set("72".into()),
                rate: Set("7.2".into()),
                actual_amount: Set(amount.into()),
                address: Set(format!("TWallet{w:04}")),
                status: Set(if live { 1 } else { 2 }),
                notify_url: Set("http://127.0.0.1:9/n".into()),
                request_hash: Set(format!("h{k}")),
                created_at: Set(1),
                updated_at: Set(1),
                expires_at: Set(4_000_000_000),
                ..Default::default()
            };
            row.live_slot = Set(live.then_some(1));
            row.insert(&db).await.unwrap();
        }
        let mut held = live_slots_at(&db, Network::TRON, Token::USDT, "10.00", &wallets)
            .await
            .unwrap();
        held.sort();
        assert_eq!(held, ["TWallet0007", "TWallet0420"]);
        assert!(
            live_slots_at(&db, Network::TRON, Token::USDT, "10.00", &[])
                .await
                .unwrap()
                .is_empty()
        );
    }
}
