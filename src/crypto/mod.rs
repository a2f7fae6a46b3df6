//! Cryptography: merchant request/callback signatures.
pub mod sign;
