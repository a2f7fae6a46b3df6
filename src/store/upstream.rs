//! Reading an upstream epusdt database — assimon/epusdt (`orders` + `wallet_address` with a
//! `token` column, TRON only) or GMWalletApp/epusdt (gorm tables `orders`, `wallet_address`,
//! `api_keys`, `settings`, `chains`, …) — on MySQL, PostgreSQL or SQLite, and recognising such
//! tables in the database we are about to migrate.
//!
//! Read only: this module never writes to the upstream database. Every value is read as text
//! (cast in SQL), so column types that differ between backends and upstream versions (`decimal`
//! vs `double`, `int` vs `bigint unsigned`, `timestamp` vs text dates) never reach a float:
//! amounts keep the digits the database prints, times become unix seconds in SQL.
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};

/// Which upstream wrote the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// assimon/epusdt: one merchant (`api_auth_token` in its `.env`), TRON only.
    Assimon,
    /// GMWalletApp/epusdt: `api_keys` merchants, several networks.
    GmWallet,
}

impl Variant {
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Assimon => "assimon/epusdt",
            Variant::GmWallet => "GMWalletApp/epusdt",
        }
    }
}

/// A receive address (`wallet_address`).
#[derive(Debug, Clone)]
pub struct UpstreamWallet {
    /// assimon: always `tron`; GMWallet: the `network` column as stored (`binance` = BSC).
    pub network: String,
    pub address: String,
    pub enabled: bool,
    pub remark: String,
}

/// A GMWallet API key (`api_keys`): a merchant.
#[derive(Clone)]
pub struct UpstreamKey {
    pub id: String,
    pub pid: String,
    pub name: String,
    /// The plaintext signing secret (upstream stores it so).
    pub secret: String,
    pub enabled: bool,
}

impl std::fmt::Debug for UpstreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamKey")
            .field("pid", &self.pid)
            .field("name", &self.name)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// An order row, every value as the database prints it.
#[derive(Debug, Clone, Default)]
pub struct UpstreamOrder {
    pub trade_id: String,
    pub order_id: String,
    pub block_transaction_id: Option<String>,
    pub amount: String,
    pub actual_amount: String,
    /// GMWallet only (assimon orders are CNY).
    pub currency: Option<String>,
    /// The receive address (assimon: `token`; GMWallet: `receive_address`).
    pub address: String,
    /// GMWallet only: the coin symbol (`USDT`).
    pub token: Option<String>,
    /// GMWallet only; assimon is TRON.
    pub network: Option<String>,
    pub status: i64,
    pub notify_url: String,
    pub redirect_url: String,
    pub name: String,
    pub epay_type: String,
    pub payment_type: String,
    pub callback_confirm: i64,
    pub callback_num: i64,
    /// GMWallet: `api_keys.id` of the merchant (0 or absent: none).
    pub api_key_id: Option<String>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
    /// GMWallet: `on_chain` (or empty) for chain payments, `okpay` for its payment provider.
    pub pay_provider: String,
}

/// A read-only handle on an upstream database, its variant and table prefix.
pub struct Upstream {
    db: DatabaseConnection,
    prefix: String,
    pub variant: Variant,
}

/// Opens `url` (SQLite files read-only) and recognises the variant.
pub async fn open(url: &str, prefix: &str) -> Result<Upstream, DbErr> {
    if !prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(DbErr::Custom(format!(
            "table prefix `{prefix}` may hold only letters, digits and _"
        )));
    }
    // A bare path is upstream's SQLite file.
    let url = if url.contains("://") || url.starts_with("sqlite:") {
        url.to_string()
    } else {
        format!("sqlite://{url}")
    };
    let url = if url.starts_with("sqlite:") && !url.contains('?') {
        format!("{url}?mode=ro")
    } else {
        url.to_string()
    };
    let mut opts = sea_orm::ConnectOptions::new(url);
    opts.sqlx_logging(false);
    super::no_reaper(&mut opts);
    let db = sea_orm::Database::connect(opts).await?;
    let variant = detect(&db, prefix).await?.ok_or_else(|| {
        DbErr::Custom(format!(
            "no upstream epusdt tables found (looked for `{prefix}orders` with trade_id and block_transaction_id); pass --table-prefix if upstream used one"
        ))
    })?;
    Ok(Upstream {
        db,
        prefix: prefix.to_string(),
        variant,
    })
}

