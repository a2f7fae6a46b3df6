//! The scanning lease: at most one instance scans a network at a time (DESIGN §3).
//!
//! A row `chain_lease:<network>` in `settings` holds `<owner>|<expiry unix ms>`. It is taken
//! with an INSERT (the primary key decides a race) or a compare-and-swap UPDATE on the exact
//! value read (only when it is ours or expired), and deleted on graceful shutdown.
//! The lease is an efficiency measure, not the safety net: the cursor's own compare-and-swap
//! and the unique transfer key keep two scanners from double-crediting even if clocks disagree.
//!
//! **Owner identity.** The owner is this instance's stable id ([`InstanceId`], kept in
//! `<data_dir>/instance_id`), so an instance restarted after a crash (SIGKILL, OOM) finds its own
//! row and resumes at once instead of waiting for its old lease to expire. The file is locked
//! (`flock`) while the process runs: a second process started on the same data dir by mistake
//! cannot take the lock and runs with a fresh random id for its lifetime (it stands by like any
//! other instance, and says so in the log) — two live processes never share an owner id.
//!
//! **Heartbeat.** Renewal runs in a background task ([`Lease::start`]) every quarter of the TTL,
//! independent of the scan (a long `eth_getLogs` does not let the lease lapse); a standby tries
//! to take the lease every [`Lease::standby_poll`]. [`Lease::held`] is true only while the last
//! successful renewal is younger than three quarters of the TTL, so a watcher whose renewals
//! fail (database slow, lease taken) stops committing before another instance may take over.
//!
//! This module must never block on the database for longer than one query, and never take a
//! lease it has not seen expire.
use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, Set,
    sea_query::Expr,
};
use tokio::{sync::watch, task::JoinHandle};

use crate::{domain::network::Network, service, store::entities::setting};

/// File in the data dir holding this instance's id.
pub const INSTANCE_ID_FILE: &str = "instance_id";

/// This process's identity as a lease owner: stable across restarts on the same data dir.
/// Holds the lock on `<data_dir>/instance_id` for as long as it (or a clone) lives.
#[derive(Debug, Clone)]
pub struct InstanceId(Arc<IdInner>);

#[derive(Debug)]
struct IdInner {
    id: String,
    /// The locked id file (`None` for an ephemeral id).
    _lock: Option<std::fs::File>,
}

impl InstanceId {
    /// Reads (or creates, mode 0600) `<data_dir>/instance_id` and locks it. Falls back to an
    /// ephemeral id, with a warning, when another live process holds the lock or the file
    /// cannot be used — such an instance waits for its previous lease to expire after a crash.
    pub fn load(data_dir: &Path) -> InstanceId {
        let path = data_dir.join(INSTANCE_ID_FILE);
        match open_locked(&path) {
            Ok(Some((id, file))) => InstanceId(Arc::new(IdInner {
                id,
                _lock: Some(file),
            })),
            Ok(None) => {
                let id = Self::ephemeral();
                tracing::warn!(
                    path = %path.display(),
                    instance = %id.as_str(),
                    "another running process uses this data dir (its instance_id is locked): this process scans under a temporary identity; give every instance its own data_dir"
                );
                id
            }
            Err(e) => {
                let id = Self::ephemeral();
                tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    instance = %id.as_str(),
                    "cannot use the instance id file: this process scans under a temporary identity, so after a crash it waits for its old scanning lease to expire"
                );
                id
            }
        }
    }

    /// A random id for this process only.
    pub fn ephemeral() -> InstanceId {
        InstanceId(Arc::new(IdInner {
            id: format!("tmp-{}", random_id()),
            _lock: None,
        }))
    }

    pub fn as_str(&self) -> &str {
        &self.0.id
    }
}

fn random_id() -> String {
    use rand::Rng;
    format!("{:032x}", rand::rng().random::<u128>())
}

