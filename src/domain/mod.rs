//! Pure domain types. Depends on nothing else in the crate and performs no I/O.
pub mod address;
pub mod admin;
pub mod amount;
pub mod currency;
pub mod network;
pub mod notice;
pub mod order;
pub mod protocol;
pub mod transfer;
