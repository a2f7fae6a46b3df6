//! The backup's `manifest.json`: what was copied (each file with its size and SHA-256), from which
//! epusdt version, schema version and database backend, and whether the master key is inside.
//!
//! Restore trusts nothing in a backup directory it cannot check against this manifest: every
//! listed file must exist with its checksum, no unlisted file may sit beside them, and a listed
//! path must be one of the few names a backup writes (no `..`, no absolute path).
use std::{
    fs,
    io::Read,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::BackupError;
use crate::crypto::master_key::MasterKey;

/// Name of the manifest inside a backup directory.
pub const MANIFEST: &str = "manifest.json";
/// The manifest's format tag; a restore refuses any other.
pub const FORMAT: &str = "epusdt-backup/1";
/// The SQLite database copy (`VACUUM INTO`).
pub const SQLITE_FILE: &str = "database.sqlite";
/// The PostgreSQL (`pg_dump`) or MySQL (`mysqldump`) plain SQL dump.
pub const SQL_DUMP_FILE: &str = "database.sql";
/// MySQL without Redis: the local SQLite job queue (`<data_dir>/queue.db`).
pub const QUEUE_FILE: &str = "queue.sqlite";
/// The master key, only with `--include-key`.
pub const KEY_FILE: &str = "master.key";
/// Directory of the audit JSONL copies.
pub const AUDIT_DIR: &str = "audit";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    /// Relative path inside the backup directory (`/`-separated).
    pub path: String,
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    /// RFC 3339 UTC time the database copy was taken.
    pub created_at: String,
    /// Version of the epusdt binary that made the backup.
    pub epusdt_version: String,
    /// Newest migration applied to the copied database.
    pub schema_version: String,
    /// `sqlite`, `postgres` or `mysql`.
    pub backend: String,
    /// How the database was copied (`sqlite VACUUM INTO`, `pg_dump (PostgreSQL) 15.20`, …).
    pub dump_tool: String,
    /// Fingerprint of the master key that sealed the copied secrets (not the key); `None` when
    /// the database had no sealed secret yet.
    pub key_fingerprint: Option<String>,
    /// Whether `master.key` is in the backup (`--include-key`).
    pub key_included: bool,
    pub files: Vec<FileEntry>,
    /// HMAC-SHA256 of the rest of the manifest under a key derived from the master key (hex),
    /// present whenever `key_fingerprint` is: a restore, which needs that key anyway, refuses a
    /// manifest rewritten to match changed files. (With `--include-key` the key travels with
    /// the backup, so the tag then only catches accidents.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

type HmacSha256 = hmac::Hmac<Sha256>;

fn mac_key(key: &MasterKey) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"epusdt-backup-manifest-v1");
    h.update(key.to_hex().expose().as_bytes());
    h.finalize().to_vec()
}

impl Manifest {
    /// The HMAC over the manifest without its tag.
    fn tagger(&self, key: &MasterKey) -> Result<HmacSha256, BackupError> {
        use hmac::Mac;
        let body = serde_json::to_vec(&Manifest {
            mac: None,
            ..self.clone()
        })
        .map_err(|e| BackupError::Io(format!("manifest: {e}")))?;
        let mut m = HmacSha256::new_from_slice(&mac_key(key))
            .map_err(|e| BackupError::Io(format!("manifest tag: {e}")))?;
        m.update(&body);
        Ok(m)
    }

    /// Sets [`Manifest::mac`] under `key`.
    pub fn seal(&mut self, key: &MasterKey) -> Result<(), BackupError> {
        use hmac::Mac;
        self.mac = Some(hex::encode(self.tagger(key)?.finalize().into_bytes()));
        Ok(())
    }

    /// Checks the tag under `key` (constant time). A manifest that records a key fingerprint
    /// must carry a tag.
    pub fn check_mac(&self, key: &MasterKey) -> Result<(), BackupError> {
        use hmac::Mac;
        let tag = self
            .mac
            .as_deref()
            .and_then(|t| hex::decode(t).ok())
            .ok_or_else(|| {
                BackupError::Tampered("the manifest has no authentication tag".into())
            })?;
        self.tagger(key)?.verify_slice(&tag).map_err(|_| {
            BackupError::Tampered(
                "the manifest's authentication tag does not match (the manifest was edited)".into(),
            )
        })
    }

