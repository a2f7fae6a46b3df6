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
    /// One transaction on one connection, on every backend: on SQLite (no transaction by
    /// default, statements spread over the pool) a pooled connection still holding an older
    /// read snapshot saw the dropped index and refused to create it again ("already exists").
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
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
        drop_index(m, "orders_live_slot_key").await?;
        m.create_index(
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
        drop_index(m, "orders_network_amount_live_idx").await?;
        m.create_index(
            Index::create()
                .name("orders_network_amount_live_idx")
                .table(Orders::Table)
                .col(Orders::Network)
                .col(Orders::Token)
                .col(Orders::ActualAmount)
                .col(Orders::LiveSlot)
                .to_owned(),
        )
        .await
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
