//! Merchant protocols (DESIGN §4): epusdt v1, GMPay v1 and EPay, all served at once, plus
//! check-status and cancel. Each handler: parse params → authenticate (signature, in constant
//! time) → validate every field with a message that says what to fix → call `service::order`.
use axum::{
    Extension, Router,
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::{
    middleware::ratelimit::ClientAddr,
    params::Params,
    reply::{self, ApiError},
};
use crate::{
    audit::{AuditEvent, actions},
    crypto::sign,
    domain::{amount, network::Network, order::Order},
    service::{
        merchant::{self, DEFAULT_PID, Merchant},
        notify::check_url_shape,
        order::{self, NewOrder, Protocol},
    },
    state::AppState,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/order/create-transaction", post(create_v1))
        .route("/api/v1/order/cancel-transaction", post(cancel))
        .route(
            "/payments/gmpay/v1/order/create-transaction",
            post(create_gmpay),
        )
        .route(
            "/payments/epay/v1/order/create-transaction/submit.php",
            get(create_epay).post(create_epay),
        )
        .route("/pay/check-status/{trade_id}", get(check_status))
}

fn client_name(c: Option<&Extension<ClientAddr>>) -> String {
    c.and_then(|e| e.0.0)
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn content_type(h: &HeaderMap) -> Option<&str> {
    h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
}

fn parse(h: &HeaderMap, body: &Bytes, query: Option<&str>) -> Result<Params, ApiError> {
    Params::from_body(content_type(h), body)
        .map(|p| p.merged_with_query(query))
        .map_err(|e| ApiError::bad_param("request", e))
}

fn required<'a>(p: &'a Params, key: &str) -> Result<&'a str, ApiError> {
    p.get(key)
        .ok_or_else(|| ApiError::bad_param(key, "is required"))
}

