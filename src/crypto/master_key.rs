//! The master key: the 32-byte AES-256 key that encrypts merchant secrets and wallet keys at rest
//! (DESIGN §8).
//!
//! This module owns parsing the key (64 hex characters or base64 of 32 bytes), reading it from a
//! key file that only its owner can read, generating one into `<data_dir>/master.key` on a first
//! start, and the two safe-to-store digests of it: [`MasterKey::fingerprint`] (to notice at
//! start-up that the key changed) and [`MasterKey::key_id`] (the ciphertext prefix rotation uses).
//! It never prints, logs or returns the key bytes: `Debug` is redacted, errors describe the shape
//! of a bad key (its length) and never its content, and the only way out is [`MasterKey::to_hex`],
//! which returns a [`Secret`]. It never overwrites an existing key file.

use std::{
    fmt,
    fs::{self, DirBuilder, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use aes_gcm::{Aes256Gcm, Key, aead::KeyInit};
use base64::{
    Engine,
    engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD},
};
use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// Key length in bytes (AES-256).
pub const KEY_LEN: usize = 32;

/// File name of the key generated on a first start, inside the data directory.
pub const DEFAULT_KEY_FILE: &str = "master.key";

const HOW_TO_GENERATE: &str = "generate one with `openssl rand -hex 32`";

/// A 32-byte master key. `Debug` prints only its key id; the bytes are overwritten on drop (best
/// effort: the compiler may have left copies behind when the value was moved).
#[derive(Clone)]
pub struct MasterKey([u8; KEY_LEN]);

impl MasterKey {
    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// A fresh random key from the thread-local CSPRNG (ChaCha12 seeded by the OS).
    pub fn generate() -> Self {
        Self(rand::random::<[u8; KEY_LEN]>())
    }

    /// Parses 64 hex characters or base64 (standard or URL-safe, padded or not) of 32 bytes.
    /// Surrounding whitespace is ignored.
    pub fn parse(text: &str) -> Result<Self, MasterKeyError> {
        parse_key(text).map_err(|problem| MasterKeyError::Format {
            origin: "master key".into(),
            problem,
        })
    }

    /// The key as 64 lower-case hex characters, e.g. to write it to a key file or show it once
    /// to an operator after `keys rotate`.
    pub fn to_hex(&self) -> Secret {
        Secret::new(hex::encode(self.0))
    }

    /// First 16 hex characters of SHA-256("epusdt-master-key-fingerprint" ‖ key). Safe to store
    /// and to log: store it once and refuse to start when the configured key's differs.
    pub fn fingerprint(&self) -> String {
        digest_prefix(b"epusdt-master-key-fingerprint", &self.0, 8)
    }

    /// First 8 hex characters of SHA-256("epusdt-master-key-id" ‖ key): the prefix of every value
    /// this key encrypts, so decryption and rotation know which key to use. Safe to log.
    pub fn key_id(&self) -> String {
        digest_prefix(b"epusdt-master-key-id", &self.0, 4)
    }

    /// The AES-256-GCM cipher keyed with this key, for [`super::envelope`].
    pub(super) fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&Key::<Aes256Gcm>::from(self.0))
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey(id {}, [redacted])", self.key_id())
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.0 = [0; KEY_LEN];
        // Keep the store from being optimised away as dead.
        std::hint::black_box(&mut self.0);
    }
}

fn digest_prefix(domain: &[u8], key: &[u8], bytes: usize) -> String {
    let mut h = Sha256::new();
    h.update(domain);
    h.update(key);
    hex::encode(&h.finalize()[..bytes])
}

/// Where the key in use came from; `Display` is a phrase for the start-up log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `EPUSDT_MASTER_KEY` / `master_key` in the config.
    Configured,
    /// A key file: the configured `master_key_file`, or `<data_dir>/master.key` from an earlier
    /// first start.
    File(PathBuf),
    /// Nothing was configured and no key file existed: a new key was written here. Log this
    /// loudly and tell the operator to back the file up — without it the encrypted secrets are
    /// lost.
    Generated(PathBuf),
}

impl KeySource {
    pub fn is_generated(&self) -> bool {
        matches!(self, KeySource::Generated(_))
    }
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Configured => f.write_str("EPUSDT_MASTER_KEY (master_key)"),
            KeySource::File(p) => write!(f, "key file {}", p.display()),
            KeySource::Generated(p) => write!(f, "newly generated key file {}", p.display()),
        }
    }
}

