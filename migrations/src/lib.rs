//! Versioned schema migrations (sea-orm-migration), identical on SQLite, PostgreSQL and MySQL.
//!
//! Migrations are append-only: never edit one that has shipped; add a new one. Every unique
//! constraint is named, because the service layer maps named violations to protocol errors.
//! Never name a table `wallet_address` or `api_keys`, nor drop `orders.live_slot`: they tell an
//! upstream epusdt database apart, which `migrate` refuses to touch (`store::upstream`).
pub use sea_orm_migration::prelude::*;

mod m20261129_000001_core;
mod m20261129_000002_nonces;
mod m20261129_000003_mysql_binary_keys;
mod m20261129_000004_orders_amount_index;
mod m20261202_000005_callback_due;
mod m20261202_000006_compat_columns;
mod m20261202_000007_order_choices;
mod m20261202_000008_admins;
mod m20261202_000009_merchant_admin;
mod m20261202_000010_merchant_rate_limit;
mod m20261202_000011_telegram;
mod m20261202_000012_token_slots;
mod m20261202_000013_pending_transfers;
mod m20261204_000014_drop_amount_index;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261129_000001_core::Migration),
            Box::new(m20261129_000002_nonces::Migration),
            Box::new(m20261129_000003_mysql_binary_keys::Migration),
            Box::new(m20261129_000004_orders_amount_index::Migration),
            Box::new(m20261202_000005_callback_due::Migration),
            Box::new(m20261202_000006_compat_columns::Migration),
            Box::new(m20261202_000007_order_choices::Migration),
            Box::new(m20261202_000008_admins::Migration),
            Box::new(m20261202_000009_merchant_admin::Migration),
            Box::new(m20261202_000010_merchant_rate_limit::Migration),
            Box::new(m20261202_000011_telegram::Migration),
            Box::new(m20261202_000012_token_slots::Migration),
            Box::new(m20261202_000013_pending_transfers::Migration),
            Box::new(m20261204_000014_drop_amount_index::Migration),
        ]
    }
}
