//! Tokens beside USDT (issue 16): the live payable slot becomes per (network, token, address,
//! amount) — a USDC order and a USDT order may wait for the same amount on the same wallet,
//! since crediting matches the token too — and every recorded transfer carries its token
//! (`transfers.token`; rows recorded before are USDT, the only token there was).
//!
//! The index keeps its name `orders_live_slot_key` (the service recognises its violations by
//! that name, and on SQLite by the column list). The free-slot search index gains the token.
use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Orders {
    Table,
    Network,
    Token,
    Address,
    ActualAmount,
    LiveSlot,
}

#[derive(DeriveIden)]
enum Transfers {
    Table,
    Token,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// Our own transaction instead of the runner's: one connection for every statement, and on
    /// SQLite `BEGIN IMMEDIATE`. Without it (SQLite migrations run outside a transaction, each
    /// statement on any pooled connection) a connection on an older snapshot saw the dropped
    /// index and refused to create it again ("already exists"); with a deferred transaction the
    /// first write could fail with "database is locked" (`store::begin_write` explains why).
    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        use sea_orm_migration::sea_orm::{
            SqliteTransactionMode, TransactionOptions, TransactionTrait,
        };
        let txn = m
            .get_connection()
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await?;
        let t = SchemaManager::new(&txn);
        t.alter_table(
            Table::alter()
                .table(Transfers::Table)
                .add_column(
                    ColumnDef::new(Transfers::Token)
                        .string_len(16)
                        .not_null()
                        .default("USDT"),
                )
                .to_owned(),
        )
        .await?;
        drop_index(&t, "orders_live_slot_key").await?;
        t.create_index(
            Index::create()
                .name("orders_live_slot_key")
                .table(Orders::Table)
                .col(Orders::Network)
                .col(Orders::Token)
                .col(Orders::Address)
                .col(Orders::ActualAmount)
                .col(Orders::LiveSlot)
                .unique()
                .to_owned(),
        )
        .await?;
        drop_index(&t, "orders_network_amount_live_idx").await?;
        t.create_index(
            Index::create()
                .name("orders_network_amount_live_idx")
                .table(Orders::Table)
                .col(Orders::Network)
                .col(Orders::Token)
                .col(Orders::ActualAmount)
                .col(Orders::LiveSlot)
                .to_owned(),
        )
        .await?;
        txn.commit().await
    }
}

/// `DROP INDEX` as each backend spells it (MySQL names the table).
async fn drop_index(m: &SchemaManager<'_>, name: &str) -> Result<(), DbErr> {
    let sql = match m.get_database_backend() {
        DbBackend::MySql => format!("DROP INDEX `{name}` ON `orders`"),
        _ => format!("DROP INDEX \"{name}\""),
    };
    m.get_connection().execute_unprepared(&sql).await.map(drop)
}
