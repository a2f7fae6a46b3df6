//! `pending_transfers`: transfers a chain watcher sees in blocks above the confirmed head that
//! would pay an order (BEpusdt's status 5, "confirming"). Display only: nothing here is ever
//! credited, and crediting never reads it. The watcher replaces a network's rows after every
//! round (a transfer whose block vanished disappears), so any instance can answer check-status
//! from it. `fresh_until` (unix s) bounds how long a row is believed when its watcher stops
//! refreshing it.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PendingTransfers {
    Table,
    Id,
    Network,
    TxHash,
    LogIndex,
    BlockNumber,
    OrderId,
    TradeId,
    Confirmations,
    ConfirmationsRequired,
    SeenAt,
    FreshUntil,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(PendingTransfers::Table)
                .col(big_pk_auto(PendingTransfers::Id))
                .col(string_len(PendingTransfers::Network, 16))
                .col(string_len(PendingTransfers::TxHash, 128))
                .col(big_integer(PendingTransfers::LogIndex))
                .col(big_integer(PendingTransfers::BlockNumber))
                .col(big_integer(PendingTransfers::OrderId))
                .col(string_len(PendingTransfers::TradeId, 32))
                .col(big_integer(PendingTransfers::Confirmations))
                .col(big_integer(PendingTransfers::ConfirmationsRequired))
                .col(big_integer(PendingTransfers::SeenAt))
                .col(big_integer(PendingTransfers::FreshUntil))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("pending_transfers_network_tx_log_key")
                .table(PendingTransfers::Table)
                .col(PendingTransfers::Network)
                .col(PendingTransfers::TxHash)
                .col(PendingTransfers::LogIndex)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("pending_transfers_order_id_idx")
                .table(PendingTransfers::Table)
                .col(PendingTransfers::OrderId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(PendingTransfers::Table).to_owned())
            .await
    }
}
