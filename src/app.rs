//! Application wiring: `App::build(config)` opens the database (applying migrations), prepares
//! the durable job queue, syncs the default merchant and binds the listener; `run_until_stopped`
//! serves HTTP and runs the job workers until the caller's shutdown future resolves.
//!
//! Nothing here is global: every test builds its own `App` with its own config on port 0.
use std::{
    future::Future,
    net::SocketAddr,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use migration::{Migrator, MigratorTrait};
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;

mod housekeeping;
pub mod reload;

pub use reload::{ReloadError, Reloader};

pub use crate::state::AppState;
use crate::{
    audit::{AuditEvent, AuditLog, actions},
    config::Config,
    crypto::keys::KeyStore,
    jobs,
    net::install_crypto_provider,
    queue::{JobError, JobQueue, QueueBackend},
    service, store,
};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("job queue: {0}")]
    Queue(#[from] JobError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
    #[error("master key: {0}")]
    Keys(#[from] crate::crypto::keys::KeyError),
    #[error("{0}")]
    Merchant(#[from] service::merchant::MerchantError),
    #[error("audit log: {0}")]
    Audit(String),
    #[error("admin accounts: {0}")]
    Admin(#[from] service::admin::AdminError),
    #[error("server: {0}")]
    Serve(std::io::Error),
    /// The target database holds an upstream epusdt's tables: migrating would mix our schema
    /// into theirs (and fail half-way on `orders`). Nothing was changed.
    #[error(
        "the database {url} holds upstream epusdt tables ({found}); nothing was changed. Point database_url at a new, empty database and bring the data over with `epusdt import upstream --from {url}`"
    )]
    UpstreamSchema { url: String, found: String },
}

pub struct App {
    state: AppState,
    listener: TcpListener,
    port: u16,
    /// The `admin_listen` listener and its port, when configured.
    admin: Option<(TcpListener, u16)>,
    /// `allow_private_callbacks` as the callback client's resolver reads it (reloadable).
    allow_private: Arc<AtomicBool>,
    /// The `metrics_listen` listener and its port, when configured.
    metrics: Option<(TcpListener, u16)>,
}

/// Opens the database named by the config, creating the data dir for SQLite, and migrates it.
pub async fn open_database(config: &Config) -> Result<DatabaseConnection, AppError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| AppError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    let db = store::connect(&config.effective_database_url()).await?;
    let found = store::upstream::upstream_tables_in_target(&db).await?;
    if !found.is_empty() {
        db.close().await.ok();
        return Err(AppError::UpstreamSchema {
            url: crate::redact::secrets(&config.effective_database_url()),
            found: found.join(", "),
        });
    }
    Migrator::up(&db, None).await?;
    Ok(db)
}

/// Chooses the queue backend: Redis when configured, else the main database (SQLite or
/// PostgreSQL). apalis has no MySQL storage, so MySQL without Redis keeps its queue in a SQLite
/// file in the data dir — durable, but local to this instance (scale-out needs Redis).
pub async fn open_queue(config: &Config, db: &DatabaseConnection) -> Result<JobQueue, AppError> {
    let backend = if let Some(url) = &config.redis_url {
        QueueBackend::Redis(url.clone())
    } else {
        match store::backend_name(db) {
            "sqlite" => QueueBackend::Sqlite(db.get_sqlite_connection_pool().clone()),
            "postgres" => QueueBackend::Postgres(db.get_postgres_connection_pool().clone()),
            _ => {
                let path = config.data_dir.join("queue.db");
                tracing::warn!(
                    path = %path.display(),
                    "MySQL has no apalis storage: the job queue lives in a local SQLite file; set redis_url to share it between instances"
                );
                let opts = sea_orm::sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true)
                    .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10))
                    .pragma(
                        "journal_size_limit",
                        store::SQLITE_JOURNAL_SIZE_LIMIT.to_string(),
                    );
                let pool = crate::store::sqlite_pool_options()
                    .max_connections(4)
                    .connect_with(opts)
                    .await
                    .map_err(|e| AppError::Setup(format!("queue file {}: {e}", path.display())))?;
                QueueBackend::Sqlite(pool)
            }
        }
    };
    Ok(JobQueue::connect(backend)
        .await?
        .with_queue_name(&config.queue_name)
        .with_shutdown_timeout(Duration::from_secs(config.shutdown_timeout_secs)))
}

