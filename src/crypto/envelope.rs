//! Envelope encryption of secrets stored in the database: merchant API secrets and wallet private
//! keys (DESIGN §8).
//!
//! A stored value is `enc:v1:<key_id>:<base64(nonce ‖ ciphertext ‖ tag)>`: AES-256-GCM under the
//! master key whose [`MasterKey::key_id`] is `<key_id>`, with a fresh random 96-bit nonce per
//! value and the caller's associated data (e.g. `merchant:1001:secret`) authenticated, so a
//! ciphertext copied into another row does not decrypt. A [`Keyring`] holds the current key and
//! any old ones, so values written under an old key still decrypt and [`reseal`] can move them to
//! the current key (`epusdt keys rotate`).
//!
//! This module never does I/O and never logs. It never returns plaintext except as a
//! [`Secret`], and its errors never contain the stored value (which may be a plaintext secret
//! that was never encrypted) or the plaintext.

use std::fmt;

use aes_gcm::{
    Aes256Gcm,
    aead::{Aead, Nonce, Payload},
};
use base64::{Engine, engine::general_purpose::STANDARD};

use super::master_key::MasterKey;
use crate::secret::Secret;

const PREFIX: &str = "enc:";
const VERSION: &str = "v1";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Domain separation: the AAD fed to AES-GCM is this followed by the caller's AAD, so the same
/// key used for anything else can never produce a value this module accepts.
const AAD_DOMAIN: &str = "epusdt/enc:v1/";

/// The master keys this process can decrypt with: the current one (all new values) and old ones
/// kept only while values are being re-encrypted. `Debug` prints key ids only.
#[derive(Clone)]
pub struct Keyring {
    current: MasterKey,
    old: Vec<MasterKey>,
}

impl Keyring {
    pub fn new(current: MasterKey) -> Self {
        Self {
            current,
            old: Vec::new(),
        }
    }

    /// Adds a key that may have encrypted existing values (the previous key during a rotation).
    pub fn with_old(mut self, key: MasterKey) -> Self {
        self.old.push(key);
        self
    }

    /// The key new values are encrypted with.
    pub fn current(&self) -> &MasterKey {
        &self.current
    }

    /// Key ids of every key in the ring, current first.
    pub fn key_ids(&self) -> Vec<String> {
        std::iter::once(&self.current)
            .chain(&self.old)
            .map(MasterKey::key_id)
            .collect()
    }

    /// The older keys, oldest last.
    pub fn old_keys(&self) -> &[MasterKey] {
        &self.old
    }

    /// Every key whose id is `key_id` (normally one; two only on a 32-bit id collision).
    fn candidates(&self, key_id: &str) -> Vec<&MasterKey> {
        std::iter::once(&self.current)
            .chain(&self.old)
            .filter(|k| k.key_id() == key_id)
            .collect()
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.key_id())
            .field(
                "old",
                &self.old.iter().map(MasterKey::key_id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Why a stored value could not be decrypted. Never contains the stored value or the plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error(
        "value encrypted with key {key_id}, which is not the configured master key (key {current}); set the right EPUSDT_MASTER_KEY or run `epusdt keys rotate` with the old key available"
    )]
    UnknownKey { key_id: String, current: String },
    #[error(
        "encrypted value (key {key_id}) failed authentication: it was altered, or copied from another row"
    )]
    Authentication { key_id: String },
    #[error(
        "encrypted value uses format {version}, which this version of epusdt cannot read; upgrade epusdt"
    )]
    UnsupportedVersion { version: String },
    #[error("not a valid encrypted value: {0}")]
    Malformed(&'static str),
}

