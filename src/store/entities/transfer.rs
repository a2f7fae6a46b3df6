use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "transfers")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub network: String,
    pub tx_hash: String,
    pub log_index: i64,
    pub block_number: i64,
    pub block_hash: String,
    pub token_contract: String,
    /// The token of `token_contract` (USDT, USDC).
    pub token: String,
    pub from_address: String,
    pub to_address: String,
    /// Token amount, canonical decimal string.
    pub amount: String,
    pub block_time: i64,
    pub order_id: Option<i64>,
    /// `matched`, `unmatched`, `late`, `partial`, `overpaid`, `paid_twice`, `duplicate`; after an
    /// operator's resolve (`service::order::resolve`) `credited` or `dismissed`.
    pub kind: String,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
