//! `request_nonces`: single-use GMPay replay nonces (when Redis is not configured).
//!
//! Single use is the unique index `request_nonces_pid_nonce_key` (insert; a violation means the
//! nonce was reused), never SELECT-then-INSERT. Nonces are case-sensitive: on MySQL the column
//! gets a binary collation, because the default `*_ci` collation would make `AbC` collide with
//! `abc` there but not on SQLite or PostgreSQL.
use sea_orm_migration::{prelude::*, schema::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RequestNonces {
    Table,
    Id,
    Pid,
    Nonce,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let mut nonce = string_len(RequestNonces::Nonce, 64);
        if m.get_database_backend() == DbBackend::MySql {
            // The collation must follow the type directly, so spell the whole type out.
            nonce.custom(Alias::new(
                "varchar(64) CHARACTER SET ascii COLLATE ascii_bin",
            ));
        }
        m.create_table(
            Table::create()
                .table(RequestNonces::Table)
                .col(big_pk_auto(RequestNonces::Id))
                .col(big_integer(RequestNonces::Pid))
                .col(nonce)
                .col(big_integer(RequestNonces::ExpiresAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("request_nonces_pid_nonce_key")
                .table(RequestNonces::Table)
                .col(RequestNonces::Pid)
                .col(RequestNonces::Nonce)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("request_nonces_expires_at_idx")
                .table(RequestNonces::Table)
                .col(RequestNonces::ExpiresAt)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(RequestNonces::Table).to_owned())
            .await
    }
}
