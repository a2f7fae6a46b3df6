//! The job handler: maps each durable job (callback delivery, order expiry) to its service
//! call. Handlers are thin: they call the service layer and schedule the next attempt as a new
//! durable job. Nothing that must happen lives only in memory.
use std::sync::Arc;

use futures::FutureExt;

use crate::{
    domain::notice::Notice,
    service::{self, telegram::SendOutcome},
};
use crate::{
    queue::{Job, JobHandler},
    service::{
        notify::{self, NotifyOutcome},
        order::{self, ExpireOutcome},
    },
    state::AppState,
};

/// The handler the workers run: dispatches a job to its use case. An `Err` means an
/// infrastructure failure (database down…): apalis retries the same job later.
pub fn handler(state: AppState) -> JobHandler {
    Arc::new(move |job: Job| {
        let state = state.clone();
        async move {
            match job {
                Job::Alert { .. } | Job::Telegram { .. } => telegram(&state, job).await,
                job => run(&state, job).await.map_err(|e| e.to_string()),
            }
        }
        .boxed()
    })
}

async fn run(state: &AppState, job: Job) -> Result<(), order::OrderError> {
    match job {
        Job::Expire { trade_id } => {
            if let ExpireOutcome::NotYet(at) = order::expire_order(
                &state.db,
                &order::OrderRules::from_config(&state.config),
                &trade_id,
            )
            .await?
            {
                state
                    .queue
                    .push(
                        Job::Expire { trade_id },
                        chrono::DateTime::from_timestamp(at, 0),
                    )
                    .await?;
            }
        }
        Job::Alert { .. } | Job::Telegram { .. } => {}
        Job::Notify { order_id, attempt } => {
            if attempt == 1 && state.telegram.is_some() {
                paid_notice_once(state, order_id).await?;
            }
            let outcome = notify::deliver(
                &state.db,
                &state.keys,
                &state.config,
                &state.http,
                order_id,
                attempt,
            )
            .await?;
            match outcome {
                NotifyOutcome::RetryIn(secs) => {
                    let at = chrono::Utc::now()
                        + chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 2));
                    state
                        .queue
                        .push(
                            Job::Notify {
                                order_id,
                                attempt: attempt + 1,
                            },
                            Some(at),
                        )
                        .await?;
                }
                NotifyOutcome::GaveUp => {
                    tracing::warn!(
                        order_id,
                        attempt,
                        "callback delivery gave up; an admin can resend it"
                    );
                    if state.telegram.is_some() {
                        service::telegram::raise(
                            &state.queue,
                            Notice::CallbackGaveUp {
                                order_id,
                                attempts: attempt,
                            },
                        )
                        .await?;
                    }
                }
                NotifyOutcome::Delivered | NotifyOutcome::Skipped => {}
            }
        }
    }
    Ok(())
}

/// The paid notice of an order, raised by its first callback job: the callback is queued
/// exactly when an order becomes paid (watcher, payer-submitted tx, operator credit, sweeper),
/// and a resend (attempts already made) does not notify again. A job that runs twice may
/// notify twice (at least once, like every job).
async fn paid_notice_once(state: &AppState, order_id: i64) -> Result<(), order::OrderError> {
    use sea_orm::EntityTrait;
    let Some(o) = crate::store::entities::order::Entity::find_by_id(order_id)
        .one(&state.db)
        .await?
    else {
        return Ok(());
    };
    if o.callback_attempts == 0 && o.parent_trade_id.is_none() {
        service::telegram::raise(&state.queue, Notice::OrderPaid { order_id }).await?;
    }
    Ok(())
}

/// `Alert` fans out to one `Telegram` job per recipient; `Telegram` sends one message and
/// schedules its own retry (429 `retry_after`, outage backoff) as a new durable job.
async fn telegram(state: &AppState, job: Job) -> Result<(), String> {
    let Some(bot) = &state.telegram else {
        tracing::debug!("Telegram notice dropped: no tg_bot_token");
        return Ok(());
    };
    match job {
        Job::Alert { notice } => {
            service::telegram::fan_out(&state.db, &state.queue, &state.config, &notice)
                .await
                .map_err(|e| e.to_string())?;
        }
        Job::Telegram {
            chat_id,
            text,
            attempt,
        } => match service::telegram::send(bot, chat_id, &text, attempt).await {
            SendOutcome::Sent => {}
            SendOutcome::RetryIn(secs) => {
                let at = chrono::Utc::now()
                    + chrono::Duration::seconds(i64::try_from(secs).unwrap_or(3600));
                state
                    .queue
                    .push(
                        Job::Telegram {
                            chat_id,
                            text,
                            attempt: attempt + 1,
                        },
                        Some(at),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
            }
            SendOutcome::GaveUp(why) => {
                tracing::warn!(chat_id, attempt, error = %why, "Telegram refused a notice; dropped")
            }
        },
        _ => {}
    }
    Ok(())
}
