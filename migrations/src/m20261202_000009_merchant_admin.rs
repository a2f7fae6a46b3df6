//! Merchant settings of the admin API (issue 12):
//! - `merchants.ip_allowlist`: comma-separated IPs/CIDRs the merchant's signed requests may come
//!   from; empty = any address;
//! - `merchants.previous_secret` / `previous_secret_until`: after a rotation with
//!   `secret_overlap_secs` > 0, the old secret (sealed under the master key like the current one,
//!   AAD `merchant:<pid>:previous_secret`) keeps verifying requests until that unix time.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Merchants {
    Table,
    IpAllowlist,
    PreviousSecret,
    PreviousSecretUntil,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one column at a time.
        let columns = [
            string_len(Merchants::IpAllowlist, 2000)
                .default("")
                .to_owned(),
            string_len_null(Merchants::PreviousSecret, 512).to_owned(),
            big_integer_null(Merchants::PreviousSecretUntil).to_owned(),
        ];
        for mut col in columns {
            m.alter_table(
                Table::alter()
                    .table(Merchants::Table)
                    .add_column(&mut col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for col in [
            Merchants::PreviousSecretUntil,
            Merchants::PreviousSecret,
            Merchants::IpAllowlist,
        ] {
            m.alter_table(
                Table::alter()
                    .table(Merchants::Table)
                    .drop_column(col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
