//! `order_choices`: GMPay orders waiting for the payer to choose token and network (status 4
//! upstream). See migration 000007.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "order_choices")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub trade_id: String,
    pub merchant_id: i64,
    pub order_id: String,
    pub protocol: String,
    pub currency: String,
    /// Fiat amount, canonical decimal string.
    pub amount: String,
    pub notify_url: String,
    pub redirect_url: String,
    pub name: String,
    pub request_hash: String,
    pub sign_alg: String,
    pub epay_type: String,
    pub timeout_secs: Option<i64>,
    /// 0 choosing, 1 chosen (an order row with this trade_id exists), 2 cancelled.
    pub status: i16,
    pub created_at: i64,
    pub updated_at: i64,
    pub expires_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
