//! Server-rendered checkout pages: the page a payer sees while an order waits
//! for its USDT transfer ([`render_checkout`]) and the page shown once an order
//! can no longer be paid ([`render_closed`]).
//!
//! This module owns the markup, the inline CSS and the inline JavaScript of
//! those pages and nothing else: it is a set of pure functions that turn
//! already-loaded values into an HTML string, with no I/O, no database and no
//! clock of its own (the caller passes the server time). Each page is one
//! self-contained document: it must never load anything from an external CDN,
//! font service or image host, and it pins that down with a
//! `Content-Security-Policy` meta tag whose script and style hashes are
//! computed here, so the output must be served byte for byte as returned.
//! It must never trust its input either: every interpolated value is
//! HTML-escaped with [`escape_html`], every value handed to the script is
//! JSON-encoded by `serde_json` with `<`, `>` and `&` escaped, and a redirect
//! URL that is not an absolute `http(s)` URL is dropped.

use std::fmt::Write as _;

use serde_json::json;
use sha2::{Digest, Sha256};

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
}

/// Escapes `& < > " '` so the value is safe in HTML text and in quoted attributes.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Makes serialized JSON safe to embed inside a `<script>` element: no `</`
/// (nor `<!--`, `]]>`) can appear, because `<`, `>` and `&` become `\u003c`,
/// `\u003e` and `\u0026` (only ever inside JSON strings, where they are valid
/// escapes), and U+2028/U+2029 are escaped for older JS engines.
fn script_safe_json(value: &serde_json::Value) -> String {
    let raw = value.to_string();
    let mut out = String::with_capacity(raw.len() + 16);
    for c in raw.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            _ => out.push(c),
        }
    }
    out
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

/// Inline SVG QR code of `data`, without the XML prolog and namespace (not
/// needed inline in HTML5). `None` if the data does not fit in a QR code.
fn qr_svg(data: &str) -> Option<String> {
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

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// CSP source expression for an inline `<script>`/`<style>` body.
fn csp_hash(body: &str) -> String {
    format!("'sha256-{}'", base64(&Sha256::digest(body.as_bytes())))
}

fn head(out: &mut String, title: &str, script: Option<&str>) {
    let script_src = script.map_or_else(|| "'none'".to_owned(), csp_hash);
    let connect_src = if script.is_some() { "'self'" } else { "'none'" };
    let _ = write!(
        out,
        concat!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n",
            "<meta charset=\"utf-8\">\n",
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1, viewport-fit=cover\">\n",
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src {script_src}; ",
            "style-src {style_src}; connect-src {connect_src}; img-src data:; base-uri 'none'; form-action 'none'\">\n",
            "<meta name=\"robots\" content=\"noindex\">\n",
            "<meta name=\"referrer\" content=\"no-referrer\">\n",
            "<meta name=\"format-detection\" content=\"telephone=no\">\n",
            "<meta name=\"color-scheme\" content=\"light dark\">\n",
            "<title>{title}</title>\n",
            "<link rel=\"icon\" href=\"data:,\">\n",
            "<style>{css}</style>\n",
            "</head>\n",
        ),
        script_src = script_src,
        style_src = csp_hash(CSS),
        connect_src = connect_src,
        title = escape_html(title),
        css = CSS,
    );
}

