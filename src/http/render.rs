//! The HTML renderer shared by every server-rendered page (the checkout page
//! today, the admin panel later): one [`minijinja::Environment`] holding the
//! templates of `templates/`, embedded at build time with `include_str!`, so
//! the binary needs no file at run time.
//!
//! It owns the escaping rules and nothing else: templates ending in `.html`
//! are auto-escaped, and the escaping is [`escape_html`] (`& < > " '`, the same
//! bytes the pages always had), not minijinja's default, which also escapes
//! `/`. Values handed to a script go through the `tojson` filter
//! ([`script_safe_json`]): JSON that can never close the `<script>` element.
//! [`Inline`] is a page's `<script>` or `<style>` body with its CSP source
//! expression, built once per process: no page's script or stylesheet depends
//! on the request (a page's values reach its script through the JSON block
//! `<script type="application/json" id="page-cfg">`, which is data, not code,
//! so CSP does not pin it), and hashing ~18 KB on every render was a tenth of
//! a checkout page's CPU. It must never load templates from disk or render a
//! value unescaped unless Rust code marked it safe (`Value::from_safe_string`).
use std::sync::{Arc, LazyLock};

use axum::response::Html;
use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use minijinja::{
    AutoEscape, Environment, Error, ErrorKind, Output, State, Value, syntax::SyntaxConfig,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Every template, by the name templates use to extend or include it.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    (
        "admin/shell.html",
        include_str!("../../templates/admin/shell.html"),
    ),
    (
        "checkout.html",
        include_str!("../../templates/checkout.html"),
    ),
    ("closed.html", include_str!("../../templates/closed.html")),
    (
        "partials/brand.html",
        include_str!("../../templates/partials/brand.html"),
    ),
    (
        "partials/icon_copy.html",
        include_str!("../../templates/partials/icon_copy.html"),
    ),
    (
        "partials/status_icons.html",
        include_str!("../../templates/partials/status_icons.html"),
    ),
    (
        "partials/submit_tx.html",
        include_str!("../../templates/partials/submit_tx.html"),
    ),
    ("choose.html", include_str!("../../templates/choose.html")),
    (
        "partials/switch_network.html",
        include_str!("../../templates/partials/switch_network.html"),
    ),
    (
        "partials/switch_offer.html",
        include_str!("../../templates/partials/switch_offer.html"),
    ),
];

/// A page could not be rendered: a template bug or a context that cannot be
/// serialized, never the payer's fault.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The embedded templates did not compile (caught by the unit tests).
    #[error("templates failed to load: {0:#}")]
    Load(#[source] Arc<Error>),
    #[error("template {name}: {source:#}")]
    Template {
        name: &'static str,
        #[source]
        source: Error,
    },
}

static ENV: LazyLock<Result<Environment<'static>, Arc<Error>>> =
    LazyLock::new(|| environment().map_err(Arc::new));

fn environment() -> Result<Environment<'static>, Error> {
    let mut env = Environment::new();
    // Block tags on their own line leave no blank line behind.
    env.set_syntax(
        SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()?,
    );
    env.set_formatter(format_value);
    env.add_filter("tojson", tojson);
    for (name, source) in TEMPLATES {
        env.add_template(name, source)?;
    }
    Ok(env)
}

/// Renders template `name` with `context` (`minijinja::context!`, or any
/// `Serialize` value wrapped in `minijinja::value::Serde`) into a string.
pub fn render_to_string(
    name: &'static str,
    context: impl Into<Value>,
) -> Result<String, RenderError> {
    let env = ENV.as_ref().map_err(|e| RenderError::Load(Arc::clone(e)))?;
    env.get_template(name)
        .and_then(|t| t.render(context))
        .map_err(|source| RenderError::Template { name, source })
}

/// Renders template `name` with `context` into an HTML response body.
pub fn render(name: &'static str, context: impl Into<Value>) -> Result<Html<String>, RenderError> {
    render_to_string(name, context).map(Html)
}

/// Writes a value: HTML-escaped with [`escape_html`] in `.html` templates unless
/// marked safe; anything else as minijinja's default formatter does.
fn format_value(out: &mut Output, state: &mut State, value: &Value) -> Result<(), Error> {
    if matches!(state.auto_escape(), AutoEscape::Html)
        && !value.is_safe()
        && let Some(s) = value.as_str()
    {
        return out.write_str(&escape_html(s)).map_err(Error::from);
    }
    minijinja::escape_formatter(out, state, value)
}

/// Escapes `& < > " '` so the value is safe in HTML text and in quoted attributes.
pub fn escape_html(s: &str) -> String {
    escape_chars(s, |c| match c {
        '&' => Some("&amp;"),
        '<' => Some("&lt;"),
        '>' => Some("&gt;"),
        '"' => Some("&quot;"),
        '\'' => Some("&#39;"),
        _ => None,
    })
}

/// Copies `s`, writing `escape(c)` in place of every character it has an escape for.
fn escape_chars(s: &str, escape: impl Fn(char) -> Option<&'static str>) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match escape(c) {
            Some(e) => out.push_str(e),
            None => out.push(c),
        }
    }
    out
}

/// The `tojson` filter: [`script_safe_json`], marked safe.
fn tojson(value: &Value) -> Result<Value, Error> {
    script_safe_json(value)
        .map(Value::from_safe_string)
        .map_err(|e| {
            Error::new(ErrorKind::InvalidOperation, "cannot serialize to JSON").with_source(e)
        })
}

