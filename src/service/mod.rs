//! Use cases. HTTP handlers, the CLI, jobs and chain watchers call these plain async functions;
//! they never see axum types, and they never change an order's status except through
//! `domain::order::OrderStatus::transition` + a compare-and-swap update.
pub mod admin;
pub mod backup;
pub mod cache;
pub mod epay_return;
pub mod import;
pub mod merchant;
pub mod merchant_access;
pub mod notify;
pub mod order;
pub mod rate;
pub mod retention;
pub mod stats;
pub mod telegram;
pub mod wallet;

/// Unix seconds now.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
