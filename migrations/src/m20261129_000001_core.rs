//! The core aggregates: merchants, wallets, orders, transfers, chain cursors, callback attempts,
//! admins, audit log and settings.
//!
//! Portability notes: amounts are canonical decimal strings (exact on every backend; SQLite has
//! no exact decimal type), timestamps are unix seconds (BIGINT). The "one live order per
//! (network, address, amount)" rule is a plain unique index over a `live_slot` column that is 1
//! while the order is waiting and NULL otherwise: NULLs never collide in a unique index on any of
//! the three databases, so finished orders free their slot without partial indexes (MySQL has none).
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Merchants {
    Table,
    Id,
    Pid,
    Name,
    Secret,
    StrictReplay,
    Enabled,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Wallets {
    Table,
    Id,
    MerchantId,
    Network,
    Address,
    Label,
    Enabled,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Orders {
    Table,
    Id,
    TradeId,
    MerchantId,
    OrderId,
    Protocol,
    Network,
    Token,
    Currency,
    Amount,
    Rate,
    ActualAmount,
    Address,
    Status,
    LiveSlot,
    Flags,
    NotifyUrl,
    RedirectUrl,
    Name,
    RequestHash,
    BlockTransactionId,
    PaidAmount,
    CallbackState,
    CallbackAttempts,
    CreatedAt,
    UpdatedAt,
    ExpiresAt,
    PaidAt,
}

#[derive(DeriveIden)]
enum Transfers {
    Table,
    Id,
    Network,
    TxHash,
    LogIndex,
    BlockNumber,
    BlockHash,
    TokenContract,
    FromAddress,
    ToAddress,
    Amount,
    BlockTime,
    OrderId,
    Kind,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ChainCursors {
    Table,
    Network,
    BlockNumber,
    BlockHash,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum CallbackAttempts {
    Table,
    Id,
    OrderId,
    Attempt,
    AttemptedAt,
    HttpStatus,
    LatencyMs,
    BodyExcerpt,
    Error,
    Success,
}

#[derive(DeriveIden)]
enum Admins {
    Table,
    Id,
    Username,
    PasswordHash,
    MustChangePassword,
    FailedLogins,
    LockedUntil,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    At,
    Actor,
    Action,
    Target,
    Ip,
    Details,
}

#[derive(DeriveIden)]
enum Settings {
    Table,
    Key,
    Value,
    UpdatedAt,
}

fn unique(name: &str, table: impl IntoIden, cols: Vec<DynIden>) -> IndexCreateStatement {
    let mut idx = Index::create();
    idx.name(name).table(table).unique();
    for c in cols {
        idx.col(c);
    }
    idx.to_owned()
}

fn index(name: &str, table: impl IntoIden, cols: Vec<DynIden>) -> IndexCreateStatement {
    let mut idx = Index::create();
    idx.name(name).table(table);
    for c in cols {
        idx.col(c);
    }
    idx.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Merchants::Table)
                .col(big_pk_auto(Merchants::Id))
                .col(big_integer(Merchants::Pid))
                .col(string_len(Merchants::Name, 64))
                .col(string_len(Merchants::Secret, 512))
                .col(boolean(Merchants::StrictReplay).default(false))
                .col(boolean(Merchants::Enabled).default(true))
                .col(big_integer(Merchants::CreatedAt))
                .col(big_integer(Merchants::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(unique(
            "merchants_pid_key",
            Merchants::Table,
            vec![Merchants::Pid.into_iden()],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(Wallets::Table)
                .col(big_pk_auto(Wallets::Id))
                .col(big_integer_null(Wallets::MerchantId))
                .col(string_len(Wallets::Network, 16))
                .col(string_len(Wallets::Address, 64))
                .col(string_len(Wallets::Label, 64).default(""))
                .col(boolean(Wallets::Enabled).default(true))
                .col(big_integer(Wallets::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(unique(
            "wallets_network_address_key",
            Wallets::Table,
            vec![Wallets::Network.into_iden(), Wallets::Address.into_iden()],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(Orders::Table)
                .col(big_pk_auto(Orders::Id))
                .col(string_len(Orders::TradeId, 32))
                .col(big_integer(Orders::MerchantId))
                .col(string_len(Orders::OrderId, 64))
                .col(string_len(Orders::Protocol, 8))
                .col(string_len(Orders::Network, 16))
                .col(string_len(Orders::Token, 16))
                .col(string_len(Orders::Currency, 8))
                .col(string_len(Orders::Amount, 40))
                .col(string_len(Orders::Rate, 40))
                .col(string_len(Orders::ActualAmount, 40))
                .col(string_len(Orders::Address, 64))
                .col(small_integer(Orders::Status))
                .col(small_integer_null(Orders::LiveSlot))
                .col(integer(Orders::Flags).default(0))
                .col(string_len(Orders::NotifyUrl, 512))
                .col(string_len(Orders::RedirectUrl, 512).default(""))
                .col(string_len(Orders::Name, 128).default(""))
                .col(string_len(Orders::RequestHash, 64))
                .col(string_len_null(Orders::BlockTransactionId, 128))
                .col(string_len_null(Orders::PaidAmount, 40))
                .col(small_integer(Orders::CallbackState).default(0))
                .col(integer(Orders::CallbackAttempts).default(0))
                .col(big_integer(Orders::CreatedAt))
                .col(big_integer(Orders::UpdatedAt))
                .col(big_integer(Orders::ExpiresAt))
                .col(big_integer_null(Orders::PaidAt))
                .to_owned(),
        )
        .await?;
        m.create_index(unique(
            "orders_trade_id_key",
            Orders::Table,
            vec![Orders::TradeId.into_iden()],
        ))
        .await?;
        m.create_index(unique(
            "orders_merchant_order_id_key",
            Orders::Table,
            vec![Orders::MerchantId.into_iden(), Orders::OrderId.into_iden()],
        ))
        .await?;
        m.create_index(unique(
            "orders_live_slot_key",
            Orders::Table,
            vec![
                Orders::Network.into_iden(),
                Orders::Address.into_iden(),
                Orders::ActualAmount.into_iden(),
                Orders::LiveSlot.into_iden(),
            ],
        ))
        .await?;
        m.create_index(index(
            "orders_status_expires_idx",
            Orders::Table,
            vec![Orders::Status.into_iden(), Orders::ExpiresAt.into_iden()],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(Transfers::Table)
                .col(big_pk_auto(Transfers::Id))
                .col(string_len(Transfers::Network, 16))
                .col(string_len(Transfers::TxHash, 128))
                .col(big_integer(Transfers::LogIndex))
                .col(big_integer(Transfers::BlockNumber))
                .col(string_len(Transfers::BlockHash, 128).default(""))
                .col(string_len(Transfers::TokenContract, 64))
                .col(string_len(Transfers::FromAddress, 64))
                .col(string_len(Transfers::ToAddress, 64))
                .col(string_len(Transfers::Amount, 80))
                .col(big_integer(Transfers::BlockTime))
                .col(big_integer_null(Transfers::OrderId))
                .col(string_len(Transfers::Kind, 16))
                .col(big_integer(Transfers::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(unique(
            "transfers_network_tx_log_key",
            Transfers::Table,
            vec![
                Transfers::Network.into_iden(),
                Transfers::TxHash.into_iden(),
                Transfers::LogIndex.into_iden(),
            ],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(ChainCursors::Table)
                .col(string_len(ChainCursors::Network, 16).primary_key())
                .col(big_integer(ChainCursors::BlockNumber))
                .col(string_len(ChainCursors::BlockHash, 128).default(""))
                .col(big_integer(ChainCursors::UpdatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(CallbackAttempts::Table)
                .col(big_pk_auto(CallbackAttempts::Id))
                .col(big_integer(CallbackAttempts::OrderId))
                .col(integer(CallbackAttempts::Attempt))
                .col(big_integer(CallbackAttempts::AttemptedAt))
                .col(integer_null(CallbackAttempts::HttpStatus))
                .col(big_integer(CallbackAttempts::LatencyMs))
                .col(string_len(CallbackAttempts::BodyExcerpt, 512).default(""))
                .col(string_len(CallbackAttempts::Error, 512).default(""))
                .col(boolean(CallbackAttempts::Success))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "callback_attempts_order_idx",
            CallbackAttempts::Table,
            vec![CallbackAttempts::OrderId.into_iden()],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(Admins::Table)
                .col(big_pk_auto(Admins::Id))
                .col(string_len(Admins::Username, 64))
                .col(string_len(Admins::PasswordHash, 256))
                .col(boolean(Admins::MustChangePassword).default(true))
                .col(integer(Admins::FailedLogins).default(0))
                .col(big_integer_null(Admins::LockedUntil))
                .col(big_integer(Admins::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(unique(
            "admins_username_key",
            Admins::Table,
            vec![Admins::Username.into_iden()],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(AuditLog::Table)
                .col(big_pk_auto(AuditLog::Id))
                .col(big_integer(AuditLog::At))
                .col(string_len(AuditLog::Actor, 64))
                .col(string_len(AuditLog::Action, 64))
                .col(string_len(AuditLog::Target, 128).default(""))
                .col(string_len(AuditLog::Ip, 64).default(""))
                .col(text(AuditLog::Details))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Settings::Table)
                .col(string_len(Settings::Key, 64).primary_key())
                .col(text(Settings::Value))
                .col(big_integer(Settings::UpdatedAt))
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
