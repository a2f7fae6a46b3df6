//! Classification of JSON-RPC errors: real providers answer rate limits and range or result
//! caps with a JSON-RPC error inside HTTP 200 (or an error body on 4xx), each in its own words;
//! the text decides whether it is a size signal ([`CallError::RangeTooLarge`], with the
//! provider's hint when it names one), a rate limit, or a failure of the URL.
use alloy::transports::{RpcError, TransportError, TransportErrorKind};

use crate::{chain::rpc::CallError, redact::truncate};

pub(super) fn call_error(e: TransportError) -> CallError {
    classify(e, None)
}

/// An `eth_getLogs` error for a range of `size` blocks: a provider's range or result cap is
/// [`CallError::RangeTooLarge`] (with its hint when it names one), not an outage.
pub(super) fn logs_error(e: TransportError, size: u64) -> CallError {
    classify(e, Some(size))
}

/// Providers answer with a JSON-RPC error inside HTTP 200 (or with an error body on 4xx) for
/// rate limits and range caps; their texts differ, so the message is what is classified.
fn classify(e: TransportError, logs_size: Option<u64>) -> CallError {
    let text = match &e {
        RpcError::ErrorResp(p) => Some((
            p.code,
            p.message.to_string(),
            p.data.as_ref().map(|d| d.get().to_string()),
        )),
        RpcError::Transport(TransportErrorKind::HttpError(h))
        | RpcError::Transport(TransportErrorKind::HttpErrorWithRetryAfter { error: h, .. }) => {
            Some((i64::from(h.status), h.body.clone(), None))
        }
        _ => None,
    };
    if let Some((code, message, data)) = &text {
        let all = format!("{message} {}", data.as_deref().unwrap_or("")).to_ascii_lowercase();
        if let Some(size) = logs_size
            && is_size_refusal(&all)
        {
            return CallError::RangeTooLarge {
                message: format!(
                    "eth_getLogs over {size} blocks refused: {}",
                    truncate(message, 200)
                ),
                hint: range_hint(message, data.as_deref(), size),
            };
        }
        if matches!(e, RpcError::ErrorResp(_)) && (*code == 429 || is_rate_limit(&all)) {
            return CallError::RateLimited {
                message: format!("JSON-RPC error {code}: {}", truncate(message, 200)),
                retry_after: None,
            };
        }
    }
    match &e {
        RpcError::Transport(TransportErrorKind::HttpError(h)) if matches!(h.status, 429 | 403) => {
            CallError::RateLimited {
                message: format!("HTTP {}", h.status),
                retry_after: None,
            }
        }
        RpcError::Transport(TransportErrorKind::HttpErrorWithRetryAfter { error, retry_after })
            if matches!(error.status, 429 | 403) =>
        {
            CallError::RateLimited {
                message: format!("HTTP {}", error.status),
                retry_after: Some(*retry_after),
            }
        }
        _ => CallError::Failed(truncate(&e.to_string(), 300)),
    }
}

/// "block range is too large", "exceed maximum block range: 5000", "query returned more than
/// 10000 results", "Log response size exceeded", "eth_getLogs is limited to a 10,000 range"…
fn is_size_refusal(t: &str) -> bool {
    let range = t.contains("range")
        && [
            "too large",
            "too wide",
            "too big",
            "too high",
            "exceed",
            "bigger",
            "larger",
            "limit",
            "maximum",
            "max ",
            "up to",
        ]
        .iter()
        .any(|w| t.contains(w));
    let results = ["results", "logs", "response size"]
        .iter()
        .any(|w| t.contains(w))
        && ["more than", "too many", "exceed"]
            .iter()
            .any(|w| t.contains(w));
    range || results
}

/// "daily request count exceeded, request rate limited", "too many requests", quotas.
fn is_rate_limit(t: &str) -> bool {
    [
        "rate limit",
        "rate-limit",
        "ratelimit",
        "rate exceeded",
        "too many requests",
        "request count",
        "quota",
        "capacity",
        "compute units",
    ]
    .iter()
    .any(|w| t.contains(w))
}