/// Encrypts `plaintext` under `key`, bound to `aad` (which names the row and column, e.g.
/// `merchant:1001:secret`; pass the same string to [`decrypt`]).
///
/// # Panics
/// Only for a plaintext over 64 GiB, the AES-GCM limit.
pub fn encrypt(key: &MasterKey, plaintext: &str, aad: &str) -> String {
    let nonce_bytes: [u8; NONCE_LEN] = rand::random();
    let nonce = Nonce::<Aes256Gcm>::from(nonce_bytes);
    let full_aad = full_aad(aad);
    let sealed = match key.cipher().encrypt(
        &nonce,
        Payload {
            msg: plaintext.as_bytes(),
            aad: full_aad.as_bytes(),
        },
    ) {
        Ok(ct) => ct,
        Err(_) => unreachable!("AES-GCM refuses only plaintexts over 64 GiB"),
    };
    let mut blob = Vec::with_capacity(NONCE_LEN + sealed.len());
    blob.extend_from_slice(&nonce_bytes);
    blob.extend_from_slice(&sealed);
    format!(
        "{PREFIX}{VERSION}:{}:{}",
        key.key_id(),
        STANDARD.encode(&blob)
    )
}

/// Decrypts a value written by [`encrypt`] with whichever key in `keys` has its key id.
pub fn decrypt(keys: &Keyring, stored: &str, aad: &str) -> Result<Secret, EnvelopeError> {
    open(keys, stored, aad).map(|(secret, _)| secret)
}

/// Does `stored` claim to be an encrypted value (`enc:v<digits>:`)? Plaintext rows written before
/// encryption existed answer `false` and should be [`reseal`]ed. A value that claims to be
/// encrypted but is damaged answers `true`, so it fails loudly at [`decrypt`] instead of being
/// mistaken for a plaintext secret and encrypted again.
pub fn is_encrypted(stored: &str) -> bool {
    split_version(stored).is_some()
}

/// The key id a stored value claims to be encrypted with, if it looks encrypted.
pub fn key_id_of(stored: &str) -> Option<&str> {
    parse(stored).ok().map(|p| p.key_id)
}

/// Brings a stored value up to date: plaintext is encrypted under the current key, a value under
/// an old key is decrypted and encrypted again under the current key (`Some(new value)`, to be
/// written back), and a value already under the current key is verified and left alone (`None`).
/// Errors when the value cannot be decrypted with any key in `keys`.
pub fn reseal(keys: &Keyring, stored: &str, aad: &str) -> Result<Option<String>, EnvelopeError> {
    if !is_encrypted(stored) {
        return Ok(Some(encrypt(keys.current(), stored, aad)));
    }
    let (secret, used) = open(keys, stored, aad)?;
    if std::ptr::eq(used, keys.current()) {
        Ok(None)
    } else {
        Ok(Some(encrypt(keys.current(), secret.expose(), aad)))
    }
}

struct Parsed<'a> {
    key_id: &'a str,
    payload: &'a str,
}

/// `(version, rest)` when `stored` starts with `enc:v<digits>:`.
fn split_version(stored: &str) -> Option<(&str, &str)> {
    let rest = stored.strip_prefix(PREFIX)?;
    let (version, rest) = rest.split_once(':')?;
    let digits = version.strip_prefix('v')?;
    (!digits.is_empty() && digits.len() <= 4 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then_some((version, rest))
}

fn parse(stored: &str) -> Result<Parsed<'_>, EnvelopeError> {
    let Some((version, rest)) = split_version(stored) else {
        return Err(EnvelopeError::Malformed("it does not start with `enc:v1:`"));
    };
    if version != VERSION {
        return Err(EnvelopeError::UnsupportedVersion {
            version: version.to_string(),
        });
    }
    let Some((key_id, payload)) = rest.split_once(':') else {
        return Err(EnvelopeError::Malformed("the key id is missing"));
    };
    if key_id.len() != 8
        || !key_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(EnvelopeError::Malformed(
            "the key id is not 8 lower-case hex characters",
        ));
    }
    Ok(Parsed { key_id, payload })
}

