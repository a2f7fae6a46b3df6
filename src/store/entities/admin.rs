use sea_orm::entity::prelude::*;

/// An admin account. `password_hash` is an argon2id PHC string; `totp_secret` is sealed under
/// the master key (AAD `admin:<id>:totp`). Neither is ever logged: `Debug` redacts both.
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "admins")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub must_change_password: bool,
    pub failed_logins: i32,
    pub locked_until: Option<i64>,
    pub created_at: i64,
    /// `owner`, `admin` or `viewer`.
    pub role: String,
    pub totp_secret: Option<String>,
    pub totp_enabled: bool,
    /// The last TOTP time step accepted (a code is accepted once).
    pub totp_last_step: Option<i64>,
    pub disabled: bool,
    /// Bumped on password change, role change, disable and TOTP reset: older tokens stop working.
    pub session_version: i32,
    pub updated_at: i64,
    /// The Telegram user linked to this account (the bot acts with its role); unique.
    pub telegram_id: Option<i64>,
    /// Whether this admin receives the bot's notices (kinds: `tg_notify`).
    pub tg_notify: bool,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("role", &self.role)
            .field("totp_enabled", &self.totp_enabled)
            .field("disabled", &self.disabled)
            .field("telegram_id", &self.telegram_id)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
