//! Server-rendered checkout pages: the page a payer sees while an order waits
//! for its USDT transfer ([`render_checkout`]) and the page shown once an order
//! can no longer be paid ([`render_closed`]).
//!
//! This module builds the context of those pages and nothing else: the markup
//! lives in `templates/checkout.html`, `templates/closed.html` and their
//! `templates/base.html`; the stylesheet and the script in `assets/checkout.css`
//! and `assets/checkout.js`, embedded at build time and inlined into the page
//! by [`super::render`]. It is a set of pure functions that turn already-loaded
//! values into an HTML document, with no I/O, no database and no clock of its
//! own (the caller passes the server time). Each page is one self-contained
//! document: it must never load anything from an external CDN, font service or
//! image host, and it pins that down with a `Content-Security-Policy` meta tag
//! whose script and style hashes are computed while rendering, so the output
//! must be served byte for byte as returned. It must never trust its input
//! either: every interpolated value is HTML-escaped by the template engine,
//! every value handed to the script is JSON-encoded by the `tojson` filter with
//! `<`, `>` and `&` escaped, and a redirect URL that is not an absolute
//! `http(s)` URL is dropped. Only the QR code SVG, generated here, and the
//! embedded assets are marked safe.

use std::sync::LazyLock;

use axum::response::Html;
use minijinja::{Value, context};

use super::render::{Inline, RenderError, render};

/// The checkout stylesheet, inlined into every checkout page.
const CSS: &str = include_str!("../../assets/checkout.css");
/// Body of the checkout script; [`Inline::script`] defines `CFG` before it.
const JS: &str = include_str!("../../assets/checkout.js");
/// The "I have paid — here is my transaction hash" box's script, appended to [`JS`].
const SUBMIT_TX_JS: &str = include_str!("../../assets/submit_tx.js");

/// The stylesheet of every payer page, with its CSP hash.
pub(super) static STYLE: LazyLock<Inline> = LazyLock::new(|| Inline::new(CSS.to_owned()));
/// The waiting order's script: the page, the hash box and the network switch.
static SCRIPT: LazyLock<Inline> =
    LazyLock::new(|| Inline::script(&[JS, SUBMIT_TX_JS, super::checkout_choose::SWITCH_JS]));

/// Everything the checkout page shows. All strings are raw (unescaped) values.
pub struct CheckoutView<'a> {
    pub trade_id: &'a str,
    pub order_id: &'a str,
    /// Order amount in fiat, e.g. `"100.00"`.
    pub fiat_amount: &'a str,
    /// Fiat currency code, e.g. `"CNY"`.
    pub currency: &'a str,
    /// The exact token amount the payer must send, e.g. `"14.29"`.
    pub actual_amount: &'a str,
    /// Token symbol, e.g. `"USDT"`.
    pub token: &'a str,
    /// Human network name, e.g. `"TRON (TRC20)"`.
    pub network_label: &'a str,
    /// The receive address.
    pub address: &'a str,
    /// Order expiry, unix seconds.
    pub expires_at_unix: i64,
    /// Server time, unix seconds: the countdown starts from
    /// `expires_at_unix - now_unix` so a wrong phone clock does not matter.
    pub now_unix: i64,
    /// Where to send the payer after payment (only absolute http/https URLs are used).
    pub redirect_url: Option<&'a str>,
    /// Status endpoint polled by the page, e.g. `"/pay/check-status/{trade_id}"`.
    pub status_url: &'a str,
    /// Other networks the payer may switch to (`checkout_choose`); empty = no offer.
    pub switch_networks: &'a [super::checkout_choose::SwitchOption],
}

/// Why an order can no longer be paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedReason {
    Paid,
    Expired,
    Cancelled,
    NotFound,
}

