//! `epusdt backup` / `epusdt restore`: a consistent copy of a running gateway's state and its
//! return into an empty data directory and an empty database.
//!
//! A backup directory holds the database copy (SQLite `VACUUM INTO`, or a `pg_dump` /
//! `mysqldump` SQL file), the MySQL job-queue file when there is one, the audit JSONL files
//! (complete lines only), the master key only when asked (`--include-key`), and
//! `manifest.json` (checksums, epusdt and schema versions, backend, key fingerprint, and an HMAC
//! tag under the master key, so a manifest rewritten to match changed files is refused).
//!
//! Restore changes nothing until everything is checked: the manifest, its tag and every
//! checksum, the schema version (not newer than this binary), the backend, the master key (in
//! the backup or supplied, with the fingerprint the backup records) and that the target is
//! empty. Those refusals are [`BackupError::is_refusal`] (exit code 2).
//!
//! Must never: overwrite a database or data directory with content, print or log a key, or
//! restore a file the manifest does not list with a matching checksum.
use std::path::{Path, PathBuf};

use sea_orm::{DatabaseConnection, EntityTrait};

use crate::{
    config::Config,
    crypto::{
        keys::key_file_path,
        master_key::{self, MasterKey},
    },
    store::{self, entities::setting},
};

mod dump;
pub mod manifest;
mod restore;

pub use manifest::Manifest;
pub use restore::{RestoreSummary, counts, restore};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("backup target {0} exists and is not empty: choose a new directory")]
    TargetNotEmpty(String),
    #[error("nothing to back up: no database at {0}")]
    NoDatabase(String),
    #[error("{tool} is not on PATH; install it (Debian: apt-get install {package}) and retry")]
    ToolMissing {
        tool: &'static str,
        package: &'static str,
    },
    #[error("master key: {0}")]
    KeyUnavailable(String),
    #[error("database copy: {0}")]
    Dump(String),
    #[error("{0}")]
    Io(String),
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("{dir} is not an epusdt backup: {why}")]
    NotABackup { dir: String, why: String },
    #[error("the backup is damaged or was tampered with: {0}; nothing was restored")]
    Tampered(String),
    #[error("refusing to restore: {0}")]
    Refused(String),
}

impl BackupError {
    /// A restore refused before changing anything: a bad backup, a target that is not empty,
    /// a missing or different master key (exit code 2, like a configuration error).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            BackupError::NotABackup { .. } | BackupError::Tampered(_) | BackupError::Refused(_)
        )
    }
}

/// What `backup` wrote.
#[derive(Debug)]
pub struct BackupSummary {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

/// `sqlite`, `postgres` or `mysql` for a database URL.
fn backend_of(url: &str) -> &'static str {
    if url.starts_with("sqlite:") {
        "sqlite"
    } else if url.starts_with("postgres") {
        "postgres"
    } else {
        "mysql"
    }
}

/// The fingerprint of the key that sealed this database's secrets, if any was recorded.
async fn stored_fingerprint(db: &DatabaseConnection) -> Result<Option<String>, BackupError> {
    Ok(
        setting::Entity::find_by_id(super::merchant::FINGERPRINT_KEY.to_string())
            .one(db)
            .await?
            .map(|s| s.value),
    )
}

/// The configured master key (value, key file or `<data_dir>/master.key`), never generated.
fn configured_key(config: &Config) -> Result<Option<MasterKey>, master_key::MasterKeyError> {
    Ok(master_key::load(
        config.master_key.as_ref(),
        config.master_key_file.as_deref(),
        &config.data_dir,
    )?
    .map(|(k, _)| k))
}

