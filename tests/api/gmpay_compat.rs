//! GMPay as shops integrated with upstream GMWalletApp/epusdt call it. The client here is written
//! from upstream's wiki/API.md ("签名规则", "创建 GMPay 交易", "商户异步回调") and its Go signer
//! (`util/sign/sign.go`: every field but `signature`, null and empty strings left out, JSON
//! numbers as Go's `FormatFloat(v, 'f', -1, 64)`, the whole `k=v` strings sorted with
//! `sort.Strings`, joined with `&`; MD5 of the string + secret, lower-case hex), plus the
//! HMAC-SHA256 variant (hex(HMAC-SHA256(secret, string))). Nothing here calls the crate's
//! signing code.
use crate::common;

use std::collections::BTreeMap;

use common::{Backend, Merchant, md5_hex};
use epusdt::crypto::sign::SignMode;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

const GMPAY: &str = "/payments/gmpay/v1/order/create-transaction";
const V1: &str = "/api/v1/order/create-transaction";
const CANCEL: &str = "/api/v1/order/cancel-transaction";
/// The key of upstream's documented example.
const DOC_SECRET: &str = "epusdt_secret_key";
/// A BSC receive address (any EVM address).
const BSC_WALLET: &str = "0x00000000000000000000000000000000000000bb";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Alg {
    Md5,
    Hmac,
}

