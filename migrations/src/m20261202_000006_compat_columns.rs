//! Columns for drop-in compatibility with every epusdt variant (issue 11):
//! - `merchants.sign_mode`: how a GMPay merchant's requests are verified — `dual` (HMAC-SHA256
//!   or MD5, the default), `md5` or `hmac_sha256`.
//! - `orders.sign_alg`: the algorithm the create request was signed with (`md5`,
//!   `hmac_sha256`; empty = the protocol's own), so the callback is signed the same way.
//! - `orders.epay_type`: the EPay `type` as the shop sent it (empty when it sent none), echoed
//!   in the EPay notify and return.
//! - `orders.parent_trade_id`: the order a payer's network switch was made from.
use sea_orm_migration::{
    prelude::*,
    schema::{string_len, string_len_null},
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Merchants {
    Table,
    SignMode,
}

#[derive(DeriveIden)]
enum Orders {
    Table,
    SignAlg,
    EpayType,
    ParentTradeId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Merchants::Table)
                .add_column(string_len(Merchants::SignMode, 16).default("dual"))
                .to_owned(),
        )
        .await?;
        // One column per statement: SQLite's ALTER TABLE adds one column at a time.
        m.alter_table(
            Table::alter()
                .table(Orders::Table)
                .add_column(string_len(Orders::SignAlg, 16).default(""))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Orders::Table)
                .add_column(string_len(Orders::EpayType, 64).default(""))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Orders::Table)
                .add_column(string_len_null(Orders::ParentTradeId, 64))
                .to_owned(),
        )
        .await
    }
}
