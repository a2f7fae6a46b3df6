//! Solana JSON-RPC over plain HTTP POST, one [`Client`] per URL: the request envelope, the
//! HTTP status and JSON-RPC error classification, and the answer shapes the scanner reads.
//!
//! Real servers, as handled here: rate limits come as HTTP 429 with a JSON-RPC body
//! (`{"jsonrpc":"2.0","error":{"code": 429,"message":"Too many requests for a specific RPC
//! call, …"}, "id": 1 }`, api.mainnet-beta / rpcpool), sometimes with `Retry-After`; agave's
//! own errors come inside HTTP 200 with the codes of `rpc-client-api/src/custom_error.rs`
//! (-32001 block cleaned up, -32004 block not available, -32005 node unhealthy, -32007 /
//! -32009 slot skipped, -32014 block status not available yet, -32016 minimum context slot
//! not reached). Providers put API keys in the URL path or query, so errors never quote it.
//!
//! Must never panic on a malformed answer.
use std::time::Duration;

use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};

use crate::{
    chain::rpc::{CallError, retry_after},
    redact::truncate,
};

/// agave's JSON-RPC error codes the scanner tells apart.
pub(super) mod code {
    pub const BLOCK_CLEANED_UP: i64 = -32001;
    pub const BLOCK_NOT_AVAILABLE: i64 = -32004;
    pub const NODE_UNHEALTHY: i64 = -32005;
    pub const SLOT_SKIPPED: i64 = -32007;
    pub const LONG_TERM_STORAGE_SLOT_SKIPPED: i64 = -32009;
    pub const BLOCK_STATUS_NOT_AVAILABLE_YET: i64 = -32014;
    pub const MIN_CONTEXT_SLOT_NOT_REACHED: i64 = -32016;
}

#[derive(Clone)]
pub(super) struct Client {
    pub(super) http: reqwest::Client,
    pub(super) url: url::Url,
}

/// A failed call: a transport/HTTP-level failure already classified, or a JSON-RPC error
/// object for the caller to interpret (some codes are answers, e.g. a skipped slot).
#[derive(Debug)]
pub(super) enum RpcError {
    Call(CallError),
    Rpc {
        method: &'static str,
        code: i64,
        message: String,
        data: Option<Value>,
    },
}

impl From<CallError> for RpcError {
    fn from(e: CallError) -> Self {
        RpcError::Call(e)
    }
}

impl From<RpcError> for CallError {
    /// The default meaning of a JSON-RPC error: a rate limit, or a failure of this URL
    /// (another URL, or a later round, may do better).
    fn from(e: RpcError) -> Self {
        match e {
            RpcError::Call(c) => c,
            RpcError::Rpc {
                method,
                code,
                message,
                data,
            } => {
                let text = truncate(&message, 200);
                if code == 429 || is_rate_limit(&message.to_ascii_lowercase()) {
                    return CallError::RateLimited {
                        message: format!("{method}: JSON-RPC error {code}: {text}"),
                        retry_after: None,
                    };
                }
                let why = match code {
                    code::MIN_CONTEXT_SLOT_NOT_REACHED => {
                        let at = data
                            .as_ref()
                            .and_then(|d| d["contextSlot"].as_u64())
                            .map_or_else(String::new, |s| format!(" (its finalized slot is {s})"));
                        format!("the node is behind{at}: it has not finalized the slots asked for yet")
                    }
                    code::NODE_UNHEALTHY => "the node is unhealthy (behind the cluster)".into(),
                    code::BLOCK_CLEANED_UP => "the node no longer keeps this slot (no long-term storage): use an RPC URL with full history, or set start_block past it".into(),
                    code::BLOCK_NOT_AVAILABLE | code::BLOCK_STATUS_NOT_AVAILABLE_YET => {
                        "the node does not have this block yet (it lags)".into()
                    }
                    _ => "the node refused the call".into(),
                };
                CallError::Failed(format!("{method}: JSON-RPC error {code}: {text}; {why}"))
            }
        }
    }
}

fn is_rate_limit(t: &str) -> bool {
    [
        "too many requests",
        "rate limit",
        "rate-limit",
        "credits",
        "quota",
    ]
    .iter()
    .any(|w| t.contains(w))
}