    pub fn write(&self, dir: &Path) -> Result<(), BackupError> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| BackupError::Io(format!("manifest: {e}")))?;
        write_synced(&dir.join(MANIFEST), text.as_bytes())
    }

    /// Reads the manifest of `dir` and checks every file against it (before anything else).
    pub fn read_verified(dir: &Path) -> Result<Self, BackupError> {
        let path = dir.join(MANIFEST);
        let text = fs::read_to_string(&path).map_err(|e| BackupError::NotABackup {
            dir: dir.display().to_string(),
            why: format!("cannot read {}: {e}", path.display()),
        })?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| BackupError::NotABackup {
                dir: dir.display().to_string(),
                why: format!("{MANIFEST} is not a backup manifest: {e}"),
            })?;
        if manifest.format != FORMAT {
            return Err(BackupError::NotABackup {
                dir: dir.display().to_string(),
                why: format!(
                    "manifest format `{}`, this epusdt reads `{FORMAT}`",
                    manifest.format
                ),
            });
        }
        manifest.verify(dir)?;
        Ok(manifest)
    }

    /// Every listed file has its size and checksum, no path escapes the directory, and nothing
    /// unlisted lies beside them.
    fn verify(&self, dir: &Path) -> Result<(), BackupError> {
        for entry in &self.files {
            if !allowed_path(&entry.path) {
                return Err(BackupError::Tampered(format!(
                    "the manifest lists `{}`, which a backup never writes",
                    entry.path
                )));
            }
            let path = dir.join(&entry.path);
            let (bytes, sha256) = hash_file(&path).map_err(|e| {
                BackupError::Tampered(format!("{} is missing or unreadable: {e}", entry.path))
            })?;
            if sha256 != entry.sha256 || bytes != entry.bytes {
                return Err(BackupError::Tampered(format!(
                    "checksum mismatch for {}: the file was changed or damaged after the backup",
                    entry.path
                )));
            }
        }
        for found in list_files(dir).map_err(|e| BackupError::Io(e.to_string()))? {
            if found != MANIFEST && !self.files.iter().any(|f| f.path == found) {
                return Err(BackupError::Tampered(format!(
                    "{found} is not listed in the manifest"
                )));
            }
        }
        Ok(())
    }

    pub fn has(&self, path: &str) -> bool {
        self.files.iter().any(|f| f.path == path)
    }

    /// The audit files of the backup (relative paths).
    pub fn audit_files(&self) -> impl Iterator<Item = &str> {
        self.files
            .iter()
            .map(|f| f.path.as_str())
            .filter(|p| p.starts_with("audit/"))
    }
}

/// The only names a backup writes: the database copy, the queue file, the key, `audit/<file>`.
fn allowed_path(p: &str) -> bool {
    if [SQLITE_FILE, SQL_DUMP_FILE, QUEUE_FILE, KEY_FILE].contains(&p) {
        return true;
    }
    p.strip_prefix("audit/").is_some_and(|name| {
        !name.is_empty()
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    })
}

/// Size and lower-case hex SHA-256 of a file.
pub fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        h.update(&buf[..n]);
    }
    Ok((total, hex::encode(h.finalize())))
}

/// The entry for a file already written at `dir/rel`.
pub fn entry(dir: &Path, rel: &str) -> Result<FileEntry, BackupError> {
    let (bytes, sha256) =
        hash_file(&dir.join(rel)).map_err(|e| BackupError::Io(format!("{rel}: {e}")))?;
    Ok(FileEntry {
        path: rel.to_string(),
        bytes,
        sha256,
    })
}

/// Relative paths (`/`-separated) of every file under `dir`.
fn list_files(dir: &Path) -> std::io::Result<Vec<String>> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
        for e in fs::read_dir(dir)? {
            let e = e?;
            let p: PathBuf = e.path();
            if e.file_type()?.is_dir() {
                walk(base, &p, out)?;
            } else if let Ok(rel) = p.strip_prefix(base) {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

/// Writes `bytes` to a new file (mode from the process umask, 0077 under the CLI) and syncs it.
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    use std::io::Write;
    let io = |e: std::io::Error| BackupError::Io(format!("{}: {e}", path.display()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::{Manifest, MasterKey, allowed_path};

    #[test]
    fn the_tag_covers_every_field_and_needs_the_key() {
        let key = MasterKey::from_bytes([7; 32]);
        let mut m = Manifest {
            format: super::FORMAT.into(),
            created_at: "2026-12-02T00:00:00Z".into(),
            epusdt_version: "0.1.0".into(),
            schema_version: "m1".into(),
            backend: "sqlite".into(),
            dump_tool: "sqlite VACUUM INTO".into(),
            key_fingerprint: Some(key.fingerprint()),
            key_included: false,
            files: vec![super::FileEntry {
                path: "database.sqlite".into(),
                bytes: 1,
                sha256: "00".into(),
            }],
            mac: None,
        };
        assert!(m.check_mac(&key).is_err(), "no tag");
        m.seal(&key).unwrap();
        // Through JSON and back, as restore reads it.
        let read: Manifest = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        read.check_mac(&key).unwrap();
        assert!(read.check_mac(&MasterKey::from_bytes([8; 32])).is_err());
        let mut edited = read.clone();
        edited.files[0].sha256 = "01".into();
        assert!(edited.check_mac(&key).is_err());
    }

    #[test]
    fn only_backup_names_are_allowed() {
        for ok in [
            "database.sqlite",
            "database.sql",
            "queue.sqlite",
            "master.key",
            "audit/audit-2026-12-02.jsonl",
        ] {
            assert!(allowed_path(ok), "{ok}");
        }
        for bad in [
            "../etc/passwd",
            "/etc/passwd",
            "audit/../x",
            "audit/",
            "audit/.hidden",
            "audit/a/b",
            "epusdt.db",
        ] {
            assert!(!allowed_path(bad), "{bad}");
        }
    }
}