fn brand(out: &mut String) {
    out.push_str(concat!(
        "<div class=\"brand\">",
        "<svg class=\"logo\" viewBox=\"0 0 32 32\" aria-hidden=\"true\"><circle cx=\"16\" cy=\"16\" r=\"16\" fill=\"#26a17b\"/>",
        "<path fill=\"#fff\" d=\"M17.9 17.1v-.01c-.11.01-.68.04-1.95.04-1.01 0-1.73-.03-1.98-.04v.01c-3.9-.17-6.82-.85-6.82-1.66 ",
        "0-.81 2.92-1.49 6.82-1.67v2.65c.26.02.99.06 2 .06 1.21 0 1.82-.05 1.93-.06v-2.65c3.9.17 6.8.85 6.8 1.66 0 .81-2.9 1.49-6.8 1.67",
        "m0-3.6v-2.37h5.44V7.5H8.53v3.63h5.44v2.37c-4.42.2-7.74 1.08-7.74 2.13 0 1.05 3.32 1.92 7.74 2.13v7.6h3.93v-7.6c4.41-.2 7.72-1.08 ",
        "7.72-2.13 0-1.05-3.31-1.92-7.72-2.13\"/></svg>",
        "<span>USDT Checkout</span></div>",
    ));
}

const ICON_COPY: &str = "<svg viewBox=\"0 0 24 24\" aria-hidden=\"true\"><rect x=\"9\" y=\"9\" width=\"11\" height=\"11\" rx=\"2\" fill=\"none\" stroke=\"currentColor\" stroke-width=\"2\"/><path d=\"M5 15V6a2 2 0 0 1 2-2h9\" fill=\"none\" stroke=\"currentColor\" stroke-width=\"2\" stroke-linecap=\"round\"/></svg>";

const STATUS_ICONS: &str = concat!(
    "<span class=\"st-icon\" aria-hidden=\"true\">",
    "<span class=\"i-waiting spin\"></span>",
    "<svg class=\"i-paid\" viewBox=\"0 0 48 48\"><circle cx=\"24\" cy=\"24\" r=\"22\" fill=\"currentColor\" opacity=\".14\"/>",
    "<path d=\"M14.5 24.5l6.5 6.5 13-14\" fill=\"none\" stroke=\"currentColor\" stroke-width=\"4\" stroke-linecap=\"round\" stroke-linejoin=\"round\"/></svg>",
    "<svg class=\"i-expired\" viewBox=\"0 0 48 48\"><circle cx=\"24\" cy=\"24\" r=\"22\" fill=\"currentColor\" opacity=\".14\"/>",
    "<circle cx=\"24\" cy=\"24\" r=\"12\" fill=\"none\" stroke=\"currentColor\" stroke-width=\"3.5\"/>",
    "<path d=\"M24 17.5V24l4 3\" fill=\"none\" stroke=\"currentColor\" stroke-width=\"3.5\" stroke-linecap=\"round\" stroke-linejoin=\"round\"/></svg>",
    "<svg class=\"i-cancelled\" viewBox=\"0 0 48 48\"><circle cx=\"24\" cy=\"24\" r=\"22\" fill=\"currentColor\" opacity=\".14\"/>",
    "<path d=\"M17 17l14 14M31 17L17 31\" fill=\"none\" stroke=\"currentColor\" stroke-width=\"4\" stroke-linecap=\"round\"/></svg>",
    "<svg class=\"i-not_found\" viewBox=\"0 0 48 48\"><circle cx=\"24\" cy=\"24\" r=\"22\" fill=\"currentColor\" opacity=\".14\"/>",
    "<path d=\"M19 19.5a5 5 0 1 1 7 4.6c-1.3.6-2 1.5-2 2.9v1\" fill=\"none\" stroke=\"currentColor\" stroke-width=\"3.5\" stroke-linecap=\"round\"/>",
    "<circle cx=\"24\" cy=\"33.5\" r=\"2.2\" fill=\"currentColor\"/></svg>",
    "</span>",
);

