//! `request_nonces`: GMPay nonces already used, per merchant pid, until `expires_at` (unix
//! seconds). Single use is enforced by the unique index `request_nonces_pid_nonce_key`; rows are
//! purged opportunistically by [`super::replay`]. Used only when Redis is not configured.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "request_nonces")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub pid: i64,
    pub nonce: String,
    pub expires_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
