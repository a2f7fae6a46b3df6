//! A Bot API double: an HTTP server speaking `/bot<token>/<method>` with the real response
//! shapes (`{"ok":true,"result":…}`; errors `{"ok":false,"error_code":…,"description":…}`, 429
//! with `parameters.retry_after`). The test feeds it updates (answered to the bot's
//! `getUpdates` long poll) and reads what the bot sent. It can be told to answer 429 to the
//! next `sendMessage` calls, or to be down (HTTP 502 from a front proxy, as when Telegram is
//! unreachable behind one).
use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};
use tokio::sync::Notify;

pub const TOKEN: &str = "123456:TEST-token_abcdefghijklmnopqrstuvwxyz";
pub const BOT_ID: i64 = 424242;

const METHODS: &[&str] = &[
    "getMe",
    "deleteWebhook",
    "setMyCommands",
    "answerCallbackQuery",
    "getUpdates",
    "sendMessage",
    "editMessageText",
];

/// One call the bot made.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub body: Value,
    pub at: Instant,
    /// What the double answered (HTTP status).
    pub status: u16,
}

#[derive(Default)]
struct Inner {
    updates: Mutex<VecDeque<Value>>,
    next_update: Mutex<i64>,
    next_message: Mutex<i64>,
    calls: Mutex<Vec<Call>>,
    /// Answer 429 with this retry_after to the next n sendMessage calls.
    rate_limit: Mutex<(usize, u64)>,
    down: Mutex<bool>,
    wake: Notify,
}

#[derive(Clone)]
pub struct BotApi {
    pub url: String,
    inner: Arc<Inner>,
}

fn ok(result: Value) -> Response {
    Json(json!({ "ok": true, "result": result })).into_response()
}

fn err(code: u16, description: &str, extra: Option<Value>) -> Response {
    let mut body = json!({ "ok": false, "error_code": code, "description": description });
    if let Some(p) = extra {
        body["parameters"] = p;
    }
    (StatusCode::from_u16(code).expect("status"), Json(body)).into_response()
}

fn bot_user() -> Value {
    json!({ "id": BOT_ID, "is_bot": true, "first_name": "epusdt", "username": "epusdt_test_bot" })
}

fn user(id: i64) -> Value {
    json!({ "id": id, "is_bot": false, "first_name": format!("user{id}") })
}

fn private_chat(id: i64) -> Value {
    json!({ "id": id, "type": "private", "first_name": format!("user{id}") })
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    Path((bot, method)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    // Telegram matches method names case-insensitively (teloxide sends `GetMe`): record the
    // documented spelling.
    let method = METHODS
        .iter()
        .find(|m| m.eq_ignore_ascii_case(&method))
        .map_or(method, |m| m.to_string());
    let record = |status: u16| {
        inner.calls.lock().expect("lock").push(Call {
            method: method.clone(),
            body: body.clone(),
            at: Instant::now(),
            status,
        })
    };
    if *inner.down.lock().expect("lock") {
        record(502);
        return (
            StatusCode::BAD_GATEWAY,
            "<html><body>502 Bad Gateway</body></html>",
        )
            .into_response();
    }
    if bot != format!("bot{TOKEN}") {
        record(401);
        return err(401, "Unauthorized", None);
    }
    match method.as_str() {
        "getMe" => {
            record(200);
            let mut me = bot_user();
            for (k, v) in [
                ("can_join_groups", true),
                ("can_read_all_group_messages", false),
                ("supports_inline_queries", false),
                ("can_connect_to_business", false),
                ("has_main_web_app", false),
            ] {
                me[k] = json!(v);
            }
            ok(me)
        }
        "setMyCommands" => {
            // As documented: 1-32 characters, lowercase English letters, digits and underscores.
            let valid = body["commands"].as_array().is_some_and(|cs| {
                cs.iter().all(|c| {
                    let name = c["command"].as_str().unwrap_or("");
                    (1..=32).contains(&name.len())
                        && name
                            .chars()
                            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
                })
            });
            if !valid {
                record(400);
                return err(400, "Bad Request: BOT_COMMAND_INVALID", None);
            }
            record(200);
            ok(json!(true))
        }
        "deleteWebhook" | "answerCallbackQuery" => {
            record(200);
            ok(json!(true))
        }
        "getUpdates" => {
            let offset = body["offset"].as_i64().unwrap_or(0);
            let wait = Duration::from_secs(body["timeout"].as_u64().unwrap_or(0).min(2));
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let ready: Vec<Value> = {
                    let mut q = inner.updates.lock().expect("lock");
                    q.retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
                    q.iter().cloned().collect()
                };
                if !ready.is_empty() || tokio::time::Instant::now() >= deadline {
                    return ok(json!(ready));
                }
                let _ = tokio::time::timeout_at(deadline, inner.wake.notified()).await;
            }
        }
        "sendMessage" => {
            {
                let mut rl = inner.rate_limit.lock().expect("lock");
                if rl.0 > 0 {
                    rl.0 -= 1;
                    let secs = rl.1;
                    drop(rl);
                    record(429);
                    return err(
                        429,
                        &format!("Too Many Requests: retry after {secs}"),
                        Some(json!({ "retry_after": secs })),
                    );
                }
            }
            record(200);
            let id = {
                let mut n = inner.next_message.lock().expect("lock");
                *n += 1;
                *n
            };
            let chat = body["chat_id"].as_i64().unwrap_or(0);
            ok(json!({
                "message_id": id, "date": 1_700_000_000, "chat": private_chat(chat),
                "from": bot_user(), "text": body["text"],
            }))
        }
        "editMessageText" => {
            record(200);
            let chat = body["chat_id"].as_i64().unwrap_or(0);
            ok(json!({
                "message_id": body["message_id"], "date": 1_700_000_000, "edit_date": 1_700_000_001,
                "chat": private_chat(chat), "from": bot_user(), "text": body["text"],
            }))
        }
        _ => {
            record(404);
            err(404, "Not Found: method not found", None)
        }
    }
}