/// The full checkout document for an order that is waiting for payment.
pub fn render_checkout(v: &CheckoutView<'_>) -> String {
    let remaining = remaining_seconds(v.expires_at_unix, v.now_unix);
    let initial_state = if remaining > 0 { "waiting" } else { "expired" };
    let redirect = safe_redirect(v.redirect_url);

    let config = json!({
        "statusUrl": v.status_url,
        "redirectUrl": redirect,
        "remaining": remaining,
    });
    let script = format!(
        "\n(function () {{\n\"use strict\";\nvar CFG = {};\n{}}})();\n",
        script_safe_json(&config),
        JS
    );

    let amount = escape_html(v.actual_amount);
    let token = escape_html(v.token);
    let network = escape_html(v.network_label);
    let address = escape_html(v.address);

    let mut out = String::with_capacity(24 * 1024);
    head(
        &mut out,
        &format!("Pay {} {} · Order {}", v.actual_amount, v.token, v.order_id),
        Some(&script),
    );
    let _ = write!(
        out,
        "<body data-state=\"{initial_state}\">\n<main class=\"wrap\">\n<div class=\"card\">\n<header class=\"head\">"
    );
    brand(&mut out);
    let _ = write!(
        out,
        concat!(
            "<div class=\"timer pay-only\" title=\"Time left to pay\"><span>Expires in</span> ",
            "<strong id=\"countdown\">{countdown}</strong></div>",
            "</header>\n",
        ),
        countdown = format_countdown(remaining),
    );

    // Amount, network and warning.
    let _ = write!(
        out,
        concat!(
            "<section class=\"sec pay-only\" aria-label=\"Amount to pay\">\n",
            "<div class=\"label\">Amount to pay</div>\n",
            "<div class=\"row\"><div class=\"amount\"><span id=\"amount\">{amount}</span><span class=\"unit\">{token}</span></div>",
            "<button type=\"button\" class=\"copy\" id=\"copy-amount\" data-copy-target=\"amount\" aria-label=\"Copy amount\">",
            "{icon}<span class=\"copy-label\">Copy</span></button></div>\n",
            "<div class=\"fiat\">Order total {fiat} {currency}</div>\n",
            "<div class=\"net\"><span class=\"label\">Network</span> <span class=\"chip\" id=\"network\">{network}</span>",
            "<span class=\"chip chip-token\">{token}</span></div>\n",
            "<div class=\"warn\" role=\"note\"><svg viewBox=\"0 0 24 24\" aria-hidden=\"true\"><path d=\"M12 3l10 18H2z\" fill=\"none\" ",
            "stroke=\"currentColor\" stroke-width=\"2\" stroke-linejoin=\"round\"/><path d=\"M12 10v5\" stroke=\"currentColor\" stroke-width=\"2\" ",
            "stroke-linecap=\"round\"/><circle cx=\"12\" cy=\"18\" r=\"1.2\" fill=\"currentColor\"/></svg>",
            "<p>Send <strong>exactly this amount</strong> of {token} on <strong>{network}</strong>; other amounts or networks will not be matched.</p></div>\n",
            "</section>\n",
        ),
        amount = amount,
        token = token,
        icon = ICON_COPY,
        fiat = escape_html(v.fiat_amount),
        currency = escape_html(v.currency),
        network = network,
    );

    // QR code and address.
    out.push_str("<section class=\"sec sec-addr pay-only\" aria-label=\"Receive address\">\n");
    if let Some(svg) = qr_svg(v.address) {
        let _ = writeln!(out, "<div class=\"qr\" id=\"qr\">{svg}</div>");
    }
    let _ = write!(
        out,
        concat!(
            "<div class=\"label\">Receive address</div>\n",
            "<div class=\"addr-box\"><code class=\"addr\" id=\"address\">{address}</code>",
            "<button type=\"button\" class=\"copy\" id=\"copy-address\" data-copy-target=\"address\" aria-label=\"Copy address\">",
            "{icon}<span class=\"copy-label\">Copy</span></button></div>\n",
            "</section>\n",
        ),
        address = address,
        icon = ICON_COPY,
    );

    // Live status.
    let (title, detail) = if initial_state == "waiting" {
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
    let _ = write!(
        out,
        concat!(
            "<div class=\"status\" id=\"status\" data-state=\"{state}\" role=\"status\" aria-live=\"polite\">{icons}",
            "<div class=\"st-text\"><strong id=\"status-title\">{title}</strong><p id=\"status-detail\">{detail}</p>",
            "<a class=\"btn\" id=\"return-link\" hidden>Return to merchant</a></div></div>\n",
        ),
        state = initial_state,
        icons = STATUS_ICONS,
        title = title,
        detail = detail,
    );

    let _ = write!(
        out,
        concat!(
            "<dl class=\"meta\"><dt>Order</dt><dd>{order}</dd><dt>Trade ID</dt><dd>{trade}</dd></dl>\n",
            "</div>\n",
            "<p class=\"foot pay-only\">Keep this page open until the payment is confirmed.</p>\n",
            "<noscript><p class=\"foot\">JavaScript is off: reload this page to see whether your payment has arrived.</p></noscript>\n",
            "</main>\n<script>{script}</script>\n</body>\n</html>\n",
        ),
        order = escape_html(v.order_id),
        trade = escape_html(v.trade_id),
        script = script,
    );
    out
}

/// A page for an order that can no longer be paid, with `#status[data-state]`
/// set to `paid`, `expired`, `cancelled` or `not_found`.
pub fn render_closed(
    reason: ClosedReason,
    trade_id: Option<&str>,
    redirect_url: Option<&str>,
) -> String {
    let redirect = safe_redirect(redirect_url);
    let (title, detail, link_label) = match reason {
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
    };
    let state = reason.state();

    let mut out = String::with_capacity(12 * 1024);
    head(&mut out, title, None);
    let _ = write!(
        out,
        "<body data-state=\"{state}\">\n<main class=\"wrap\">\n<div class=\"card\">\n<header class=\"head\">"
    );
    brand(&mut out);
    out.push_str("</header>\n");
    let _ = write!(
        out,
        concat!(
            "<div class=\"status\" id=\"status\" data-state=\"{state}\" role=\"status\">{icons}",
            "<div class=\"st-text\"><strong id=\"status-title\">{title}</strong><p id=\"status-detail\">{detail}</p>",
        ),
        state = state,
        icons = STATUS_ICONS,
        title = title,
        detail = detail,
    );
    if let Some(url) = redirect {
        let _ = write!(
            out,
            "<a class=\"btn\" id=\"return-link\" href=\"{}\" rel=\"noopener noreferrer\">{}</a>",
            escape_html(&url),
            link_label
        );
    }
    out.push_str("</div></div>\n");
    if let Some(trade) = trade_id {
        let _ = writeln!(
            out,
            "<dl class=\"meta\"><dt>Trade ID</dt><dd>{}</dd></dl>",
            escape_html(trade)
        );
    }
    out.push_str("</div>\n</main>\n</body>\n</html>\n");
    out
}

const CSS: &str = r#"
:root{--bg:#f2f4f8;--card:#fff;--text:#0f172a;--muted:#64748b;--line:#e3e8ef;--soft:#f7f9fc;--accent:#139a74;--accent-soft:#e7f6f1;
--warn-bg:#fff8eb;--warn-line:#f6d28f;--warn-ink:#7a4a00;--ok:#139a74;--bad:#dc2626;--idle:#64748b;
--shadow:0 1px 2px rgba(15,23,42,.05),0 10px 30px rgba(15,23,42,.08)}
@media (prefers-color-scheme:dark){:root{--bg:#0b1120;--card:#131b2e;--text:#e6eaf2;--muted:#97a3b6;--line:#26314a;--soft:#0f172a;
--accent:#2bbf94;--accent-soft:#12352c;--warn-bg:#2b2212;--warn-line:#7c5c1c;--warn-ink:#f4d28f;--bad:#f87171;--idle:#97a3b6;--shadow:none}}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{margin:0;min-height:100vh;background:var(--bg);color:var(--text);
font:15px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans",sans-serif;-webkit-font-smoothing:antialiased}
.wrap{max-width:440px;margin:0 auto;padding:14px 12px 28px}
@media (min-width:600px){.wrap{padding-top:56px}}
.card{background:var(--card);border:1px solid var(--line);border-radius:18px;box-shadow:var(--shadow);overflow:hidden}
.head{display:flex;align-items:center;justify-content:space-between;gap:10px;padding:14px 16px;border-bottom:1px solid var(--line)}
.brand{display:flex;align-items:center;gap:9px;font-weight:650;font-size:15px;white-space:nowrap}
.logo{width:28px;height:28px;flex:none}
.timer{display:flex;align-items:baseline;gap:6px;padding:4px 11px;border-radius:999px;background:var(--soft);border:1px solid var(--line);
font-size:12px;color:var(--muted);white-space:nowrap}
.timer strong{font-size:15px;color:var(--text);font-variant-numeric:tabular-nums}
.timer.is-urgent{border-color:var(--bad)}.timer.is-urgent strong{color:var(--bad)}
.sec{padding:16px}
.sec+.sec{border-top:1px solid var(--line)}
.label{font-size:11.5px;font-weight:600;letter-spacing:.06em;text-transform:uppercase;color:var(--muted)}
.row{display:flex;align-items:center;justify-content:space-between;gap:12px;margin-top:2px}
.amount{min-width:0;font-size:34px;font-weight:700;line-height:1.15;letter-spacing:-.01em;font-variant-numeric:tabular-nums;overflow-wrap:anywhere}
.unit{margin-left:7px;font-size:16px;font-weight:600;color:var(--muted);letter-spacing:0}
.fiat{margin-top:2px;font-size:13.5px;color:var(--muted)}
.net{display:flex;flex-wrap:wrap;align-items:center;gap:6px 8px;margin-top:12px}
.net .label{margin-right:2px}
.chip{display:inline-flex;align-items:center;padding:3px 10px;border-radius:999px;background:var(--accent-soft);color:var(--accent);font-weight:650;font-size:13px}
.chip-token{background:var(--soft);color:var(--text);border:1px solid var(--line)}
.warn{display:flex;gap:9px;margin-top:12px;padding:10px 12px;border-radius:12px;background:var(--warn-bg);border:1px solid var(--warn-line);
color:var(--warn-ink);font-size:13px;line-height:1.45}
.warn svg{flex:none;width:18px;height:18px;margin-top:1px}
.warn p{margin:0}
.sec-addr{text-align:left}
.qr{width:188px;margin:0 auto 12px;padding:3px;background:#fff;border:1px solid var(--line);border-radius:10px}
.qr svg{display:block;width:100%;height:auto}
.addr-box{display:flex;align-items:center;gap:10px;margin-top:6px;padding:10px 10px 10px 12px;border:1px solid var(--line);border-radius:12px;background:var(--soft)}
.addr{flex:1;min-width:0;font:14px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;word-break:break-all;color:var(--text)}
.copy{flex:none;display:inline-flex;align-items:center;justify-content:center;gap:6px;min-width:88px;height:38px;padding:0 12px;border-radius:10px;
border:1px solid var(--line);background:var(--card);color:var(--text);font:inherit;font-size:14px;font-weight:600;cursor:pointer;
-webkit-tap-highlight-color:transparent;transition:background .15s,border-color .15s,color .15s}
.copy svg{width:16px;height:16px}
.copy:hover{border-color:var(--accent)}
.copy:active{transform:scale(.97)}
.copy:focus-visible,.btn:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
.copy.is-copied{background:var(--accent);border-color:var(--accent);color:#fff}
.copy.is-failed{border-color:var(--bad);color:var(--bad)}
.copy-buffer{position:fixed;top:0;left:0;width:1px;height:1px;padding:0;border:0;opacity:0;font-size:16px;pointer-events:none}
.status{display:flex;align-items:center;gap:12px;padding:14px 16px;border-top:1px solid var(--line);background:var(--soft)}
.status p{margin:2px 0 0;font-size:13px;color:var(--muted)}
.status strong{font-size:15px}
.st-icon{flex:none;display:flex;color:var(--idle)}
.st-icon>*{display:none}
.status[data-state=waiting] .i-waiting,.status[data-state=paid] .i-paid,.status[data-state=expired] .i-expired,
.status[data-state=cancelled] .i-cancelled,.status[data-state=not_found] .i-not_found{display:block}
.spin{width:20px;height:20px;border-radius:50%;border:2.5px solid var(--line);border-top-color:var(--accent);animation:spin .9s linear infinite}
@keyframes spin{to{transform:rotate(360deg)}}
@media (prefers-reduced-motion:reduce){.spin{animation-duration:3s}}
.status:not([data-state=waiting]){flex-direction:column;text-align:center;gap:14px;padding:40px 22px 34px;border-top:0;background:var(--card)}
.status:not([data-state=waiting]) svg{width:64px;height:64px}
.status:not([data-state=waiting]) strong{font-size:21px}
.status:not([data-state=waiting]) p{margin-top:8px;font-size:14.5px;line-height:1.55}
.status[data-state=paid] .st-icon{color:var(--ok)}
.status[data-state=expired] .st-icon,.status[data-state=cancelled] .st-icon{color:var(--bad)}
.btn{display:inline-flex;align-items:center;justify-content:center;margin-top:18px;padding:11px 20px;border-radius:11px;background:var(--accent);
color:#fff;font-weight:600;text-decoration:none}
.btn[hidden]{display:none}
body:not([data-state=waiting]) .pay-only{display:none}
.meta{display:grid;grid-template-columns:auto 1fr;gap:3px 12px;margin:0;padding:12px 16px 14px;border-top:1px solid var(--line);font-size:12px;color:var(--muted)}
.meta dt{margin:0}
.meta dd{margin:0;text-align:right;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;overflow-wrap:anywhere}
.foot{margin:14px 6px 0;text-align:center;font-size:12.5px;color:var(--muted)}
"#;

/// Body of the checkout script; `CFG` is defined just before it.
const JS: &str = r#"
var body = document.body;
var statusEl = document.getElementById("status");
var titleEl = document.getElementById("status-title");
var detailEl = document.getElementById("status-detail");
var linkEl = document.getElementById("return-link");
var countdownEl = document.getElementById("countdown");
var timerEl = countdownEl ? countdownEl.parentNode : null;
var clock = (window.performance && performance.now) ? function () { return performance.now(); } : function () { return Date.now(); };
var started = clock();
var state = body.getAttribute("data-state") || "waiting";
var tickTimer = null, pollTimer = null, inFlight = false, stopPolling = false, pollUntil = Infinity;

var TEXT = {
  paid: ["Payment received", CFG.redirectUrl ? "Thank you! Taking you back to the merchant\u2026" : "Thank you! You can close this page now."],
  expired: ["This order has expired", "Do not send any payment to this address. Go back to the shop and create a new order."],
  cancelled: ["This order was cancelled", "Do not send any payment for this order. Go back to the shop if you want to order again."]
};

function pad(n) { return n < 10 ? "0" + n : String(n); }
function remaining() { return Math.max(0, Math.ceil(CFG.remaining - (clock() - started) / 1000)); }

function setState(next) {
  if (state === next || state === "paid" || state === "cancelled") { return; }
  state = next;
  body.setAttribute("data-state", next);
  statusEl.setAttribute("data-state", next);
  titleEl.textContent = TEXT[next][0];
  detailEl.textContent = TEXT[next][1];
  if (tickTimer !== null) { clearInterval(tickTimer); tickTimer = null; }
  if (CFG.redirectUrl) {
    linkEl.href = CFG.redirectUrl;
    linkEl.textContent = next === "paid" ? "Return to merchant" : "Back to shop";
    linkEl.hidden = false;
  }
  if (next === "paid") {
    stopPolling = true;
    if (CFG.redirectUrl) { setTimeout(function () { window.location.assign(CFG.redirectUrl); }, 2000); }
  } else if (next === "cancelled") {
    stopPolling = true;
  } else if (next === "expired") {
    if (countdownEl) { countdownEl.textContent = "00:00"; }
    /* A transfer sent just before the deadline may still be confirmed: keep asking a little longer. */
    pollUntil = clock() + 120000;
  }
}

function tick() {
  var left = remaining();
  if (countdownEl) { countdownEl.textContent = pad(Math.floor(left / 60)) + ":" + pad(left % 60); }
  if (timerEl) { timerEl.classList.toggle("is-urgent", left <= 60); }
  if (left <= 0) { setState("expired"); }
}

function schedule(delay) {
  if (stopPolling || inFlight || pollTimer !== null || clock() > pollUntil) { return; }
  pollTimer = setTimeout(poll, delay);
}

function poll() {
  pollTimer = null;
  if (stopPolling || clock() > pollUntil) { return; }
  inFlight = true;
  var ctrl = window.AbortController ? new AbortController() : null;
  var guard = setTimeout(function () { if (ctrl) { ctrl.abort(); } }, 10000);
  fetch(CFG.statusUrl, { cache: "no-store", credentials: "same-origin", headers: { "Accept": "application/json" }, signal: ctrl ? ctrl.signal : undefined })
    .then(function (res) { if (!res.ok) { throw new Error("HTTP " + res.status); } return res.json(); })
    .then(function (reply) {
      if (!reply || reply.status_code !== 200 || !reply.data) { return; }
      var code = Number(reply.data.status);
      if (code === 2) { setState("paid"); }
      else if (code === 3) { setState("expired"); stopPolling = true; }
      else if (code === 4) { setState("cancelled"); }
    })
    .catch(function () { /* network hiccup: try again on the next round */ })
    .then(function () { clearTimeout(guard); inFlight = false; schedule(3000); });
}

function selectText(el) {
  try {
    var range = document.createRange();
    range.selectNodeContents(el);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  } catch (e) { /* nothing more we can do */ }
}

function fallbackCopy(text) {
  var area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "copy-buffer";
  document.body.appendChild(area);
  var ok = false;
  try {
    area.focus();
    area.select();
    area.setSelectionRange(0, text.length);
    ok = document.execCommand("copy");
  } catch (e) { ok = false; }
  document.body.removeChild(area);
  return ok;
}

function copyFrom(button) {
  var source = document.getElementById(button.getAttribute("data-copy-target"));
  if (!source) { return; }
  var text = source.textContent.trim();
  var label = button.querySelector(".copy-label");
  function done(ok) {
    button.classList.toggle("is-copied", ok);
    button.classList.toggle("is-failed", !ok);
    label.textContent = ok ? "Copied" : "Select";
    if (!ok) { selectText(source); }
    clearTimeout(button.copyTimer);
    button.copyTimer = setTimeout(function () {
      label.textContent = "Copy";
      button.classList.remove("is-copied", "is-failed");
    }, 1800);
  }
  if (navigator.clipboard && navigator.clipboard.writeText && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(function () { done(true); }, function () { done(fallbackCopy(text)); });
  } else {
    done(fallbackCopy(text));
  }
}

Array.prototype.forEach.call(document.querySelectorAll("[data-copy-target]"), function (button) {
  button.addEventListener("click", function () { copyFrom(button); });
});

document.addEventListener("visibilitychange", function () {
  if (document.visibilityState === "visible" && pollTimer !== null) {
    clearTimeout(pollTimer);
    pollTimer = null;
    poll();
  }
});

if (state === "waiting") {
  tick();
  tickTimer = setInterval(tick, 500);
} else {
  pollUntil = clock() + 120000;
}
schedule(0);
"#;

#[cfg(test)]
mod tests {
    use super::*;

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
        }
    }

    #[test]
    fn escape_html_escapes_the_five_characters() {
        assert_eq!(
            escape_html(r#"<a href="x">&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(escape_html("TQn9 14.29"), "TQn9 14.29");
    }

    #[test]
    fn hostile_values_only_appear_escaped() {
        let redirect = format!("https://shop.example/return{HOSTILE}");
        let mut v = view(HOSTILE, Some(&redirect));
        v.trade_id = HOSTILE;
        v.address = HOSTILE;
        v.network_label = HOSTILE;
        v.status_url = HOSTILE;
        let html = render_checkout(&v);
        assert!(!html.contains(HOSTILE));
        assert!(!html.contains("<script>alert"));
        assert!(!html.contains("alert(1)</script>"));
        assert!(html.contains(&escape_html(HOSTILE)));
        // Exactly one script element, the page's own.
        assert_eq!(html.matches("<script").count(), 1);
        assert_eq!(html.matches("</script>").count(), 1);

        let closed = render_closed(ClosedReason::Paid, Some(HOSTILE), Some(&redirect));
        assert!(!closed.contains(HOSTILE));
        assert!(!closed.contains("<script"));
        assert!(closed.contains(&escape_html(HOSTILE)));
    }

    #[test]
    fn script_values_are_json_encoded_and_cannot_close_the_script() {
        let value = json!({ "x": "</script><!-- & \u{2028}" });
        let safe = script_safe_json(&value);
        assert!(!safe.contains("</"));
        assert!(!safe.contains("<!--"));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&safe).unwrap(),
            value
        );
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
        let html = render_checkout(&view("42", Some("javascript:alert(1)")));
        assert!(!html.contains("javascript:"));
        assert!(html.contains("\"redirectUrl\":null"));
        let closed = render_closed(ClosedReason::Paid, None, Some("javascript:alert(1)"));
        assert!(!closed.contains("javascript:"));
    }

    #[test]
    fn qr_svg_and_stable_ids_are_present() {
        let html = render_checkout(&view("42", None));
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
        let html = render_checkout(&v);
        assert!(!html.contains("id=\"qr\""));
        assert!(html.contains("id=\"address\""));
    }

    #[test]
    fn no_external_resources() {
        let redirect = "https://shop.example/thanks?o=42";
        let html = render_checkout(&view("42", Some(redirect)));
        let encoded = script_safe_json(&json!(redirect));
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
            let closed = render_closed(reason, Some("t1"), None);
            assert!(!closed.contains("http://") && !closed.contains("https://"));
        }
    }

    #[test]
    fn csp_hashes_match_inline_bodies() {
        let html = render_checkout(&view("42", None));
        let script = &html[html.find("<script>").unwrap() + 8..html.find("</script>").unwrap()];
        assert!(html.contains(&format!("script-src {}", csp_hash(script))));
        assert!(html.contains(&format!("style-src {}", csp_hash(CSS))));
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
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
        let html = render_checkout(&view("42", None));
        assert!(html.contains("<strong id=\"countdown\">09:59</strong>"));
        assert!(html.contains("\"remaining\":599"));
        assert!(html.contains("<body data-state=\"waiting\">"));

        let mut v = view("42", None);
        v.now_unix = v.expires_at_unix + 5;
        let html = render_checkout(&v);
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
            let html = render_closed(reason, Some("T123"), Some("https://shop.example/back"));
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
        let expired = render_closed(ClosedReason::Expired, None, None);
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
        std::fs::write(format!("{dir}/checkout.html"), render_checkout(&v)).unwrap();
        for reason in [
            ClosedReason::Paid,
            ClosedReason::Expired,
            ClosedReason::Cancelled,
            ClosedReason::NotFound,
        ] {
            let html = render_closed(
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