/// Database + master keyring + audit log, checked and ready: what `serve` and every CLI command
/// that touches merchants needs. Generates the master key on first use (and says so loudly),
/// refuses a key that is not the one the database's secrets were sealed with, and re-seals
/// plaintext or previous-key secrets.
pub async fn open_secured(
    config: &Config,
) -> Result<(DatabaseConnection, Arc<KeyStore>, AuditLog), AppError> {
    let db = open_database(config).await?;
    let (keys, source) = KeyStore::open(config, true)?;
    let audit = AuditLog::open(db.clone(), &config.data_dir.join("audit"))
        .map_err(|e| AppError::Audit(e.to_string()))?;
    if let Some(src) = &source {
        if src.is_generated() {
            tracing::warn!(
                source = %src,
                key_id = %keys.current_key_id(),
                "GENERATED A NEW MASTER KEY: merchant secrets are encrypted with it. Back up this file; without it the secrets cannot be read"
            );
            eprintln!(
                "epusdt: generated a new master key at {src} — back it up; merchant secrets cannot be read without it"
            );
            audit
                .record(AuditEvent::new("system", actions::KEY_GENERATED, src.to_string()).with_details(
                    serde_json::json!({ "key_id": keys.current_key_id(), "fingerprint": keys.fingerprint() }),
                ))
                .await
                .map_err(|e| AppError::Audit(e.to_string()))?;
        } else {
            tracing::info!(source = %src, key_id = %keys.current_key_id(), "master key loaded");
        }
    }
    let resealed = service::merchant::secure_secrets(&db, &keys).await?
        + service::admin::reseal_all(&db, &keys).await?;
    if resealed > 0 {
        tracing::warn!(
            resealed,
            "stored secrets (merchants, admin TOTP, admin token key) re-sealed under the current master key"
        );
        audit
            .record(
                AuditEvent::new("system", actions::SECRETS_ENCRYPTED, "merchants").with_details(
                    serde_json::json!({ "rows": resealed, "key_id": keys.current_key_id() }),
                ),
            )
            .await
            .map_err(|e| AppError::Audit(e.to_string()))?;
    }
    Ok((db, Arc::new(keys), audit))
}

