//! Dashboard numbers for the admin API: orders by status, paid volume per network and token,
//! callback success, over a time window. Read only. Amounts are summed as `Decimal` from their
//! canonical text, never through floats.
use std::collections::BTreeMap;

use rust_decimal::Decimal;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};
use serde::Serialize;

use crate::{
    domain::order::OrderStatus,
    store::entities::{callback_attempt, order},
};

#[derive(Debug, Default, Serialize)]
pub struct WindowStats {
    /// Unix seconds the window starts at (orders created since, attempts made since).
    pub since: i64,
    /// `waiting`, `paid`, `expired`, `cancelled` → count.
    pub orders_by_status: BTreeMap<&'static str, u64>,
    /// `network` → `token` → paid amount (decimal text).
    pub paid_volume: BTreeMap<String, BTreeMap<String, String>>,
    pub callback_attempts: u64,
    pub callback_successes: u64,
    /// Successes / attempts, or `None` without attempts.
    pub callback_success_rate: Option<String>,
}

pub async fn window(db: &impl ConnectionTrait, since: i64) -> Result<WindowStats, DbErr> {
    let rows: Vec<(i16, String, String, String, Option<String>)> = order::Entity::find()
        .select_only()
        .columns([
            order::Column::Status,
            order::Column::Network,
            order::Column::Token,
            order::Column::ActualAmount,
            order::Column::PaidAmount,
        ])
        .filter(order::Column::CreatedAt.gte(since))
        .into_tuple()
        .all(db)
        .await?;
    let mut out = WindowStats {
        since,
        ..Default::default()
    };
    let mut volume: BTreeMap<String, BTreeMap<String, Decimal>> = BTreeMap::new();
    for (status, network, token, actual, paid) in rows {
        *out.orders_by_status
            .entry(OrderStatus::word_of(status))
            .or_default() += 1;
        if status == OrderStatus::Paid.code() {
            let amount = paid
                .as_deref()
                .and_then(|p| Decimal::from_str_exact(p).ok())
                .or_else(|| Decimal::from_str_exact(&actual).ok())
                .unwrap_or_default();
            *volume.entry(network).or_default().entry(token).or_default() += amount;
        }
    }
    out.paid_volume = volume
        .into_iter()
        .map(|(n, t)| {
            let t = t
                .into_iter()
                .map(|(k, v)| (k, v.normalize().to_string()))
                .collect();
            (n, t)
        })
        .collect();
    let attempts: Vec<bool> = callback_attempt::Entity::find()
        .select_only()
        .column(callback_attempt::Column::Success)
        .filter(callback_attempt::Column::AttemptedAt.gte(since))
        .into_tuple()
        .all(db)
        .await?;
    out.callback_attempts = attempts.len() as u64;
    out.callback_successes = attempts.iter().filter(|s| **s).count() as u64;
    if out.callback_attempts > 0 {
        let rate = Decimal::from(out.callback_successes) / Decimal::from(out.callback_attempts);
        out.callback_success_rate = Some(rate.round_dp(4).normalize().to_string());
    }
    Ok(out)
}
