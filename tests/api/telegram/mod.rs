//! The Telegram bot (issue 13) end to end: the real gateway with `tg_bot_token` set, talking to
//! a Bot API double ([`double::BotApi`]) that feeds it updates and records what it sends.
//! Covered: an unlinked user gets one refusal and no data (audited once); each command; a
//! confirmed write (and a cancelled one, and a press by a stranger); a paid-order notice after
//! an on-chain payment on anvil; Telegram answering 429 then succeeding (retry_after honoured);
//! Telegram down for a minute then back (the notice arrives); the token in no output.
mod double;

use std::time::{Duration, Instant};

use crate::{chain_support, common};
use common::{Backend, TestApp};
use double::{BotApi, TOKEN};
use epusdt::{
    config::{Config, Secret},
    domain::{admin::Role, notice::Notice},
    service,
    store::entities::audit_log,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

struct Setup {
    app: TestApp,
    api: BotApi,
}

/// The gateway with the bot pointed at a fresh Bot API double; returns once the bot registered
/// its commands (it is polling).
async fn setup(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Option<Setup> {
    let api = BotApi::start().await;
    let url = api.url.clone();
    let app = common::spawn_app_with(backend, |c| {
        c.tg_bot_token = Some(Secret::new(TOKEN));
        c.tg_api_url = url;
        tweak(c);
    })
    .await?;
    let registered = api.wait_calls("setMyCommands", 1, 30).await;
    assert_eq!(registered[0].status, 200, "{:?}", registered[0]);
    Some(Setup { app, api })
}

/// An admin account linked to Telegram user `tg`, notices `notify`.
async fn linked_admin(app: &TestApp, name: &str, role: Role, tg: i64, notify: bool) {
    service::admin::add(
        &app.state.db,
        name,
        &Secret::new("a long enough password 1"),
        role,
        false,
    )
    .await
    .expect("admin");
    service::admin::telegram::link(&app.state.db, name, Some(tg))
        .await
        .expect("link");
    service::admin::telegram::set_notify(&app.state.db, name, notify)
        .await
        .expect("notify");
}

fn text(m: &Value) -> &str {
    m["text"].as_str().unwrap_or("")
}

async fn audit_events(app: &TestApp, action: &str) -> Vec<audit_log::Model> {
    audit_log::Entity::find()
        .filter(audit_log::Column::Action.eq(action))
        .all(&app.state.db)
        .await
        .expect("audit")
}

/// Sends `cmd` as `from` and returns the bot's next reply to that chat.
async fn ask(s: &Setup, from: i64, cmd: &str) -> Value {
    let before = s.api.sent_to(from).len();
    s.api.message(from, cmd);
    let all = s.api.wait_sent(from, before + 1, 20).await;
    all[before].clone()
}

async fn unlinked_user_gets_no_data(backend: Backend) {
    let Some(s) = setup(backend, |_| {}).await else {
        return;
    };
    let order = common::create_v1(
        &s.app,
        &[
            ("order_id", "tg-secret-order"),
            ("amount", "42"),
            ("notify_url", "http://127.0.0.1:9/notify"),
        ],
    )
    .await;
    let trade_id = order["data"]["trade_id"]
        .as_str()
        .expect("trade id")
        .to_string();
    linked_admin(&s.app, "vera", Role::Viewer, 111, false).await;

    // A stranger: commands, plain text, a group message; then the linked viewer.
    s.api.message(222, "/orders");
    s.api.message(222, "/status");
    s.api.message(222, "hello?");
    let group = json!({ "id": -100500, "type": "group", "title": "shop ops" });
    s.api.message_in(333, group, "anyone there");
    let reply = ask(&s, 111, "/orders").await;
    assert!(text(&reply).contains(&trade_id), "{reply}");

    let refused = s.api.sent_to(222);
    assert_eq!(refused.len(), 1, "one refusal per window: {refused:?}");
    let t = text(&refused[0]);
    assert!(t.contains("Not authorised") && t.contains("222"), "{t}");
    assert!(
        !t.contains(&trade_id) && !t.contains("tg-secret-order"),
        "{t}"
    );
    assert!(
        s.api.sent_to(-100500).is_empty(),
        "plain group chatter is ignored"
    );
    let events = audit_events(&s.app, "telegram.refused").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].actor, "telegram:222");

    // A viewer reads but cannot write.
    let reply = ask(
        &s,
        111,
        "/wallet_add tron T9yD14Nj9j7xAB4dbGeiX9h8unkKHxuWwb",
    )
    .await;
    assert!(text(&reply).contains("needs the admin role"), "{reply}");
    assert!(reply.get("reply_markup").is_none(), "{reply}");

    // Unlinking takes the rights away.
    service::admin::telegram::link(&s.app.state.db, "vera", None)
        .await
        .expect("unlink");
    let reply = ask(&s, 111, "/orders").await;
    assert!(text(&reply).contains("Not authorised"), "{reply}");
    s.app.stop().await;
}
on_all_backends!(unlinked_user_gets_no_data);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_command_answers() {
    let Some(s) = setup(Backend::Sqlite, |_| {}).await else {
        return;
    };
    linked_admin(&s.app, "olga", Role::Owner, 301, false).await;
    let order = common::create_v1(
        &s.app,
        &[
            ("order_id", "shop-77"),
            ("amount", "72"),
            ("notify_url", "http://127.0.0.1:9/notify"),
        ],
    )
    .await;
    let trade_id = order["data"]["trade_id"]
        .as_str()
        .expect("trade id")
        .to_string();
    let actual = order["data"]["actual_amount"].to_string();
    s.app.pay(&order["data"], &actual).await;

    let commands = s.api.wait_calls("setMyCommands", 1, 5).await;
    let names: Vec<&str> = commands[0].body["commands"]
        .as_array()
        .expect("commands")
        .iter()
        .filter_map(|c| c["command"].as_str())
        .collect();
    for c in [
        "help",
        "status",
        "orders",
        "order",
        "wallets",
        "wallet_add",
        "wallet_disable",
        "wallet_enable",
        "resend",
        "rate",
        "notify",
    ] {
        assert!(names.contains(&c), "{c} registered: {names:?}");
    }

    let r = ask(&s, 301, "/help").await;
    assert!(
        text(&r).contains("/wallet_add") && text(&r).contains("/status"),
        "{r}"
    );
    assert_eq!(r["parse_mode"], "HTML", "{r}");
    let r = ask(&s, 301, "/start").await;
    assert!(
        text(&r).contains("olga") && text(&r).contains("owner"),
        "{r}"
    );
    let r = ask(&s, 301, "/status").await;
    assert!(
        text(&r).contains("Queue") && text(&r).contains("Today</b>: 1 paid"),
        "{r}"
    );
    let r = ask(&s, 301, "/orders 5").await;
    assert!(
        text(&r).contains(&trade_id) && text(&r).contains("paid"),
        "{r}"
    );
    let r = ask(&s, 301, "/orders 500").await;
    assert!(text(&r).contains("Usage"), "{r}");
    for key in [trade_id.as_str(), "shop-77"] {
        let r = ask(&s, 301, &format!("/order {key}")).await;
        let t = text(&r);
        assert!(t.contains("Order paid") && t.contains(&trade_id), "{t}");
        assert!(
            t.contains("shop-77") && t.contains(common::TRON_WALLET),
            "{t}"
        );
        assert!(t.contains("Callback attempts"), "{t}");
    }
    let r = ask(&s, 301, "/order nope").await;
    assert!(text(&r).contains("No order"), "{r}");
    let r = ask(&s, 301, "/wallets").await;
    assert!(
        text(&r).contains(common::TRON_WALLET) && text(&r).contains("enabled"),
        "{r}"
    );
    let r = ask(&s, 301, "/rate").await;
    assert!(text(&r).contains("CNY 7.2"), "{r}");
    let r = ask(&s, 301, "/notify on").await;
    assert!(text(&r).contains("Notices on"), "{r}");
    let a = service::admin::find_by_username(&s.app.state.db, "olga")
        .await
        .expect("db")
        .expect("olga");
    assert!(a.tg_notify);
    let r = ask(&s, 301, "/frobnicate").await;
    assert!(text(&r).contains("/help"), "{r}");
    // Writes answer with a question and buttons, and change nothing yet.
    for cmd in [
        format!("/resend {trade_id}"),
        "/rate EUR 7.9".into(),
        "/wallet_disable 1".into(),
        "/wallet_enable 1".into(),
    ] {
        let r = ask(&s, 301, &cmd).await;
        assert!(text(&r).contains("Confirm?"), "{cmd}: {r}");
        assert!(
            r["reply_markup"]["inline_keyboard"].is_array(),
            "{cmd}: {r}"
        );
    }
    s.app.stop().await;
}

