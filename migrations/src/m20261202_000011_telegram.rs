//! Telegram bot (issue 13): `admins.telegram_id` links a Telegram user to an admin account (the
//! bot acts with that admin's role; unique, NULL = not linked) and `admins.tg_notify` is the
//! admin's opt-in to notices (which kinds: the `tg_notify` config key).
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Admins {
    Table,
    TelegramId,
    TgNotify,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one column at a time.
        m.alter_table(
            Table::alter()
                .table(Admins::Table)
                .add_column(big_integer_null(Admins::TelegramId).to_owned())
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Admins::Table)
                .add_column(boolean(Admins::TgNotify).default(false).to_owned())
                .to_owned(),
        )
        .await?;
        // NULLs never collide in a unique index on SQLite, PostgreSQL or MySQL.
        m.create_index(
            Index::create()
                .name("admins_telegram_id_key")
                .table(Admins::Table)
                .col(Admins::TelegramId)
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("admins_telegram_id_key")
                .table(Admins::Table)
                .to_owned(),
        )
        .await?;
        for col in [Admins::TgNotify, Admins::TelegramId] {
            m.alter_table(
                Table::alter()
                    .table(Admins::Table)
                    .drop_column(col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