fn text_field(p: &Params, key: &str, max: usize, required_: bool) -> Result<String, ApiError> {
    let v = match p.get(key) {
        Some(v) => v.trim(),
        None if required_ => return Err(ApiError::bad_param(key, "is required")),
        None => return Ok(String::new()),
    };
    if v.chars().count() > max {
        return Err(ApiError::bad_param(
            key,
            format!("is too long ({} characters, max {max})", v.chars().count()),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(ApiError::bad_param(
            key,
            "must not contain control characters",
        ));
    }
    Ok(v.to_string())
}

fn order_id_field(p: &Params, key: &str) -> Result<String, ApiError> {
    let v = text_field(p, key, 32, true)?;
    if v.chars().any(char::is_whitespace) {
        return Err(ApiError::bad_param(key, "must not contain spaces"));
    }
    Ok(v)
}

fn amount_field(p: &Params, key: &str) -> Result<Decimal, ApiError> {
    let v = required(p, key)?;
    amount::parse_positive(v, 2, Decimal::new(1, 2)).map_err(|e| ApiError::bad_param(key, e))
}

fn url_field(
    p: &Params,
    key: &str,
    required_: bool,
    allow_private: bool,
) -> Result<String, ApiError> {
    let v = text_field(p, key, 512, required_)?;
    if v.is_empty() {
        return Ok(v);
    }
    check_url_shape(&v, allow_private).map_err(|e| ApiError::bad_param(key, e))?;
    Ok(v)
}

fn currency_field(p: &Params, key: &str, default: Option<&str>) -> Result<String, ApiError> {
    let v = match (p.get(key), default) {
        (Some(v), _) => v.trim().to_ascii_uppercase(),
        (None, Some(d)) => d.to_string(),
        (None, None) => return Err(ApiError::bad_param(key, "is required, e.g. CNY or USD")),
    };
    if v.len() != 3 && v != "USDT" || !v.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(ApiError::bad_param(
            key,
            format!("`{v}` is not a currency code; use e.g. CNY or USD"),
        ));
    }
    Ok(v)
}

fn network_field(p: &Params, key: &str, default: &str) -> Result<Network, ApiError> {
    let v = p.get(key).unwrap_or(default);
    Network::parse(v).ok_or_else(|| {
        ApiError::bad_param(
            key,
            format!("`{v}` is not supported; use one of usdt.trc20, usdt.erc20, usdt.bep20, usdt.polygon (or tron, ethereum, bsc, polygon)"),
        )
    })
}

fn timeout_field(p: &Params) -> Result<Option<i64>, ApiError> {
    match p.get("timeout") {
        None => Ok(None),
        Some(t) => match t.trim().parse::<i64>() {
            Ok(s) if (60..=86_400).contains(&s) => Ok(Some(s)),
            _ => Err(ApiError::bad_param(
                "timeout",
                format!("`{t}` must be a whole number of seconds between 60 and 86400"),
            )),
        },
    }
}

/// Verifies a signature in constant time; logs the canonical string (never the secret) and
/// audits the failure (at most once per merchant and client per minute, so a flood of bad
/// requests cannot turn into a flood of audit writes).
async fn verify(
    state: &AppState,
    client: &str,
    canonical: &str,
    expected: String,
    provided: Option<&str>,
    m: &Merchant,
) -> Result<(), ApiError> {
    let provided = provided.ok_or_else(|| ApiError {
        code: reply::code::SIGNATURE,
        message: "signature is required".into(),
    })?;
    if sign::signature_matches(&expected, provided) {
        return Ok(());
    }
    tracing::warn!(pid = m.pid, client, canonical, "signature mismatch");
    let throttle = format!("audit:signature:{}:{client}", m.pid);
    let first = state
        .rate_limit
        .limiter()
        .check(&throttle, 1, std::time::Duration::from_secs(60))
        .await;
    if first.allowed {
        let event = AuditEvent::new(
            format!("ip:{client}"),
            actions::SIGNATURE_FAILED,
            format!("merchant:{}", m.pid),
        )
        .with_ip(client.to_string())
        .with_details(json!({ "canonical": canonical }));
        if let Err(e) = state.audit.record(event).await {
            tracing::error!(error = %e, "audit write failed");
        }
    }
    Err(ApiError::signature())
}

async fn default_merchant(state: &AppState) -> Result<Merchant, ApiError> {
    match merchant::find_by_pid(&state.db, &state.keys, DEFAULT_PID).await {
        Ok(Some(m)) if m.enabled => Ok(m),
        Ok(_) => Err(ApiError {
            code: reply::code::SIGNATURE,
            message: "api_auth_token is not configured on this gateway".into(),
        }),
        Err(e) => {
            tracing::error!(error = %e, "merchant lookup");
            Err(ApiError::system())
        }
    }
}

/// The merchant a GMPay/EPay/cancel request names by `pid`. An unknown or disabled pid is
/// answered exactly like a wrong signature (same code, same message, and the same work: a
/// signature computed and compared, the audit throttle consulted), so nobody can enumerate
/// pids; the real reason goes to the log only. `signature_key` is where the request carries
/// its signature (`signature`, or `sign` for EPay).
async fn merchant_by_pid(
    state: &AppState,
    p: &Params,
    client: &str,
    signature_key: &str,
) -> Result<Merchant, ApiError> {
    let raw = required(p, "pid")?;
    let pid: i64 = raw
        .trim()
        .parse()
        .map_err(|_| ApiError::bad_param("pid", format!("`{raw}` must be a number")))?;
    let reason = match merchant::find_by_pid(&state.db, &state.keys, pid).await {
        Ok(Some(m)) if m.enabled => return Ok(m),
        Ok(Some(_)) => "disabled",
        Ok(None) => "unknown",
        Err(e) => {
            tracing::error!(error = %e, "merchant lookup");
            return Err(ApiError::system());
        }
    };
    let provided = p.get(signature_key).ok_or_else(|| ApiError {
        code: reply::code::SIGNATURE,
        message: "signature is required".into(),
    })?;
    // The work a real verification does, against a key nobody has.
    let canonical = sign::canonical_string(&p.raw_values(), &[signature_key]);
    let expected = sign::hmac_sha256_sign(&canonical, UNKNOWN_MERCHANT_KEY);
    let _ = sign::signature_matches(&expected, provided);
    tracing::warn!(
        pid,
        client,
        reason,
        "refused: {reason} merchant pid (answered as a signature error)"
    );
    let _ = state
        .rate_limit
        .limiter()
        .check(
            &format!("audit:signature:{pid}:{client}"),
            1,
            std::time::Duration::from_secs(60),
        )
        .await;
    Err(ApiError::signature())
}

/// Signs nothing: the stand-in key of [`merchant_by_pid`]'s decoy verification.
const UNKNOWN_MERCHANT_KEY: &str = "epusdt-no-such-merchant";

fn payment_url(state: &AppState, trade_id: &str) -> String {
    format!(
        "{}/pay/checkout-counter/{trade_id}",
        state.config.app_uri.trim_end_matches('/')
    )
}

fn raw_num(text: &str) -> Value {
    // Canonical decimal text is valid JSON number text.
    serde_json::from_str::<Value>(text).unwrap_or(Value::Null)
}

fn order_data(state: &AppState, o: &Order) -> Value {
    json!({
        "trade_id": o.trade_id,
        "order_id": o.order_id,
        "amount": raw_num(&o.amount.to_string()),
        "actual_amount": raw_num(&o.actual_amount.to_string()),
        "token": o.address,
        "expiration_time": o.expires_at,
        "payment_url": payment_url(state, o.trade_id.as_str()),
    })
}

async fn create(state: &AppState, req: NewOrder) -> Result<Order, ApiError> {
    let order_id = req.order_id.clone();
    let created = order::create_order(&state.db, &state.config, &state.queue, req).await?;
    tracing::info!(trade_id = %created.order.trade_id, order_id, repeated = created.repeated, "order created");
    Ok(created.order)
}

/// `POST /api/v1/order/create-transaction` — epusdt v1, byte-compatible.
async fn create_v1(
    State(state): State<AppState>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    async {
        let p = parse(&headers, &body, q.as_deref())?;
        let client = client_name(client.as_ref());
        let m = default_merchant(&state).await?;
        let canonical = sign::canonical_string(&p.sign_values(&["amount"]), &["signature"]);
        verify(
            &state,
            &client,
            &canonical,
            sign::md5_sign(&canonical, m.secret.expose()),
            p.get("signature"),
            &m,
        )
        .await?;
        if let Err(limited) = state.rate_limit.check_merchant(m.pid).await {
            return Ok(limited.into_response());
        }
        let req = NewOrder {
            order_id: order_id_field(&p, "order_id")?,
            amount: amount_field(&p, "amount")?,
            notify_url: url_field(&p, "notify_url", true, state.config.allow_private_callbacks)?,
            redirect_url: url_field(&p, "redirect_url", false, true)?,
            currency: currency_field(&p, "currency", Some("CNY"))?,
            network: network_field(&p, "trade_type", &state.config.default_network)?,
            name: text_field(&p, "name", 128, false)?,
            timeout_secs: timeout_field(&p)?,
            protocol: Protocol::V1,
            merchant: m,
        };
        let o = create(&state, req).await?;
        Ok::<_, ApiError>(reply::success(order_data(&state, &o)))
    }
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

/// `POST /payments/gmpay/v1/order/create-transaction` — HMAC-SHA256 signed.
async fn create_gmpay(
    State(state): State<AppState>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    async {
        let p = parse(&headers, &body, q.as_deref())?;
        let client = client_name(client.as_ref());
        let m = merchant_by_pid(&state, &p, &client, "signature").await?;
        let canonical = sign::canonical_string(&p.sign_values(&["amount"]), &["signature"]);
        verify(
            &state,
            &client,
            &canonical,
            sign::hmac_sha256_sign(&canonical, m.secret.expose()),
            p.get("signature"),
            &m,
        )
        .await?;
        if let Err(limited) = state.rate_limit.check_merchant(m.pid).await {
            return Ok(limited.into_response());
        }
        if let Some(t) = p.get("token")
            && !t.trim().eq_ignore_ascii_case("usdt")
        {
            return Err(ApiError::bad_param(
                "token",
                format!("`{t}` is not supported; only USDT"),
            ));
        }
        let req = NewOrder {
            order_id: order_id_field(&p, "order_id")?,
            amount: amount_field(&p, "amount")?,
            notify_url: url_field(&p, "notify_url", true, state.config.allow_private_callbacks)?,
            redirect_url: url_field(&p, "redirect_url", false, true)?,
            currency: currency_field(&p, "currency", None)?,
            network: network_field(&p, "network", &state.config.default_network)?,
            name: text_field(&p, "name", 128, false)?,
            timeout_secs: timeout_field(&p)?,
            protocol: Protocol::GmPay,
            merchant: m,
        };
        // After field validation, so a typo does not burn the merchant's nonce.
        if let Err(e) = state
            .replay
            .check_request(
                req.merchant.pid,
                req.merchant.strict_replay,
                p.get("timestamp"),
                p.get("nonce"),
                crate::service::now(),
            )
            .await
        {
            let event = AuditEvent::new(
                format!("ip:{client}"),
                actions::REPLAY_REJECTED,
                format!("merchant:{}", req.merchant.pid),
            )
            .with_ip(client.clone())
            .with_details(json!({ "reason": e.to_string(), "order_id": req.order_id }));
            if let Err(err) = state.audit.record(event).await {
                tracing::error!(error = %err, "audit write failed");
            }
            return Err(e.into());
        }
        let o = create(&state, req).await?;
        let mut data = order_data(&state, &o);
        if let Value::Object(map) = &mut data {
            map.insert("currency".into(), json!(o.currency));
            map.insert("receive_address".into(), json!(o.address));
            map.insert("network".into(), json!(o.network));
            map.insert("status".into(), json!(o.status.code()));
        }
        Ok::<_, ApiError>(reply::success(data))
    }
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

/// `GET|POST …/epay/v1/order/create-transaction/submit.php` — answers 302 to the checkout page.
async fn create_epay(
    State(state): State<AppState>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    async {
        let p = parse(&headers, &body, q.as_deref())?;
        let client = client_name(client.as_ref());
        // Before the merchant lookup, so the answer cannot tell a known pid from an unknown one.
        if let Some(t) = p.get("sign_type")
            && !t.eq_ignore_ascii_case("MD5")
        {
            return Err(ApiError::bad_param("sign_type", "must be MD5"));
        }
        let m = merchant_by_pid(&state, &p, &client, "sign").await?;
        let canonical = sign::canonical_string(&p.raw_values(), &["sign", "sign_type"]);
        verify(
            &state,
            &client,
            &canonical,
            sign::md5_sign(&canonical, m.secret.expose()),
            p.get("sign"),
            &m,
        )
        .await?;
        if let Err(limited) = state.rate_limit.check_merchant(m.pid).await {
            return Ok(limited.into_response());
        }
        let req = NewOrder {
            order_id: order_id_field(&p, "out_trade_no")?,
            amount: amount_field(&p, "money")?,
            notify_url: url_field(&p, "notify_url", true, state.config.allow_private_callbacks)?,
            redirect_url: url_field(&p, "return_url", false, true)?,
            currency: currency_field(&p, "currency", Some("CNY"))?,
            network: network_field(&p, "type", &state.config.default_network)?,
            name: text_field(&p, "name", 128, true)?,
            timeout_secs: None,
            protocol: Protocol::EPay,
            merchant: m,
        };
        let o = create(&state, req).await?;
        // EPay clients expect a plain 302 Found.
        Ok::<_, ApiError>(
            (
                StatusCode::FOUND,
                [(header::LOCATION, payment_url(&state, &o.trade_id))],
            )
                .into_response(),
        )
    }
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

/// `GET /pay/check-status/{trade_id}` — polled by the checkout page.
async fn check_status(State(state): State<AppState>, Path(trade_id): Path<String>) -> Response {
    if let Err(why) = crate::domain::order::check_trade_id(&trade_id) {
        return ApiError::bad_param("trade_id", why).into_response();
    }
    match order::find_by_trade_id(&state.db, &trade_id).await {
        Ok(Some(o)) => {
            // A waiting order past its time shows as expired even before the job has run.
            let status = o.effective_status(crate::service::now()).code();
            reply::success(json!({ "trade_id": o.trade_id, "status": status }))
        }
        Ok(None) => ApiError::from(order::OrderError::NotFound).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `POST /api/v1/order/cancel-transaction` — `{trade_id, signature}` signed like create (v1
/// MD5 with `api_auth_token`), or with `pid` and an HMAC signature for GMPay merchants.
async fn cancel(
    State(state): State<AppState>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    async {
        let p = parse(&headers, &body, q.as_deref())?;
        let client = client_name(client.as_ref());
        let canonical = sign::canonical_string(&p.sign_values(&[]), &["signature"]);
        let m = if p.get("pid").is_some() {
            let m = merchant_by_pid(&state, &p, &client, "signature").await?;
            verify(
                &state,
                &client,
                &canonical,
                sign::hmac_sha256_sign(&canonical, m.secret.expose()),
                p.get("signature"),
                &m,
            )
            .await?;
            m
        } else {
            let m = default_merchant(&state).await?;
            verify(
                &state,
                &client,
                &canonical,
                sign::md5_sign(&canonical, m.secret.expose()),
                p.get("signature"),
                &m,
            )
            .await?;
            m
        };
        if let Err(limited) = state.rate_limit.check_merchant(m.pid).await {
            return Ok(limited.into_response());
        }
        let trade_id = text_field(&p, "trade_id", 64, true)?;
        crate::domain::order::check_trade_id(&trade_id)
            .map_err(|why| ApiError::bad_param("trade_id", why))?;
        let o = order::cancel_order(
            &state.db,
            &order::OrderRules::from_config(&state.config),
            &m,
            &trade_id,
        )
        .await?;
        Ok::<_, ApiError>(reply::success(
            json!({ "trade_id": o.trade_id, "status": o.status.code() }),
        ))
    }
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

/// Unknown routes under the merchant prefixes still answer in the envelope.
pub async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        ApiError {
            code: reply::code::NOT_FOUND,
            message: "no such endpoint".into(),
        },
    )
        .into_response()
}
