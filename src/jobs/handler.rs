//! The job handler: maps each durable job (callback delivery, order expiry) to its service
//! call. Handlers are thin: they call the service layer and schedule the next attempt as a new
//! durable job. Nothing that must happen lives only in memory.
use std::sync::Arc;

use futures::FutureExt;

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
        async move { run(&state, job).await.map_err(|e| e.to_string()) }.boxed()
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
        Job::Notify { order_id, attempt } => {
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
                    )
                }
                NotifyOutcome::Delivered | NotifyOutcome::Skipped => {}
            }
        }
    }
    Ok(())
}