impl App {
    pub async fn build(config: Config) -> Result<Self, AppError> {
        install_crypto_provider();
        let (db, keys, audit) = open_secured(&config).await?;
        let queue = open_queue(&config, &db).await?;
        service::merchant::sync_default_merchant(&db, &keys, config.api_auth_token.as_ref())
            .await?;
        let admin_tokens = service::admin::tokens::load_or_create_keys(&db, &keys).await?;
        tokio::task::spawn_blocking(service::admin::password::warm_up);
        // The callback client: its resolver refuses names resolving to forbidden addresses and
        // is the only lookup before connecting (no DNS rebinding between check and connect); no
        // proxy from the environment, which would resolve and connect past that check.
        let allow_private = Arc::new(AtomicBool::new(config.allow_private_callbacks));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.notify_timeout_secs))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(crate::security::ssrf::GuardedResolver::live(
                allow_private.clone(),
            ))
            .user_agent(concat!("epusdt/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AppError::Setup(format!("http client: {e}")))?;
        let redis = crate::security::redis_manager(config.redis_url.as_deref())
            .map_err(|e| AppError::Setup(format!("redis_url: {e}")))?;
        let rate_limit = crate::security::ratelimit::RateLimit::new(
            config.rate_limit.clone(),
            redis.clone(),
            &config.queue_name,
        )
        .with_audit(audit.clone());
        let replay =
            crate::security::replay::ReplayGuard::new(redis, db.clone(), &config.queue_name);
        // Chain settings resolve and EVM token decimals match, or we refuse to start.
        crate::telemetry::metrics::install();
        let chains = crate::chain::Registry::default();
        crate::chain::check_startup(&config, &chains)
            .await
            .map_err(|e| AppError::Setup(e.to_string()))?;
        let tx_lookup =
            crate::chain::TxLookup::new(&config).map_err(|e| AppError::Setup(e.to_string()))?;
        let (listener, port) = bind(config.http_listen).await?;
        let admin = match config.admin_listen {
            None => None,
            Some(addr) => Some(bind(addr).await?),
        };
        let metrics = match config.metrics_listen {
            None => None,
            Some(addr) => Some(bind(addr).await?),
        };
        // The bot's client; the token stays inside it (redacted `Debug`, scrubbed errors).
        let telegram = match &config.tg_bot_token {
            None => None,
            Some(t) => Some(
                service::telegram::TelegramBot::new(t.expose().trim(), &config.tg_api_url)
                    .map_err(AppError::Setup)?,
            ),
        };
        let state = AppState {
            config: crate::config::LiveConfig::new(config),
            db,
            queue,
            http,
            keys,
            audit,
            rate_limit,
            replay,
            chains,
            admin_tokens,
            tx_lookup,
            telegram,
            caches: service::cache::Caches::default(),
        };
        Ok(Self {
            state,
            listener,
            port,
            admin,
            allow_private,
            metrics,
        })
    }

    /// The handle that puts a reloaded configuration in force (see [`Reloader`]).
    pub fn reloader(&self) -> Reloader {
        Reloader {
            config: self.state.config.clone(),
            rate_limit: self.state.rate_limit.clone(),
            allow_private: self.allow_private.clone(),
            chains: self.state.chains.clone(),
            tx_lookup: self.state.tx_lookup.clone(),
            db: self.state.db.clone(),
            keys: self.state.keys.clone(),
            audit: self.state.audit.clone(),
            caches: self.state.caches.clone(),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin API's own port (`admin_listen`), if configured.
    pub fn admin_port(&self) -> Option<u16> {
        self.admin.as_ref().map(|(_, p)| *p)
    }

    /// The `/metrics` listener's port (`metrics_listen`), if configured.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|(_, p)| *p)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves; then stops accepting, lets in-flight requests finish,
    /// stops the job workers (in-flight jobs finish or are retried after restart) and returns.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let App {
            state,
            listener,
            admin,
            metrics,
            ..
        } = self;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let workers = {
            let queue = state.queue.clone();
            let handler = jobs::handler(state.clone());
            let n = state.config.queue_workers;
            let stop = stopped(stop_rx.clone());
            tokio::spawn(async move { queue.run_workers(handler, n, stop).await })
        };
        let sweeper = {
            let state = state.clone();
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(30));
                // Expiry on time to the second, from the orders themselves (no job per order).
                let mut expiry = tokio::time::interval(Duration::from_secs(1));
                expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                // The SQLite WAL is copied back often enough that no commit reaches the
                // auto-checkpoint threshold under load (that commit would do the copy itself).
                let mut checkpoint = tokio::time::interval(crate::store::CHECKPOINT_EVERY);
                checkpoint.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    let sweep = tokio::select! {
                        _ = tick.tick() => Some(true),
                        _ = expiry.tick() => Some(false),
                        _ = checkpoint.tick() => None,
                        _ = stop.wait_for(|s| *s) => break,
                    };
                    let Some(sweep) = sweep else {
                        if let Err(e) = crate::store::checkpoint_passive(&state.db).await {
                            tracing::warn!(error = %e, "SQLite WAL checkpoint failed; retrying shortly");
                        }
                        continue;
                    };
                    let rules = service::order::OrderRules::from_config(&state.config);
                    if !sweep {
                        if let Err(e) = service::order::expire_due(&state.db, &rules).await {
                            tracing::error!(error = %e, "expiring due orders failed; retrying in a second");
                        }
                        continue;
                    }
                    match service::order::sweep(&state.db, &state.queue, &rules).await {
                        Ok(s) if s.repaired() => tracing::warn!(
                            expired = s.expired,
                            queued = s.queued,
                            requeued = s.requeued,
                            "sweeper repaired orders whose job was lost"
                        ),
                        Ok(s) => {
                            if s.released > 0 {
                                tracing::debug!(
                                    released = s.released,
                                    "amount slots released after the grace period"
                                );
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "sweeper failed"),
                    }
                }
            })
        };
        let watchers = tokio::spawn(housekeeping::chain_watchers(state.clone(), stop_rx.clone()));
        let housekeeping = tokio::spawn(housekeeping::retention(state.clone(), stop_rx.clone()));
        let bot = state.telegram.clone().map(|bot| {
            let monitor = tokio::spawn(crate::telegram::monitor::run(
                state.clone(),
                stopped(stop_rx.clone()),
            ));
            // One poller per token (`tg_poll`); every instance sends notices.
            let poller = state.config.tg_poll.then(|| {
                tokio::spawn(crate::telegram::run(
                    state.clone(),
                    bot,
                    stopped(stop_rx.clone()),
                ))
            });
            (poller, monitor)
        });
        let router = crate::http::router(state.clone());
        tracing::info!(
            addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            database = store::backend_name(&state.db),
            queue = state.queue.backend_name(),
            "epusdt listening"
        );
        let server_stop = stopped(stop_rx.clone());
        let limits = crate::http::serve::ConnLimits::from_config(&state.config);
        let admin_server = admin.map(|(l, _)| {
            tracing::info!(addr = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), "admin API listening");
            tokio::spawn(crate::http::serve::serve(
                l,
                crate::http::admin_router(state.clone()),
                limits.clone(),
                stopped(stop_rx.clone()),
            ))
        });
        let metrics_server = metrics.map(|(l, _)| {
            tracing::info!(addr = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), "metrics listening");
            tokio::spawn(crate::http::serve::serve(
                l,
                crate::http::monitor::listener_router(state.clone()),
                limits.clone(),
                stopped(stop_rx.clone()),
            ))
        });
        let server = tokio::spawn(crate::http::serve::serve(
            listener,
            router,
            limits,
            server_stop,
        ));
        shutdown.await;
        tracing::info!("shutdown requested: finishing in-flight requests and jobs");
        let _ = stop_tx.send(true);
        let grace = Duration::from_secs(state.config.shutdown_timeout_secs);
        let served = match tokio::time::timeout(grace, server).await {
            Ok(Ok(r)) => r.map_err(AppError::Serve),
            Ok(Err(join)) => Err(AppError::Setup(format!("server task: {join}"))),
            Err(_) => {
                tracing::warn!("in-flight requests did not finish within the grace period");
                Ok(())
            }
        };
        if let Some(h) = admin_server {
            // Stopped together with the public listener above, so this wait is short.
            match tokio::time::timeout(grace, h).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => {
                    tracing::warn!(error = %e, "admin API listener stopped with an error")
                }
                Ok(Err(join)) => tracing::warn!(error = %join, "admin API listener task failed"),
                Err(_) => {
                    tracing::warn!("admin API requests did not finish within the grace period")
                }
            }
        }
        if let Some(h) = metrics_server
            && !matches!(tokio::time::timeout(grace, h).await, Ok(Ok(Ok(()))))
        {
            tracing::warn!("the metrics listener did not stop cleanly");
        }
        match tokio::time::timeout(grace, workers).await {
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "job workers stopped with an error"),
            Err(_) => tracing::warn!("job workers did not stop within the grace period"),
            _ => {}
        }
        if tokio::time::timeout(grace, watchers).await.is_err() {
            tracing::warn!("a chain watcher did not stop within the grace period");
        }
        if let Some((poller, monitor)) = bot {
            if let Some(p) = poller
                && tokio::time::timeout(grace, p).await.is_err()
            {
                tracing::warn!("the Telegram bot did not stop within the grace period");
            }
            monitor.abort();
            let _ = monitor.await;
        }
        // Aborted tasks end at their next await; wait for that, so none of them is still in a
        // query (holding a SQLite write lock) when the pool closes and a next start migrates.
        sweeper.abort();
        housekeeping.abort();
        let _ = tokio::time::timeout(grace, async {
            let _ = sweeper.await;
            let _ = housekeeping.await;
        })
        .await;
        state.db.clone().close().await.ok();
        tracing::info!("stopped");
        served
    }
}

/// Resolves on SIGINT or SIGTERM.
/// Binds one of the configured listeners; returns it with its port (the real one for port 0).
async fn bind(addr: std::net::SocketAddr) -> Result<(TcpListener, u16), AppError> {
    let l = TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { addr, source })?;
    let port = l
        .local_addr()
        .map_err(|source| AppError::Bind { addr, source })?
        .port();
    Ok((l, port))
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
