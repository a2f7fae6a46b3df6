//! `order_choices`: a GMPay order created without `token` and `network` (upstream's status 4,
//! "waiting for the payer to choose token and network"). It has no network, address or payable
//! amount yet, so it is not an `orders` row: the watcher, the slot index and the callbacks never
//! see it. `POST /pay/switch-network` turns it into an `orders` row with the SAME `trade_id`
//! and marks the choice `chosen`; from then on the order row is the truth.
//!
//! `status`: 0 choosing, 1 chosen (an order row with this trade_id exists), 2 cancelled.
//! Expiry is not stored: a choice past `expires_at` reads as expired.
//!
//! Also `orders_parent_trade_id_key`: at most one child order (a payer's network switch) per
//! parent, ever.
use sea_orm_migration::{prelude::*, schema::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OrderChoices {
    Table,
    Id,
    TradeId,
    MerchantId,
    OrderId,
    Protocol,
    Currency,
    Amount,
    NotifyUrl,
    RedirectUrl,
    Name,
    RequestHash,
    SignAlg,
    EpayType,
    TimeoutSecs,
    Status,
    CreatedAt,
    UpdatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Orders {
    Table,
    ParentTradeId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(OrderChoices::Table)
                .col(big_pk_auto(OrderChoices::Id))
                .col(string_len(OrderChoices::TradeId, 32))
                .col(big_integer(OrderChoices::MerchantId))
                .col(string_len(OrderChoices::OrderId, 64))
                .col(string_len(OrderChoices::Protocol, 8))
                .col(string_len(OrderChoices::Currency, 8))
                .col(string_len(OrderChoices::Amount, 40))
                .col(string_len(OrderChoices::NotifyUrl, 512))
                .col(string_len(OrderChoices::RedirectUrl, 512).default(""))
                .col(string_len(OrderChoices::Name, 128).default(""))
                .col(string_len(OrderChoices::RequestHash, 64))
                .col(string_len(OrderChoices::SignAlg, 16).default(""))
                .col(string_len(OrderChoices::EpayType, 64).default(""))
                .col(big_integer_null(OrderChoices::TimeoutSecs))
                .col(small_integer(OrderChoices::Status))
                .col(big_integer(OrderChoices::CreatedAt))
                .col(big_integer(OrderChoices::UpdatedAt))
                .col(big_integer(OrderChoices::ExpiresAt))
                .to_owned(),
        )
        .await?;
        if m.get_database_backend() == DbBackend::MySql {
            // Identifiers compare byte-wise, as on the other backends (see migration 000003).
            let db = m.get_connection();
            for (column, ty) in [("trade_id", "VARCHAR(32)"), ("order_id", "VARCHAR(64)")] {
                db.execute_unprepared(&format!(
                    "ALTER TABLE `order_choices` MODIFY `{column}` {ty} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL"
                ))
                .await?;
            }
        }
        m.create_index(
            Index::create()
                .name("order_choices_trade_id_key")
                .table(OrderChoices::Table)
                .col(OrderChoices::TradeId)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("order_choices_merchant_order_id_key")
                .table(OrderChoices::Table)
                .col(OrderChoices::MerchantId)
                .col(OrderChoices::OrderId)
                .unique()
                .to_owned(),
        )
        .await?;
        // One child per parent, ever (upstream's MaxSubOrders = 1). NULLs never collide, so
        // ordinary orders are unaffected on every backend.
        m.create_index(
            Index::create()
                .name("orders_parent_trade_id_key")
                .table(Orders::Table)
                .col(Orders::ParentTradeId)
                .unique()
                .to_owned(),
        )
        .await
    }
}
