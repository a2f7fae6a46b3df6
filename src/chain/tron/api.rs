//! The java-tron FullNode HTTP API as the scanner uses it: one [`Client`] per URL (POST with the
//! API key header, status and `{"Error": …}` classification), the JSON shapes it answers with,
//! and the block calls retried while a backend lags ([`Try`], [`retry_lagging`]).
//!
//! Must never: send the API key anywhere but the `TRON-PRO-API-KEY` header, or panic on a
//! malformed answer.
use std::{future::Future, time::Duration};

use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};

use super::ATTEMPTS;
use crate::{
    chain::rpc::{CallError, retry_after},
    domain::network::Network,
    redact::truncate,
    secret::Secret,
};

#[derive(Clone)]
pub(super) struct Client {
    pub(super) http: reqwest::Client,
    pub(super) base: url::Url,
    pub(super) api_key: Option<Secret>,
    pub(super) network: Network,
}

impl Client {
    pub(super) async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Value,
    ) -> Result<T, CallError> {
        let url = self
            .base
            .join(path)
            .map_err(|e| CallError::Failed(format!("cannot build the URL for {path}: {e}")))?;
        let mut req = self.http.post(url).json(&body);
        if let Some(key) = &self.api_key {
            req = req.header("TRON-PRO-API-KEY", key.expose());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| CallError::Failed(format!("{path}: {}", e.without_url())))?;
        let status = resp.status();
        let wait = retry_after(resp.headers());
        let text = resp.text().await.map_err(|e| {
            CallError::Failed(format!("{path}: reading the body: {}", e.without_url()))
        })?;
        if let Some(e) = status_error(
            self.network,
            self.api_key.is_some(),
            path,
            status,
            &text,
            wait,
        ) {
            return Err(e);
        }
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            CallError::Failed(format!(
                "{path}: unexpected answer ({e}): {}",
                truncate(&text, 200)
            ))
        })?;
        // java-tron prints exceptions as `{"Error": "class java.lang.… : …"}` with HTTP 200.
        if let Some(err) = value.get("Error") {
            let msg = err.as_str().map_or_else(|| err.to_string(), String::from);
            return Err(CallError::Failed(format!(
                "{path}: the node answered an error: {}",
                truncate(&msg, 200)
            )));
        }
        serde_json::from_value(value).map_err(|e| {
            CallError::Failed(format!(
                "{path}: unexpected answer ({e}): {}",
                truncate(&text, 200)
            ))
        })
    }
}

/// What a non-200 status means. TronGrid answers an unknown key with HTTP 401
/// `{"Error":"ApiKey not exists"}` (a configuration error: retrying never helps), its rate
/// limits with 403 (no key: "… the query server is suspended for 30s"), 503 (with a key) or
/// 429; a proxy's 403 without a message is taken as a rate limit too.
pub(super) fn status_error(
    network: Network,
    has_key: bool,
    path: &str,
    status: reqwest::StatusCode,
    body: &str,
    retry_after: Option<Duration>,
) -> Option<CallError> {
    if status.is_success() {
        return None;
    }
    let code = status.as_u16();
    let lower = body.to_ascii_lowercase();
    let names_key = ["apikey", "api key", "api_key", "api-key"]
        .iter()
        .any(|k| lower.contains(k));
    let rate_text = [
        "suspended",
        "frequency",
        "rate limit",
        "rate exceeded",
        "too many",
    ]
    .iter()
    .any(|k| lower.contains(k));
    let shown = truncate(body.trim(), 200);
    if code == 401 || (code == 403 && names_key && !rate_text) {
        let fix = if has_key {
            "the provider does not accept the key: fix or replace it (TronGrid: copy it from your dashboard)"
        } else {
            "the provider requires an API key: set one"
        };
        return Some(CallError::Fatal(format!(
            "networks.{network}.api_key: {path} answered HTTP {status}: {shown}; {fix}"
        )));
    }
    if code == 429 || (code == 403) || (code == 503 && rate_text) {
        return Some(CallError::RateLimited {
            message: format!("{path}: HTTP {status}: {shown}"),
            retry_after,
        });
    }
    Some(CallError::Failed(format!("{path}: HTTP {status}: {shown}")))
}