impl BotApi {
    pub async fn start() -> BotApi {
        let inner = Arc::new(Inner {
            next_update: Mutex::new(1000),
            ..Default::default()
        });
        let app = Router::new()
            .route("/{bot}/{method}", post(handle))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        BotApi { url, inner }
    }

    fn push_update(&self, mut update: Value) -> i64 {
        let id = {
            let mut n = self.inner.next_update.lock().expect("lock");
            *n += 1;
            *n
        };
        update["update_id"] = json!(id);
        self.inner.updates.lock().expect("lock").push_back(update);
        self.inner.wake.notify_waiters();
        id
    }

    /// A user writes `text` to the bot in a private chat.
    pub fn message(&self, from: i64, text: &str) {
        self.message_in(from, private_chat(from), text);
    }

    /// A user writes `text` in `chat` (e.g. a group).
    pub fn message_in(&self, from: i64, chat: Value, text: &str) {
        let mut m = json!({
            "message_id": rand_id(), "date": 1_700_000_000, "chat": chat,
            "from": user(from), "text": text,
        });
        if text.starts_with('/') {
            let len = text
                .split_whitespace()
                .next()
                .unwrap_or("")
                .encode_utf16()
                .count();
            m["entities"] = json!([{ "type": "bot_command", "offset": 0, "length": len }]);
        }
        self.push_update(json!({ "message": m }));
    }

    /// A user presses an inline button with `data` under the bot's message `message_id`.
    pub fn press(&self, from: i64, message_id: i64, data: &str) -> String {
        let id = format!("cbq{}", rand_id());
        self.push_update(json!({ "callback_query": {
            "id": id, "from": user(from), "chat_instance": "1", "data": data,
            "message": {
                "message_id": message_id, "date": 1_700_000_000, "chat": private_chat(from),
                "from": bot_user(), "text": "Confirm?",
            },
        }}));
        id
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.calls.lock().expect("lock").clone()
    }

    /// Messages the bot sent successfully to `chat`.
    pub fn sent_to(&self, chat: i64) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == "sendMessage" && c.status == 200 && c.body["chat_id"] == chat)
            .map(|c| c.body)
            .collect()
    }

    /// Waits until the bot sent `chat` its `n`-th message; returns them all.
    pub async fn wait_sent(&self, chat: i64, n: usize, secs: u64) -> Vec<Value> {
        crate::common::eventually(secs, &format!("{n} message(s) to chat {chat}"), || {
            let got = self.sent_to(chat);
            async move { (got.len() >= n).then_some(got) }
        })
        .await
    }

    /// Waits until the bot called `method` `n` times (any answer).
    pub async fn wait_calls(&self, method: &str, n: usize, secs: u64) -> Vec<Call> {
        crate::common::eventually(secs, &format!("{n} {method} call(s)"), || {
            let got: Vec<Call> = self
                .calls()
                .into_iter()
                .filter(|c| c.method == method)
                .collect();
            async move { (got.len() >= n).then_some(got) }
        })
        .await
    }

    pub fn rate_limit_next(&self, n: usize, retry_after: u64) {
        *self.inner.rate_limit.lock().expect("lock") = (n, retry_after);
    }

    pub fn set_down(&self, down: bool) {
        *self.inner.down.lock().expect("lock") = down;
    }
}

fn rand_id() -> i64 {
    use rand::Rng;
    rand::rng().random_range(1..1_000_000)
}