/// Upstream's string to sign: the `k=v` strings of every non-empty field but `signature`, sorted
/// byte-wise as whole strings (Go `sort.Strings`), joined with `&`.
fn upstream_string(fields: &[(String, String)]) -> String {
    let mut items: Vec<String> = fields
        .iter()
        .filter(|(k, v)| k != "signature" && !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    items.sort();
    items.join("&")
}

fn hmac_hex(msg: &str, secret: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
    mac.update(msg.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn sign_string(s: &str, secret: &str, alg: Alg) -> String {
    match alg {
        Alg::Md5 => md5_hex(&format!("{s}{secret}")),
        Alg::Hmac => hmac_hex(s, secret),
    }
}

/// One request field: its key, its JSON text as sent, and the text upstream signs for it.
#[derive(Clone)]
struct F {
    key: String,
    json: String,
    signed: String,
}

/// A string field (signed as sent).
fn s(key: &str, v: &str) -> F {
    F {
        key: key.into(),
        json: json!(v).to_string(),
        signed: v.into(),
    }
}

/// A JSON number sent as `text`, which upstream signs as `signed` (its float64 in Go's spelling).
fn n(key: &str, text: &str, signed: &str) -> F {
    F {
        key: key.into(),
        json: text.into(),
        signed: signed.into(),
    }
}

fn signed_pairs(fields: &[F]) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|f| (f.key.clone(), f.signed.clone()))
        .collect()
}

/// The JSON body of `fields` with `signature` set to `sig`.
fn body_with(fields: &[F], sig: &str) -> String {
    let mut parts: Vec<String> = fields
        .iter()
        .map(|f| format!("{}:{}", json!(f.key), f.json))
        .collect();
    parts.push(format!("\"signature\":{}", json!(sig)));
    format!("{{{}}}", parts.join(","))
}

/// The JSON body of `fields`, signed as upstream documents.
fn body(fields: &[F], secret: &str, alg: Alg) -> String {
    body_with(
        fields,
        &sign_string(&upstream_string(&signed_pairs(fields)), secret, alg),
    )
}

/// POSTs a JSON text; the HTTP status and the JSON reply.
async fn post(app: &common::TestApp, path: &str, body: String) -> (u16, Value) {
    let resp = app
        .client
        .post(app.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json reply"))
}

/// A GMPay create request of merchant `pid` for `amount` USD on TRON.
fn order(pid: &str, order_id: &str, amount: &str, notify_url: &str) -> Vec<F> {
    vec![
        s("pid", pid),
        s("order_id", order_id),
        s("currency", "usd"),
        s("token", "usdt"),
        s("network", "tron"),
        n("amount", amount, amount),
        s("notify_url", notify_url),
    ]
}

/// A received JSON callback as the merchant reads it for verification: every field, numbers in
/// their JSON text.
fn callback_pairs(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .expect("object")
        .iter()
        .filter_map(|(k, v)| {
            let t = match v {
                Value::Null => return None,
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Some((k.clone(), t))
        })
        .collect()
}

async fn add_merchant(app: &common::TestApp, pid: i64, mode: SignMode) -> String {
    epusdt::service::merchant::add_with_mode(
        &app.state.db,
        &app.state.keys,
        "shop",
        Some(pid),
        None,
        false,
        mode,
    )
    .await
    .expect("merchant")
    .secret
    .expose()
    .to_string()
}

/// Pays a GMPay order (its `data`) in full, as the chain watcher would.
async fn pay(app: &common::TestApp, d: &Value) {
    let to = json!({"token": d["receive_address"]});
    app.pay(&to, &d["actual_amount"].to_string()).await;
}

/// Upstream's documented request (wiki/API.md, pid 1000 with the default key), byte for byte,
/// creates an order; the reply and the callback are upstream-shaped and MD5-signed.
async fn documented_md5_request_and_callback(backend: Backend) {
    let Some(app) = common::spawn_app_with(backend, |c| {
        c.api_auth_token = Some(epusdt::config::Secret::new(DOC_SECRET));
    })
    .await
    else {
        return;
    };
    let documented = r#"{
  "pid": "1000",
  "order_id": "ORD202605230001",
  "currency": "cny",
  "token": "usdt",
  "network": "tron",
  "amount": 100,
  "notify_url": "https://merchant.example/notify",
  "redirect_url": "https://merchant.example/return",
  "name": "VIP",
  "signature": "476412c422f4dd75c3d533f5c47a9cac"
}"#;
    let (status, r) = post(&app, GMPAY, documented.into()).await;
    assert_eq!((status, &r["status_code"]), (200, &json!(200)), "{r}");
    let d = &r["data"];
    assert_eq!(d["order_id"], "ORD202605230001");
    assert_eq!(d["amount"], json!(100));
    assert_eq!(d["currency"], "CNY");
    assert_eq!(d["actual_amount"].to_string(), "13.89");
    assert_eq!(d["receive_address"], common::TRON_WALLET);
    assert_eq!(d["token"], "USDT");
    assert_eq!(d["status"], 1);
    assert!(d["expiration_time"].as_i64().unwrap() > epusdt::service::now());
    let trade_id = d["trade_id"].as_str().unwrap();
    assert!(
        d["payment_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/pay/checkout-counter/{trade_id}"))
    );

    // Another order with a reachable notify_url: its callback is upstream's OrderNotifyResponse,
    // MD5-signed like the request (verified as upstream's docs tell the merchant to).
    let (merchant, murl) = Merchant::start(0, "ok").await;
    let req = order("1000", "ORD-CB-1", "20", &format!("{murl}/gm"));
    let (status, r) = post(&app, GMPAY, body(&req, DOC_SECRET, Alg::Md5)).await;
    assert_eq!(status, 200, "{r}");
    pay(&app, &r["data"]).await;
    let calls = merchant.wait_for(1, 20).await;
    let cb: Value = serde_json::from_str(&calls[0].body).expect("JSON callback");
    for key in [
        "pid",
        "trade_id",
        "order_id",
        "amount",
        "actual_amount",
        "receive_address",
        "token",
        "block_transaction_id",
        "signature",
        "status",
    ] {
        assert!(cb.get(key).is_some(), "callback has {key}: {cb}");
    }
    assert_eq!(cb["pid"], "1000", "pid is a string, as upstream");
    assert_eq!(cb["order_id"], "ORD-CB-1");
    assert_eq!(cb["trade_id"], r["data"]["trade_id"]);
    assert_eq!(cb["amount"], json!(20));
    assert_eq!(cb["receive_address"], common::TRON_WALLET);
    assert_eq!(cb["token"], "USDT");
    assert_eq!(cb["status"], 2);
    let expected = sign_string(&upstream_string(&callback_pairs(&cb)), DOC_SECRET, Alg::Md5);
    assert_eq!(cb["signature"], expected, "callback signed with MD5");
    app.stop().await;
}
on_all_backends!(documented_md5_request_and_callback);

/// md5-only and hmac_sha256-only merchants refuse the other algorithm (HTTP 401); a dual
/// merchant accepts both; every callback is signed with the algorithm its order was created with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_modes_and_callbacks_signed_like_the_order() {
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    let md5_only = add_merchant(&app, 2001, SignMode::Md5).await;
    let hmac_only = add_merchant(&app, 2002, SignMode::HmacSha256).await;
    let dual = add_merchant(&app, 2003, SignMode::Dual).await;
    let (merchant, murl) = Merchant::start(0, "ok").await;
    let notify = format!("{murl}/gm");
    let cases = [
        ("2001", &md5_only, Alg::Hmac, "M-H", false),
        ("2001", &md5_only, Alg::Md5, "M-M", true),
        ("2002", &hmac_only, Alg::Md5, "H-M", false),
        ("2002", &hmac_only, Alg::Hmac, "H-H", true),
        ("2003", &dual, Alg::Md5, "D-M", true),
        ("2003", &dual, Alg::Hmac, "D-H", true),
    ];
    let mut secrets = BTreeMap::new();
    let mut amount = 10;
    for (pid, secret, alg, order_id, accepted) in cases {
        amount += 1;
        let req = order(pid, order_id, &amount.to_string(), &notify);
        let (status, r) = post(&app, GMPAY, body(&req, secret, alg)).await;
        if accepted {
            assert_eq!(
                (status, &r["status_code"]),
                (200, &json!(200)),
                "{order_id}: {r}"
            );
            pay(&app, &r["data"]).await;
            secrets.insert(order_id.to_string(), (secret.clone(), alg));
        } else {
            assert_eq!(status, 401, "{order_id}: {r}");
            assert_eq!(r["status_code"], 401, "{order_id}: {r}");
            assert_eq!(r["data"], Value::Null);
        }
    }
    let calls = merchant.wait_for(secrets.len(), 30).await;
    let mut seen = 0;
    for call in calls {
        let cb: Value = serde_json::from_str(&call.body).expect("JSON callback");
        let (secret, alg) = &secrets[cb["order_id"].as_str().unwrap()];
        let string = upstream_string(&callback_pairs(&cb));
        assert_eq!(
            cb["signature"],
            sign_string(&string, secret, *alg),
            "{cb}: signed with {alg:?}"
        );
        let other = if *alg == Alg::Md5 {
            Alg::Hmac
        } else {
            Alg::Md5
        };
        assert_ne!(cb["signature"], sign_string(&string, secret, other));
        seen += 1;
    }
    assert_eq!(seen, secrets.len());
    app.stop().await;
}

