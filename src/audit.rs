//! The audit log: every admin and security-relevant action, appended to the `audit_log` table and
//! to a daily JSON-lines file `<dir>/audit-YYYY-MM-DD.jsonl` (UTC dates, mode 0600) (DESIGN §8).
//!
//! This module owns the event shape, the redaction of secrets from event details and the two
//! writes. [`AuditLog::record`] returns `Ok` only once the event is synced to the file *and*
//! inserted in the table; when one write fails it still attempts the other, then reports the
//! failure, because an audit event must not be lost silently. It never updates or deletes a row or
//! a line, and it never writes a secret: [`redact`] replaces the value of every secret-looking key
//! (`secret`, `token`, `password`, `key`, `sign`, `signature`, `api_key`, `master`, …) and any URL
//! password before anything is written, and the `tracing` line per event (target
//! `epusdt::audit`) carries no details at all. Callers must still keep secrets out of `actor`,
//! `target` and `ip`, which are written as given.

use std::{
    fmt,
    fs::{DirBuilder, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
};

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use sea_orm::{ActiveModelTrait, DatabaseConnection, DbErr, Set};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::store::entities::audit_log;

/// What replaces a redacted value.
pub const REDACTED: &str = "[redacted]";

mod admin_actions;
pub mod query;

/// Actions recorded today, each emitted somewhere (add one here when its emitter lands). An
/// action is a `&'static str` so the set stays greppable.
pub mod actions {
    pub const MERCHANT_ADD: &str = "merchant.add";
    /// A merchant's GMPay sign mode changed (`merchant set-sign-mode`).
    pub const MERCHANT_SIGN_MODE: &str = "merchant.sign_mode";
    pub const WALLET_ADD: &str = "wallet.add";
    pub const WALLET_DISABLE: &str = "wallet.disable";
    pub const WALLET_ENABLE: &str = "wallet.enable";
    pub const KEY_GENERATED: &str = "key.generated";
    pub const KEY_ROTATE: &str = "key.rotate";
    pub const SECRETS_ENCRYPTED: &str = "secrets.encrypted";
    pub const LOCKOUT: &str = "lockout";
    pub const SIGNATURE_FAILED: &str = "signature.failed";
    pub const REPLAY_REJECTED: &str = "replay.rejected";
    pub const RATELIMIT_BURST: &str = "ratelimit.burst";
    /// A recorded transfer's block is no longer on the chain (reorg deeper than the
    /// confirmations): the order needs an operator's review.
    pub const CHAIN_TRANSFER_REORGED: &str = "chain.transfer_reorged";
    pub use super::admin_actions::*;
    /// `epusdt import upstream` ran (source URL redacted, counts).
    pub const UPSTREAM_IMPORT: &str = "upstream.import";
    /// `epusdt backup` wrote a backup (directory, backend, whether the master key is in it).
    pub const BACKUP_CREATE: &str = "backup.create";
    /// `epusdt restore` brought a backup back.
    pub const BACKUP_RESTORE: &str = "backup.restore";
}

/// Actor of events started by the command line.
pub const ACTOR_CLI: &str = "cli";
/// Actor of events the gateway starts itself (start-up, jobs).
pub const ACTOR_SYSTEM: &str = "system";

/// One audit event. `actor` is who (`"cli"`, `"system"`, `"merchant:1001"`, `"admin:alice"`,
/// `"ip:1.2.3.4"`), `action` what (see [`actions`]), `target` to what (`"merchant:1001"`,
/// `"wallet:tron:T…"`). `details` is free JSON and is [`redact`]ed before it is written anywhere;
/// `Debug` shows it redacted too.
#[derive(Clone)]
pub struct AuditEvent {
    pub actor: String,
    pub action: &'static str,
    pub target: String,
    pub ip: Option<String>,
    pub details: Value,
}

impl AuditEvent {
    /// An event without ip or details.
    pub fn new(actor: impl Into<String>, action: &'static str, target: impl Into<String>) -> Self {
        Self {
            actor: actor.into(),
            action,
            target: target.into(),
            ip: None,
            details: Value::Object(Map::new()),
        }
    }

    pub fn with_ip(mut self, ip: impl Into<String>) -> Self {
        self.ip = Some(ip.into());
        self
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

impl fmt::Debug for AuditEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditEvent")
            .field("actor", &self.actor)
            .field("action", &self.action)
            .field("target", &self.target)
            .field("ip", &self.ip)
            .field("details", &redact(self.details.clone()))
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log file: {0}")]
    File(#[from] io::Error),
    #[error("audit log table: {0}")]
    Db(#[from] DbErr),
    #[error("audit event encoding: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Appends audit events to the table and the daily file. Cheap to clone; clones share the file.
#[derive(Clone)]
pub struct AuditLog {
    db: DatabaseConnection,
    file: Arc<Mutex<DailyFile>>,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.dir())
            .finish_non_exhaustive()
    }
}

/// A line of the JSONL file.
#[derive(Serialize)]
struct Line<'a> {
    at: i64,
    time: String,
    actor: &'a str,
    action: &'a str,
    target: &'a str,
    ip: Option<&'a str>,
    details: &'a Value,
}

impl AuditLog {
    /// Creates `dir` (mode 0700) if needed and opens today's file, so a directory that cannot be
    /// written stops start-up instead of the first event.
    pub fn open(db: DatabaseConnection, dir: &Path) -> io::Result<Self> {
        DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        let mut file = DailyFile {
            dir: dir.to_path_buf(),
            current: None,
        };
        file.rotate_to(Utc::now().date_naive())?;
        Ok(Self {
            db,
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// The file events of `date` (UTC) go to.
    pub fn file_for(&self, date: NaiveDate) -> PathBuf {
        day_path(&self.dir(), date)
    }

    fn dir(&self) -> PathBuf {
        self.file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .dir
            .clone()
    }

    /// Writes the event to the file (synced) and the table; `Ok` only when both succeeded.
    pub async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        self.record_at(event, Utc::now()).await
    }

    async fn record_at(&self, event: AuditEvent, now: DateTime<Utc>) -> Result<(), AuditError> {
        let details = redact(event.details);
        let details_text = serde_json::to_string(&details)?;
        let mut line = serde_json::to_string(&Line {
            at: now.timestamp(),
            time: now.to_rfc3339_opts(SecondsFormat::Secs, true),
            actor: &event.actor,
            action: event.action,
            target: &event.target,
            ip: event.ip.as_deref(),
            details: &details,
        })?;
        line.push('\n');
        tracing::info!(
            target: "epusdt::audit",
            actor = %event.actor,
            action = event.action,
            audit_target = %event.target,
            ip = event.ip.as_deref().unwrap_or(""),
            "audit event"
        );

        // File first (local and cheap to sync), then the table; each is attempted regardless of
        // the other so one broken sink does not lose the event from both.
        let file = Arc::clone(&self.file);
        let date = now.date_naive();
        let file_result = tokio::task::spawn_blocking(move || {
            file.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .append(date, line.as_bytes())
        })
        .await
        .unwrap_or_else(|join| Err(io::Error::other(join)));

        let row = audit_log::ActiveModel {
            at: Set(now.timestamp()),
            actor: Set(truncate(&event.actor, 64)),
            action: Set(truncate(event.action, 64)),
            target: Set(truncate(&event.target, 128)),
            ip: Set(truncate(event.ip.as_deref().unwrap_or(""), 64)),
            details: Set(details_text),
            ..Default::default()
        };
        let db_result = row.insert(&self.db).await.map(|_| ());

        if let Err(e) = &file_result {
            tracing::error!(target: "epusdt::audit", action = event.action, error = %e, "audit event not written to the audit file");
        }
        if let Err(e) = &db_result {
            tracing::error!(target: "epusdt::audit", action = event.action, error = %e, "audit event not written to the audit_log table");
        }
        file_result?;
        db_result?;
        Ok(())
    }
}

/// The open file of the current UTC day; reopened when the date changes.
struct DailyFile {
    dir: PathBuf,
    current: Option<(NaiveDate, File)>,
}

impl DailyFile {
    fn rotate_to(&mut self, date: NaiveDate) -> io::Result<&mut File> {
        let stale = !matches!(&self.current, Some((d, _)) if *d == date);
        if stale {
            self.current = None;
            let f = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(day_path(&self.dir, date))?;
            self.current = Some((date, f));
        }
        match &mut self.current {
            Some((_, f)) => Ok(f),
            None => Err(io::Error::other("audit file not open")),
        }
    }

    /// One `write` of the whole line (O_APPEND keeps lines whole across processes), then fsync.
    fn append(&mut self, date: NaiveDate, line: &[u8]) -> io::Result<()> {
        let result = self.rotate_to(date).and_then(|f| {
            f.write_all(line)?;
            f.sync_data()
        });
        if result.is_err() {
            // Reopen on the next event rather than keep a handle in an unknown state.
            self.current = None;
        }
        result
    }
}

fn day_path(dir: &Path, date: NaiveDate) -> PathBuf {
    dir.join(format!("audit-{}.jsonl", date.format("%Y-%m-%d")))
}

/// At most `max` characters (the column is `VARCHAR(max)`; PostgreSQL and MySQL count characters).
fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Words that make a key secret wherever they appear in its name (`api_key`, `clientSecret`).
const SECRET_WORDS: &[&str] = &[
    "secret",
    "secrets",
    "token",
    "tokens",
    "password",
    "passwords",
    "passwd",
    "pwd",
    "passphrase",
    "key",
    "keys",
    "sign",
    "signature",
    "signatures",
    "sig",
    "master",
    "apikey",
    "privkey",
    "privatekey",
    "credential",
    "credentials",
    "mnemonic",
    "seed",
    "cookie",
    "authorization",
];

/// Fragments that make a key secret even inside one word (`accesstoken`, `clientsecret`).
const SECRET_FRAGMENTS: &[&str] = &[
    "secret",
    "password",
    "passwd",
    "token",
    "apikey",
    "privatekey",
    "signature",
    "mnemonic",
];

/// A last word that makes the key a harmless description of a secret, not the secret itself:
/// `key_id`, `master_key_fingerprint`, `sign_type`, `token_expires_at`, `key_file`.
const DESCRIPTIVE_LAST_WORDS: &[&str] = &[
    "id",
    "ids",
    "fingerprint",
    "fingerprints",
    "count",
    "type",
    "kind",
    "source",
    "version",
    "path",
    "file",
    "len",
    "length",
    "at",
    "expires",
    "changed",
];

/// Is a details key named like a secret? Names are split into words at `_`, `-`, `.`, spaces and
/// lower→upper case changes, compared case-insensitively.
pub fn is_secret_key(name: &str) -> bool {
    let words = words(name);
    let squashed: String = words.concat();
    let secret = words.iter().any(|w| SECRET_WORDS.contains(&w.as_str()))
        || SECRET_FRAGMENTS.iter().any(|f| squashed.contains(f));
    let descriptive = words.len() > 1
        && words
            .last()
            .is_some_and(|w| DESCRIPTIVE_LAST_WORDS.contains(&w.as_str()));
    secret && !descriptive
}

fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Replaces, recursively, the value of every key [`is_secret_key`] says is secret with
/// [`REDACTED`] (`null` stays `null`: "not set" leaks nothing), and the password of any URL
/// string with `redacted`.
pub fn redact(details: Value) -> Value {
    match details {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(&k) && !v.is_null() {
                        Value::String(REDACTED.into())
                    } else {
                        redact(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        Value::String(s) => Value::String(crate::redact::secrets(&s)),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use sea_orm::EntityTrait;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    const SECRET: &str = "hunter2-very-secret-value-9f8e7d";

    #[test]
    fn secret_key_names() {
        for k in [
            "secret",
            "Secret",
            "new_secret",
            "merchant_secret",
            "api_key",
            "apiKey",
            "APIKey",
            "api-key",
            "key",
            "master",
            "master_key",
            "masterKey",
            "token",
            "api_auth_token",
            "accessToken",
            "bot_token",
            "password",
            "new_password",
            "password_hash",
            "sign",
            "signature",
            "provided_sign",
            "x-signature",
            "private_key",
            "privateKey",
            "clientsecret",
            "keys",
            "Authorization",
        ] {
            assert!(is_secret_key(k), "{k} should be redacted");
        }
        for k in [
            "pid",
            "name",
            "key_id",
            "old_key_id",
            "master_key_fingerprint",
            "fingerprint",
            "sign_type",
            "token_expires_at",
            "key_file",
            "network",
            "address",
            "reason",
            "canonical_len",
            "monkey",
            "design",
            "rows",
        ] {
            assert!(!is_secret_key(k), "{k} should be kept");
        }
    }

    #[test]
    fn redact_is_recursive_and_keeps_the_rest() {
        let got = redact(json!({
            "pid": 1001,
            "secret": SECRET,
            "nested": {"api_key": SECRET, "list": [{"token": SECRET}, {"ok": "fine"}], "n": null},
            "params": [{"sign": SECRET, "amount": "1.00"}],
            "master": {"key": SECRET},
            "password": null,
            "db": format!("postgres://epusdt:{SECRET}@db:5432/epusdt"),
            "key_id": "abcd1234",
        }));
        assert_eq!(
            got,
            json!({
                "pid": 1001,
                "secret": REDACTED,
                "nested": {"api_key": REDACTED, "list": [{"token": REDACTED}, {"ok": "fine"}], "n": null},
                "params": [{"sign": REDACTED, "amount": "1.00"}],
                "master": REDACTED,
                "password": null,
                "db": "postgres://epusdt:redacted@db:5432/epusdt",
                "key_id": "abcd1234",
            })
        );
        assert!(!got.to_string().contains(SECRET));
        // Scalars and arrays at the top level pass through.
        assert_eq!(redact(json!("plain")), json!("plain"));
        assert_eq!(redact(json!([1, 2])), json!([1, 2]));
    }

    #[test]
    fn debug_of_an_event_is_redacted() {
        let e = AuditEvent::new(ACTOR_CLI, actions::MERCHANT_ADD, "merchant:1001")
            .with_details(json!({"secret": SECRET}));
        assert!(!format!("{e:?}").contains(SECRET));
    }

    async fn sqlite(dir: &Path) -> DatabaseConnection {
        use migration::MigratorTrait;
        let url = format!("sqlite://{}?mode=rwc", dir.join("audit.db").display());
        let db = crate::store::connect(&url).await.unwrap();
        migration::Migrator::up(&db, None).await.unwrap();
        db
    }

    #[tokio::test]
    async fn files_rotate_by_utc_date_and_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let db = sqlite(tmp.path()).await;
        let dir = tmp.path().join("audit");
        let log = AuditLog::open(db.clone(), &dir).unwrap();
        let day1 = Utc.with_ymd_and_hms(2026, 11, 30, 23, 59, 59).unwrap();
        let day2 = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        for (i, at) in [day1, day1, day2].into_iter().enumerate() {
            log.record_at(
                AuditEvent::new(ACTOR_SYSTEM, actions::KEY_ROTATE, format!("n:{i}")),
                at,
            )
            .await
            .unwrap();
        }
        let f1 = log.file_for(day1.date_naive());
        let f2 = log.file_for(day2.date_naive());
        assert!(f1.ends_with("audit-2026-11-30.jsonl"), "{}", f1.display());
        assert!(f2.ends_with("audit-2026-12-01.jsonl"), "{}", f2.display());
        let lines1: Vec<Value> = std::fs::read_to_string(&f1)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines1.len(), 2);
        assert_eq!(lines1[0]["target"], "n:0");
        assert_eq!(lines1[0]["time"], "2026-11-30T23:59:59Z");
        assert_eq!(lines1[0]["at"], day1.timestamp());
        let text2 = std::fs::read_to_string(&f2).unwrap();
        assert_eq!(text2.lines().count(), 1);
        assert!(text2.contains("\"n:2\""));
        for f in [&f1, &f2] {
            let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", f.display());
        }
        let dir_mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert_eq!(audit_log::Entity::find().all(&db).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_failed_sink_is_reported_and_the_other_still_gets_the_event() {
        let tmp = tempfile::tempdir().unwrap();
        let db = sqlite(tmp.path()).await;
        let dir = tmp.path().join("audit");
        let log = AuditLog::open(db.clone(), &dir).unwrap();
        // Make tomorrow's file impossible to create: a directory already has its name.
        let tomorrow = Utc::now() + chrono::Duration::days(1);
        std::fs::create_dir(log.file_for(tomorrow.date_naive())).unwrap();
        let err = log
            .record_at(
                AuditEvent::new(ACTOR_SYSTEM, actions::LOCKOUT, "admin:alice"),
                tomorrow,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, AuditError::File(_)), "{err}");
        let rows = audit_log::Entity::find().all(&db).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].action, "lockout");

        // And the other way round: the table is gone, the file still gets the line.
        use sea_orm::ConnectionTrait;
        db.execute_unprepared("DROP TABLE audit_log").await.unwrap();
        let err = log
            .record(AuditEvent::new(ACTOR_SYSTEM, actions::LOCKOUT, "admin:bob"))
            .await
            .unwrap_err();
        assert!(matches!(err, AuditError::Db(_)), "{err}");
        let today = std::fs::read_to_string(log.file_for(Utc::now().date_naive())).unwrap();
        assert!(today.contains("admin:bob"));
    }
}