/// The tables of the connection's current database/schema.
pub async fn tables(db: &impl ConnectionTrait) -> Result<Vec<String>, DbErr> {
    let sql = match db.get_database_backend() {
        DbBackend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table'",
        DbBackend::Postgres => {
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables WHERE table_schema = current_schema()"
        }
        _ => {
            "SELECT CAST(table_name AS CHAR) FROM information_schema.tables WHERE table_schema = DATABASE()"
        }
    };
    first_column(db, sql).await
}

/// The column names of `table` (lower case).
pub async fn columns(db: &impl ConnectionTrait, table: &str) -> Result<Vec<String>, DbErr> {
    let t = table.replace('\'', "");
    let sql = match db.get_database_backend() {
        DbBackend::Sqlite => format!("SELECT name FROM pragma_table_info('{t}')"),
        DbBackend::Postgres => format!(
            "SELECT CAST(column_name AS TEXT) FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = '{t}'"
        ),
        _ => format!(
            "SELECT CAST(column_name AS CHAR) FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = '{t}'"
        ),
    };
    Ok(first_column(db, &sql)
        .await?
        .into_iter()
        .map(|c| c.to_ascii_lowercase())
        .collect())
}

async fn first_column(db: &impl ConnectionTrait, sql: &str) -> Result<Vec<String>, DbErr> {
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?;
    rows.iter()
        .map(|r| r.try_get_by_index::<String>(0))
        .collect()
}

/// The upstream variant whose tables (with `prefix`) are in this database, if any.
pub async fn detect(db: &impl ConnectionTrait, prefix: &str) -> Result<Option<Variant>, DbErr> {
    let tables = tables(db).await?;
    let has = |t: &str| tables.iter().any(|n| n == &format!("{prefix}{t}"));
    if !has("orders") {
        return Ok(None);
    }
    let cols = columns(db, &format!("{prefix}orders")).await?;
    let col = |c: &str| cols.iter().any(|n| n == c);
    if !col("trade_id") || !col("block_transaction_id") || col("live_slot") {
        return Ok(None);
    }
    Ok(Some(if has("api_keys") || col("receive_address") {
        Variant::GmWallet
    } else {
        Variant::Assimon
    }))
}

/// Upstream tables in a database we are asked to migrate: `orders` without our `live_slot`,
/// `wallet_address`, `api_keys`. Returns what was found, for the refusal message.
pub async fn upstream_tables_in_target(db: &impl ConnectionTrait) -> Result<Vec<String>, DbErr> {
    let tables = tables(db).await?;
    let mut found = Vec::new();
    if tables.iter().any(|t| t == "orders") {
        let cols = columns(db, "orders").await?;
        if cols.iter().any(|c| c == "trade_id") && !cols.iter().any(|c| c == "live_slot") {
            found.push("orders (upstream columns, no live_slot)".to_string());
        }
    }
    for t in ["wallet_address", "api_keys"] {
        if tables.iter().any(|n| n == t) {
            found.push(t.to_string());
        }
    }
    Ok(found)
}

impl Upstream {
    fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    fn table(&self, name: &str) -> String {
        match self.backend() {
            DbBackend::MySql => format!("`{}{name}`", self.prefix),
            _ => format!("\"{}{name}\"", self.prefix),
        }
    }

    /// `col` as text (NULL stays NULL).
    fn text(&self, col: &str) -> String {
        match self.backend() {
            DbBackend::MySql => format!("CAST({col} AS CHAR)"),
            _ => format!("CAST({col} AS TEXT)"),
        }
    }

    /// A time column as unix seconds, as text.
    fn epoch(&self, col: &str) -> String {
        match self.backend() {
            DbBackend::MySql => format!("CAST(UNIX_TIMESTAMP({col}) AS CHAR)"),
            DbBackend::Postgres => format!("CAST(EXTRACT(EPOCH FROM {col}) AS TEXT)"),
            _ => format!("CAST(strftime('%s', {col}) AS TEXT)"),
        }
    }

    /// Rows of `table` (not soft-deleted) with the `(expression, name)` columns, as text.
    async fn rows(
        &self,
        table: &str,
        cols: &[(String, &str)],
    ) -> Result<Vec<Vec<Option<String>>>, DbErr> {
        let have = columns(&self.db, &format!("{}{table}", self.prefix)).await?;
        let select: Vec<String> = cols
            .iter()
            .map(|(expr, name)| {
                if have.iter().any(|c| c == name) {
                    expr.clone()
                } else {
                    "NULL".to_string()
                }
            })
            .collect();
        let live = if have.iter().any(|c| c == "deleted_at") {
            " WHERE deleted_at IS NULL"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {} FROM {}{live} ORDER BY id",
            select.join(", "),
            self.table(table)
        );
        let rows = self
            .db
            .query_all_raw(Statement::from_string(self.backend(), sql))
            .await?;
        rows.iter()
            .map(|r| {
                (0..cols.len())
                    .map(|i| r.try_get_by_index::<Option<String>>(i))
                    .collect()
            })
            .collect()
    }