impl Client {
    /// Calls `method` with `params`; the `result` (which may be `null`) deserialised as `T`.
    pub(super) async fn call<T: DeserializeOwned>(
        &self,
        method: &'static str,
        params: Value,
    ) -> Result<T, RpcError> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let resp = self
            .http
            .post(self.url.clone())
            .json(&body)
            .send()
            .await
            .map_err(|e| CallError::Failed(format!("{method}: {}", e.without_url())))?;
        let status = resp.status();
        let wait = retry_after(resp.headers());
        let text = resp.text().await.map_err(|e| {
            CallError::Failed(format!("{method}: reading the body: {}", e.without_url()))
        })?;
        if let Some(e) = status_error(method, status, &text, wait) {
            return Err(e.into());
        }
        let envelope: Envelope = serde_json::from_str(&text).map_err(|e| {
            CallError::Failed(format!(
                "{method}: unexpected answer ({e}): {}",
                truncate(&text, 200)
            ))
        })?;
        if let Some(err) = envelope.error {
            return Err(RpcError::Rpc {
                method,
                code: err.code,
                message: err.message,
                data: err.data,
            });
        }
        let result = envelope.result.unwrap_or(Value::Null);
        serde_json::from_value(result).map_err(|e| {
            RpcError::Call(CallError::Failed(format!(
                "{method}: unexpected result ({e}): {}",
                truncate(&text, 200)
            )))
        })
    }
}

/// What a non-2xx status means: 429 is a rate limit (honouring `Retry-After`), as is a 403
/// that says so; 401/403 otherwise means the provider refuses this URL's key; anything else
/// is a failure of the URL.
pub(super) fn status_error(
    method: &str,
    status: reqwest::StatusCode,
    body: &str,
    retry_after: Option<Duration>,
) -> Option<CallError> {
    if status.is_success() {
        return None;
    }
    let shown = truncate(body.trim(), 200);
    let lower = body.to_ascii_lowercase();
    let code = status.as_u16();
    if code == 429 || (matches!(code, 403 | 503) && is_rate_limit(&lower)) {
        return Some(CallError::RateLimited {
            message: format!("{method}: HTTP {status}: {shown}"),
            retry_after,
        });
    }
    if matches!(code, 401 | 403) {
        return Some(CallError::Failed(format!(
            "{method}: HTTP {status}: {shown}; the provider refuses this URL: check the API key in it"
        )));
    }
    Some(CallError::Failed(format!(
        "{method}: HTTP {status}: {shown}"
    )))
}

#[derive(Deserialize)]
struct Envelope {
    result: Option<Value>,
    error: Option<ErrorObject>,
}

#[derive(Deserialize)]
struct ErrorObject {
    code: i64,
    #[serde(default)]
    message: String,
    data: Option<Value>,
}

/// An entry of `getSignaturesForAddress` (newest first).
#[derive(Debug, Clone, Deserialize)]
pub(super) struct SignatureInfo {
    pub(super) signature: String,
    pub(super) slot: u64,
    /// `null` for a successful transaction, the `TransactionError` otherwise.
    #[serde(default)]
    pub(super) err: Value,
    #[serde(rename = "blockTime")]
    pub(super) block_time: Option<i64>,
}

/// `getBlock` with `transactionDetails: "none"`.
#[derive(Debug, Deserialize)]
pub(super) struct BlockHeader {
    pub(super) blockhash: String,
    #[serde(rename = "blockTime")]
    pub(super) block_time: Option<i64>,
}

/// A `getAccountInfo` (`jsonParsed`) answer: `{context, value}`, `value` null when the
/// account does not exist.
#[derive(Debug, Deserialize)]
pub(super) struct WithContext<T> {
    pub(super) value: Option<T>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Account {
    pub(super) owner: String,
    pub(super) data: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statuses_and_rpc_errors() {
        use reqwest::StatusCode as S;
        let rpcpool = r#"{"jsonrpc":"2.0","error":{"code": 429, "message":"Too many requests for a specific RPC call, contact your app developer or support@rpcpool.com."}, "id": 1 }"#;
        let wait = Some(Duration::from_secs(3));
        assert!(matches!(
            status_error("getSlot", S::TOO_MANY_REQUESTS, rpcpool, wait),
            Some(CallError::RateLimited { retry_after, .. }) if retry_after == wait
        ));
        assert!(matches!(
            status_error("getSlot", S::UNAUTHORIZED, "{}", None),
            Some(CallError::Failed(m)) if m.contains("API key")
        ));
        assert!(matches!(
            status_error("getSlot", S::BAD_GATEWAY, "<html>", None),
            Some(CallError::Failed(_))
        ));
        assert!(status_error("getSlot", S::OK, "{}", None).is_none());

        let rpc = |code: i64, message: &str, data: Option<Value>| {
            CallError::from(RpcError::Rpc {
                method: "getSignaturesForAddress",
                code,
                message: message.into(),
                data,
            })
        };
        assert!(matches!(
            rpc(429, "Too many requests for a specific RPC call", None),
            CallError::RateLimited { .. }
        ));
        let behind = rpc(
            code::MIN_CONTEXT_SLOT_NOT_REACHED,
            "Minimum context slot has not been reached",
            Some(json!({"contextSlot": 90})),
        );
        assert!(
            matches!(&behind, CallError::Failed(m) if m.contains("behind") && m.contains("90")),
            "{behind:?}"
        );
    }
}
