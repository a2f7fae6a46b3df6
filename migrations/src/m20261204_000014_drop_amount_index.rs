//! One live-slot index instead of two. `orders_network_amount_live_idx` (network, token,
//! amount, live slot) served only the free-slot search, which now asks the unique slot key
//! `orders_live_slot_key` (network, token, address, amount, live slot) with the network's
//! receive addresses listed — one probe per wallet. Both indexes are keyed by the payer's
//! random amount, so every insert wrote a random leaf page of each: with a million orders in
//! SQLite the second index alone cost ~30 % of create throughput (wiki/BENCHMARKS.md, "Not met
//! yet"). Down restores it as m000012 left it.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Orders {
    Table,
    Network,
    Token,
    ActualAmount,
    LiveSlot,
}

const NAME: &str = "orders_network_amount_live_idx";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name(NAME).table(Orders::Table).to_owned())
            .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name(NAME)
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
