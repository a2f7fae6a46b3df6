//! Queueing a paid order's callback: the claim (`PENDING` → `QUEUED`) comes before the job, so
//! whoever finds a callback pending — the crediting path, any instance's sweeper — queues it
//! once.
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, sea_query::Expr};

use super::{OrderError, callback_state};
use crate::{
    queue::{Job, JobQueue},
    service::now,
    store::entities::order,
};

/// Queues the first callback attempt of a `PENDING` callback, once: it is claimed first
/// (compare-and-swap `PENDING` → `QUEUED`, due now), and only the caller that claimed it pushes
/// the job — two sweepers (two instances) or a sweeper and the crediting path that find it
/// pending at once queue it once, so the merchant is called once. If the push fails the claim is
/// given back (`PENDING` again, for the next sweep); if the process dies in between, the
/// callback is `QUEUED` without a job and [`sweep`] queues it again once it is
/// `callback_requeue_after_secs` overdue. If the claim itself fails (or the process dies before
/// it) the order stays `PENDING` and [`sweep`] queues it.
pub async fn queue_callback(
    db: &DatabaseConnection,
    queue: &JobQueue,
    order_id: i64,
) -> Result<(), OrderError> {
    let due = now();
    let claimed = order::Entity::update_many()
        .col_expr(
            order::Column::CallbackState,
            Expr::value(callback_state::QUEUED),
        )
        .col_expr(order::Column::CallbackDueAt, Expr::value(Some(due)))
        .filter(order::Column::Id.eq(order_id))
        .filter(order::Column::CallbackState.eq(callback_state::PENDING))
        .exec(db)
        .await?
        .rows_affected;
    if claimed == 0 {
        // Queued (or delivered) by someone else already.
        return Ok(());
    }
    let pushed = queue
        .push(
            Job::Notify {
                order_id,
                attempt: 1,
            },
            None,
        )
        .await;
    if let Err(e) = pushed {
        let _ = order::Entity::update_many()
            .col_expr(
                order::Column::CallbackState,
                Expr::value(callback_state::PENDING),
            )
            .col_expr(order::Column::CallbackDueAt, Expr::value(None::<i64>))
            .filter(order::Column::Id.eq(order_id))
            .filter(order::Column::CallbackState.eq(callback_state::QUEUED))
            .filter(order::Column::CallbackDueAt.eq(due))
            .exec(db)
            .await;
        return Err(e.into());
    }
    Ok(())
}
