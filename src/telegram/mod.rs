//! The Telegram bot (issue 13), run inside `epusdt serve` when `tg_bot_token` is set: long-polls
//! `getUpdates`, answers the commands of linked admins ([`commands`]), confirms writes with an
//! inline keyboard ([`confirm`]) and watches the chain watchers for notices ([`monitor`]).
//! Notices themselves are durable jobs (`service::telegram`); the bot never holds a business
//! rule: every command calls the service function the admin API calls.
//!
//! Must never: show data to an unlinked user ([`access`]); log the token (`TelegramBot::scrub`).
pub mod access;
pub mod commands;
pub mod confirm;
pub mod monitor;

use std::{future::Future, time::Duration};

use teloxide::{
    payloads::{EditMessageTextSetters, GetUpdatesSetters, SendMessageSetters},
    prelude::Requester,
    types::{
        AllowedUpdate, CallbackQuery, ChatId, InlineKeyboardMarkup, LinkPreviewOptions, Message,
        ParseMode, UpdateKind,
    },
    utils::command::BotCommands,
};

use self::{
    access::{Caller, Refusals},
    commands::Command,
    confirm::Action,
};
use crate::{
    domain::notice::{MAX_MESSAGE_CHARS, escape_html, split_message},
    service::telegram::TelegramBot,
    state::AppState,
};

/// Seconds one `getUpdates` long poll waits for updates.
pub const POLL_TIMEOUT_SECS: u32 = 10;

/// A reply: HTML text and an optional keyboard.
#[derive(Debug, Clone)]
pub struct Reply {
    pub text: String,
    pub keyboard: Option<InlineKeyboardMarkup>,
}

impl Reply {
    pub fn text(text: String) -> Self {
        Self {
            text,
            keyboard: None,
        }
    }
}

fn no_preview() -> LinkPreviewOptions {
    LinkPreviewOptions {
        is_disabled: true,
        url: None,
        prefer_small_media: false,
        prefer_large_media: false,
        show_above_text: false,
    }
}

