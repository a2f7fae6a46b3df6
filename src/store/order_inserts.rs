//! Group commit for order inserts: the creates that arrive while a write is under way are
//! written together, one `INSERT … VALUES (…), (…) ON CONFLICT DO NOTHING RETURNING *` and one
//! commit for all of them, then one read of the placeholders holding their order_ids.
//!
//! A caller may offer alternatives: rows of one order (one trade_id and order_id) in different
//! (address, amount) slots, in its order of preference. They go into the statement together;
//! the first whose slot is free is inserted, and the unique indexes on the trade_id and on the
//! merchant's order_id refuse the rest — one statement finds a free slot where one insert per
//! slot used to.
//!
//! Nobody waits for company: a create that finds a writer free is written at once, alone; only
//! those that arrive while every writer is busy share the next statement (the group grows with
//! the load, at most [`MAX_BATCH`]). A caller is answered once its row is committed, so a reply
//! means what it meant before: the order is stored.
//!
//! The statement only ever *adds* speed. An order it does not insert — unique indexes refused
//! every alternative (taken slots, the merchant's order_id, the trade_id), or the statement
//! failed — comes back [`Batched::NotInserted`], and its caller inserts it alone as before,
//! where the violation is named and handled. MySQL (no `RETURNING`) never groups.
//!
//! The write runs in a task of its own: a caller that goes away (its client hung up) cancels
//! nobody else's insert.
use std::{
    collections::HashSet,
    sync::{
        Arc, LazyLock, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

use sea_orm::{
    ActiveModelTrait, ActiveValue, ColumnTrait, DatabaseConnection, DbBackend, EntityTrait,
    IdenStatic, Iterable, QueryFilter, QuerySelect, Statement,
};
use tokio::sync::{Semaphore, oneshot};

use super::entities::{order, order_choice};
use crate::domain::order::Order;

/// The most orders one statement carries.
pub const MAX_BATCH: usize = 64;
/// The most alternatives of one order (64 × 8 rows of 31 columns: well under SQLite's 32,766
/// and PostgreSQL's 65,535 bind parameters).
pub const MAX_ALTERNATIVES: usize = 8;

/// How many grouped writes may run at once: SQLite has one writer; a server database takes a
/// few (each on its own pooled connection) so that one commit's wait does not hold everyone.
fn writers(backend: DbBackend) -> usize {
    match backend {
        DbBackend::Sqlite => 1,
        _ => 2,
    }
}

/// What became of a row handed to [`InsertQueue::insert`].
#[derive(Debug)]
pub enum Batched {
    /// Committed. `placeholder`: whether a placeholder (`order_choices`) holds the merchant's
    /// order_id, read after the commit — `None` if that read failed (the caller reads itself).
    Inserted {
        row: Box<order::Model>,
        placeholder: Option<bool>,
    },
    /// Not inserted (a unique index said no, the row collided with another of its group, or
    /// the statement failed): insert it alone to learn why.
    NotInserted,
}

struct Pending {
    ticket: u64,
    /// Alternatives of one order, most wanted first.
    alternatives: Vec<Order>,
    reply: oneshot::Sender<Batched>,
}

/// The process' queue of order inserts for one database (held with the other per-process state
/// in `service::cache::Caches`).
pub struct InsertQueue {
    pending: Mutex<Vec<Pending>>,
    /// Sized for the backend of the first insert (a queue serves one database).
    writers: OnceLock<Arc<Semaphore>>,
    tickets: AtomicU64,
    groups: Arc<AtomicU64>,
}

impl std::fmt::Debug for InsertQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InsertQueue")
            .field("pending", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl Default for InsertQueue {
    fn default() -> Self {
        Self {
            pending: Mutex::new(Vec::new()),
            writers: OnceLock::new(),
            tickets: AtomicU64::new(0),
            groups: Arc::default(),
        }
    }
}

impl InsertQueue {
    /// Does this backend group inserts? (MySQL has no `RETURNING`.)
    pub fn groups(backend: DbBackend) -> bool {
        matches!(backend, DbBackend::Sqlite | DbBackend::Postgres)
    }

    /// How many grouped statements this queue has sent.
    pub fn groups_written(&self) -> u64 {
        self.groups.load(Ordering::Relaxed)
    }

    /// Inserts the first of `alternatives` whose slot is free (with whatever other inserts are
    /// waiting) and says what became of it. The alternatives must be one order — one trade_id,
    /// merchant and order_id — in different slots; at most [`MAX_ALTERNATIVES`] are used.
    pub async fn insert(&self, db: &DatabaseConnection, mut alternatives: Vec<Order>) -> Batched {
        let backend = db.get_database_backend();
        alternatives.truncate(MAX_ALTERNATIVES);
        let one_order = alternatives.first().is_some_and(|first| {
            alternatives.iter().all(|o| {
                o.trade_id == first.trade_id
                    && o.merchant_id == first.merchant_id
                    && o.order_id == first.order_id
            })
        });
        if !Self::groups(backend) || !one_order {
            return Batched::NotInserted;
        }
        let writers = self
            .writers
            .get_or_init(|| Arc::new(Semaphore::new(writers(backend))));
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
        let (reply, mut answer) = oneshot::channel();
        self.lock().push(Pending {
            ticket,
            alternatives,
            reply,
        });
        loop {
            // Wait for a turn at writing — unless another writer takes this row meanwhile.
            let permit = tokio::select! {
                biased;
                done = &mut answer => return done.unwrap_or(Batched::NotInserted),
                permit = writers.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return Batched::NotInserted,
                },
            };
            let (group, still_waiting) = {
                let mut pending = self.lock();
                let n = pending.len().min(MAX_BATCH);
                let group: Vec<Pending> = pending.drain(..n).collect();
                (group, pending.iter().any(|p| p.ticket == ticket))
            };
            if group.is_empty() {
                drop(permit);
            } else {
                let db = db.clone();
                self.groups.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    write_group(&db, group).await;
                    drop(permit);
                });
            }
            if !still_waiting {
                // In the group just sent, or in one another caller sent: answered on commit.
                return answer.await.unwrap_or(Batched::NotInserted);
            }
            // More than a group's worth waited ahead of this row: the next turn.
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Writes one group and answers each of its callers.
async fn write_group(db: &DatabaseConnection, group: Vec<Pending>) {
    // An inserted row is matched to its caller by trade_id: two callers with one trade_id (a
    // random clash) cannot share a statement; the later goes alone. Any other clash inside the
    // group (one slot, one merchant order_id) is settled by the unique indexes, in group order.
    let mut trade_ids = HashSet::new();
    let (rows, alone): (Vec<Pending>, Vec<Pending>) = group
        .into_iter()
        .partition(|p| trade_ids.insert(p.alternatives[0].trade_id.as_str().to_owned()));
    for p in alone {
        let _ = p.reply.send(Batched::NotInserted);
    }
    if rows.is_empty() {
        return;
    }
    let inserted = {
        let _turn = super::write_turn(db).await;
        insert_rows(db, &rows).await
    };
    let inserted = match inserted {
        Ok(rows) => rows,
        Err(e) => {
            tracing::debug!(error = %e, rows = rows.len(), "grouped order insert failed; each row goes alone");
            for p in rows {
                let _ = p.reply.send(Batched::NotInserted);
            }
            return;
        }
    };
    let held = if inserted.is_empty() {
        Ok(HashSet::new())
    } else {
        placeholders(db, &inserted).await
    };
    let mut by_trade: std::collections::HashMap<String, order::Model> = inserted
        .into_iter()
        .map(|r| (r.trade_id.clone(), r))
        .collect();
    for p in rows {
        let mine = &p.alternatives[0];
        let answer = match by_trade.remove(mine.trade_id.as_str()) {
            // The trade_id is unique in the group and in the table: this row is the caller's.
            Some(row)
                if row.merchant_id == mine.merchant_id.get() && row.order_id == mine.order_id =>
            {
                Batched::Inserted {
                    placeholder: held
                        .as_ref()
                        .ok()
                        .map(|h| h.contains(&(row.merchant_id, row.order_id.clone()))),
                    row: Box::new(row),
                }
            }
            _ => Batched::NotInserted,
        };
        let _ = p.reply.send(answer);
    }
}

/// `INSERT … VALUES (…), … ON CONFLICT DO NOTHING RETURNING *`: the rows no unique index
/// refused.
async fn insert_rows(
    db: &DatabaseConnection,
    rows: &[Pending],
) -> Result<Vec<order::Model>, sea_orm::DbErr> {
    let backend = db.get_database_backend();
    let count = rows.iter().map(|p| p.alternatives.len()).sum();
    let mut values = Vec::with_capacity(count * INSERTED.len());
    for row in rows.iter().flat_map(|p| &p.alternatives) {
        let mut row = super::order::new_row(row);
        values.extend(INSERTED.iter().map(|c| match row.take(*c) {
            ActiveValue::Set(v) | ActiveValue::Unchanged(v) => v,
            ActiveValue::NotSet => sea_orm::Value::String(None),
        }));
    }
    let sql = insert_sql(backend, count);
    order::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(backend, &*sql, values))
        .all(db)
        .await
}

/// The columns an insert sets: all but the id.
static INSERTED: LazyLock<Vec<order::Column>> = LazyLock::new(|| {
    order::Column::iter()
        .filter(|c| !matches!(c, order::Column::Id))
        .collect()
});

/// The grouped insert's SQL for `rows` rows, on SQLite or PostgreSQL (the backends that group).
/// Its text depends only on the backend and the row count, so it is written once per pair
/// (building it through sea-query cost a copy of every value and the writing of the text on
/// each group) and sqlx's statement cache finds it prepared. Only counts up to [`MAX_BATCH`]
/// are kept (~400 KB of text per backend at most); a larger group, whose orders offer several
/// slots each, has its text written afresh.
fn insert_sql(backend: DbBackend, rows: usize) -> Arc<str> {
    use std::fmt::Write as _;

    static SQL: Mutex<Vec<(bool, usize, Arc<str>)>> = Mutex::new(Vec::new());
    let postgres = backend == DbBackend::Postgres;
    let lock = || SQL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, sql)) = lock().iter().find(|(p, n, _)| *p == postgres && *n == rows) {
        return sql.clone();
    }
    let columns: Vec<String> = INSERTED
        .iter()
        .map(|c| format!("\"{}\"", c.as_str()))
        .collect();
    let mut sql = format!("INSERT INTO \"orders\" ({}) VALUES ", columns.join(", "));
    let mut param = 0;
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..INSERTED.len() {
            param += 1;
            if c > 0 {
                sql.push_str(", ");
            }
            if postgres {
                let _ = write!(sql, "${param}");
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT DO NOTHING RETURNING *");
    let sql: Arc<str> = sql.into();
    let mut cache = lock();
    if rows <= MAX_BATCH && !cache.iter().any(|(p, n, _)| *p == postgres && *n == rows) {
        cache.push((postgres, rows, sql.clone()));
    }
    sql
}

/// (merchant_id, order_id) of the `inserted` rows that a placeholder holds. Read after the
/// insert committed: a placeholder made concurrently either committed before this read (and is
/// seen here) or reads the orders after its own insert (and sees these rows).
async fn placeholders(
    db: &DatabaseConnection,
    inserted: &[order::Model],
) -> Result<HashSet<(i64, String)>, sea_orm::DbErr> {
    let rows: Vec<(i64, String)> = order_choice::Entity::find()
        .select_only()
        .column(order_choice::Column::MerchantId)
        .column(order_choice::Column::OrderId)
        .filter(order_choice::Column::OrderId.is_in(inserted.iter().map(|r| r.order_id.clone())))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;
    use sea_orm::{ActiveModelTrait, PaginatorTrait};

    use super::*;
    use crate::domain::{
        network::Network,
        order::{MerchantId, OrderId, OrderStatus, TradeId},
        protocol::Protocol,
    };

    async fn sqlite(dir: &std::path::Path) -> DatabaseConnection {
        use migration::MigratorTrait;
        let url = format!("sqlite://{}?mode=rwc", dir.join("inserts.db").display());
        let db = crate::store::connect(&url).await.unwrap();
        migration::Migrator::up(&db, None).await.unwrap();
        db
    }

    fn draft(i: u64, order_id: &str, amount: Decimal) -> Order {
        Order {
            id: OrderId(0),
            trade_id: TradeId::upstream(chrono::Utc::now(), 1_000_000 + i),
            merchant_id: MerchantId(1001),
            order_id: order_id.into(),
            protocol: Protocol::parse("v1").unwrap(),
            network: Network::TRON,
            token: "USDT".into(),
            currency: "CNY".into(),
            amount: Decimal::new(72, 0),
            rate: Decimal::new(72, 1),
            actual_amount: amount,
            address: "TWallet".into(),
            status: OrderStatus::Waiting,
            live_slot: true,
            flags: 0,
            notify_url: "http://127.0.0.1:9/n".into(),
            redirect_url: String::new(),
            name: String::new(),
            request_hash: format!("h{i}"),
            block_transaction_id: None,
            paid_amount: None,
            callback_state: 0,
            callback_attempts: 0,
            callback_due_at: None,
            created_at: 1,
            updated_at: 1,
            expires_at: 4_000_000_000,
            paid_at: None,
            sign_alg: String::new(),
            epay_type: String::new(),
            parent_trade_id: None,
        }
    }

    #[test]
    fn the_grouped_insert_names_every_column_and_numbers_its_parameters() {
        let pg = insert_sql(DbBackend::Postgres, 2);
        let cols = INSERTED.len();
        assert_eq!(
            cols,
            order::Column::iter().count() - 1,
            "every column but the id"
        );
        assert!(
            pg.starts_with("INSERT INTO \"orders\" (\"trade_id\", "),
            "{pg}"
        );
        assert!(!pg.contains("\"id\""), "{pg}");
        assert!(pg.contains(&format!("${cols}), ($")), "{pg}");
        assert!(pg.ends_with(&format!(
            ", ${}) ON CONFLICT DO NOTHING RETURNING *",
            2 * cols
        )));
        let sqlite = insert_sql(DbBackend::Sqlite, 3);
        assert_eq!(sqlite.matches('?').count(), 3 * cols);
        assert!(!sqlite.contains('$'));
        // The same text again, from the cache; a group over MAX_BATCH rows is not kept.
        assert!(Arc::ptr_eq(&pg, &insert_sql(DbBackend::Postgres, 2)));
        let big = insert_sql(DbBackend::Postgres, MAX_BATCH + 1);
        assert!(big.ends_with(&format!(
            ", ${}) ON CONFLICT DO NOTHING RETURNING *",
            (MAX_BATCH + 1) * cols
        )));
        assert!(!Arc::ptr_eq(
            &big,
            &insert_sql(DbBackend::Postgres, MAX_BATCH + 1)
        ));
    }

    /// Inserts that arrive while a write is under way share the next statement; of an order's
    /// alternatives the first free slot stands; an order whose every slot is refused (here: by
    /// an earlier row of its own group) comes back `NotInserted` and nothing else of its group
    /// is lost; a placeholder holding an order_id is reported.
    #[tokio::test]
    async fn waiting_inserts_share_one_statement_and_refusals_come_back() {
        let tmp = tempfile::tempdir().unwrap();
        let db = sqlite(tmp.path()).await;
        // A slot held before: 10.00 on TWallet.
        crate::store::order::new_row(&draft(0, "held", Decimal::new(10, 0)))
            .insert(&db)
            .await
            .unwrap();
        // A placeholder holds "P-1".
        order_choice::ActiveModel {
            trade_id: sea_orm::Set("202612030000009999999999".into()),
            merchant_id: sea_orm::Set(1001),
            order_id: sea_orm::Set("P-1".into()),
            protocol: sea_orm::Set("gmpay".into()),
            currency: sea_orm::Set("CNY".into()),
            amount: sea_orm::Set("1".into()),
            notify_url: sea_orm::Set(String::new()),
            redirect_url: sea_orm::Set(String::new()),
            name: sea_orm::Set(String::new()),
            request_hash: sea_orm::Set("x".into()),
            sign_alg: sea_orm::Set(String::new()),
            epay_type: sea_orm::Set(String::new()),
            timeout_secs: sea_orm::Set(None),
            status: sea_orm::Set(0),
            created_at: sea_orm::Set(1),
            updated_at: sea_orm::Set(1),
            expires_at: sea_orm::Set(4_000_000_000),
            ..Default::default()
        }
        .insert(&db)
        .await
        .unwrap();

        let queue = InsertQueue::default();
        // 1: alone (the writer is free); 2..=20 wait behind it and go together. Order 5 wants the
        // slot held before, then 10.50 (and then 10.51, never reached); order 7 only the slot of
        // order 6; order 9 is "P-1".
        let amount = |i: u64| match i {
            5 => Decimal::new(10, 0),
            7 => Decimal::new(1006, 2),
            _ => Decimal::new(1000 + i as i64, 2),
        };
        let results = futures::future::join_all((1..=20u64).map(|i| {
            let order_id = if i == 9 {
                "P-1".to_string()
            } else {
                format!("O-{i}")
            };
            let (queue, db) = (&queue, &db);
            let alternatives = match i {
                5 => [10, 1050, 1051].map(|c| Decimal::new(c, if c == 10 { 0 } else { 2 })),
                _ => [amount(i); 3],
            }
            .map(|a| draft(i, &order_id, a));
            let alternatives = if i == 5 {
                alternatives.to_vec()
            } else {
                alternatives[..1].to_vec()
            };
            async move { (i, queue.insert(db, alternatives).await) }
        }))
        .await;
        for (i, r) in &results {
            match (i, r) {
                (7, Batched::NotInserted) => {}
                (5, Batched::Inserted { row, .. }) => {
                    assert_eq!(row.actual_amount, "10.50", "the first free alternative");
                    assert_eq!(row.order_id, "O-5");
                }
                (9, Batched::Inserted { placeholder, .. }) => {
                    assert_eq!(*placeholder, Some(true), "P-1 is held")
                }
                (_, Batched::Inserted { row, placeholder }) => {
                    assert_eq!(*placeholder, Some(false));
                    assert_eq!(row.order_id, format!("O-{i}"));
                    assert_eq!(row.actual_amount, amount(*i).to_string());
                    assert!(row.id > 0);
                }
                (i, r) => panic!("row {i}: {r:?}"),
            }
        }
        assert_eq!(
            order::Entity::find().count(&db).await.unwrap(),
            1 + 19,
            "the row held before and every order but 7, each once"
        );
        assert_eq!(
            queue.groups_written(),
            2,
            "one statement for the first row, one for the 19 that waited"
        );
    }
}
