//! Per-merchant rate limit (issue 12): `merchants.rate_limit_per_minute` overrides
//! `rate_limit_merchant_per_minute` for one merchant's signed requests. NULL = the configured
//! default; 0 = unlimited.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Merchants {
    Table,
    RateLimitPerMinute,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Merchants::Table)
                .add_column(integer_null(Merchants::RateLimitPerMinute))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Merchants::Table)
                .drop_column(Merchants::RateLimitPerMinute)
                .to_owned(),
        )
        .await
    }
}
