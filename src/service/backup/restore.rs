//! `epusdt restore --from DIR`: checks everything first (manifest and checksums, schema
//! version, backend, master key, empty target), then loads the database copy and puts the audit
//! files, the queue file and the key (when the backup holds it) into the data directory.
use std::{
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
};

use migration::{Migrator, MigratorTrait};
use sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait};

use super::{BackupError, Manifest, backend_of, configured_key, dump, manifest};
use crate::{
    config::Config,
    crypto::{
        keys::{PREVIOUS_SUFFIX, key_file_path},
        master_key::{self, MasterKey},
    },
    store::{
        self,
        entities::{merchant, order},
    },
};

/// What `restore` brought back.
#[derive(Debug)]
pub struct RestoreSummary {
    pub manifest: Manifest,
    /// Where the master key from the backup was written, when it was.
    pub key_written: Option<PathBuf>,
}

/// Restores the backup in `from` into the configured (empty) data directory and database.
pub async fn restore(config: &Config, from: &Path) -> Result<RestoreSummary, BackupError> {
    let manifest = Manifest::read_verified(from)?;
    let known = Migrator::migrations()
        .iter()
        .any(|m| m.name() == manifest.schema_version);
    if !known {
        return Err(BackupError::Refused(format!(
            "the backup's schema `{}` (epusdt {}) is unknown to this epusdt {}: restore with epusdt {} or newer",
            manifest.schema_version,
            manifest.epusdt_version,
            env!("CARGO_PKG_VERSION"),
            manifest.epusdt_version
        )));
    }
    let url = config.effective_database_url();
    let backend = backend_of(&url);
    if backend != manifest.backend {
        return Err(BackupError::Refused(format!(
            "the backup is of a {} database and database_url is {backend}; point database_url at an empty {} database",
            manifest.backend, manifest.backend
        )));
    }
    let key_to_write = match check_key(config, from, &manifest)? {
        Some((key, write)) => {
            manifest.check_mac(&key)?;
            write.then_some(key)
        }
        None => None,
    };
    check_data_dir_empty(config)?;
    let db_file = if backend == "sqlite" {
        let path = dump::sqlite_path(&url)?;
        if std::fs::metadata(&path).is_ok_and(|m| m.len() > 0) {
            return Err(BackupError::Refused(format!(
                "the database file {} exists: restore only into an empty data directory / database",
                path.display()
            )));
        }
        Some(path)
    } else {
        let db = store::connect(&url).await?;
        let tables = dump::table_count(&db).await;
        db.close().await.ok();
        if tables? > 0 {
            return Err(BackupError::Refused(format!(
                "the database {} is not empty: restore only into a new, empty database (CREATE DATABASE …)",
                crate::redact::secrets(&url)
            )));
        }
        None
    };

    // Checked: from here on the target is written.
    let data_dir = &config.data_dir;
    make_private_dir(data_dir)?;
    match db_file {
        Some(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                make_private_dir(parent)?;
            }
            copy_synced(&from.join(manifest::SQLITE_FILE), &path)?
        }
        None if backend == "postgres" => {
            dump::pg_load(&url, &from.join(manifest::SQL_DUMP_FILE)).await?
        }
        None => dump::mysql_load(&url, &from.join(manifest::SQL_DUMP_FILE)).await?,
    }
    if manifest.has(manifest::QUEUE_FILE) {
        copy_synced(&from.join(manifest::QUEUE_FILE), &data_dir.join("queue.db"))?;
    }
    let audit_dir = data_dir.join("audit");
    for rel in manifest.audit_files() {
        make_private_dir(&audit_dir)?;
        let name = rel.trim_start_matches("audit/");
        copy_synced(&from.join(rel), &audit_dir.join(name))?;
    }
    let key_written = match key_to_write {
        Some(key) => {
            let path = key_file_path(config);
            master_key::write_key_file(&path, &key).map_err(|e| BackupError::Io(e.to_string()))?;
            Some(path)
        }
        None => None,
    };
    Ok(RestoreSummary {
        manifest,
        key_written,
    })
}

