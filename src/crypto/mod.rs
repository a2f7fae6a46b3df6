//! Cryptography: merchant request/callback signatures (`sign`), the master key (`master_key`),
//! AES-256-GCM envelope encryption of stored secrets (`envelope`) and the runtime keyring
//! (`keys`).
pub mod envelope;
pub mod keys;
pub mod master_key;
pub mod sign;
