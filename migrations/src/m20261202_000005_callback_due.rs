//! `orders.callback_due_at`: when the next callback attempt of a queued callback is due (unix
//! seconds). The sweeper re-queues a callback that is long overdue, because its job was lost
//! (Redis flushed, a queue file lost, a job dropped after repeated handler failures).
use sea_orm_migration::{prelude::*, schema::big_integer_null};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Orders {
    Table,
    CallbackDueAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Orders::Table)
                .add_column(big_integer_null(Orders::CallbackDueAt))
                .to_owned(),
        )
        .await
    }
}
