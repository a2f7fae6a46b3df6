//! Merchant protocols (DESIGN §4): epusdt v1, GMPay v1 and EPay, all served at once, plus
//! check-status and cancel. The routes come from the protocol registry (`crate::protocol`); every
//! create request takes the same path: parse params → the protocol names the merchant and checks
//! the signature (in constant time) → per-merchant rate limit → the protocol validates every field
//! with a message that says what to fix → `service::order` → the protocol shapes the reply.
//! Nothing here knows which protocol is which.
use axum::{
    Extension, Router,
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::json;

use super::{
    middleware::ratelimit::ClientAddr,
    reply::{self, ApiError},
};
use crate::{
    audit::{AuditEvent, actions},
    crypto::sign::{SignAlg, SignMode},
    domain::order::Order,
    protocol::{
        self, Action, FieldRules, MerchantProtocol, MerchantRef, OrderView, Params, ProtocolError,
        ReplayStamp, Reply, Verification, fields,
    },
    security::{replay::ReplayError, ssrf::check_callback_url},
    service::{
        merchant::{self, DEFAULT_PID, Merchant},
        order::{self, NewOrder},
    },
    state::AppState,
    telemetry::metrics::{self, SignatureRefusal},
};

pub fn router() -> Router<AppState> {
    let mut router = Router::new();
    for &proto in protocol::all() {
        let handler = move |State(state): State<AppState>,
                            client: Option<Extension<ClientAddr>>,
                            headers: HeaderMap,
                            RawQuery(q): RawQuery,
                            body: Bytes| async move {
            create(&state, client, &headers, q.as_deref(), &body, proto).await
        };
        let method = if proto.create_accepts_get() {
            get(handler).post(handler)
        } else {
            post(handler)
        };
        router = router.route(proto.create_path(), method.clone());
        for &alias in proto.create_aliases() {
            router = router.route(alias, method.clone());
        }
    }
    for path in protocol::cancel_paths() {
        router = router.route(path, post(cancel));
    }
    router.route("/pay/check-status/{trade_id}", get(check_status))
}

impl From<ProtocolError> for ApiError {
    fn from(e: ProtocolError) -> Self {
        match e {
            ProtocolError::BadParam { field, problem } => ApiError::bad_param(&field, problem),
            ProtocolError::Multipart
            | ProtocolError::NotJsonObject(_)
            | ProtocolError::BadString { .. } => ApiError::bad_param("request", e),
            ProtocolError::CallbackUrl(_) => {
                tracing::error!(error = %e, "protocol error");
                ApiError::system()
            }
            // Upstream answers a request that names no merchant with a signature error.
            ProtocolError::NoMerchant(why) => {
                tracing::warn!(reason = %why, "refused: no merchant named (answered as a signature error)");
                ApiError::signature()
            }
        }
    }
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
    Ok(Params::from_body(content_type(h), body)?.merged_with_query(query))
}

fn field_rules(state: &AppState) -> FieldRules<'_> {
    FieldRules {
        networks: state.config.registry(),
        default_network: &state.config.default_network,
        allow_private_callbacks: state.config.allow_private_callbacks,
        check_url: |raw, allow_private| {
            check_callback_url(raw, allow_private)
                .map(drop)
                .map_err(|e| e.to_string())
        },
        epay: fields::EPayDefaults {
            token: &state.config.epay_default_token,
            network: state.config.effective_epay_default_network(),
            currency: &state.config.epay_default_currency,
        },
    }
}

fn signature_required() -> ApiError {
    ApiError {
        code: reply::code::SIGNATURE,
        message: "signature is required".into(),
    }
}