/// The largest range the provider says it accepts, when it says so: Infura's
/// `data: {from, to}`, Alchemy's "this block range should work: [0x…, 0x…]", reth's "retry
/// with the range A-B", or the cap in the message ("exceed maximum block range: 5000",
/// "range 20 exceeds limit of 10"). Only hints below the refused `size` count.
fn range_hint(message: &str, data: Option<&str>, size: u64) -> Option<u64> {
    let below = |n: u64| (1..size).contains(&n).then_some(n);
    let span = |a: u64, b: u64| b.checked_sub(a).map(|d| d + 1).and_then(below);
    let hex = |v: &str| u64::from_str_radix(v.trim().trim_start_matches("0x"), 16).ok();
    if let Some(d) = data.and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        && let (Some(a), Some(b)) = (
            d.get("from").and_then(|v| v.as_str()).and_then(hex),
            d.get("to").and_then(|v| v.as_str()).and_then(hex),
        )
        && let Some(n) = span(a, b)
    {
        return Some(n);
    }
    if let Some(open) = message.find("[0x")
        && let Some(close) = message[open..].find(']')
        && let Some((a, b)) = message[open + 1..open + close].split_once(',')
        && let (Some(a), Some(b)) = (hex(a), hex(b))
    {
        return span(a, b);
    }
    let lower = message.to_ascii_lowercase();
    if !lower.contains("range") || lower.contains("results") {
        return None;
    }
    if let Some(at) = lower.find("retry with the range ") {
        let rest = &lower[at + "retry with the range ".len()..];
        let mut parts = rest
            .split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty());
        if let (Some(a), Some(b)) = (parts.next(), parts.next())
            && let (Ok(a), Ok(b)) = (a.parse(), b.parse())
        {
            return span(a, b);
        }
    }
    // Decimal numbers of the message ("10,000" is one number; hex words are skipped).
    let mut numbers = Vec::new();
    for word in lower.split(|c: char| c.is_whitespace() || "()[]:=;".contains(c)) {
        let word = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
        if word.starts_with("0x") {
            continue;
        }
        let digits: String = word.chars().filter(|c| *c != ',').collect();
        if !digits.is_empty()
            && digits.chars().all(|c| c.is_ascii_digit())
            && let Ok(n) = digits.parse::<u64>()
        {
            numbers.push(n);
        }
    }
    numbers.into_iter().filter_map(below).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rpc_error(code: i64, message: &str, data: Option<&str>) -> TransportError {
        let mut body = serde_json::json!({"code": code, "message": message});
        if let Some(d) = data {
            body["data"] = serde_json::from_str(d).expect("data json");
        }
        RpcError::ErrorResp(serde_json::from_str(&body.to_string()).expect("error payload"))
    }

    fn refused(e: TransportError, size: u64) -> Option<Option<u64>> {
        match logs_error(e, size) {
            CallError::RangeTooLarge { hint, .. } => Some(hint),
            _ => None,
        }
    }

    /// Real providers' texts (Infura, Alchemy, QuickNode, BSC, reth, Moonbeam, Polygon).
    #[test]
    fn range_caps_are_size_signals_with_their_hints() {
        // (code, message, data, refused size, expected hint)
        type Case<'a> = (i64, &'a str, Option<&'a str>, u64, Option<u64>);
        let cases: [Case; 11] = [
            (
                -32005,
                "query returned more than 10000 results",
                Some(r#"{"from":"0x10","to":"0x19"}"#),
                100,
                Some(10),
            ),
            (
                -32602,
                "range 1000000 exceeds limit of 10000",
                None,
                1_000_000,
                Some(10_000),
            ),
            (
                -32600,
                "You can make eth_getLogs requests with up to a 500 block range. Based on your parameters, this block range should work: [0x123c9b2, 0x123cba5]",
                None,
                2000,
                Some(500),
            ),
            (
                -32614,
                "eth_getLogs is limited to a 10,000 range",
                None,
                20_000,
                Some(10_000),
            ),
            (
                -32000,
                "exceed maximum block range: 5000",
                None,
                6000,
                Some(5000),
            ),
            (
                -32000,
                "block range is larger than max block range, block range = 5120, max block range = 5000",
                None,
                5120,
                Some(5000),
            ),
            (
                -32602,
                "query exceeds max results 20000, retry with the range 25766988-25775072",
                None,
                8085,
                None,
            ),
            (
                -32000,
                "block range is too wide (maximum 1024)",
                None,
                2000,
                Some(1024),
            ),
            (-32005, "block range is too large", None, 20, None),
            (
                -32000,
                "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range",
                None,
                3000,
                None,
            ),
            (-32600, "block range too high", None, 50, None),
        ];
        for (code, message, data, size, hint) in cases {
            assert_eq!(
                refused(rpc_error(code, message, data), size),
                Some(hint),
                "{message}"
            );
        }
        // A rate limit is not a size signal; neither is a range cap outside eth_getLogs.
        let quota = "daily request count exceeded, request rate limited";
        assert!(refused(rpc_error(-32005, quota, None), 10).is_none());
        assert!(matches!(
            call_error(rpc_error(-32005, quota, None)),
            CallError::RateLimited { .. }
        ));
        assert!(matches!(
            call_error(rpc_error(-32000, "exceed maximum block range: 5000", None)),
            CallError::Failed(_)
        ));
        assert!(matches!(
            call_error(rpc_error(-32000, "header not found", None)),
            CallError::Failed(_)
        ));
    }
}
