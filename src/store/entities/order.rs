use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "orders")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub trade_id: String,
    pub merchant_id: i64,
    pub order_id: String,
    pub protocol: String,
    pub network: String,
    pub token: String,
    pub currency: String,
    /// Fiat amount, canonical decimal string.
    pub amount: String,
    pub rate: String,
    /// Payable USDT amount, canonical decimal string (the slot).
    pub actual_amount: String,
    pub address: String,
    pub status: i16,
    /// 1 while the order reserves its amount slot: while waiting, and for the slot-reuse grace
    /// period after it expired or was cancelled; NULL otherwise.
    pub live_slot: Option<i16>,
    pub flags: i32,
    pub notify_url: String,
    pub redirect_url: String,
    pub name: String,
    pub request_hash: String,
    pub block_transaction_id: Option<String>,
    pub paid_amount: Option<String>,
    pub callback_state: i16,
    pub callback_attempts: i32,
    /// When the next callback attempt is due (unix seconds), while the callback is queued.
    pub callback_due_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub expires_at: i64,
    pub paid_at: Option<i64>,
    /// The create request's signature algorithm (`md5`, `hmac_sha256`; empty = the protocol's).
    pub sign_alg: String,
    /// The EPay `type` as sent (empty when none).
    pub epay_type: String,
    /// The order a payer's network switch was made from.
    pub parent_trade_id: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
