//! Admin accounts for the admin API (issue 12). The core migration made `admins` (username,
//! argon2id hash, failure counters); this adds what the API needs:
//! - `admins.role` (`owner`, `admin`, `viewer`), `disabled`, `updated_at`;
//! - `admins.totp_secret`: the RFC 6238 secret, AES-256-GCM sealed under the master key (NULL
//!   when none is set up), `totp_enabled` once a code confirmed it, `totp_last_step` so a code
//!   is accepted once;
//! - `admins.session_version`: bumped on password change, role change, disable and TOTP reset;
//!   an access token names the version it was issued under, so those changes end every session;
//! - `admin_refresh_tokens`: refresh tokens stored as SHA-256 hashes, grouped in families (one
//!   per login); a rotated token names its successor (`replaced_by`);
//! - `admin_login_failures`: one row per failed login, the window behind the lockout (also for
//!   unknown usernames, so the reply cannot tell them apart).
//!
//! The JWT signing key is a `settings` row (`admin_jwt_key`), sealed like merchant secrets.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Admins {
    Table,
    Role,
    TotpSecret,
    TotpEnabled,
    TotpLastStep,
    Disabled,
    SessionVersion,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AdminRefreshTokens {
    Table,
    Id,
    TokenHash,
    FamilyId,
    AdminId,
    CreatedAt,
    ExpiresAt,
    Revoked,
    ReplacedBy,
}

#[derive(DeriveIden)]
enum AdminLoginFailures {
    Table,
    Id,
    Username,
    At,
    Ip,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one column at a time.
        let columns = [
            string_len(Admins::Role, 16).default("viewer").to_owned(),
            string_len_null(Admins::TotpSecret, 512).to_owned(),
            boolean(Admins::TotpEnabled).default(false).to_owned(),
            big_integer_null(Admins::TotpLastStep).to_owned(),
            boolean(Admins::Disabled).default(false).to_owned(),
            integer(Admins::SessionVersion).default(0).to_owned(),
            big_integer(Admins::UpdatedAt).default(0).to_owned(),
        ];
        for mut col in columns {
            m.alter_table(
                Table::alter()
                    .table(Admins::Table)
                    .add_column(&mut col)
                    .to_owned(),
            )
            .await?;
        }

        m.create_table(
            Table::create()
                .table(AdminRefreshTokens::Table)
                .col(big_pk_auto(AdminRefreshTokens::Id))
                .col(string_len(AdminRefreshTokens::TokenHash, 64))
                .col(string_len(AdminRefreshTokens::FamilyId, 64))
                .col(big_integer(AdminRefreshTokens::AdminId))
                .col(big_integer(AdminRefreshTokens::CreatedAt))
                .col(big_integer(AdminRefreshTokens::ExpiresAt))
                .col(boolean(AdminRefreshTokens::Revoked).default(false))
                .col(big_integer_null(AdminRefreshTokens::ReplacedBy))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("admin_refresh_tokens_hash_key")
                .table(AdminRefreshTokens::Table)
                .col(AdminRefreshTokens::TokenHash)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("admin_refresh_tokens_family_idx")
                .table(AdminRefreshTokens::Table)
                .col(AdminRefreshTokens::FamilyId)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("admin_refresh_tokens_admin_idx")
                .table(AdminRefreshTokens::Table)
                .col(AdminRefreshTokens::AdminId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(AdminLoginFailures::Table)
                .col(big_pk_auto(AdminLoginFailures::Id))
                .col(string_len(AdminLoginFailures::Username, 64))
                .col(big_integer(AdminLoginFailures::At))
                .col(string_len(AdminLoginFailures::Ip, 64).default(""))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("admin_login_failures_username_at_idx")
                .table(AdminLoginFailures::Table)
                .col(AdminLoginFailures::Username)
                .col(AdminLoginFailures::At)
                .to_owned(),
        )
        .await
    }
}
