//! Who may use the bot: a Telegram user linked to an enabled admin (that admin's role), or
//! upstream's `tg_manage` id (owner). Anyone else is refused with their id, at most once per
//! [`REFUSAL_WINDOW`] per user, and each refusal is audited at the same rate.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{
    audit::{AuditEvent, actions},
    domain::admin::Role,
    service::admin::{role_of, telegram},
    state::AppState,
};

/// A refused user hears (and the audit trail records) at most one refusal per window.
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(600);

/// The admin behind a Telegram user.
#[derive(Debug, Clone)]
pub struct Caller {
    pub telegram_id: i64,
    /// `admin:<username>`, or `telegram:<id>` for `tg_manage` without a linked account.
    pub actor: String,
    /// The linked account's username (`None` for `tg_manage` alone).
    pub username: Option<String>,
    pub role: Role,
}

impl Caller {
    /// An audit event by this caller, marked as coming through the bot.
    pub fn event(&self, action: &'static str, target: impl Into<String>) -> AuditEvent {
        AuditEvent::new(self.actor.clone(), action, target).with_details(serde_json::json!({
            "via": "telegram",
            "telegram_id": self.telegram_id,
        }))
    }
}

/// The caller behind Telegram user `id`, or `None` (refuse).
pub async fn resolve(state: &AppState, id: i64) -> Result<Option<Caller>, sea_orm::DbErr> {
    if let Some(m) = telegram::find_linked(&state.db, id).await? {
        // `tg_manage` is an owner even when linked to a lesser account.
        let role = if state.config.tg_manage == Some(id) {
            Role::Owner
        } else {
            role_of(&m)
        };
        return Ok(Some(Caller {
            telegram_id: id,
            actor: format!("admin:{}", m.username),
            username: Some(m.username),
            role,
        }));
    }
    Ok((state.config.tg_manage == Some(id)).then(|| Caller {
        telegram_id: id,
        actor: format!("telegram:{id}"),
        username: None,
        role: Role::Owner,
    }))
}

/// Per-user refusal limiter (in memory: a restart may let one more refusal through).
#[derive(Clone, Default)]
pub struct Refusals(Arc<Mutex<HashMap<i64, Instant>>>);

impl Refusals {
    /// Whether a refusal to `id` is due now (and records it).
    pub fn due(&self, id: i64) -> bool {
        let mut m = match self.0.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let now = Instant::now();
        if m.len() > 10_000 {
            m.retain(|_, at| now.duration_since(*at) < REFUSAL_WINDOW);
        }
        match m.get(&id) {
            Some(at) if now.duration_since(*at) < REFUSAL_WINDOW => false,
            _ => {
                m.insert(id, now);
                true
            }
        }
    }
}

/// Audits a refusal of `id` (the caller checked [`Refusals::due`]).
pub async fn audit_refusal(state: &AppState, id: i64, chat_id: i64, what: &str) {
    let event = AuditEvent::new(
        format!("telegram:{id}"),
        actions::TELEGRAM_REFUSED,
        format!("telegram:{id}"),
    )
    .with_details(serde_json::json!({ "chat_id": chat_id, "what": what }));
    if let Err(e) = state.audit.record(event).await {
        tracing::error!(error = %e, "could not audit a Telegram refusal");
    }
}

/// The one reply an unlinked user gets.
pub fn refusal_text(id: i64) -> String {
    format!(
        "Not authorised. Your Telegram id is <code>{id}</code>: an owner can link it with \
         <code>epusdt admin link-telegram NAME {id}</code>."
    )
}