/// The Confirm and Cancel buttons' data of a question.
fn buttons(m: &Value) -> (String, String) {
    let row = &m["reply_markup"]["inline_keyboard"][0];
    (
        row[0]["callback_data"]
            .as_str()
            .expect("confirm")
            .to_string(),
        row[1]["callback_data"]
            .as_str()
            .expect("cancel")
            .to_string(),
    )
}

/// Presses `data` as `from` and returns the text the question was edited to.
async fn press(s: &Setup, from: i64, data: &str) -> String {
    let before = s
        .api
        .calls()
        .iter()
        .filter(|c| c.method == "editMessageText")
        .count();
    s.api.press(from, 1, data);
    let edits = s.api.wait_calls("editMessageText", before + 1, 20).await;
    edits[before].body["text"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmation_flow() {
    let Some(s) = setup(Backend::Sqlite, |_| {}).await else {
        return;
    };
    linked_admin(&s.app, "adam", Role::Admin, 401, false).await;
    let db = &s.app.state.db;
    let new = common::TRON_WALLET_2;

    let q = ask(&s, 401, &format!("/wallet_add trc20 {new}")).await;
    assert!(text(&q).contains(new), "{q}");
    let (confirm, cancel) = buttons(&q);
    assert!(confirm.len() <= 64);
    let has =
        |rows: &[epusdt::store::entities::wallet::Model]| rows.iter().any(|w| w.address == new);
    assert!(
        !has(&service::wallet::list(db).await.expect("list")),
        "nothing before Confirm"
    );

    // A stranger pressing the button does nothing (and hears the refusal).
    s.api.press(999, 1, &confirm);
    s.api.wait_sent(999, 1, 20).await;
    assert!(!has(&service::wallet::list(db).await.expect("list")));

    let done = press(&s, 401, &confirm).await;
    assert!(done.contains("added"), "{done}");
    let w = service::wallet::list(db)
        .await
        .expect("list")
        .into_iter()
        .find(|w| w.address == new)
        .expect("wallet added");
    assert_eq!((w.network.as_str(), w.enabled), ("tron", true));
    let ev = audit_events(&s.app, "wallet.add").await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0].actor, "admin:adam");
    assert!(ev[0].details.contains("telegram"), "{:?}", ev[0]);
    assert!(
        s.api
            .calls()
            .iter()
            .any(|c| c.method == "answerCallbackQuery"),
        "the button press is answered"
    );
    // Pressing again: the unique constraint answers.
    let again = press(&s, 401, &confirm).await;
    assert!(
        again.contains("Not added") && again.contains("already exists"),
        "{again}"
    );

    // Cancel changes nothing; Confirm disables.
    let q = ask(&s, 401, &format!("/wallet_disable {}", w.id)).await;
    let (confirm, _) = buttons(&q);
    assert_eq!(press(&s, 401, &cancel).await, "Cancelled.");
    let enabled = |id| async move {
        service::wallet::list(db)
            .await
            .expect("list")
            .into_iter()
            .find(|w| w.id == id)
            .expect("wallet")
            .enabled
    };
    assert!(enabled(w.id).await);
    assert!(press(&s, 401, &confirm).await.contains("disabled"));
    assert!(!enabled(w.id).await);
    assert_eq!(audit_events(&s.app, "wallet.update").await.len(), 1);

    // A rate.
    let q = ask(&s, 401, "/rate EUR 7.9").await;
    let (confirm, _) = buttons(&q);
    assert!(press(&s, 401, &confirm).await.contains("7.9"));
    let eur = service::rate::usdt_rate(db, &s.app.config, "EUR")
        .await
        .expect("rate");
    assert_eq!(eur, Some("7.9".parse().expect("dec")));
    assert_eq!(audit_events(&s.app, "rate.set").await.len(), 1);

    // Resend of an unpaid order: the service's answer, nothing queued.
    let order = common::create_v1(
        &s.app,
        &[
            ("order_id", "r-1"),
            ("amount", "10"),
            ("notify_url", "http://127.0.0.1:9/n"),
        ],
    )
    .await;
    let trade_id = order["data"]["trade_id"].as_str().expect("trade id");
    let q = ask(&s, 401, &format!("/resend {trade_id}")).await;
    let (confirm, _) = buttons(&q);
    let t = press(&s, 401, &confirm).await;
    assert!(t.contains("Not queued") && t.contains("not paid"), "{t}");
    s.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_order_notice_after_onchain_payment() {
    use chain_support::{ACCOUNTS, Anvil, create_order, evm_network, units};
    let Some(anvil) = Anvil::start().await else {
        return;
    };
    let token = anvil.deploy_token(6).await;
    let nc = evm_network(vec![anvil.url.clone()], &token, 6);
    let Some(s) = setup(Backend::Sqlite, |c| {
        c.networks.insert("ethereum".into(), nc);
    })
    .await
    else {
        return;
    };
    let db = &s.app.state.db;
    service::wallet::set_enabled(db, common::EVM_WALLET, false)
        .await
        .expect("disable placeholder");
    service::wallet::add(
        db,
        &epusdt::domain::network::Networks::presets(),
        "ethereum",
        ACCOUNTS[1],
        None,
        "anvil-1",
    )
    .await
    .expect("wallet");
    linked_admin(&s.app, "nina", Role::Viewer, 501, true).await;
    linked_admin(&s.app, "quiet", Role::Owner, 502, false).await;
    let (merchant, murl) = common::Merchant::start(0, "ok").await;

    let (trade_id, amount, address) = create_order(
        &s.app,
        "tg-paid-1",
        "100",
        "usdt.erc20",
        &format!("{murl}/notify"),
    )
    .await;
    let (tx, _) = anvil.transfer(&token, &address, units(&amount, 6)).await;
    anvil.mine(2).await;

    let sent = s.api.wait_sent(501, 1, 60).await;
    let t = text(&sent[0]);
    assert!(t.contains("Order paid"), "{t}");
    assert!(t.contains(&trade_id) && t.contains("tg-paid-1"), "{t}");
    assert!(
        t.contains(&format!("= {amount} USDT")) && t.contains("ethereum"),
        "{t}"
    );
    assert!(t.contains(&format!("https://etherscan.io/tx/{tx}")), "{t}");
    assert_eq!(sent[0]["parse_mode"], "HTML");
    merchant.wait_for(1, 30).await;
    s.app.wait_delivered(&trade_id, 30).await;
    assert_eq!(s.api.sent_to(501).len(), 1, "one notice per payment");
    assert!(s.api.sent_to(502).is_empty(), "not opted in");
    s.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_429_then_success() {
    let Some(s) = setup(Backend::Sqlite, |c| c.tg_manage = Some(701)).await else {
        return;
    };
    s.api.rate_limit_next(2, 2);
    service::telegram::raise(
        &s.app.state.queue,
        Notice::Chain {
            network: "tron".into(),
            problem: "<script>alert(1)</script> & lag".into(),
        },
    )
    .await
    .expect("queued");
    let sent = s.api.wait_sent(701, 1, 60).await;
    assert!(
        text(&sent[0]).contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; lag"),
        "escaped: {}",
        text(&sent[0])
    );
    let tries: Vec<_> = s
        .api
        .calls()
        .into_iter()
        .filter(|c| c.method == "sendMessage" && c.body["chat_id"] == 701)
        .collect();
    let statuses: Vec<u16> = tries.iter().map(|c| c.status).collect();
    assert_eq!(statuses, vec![429, 429, 200]);
    for w in tries.windows(2) {
        assert!(
            w[1].at.duration_since(w[0].at) >= Duration::from_secs(2),
            "retry_after honoured: {:?}",
            w[1].at.duration_since(w[0].at)
        );
    }
    s.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegram_down_for_a_minute_then_back() {
    let Some(s) = setup(Backend::Sqlite, |c| c.tg_manage = Some(801)).await else {
        return;
    };
    s.api.set_down(true);
    let down_at = Instant::now();
    service::telegram::raise(
        &s.app.state.queue,
        Notice::KeyRotated {
            key_id: "k2".into(),
        },
    )
    .await
    .expect("queued");
    let failed = |s: &Setup| {
        s.api
            .calls()
            .into_iter()
            .filter(|c| c.method == "sendMessage" && c.status == 502)
            .count()
    };
    common::eventually(30, "failed sends while down", || {
        let n = failed(&s);
        async move { (n >= 3).then_some(()) }
    })
    .await;
    // The outage itself (a scenario length, not a synchronisation).
    tokio::time::sleep_until((down_at + Duration::from_secs(60)).into()).await;
    assert!(s.api.sent_to(801).is_empty());
    s.api.set_down(false);
    let sent = s.api.wait_sent(801, 1, 90).await;
    assert!(
        text(&sent[0]).contains("Master key rotated"),
        "{:?}",
        sent[0]
    );
    assert!(failed(&s) >= 5, "kept trying during the outage");
    // The bot also recovered its polling: a command is answered.
    linked_admin(&s.app, "back", Role::Viewer, 802, false).await;
    let r = ask(&s, 802, "/wallets").await;
    assert!(text(&r).contains(common::TRON_WALLET), "{r}");

    // The token is in no stored byte: database (jobs, audit), audit files.
    let dir = s.app.dir.clone();
    s.app.stop().await;
    let mut files = vec![];
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    let secret = TOKEN.split_once(':').expect("token").1;
    for f in files {
        let bytes = std::fs::read(&f).expect("read");
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret),
            "token found in {}",
            f.display()
        );
    }
}

#[test]
fn config_check_redacts_the_bot_token_and_names_bad_keys() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join(".env"),
        format!("tg_bot_token={TOKEN}\ntg_manage=4242\ntg_notify=paid,chain\n"),
    )
    .expect("env");
    let out = common::epusdt(dir.path())
        .args(["config", "check"])
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    let secret = TOKEN.split_once(':').expect("token").1;
    assert!(
        !stdout.contains(secret) && !stderr.contains(secret),
        "{stdout}{stderr}"
    );
    assert!(
        stdout.contains("4242") && stdout.contains("paid,chain"),
        "{stdout}"
    );
    assert!(!stdout.contains("ignored: tg_manage"), "{stdout}");

    std::fs::write(dir.path().join(".env"), "tg_notify=paid,gossip\n").expect("env");
    let out = common::epusdt(dir.path())
        .args(["config", "check"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tg_notify") && err.contains("gossip"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_links_a_telegram_user_over_the_admin_api() {
    use crate::admin_auth::{OWNER_PW, access, add_admin, call};
    let Some(s) = setup(Backend::Sqlite, |_| {}).await else {
        return;
    };
    add_admin(&s.app, "root", Role::Owner, OWNER_PW).await;
    add_admin(&s.app, "vic", Role::Viewer, OWNER_PW).await;
    let t = access(&s.app, "root", OWNER_PW).await;
    let t = Some(t.as_str());
    let path = "/admin/api/v1/admins/vic";
    let (st, e) = call(&s.app, "PATCH", path, t, Some(json!({ "telegram_id": -5 }))).await;
    assert_eq!(st, 422, "{e}");
    let (st, v) = call(
        &s.app,
        "PATCH",
        path,
        t,
        Some(json!({ "telegram_id": 901, "tg_notify": true })),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (
            v["admin"]["telegram_id"].as_i64(),
            v["admin"]["tg_notify"].as_bool()
        ),
        (Some(901), Some(true))
    );
    let r = ask(&s, 901, "/start").await;
    assert!(
        text(&r).contains("vic") && text(&r).contains("viewer"),
        "{r}"
    );
    // One Telegram user per admin.
    let (st, e) = call(
        &s.app,
        "PATCH",
        "/admin/api/v1/admins/root",
        t,
        Some(json!({ "telegram_id": 901 })),
    )
    .await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (409, Some("telegram_taken")),
        "{e}"
    );
    let (st, v) = call(
        &s.app,
        "PATCH",
        path,
        t,
        Some(json!({ "telegram_id": null })),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert!(v["admin"]["telegram_id"].is_null(), "{v}");
    assert_eq!(audit_events(&s.app, "admin.telegram_link").await.len(), 1);
    assert_eq!(audit_events(&s.app, "admin.telegram_unlink").await.len(), 1);
    let r = ask(&s, 901, "/start").await;
    assert!(text(&r).contains("Not authorised"), "{r}");
    s.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_with_tg_poll_off_sends_notices_without_polling() {
    let api = BotApi::start().await;
    let url = api.url.clone();
    let Some(app) = common::spawn_app_with(Backend::Sqlite, |c| {
        c.tg_bot_token = Some(Secret::new(TOKEN));
        c.tg_api_url = url;
        c.tg_manage = Some(711);
        c.tg_poll = false;
    })
    .await
    else {
        return;
    };
    service::telegram::raise(
        &app.state.queue,
        Notice::Lockout {
            username: "mallory".into(),
        },
    )
    .await
    .expect("queued");
    let sent = api.wait_sent(711, 1, 30).await;
    assert!(text(&sent[0]).contains("mallory"), "{:?}", sent[0]);
    assert!(
        api.calls().iter().all(|c| c.method == "sendMessage"),
        "no getMe/getUpdates/setMyCommands: {:?}",
        api.calls()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lockout_raises_one_security_notice() {
    use crate::admin_auth::{OWNER_PW, add_admin, call};
    let Some(s) = setup(Backend::Sqlite, |c| c.tg_manage = Some(721)).await else {
        return;
    };
    add_admin(&s.app, "lockme", Role::Admin, OWNER_PW).await;
    let wrong = json!({ "username": "lockme", "password": "wrong password guess" });
    let mut codes = vec![];
    for _ in 0..7 {
        let (st, _) = call(
            &s.app,
            "POST",
            "/admin/api/v1/auth/login",
            None,
            Some(wrong.clone()),
        )
        .await;
        codes.push(st);
    }
    assert_eq!(codes, vec![401, 401, 401, 401, 401, 429, 429]);
    let sent = s.api.wait_sent(721, 1, 30).await;
    assert!(
        text(&sent[0]).contains("Admin locked") && text(&sent[0]).contains("lockme"),
        "{:?}",
        sent[0]
    );
    // Unknown usernames never raise one (no notice flood from a spray).
    let spray = json!({ "username": "nobody-here", "password": "wrong password guess" });
    for _ in 0..7 {
        call(
            &s.app,
            "POST",
            "/admin/api/v1/auth/login",
            None,
            Some(spray.clone()),
        )
        .await;
    }
    // A later notice proves the queue moved past anything the spray could have queued.
    service::telegram::raise(
        &s.app.state.queue,
        Notice::Chain {
            network: "tron".into(),
            problem: "marker".into(),
        },
    )
    .await
    .expect("queued");
    let sent = s.api.wait_sent(721, 2, 30).await;
    assert!(text(&sent[1]).contains("marker"), "{sent:?}");
    assert_eq!(
        sent.iter()
            .filter(|m| text(m).contains("Admin locked"))
            .count(),
        1,
        "{sent:?}"
    );
    s.app.stop().await;
}
