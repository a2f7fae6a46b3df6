//! The runtime keyring: the current master key plus, during a rotation, the previous one. Every
//! secret column goes through [`KeyStore::encrypt`] / [`KeyStore::decrypt`].
//!
//! Rotation without downtime for reads: `epusdt keys rotate` re-encrypts every value under a new
//! key and keeps the old key next to it (`master.key.previous`). A running gateway that meets a
//! value sealed by a key it does not know reloads its key files once and retries, so reads keep
//! working while another process rotates. With keys from the environment, start the instances
//! with `master_key` = new and `master_key_previous` = old (rolling restart); each start re-seals
//! what is left under the old key.
//!
//! Must never: log or print a key or a decrypted value; generate a key when the database already
//! holds values sealed by another one (the fingerprint check refuses instead).
use std::{
    path::{Path, PathBuf},
    sync::RwLock,
};

use super::{
    envelope::{self, EnvelopeError, Keyring},
    master_key::{self, KeySource, MasterKey, MasterKeyError},
};
use crate::{config::Config, secret::Secret};

/// File name of the previous key kept by `keys rotate`, beside the current key file.
pub const PREVIOUS_SUFFIX: &str = ".previous";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    MasterKey(#[from] MasterKeyError),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
}

#[derive(Debug, Clone)]
struct Sources {
    configured: Option<Secret>,
    key_file: Option<PathBuf>,
    previous: Option<Secret>,
    data_dir: PathBuf,
}

pub struct KeyStore {
    keys: RwLock<Keyring>,
    sources: Sources,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("key_ids", &self.key_ids())
            .finish()
    }
}

/// The path of the key file in use when keys come from files (configured or default).
pub fn key_file_path(config: &Config) -> PathBuf {
    config
        .master_key_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join(master_key::DEFAULT_KEY_FILE))
}

fn previous_path(current: &Path) -> PathBuf {
    let mut name = current.as_os_str().to_owned();
    name.push(PREVIOUS_SUFFIX);
    PathBuf::from(name)
}

impl KeyStore {
    /// Loads (or, when `generate` and nothing exists, generates) the master key and any
    /// previous key. Returns where the current key came from so the caller can say so loudly.
    pub fn open(config: &Config, generate: bool) -> Result<(Self, Option<KeySource>), KeyError> {
        let sources = Sources {
            configured: config.master_key.clone(),
            key_file: config.master_key_file.clone(),
            previous: config.master_key_previous.clone(),
            data_dir: config.data_dir.clone(),
        };
        let found = if generate {
            Some(master_key::load_or_generate(
                sources.configured.as_ref(),
                sources.key_file.as_deref(),
                &sources.data_dir,
            )?)
        } else {
            master_key::load(
                sources.configured.as_ref(),
                sources.key_file.as_deref(),
                &sources.data_dir,
            )?
        };
        let Some((key, source)) = found else {
            // No key at all and not allowed to generate: an empty keyring would be a bug.
            let (key, source) = master_key::load_or_generate(
                sources.configured.as_ref(),
                sources.key_file.as_deref(),
                &sources.data_dir,
            )?;
            let keys = Self::keyring(&sources, key, &source)?;
            return Ok((
                Self {
                    keys: RwLock::new(keys),
                    sources,
                },
                Some(source),
            ));
        };
        let keys = Self::keyring(&sources, key, &source)?;
        Ok((
            Self {
                keys: RwLock::new(keys),
                sources,
            },
            Some(source),
        ))
    }

    /// An in-memory keyring (tests, tools).
    pub fn from_key(key: MasterKey) -> Self {
        Self::from_keyring(Keyring::new(key))
    }

    /// A store over an explicit keyring (`keys rotate` seals with the rotated ring).
    pub fn from_keyring(ring: Keyring) -> Self {
        Self {
            keys: RwLock::new(ring),
            sources: Sources {
                configured: None,
                key_file: None,
                previous: None,
                data_dir: PathBuf::new(),
            },
        }
    }

    fn keyring(sources: &Sources, key: MasterKey, source: &KeySource) -> Result<Keyring, KeyError> {
        let mut ring = Keyring::new(key);
        if let Some(prev) = &sources.previous {
            ring = ring.with_old(MasterKey::parse(prev.expose())?);
        }
        if let KeySource::File(path) | KeySource::Generated(path) = source {
            let prev = previous_path(path);
            if prev.exists() {
                ring = ring.with_old(master_key::read_key_file(&prev)?);
            }
        }
        Ok(ring)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Keyring> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn key_ids(&self) -> Vec<String> {
        self.read().key_ids()
    }

    pub fn fingerprint(&self) -> String {
        self.read().current().fingerprint()
    }

    pub fn current_key_id(&self) -> String {
        self.read().current().key_id()
    }

    /// Fingerprints of every key held (current first).
    pub fn fingerprints(&self) -> Vec<String> {
        let ring = self.read();
        let mut out = vec![ring.current().fingerprint()];
        out.extend(ring.old_keys().iter().map(MasterKey::fingerprint));
        out
    }

    pub fn encrypt(&self, plaintext: &str, aad: &str) -> String {
        envelope::encrypt(self.read().current(), plaintext, aad)
    }

    /// Decrypts; a value sealed by an unknown key triggers one reload of the key files (another
    /// process may have rotated) and a retry.
    pub fn decrypt(&self, stored: &str, aad: &str) -> Result<Secret, EnvelopeError> {
        let first = envelope::decrypt(&self.read(), stored, aad);
        match first {
            Err(EnvelopeError::UnknownKey { .. }) if self.reload() => {
                envelope::decrypt(&self.read(), stored, aad)
            }
            other => other,
        }
    }

    /// `Some(new)` when the value is plaintext or sealed by an older key.
    pub fn reseal(&self, stored: &str, aad: &str) -> Result<Option<String>, EnvelopeError> {
        envelope::reseal(&self.read(), stored, aad)
    }

    /// Re-reads key files (only file-based keys can change under a running process).
    fn reload(&self) -> bool {
        if self.sources.configured.is_some() {
            return false;
        }
        let loaded = master_key::load(
            None,
            self.sources.key_file.as_deref(),
            &self.sources.data_dir,
        );
        let Ok(Some((key, source))) = loaded else {
            return false;
        };
        match Self::keyring(&self.sources, key, &source) {
            Ok(ring) => {
                tracing::warn!(key_ids = ?ring.key_ids(), "master key files changed on disk: keyring reloaded");
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) = ring;
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot reload master key files");
                false
            }
        }
    }

    /// A keyring that seals with `new` and still opens values sealed by every key held now.
    pub fn rotated(&self, new: MasterKey) -> Keyring {
        let ring = self.read();
        let mut next = Keyring::new(new).with_old(ring.current().clone());
        for k in ring.old_keys() {
            next = next.with_old(k.clone());
        }
        next
    }

    /// Paths for `keys rotate` with file-based keys: (current, previous).
    pub fn file_paths(config: &Config) -> Option<(PathBuf, PathBuf)> {
        if config.master_key.is_some() {
            return None;
        }
        let current = key_file_path(config);
        let prev = previous_path(&current);
        Some((current, prev))
    }
}