fn open<'k>(
    keys: &'k Keyring,
    stored: &str,
    aad: &str,
) -> Result<(Secret, &'k MasterKey), EnvelopeError> {
    let parsed = parse(stored)?;
    let blob = STANDARD
        .decode(parsed.payload)
        .map_err(|_| EnvelopeError::Malformed("the payload is not base64"))?;
    if blob.len() < NONCE_LEN + TAG_LEN {
        return Err(EnvelopeError::Malformed("the payload is too short"));
    }
    let (nonce_bytes, sealed) = blob.split_at(NONCE_LEN);
    let nonce = Nonce::<Aes256Gcm>::try_from(nonce_bytes)
        .map_err(|_| EnvelopeError::Malformed("the nonce is not 12 bytes"))?;
    let full_aad = full_aad(aad);
    let candidates = keys.candidates(parsed.key_id);
    for &key in &candidates {
        let opened = key.cipher().decrypt(
            &nonce,
            Payload {
                msg: sealed,
                aad: full_aad.as_bytes(),
            },
        );
        if let Ok(plain) = opened {
            let text = String::from_utf8(plain)
                .map_err(|_| EnvelopeError::Malformed("the decrypted value is not UTF-8"))?;
            return Ok((Secret::new(text), key));
        }
    }
    if !candidates.is_empty() {
        Err(EnvelopeError::Authentication {
            key_id: parsed.key_id.to_string(),
        })
    } else {
        Err(EnvelopeError::UnknownKey {
            key_id: parsed.key_id.to_string(),
            current: keys.current().key_id(),
        })
    }
}

