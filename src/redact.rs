//! The one redactor of the program: every string shown to an operator (`config check`, logs,
//! error messages, the audit trail) that may carry a credential goes through [`secrets`], and RPC
//! endpoints through [`rpc_url`].
//!
//! [`secrets`] works on any text — a URL or a message containing URLs — and replaces the
//! password of a URL's userinfo (`scheme://user:PASSWORD@host`) and the value of every
//! credential-named `key=value` pair (`password=`, `pass=`, `pwd=`, `token=`, `key=`, `apikey=`,
//! `api_key=`, `secret=`, `sslpassword=`, … in any case) with [`REDACTED`]. [`rpc_url`] keeps only
//! `scheme://host[:port]` because providers put API keys in the path itself.
//!
//! Must never: return a credential it was given; fail (it is text in, text out). A leaf: it
//! imports nothing of the program.

/// What replaces a secret.
pub const REDACTED: &str = "redacted";

/// Is `key` (a query or `key=value` parameter name) the name of a credential?
pub fn is_credential_name(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    matches!(
        k.as_str(),
        "pass" | "pwd" | "auth" | "authorization" | "credential"
    ) || [
        "password",
        "passwd",
        "token",
        "secret",
        "key",
        "credentials",
    ]
    .iter()
    .any(|suffix| k.ends_with(suffix))
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')
}

/// Where a parameter value ends: the next separator of pairs, or the end of the token.
fn value_end(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|c| {
            matches!(c, b'&' | b'#' | b'"' | b'\'' | b'>' | b'<' | b'`') || c.is_ascii_whitespace()
        })
        .map_or(bytes.len(), |p| from + p)
}

/// Redacts every credential in `text` (see the module doc). Text without one is returned as is.
pub fn secrets(text: &str) -> String {
    let bytes = text.as_bytes();
    // Byte ranges to replace, in order, never overlapping.
    let mut cut: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        // Userinfo password: `://user:pass@`, the authority ending at `/`, `?`, `#` or a space.
        if bytes[i..].starts_with(b"://") {
            let start = i + 3;
            let end = bytes[start..]
                .iter()
                .position(|c| matches!(c, b'/' | b'?' | b'#') || c.is_ascii_whitespace())
                .map_or(bytes.len(), |p| start + p);
            if let Some(at) = bytes[start..end].iter().rposition(|c| *c == b'@') {
                let at = start + at;
                if let Some(colon) = bytes[start..at].iter().position(|c| *c == b':') {
                    let colon = start + colon;
                    if at > colon + 1 {
                        cut.push((colon + 1, at));
                    }
                }
            }
            i = end;
            continue;
        }
        // `name=value` with a credential name (a name starts after a non-name character).
        if bytes[i] == b'=' {
            let mut s = i;
            while s > 0 && is_name_char(bytes[s - 1]) {
                s -= 1;
            }
            let name = &text[s..i];
            if !name.is_empty() && is_credential_name(name) {
                let end = value_end(bytes, i + 1);
                if end > i + 1 {
                    cut.push((i + 1, end));
                }
                i = end;
                continue;
            }
        }
        i += 1;
    }
    if cut.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (a, b) in cut {
        out.push_str(&text[last..a]);
        out.push_str(REDACTED);
        last = b;
    }
    out.push_str(&text[last..]);
    out
}

/// `scheme://host[:port]` plus `/…` when the URL has a path or query: providers put API keys
/// there, so logs, `/health` and `config check` never show them. Not a URL: `<not a URL>`.
pub fn rpc_url(raw: &str) -> String {
    match url::Url::parse(raw.trim()) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("?");
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let rest = if (u.path().is_empty() || u.path() == "/") && u.query().is_none() {
                ""
            } else {
                "/…"
            };
            format!("{}://{host}{port}{rest}", u.scheme())
        }
        Err(_) => "<not a URL>".into(),
    }
}

/// At most `max` characters of `s`, cut on a char boundary, with an ellipsis (`…`) when cut:
/// for node answers and error texts quoted in logs and messages.
pub fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_credential_form() {
        for (raw, want) in [
            (
                "postgres://u:hunter2@db:5432/epusdt",
                "postgres://u:redacted@db:5432/epusdt",
            ),
            (
                "postgres://u@h/db?password=p1&sslmode=disable",
                "postgres://u@h/db?password=redacted&sslmode=disable",
            ),
            ("redis://h?password=p2", "redis://h?password=redacted"),
            ("redis://:p3@h:6379/0", "redis://:redacted@h:6379/0"),
            (
                "mysql://u@h/db?PASS=p4&pwd=p5",
                "mysql://u@h/db?PASS=redacted&pwd=redacted",
            ),
            (
                "https://rpc.example.com/?apikey=k1&x=1&api_key=k2&key=k3&token=t1",
                "https://rpc.example.com/?apikey=redacted&x=1&api_key=redacted&key=redacted&token=redacted",
            ),
            (
                "postgres://u:p%40ss@h/db?sslpassword=s1",
                "postgres://u:redacted@h/db?sslpassword=redacted",
            ),
            (
                "error connecting to redis://u:pw@h:1 (password=x y) done",
                "error connecting to redis://u:redacted@h:1 (password=redacted y) done",
            ),
            ("user@example.com sent a=1", "user@example.com sent a=1"),
            (
                "sqlite:///var/lib/epusdt/epusdt.db?mode=rwc",
                "sqlite:///var/lib/epusdt/epusdt.db?mode=rwc",
            ),
            ("http://u:@h/", "http://u:@h/"),
            ("", ""),
            ("=", "="),
            ("token=", "token="),
        ] {
            assert_eq!(secrets(raw), want, "{raw}");
        }
    }

    #[test]
    fn names_that_are_credentials() {
        for n in [
            "password",
            "Password",
            "pass",
            "pwd",
            "passwd",
            "token",
            "access_token",
            "key",
            "apikey",
            "api_key",
            "API-KEY",
            "secret",
            "client_secret",
            "sslpassword",
        ] {
            assert!(is_credential_name(n), "{n}");
        }
        for n in ["user", "sslmode", "mode", "host", "dbname", "x", "passive"] {
            assert!(!is_credential_name(n), "{n}");
        }
    }

    #[test]
    fn rpc_urls_keep_only_the_host() {
        assert_eq!(
            rpc_url("https://eth.example.com/v2/KEY?x=1"),
            "https://eth.example.com/…"
        );
        assert_eq!(rpc_url("http://127.0.0.1:8545"), "http://127.0.0.1:8545");
        assert_eq!(rpc_url("not a url"), "<not a URL>");
    }

    #[test]
    fn truncate_cuts_on_char_boundaries_with_an_ellipsis() {
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("ab", 3), "ab");
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("äöüß", 2), "äö…");
        assert_eq!(truncate("", 0), "");
        assert_eq!(truncate("x", 0), "…");
    }
}
