use sea_orm::entity::prelude::*;

/// A transfer seen above the confirmed head that would pay `order_id` (display only; see
/// `service::order::confirming`). Replaced per network after every watcher round.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "pending_transfers")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub network: String,
    pub tx_hash: String,
    pub log_index: i64,
    pub block_number: i64,
    pub order_id: i64,
    pub trade_id: String,
    /// Blocks from the transfer's block to the head, both counted (1 = in the newest block).
    pub confirmations: i64,
    /// Confirmations at which the transfer is at the confirmed head and gets credited.
    pub confirmations_required: i64,
    /// Unix seconds the watcher first saw it.
    pub seen_at: i64,
    /// Unix seconds after which the row is not believed (its watcher stopped refreshing it).
    pub fresh_until: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