/// Serializes `value` to JSON that is safe to embed inside a `<script>`
/// element: no `</` (nor `<!--`, `]]>`) can appear, because `<`, `>` and `&`
/// become `\u003c`, `\u003e` and `\u0026` (only ever inside JSON strings, where
/// they are valid escapes), and U+2028/U+2029 are escaped for older JS engines.
pub fn script_safe_json<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    let raw = serde_json::to_string(value)?;
    Ok(escape_chars(&raw, |c| match c {
        '<' => Some("\\u003c"),
        '>' => Some("\\u003e"),
        '&' => Some("\\u0026"),
        '\u{2028}' => Some("\\u2028"),
        '\u{2029}' => Some("\\u2029"),
        _ => None,
    }))
}

/// CSP source expression for an inline `<script>`/`<style>` body.
pub fn csp_hash(body: &str) -> String {
    format!(
        "'sha256-{}'",
        BASE64.encode(Sha256::digest(body.as_bytes()))
    )
}

/// A trusted inline `<script>` or `<style>` body and its CSP hash, for the
/// templates' `script`/`script_hash` and `css`/`css_hash`. Kept in a static:
/// cloning a [`Value`] shares the string.
pub struct Inline {
    body: Value,
    hash: Value,
}

impl Inline {
    /// A stylesheet (or any body used as is).
    pub fn new(body: String) -> Self {
        let hash = csp_hash(&body);
        Self {
            body: Value::from_safe_string(body),
            hash: Value::from_safe_string(hash),
        }
    }

    /// A page script: `parts` run in one strict-mode function that first reads
    /// `CFG`, the page's values, from its `page-cfg` JSON block (`base.html`).
    pub fn script(parts: &[&str]) -> Self {
        Self::new(format!(
            "\n(function () {{\n\"use strict\";\nvar CFG = JSON.parse(document.getElementById(\"page-cfg\").textContent);\n\n{}}})();\n",
            parts.join("\n")
        ))
    }

    pub fn body(&self) -> Value {
        self.body.clone()
    }

    pub fn hash(&self) -> Value {
        self.hash.clone()
    }
}

#[cfg(test)]
mod tests {
    use minijinja::{context, value::Serde};
    use serde_json::json;

    use super::*;

    fn render_str(source: &str, ctx: Value) -> String {
        let mut env = ENV.as_ref().unwrap().clone();
        env.add_template_owned("t.html", source.to_owned()).unwrap();
        env.get_template("t.html").unwrap().render(ctx).unwrap()
    }

    #[test]
    fn every_template_compiles() {
        let env = ENV.as_ref().expect("templates load");
        for (name, _) in TEMPLATES {
            env.get_template(name).expect(name);
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
    fn html_templates_escape_values_with_escape_html() {
        let hostile = r#""><script>alert('x')</script>&"#;
        let html = render_str(
            r#"<p title="{{ v }}">{{ v }}</p>{{ n }}{{ safe }}"#,
            context! { v => hostile, n => 42, safe => Value::from_safe_string("<b>".into()) },
        );
        let escaped = escape_html(hostile);
        assert_eq!(html, format!(r#"<p title="{escaped}">{escaped}</p>42<b>"#));
    }

    #[test]
    fn tojson_cannot_close_a_script() {
        let value = json!({ "x": "</script><script>alert(1)</script><!-- & \u{2028}", "n": null });
        let html = render_str(
            "<script>var C = {{ v|tojson }};</script>",
            context! { v => Serde(value.clone()) },
        );
        let inner = &html["<script>var C = ".len()..html.len() - ";</script>".len()];
        assert!(!inner.contains("</"));
        assert!(!inner.contains("<!--"));
        assert!(!inner.contains('\u{2028}'));
        assert_eq!(html.matches("</script>").count(), 1);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(inner).unwrap(),
            value
        );
    }

    #[test]
    fn script_values_are_json_encoded_and_cannot_close_the_script() {
        let value = json!({ "x": "</script><!-- & \u{2028}" });
        let safe = script_safe_json(&value).unwrap();
        assert!(!safe.contains("</"));
        assert!(!safe.contains("<!--"));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&safe).unwrap(),
            value
        );
    }

    #[test]
    fn csp_hash_is_sha256_in_standard_base64() {
        // SHA-256 of the empty string, as browsers print it in CSP errors.
        assert_eq!(
            csp_hash(""),
            "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"
        );
        // Padding as CSP expects it (standard alphabet, with `=`).
        assert_eq!(BASE64.encode(b""), "");
        assert_eq!(BASE64.encode(b"f"), "Zg==");
        assert_eq!(BASE64.encode(b"fo"), "Zm8=");
        assert_eq!(BASE64.encode(b"foo"), "Zm9v");
        assert_eq!(BASE64.encode(b"foobar"), "Zm9vYmFy");
        let empty = Inline::new(String::new());
        assert_eq!(empty.hash().as_str(), Some(csp_hash("").as_str()));
        let html = render_str(
            "<script>{{ s }}</script>{{ h }}",
            context! { s => empty.body(), h => empty.hash() },
        );
        assert_eq!(html, format!("<script></script>{}", csp_hash("")));
    }

    #[test]
    fn render_wraps_html_and_reports_unknown_templates() {
        let err = render("missing.html", ()).unwrap_err();
        assert!(err.to_string().starts_with("template missing.html"));
    }
}