/// An id we wrote: 8..=64 characters of `[0-9A-Za-z-]` (never `|`, the value separator).
fn valid_id(s: &str) -> bool {
    (8..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `Ok(None)`: locked by another live process.
fn open_locked(path: &Path) -> std::io::Result<Option<(String, std::fs::File)>> {
    use std::{
        fs::{OpenOptions, TryLockError},
        io::{Read, Seek, SeekFrom, Write},
        os::unix::fs::OpenOptionsExt,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Ok(None),
        Err(TryLockError::Error(e)) => return Err(e),
    }
    // Read only under the lock: a process creating the file holds the lock while writing.
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let text = text.trim();
    if valid_id(text) {
        return Ok(Some((text.to_string(), file)));
    }
    if !text.is_empty() {
        tracing::warn!(path = %path.display(), "instance id file is not readable; writing a new id");
    }
    let id = random_id();
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(format!("{id}\n").as_bytes())?;
    file.sync_all()?;
    Ok(Some((id, file)))
}

/// One network's lease, as held (or wanted) by this watcher.
#[derive(Debug)]
pub struct Lease {
    key: String,
    owner: String,
    ttl: Duration,
    /// Start of the last successful take/renewal (local monotonic clock); `None`: not ours.
    renewed: watch::Receiver<Option<Instant>>,
    tx: Arc<watch::Sender<Option<Instant>>>,
    /// Keeps the instance id file locked while a watcher runs.
    _instance: InstanceId,
    heartbeat: Option<JoinHandle<()>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }
}

impl Lease {
    pub fn new(network: Network, ttl: Duration, instance: &InstanceId) -> Self {
        let (tx, renewed) = watch::channel(None);
        Self {
            key: format!("chain_lease:{}", network.as_str()),
            owner: instance.as_str().to_string(),
            ttl,
            renewed,
            tx: Arc::new(tx),
            _instance: instance.clone(),
            heartbeat: None,
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Pause between renewals of a held lease: a quarter of the TTL (at least 50 ms).
    pub fn renew_every(&self) -> Duration {
        (self.ttl / 4).max(Duration::from_millis(50))
    }

    /// Pause between a standby's attempts to take the lease: at most 1 s.
    pub fn standby_poll(&self) -> Duration {
        self.renew_every().min(Duration::from_secs(1))
    }

    /// How long after a renewal began the lease counts as ours: three quarters of the TTL,
    /// so a holder whose renewals fail stops before anyone else may take over.
    fn valid_for(&self) -> Duration {
        self.ttl.saturating_sub(self.renew_every())
    }

    /// True while the lease is ours (last renewal recent enough).
    pub fn held(&self) -> bool {
        let valid = self.valid_for();
        self.renewed.borrow().is_some_and(|t| t.elapsed() < valid)
    }

    /// Waits until the lease is ours, at most `max`.
    pub async fn wait_held(&self, max: Duration) {
        let valid = self.valid_for();
        let mut rx = self.renewed.clone();
        let _ = tokio::time::timeout(max, rx.wait_for(|v| v.is_some_and(|t| t.elapsed() < valid)))
            .await;
    }

    /// Starts the heartbeat: takes the lease when free or expired, renews it while held.
    /// Stopped by [`release`](Self::release) or when the lease is dropped.
    pub fn start(&mut self, db: DatabaseConnection) {
        if self.heartbeat.is_some() {
            return;
        }
        let hb = Heartbeat {
            key: self.key.clone(),
            owner: self.owner.clone(),
            ttl: self.ttl,
            renew_every: self.renew_every(),
            standby_poll: self.standby_poll(),
            tx: self.tx.clone(),
            db,
        };
        self.heartbeat = Some(tokio::spawn(hb.run()));
    }

    /// Stops the heartbeat and gives the lease up (graceful shutdown) so another instance can
    /// take over at once.
    pub async fn release(&mut self, db: &DatabaseConnection) -> Result<(), DbErr> {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
            let _ = h.await;
        }
        if self.tx.send_replace(None).is_none() {
            return Ok(());
        }
        setting::Entity::delete_many()
            .filter(setting::Column::Key.eq(self.key.as_str()))
            .filter(setting::Column::Value.starts_with(format!("{}|", self.owner)))
            .exec(db)
            .await?;
        Ok(())
    }
}

struct Heartbeat {
    key: String,
    owner: String,
    ttl: Duration,
    renew_every: Duration,
    standby_poll: Duration,
    tx: Arc<watch::Sender<Option<Instant>>>,
    db: DatabaseConnection,
}

impl Heartbeat {
    async fn run(self) {
        let mut failures: u32 = 0;
        loop {
            let started = Instant::now();
            // One query may not outlast the lease: give up on it after half the TTL.
            let attempt = tokio::time::timeout(
                self.ttl / 2,
                acquire(&self.db, &self.key, &self.owner, self.ttl),
            )
            .await;
            let was_held = self.tx.borrow().is_some();
            match attempt {
                Ok(Ok(true)) => {
                    failures = 0;
                    if !was_held {
                        tracing::info!(lease = %self.key, owner = %self.owner, "scanning lease taken");
                    }
                    self.tx.send_replace(Some(started));
                }
                Ok(Ok(false)) => {
                    failures = 0;
                    if was_held {
                        tracing::warn!(lease = %self.key, owner = %self.owner, "scanning lease lost to another instance");
                        self.tx.send_replace(None);
                    }
                }
                Ok(Err(e)) => {
                    failures = failures.saturating_add(1);
                    if failures <= 3 || failures.is_power_of_two() {
                        tracing::warn!(lease = %self.key, error = %e, failures, "could not renew the scanning lease; scanning pauses if it stays unrenewed");
                    }
                }
                Err(_) => {
                    failures = failures.saturating_add(1);
                    if failures <= 3 || failures.is_power_of_two() {
                        tracing::warn!(lease = %self.key, failures, "renewing the scanning lease timed out; scanning pauses if it stays unrenewed");
                    }
                }
            }
            let pause = if self.tx.borrow().is_some() {
                self.renew_every
            } else {
                self.standby_poll
            };
            tokio::time::sleep(pause.saturating_sub(started.elapsed())).await;
        }
    }
}

/// Takes or renews the lease. `Ok(false)`: another live instance holds it.
async fn acquire(
    db: &DatabaseConnection,
    key: &str,
    owner: &str,
    ttl: Duration,
) -> Result<bool, DbErr> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let value = format!("{owner}|{}", now_ms.saturating_add(ttl_ms));
    match setting::Entity::find_by_id(key).one(db).await? {
        None => {
            let row = setting::ActiveModel {
                key: Set(key.to_string()),
                value: Set(value),
                updated_at: Set(service::now()),
            };
            match row.insert(db).await {
                Ok(_) => Ok(true),
                Err(e) => {
                    // Someone inserted first (primary key), or the database failed.
                    let exists = setting::Entity::find_by_id(key).one(db).await?.is_some();
                    if !exists {
                        return Err(e);
                    }
                    Ok(false)
                }
            }
        }
        Some(row) => {
            let (holder, expiry) = parse(&row.value);
            if holder != owner && expiry > now_ms {
                return Ok(false);
            }
            let res = setting::Entity::update_many()
                .col_expr(setting::Column::Value, Expr::value(value))
                .col_expr(setting::Column::UpdatedAt, Expr::value(service::now()))
                .filter(setting::Column::Key.eq(key))
                .filter(setting::Column::Value.eq(row.value.as_str()))
                .exec(db)
                .await?;
            Ok(res.rows_affected == 1)
        }
    }
}

/// `owner|expiry_ms`; anything unreadable counts as expired.
fn parse(value: &str) -> (&str, i64) {
    match value.rsplit_once('|') {
        Some((owner, exp)) => (owner, exp.parse().unwrap_or(0)),
        None => (value, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values() {
        assert_eq!(parse("a|12"), ("a", 12));
        assert_eq!(parse("garbage"), ("garbage", 0));
        assert_eq!(parse("a|x"), ("a", 0));
    }

    #[test]
    fn instance_id_is_stable_private_and_never_shared_by_two_live_holders() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = InstanceId::load(dir.path());
        let path = dir.path().join(INSTANCE_ID_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(valid_id(first.as_str()), "{}", first.as_str());
        // Held by a live holder: a second load (another process, or a second app in this
        // process) gets a temporary id of its own.
        let second = InstanceId::load(dir.path());
        assert_ne!(first.as_str(), second.as_str());
        assert!(second.as_str().starts_with("tmp-"));
        let id = first.as_str().to_string();
        drop(first);
        // Restart: the same id.
        let again = InstanceId::load(dir.path());
        assert_eq!(again.as_str(), id);
        // A damaged file gets a new id.
        drop(again);
        std::fs::write(&path, "x|y").unwrap();
        let fresh = InstanceId::load(dir.path());
        assert_ne!(fresh.as_str(), id);
        assert!(valid_id(fresh.as_str()));
    }
}