/// Why no master key could be loaded. `Display` says what to do; it never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error(
        "{origin}: expected 64 hex characters or the base64 encoding of 32 bytes, but {problem}; {HOW_TO_GENERATE}"
    )]
    Format { origin: String, problem: String },
    #[error("cannot read the master key file {}: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "the master key file {} can be read or written by group or others (mode {mode:04o}); run `chmod 600 {}` and start again",
        .path.display(), .path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error(
        "both a master key (EPUSDT_MASTER_KEY / master_key) and a master key file (master_key_file) are configured; set only one"
    )]
    Ambiguous,
    #[error("cannot create the master key file {}: {source}", .path.display())]
    Create { path: PathBuf, source: io::Error },
}

/// Loads the master key: the configured value, else the configured key file, else
/// `<data_dir>/master.key` if an earlier start generated one, else a new random key written to
/// `<data_dir>/master.key` (mode 0600, never overwriting a file another process created first).
pub fn load_or_generate(
    configured: Option<&Secret>,
    key_file: Option<&Path>,
    data_dir: &Path,
) -> Result<(MasterKey, KeySource), MasterKeyError> {
    match load(configured, key_file, data_dir)? {
        Some(found) => Ok(found),
        None => generate_default(data_dir),
    }
}

/// Like [`load_or_generate`] but never generates: `Ok(None)` when nothing is configured and
/// `<data_dir>/master.key` does not exist. Lets start-up refuse, instead of generating a key that
/// cannot be right, when the database already holds values encrypted under some other key.
pub fn load(
    configured: Option<&Secret>,
    key_file: Option<&Path>,
    data_dir: &Path,
) -> Result<Option<(MasterKey, KeySource)>, MasterKeyError> {
    match (configured, key_file) {
        (Some(_), Some(_)) => Err(MasterKeyError::Ambiguous),
        (Some(value), None) => {
            let key = parse_key(value.expose()).map_err(|problem| MasterKeyError::Format {
                origin: "EPUSDT_MASTER_KEY (master_key)".into(),
                problem,
            })?;
            Ok(Some((key, KeySource::Configured)))
        }
        (None, Some(path)) => Ok(Some((
            read_key_file(path)?,
            KeySource::File(path.to_path_buf()),
        ))),
        (None, None) => {
            let path = data_dir.join(DEFAULT_KEY_FILE);
            match fs::symlink_metadata(&path) {
                Ok(_) => Ok(Some((read_key_file(&path)?, KeySource::File(path)))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(MasterKeyError::Read { path, source }),
            }
        }
    }
}

/// Generates a key into `<data_dir>/master.key`. If another process created that file first, its
/// key is loaded instead (`KeySource::File`), so instances sharing a data directory agree.
pub fn generate_default(data_dir: &Path) -> Result<(MasterKey, KeySource), MasterKeyError> {
    let path = data_dir.join(DEFAULT_KEY_FILE);
    let key = MasterKey::generate();
    match write_key_file(&path, &key) {
        Ok(()) => Ok((key, KeySource::Generated(path))),
        Err(MasterKeyError::Create { source, .. })
            if source.kind() == io::ErrorKind::AlreadyExists =>
        {
            Ok((read_key_file(&path)?, KeySource::File(path)))
        }
        Err(e) => Err(e),
    }
}

/// Reads a key file (hex or base64, surrounding whitespace ignored). Refuses a file that group
/// or others can access.
pub fn read_key_file(path: &Path) -> Result<MasterKey, MasterKeyError> {
    let read_err = |source| MasterKeyError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = fs::metadata(path).map_err(read_err)?;
    if !meta.is_file() {
        return Err(read_err(io::Error::other("not a regular file")));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(MasterKeyError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut bytes = fs::read(path).map_err(read_err)?;
    let parsed = match std::str::from_utf8(&bytes) {
        Ok(text) => parse_key(text),
        Err(_) => Err("the file is not text".to_string()),
    };
    bytes.fill(0);
    std::hint::black_box(&mut bytes);
    parsed.map_err(|problem| MasterKeyError::Format {
        origin: format!("master key file {}", path.display()),
        problem,
    })
}

/// Writes `key` as hex to a new file at `path` with mode 0600, creating the parent directory
/// (mode 0700) if needed. The file appears complete or not at all: the key is written and synced
/// to a temporary file that is then hard-linked into place, which fails with `AlreadyExists`
/// (as [`MasterKeyError::Create`]) instead of replacing an existing key.
pub fn write_key_file(path: &Path, key: &MasterKey) -> Result<(), MasterKeyError> {
    let create_err = |source| MasterKeyError::Create {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(create_err)?;
    let tmp = dir.join(format!(
        ".{DEFAULT_KEY_FILE}.tmp-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(format!("{}\n", key.to_hex().expose()).as_bytes())?;
        f.sync_all()?;
        fs::hard_link(&tmp, path)
    })();
    // The temporary name is gone whatever happened; the key now lives only at `path` (if linked).
    let _ = fs::remove_file(&tmp);
    written.map_err(create_err)?;
    // Make the new directory entry durable; not every filesystem supports syncing a directory.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The key, or a description of what is wrong with the text (never the text itself).
fn parse_key(text: &str) -> Result<MasterKey, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("it is empty".into());
    }
    let n = text.chars().count();
    if text.chars().all(|c| c.is_ascii_hexdigit()) && n == 2 * KEY_LEN {
        let mut key = [0u8; KEY_LEN];
        hex::decode_to_slice(text, &mut key).map_err(|_| "it is not valid hex".to_string())?;
        return Ok(MasterKey(key));
    }
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        if let Ok(mut bytes) = engine.decode(text) {
            let len = bytes.len();
            let key = <[u8; KEY_LEN]>::try_from(bytes.as_slice()).ok();
            bytes.fill(0);
            std::hint::black_box(&mut bytes);
            return match key {
                Some(k) => Ok(MasterKey(k)),
                None if text.chars().all(|c| c.is_ascii_hexdigit()) => {
                    Err(format!("it has {n} hex characters"))
                }
                None => Err(format!("it is base64 of {len} bytes")),
            };
        }
    }
    if text.chars().all(|c| c.is_ascii_hexdigit()) {
        Err(format!("it has {n} hex characters"))
    } else {
        Err(format!("it is neither hex nor base64 ({n} characters)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn bytes() -> [u8; 32] {
        std::array::from_fn(|i| i as u8)
    }

    fn same(a: &MasterKey, b: &MasterKey) -> bool {
        a.fingerprint() == b.fingerprint() && a.key_id() == b.key_id()
    }

    #[test]
    fn parses_hex_and_every_base64_flavour() {
        let want = MasterKey::from_bytes(bytes());
        let b = bytes();
        for text in [
            HEX.to_string(),
            HEX.to_uppercase(),
            format!("  {HEX}\n"),
            STANDARD.encode(b),
            STANDARD_NO_PAD.encode(b),
            URL_SAFE.encode(b),
            URL_SAFE_NO_PAD.encode(b),
            format!("{}\r\n", STANDARD.encode(b)),
        ] {
            let got = MasterKey::parse(&text).unwrap();
            assert!(same(&got, &want), "{text}");
        }
    }

    #[test]
    fn bad_keys_get_a_clear_error_without_the_key() {
        for (text, needle) in [
            ("", "it is empty"),
            ("   \n", "it is empty"),
            (&HEX[..62], "62 hex characters"),
            ("00112233", "8 hex characters"),
            ("c2VjcmV0LXBhc3N3b3Jk", "base64 of 15 bytes"),
            ("not a key at all!", "neither hex nor base64"),
        ] {
            let msg = MasterKey::parse(text).unwrap_err().to_string();
            assert!(msg.contains(needle), "{text:?}: {msg}");
            assert!(msg.contains("openssl rand -hex 32"), "{msg}");
            assert!(msg.contains("64 hex characters or the base64"), "{msg}");
            if text.trim().len() > 4 {
                assert!(!msg.contains(text.trim()), "error leaks the input: {msg}");
            }
        }
    }

    #[test]
    fn digests_are_stable_distinct_and_short() {
        let k = MasterKey::from_bytes(bytes());
        assert_eq!(k.fingerprint().len(), 16);
        assert_eq!(k.key_id().len(), 8);
        assert!(!k.fingerprint().starts_with(&k.key_id()));
        assert_eq!(
            k.fingerprint(),
            MasterKey::parse(HEX).unwrap().fingerprint()
        );
        let other = MasterKey::generate();
        assert_ne!(k.key_id(), other.key_id());
        assert_ne!(k.fingerprint(), other.fingerprint());
        // Neither is a prefix of the key itself.
        assert!(!HEX.starts_with(&k.key_id()));
    }

    #[test]
    fn debug_is_redacted() {
        let k = MasterKey::from_bytes(bytes());
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(HEX) && !dbg.contains("0102"), "{dbg}");
        assert!(dbg.contains(&k.key_id()));
        assert_eq!(format!("{:?}", k.to_hex()), "Secret([redacted])");
        assert_eq!(k.to_hex().expose(), HEX);
    }

    #[test]
    fn configured_value_wins_and_both_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (k, src) = load_or_generate(Some(&Secret::new(HEX)), None, dir.path()).unwrap();
        assert_eq!(src, KeySource::Configured);
        assert!(same(&k, &MasterKey::from_bytes(bytes())));
        assert!(!dir.path().join(DEFAULT_KEY_FILE).exists());

        let bad = load_or_generate(Some(&Secret::new("nope")), None, dir.path()).unwrap_err();
        assert!(bad.to_string().contains("EPUSDT_MASTER_KEY"), "{bad}");

        let file = dir.path().join("k");
        let both = load_or_generate(Some(&Secret::new(HEX)), Some(&file), dir.path());
        assert!(matches!(both, Err(MasterKeyError::Ambiguous)));
    }

    #[test]
    fn key_file_is_read_with_trailing_whitespace() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key.txt");
        fs::write(&file, format!("{}\n\n", STANDARD.encode(bytes()))).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        let (k, src) = load_or_generate(None, Some(&file), dir.path()).unwrap();
        assert_eq!(src, KeySource::File(file.clone()));
        assert!(same(&k, &MasterKey::from_bytes(bytes())));
        // Owner read-only is fine too.
        fs::set_permissions(&file, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(read_key_file(&file).is_ok());
    }

    #[test]
    fn key_file_open_to_others_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key.txt");
        fs::write(&file, HEX).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o620] {
            fs::set_permissions(&file, fs::Permissions::from_mode(mode)).unwrap();
            let err = read_key_file(&file).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, MasterKeyError::Permissions { .. }), "{msg}");
            assert!(
                msg.contains(&format!("chmod 600 {}", file.display())),
                "{msg}"
            );
            assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
        }
    }

    #[test]
    fn bad_key_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.key");
        let msg = read_key_file(&missing).unwrap_err().to_string();
        assert!(msg.contains("missing.key"), "{msg}");

        let garbage = dir.path().join("garbage.key");
        fs::write(&garbage, [0xff, 0xfe, 0x00]).unwrap();
        fs::set_permissions(&garbage, fs::Permissions::from_mode(0o600)).unwrap();
        let msg = read_key_file(&garbage).unwrap_err().to_string();
        assert!(
            msg.contains("garbage.key") && msg.contains("not text"),
            "{msg}"
        );

        let short = dir.path().join("short.key");
        fs::write(&short, "abcd\n").unwrap();
        fs::set_permissions(&short, fs::Permissions::from_mode(0o600)).unwrap();
        let msg = read_key_file(&short).unwrap_err().to_string();
        assert!(
            msg.contains("short.key") && msg.contains("openssl rand"),
            "{msg}"
        );

        let msg = read_key_file(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("not a regular file"), "{msg}");
    }

    #[test]
    fn first_start_generates_a_private_key_file_and_reuses_it() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data"); // does not exist yet
        let (k1, src1) = load_or_generate(None, None, &data).unwrap();
        let path = data.join(DEFAULT_KEY_FILE);
        assert_eq!(src1, KeySource::Generated(path.clone()));
        assert!(src1.is_generated());
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", k1.to_hex().expose()));
        // No temporary file left behind.
        assert_eq!(fs::read_dir(&data).unwrap().count(), 1);

        let (k2, src2) = load_or_generate(None, None, &data).unwrap();
        assert_eq!(src2, KeySource::File(path.clone()));
        assert!(same(&k1, &k2));
        let (k3, _) = load(None, None, &data).unwrap().unwrap();
        assert!(same(&k1, &k3));
    }

    #[test]
    fn load_never_generates() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(None, None, dir.path()).unwrap().is_none());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn generation_never_overwrites_an_existing_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DEFAULT_KEY_FILE);
        let first = MasterKey::generate();
        write_key_file(&path, &first).unwrap();
        let err = write_key_file(&path, &MasterKey::generate()).unwrap_err();
        assert!(
            matches!(&err, MasterKeyError::Create { source, .. } if source.kind() == io::ErrorKind::AlreadyExists),
            "{err}"
        );
        assert!(same(&read_key_file(&path).unwrap(), &first));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn concurrent_first_starts_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_path_buf();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let data = data.clone();
                std::thread::spawn(move || load_or_generate(None, None, &data).unwrap())
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let generated = results.iter().filter(|(_, s)| s.is_generated()).count();
        assert_eq!(generated, 1);
        let fp = results[0].0.fingerprint();
        assert!(results.iter().all(|(k, _)| k.fingerprint() == fp));
    }
}