    fn col(&self, name: &'static str) -> (String, &'static str) {
        (self.text(name), name)
    }

    pub async fn wallets(&self) -> Result<Vec<UpstreamWallet>, DbErr> {
        let gm = self.variant == Variant::GmWallet;
        let cols = if gm {
            vec![
                self.col("network"),
                self.col("address"),
                self.col("status"),
                self.col("remark"),
            ]
        } else {
            vec![self.col("token"), self.col("status")]
        };
        let rows = self.rows("wallet_address", &cols).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let s = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                if gm {
                    UpstreamWallet {
                        network: s(0),
                        address: s(1),
                        enabled: s(2).trim() != "2",
                        remark: s(3),
                    }
                } else {
                    UpstreamWallet {
                        network: "tron".into(),
                        address: s(0),
                        enabled: s(1).trim() != "2",
                        remark: String::new(),
                    }
                }
            })
            .collect())
    }

    /// GMWallet's API keys; none for assimon (its token lives in its `.env`).
    pub async fn api_keys(&self) -> Result<Vec<UpstreamKey>, DbErr> {
        if self.variant != Variant::GmWallet {
            return Ok(Vec::new());
        }
        let cols = [
            self.col("id"),
            self.col("pid"),
            self.col("name"),
            self.col("secret_key"),
            self.col("status"),
        ];
        let rows = self.rows("api_keys", &cols).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let s = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                UpstreamKey {
                    id: s(0).trim().to_string(),
                    pid: s(1).trim().to_string(),
                    name: s(2),
                    secret: s(3),
                    enabled: s(4).trim() != "2",
                }
            })
            .collect())
    }

    pub async fn orders(&self) -> Result<Vec<UpstreamOrder>, DbErr> {
        let gm = self.variant == Variant::GmWallet;
        let address = if gm { "receive_address" } else { "token" };
        let cols = vec![
            self.col("trade_id"),
            self.col("order_id"),
            self.col("block_transaction_id"),
            self.col("amount"),
            self.col("actual_amount"),
            self.col("currency"),
            (self.text(address), address),
            (self.text("token"), if gm { "token" } else { "-" }),
            self.col("network"),
            self.col("status"),
            self.col("notify_url"),
            self.col("redirect_url"),
            self.col("name"),
            self.col("epay_type"),
            self.col("payment_type"),
            self.col("callback_confirm"),
            self.col("callback_num"),
            self.col("api_key_id"),
            (self.epoch("created_at"), "created_at"),
            (self.epoch("updated_at"), "updated_at"),
            self.col("pay_provider"),
        ];
        let rows = self.rows("orders", &cols).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let o = |i: usize| r.get(i).cloned().flatten();
                let s = |i: usize| o(i).unwrap_or_default();
                let int = |i: usize| s(i).trim().parse::<i64>().unwrap_or(0);
                let secs =
                    |i: usize| o(i).and_then(|t| t.trim().split('.').next()?.parse::<i64>().ok());
                UpstreamOrder {
                    trade_id: s(0).trim().to_string(),
                    order_id: s(1),
                    block_transaction_id: o(2).filter(|t| !t.trim().is_empty()),
                    amount: s(3).trim().to_string(),
                    actual_amount: s(4).trim().to_string(),
                    currency: o(5).filter(|c| !c.trim().is_empty()),
                    address: s(6).trim().to_string(),
                    token: o(7).filter(|t| !t.trim().is_empty()),
                    network: o(8).filter(|n| !n.trim().is_empty()),
                    status: int(9),
                    notify_url: s(10),
                    redirect_url: s(11),
                    name: s(12),
                    epay_type: s(13),
                    payment_type: s(14),
                    callback_confirm: int(15),
                    callback_num: int(16),
                    api_key_id: o(17).map(|t| t.trim().to_string()),
                    created_at: secs(18),
                    updated_at: secs(19),
                    pay_provider: s(20).trim().to_string(),
                }
            })
            .collect())
    }
}
