//! argon2id password hashes (PHC strings, the crate's default parameters: 19 MiB, 2 passes).
//! Hashing runs on the blocking pool: it takes tens of milliseconds on purpose.
use std::sync::OnceLock;

use argon2::{
    Argon2,
    password_hash::{PasswordHasher, PasswordVerifier},
};

use super::AdminError;
use crate::secret::Secret;

pub async fn hash(password: Secret) -> Result<String, AdminError> {
    tokio::task::spawn_blocking(move || hash_now(password.expose()))
        .await
        .map_err(|e| AdminError::Hash(e.to_string()))?
}

fn hash_now(password: &str) -> Result<String, AdminError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| AdminError::Hash(e.to_string()))
}

/// Checks `password` against `stored`; with `None` (unknown user, disabled account) it checks
/// against a hash of a random password, so the answer takes as long either way.
pub async fn verify(password: Secret, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| dummy_hash().to_owned());
        let ok = Argon2::default()
            .verify_password(password.expose().as_bytes(), hash.as_str())
            .is_ok();
        ok && known
    })
    .await
    .unwrap_or(false)
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let random = super::generate_password();
        hash_now(random.expose()).unwrap_or_default()
    })
}

/// Computes the stand-in hash ahead of the first login, so the first unknown-user reply is not
/// slower than the rest.
pub fn warm_up() {
    let _ = dummy_hash();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let h = hash(Secret::new("correct horse battery")).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(verify(Secret::new("correct horse battery"), Some(h.clone())).await);
        assert!(!verify(Secret::new("wrong horse battery"), Some(h)).await);
        assert!(!verify(Secret::new("anything at all"), None).await);
    }
}