/// The key the restored secrets need: the backup's (written after the database) or the one
/// already configured, and whether to write it; `None` when the backup has no sealed secret.
/// Refuses a missing or different key.
fn check_key(
    config: &Config,
    from: &Path,
    manifest: &Manifest,
) -> Result<Option<(MasterKey, bool)>, BackupError> {
    let configured =
        configured_key(config).map_err(|e| BackupError::Refused(format!("master key: {e}")))?;
    let Some(wanted) = &manifest.key_fingerprint else {
        // No secret was sealed yet: any key (or a new one at first start) will do.
        return Ok(None);
    };
    let path = key_file_path(config);
    if manifest.key_included {
        let text = std::fs::read_to_string(from.join(manifest::KEY_FILE))
            .map_err(|e| BackupError::Tampered(format!("master.key: {e}")))?;
        let key = MasterKey::parse(&text)
            .map_err(|e| BackupError::Tampered(format!("master.key: {e}")))?;
        if key.fingerprint() != *wanted {
            return Err(BackupError::Tampered(
                "master.key is not the key the manifest records".into(),
            ));
        }
        return match configured {
            None => Ok(Some((key, true))),
            Some(c) if c.fingerprint() == *wanted => Ok(Some((c, false))),
            Some(c) => Err(BackupError::Refused(format!(
                "a different master key (fingerprint {}) is configured; the backup's secrets are sealed with the key in the backup (fingerprint {wanted}): remove master_key / master_key_file (or {}) and run restore again",
                c.fingerprint(),
                path.display()
            ))),
        };
    }
    match configured {
        Some(c) if c.fingerprint() == *wanted => Ok(Some((c, false))),
        Some(c) => Err(BackupError::Refused(format!(
            "the configured master key (fingerprint {}) is not the key that sealed the backup's secrets (fingerprint {wanted}); supply the original master key",
            c.fingerprint()
        ))),
        None => Err(BackupError::Refused(format!(
            "this backup was made without --include-key, so it does not hold the master key that seals its merchant secrets (fingerprint {wanted}). Supply the original key first: copy the original master.key to {} (chmod 600), or set EPUSDT_MASTER_KEY (master_key) or master_key_file; then run `epusdt restore --from {}` again",
            path.display(),
            from.display()
        ))),
    }
}

/// The data directory may hold only the master key file(s) the operator put there and the
/// log directory; anything else means it is in use.
fn check_data_dir_empty(config: &Config) -> Result<(), BackupError> {
    let Ok(entries) = std::fs::read_dir(&config.data_dir) else {
        return Ok(());
    };
    let key = key_file_path(config);
    let mut previous = key.clone().into_os_string();
    previous.push(PREVIOUS_SUFFIX);
    let allowed = [key, PathBuf::from(previous), config.effective_log_dir()];
    for e in entries.flatten() {
        let p = config.data_dir.join(e.file_name());
        if !allowed.contains(&p) {
            return Err(BackupError::Refused(format!(
                "the data directory {} is not empty (found {}): restore only into a new, empty data directory",
                config.data_dir.display(),
                e.file_name().to_string_lossy()
            )));
        }
    }
    Ok(())
}

fn make_private_dir(dir: &Path) -> Result<(), BackupError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| BackupError::Io(format!("{}: {e}", dir.display())))
}

/// Copies `from` to `to` through a temporary name, synced, so `to` appears whole or not at all.
fn copy_synced(from: &Path, to: &Path) -> Result<(), BackupError> {
    let io = |e: std::io::Error| BackupError::Io(format!("{}: {e}", to.display()));
    let mut tmp = to.as_os_str().to_owned();
    tmp.push(format!(".restore-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::copy(from, &tmp).map_err(io)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, to).map_err(io)
}

/// Orders and merchants in a restored database (for the operator's summary).
pub async fn counts(db: &DatabaseConnection) -> Result<(u64, u64), BackupError> {
    Ok((
        order::Entity::find().count(db).await?,
        merchant::Entity::find().count(db).await?,
    ))
}
