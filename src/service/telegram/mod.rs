//! Telegram notices (issue 13): who hears about what ([`fan_out`]), the text of each notice
//! ([`render`]), and one message sent ([`send`]) with Telegram's 429 `retry_after` honoured.
//! Every notice travels as durable jobs (`Job::Alert` → one `Job::Telegram` per recipient and
//! part), so a Telegram outage never blocks a payment and a notice survives a restart.
//!
//! Must never: print the bot token (the [`TelegramBot`] `Debug` is redacted, error texts are
//! scrubbed with [`TelegramBot::scrub`]); put merchant- or payer-supplied text into a message
//! unescaped (`domain::notice::escape_html`).
pub mod render;

use std::{fmt, sync::Arc};

use sea_orm::{ConnectionTrait, DbErr};
use teloxide::{
    RequestError,
    payloads::SendMessageSetters,
    prelude::Requester,
    types::{ChatId, LinkPreviewOptions, ParseMode},
};

pub use self::render::render;
use crate::{
    config::Config,
    domain::notice::{MAX_MESSAGE_CHARS, Notice, split_message},
    queue::{Job, JobError, JobQueue},
};

/// The teloxide client with its token kept out of `Debug` and error texts.
#[derive(Clone)]
pub struct TelegramBot {
    bot: teloxide::Bot,
    token: Arc<str>,
}

impl fmt::Debug for TelegramBot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TelegramBot([redacted])")
    }
}

impl TelegramBot {
    /// A client for `token` talking to `api_url` (the `tg_api_url` key).
    pub fn new(token: &str, api_url: &str) -> Result<Self, String> {
        let url = reqwest_url(api_url)?;
        Ok(Self {
            bot: teloxide::Bot::new(token).set_api_url(url),
            token: Arc::from(token),
        })
    }

    /// The teloxide client (the bot's update loop uses it directly).
    pub fn bot(&self) -> &teloxide::Bot {
        &self.bot
    }

    /// `text` with the token replaced: for anything that goes to a log or the job store.
    pub fn scrub(&self, text: &str) -> String {
        if self.token.is_empty() {
            return text.to_string();
        }
        text.replace(&*self.token, crate::audit::REDACTED)
    }
}

fn reqwest_url(s: &str) -> Result<url::Url, String> {
    url::Url::parse(s).map_err(|e| format!("tg_api_url: {e}"))
}

/// What one send did.
#[derive(Debug, PartialEq, Eq)]
pub enum SendOutcome {
    Sent,
    /// Telegram said 429 (wait its `retry_after`) or could not be reached: try again later.
    RetryIn(u64),
    /// Telegram refused the message for good (chat not found, bot blocked…); logged.
    GaveUp(String),
}

/// Sends attempts of one message over about three hours (Telegram down for a while) before
/// giving up.
pub const MAX_SEND_ATTEMPTS: u32 = 200;

/// Wait before attempt `attempt + 1` after a failure without `retry_after`: 1 s doubling to 60 s.
pub fn backoff_secs(attempt: u32) -> u64 {
    (1u64 << attempt.saturating_sub(1).min(6)).min(60)
}

/// Sends one HTML message (at most [`MAX_MESSAGE_CHARS`]; [`fan_out`] splits longer texts).
pub async fn send(bot: &TelegramBot, chat_id: i64, text: &str, attempt: u32) -> SendOutcome {
    let res = bot
        .bot
        .send_message(ChatId(chat_id), text)
        .parse_mode(ParseMode::Html)
        .link_preview_options(LinkPreviewOptions {
            is_disabled: true,
            url: None,
            prefer_small_media: false,
            prefer_large_media: false,
            show_above_text: false,
        })
        .await;
    match res {
        Ok(_) => SendOutcome::Sent,
        Err(RequestError::RetryAfter(s)) => SendOutcome::RetryIn(u64::from(s.seconds()).max(1)),
        // Unreachable, a proxy's HTML page, or an error Telegram does not name (its 5xx
        // `Bad Gateway`, `Internal Server Error`): wait. Named errors (chat not found, bot
        // blocked, bad token…) do not heal by waiting.
        Err(
            e @ (RequestError::Network(_)
            | RequestError::InvalidJson { .. }
            | RequestError::Api(teloxide::ApiError::Unknown(_))),
        ) if attempt < MAX_SEND_ATTEMPTS => {
            tracing::warn!(chat_id, attempt, error = %bot.scrub(&e.to_string()), "Telegram unreachable; the notice waits in the queue");
            SendOutcome::RetryIn(backoff_secs(attempt))
        }
        Err(e) => SendOutcome::GaveUp(bot.scrub(&e.to_string())),
    }
}

/// Queues `notice` for the opted-in admins (durable; a no-op job when no bot is configured).
pub async fn raise(queue: &JobQueue, notice: Notice) -> Result<(), JobError> {
    queue.push(Job::Alert { notice }, None).await
}

/// Telegram ids that hear about notices: `tg_manage` and the linked admins who opted in.
pub async fn recipients(db: &impl ConnectionTrait, config: &Config) -> Result<Vec<i64>, DbErr> {
    let mut ids = crate::service::admin::telegram::notice_recipients(db).await?;
    if let Some(m) = config.tg_manage {
        ids.push(m);
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Renders `notice` and queues one `Job::Telegram` per recipient and message part, when its
/// kind is chosen by `tg_notify`. Returns how many jobs were queued.
pub async fn fan_out(
    db: &impl ConnectionTrait,
    queue: &JobQueue,
    config: &Config,
    notice: &Notice,
) -> Result<usize, FanOutError> {
    if !config.tg_notify_kinds().contains(&notice.kind()) {
        return Ok(0);
    }
    let Some(text) = render(db, notice).await? else {
        return Ok(0);
    };
    let mut n = 0;
    for chat_id in recipients(db, config).await? {
        for part in split_message(&text, MAX_MESSAGE_CHARS) {
            queue
                .push(
                    Job::Telegram {
                        chat_id,
                        text: part,
                        attempt: 1,
                    },
                    None,
                )
                .await?;
            n += 1;
        }
    }
    Ok(n)
}

#[derive(Debug, thiserror::Error)]
pub enum FanOutError {
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error("{0}")]
    Queue(#[from] JobError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_never_shows() {
        let bot = TelegramBot::new("123:ABCdef", "http://127.0.0.1:1").unwrap();
        assert_eq!(format!("{bot:?}"), "TelegramBot([redacted])");
        assert_eq!(
            bot.scrub("GET /bot123:ABCdef/getMe failed"),
            "GET /bot[redacted]/getMe failed"
        );
    }

    #[test]
    fn backoff_grows_to_a_minute() {
        assert_eq!(
            (1..=8).map(backoff_secs).collect::<Vec<_>>(),
            vec![1, 2, 4, 8, 16, 32, 60, 60]
        );
    }
}