/// The merchant a request names, its signature verified in constant time under the merchant's
/// sign mode, and the algorithm it was signed with (`None` = the protocol's own). A mismatch
/// logs the canonical string (never the secret) and audits the failure (at most once per
/// merchant and client per minute, so a flood of bad requests cannot turn into a flood of audit
/// writes).
async fn authenticate(
    state: &AppState,
    client: &str,
    proto: &dyn MerchantProtocol,
    p: &Params,
    action: Action,
) -> Result<(Merchant, Option<SignAlg>), ApiError> {
    let refused = |reason| metrics::signature_refused(proto.id(), reason);
    let named = proto.merchant(p).inspect_err(|e| {
        if matches!(e, ProtocolError::NoMerchant(_)) {
            refused(SignatureRefusal::UnknownMerchant);
        }
    })?;
    let named_pid = match named {
        MerchantRef::Default => DEFAULT_PID,
        MerchantRef::Pid(pid) => pid,
    };
    let fetch = |fresh: bool| async move {
        if fresh {
            state.caches.merchants.forget(&named_pid);
        }
        match named {
            MerchantRef::Default => default_merchant(state)
                .await
                .inspect_err(|_| refused(SignatureRefusal::UnknownMerchant)),
            MerchantRef::Pid(pid) => merchant_by_pid(state, proto, p, action, client, pid).await,
        }
    };
    let (mut m, mut cached) = fetch(false).await?;
    // The merchant's IP allow-list, checked once the signature is known good (the same work
    // either way): refused like a bad signature, as upstream does. A valid signature from
    // elsewhere may mean a leaked secret, so it is logged as such.
    let allowed = |m: Merchant, alg: Option<SignAlg>| {
        if m.allows(client.parse().ok()) {
            return Ok((m, alg));
        }
        tracing::warn!(
            pid = m.pid,
            client,
            "refused: valid signature from an address outside the merchant's ip_allowlist (answered as a signature error)"
        );
        refused(SignatureRefusal::IpAllowlist);
        Err(ApiError::signature())
    };
    let canonical = loop {
        let canonical = match verify_secrets(proto, p, action, &m) {
            Ok(alg) => return allowed(m, alg),
            Err(Verification::Missing) => {
                refused(SignatureRefusal::Missing);
                return Err(signature_required());
            }
            Err(Verification::Mismatch { canonical }) => canonical,
            Err(Verification::Refused { reason }) => reason,
            Err(Verification::Valid) => return allowed(m, None),
        };
        // A cached merchant may predate a secret rotation elsewhere: ask the database once.
        if !cached {
            break canonical;
        }
        (m, cached) = fetch(true).await?;
    };
    tracing::warn!(pid = m.pid, client, canonical, "signature mismatch");
    refused(SignatureRefusal::Mismatch);
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

/// Verifies under the merchant's secret, then (within `secret_overlap_secs` of a rotation) its
/// previous one. `Ok` carries the algorithm that matched (`None` = the protocol's own); the
/// error is the current secret's verdict.
fn verify_secrets(
    proto: &dyn MerchantProtocol,
    p: &Params,
    action: Action,
    m: &Merchant,
) -> Result<Option<SignAlg>, Verification> {
    let verdict = match proto.verify_mode(p, action, m.secret.expose(), m.sign_mode) {
        Ok(alg) => return Ok(alg),
        Err(Verification::Valid) => return Ok(None),
        Err(v) => v,
    };
    if matches!(verdict, Verification::Missing) {
        return Err(verdict);
    }
    if let Some(old) = &m.previous_secret {
        match proto.verify_mode(p, action, old.expose(), m.sign_mode) {
            Ok(alg) => return Ok(alg),
            Err(Verification::Valid) => return Ok(None),
            Err(_) => {}
        }
    }
    Err(verdict)
}

async fn default_merchant(state: &AppState) -> Result<(Merchant, bool), ApiError> {
    let cache = &state.caches.merchants;
    match merchant::find_by_pid_cached(&state.db, &state.keys, cache, DEFAULT_PID).await {
        Ok(Some((m, cached))) if m.enabled => Ok((m, cached)),
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

/// The merchant a request names by `pid`. An unknown or disabled pid is answered exactly like a
/// wrong signature (same code, same message, and the same work: a signature computed and
/// compared, the audit throttle consulted), so nobody can enumerate pids; the real reason goes
/// to the log only.
async fn merchant_by_pid(
    state: &AppState,
    proto: &dyn MerchantProtocol,
    p: &Params,
    action: Action,
    client: &str,
    pid: i64,
) -> Result<(Merchant, bool), ApiError> {
    let cache = &state.caches.merchants;
    let reason = match merchant::find_by_pid_cached(&state.db, &state.keys, cache, pid).await {
        Ok(Some((m, cached))) if m.enabled => return Ok((m, cached)),
        Ok(Some(_)) => "disabled",
        Ok(None) => "unknown",
        Err(e) => {
            tracing::error!(error = %e, "merchant lookup");
            return Err(ApiError::system());
        }
    };
    // The work a real verification does, against a key nobody has.
    if proto.verify_mode(p, action, UNKNOWN_MERCHANT_KEY, SignMode::Dual)
        == Err(Verification::Missing)
    {
        metrics::signature_refused(proto.id(), SignatureRefusal::Missing);
        return Err(signature_required());
    }
    metrics::signature_refused(proto.id(), SignatureRefusal::UnknownMerchant);
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

pub(super) fn payment_url(state: &AppState, trade_id: &str) -> String {
    format!(
        "{}/pay/checkout-counter/{trade_id}",
        state.config.app_uri.trim_end_matches('/')
    )
}

/// The order's own `trade_type` (`usdt.trc20`, `usdc.base`), as responses and callbacks carry it.
pub(super) fn trade_type(state: &AppState, o: &Order) -> String {
    state
        .config
        .registry()
        .trade_type(super::checkout_choose::asset_of(o))
}

pub(super) fn order_view<'a>(state: &AppState, o: &'a Order) -> OrderView<'a> {
    OrderView {
        trade_id: o.trade_id.as_str(),
        order_id: &o.order_id,
        amount: o.amount,
        actual_amount: o.actual_amount,
        currency: &o.currency,
        network: o.network,
        token: &o.token,
        trade_type: trade_type(state, o),
        address: &o.address,
        status: o.status.code(),
        expires_at: o.expires_at,
        payment_url: payment_url(state, o.trade_id.as_str()),
    }
}

/// The replay guard (GMPay): after field validation, so a typo does not burn the merchant's
/// nonce. A refusal is audited.
async fn check_replay(
    state: &AppState,
    proto: &dyn MerchantProtocol,
    client: &str,
    m: &Merchant,
    stamp: ReplayStamp<'_>,
    order_id: &str,
) -> Result<(), ApiError> {
    let Err(e) = state
        .replay
        .check_request(
            m.pid,
            m.strict_replay,
            stamp.timestamp,
            stamp.nonce,
            crate::service::now(),
        )
        .await
    else {
        return Ok(());
    };
    if !matches!(e, ReplayError::StoreUnavailable(_)) {
        metrics::signature_refused(proto.id(), SignatureRefusal::Replay);
    }
    let event = AuditEvent::new(
        format!("ip:{client}"),
        actions::REPLAY_REJECTED,
        format!("merchant:{}", m.pid),
    )
    .with_ip(client.to_string())
    .with_details(json!({ "reason": e.to_string(), "order_id": order_id }));
    if let Err(err) = state.audit.record(event).await {
        tracing::error!(error = %err, "audit write failed");
    }
    Err(e.into())
}

/// Every protocol's create route.
async fn create(
    state: &AppState,
    client: Option<Extension<ClientAddr>>,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &Bytes,
    proto: &'static dyn MerchantProtocol,
) -> Response {
    async {
        let p = parse(headers, body, query)?;
        let client = client_name(client.as_ref());
        // Before the merchant lookup, so the answer cannot tell a known pid from an unknown one.
        proto.check_envelope(&p)?;
        let (m, alg) = authenticate(state, &client, proto, &p, Action::Create).await?;
        if let Err(limited) = state.rate_limit.check_merchant(m.pid, m.rate_limit_per_minute).await {
            return Ok(limited.into_response());
        }
        let r = proto.parse_create(&p, &field_rules(state))?;
        if let Some(stamp) = proto.replay_stamp(&p) {
            check_replay(state, proto, &client, &m, stamp, &r.order_id).await?;
        }
        let req = NewOrder {
            order_id: r.order_id,
            amount: r.amount,
            notify_url: r.notify_url,
            redirect_url: r.redirect_url,
            currency: r.currency,
            network: r.network,
            token: r.token,
            name: r.name,
            timeout_secs: r.timeout_secs,
            // `payment_type=Epay` on GMPay makes an EPay order (EPay callbacks).
            protocol: proto.order_protocol(&p),
            sign_alg: alg.map(|a| a.as_str().to_string()).unwrap_or_default(),
            epay_type: r.epay_type,
            merchant: m,
        };
        let order_id = req.order_id.clone();
        if proto.placeholder(&p)? {
            return super::switch::create_placeholder(state, proto, req).await;
        }
        let created = order::create_order(&state.db, &state.config, &state.caches, req).await?;
        let o = created.order;
        tracing::info!(trade_id = %o.trade_id, order_id, repeated = created.repeated, "order created");
        Ok::<_, ApiError>(match proto.reply(&order_view(state, &o)) {
            Reply::Data(data) => reply::success(data),
            Reply::Redirect(url) => (StatusCode::FOUND, [(header::LOCATION, url)]).into_response(),
        })
    }
    .await
    .unwrap_or_else(|e| error_reply(proto, e))
}

/// An error envelope with the HTTP status the protocol answers it with (the envelope is the
/// same for every protocol; a status other than 200 that the error already has is kept).
fn error_reply(proto: &dyn MerchantProtocol, e: ApiError) -> Response {
    let status = StatusCode::from_u16(proto.error_status(e.code)).unwrap_or(StatusCode::OK);
    let mut resp = e.into_response();
    if resp.status() == StatusCode::OK {
        *resp.status_mut() = status;
    }
    resp
}

/// `GET /pay/check-status/{trade_id}` — polled by the checkout page.
async fn check_status(State(state): State<AppState>, Path(trade_id): Path<String>) -> Response {
    if let Err(why) = crate::domain::order::check_trade_id(&trade_id) {
        return ApiError::bad_param("trade_id", why).into_response();
    }
    // A waiting order past its time shows as expired even before the job has run; a
    // placeholder shows 4 while the payer may choose (`order::choice`); a payment seen above
    // the confirmed head shows 5 with its confirmations (`order::confirming`).
    match order::confirming::public_status(&state.db, &state.caches, &trade_id).await {
        Ok(Some(s)) => reply::success(match s.confirmations {
            Some((seen, required)) => json!({
                "trade_id": trade_id,
                "status": s.status,
                "confirmations": seen,
                "confirmations_required": required,
            }),
            None => json!({ "trade_id": trade_id, "status": s.status }),
        }),
        Ok(None) => ApiError::from(order::OrderError::NotFound).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `POST /api/v1/order/cancel-transaction` — `{trade_id, signature}` signed like create (v1
/// MD5 with `api_auth_token`), or with `pid` for GMPay merchants (verified under the merchant's
/// sign mode, answered with GMPay's HTTP statuses): the protocol that claims the request decides.
async fn cancel(
    State(state): State<AppState>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let p = match parse(&headers, &body, q.as_deref()) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let Some(proto) = protocol::for_cancel(&p) else {
        return ApiError::system().into_response();
    };
    async {
        let client = client_name(client.as_ref());
        let (m, _) = authenticate(&state, &client, proto, &p, Action::Cancel).await?;
        if let Err(limited) = state
            .rate_limit
            .check_merchant(m.pid, m.rate_limit_per_minute)
            .await
        {
            return Ok(limited.into_response());
        }
        let trade_id = fields::text(&p, "trade_id", 64, true)?;
        crate::domain::order::check_trade_id(&trade_id)
            .map_err(|why| ApiError::bad_param("trade_id", why))?;
        let cancelled = order::choice::cancel(
            &state.db,
            &order::OrderRules::from_config(&state.config),
            &m,
            &trade_id,
        )
        .await;
        state.caches.forget_trade(&trade_id);
        let (trade_id, status) = cancelled?;
        Ok::<_, ApiError>(reply::success(
            json!({ "trade_id": trade_id, "status": status }),
        ))
    }
    .await
    .unwrap_or_else(|e| error_reply(proto, e))
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