/// Runs the bot until `stop` resolves: registers the commands, then polls for updates.
/// Telegram being unreachable only delays the bot (it retries with a growing pause); it never
/// stops the gateway.
pub async fn run(state: AppState, bot: TelegramBot, stop: impl Future<Output = ()> + Send) {
    tokio::pin!(stop);
    let mut pause = Duration::from_secs(1);
    // getMe (the username commands may be addressed to in groups), deleteWebhook (polling and a
    // webhook exclude each other), setMyCommands.
    let username = loop {
        let setup = async {
            let me = bot.bot().get_me().await?;
            bot.bot().delete_webhook().await?;
            // The Bot API wants the bare name (`help`, not `/help`).
            let commands = Command::bot_commands().into_iter().map(|mut c| {
                c.command = c.command.trim_start_matches('/').to_string();
                c
            });
            bot.bot().set_my_commands(commands).await?;
            Ok::<_, teloxide::RequestError>(me.username.clone().unwrap_or_default())
        };
        tokio::select! {
            _ = &mut stop => return,
            r = setup => match r {
                Ok(name) => break name,
                Err(e) => {
                    tracing::warn!(error = %bot.scrub(&e.to_string()), retry_in_secs = pause.as_secs(), "Telegram bot set-up failed");
                    tokio::select! {
                        _ = &mut stop => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(Duration::from_secs(60));
                }
            }
        }
    };
    tracing::info!(bot = %username, "Telegram bot started");
    let refusals = Refusals::default();
    let mut offset: i32 = 0;
    pause = Duration::from_secs(1);
    loop {
        let poll = bot
            .bot()
            .get_updates()
            .offset(offset)
            .timeout(POLL_TIMEOUT_SECS)
            .allowed_updates([AllowedUpdate::Message, AllowedUpdate::CallbackQuery]);
        let updates = tokio::select! {
            _ = &mut stop => break,
            r = poll => r,
        };
        match updates {
            Ok(updates) => {
                pause = Duration::from_secs(1);
                for u in updates {
                    offset =
                        offset.max(i32::try_from(u.id.0).unwrap_or(i32::MAX).saturating_add(1));
                    let handled = match u.kind {
                        UpdateKind::Message(m) => {
                            on_message(&state, &bot, &refusals, &username, m).await
                        }
                        UpdateKind::CallbackQuery(q) => {
                            on_callback(&state, &bot, &refusals, q).await
                        }
                        _ => Ok(()),
                    };
                    if let Err(e) = handled {
                        tracing::warn!(error = %bot.scrub(&format!("{e:#}")), "Telegram update failed");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %bot.scrub(&e.to_string()), retry_in_secs = pause.as_secs(), "Telegram getUpdates failed");
                tokio::select! {
                    _ = &mut stop => break,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(Duration::from_secs(30));
            }
        }
    }
    tracing::info!("Telegram bot stopped");
}

/// Sends `reply` to `chat` (split when long; the keyboard goes with the last part).
async fn send(bot: &TelegramBot, chat: ChatId, reply: Reply) -> anyhow::Result<()> {
    let parts = split_message(&reply.text, MAX_MESSAGE_CHARS);
    let last = parts.len().saturating_sub(1);
    for (i, part) in parts.into_iter().enumerate() {
        let req = bot
            .bot()
            .send_message(chat, part)
            .parse_mode(ParseMode::Html)
            .link_preview_options(no_preview());
        match (&reply.keyboard, i == last) {
            (Some(k), true) => req.reply_markup(k.clone()).await?,
            _ => req.await?,
        };
    }
    Ok(())
}

/// Refuses `from` once per window (reply + audit), never with data.
async fn refuse(
    state: &AppState,
    bot: &TelegramBot,
    refusals: &Refusals,
    from: i64,
    chat: ChatId,
    what: &str,
) -> anyhow::Result<()> {
    if !refusals.due(from) {
        return Ok(());
    }
    access::audit_refusal(state, from, chat.0, what).await;
    send(bot, chat, Reply::text(access::refusal_text(from))).await
}

async fn on_message(
    state: &AppState,
    bot: &TelegramBot,
    refusals: &Refusals,
    username: &str,
    m: Message,
) -> anyhow::Result<()> {
    let (Some(from), Some(text)) = (m.from.as_ref(), m.text()) else {
        return Ok(());
    };
    if from.is_bot {
        return Ok(());
    }
    let from_id = i64::try_from(from.id.0).unwrap_or(i64::MAX);
    let first_word: String = text
        .split_whitespace()
        .next()
        .unwrap_or("")
        .chars()
        .take(40)
        .collect();
    let Some(caller) = access::resolve(state, from_id).await? else {
        // In a group only commands are answered; in a private chat anything is.
        if m.chat.is_private() || text.starts_with('/') {
            refuse(state, bot, refusals, from_id, m.chat.id, &first_word).await?;
        }
        return Ok(());
    };
    let reply = match Command::parse(text, username) {
        Ok(cmd) => run_command(state, &caller, cmd).await,
        Err(_) if !text.starts_with('/') && !m.chat.is_private() => return Ok(()),
        Err(e) => Reply::text(format!(
            "{}\n/help lists the commands.",
            escape_html(&e.to_string())
        )),
    };
    send(bot, m.chat.id, reply).await
}

async fn run_command(state: &AppState, caller: &Caller, cmd: Command) -> Reply {
    match commands::run(state, caller, cmd).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "Telegram command failed");
            Reply::text("Something went wrong; the error is in the gateway's log.".into())
        }
    }
}

async fn on_callback(
    state: &AppState,
    bot: &TelegramBot,
    refusals: &Refusals,
    q: CallbackQuery,
) -> anyhow::Result<()> {
    let from_id = i64::try_from(q.from.id.0).unwrap_or(i64::MAX);
    let data = q.data.clone().unwrap_or_default();
    let message = q.message.as_ref().map(|m| (m.chat().id, m.id()));
    let caller = access::resolve(state, from_id).await?;
    let text = match (&caller, data.as_str()) {
        (None, _) => {
            bot.bot().answer_callback_query(q.id.clone()).await?;
            if let Some((chat, _)) = message {
                refuse(state, bot, refusals, from_id, chat, "callback").await?;
            }
            return Ok(());
        }
        (Some(_), Action::CANCEL) => "Cancelled.".to_string(),
        (Some(c), d) => match Action::decode(d) {
            None => "This button is no longer valid.".to_string(),
            Some(action) => match confirm::run(state, c, action).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "Telegram confirmation failed");
                    "Something went wrong; the error is in the gateway's log.".to_string()
                }
            },
        },
    };
    bot.bot().answer_callback_query(q.id.clone()).await?;
    if let Some((chat, id)) = message {
        bot.bot()
            .edit_message_text(chat, id, text)
            .parse_mode(ParseMode::Html)
            .link_preview_options(no_preview())
            .await?;
    }
    Ok(())
}