/// The canonical string exactly as upstream: whole `k=v` sort, Go number spelling, text as sent,
/// booleans refused, exact lower-case comparison; `pid` forms; HTTP 400/401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canonical_string_pid_forms_and_http_statuses() {
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    let secret = add_merchant(&app, 2001, SignMode::Dual).await;
    let n_url = "http://127.0.0.1:9/n";
    let ok = |r: &(u16, Value), what: &str| {
        assert_eq!(
            (r.0, &r.1["status_code"]),
            (200, &json!(200)),
            "{what}: {}",
            r.1
        );
    };
    let refused = |r: &(u16, Value), what: &str| {
        assert_eq!(
            (r.0, &r.1["status_code"]),
            (401, &json!(401)),
            "{what}: {}",
            r.1
        );
    };

    // A key that prefixes another: Go sorts "note-2=…" before "note=…" ('-' < '=').
    let mut req = order("2001", "P-1", "10", n_url);
    req.push(s("note", "y"));
    req.push(s("note-2", "x"));
    let string = upstream_string(&signed_pairs(&req));
    assert!(string.contains("note-2=x&note=y"), "{string}");
    let by_key: String = {
        let m: BTreeMap<String, String> = signed_pairs(&req).into_iter().collect();
        m.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    };
    assert!(by_key.contains("note=y&note-2=x"));
    let r = post(
        &app,
        GMPAY,
        body_with(&req, &sign_string(&by_key, &secret, Alg::Md5)),
    )
    .await;
    refused(&r, "sorted by key only");
    ok(
        &post(&app, GMPAY, body(&req, &secret, Alg::Md5)).await,
        "whole-string sort",
    );

    // An upper-case signature is refused: upstream compares exactly.
    let req = order("2001", "P-2", "10", n_url);
    let upper =
        sign_string(&upstream_string(&signed_pairs(&req)), &secret, Alg::Md5).to_uppercase();
    refused(
        &post(&app, GMPAY, body_with(&req, &upper)).await,
        "upper case",
    );
    ok(
        &post(&app, GMPAY, body(&req, &secret, Alg::Md5)).await,
        "lower case",
    );

    // A boolean cannot be signed (upstream's signer fails on it): a signature error.
    let mut req = order("2001", "P-3", "10", n_url);
    req.push(F {
        key: "test".into(),
        json: "true".into(),
        signed: "true".into(),
    });
    refused(
        &post(&app, GMPAY, body(&req, &secret, Alg::Md5)).await,
        "boolean",
    );

    // Numbers are signed as Go spells their float64; text as sent.
    let mut req = order("2001", "P-4", "10", n_url);
    req[5] = n("amount", "10.50", "10.5");
    req.push(n(
        "timestamp",
        &format!("{}.000", epusdt::service::now()),
        &epusdt::service::now().to_string(),
    ));
    ok(
        &post(&app, GMPAY, body(&req, &secret, Alg::Hmac)).await,
        "number spelling",
    );
    let form = [
        ("pid", "2001"),
        ("order_id", "P-5"),
        ("currency", "usd"),
        ("amount", "10.50"),
        ("notify_url", n_url),
    ];
    let pairs: Vec<(String, String)> = form
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let sig = sign_string(&upstream_string(&pairs), &secret, Alg::Md5);
    let mut form_body: Vec<(&str, &str)> = form.to_vec();
    form_body.push(("signature", &sig));
    let resp = app
        .client
        .post(app.url(GMPAY))
        .form(&form_body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "a form's 10.50 is signed as 10.50");

    // pid as a string, an integer or an integral float.
    for (i, pid) in [
        s("pid", "2001"),
        n("pid", "2001", "2001"),
        n("pid", "2001.0", "2001"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut req = order("2001", &format!("PID-{i}"), "10", n_url);
        req[0] = pid;
        ok(
            &post(&app, GMPAY, body(&req, &secret, Alg::Md5)).await,
            &format!("pid form {i}"),
        );
    }
    // A non-integral or garbage pid names no merchant: a signature error, as upstream.
    for (i, pid) in [
        n("pid", "2001.5", "2001.5"),
        s("pid", "abc"),
        s("pid", "2001.0"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut req = order("2001", &format!("BADPID-{i}"), "10", n_url);
        req[0] = pid;
        refused(
            &post(&app, GMPAY, body(&req, &secret, Alg::Md5)).await,
            &format!("bad pid {i}"),
        );
    }

    // Business errors: HTTP 400 with the code in status_code.
    let mut req = order("2001", "E-1", "10", n_url);
    req.retain(|f| f.key != "notify_url");
    let (status, r) = post(&app, GMPAY, body(&req, &secret, Alg::Md5)).await;
    assert_eq!((status, &r["status_code"]), (400, &json!(10009)), "{r}");
    assert!(r["message"].as_str().unwrap().contains("notify_url"), "{r}");
    let req = order("2001", "P-2", "11", n_url);
    let (status, r) = post(&app, GMPAY, body(&req, &secret, Alg::Md5)).await;
    assert_eq!((status, &r["status_code"]), (400, &json!(10002)), "{r}");

    // v1 keeps upstream assimon/epusdt's HTTP 200 for every answer.
    let resp = app
        .client
        .post(app.url(V1))
        .json(&json!({"order_id": "V-1", "amount": 10, "notify_url": n_url, "signature": "0".repeat(32)}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let r: Value = resp.json().await.unwrap();
    assert_eq!(r["status_code"], 401);
    app.stop().await;
}

/// `payment_type=Epay` (any case; a signed parameter) makes an EPay order: the reply stays
/// GMPay-shaped, the callback is EPay's (MD5 `sign`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_type_epay_gives_an_epay_callback() {
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    let secret = add_merchant(&app, 2001, SignMode::Dual).await;
    let (merchant, murl) = Merchant::start(0, "success").await;
    let mut req = order("2001", "EP-1", "12", &format!("{murl}/epay"));
    req.push(s("payment_type", "epay"));
    // payment_type is signed: leaving it out of the string is a signature error.
    let unsigned: Vec<F> = req
        .iter()
        .filter(|f| f.key != "payment_type")
        .cloned()
        .collect();
    let sig = sign_string(
        &upstream_string(&signed_pairs(&unsigned)),
        &secret,
        Alg::Md5,
    );
    let (status, _) = post(&app, GMPAY, body_with(&req, &sig)).await;
    assert_eq!(status, 401);
    let (status, r) = post(&app, GMPAY, body(&req, &secret, Alg::Md5)).await;
    assert_eq!(status, 200, "{r}");
    let d = &r["data"];
    assert_eq!(d["token"], "USDT");
    assert_eq!(d["receive_address"], common::TRON_WALLET);
    pay(&app, d).await;
    let calls = merchant.wait_for(1, 20).await;
    let call = &calls[0];
    let query = call.uri.split_once('?').map(|(_, q)| q).unwrap_or("");
    let text = if query.contains("trade_no=") {
        query.to_string()
    } else {
        call.body.clone()
    };
    let got: BTreeMap<String, String> = url::form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(got["pid"], "2001", "{got:?}");
    assert_eq!(got["trade_no"], d["trade_id"].as_str().unwrap());
    assert_eq!(got["out_trade_no"], "EP-1");
    assert_eq!(got["trade_status"], "TRADE_SUCCESS");
    let pairs: Vec<(String, String)> = got
        .iter()
        .filter(|(k, _)| k.as_str() != "sign" && k.as_str() != "sign_type")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(
        got["sign"],
        md5_hex(&format!("{}{secret}", upstream_string(&pairs))),
        "EPay sign: md5 of the sorted params + key"
    );
    app.stop().await;
}

/// A GMPay cancel is verified under the merchant's sign mode and answered with GMPay's statuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_verifies_under_the_sign_mode() {
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    let secret = add_merchant(&app, 2001, SignMode::Md5).await;
    let req = order("2001", "C-1", "10", "http://127.0.0.1:9/n");
    let (status, r) = post(&app, GMPAY, body(&req, &secret, Alg::Md5)).await;
    assert_eq!(status, 200, "{r}");
    let trade_id = r["data"]["trade_id"].as_str().unwrap().to_string();
    let cancel = [s("pid", "2001"), s("trade_id", &trade_id)];
    let (status, r) = post(&app, CANCEL, body(&cancel, &secret, Alg::Hmac)).await;
    assert_eq!((status, &r["status_code"]), (401, &json!(401)), "{r}");
    let (status, r) = post(&app, CANCEL, body(&cancel, &secret, Alg::Md5)).await;
    assert_eq!((status, &r["status_code"]), (200, &json!(200)), "{r}");
    assert_eq!(r["data"]["status"], 4);
    let (status, r) = post(&app, CANCEL, body(&cancel, &secret, Alg::Md5)).await;
    assert_eq!(status, 400, "cancelling twice is a business error: {r}");
    app.stop().await;
}

/// BSC is `binance` upstream: both keys are accepted, replies name it `binance`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bsc_is_binance() {
    let Some(app) = common::spawn_app(Backend::Sqlite).await else {
        return;
    };
    epusdt::service::wallet::add(
        &app.state.db,
        &epusdt::domain::network::Networks::presets(),
        "bsc",
        BSC_WALLET,
        None,
        "b1",
    )
    .await
    .expect("wallet");
    let secret = add_merchant(&app, 2001, SignMode::Dual).await;
    for (i, key) in ["binance", "bsc"].into_iter().enumerate() {
        let mut req = order(
            "2001",
            &format!("B-{i}"),
            &format!("1{i}"),
            "http://127.0.0.1:9/n",
        );
        req[4] = s("network", key);
        let (status, r) = post(&app, GMPAY, body(&req, &secret, Alg::Md5)).await;
        assert_eq!(status, 200, "{key}: {r}");
        assert_eq!(r["data"]["receive_address"], BSC_WALLET);
        assert_eq!(r["data"]["network"], "binance");
    }
    app.stop().await;
}