/// Copies the gateway's state into `to` (a new or empty directory) while it keeps serving.
/// With `include_key` the master key is copied too: whoever holds the backup can then read
/// every merchant secret (the caller must say so loudly).
pub async fn create(
    config: &Config,
    to: &Path,
    include_key: bool,
) -> Result<BackupSummary, BackupError> {
    let io = |e: std::io::Error| BackupError::Io(format!("{}: {e}", to.display()));
    if std::fs::read_dir(to).is_ok_and(|mut d| d.next().is_some()) {
        return Err(BackupError::TargetNotEmpty(to.display().to_string()));
    }
    let url = config.effective_database_url();
    let backend = backend_of(&url);
    if backend == "sqlite" {
        let path = dump::sqlite_path(&url)?;
        if !path.is_file() {
            return Err(BackupError::NoDatabase(path.display().to_string()));
        }
    }
    let existed = to.exists();
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(to)
            .map_err(io)?;
    }
    let db = store::connect(&url).await?;
    let result = copy_all(config, &db, &url, backend, to, include_key).await;
    db.close().await.ok();
    if result.is_err() {
        // No half-written backup (and no stray key copy) is left behind: the directory was
        // empty or absent before.
        if let Ok(entries) = std::fs::read_dir(to) {
            for e in entries.flatten() {
                let p = e.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
        if !existed {
            let _ = std::fs::remove_dir(to);
        }
    }
    result
}

async fn copy_all(
    config: &Config,
    db: &DatabaseConnection,
    url: &str,
    backend: &'static str,
    to: &Path,
    include_key: bool,
) -> Result<BackupSummary, BackupError> {
    let fingerprint = stored_fingerprint(db).await?;
    // The key authenticates the manifest (and is copied only with --include-key): needed
    // whenever the database holds sealed secrets, and it must be theirs.
    let key = if include_key || fingerprint.is_some() {
        let key = configured_key(config)
            .map_err(|e| BackupError::KeyUnavailable(e.to_string()))?
            .ok_or_else(|| {
                BackupError::KeyUnavailable(format!(
                    "no master key is configured and {} does not exist; run backup with the gateway's configuration (the key authenticates the backup and is copied only with --include-key)",
                    key_file_path(config).display()
                ))
            })?;
        if fingerprint
            .as_ref()
            .is_some_and(|f| *f != key.fingerprint())
        {
            return Err(BackupError::KeyUnavailable(format!(
                "the configured master key (fingerprint {}) is not the one that sealed this database's secrets (fingerprint {})",
                key.fingerprint(),
                fingerprint.unwrap_or_default()
            )));
        }
        Some(key)
    } else {
        None
    };
    let schema_version = dump::schema_version(db)
        .await?
        .ok_or_else(|| BackupError::NoDatabase("the database has no epusdt schema".into()))?;
    let created_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut files = Vec::new();
    let dump_tool = match backend {
        "sqlite" => {
            dump::sqlite_copy(db, &to.join(manifest::SQLITE_FILE)).await?;
            files.push(manifest::entry(to, manifest::SQLITE_FILE)?);
            "sqlite VACUUM INTO".to_string()
        }
        "postgres" => {
            let v = dump::pg_dump(url, &to.join(manifest::SQL_DUMP_FILE)).await?;
            files.push(manifest::entry(to, manifest::SQL_DUMP_FILE)?);
            v
        }
        _ => {
            let v = dump::mysql_dump(url, &to.join(manifest::SQL_DUMP_FILE)).await?;
            files.push(manifest::entry(to, manifest::SQL_DUMP_FILE)?);
            // apalis has no MySQL storage: without Redis the queue is a local SQLite file.
            let queue = config.data_dir.join("queue.db");
            if config.redis_url.is_none() && queue.is_file() {
                let q = store::connect(&format!("sqlite://{}", queue.display())).await?;
                let copied = dump::sqlite_copy(&q, &to.join(manifest::QUEUE_FILE)).await;
                q.close().await.ok();
                copied?;
                files.push(manifest::entry(to, manifest::QUEUE_FILE)?);
            }
            v
        }
    };
    files.extend(copy_audit(&config.data_dir.join("audit"), to)?);
    if let Some(key) = key.as_ref().filter(|_| include_key) {
        master_key::write_key_file(&to.join(manifest::KEY_FILE), key)
            .map_err(|e| BackupError::Io(e.to_string()))?;
        files.push(manifest::entry(to, manifest::KEY_FILE)?);
    }
    let mut manifest = Manifest {
        format: manifest::FORMAT.into(),
        created_at,
        epusdt_version: env!("CARGO_PKG_VERSION").into(),
        schema_version,
        backend: backend.into(),
        dump_tool,
        key_fingerprint: fingerprint,
        key_included: include_key,
        files,
        mac: None,
    };
    if let (Some(key), Some(_)) = (&key, &manifest.key_fingerprint) {
        manifest.seal(key)?;
    }
    manifest.write(to)?;
    Ok(BackupSummary {
        dir: to.to_path_buf(),
        manifest,
    })
}

/// Copies every audit JSONL file, each up to its last complete line (the gateway may be
/// appending one right now).
fn copy_audit(from: &Path, to: &Path) -> Result<Vec<manifest::FileEntry>, BackupError> {
    let io = |p: &Path, e: std::io::Error| BackupError::Io(format!("{}: {e}", p.display()));
    let Ok(dir) = std::fs::read_dir(from) else {
        return Ok(Vec::new());
    };
    let mut names: Vec<String> = dir
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".jsonl") && !n.starts_with('.'))
        .collect();
    names.sort();
    let out_dir = to.join(manifest::AUDIT_DIR);
    if !names.is_empty() {
        std::fs::create_dir(&out_dir).map_err(|e| io(&out_dir, e))?;
    }
    let mut entries = Vec::new();
    for name in names {
        let src = from.join(&name);
        let bytes = std::fs::read(&src).map_err(|e| io(&src, e))?;
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let rel = format!("{}/{name}", manifest::AUDIT_DIR);
        manifest::write_synced(&to.join(&rel), &bytes[..complete])?;
        entries.push(manifest::entry(to, &rel)?);
    }
    Ok(entries)
}