fn full_aad(aad: &str) -> String {
    format!("{AAD_DOMAIN}{aad}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t-merchant-token-0123456789";
    const AAD: &str = "merchant:1001:secret";

    fn ring() -> (Keyring, MasterKey) {
        let k = MasterKey::generate();
        (Keyring::new(k.clone()), k)
    }

    /// Replaces the payload byte at `i` (after base64 decoding) with `f(byte)`.
    fn mutate_payload(stored: &str, i: usize, f: impl Fn(u8) -> u8) -> String {
        let (head, b64) = stored.rsplit_once(':').unwrap();
        let mut blob = STANDARD.decode(b64).unwrap();
        blob[i] = f(blob[i]);
        format!("{head}:{}", STANDARD.encode(blob))
    }

    #[test]
    fn round_trip() {
        let (keys, k) = ring();
        for plain in [SECRET, "", "ünïcødé 🔑", &"x".repeat(10_000)] {
            let stored = encrypt(&k, plain, AAD);
            assert_eq!(decrypt(&keys, &stored, AAD).unwrap().expose(), plain);
        }
    }

    #[test]
    fn format_has_version_and_key_id_prefix() {
        let (_, k) = ring();
        let stored = encrypt(&k, SECRET, AAD);
        let prefix = format!("enc:v1:{}:", k.key_id());
        assert!(stored.starts_with(&prefix), "{stored}");
        assert_eq!(key_id_of(&stored), Some(k.key_id().as_str()));
        let blob = STANDARD.decode(&stored[prefix.len()..]).unwrap();
        assert_eq!(blob.len(), NONCE_LEN + SECRET.len() + TAG_LEN);
        assert!(is_encrypted(&stored));
    }

    #[test]
    fn same_plaintext_encrypts_differently() {
        let (_, k) = ring();
        let a = encrypt(&k, SECRET, AAD);
        let b = encrypt(&k, SECRET, AAD);
        assert_ne!(a, b);
        // Different nonces, not just different tags.
        let nonce =
            |s: &str| STANDARD.decode(s.rsplit_once(':').unwrap().1).unwrap()[..12].to_vec();
        assert_ne!(nonce(&a), nonce(&b));
    }

    #[test]
    fn plaintext_never_appears_in_the_output() {
        let (_, k) = ring();
        let stored = encrypt(&k, SECRET, AAD);
        assert!(!stored.contains(SECRET));
        assert!(!stored.contains(&STANDARD.encode(SECRET)));
        assert!(!stored.contains(&hex::encode(SECRET)));
        assert!(!stored.contains(&k.to_hex().expose()[..16]));
    }

    #[test]
    fn wrong_key_is_unknown_key_with_advice() {
        let (_, k) = ring();
        let (other, _) = ring();
        let stored = encrypt(&k, SECRET, AAD);
        let err = decrypt(&other, &stored, AAD).unwrap_err();
        assert_eq!(
            err,
            EnvelopeError::UnknownKey {
                key_id: k.key_id(),
                current: other.current().key_id()
            }
        );
        let msg = err.to_string();
        assert!(msg.contains(&k.key_id()), "{msg}");
        assert!(msg.contains("EPUSDT_MASTER_KEY"), "{msg}");
        assert!(msg.contains("epusdt keys rotate"), "{msg}");
    }

    #[test]
    fn wrong_key_with_a_colliding_id_fails_authentication() {
        // Forge the key id of another key: the ring tries that key and GCM refuses.
        let (keys, k) = ring();
        let other = MasterKey::generate();
        let stored = encrypt(&other, SECRET, AAD).replacen(&other.key_id(), &k.key_id(), 1);
        assert_eq!(
            decrypt(&keys, &stored, AAD).unwrap_err(),
            EnvelopeError::Authentication { key_id: k.key_id() }
        );
    }

    #[test]
    fn any_tampered_byte_fails_authentication() {
        let (keys, k) = ring();
        let stored = encrypt(&k, SECRET, AAD);
        let len = NONCE_LEN + SECRET.len() + TAG_LEN;
        for i in 0..len {
            let bad = mutate_payload(&stored, i, |b| b ^ 0x01);
            let err = decrypt(&keys, &bad, AAD).unwrap_err();
            assert!(
                matches!(err, EnvelopeError::Authentication { .. }),
                "byte {i}: {err}"
            );
            assert!(!err.to_string().contains(SECRET));
        }
        // Truncating the tag is caught too.
        let (head, b64) = stored.rsplit_once(':').unwrap();
        let mut blob = STANDARD.decode(b64).unwrap();
        blob.pop();
        let short = format!("{head}:{}", STANDARD.encode(blob));
        assert!(matches!(
            decrypt(&keys, &short, AAD),
            Err(EnvelopeError::Authentication { .. })
        ));
    }

    #[test]
    fn wrong_aad_fails() {
        let (keys, k) = ring();
        let stored = encrypt(&k, SECRET, AAD);
        for aad in [
            "merchant:1002:secret",
            "",
            "merchant:1001:secre",
            "wallet:1001:secret",
        ] {
            assert!(
                matches!(
                    decrypt(&keys, &stored, aad),
                    Err(EnvelopeError::Authentication { .. })
                ),
                "{aad}"
            );
        }
    }

    #[test]
    fn malformed_inputs_are_errors_not_panics() {
        let (keys, k) = ring();
        let id = k.key_id();
        let mut cases = vec![
            String::new(),
            SECRET.to_string(),
            "enc".into(),
            "enc:".into(),
            "enc:v1".into(),
            "enc:v1:".into(),
            "enc:v1::".into(),
            format!("enc:v1:{id}"),
            format!("enc:v1:{id}:"),
            format!("enc:v1:{id}:!!!not base64!!!"),
            format!("enc:v1:{id}:{}", STANDARD.encode([0u8; 27])),
            format!("enc:v1:zzzzzzzz:{}", STANDARD.encode([0u8; 40])),
            format!("enc:v1:{id}{id}:{}", STANDARD.encode([0u8; 40])),
            "enc:v:abc".into(),
            "enc:vx:abc".into(),
            "ENC:V1:abc".into(),
            "🔑🔑🔑:enc:v1:".into(),
        ];
        // A key id in upper case is not the key's id — unless the random id has no letters
        // (about 2 % of ids), when it is the id itself and the case is not malformed.
        if id.to_uppercase() != id {
            cases.push(format!(
                "enc:v1:{}:{}",
                id.to_uppercase(),
                STANDARD.encode([0u8; 40])
            ));
        }
        for case in &cases {
            let err = decrypt(&keys, case, AAD).unwrap_err();
            assert!(
                matches!(err, EnvelopeError::Malformed(_)),
                "{case:?}: {err:?}"
            );
            if case.len() > 8 {
                assert!(!err.to_string().contains(case.as_str()));
            }
        }
        // Every truncation of a valid value is an error.
        let stored = encrypt(&k, SECRET, AAD);
        for n in 0..stored.len() {
            assert!(decrypt(&keys, &stored[..n], AAD).is_err(), "{n}");
        }
        let future = format!("enc:v2:{id}:AAAA");
        assert_eq!(
            decrypt(&keys, &future, AAD).unwrap_err(),
            EnvelopeError::UnsupportedVersion {
                version: "v2".into()
            }
        );
    }

    #[test]
    fn is_encrypted_tells_plaintext_rows_apart() {
        let (_, k) = ring();
        assert!(is_encrypted(&encrypt(&k, SECRET, AAD)));
        assert!(is_encrypted("enc:v1:damaged"));
        assert!(is_encrypted("enc:v2:whatever"));
        for plain in [
            SECRET,
            "",
            "enc",
            "enc:",
            "enc:secret",
            "enc:v:x",
            "enc:vv1:x",
            "ENC:v1:x",
            "epusdt_password_xasddawqe",
        ] {
            assert!(!is_encrypted(plain), "{plain}");
        }
        assert_eq!(key_id_of(SECRET), None);
    }

    #[test]
    fn rotation_decrypts_with_old_keys_and_reseals_to_the_current_one() {
        let old = MasterKey::generate();
        let new = MasterKey::generate();
        let under_old = encrypt(&old, SECRET, AAD);

        // Only the new key: the old value is refused with the rotate hint.
        let only_new = Keyring::new(new.clone());
        assert!(matches!(
            decrypt(&only_new, &under_old, AAD),
            Err(EnvelopeError::UnknownKey { .. })
        ));

        let ring = Keyring::new(new.clone()).with_old(old.clone());
        assert_eq!(ring.key_ids(), vec![new.key_id(), old.key_id()]);
        assert_eq!(decrypt(&ring, &under_old, AAD).unwrap().expose(), SECRET);

        let resealed = reseal(&ring, &under_old, AAD).unwrap().unwrap();
        assert_eq!(key_id_of(&resealed), Some(new.key_id().as_str()));
        assert_eq!(decrypt(&only_new, &resealed, AAD).unwrap().expose(), SECRET);
        // Already current: nothing to write.
        assert_eq!(reseal(&ring, &resealed, AAD).unwrap(), None);

        // Plaintext rows are encrypted under the current key.
        let migrated = reseal(&ring, SECRET, AAD).unwrap().unwrap();
        assert_eq!(key_id_of(&migrated), Some(new.key_id().as_str()));
        assert_eq!(decrypt(&only_new, &migrated, AAD).unwrap().expose(), SECRET);

        // A value moved to another row is refused, not resealed under the new row's AAD.
        assert!(matches!(
            reseal(&ring, &under_old, "merchant:1002:secret"),
            Err(EnvelopeError::Authentication { .. })
        ));
    }

    #[test]
    fn debug_never_shows_keys_or_plaintext() {
        let (keys, k) = ring();
        let dbg = format!("{keys:?}");
        assert!(dbg.contains(&k.key_id()));
        assert!(!dbg.contains(&k.to_hex().expose()[..16]));
        let stored = encrypt(&k, SECRET, AAD);
        let secret = decrypt(&keys, &stored, AAD).unwrap();
        assert!(!format!("{secret:?}").contains(SECRET));
    }
}
