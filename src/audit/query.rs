//! Reading the audit table back for the admin API: filters and keyset pages, newest first.
//! Read only: the trail is append-only.
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use crate::store::entities::audit_log;

/// Largest page.
pub const MAX_LIMIT: u64 = 200;

#[derive(Debug, Default, Clone)]
pub struct AuditQuery {
    /// Exact action, e.g. `admin.login`.
    pub action: Option<String>,
    /// Exact actor, e.g. `admin:alice`.
    pub actor: Option<String>,
    /// Exact target, e.g. `merchant:1001`.
    pub target: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub cursor: Option<i64>,
    pub limit: u64,
}

/// A page of events and the cursor of the next one (`None` on the last page).
pub async fn page(
    db: &impl ConnectionTrait,
    q: &AuditQuery,
) -> Result<(Vec<audit_log::Model>, Option<i64>), DbErr> {
    let limit = q.limit.clamp(1, MAX_LIMIT);
    let mut cond = Condition::all();
    if let Some(a) = &q.action {
        cond = cond.add(audit_log::Column::Action.eq(a.as_str()));
    }
    if let Some(a) = &q.actor {
        cond = cond.add(audit_log::Column::Actor.eq(a.as_str()));
    }
    if let Some(t) = &q.target {
        cond = cond.add(audit_log::Column::Target.eq(t.as_str()));
    }
    if let Some(f) = q.from {
        cond = cond.add(audit_log::Column::At.gte(f));
    }
    if let Some(t) = q.to {
        cond = cond.add(audit_log::Column::At.lt(t));
    }
    if let Some(c) = q.cursor {
        cond = cond.add(audit_log::Column::Id.lt(c));
    }
    let mut rows = audit_log::Entity::find()
        .filter(cond)
        .order_by_desc(audit_log::Column::Id)
        .limit(limit + 1)
        .all(db)
        .await?;
    let next = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.id)
    } else {
        None
    };
    Ok((rows, next))
}
