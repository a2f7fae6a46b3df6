//! MySQL/MariaDB compare text case-insensitively by default (`utf8mb4_general_ci`), which would
//! make `order_id` "A-1" and "a-1" the same order, and TRON base58 addresses (case-sensitive)
//! collide. This migration gives every identifier column a binary collation on MySQL, so the
//! named unique keys mean on MySQL what they mean on SQLite and PostgreSQL. No-op elsewhere.
use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// (table, column, type, nullable)
const COLUMNS: &[(&str, &str, &str, bool)] = &[
    ("orders", "trade_id", "VARCHAR(32)", false),
    ("orders", "order_id", "VARCHAR(64)", false),
    ("orders", "address", "VARCHAR(64)", false),
    ("orders", "actual_amount", "VARCHAR(40)", false),
    ("orders", "block_transaction_id", "VARCHAR(128)", true),
    ("wallets", "address", "VARCHAR(64)", false),
    ("transfers", "tx_hash", "VARCHAR(128)", false),
    ("transfers", "to_address", "VARCHAR(64)", false),
    ("transfers", "from_address", "VARCHAR(64)", false),
    ("settings", "key", "VARCHAR(64)", false),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() != DbBackend::MySql {
            return Ok(());
        }
        let db = m.get_connection();
        for (table, column, ty, nullable) in COLUMNS {
            let null = if *nullable { "NULL" } else { "NOT NULL" };
            db.execute_unprepared(&format!(
                "ALTER TABLE `{table}` MODIFY `{column}` {ty} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin {null}"
            ))
            .await?;
        }
        Ok(())
    }
}