/// A block as `getnowblock` / `getblock` print it; `{}` (all `None`) when the node lacks it.
#[derive(Debug, Deserialize)]
pub(super) struct NowBlock {
    #[serde(rename = "blockID")]
    pub(super) block_id: Option<String>,
    pub(super) block_header: Option<BlockHeader>,
    /// Printed only when the block has transactions (and, for `getblock`, `detail` is true).
    pub(super) transactions: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
pub(super) struct BlockHeader {
    pub(super) raw_data: RawHeader,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawHeader {
    #[serde(default)]
    pub(super) number: u64,
    /// Merkle root of the block's transactions: 32 zero bytes for a block without any.
    #[serde(rename = "txTrieRoot")]
    pub(super) tx_trie_root: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct TxInfo {
    pub(super) id: String,
    #[serde(rename = "blockNumber", default)]
    pub(super) block_number: u64,
    #[serde(rename = "blockTimeStamp", default)]
    pub(super) block_timestamp: i64,
    /// `FAILED` on failed transactions; absent on success.
    pub(super) result: Option<String>,
    pub(super) receipt: Option<Receipt>,
    #[serde(default)]
    pub(super) log: Vec<TxLog>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Receipt {
    pub(super) result: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct TxLog {
    #[serde(default)]
    pub(super) address: String,
    #[serde(default)]
    pub(super) topics: Vec<String>,
    #[serde(default)]
    pub(super) data: String,
}

pub(super) fn block_number_of(b: &NowBlock) -> Option<u64> {
    b.block_header.as_ref().map(|h| h.raw_data.number)
}

/// Runs `f` up to [`ATTEMPTS`] times while it fails with [`CallError::Failed`] (a lagging or
/// failing answer); a rate limit or a configuration error ends the tries at once.
pub(super) async fn retry_lagging<T, F, Fut>(f: F) -> Result<T, CallError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, Try>>,
{
    let mut tries = 1;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(Try::Lagging(_)) if tries < ATTEMPTS => tries += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

/// A failed try on one URL: the node (or the backend a balancer picked) lacks the block — worth
/// asking the same URL again — or any other failure (transport, rate limit, configuration).
pub(super) enum Try {
    Lagging(String),
    Other(CallError),
}

impl From<CallError> for Try {
    fn from(e: CallError) -> Self {
        Try::Other(e)
    }
}

impl From<Try> for CallError {
    fn from(t: Try) -> Self {
        match t {
            Try::Lagging(m) => CallError::Failed(m),
            Try::Other(e) => e,
        }
    }
}

/// The owner address of constant calls (the zero account; the call spends nothing).
pub(super) const CALLER: &str = "410000000000000000000000000000000000000000";

/// `walletsolidity/getblock` of block `number` without its transactions (`{}` when missing).
pub(super) async fn get_block(c: &Client, number: u64) -> Result<NowBlock, Try> {
    let b: NowBlock = c
        .post(
            "walletsolidity/getblock",
            json!({ "id_or_num": number.to_string(), "detail": false }),
        )
        .await?;
    match (&b.block_id, block_number_of(&b)) {
        (Some(_), Some(n)) if n == number => Ok(b),
        (None, _) => Err(Try::Lagging(format!(
            "block {number} is not available on the node yet (no blockID)"
        ))),
        (_, other) => Err(Try::Other(CallError::Failed(format!(
            "asked for block {number}, the node answered block {other:?}"
        )))),
    }
}

/// The id (hash) of block `number` on `c`.
pub(super) async fn block_id_on(c: &Client, number: u64) -> Result<String, Try> {
    let b = get_block(c, number).await?;
    Ok(b.block_id.unwrap_or_default().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_tron_errors_like_trongrid_sends_them() {
        use reqwest::StatusCode as S;
        let net = Network::TRON;
        let wait = Some(Duration::from_secs(2));
        let fatal = |s, body: &str| matches!(status_error(net, true, "p", s, body, None), Some(CallError::Fatal(m)) if m.contains("networks.tron.api_key"));
        let limited = |s, body: &str| matches!(status_error(net, true, "p", s, body, wait), Some(CallError::RateLimited { retry_after, .. }) if retry_after == wait);
        assert!(fatal(S::UNAUTHORIZED, r#"{"Error":"ApiKey not exists"}"#));
        assert!(fatal(S::UNAUTHORIZED, ""));
        assert!(fatal(S::FORBIDDEN, r#"{"Error":"apikey is invalid"}"#));
        let suspended = r#"{"Error":"The key exceeds the frequency limit(15), and the query server is suspended for 30s"}"#;
        assert!(limited(S::FORBIDDEN, suspended));
        assert!(limited(S::SERVICE_UNAVAILABLE, suspended));
        assert!(limited(S::TOO_MANY_REQUESTS, ""));
        assert!(limited(S::FORBIDDEN, "<html>Forbidden</html>"));
        assert!(matches!(
            status_error(
                net,
                true,
                "p",
                S::SERVICE_UNAVAILABLE,
                "<html>503</html>",
                None
            ),
            Some(CallError::Failed(_))
        ));
        assert!(matches!(
            status_error(net, true, "p", S::BAD_GATEWAY, "<html>502</html>", None),
            Some(CallError::Failed(_))
        ));
        assert!(status_error(net, true, "p", S::OK, "{}", None).is_none());
    }
}