/// `merchant add --sign-mode`, `merchant set-sign-mode`, `merchant list` on the real binary.
#[test]
fn merchant_sign_mode_commands() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = common::epusdt(dir.path()).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(run(&["migrate"]).0, Some(0));
    let (code, out, err) = run(&["merchant", "add", "--name", "shop", "--sign-mode", "md5"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("pid=1001") && out.contains("sign_mode=md5"),
        "{out}"
    );
    let (code, out, err) = run(&["merchant", "add", "--name", "other"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("sign_mode=dual"), "{out}");
    let (_, list, _) = run(&["merchant", "list"]);
    let line = |pid: &str, list: &str| {
        list.lines()
            .find(|l| l.starts_with(pid))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("1001", &list).contains("md5"), "{list}");
    assert!(line("1002", &list).contains("dual"), "{list}");
    let (code, out, err) = run(&["merchant", "set-sign-mode", "1001", "hmac_sha256"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("md5 -> hmac_sha256"), "{out}");
    let (_, list, _) = run(&["merchant", "list"]);
    assert!(line("1001", &list).contains("hmac_sha256"), "{list}");
    let (code, _, err) = run(&["merchant", "set-sign-mode", "1001", "sha1"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("dual, md5, hmac_sha256"), "{err}");
    let (code, _, err) = run(&["merchant", "add", "--name", "x", "--sign-mode", "MD4"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("unknown sign mode"), "{err}");
    let (code, _, err) = run(&["merchant", "set-sign-mode", "4242", "md5"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("4242"), "{err}");
    // The change is in the audit trail.
    let audit = std::fs::read_dir(dir.path().join("data/audit"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    assert!(audit.contains("merchant.sign_mode"), "{audit}");
}
