use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "merchants")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub pid: i64,
    pub name: String,
    /// API token / signing secret. Never logged (see `service::merchant::Merchant`'s Debug).
    pub secret: String,
    pub strict_replay: bool,
    /// GMPay verification: `dual` (HMAC-SHA256 or MD5), `md5` or `hmac_sha256`.
    pub sign_mode: String,
    pub enabled: bool,
    /// Comma-separated IPs/CIDRs the merchant's signed requests may come from; empty = any.
    pub ip_allowlist: String,
    /// The secret before the last rotation (sealed, AAD `merchant:<pid>:previous_secret`),
    /// accepted until `previous_secret_until` (`secret_overlap_secs`).
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<i64>,
    /// Signed requests per minute for this merchant; None = `rate_limit_merchant_per_minute`,
    /// 0 = unlimited.
    pub rate_limit_per_minute: Option<i32>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
