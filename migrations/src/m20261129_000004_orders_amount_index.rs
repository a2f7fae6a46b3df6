//! Index for the free-slot search: "which of these ~100 candidate amounts are held by waiting
//! orders on this network". The unique slot key leads with the address, so PostgreSQL 15 scanned
//! every live order of the merchant's wallets for it (measured: the query dominated create-order
//! under load); this index answers it with one probe per candidate amount.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Orders {
    Table,
    Network,
    ActualAmount,
    LiveSlot,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name("orders_network_amount_live_idx")
                .table(Orders::Table)
                .col(Orders::Network)
                .col(Orders::ActualAmount)
                .col(Orders::LiveSlot)
                .to_owned(),
        )
        .await
    }
}