impl ClosedReason {
    /// The value of `data-state` on `#status`.
    pub fn state(self) -> &'static str {
        match self {
            ClosedReason::Paid => "paid",
            ClosedReason::Expired => "expired",
            ClosedReason::Cancelled => "cancelled",
            ClosedReason::NotFound => "not_found",
        }
    }

    /// Title, detail and the label of the link back to the shop.
    fn texts(self) -> (&'static str, &'static str, &'static str) {
        match self {
            ClosedReason::Paid => (
                "Payment received",
                "This order has been paid. Thank you! You can close this page.",
                "Return to merchant",
            ),
            ClosedReason::Expired => (
                "This order has expired",
                "The time to pay this order is over. Please go back to the shop and create a new order. \
                 Do not send any payment to the address shown for this order: it will not be credited.",
                "Back to shop",
            ),
            ClosedReason::Cancelled => (
                "This order was cancelled",
                "This order can no longer be paid. Do not send any payment for it; \
                 go back to the shop and create a new order if you still want to buy.",
                "Back to shop",
            ),
            ClosedReason::NotFound => (
                "Order not found",
                "We could not find this order. Check the link, or go back to the shop and create a new order.",
                "Back to shop",
            ),
        }
    }
}

/// Keeps a redirect URL only if it is an absolute `http`/`https` URL with a
/// host (so never `javascript:`, `data:` or a relative path), normalised the
/// way browsers parse it.
fn safe_redirect(url: Option<&str>) -> Option<String> {
    let parsed = url::Url::parse(url?.trim()).ok()?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return None;
    }
    Some(parsed.to_string())
}

/// Whole seconds left before expiry, never negative.
fn remaining_seconds(expires_at_unix: i64, now_unix: i64) -> i64 {
    expires_at_unix.saturating_sub(now_unix).max(0)
}

/// `mm:ss` (minutes are not capped at 59 and may grow to three digits).
fn format_countdown(secs: i64) -> String {
    let secs = secs.max(0);
    format!("{:02}:{:02}", secs / 60, secs % 60)
}

/// Most QR codes [`qr_svg`] keeps (one per receive address; there are few): when full it
/// starts over, so a flood of distinct addresses costs memory once, never without bound.
const QR_CACHE_MAX: usize = 4096;

/// [`qr_svg_uncached`] of `data`, remembered: the same receive address shows on every page of
/// its orders, and drawing the code is most of a page's cost.
fn qr_svg(data: &str) -> Option<String> {
    use std::{
        collections::HashMap,
        sync::{Arc, LazyLock, Mutex},
    };
    type Cache = Mutex<HashMap<String, Option<Arc<str>>>>;
    static CACHE: LazyLock<Cache> = LazyLock::new(Cache::default);
    if let Some(hit) = CACHE.lock().unwrap_or_else(|e| e.into_inner()).get(data) {
        return hit.as_deref().map(str::to_owned);
    }
    let svg = qr_svg_uncached(data).map(Arc::<str>::from);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= QR_CACHE_MAX {
        cache.clear();
    }
    cache.insert(data.to_owned(), svg.clone());
    svg.as_deref().map(str::to_owned)
}

/// Inline SVG QR code of `data`, without the XML prolog and namespace (not
/// needed inline in HTML5). `None` if the data does not fit in a QR code.
fn qr_svg_uncached(data: &str) -> Option<String> {
    let code = qrcode::QrCode::new(data.as_bytes()).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(220, 220)
        .dark_color(qrcode::render::svg::Color("#0f172a"))
        .light_color(qrcode::render::svg::Color("#ffffff"))
        .build();
    let start = svg.find("<svg")?;
    let svg = svg[start..].replacen(
        r#"<svg xmlns="http://www.w3.org/2000/svg""#,
        r#"<svg role="img" aria-label="QR code of the receive address""#,
        1,
    );
    // Never emit anything that could reference an external resource.
    if svg.contains("http") || svg.contains("<script") {
        return None;
    }
    Some(svg)
}

/// The full checkout document for an order that is waiting for payment.
pub fn render_checkout(v: &CheckoutView<'_>) -> Result<Html<String>, RenderError> {
    let remaining = remaining_seconds(v.expires_at_unix, v.now_unix);
    let waiting = remaining > 0;
    let (title, detail) = if waiting {
        (
            "Waiting for payment",
            "This page updates automatically once your transfer is confirmed on chain.",
        )
    } else {
        (
            "This order has expired",
            "Do not send any payment to this address. Go back to the shop and create a new order.",
        )
    };
    render(
        "checkout.html",
        context! {
            css => STYLE.body(),
            css_hash => STYLE.hash(),
            script => SCRIPT.body(),
            script_hash => SCRIPT.hash(),
            switch_networks => super::checkout_choose::options_value(v.switch_networks),
            cfg => context! {
                redirectUrl => safe_redirect(v.redirect_url),
                remaining,
                statusUrl => v.status_url,
                submitUrl => format!("/pay/submit-tx-hash/{}", v.trade_id),
                tradeId => v.trade_id,
            },
            state => if waiting { "waiting" } else { "expired" },
            countdown => format_countdown(remaining),
            title,
            detail,
            trade_id => v.trade_id,
            order_id => v.order_id,
            fiat_amount => v.fiat_amount,
            currency => v.currency,
            actual_amount => v.actual_amount,
            token => v.token,
            network_label => v.network_label,
            address => v.address,
            qr => qr_svg(v.address).map(Value::from_safe_string),
        },
    )
}

