use sea_orm::entity::prelude::*;

/// A refresh token, stored as the SHA-256 hex of the token. One family per login; a rotated
/// token is revoked and names its successor in `replaced_by`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "admin_refresh_tokens")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub token_hash: String,
    pub family_id: String,
    pub admin_id: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked: bool,
    pub replaced_by: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
