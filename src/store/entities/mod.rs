//! sea-orm entities, one per table of the core migration.
pub mod admin;
pub mod admin_login_failure;
pub mod admin_refresh_token;
pub mod audit_log;
pub mod callback_attempt;
pub mod chain_cursor;
pub mod merchant;
pub mod order;
pub mod order_choice;
pub mod pending_transfer;
pub mod setting;
pub mod transfer;
pub mod wallet;