/// A page for an order that can no longer be paid, with `#status[data-state]`
/// set to `paid`, `expired`, `cancelled` or `not_found`.
pub fn render_closed(
    reason: ClosedReason,
    trade_id: Option<&str>,
    redirect_url: Option<&str>,
) -> Result<Html<String>, RenderError> {
    let (title, detail, link_label) = reason.texts();
    render(
        "closed.html",
        context! {
            css => STYLE.body(),
            css_hash => STYLE.hash(),
            state => reason.state(),
            title,
            detail,
            link_label,
            redirect => safe_redirect(redirect_url),
            trade_id,
        },
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::http::render::{csp_hash, escape_html, script_safe_json};

    fn checkout_html(v: &CheckoutView<'_>) -> String {
        render_checkout(v).expect("checkout renders").0
    }

    fn closed_html(reason: ClosedReason, trade_id: Option<&str>, redirect: Option<&str>) -> String {
        render_closed(reason, trade_id, redirect)
            .expect("closed page renders")
            .0
    }

    const HOSTILE: &str = r#""><script>alert(1)</script>"#;

    fn view<'a>(order_id: &'a str, redirect_url: Option<&'a str>) -> CheckoutView<'a> {
        CheckoutView {
            trade_id: "202501010000001",
            order_id,
            fiat_amount: "100.00",
            currency: "CNY",
            actual_amount: "14.29",
            token: "USDT",
            network_label: "TRON (TRC20)",
            address: "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE",
            expires_at_unix: 1_700_000_600,
            now_unix: 1_700_000_001,
            redirect_url,
            status_url: "/pay/check-status/202501010000001",
            switch_networks: &[],
        }
    }

    #[test]
    fn hostile_values_only_appear_escaped() {
        let redirect = format!("https://shop.example/return{HOSTILE}");
        let mut v = view(HOSTILE, Some(&redirect));
        v.trade_id = HOSTILE;
        v.address = HOSTILE;
        v.network_label = HOSTILE;
        v.status_url = HOSTILE;
        let html = checkout_html(&v);
        assert!(!html.contains(HOSTILE));
        assert!(!html.contains("<script>alert"));
        assert!(!html.contains("alert(1)</script>"));
        assert!(html.contains(&escape_html(HOSTILE)));
        // Exactly the page's own two script elements: its values (data) and its code.
        assert_eq!(html.matches("<script").count(), 2);
        assert_eq!(html.matches("</script>").count(), 2);

        let closed = closed_html(ClosedReason::Paid, Some(HOSTILE), Some(&redirect));
        assert!(!closed.contains(HOSTILE));
        assert!(!closed.contains("<script"));
        assert!(closed.contains(&escape_html(HOSTILE)));
    }

    #[test]
    fn values_in_the_script_are_json_encoded() {
        let breakout = "</script><script>alert(1)</script>";
        let mut v = view(breakout, None);
        v.status_url = breakout;
        v.trade_id = breakout;
        let html = checkout_html(&v);
        assert_eq!(html.matches("<script").count(), 2);
        assert_eq!(html.matches("</script>").count(), 2);
        let open = r#"<script type="application/json" id="page-cfg">"#;
        let start = html.find(open).unwrap() + open.len();
        let cfg = &html[start..start + html[start..].find("</script>").unwrap()];
        assert!(!cfg.contains('<'), "{cfg}");
        let parsed: serde_json::Value = serde_json::from_str(cfg).unwrap();
        assert_eq!(
            parsed,
            json!({
                "redirectUrl": null,
                "remaining": 599,
                "statusUrl": breakout,
                "submitUrl": format!("/pay/submit-tx-hash/{breakout}"),
                "tradeId": breakout,
            })
        );
        assert!(html.contains(&format!("<dd>{}</dd>", escape_html(breakout))));
    }

    #[test]
    fn unsafe_redirects_are_dropped() {
        assert_eq!(safe_redirect(Some("javascript:alert(1)")), None);
        assert_eq!(safe_redirect(Some(" java\tscript:alert(1)")), None);
        assert_eq!(safe_redirect(Some("data:text/html,hi")), None);
        assert_eq!(safe_redirect(Some("/relative")), None);
        assert_eq!(safe_redirect(None), None);
        assert_eq!(
            safe_redirect(Some("https://shop.example/ok?a=1")).as_deref(),
            Some("https://shop.example/ok?a=1")
        );
        let html = checkout_html(&view("42", Some("javascript:alert(1)")));
        assert!(!html.contains("javascript:"));
        assert!(html.contains("\"redirectUrl\":null"));
        let closed = closed_html(ClosedReason::Paid, None, Some("javascript:alert(1)"));
        assert!(!closed.contains("javascript:"));
    }

    #[test]
    fn qr_svg_and_stable_ids_are_present() {
        let html = checkout_html(&view("42", None));
        for id in [
            "amount",
            "address",
            "network",
            "countdown",
            "qr",
            "status",
            "copy-amount",
            "copy-address",
        ] {
            assert!(html.contains(&format!("id=\"{id}\"")), "missing #{id}");
        }
        let qr_start = html.find("id=\"qr\"").unwrap();
        assert!(html[qr_start..].starts_with("id=\"qr\"><svg "));
        assert!(html.contains("<span id=\"amount\">14.29</span>"));
        assert!(html.contains(
            "<code class=\"addr\" id=\"address\">TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE</code>"
        ));
        assert!(html.contains("<span class=\"chip\" id=\"network\">TRON (TRC20)</span>"));
        assert!(html.contains("<meta name=\"robots\" content=\"noindex\">"));
        assert!(html.contains("name=\"viewport\""));
        assert!(html.contains("other amounts or networks will not be matched"));
        assert!(html.starts_with("<!DOCTYPE html>"));
    }

    #[test]
    fn qr_is_omitted_when_it_cannot_be_generated() {
        let long = "T".repeat(8000);
        let mut v = view("42", None);
        v.address = &long;
        let html = checkout_html(&v);
        assert!(!html.contains("id=\"qr\""));
        assert!(html.contains("id=\"address\""));
    }

    #[test]
    fn no_external_resources() {
        let redirect = "https://shop.example/thanks?o=42";
        let html = checkout_html(&view("42", Some(redirect)));
        let encoded = script_safe_json(&json!(redirect)).unwrap();
        assert!(html.contains(&encoded));
        let rest = html.replace(&encoded, "");
        assert!(!rest.contains("http://"), "http:// found");
        assert!(!rest.contains("https://"), "https:// found");
        assert!(!rest.contains("//"), "protocol-relative URL found");
        let lower = rest.to_ascii_lowercase();
        for needle in ["src=", "<link rel=\"stylesheet\"", "@import", "url("] {
            assert!(!lower.contains(needle), "{needle} found");
        }
        for reason in [
            ClosedReason::Paid,
            ClosedReason::Expired,
            ClosedReason::Cancelled,
            ClosedReason::NotFound,
        ] {
            let closed = closed_html(reason, Some("t1"), None);
            assert!(!closed.contains("http://") && !closed.contains("https://"));
        }
    }

    #[test]
    fn csp_hashes_match_inline_bodies() {
        let html = checkout_html(&view("42", None));
        let start = html.find("<script>").unwrap() + 8;
        let script = &html[start..start + html[start..].find("</script>").unwrap()];
        assert!(html.contains(&format!("script-src {}", csp_hash(script))));
        // The script is the same for every order; what differs is the data block.
        let mut other = view("43", Some("https://shop.example/x"));
        other.trade_id = "202501010000002";
        let html2 = checkout_html(&other);
        assert!(html2.contains(&format!("<script>{script}</script>")));
        assert!(script.contains("var CFG = JSON.parse(document.getElementById(\"page-cfg\")"));
        assert!(html.contains(&format!("style-src {}", csp_hash(CSS))));
        let style = &html[html.find("<style>").unwrap() + 7..html.find("</style>").unwrap()];
        assert_eq!(style, CSS);
        // The base64 vectors of the former hand-written encoder live in
        // `render::tests::csp_hash_is_sha256_in_standard_base64`.
    }

    #[test]
    fn countdown_is_computed_from_server_time() {
        assert_eq!(remaining_seconds(1_700_000_600, 1_700_000_001), 599);
        assert_eq!(remaining_seconds(100, 200), 0);
        assert_eq!(remaining_seconds(i64::MAX, i64::MIN), i64::MAX);
        assert_eq!(format_countdown(599), "09:59");
        assert_eq!(format_countdown(0), "00:00");
        assert_eq!(format_countdown(-5), "00:00");
        assert_eq!(format_countdown(3600 + 61), "61:01");
        let html = checkout_html(&view("42", None));
        assert!(html.contains("<strong id=\"countdown\">09:59</strong>"));
        assert!(html.contains("\"remaining\":599"));
        assert!(html.contains("<body data-state=\"waiting\">"));

        let mut v = view("42", None);
        v.now_unix = v.expires_at_unix + 5;
        let html = checkout_html(&v);
        assert!(html.contains("<strong id=\"countdown\">00:00</strong>"));
        assert!(html.contains("\"remaining\":0"));
        assert!(html.contains("<body data-state=\"expired\">"));
        assert!(html.contains("data-state=\"expired\" role=\"status\""));
    }

    #[test]
    fn closed_pages_carry_their_state() {
        let cases = [
            (ClosedReason::Paid, "paid", "Payment received"),
            (ClosedReason::Expired, "expired", "This order has expired"),
            (ClosedReason::Cancelled, "cancelled", "cancelled"),
            (ClosedReason::NotFound, "not_found", "Order not found"),
        ];
        for (reason, state, text) in cases {
            let html = closed_html(reason, Some("T123"), Some("https://shop.example/back"));
            assert!(
                html.contains(&format!("id=\"status\" data-state=\"{state}\"")),
                "{state}: missing data-state"
            );
            assert!(html.contains(text), "{state}: missing text");
            assert!(html.contains("<meta name=\"robots\" content=\"noindex\">"));
            assert!(html.contains("href=\"https://shop.example/back\""));
            assert!(html.contains("T123"));
            assert!(html.contains(&format!("style-src {}", csp_hash(CSS))));
        }
        let expired = closed_html(ClosedReason::Expired, None, None);
        assert!(expired.contains("create a new order"));
        assert!(expired.contains("Do not send any payment"));
        assert!(!expired.contains("id=\"return-link\""));
    }

    /// Writes sample pages for the headless browser check in `tests/browser`:
    /// `cargo test --lib checkout_page -- --ignored`, then serve the folder.
    #[test]
    #[ignore]
    fn write_sample_pages() {
        let dir = std::env::var("CHECKOUT_SAMPLE_DIR")
            .unwrap_or_else(|_| "/tmp/checkout-sample".to_owned());
        std::fs::create_dir_all(&dir).unwrap();
        let now = chrono::Utc::now().timestamp();
        let redirect = std::env::var("CHECKOUT_SAMPLE_REDIRECT").ok();
        let mut v = view("ORDER-1001", redirect.as_deref());
        v.status_url = "status.json";
        v.now_unix = now;
        let ttl = std::env::var("CHECKOUT_SAMPLE_TTL")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(600);
        v.expires_at_unix = now + ttl;
        std::fs::write(format!("{dir}/checkout.html"), checkout_html(&v)).unwrap();
        for reason in [
            ClosedReason::Paid,
            ClosedReason::Expired,
            ClosedReason::Cancelled,
            ClosedReason::NotFound,
        ] {
            let html = closed_html(
                reason,
                Some(v.trade_id),
                Some("https://shop.example/orders/1001"),
            );
            std::fs::write(format!("{dir}/{}.html", reason.state()), html).unwrap();
        }
        let waiting = r#"{"status_code":200,"message":"success","data":{"trade_id":"202501010000001","status":1}}"#;
        std::fs::write(format!("{dir}/status.json"), waiting).unwrap();
    }
}
