//! Operator notices (issue 13): what the gateway tells opted-in admins through the Telegram bot,
//! their kinds (the `tg_notify` config key chooses which are sent), and the text rules every
//! notice and bot reply follows: HTML-escaped (order ids, names and addresses come from
//! merchants and payers) and split into messages Telegram accepts.
use serde::{Deserialize, Serialize};

/// What happened. Stored in the job queue (serde JSON): keep the shape stable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "notice", rename_all = "snake_case")]
pub enum Notice {
    /// An order was paid (primary key of the order).
    OrderPaid { order_id: i64 },
    /// A transfer was flagged instead of credited: `late`, `partial`, `overpaid`, `paid_twice`
    /// or `unmatched`.
    Transfer {
        kind: String,
        network: String,
        tx_hash: String,
        amount: String,
        to: String,
        order_id: Option<i64>,
    },
    /// A callback gave up after its last retry.
    CallbackGaveUp { order_id: i64, attempts: u32 },
    /// A chain watcher lags behind or has no working RPC URL (`problem` says which).
    Chain { network: String, problem: String },
    /// The master key was rotated.
    KeyRotated { key_id: String },
    /// An admin account was locked after failed logins.
    Lockout { username: String },
}

/// The kinds `tg_notify` chooses from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NoticeKind {
    Paid,
    Transfer,
    Callback,
    Chain,
    Security,
}

impl NoticeKind {
    pub const ALL: [NoticeKind; 5] = [
        NoticeKind::Paid,
        NoticeKind::Transfer,
        NoticeKind::Callback,
        NoticeKind::Chain,
        NoticeKind::Security,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Paid => "paid",
            NoticeKind::Transfer => "transfer",
            NoticeKind::Callback => "callback",
            NoticeKind::Chain => "chain",
            NoticeKind::Security => "security",
        }
    }

    pub fn parse(s: &str) -> Option<NoticeKind> {
        NoticeKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s.trim().to_ascii_lowercase())
    }

    /// `tg_notify`: `all`, `none` or a comma list of kinds. `Err` names the unknown word.
    pub fn parse_list(s: &str) -> Result<Vec<NoticeKind>, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("all") {
            return Ok(NoticeKind::ALL.to_vec());
        }
        if s.is_empty() || s.eq_ignore_ascii_case("none") {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for w in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let k = NoticeKind::parse(w).ok_or_else(|| w.to_string())?;
            if !out.contains(&k) {
                out.push(k);
            }
        }
        Ok(out)
    }
}

impl Notice {
    pub fn kind(&self) -> NoticeKind {
        match self {
            Notice::OrderPaid { .. } => NoticeKind::Paid,
            Notice::Transfer { .. } => NoticeKind::Transfer,
            Notice::CallbackGaveUp { .. } => NoticeKind::Callback,
            Notice::Chain { .. } => NoticeKind::Chain,
            Notice::KeyRotated { .. } | Notice::Lockout { .. } => NoticeKind::Security,
        }
    }
}

/// Escapes text for Telegram's HTML parse mode (`<`, `>`, `&`; `"` for attribute values).
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// Telegram's limit on one message, in characters (UTF-16 units; we count chars and keep a
/// margin for characters outside the BMP).
pub const MAX_MESSAGE_CHARS: usize = 4096;

/// Splits `text` into messages of at most `max` characters: at line breaks where possible,
/// never inside an HTML entity (`&amp;`) or tag, so every part parses on its own as long as
/// tags do not span lines (ours never do).
pub fn split_message(text: &str, max: usize) -> Vec<String> {
    let max = max.max(16);
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut len = 0;
    for line in text.split_inclusive('\n') {
        let line_len = line.chars().count();
        if len + line_len <= max {
            current.push_str(line);
            len += line_len;
            continue;
        }
        if !current.is_empty() {
            parts.push(std::mem::take(&mut current));
            len = 0;
        }
        if line_len <= max {
            current.push_str(line);
            len = line_len;
            continue;
        }
        // One line longer than a message: cut it at safe points.
        let chars: Vec<char> = line.chars().collect();
        let mut start = 0;
        while start < chars.len() {
            let mut end = (start + max).min(chars.len());
            if end < chars.len() {
                // Step back out of an entity or a tag that the cut would break.
                let window: String = chars[start..end].iter().collect();
                let amp = window.rfind('&').filter(|&i| !window[i..].contains(';'));
                let lt = window.rfind('<').filter(|&i| !window[i..].contains('>'));
                if let Some(b) = [amp, lt].into_iter().flatten().min() {
                    let cut = window[..b].chars().count();
                    if cut > 0 {
                        end = start + cut;
                    }
                }
            }
            parts.push(chars[start..end].iter().collect());
            start = end;
        }
    }
    if !current.is_empty() {
        parts.push(current);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_from_merchants() {
        assert_eq!(
            escape_html("<b>x</b> & \"y\""),
            "&lt;b&gt;x&lt;/b&gt; &amp; &quot;y&quot;"
        );
    }

    #[test]
    fn splits_at_lines_and_never_inside_an_entity() {
        let text = format!("{}\n{}", "a".repeat(10), "b".repeat(10));
        assert_eq!(split_message(&text, 16), vec!["aaaaaaaaaa\n", "bbbbbbbbbb"]);
        let long = "x".repeat(14) + "&amp;" + &"y".repeat(20);
        let parts = split_message(&long, 16);
        assert_eq!(parts.concat(), long);
        assert!(parts.iter().all(|p| p.chars().count() <= 16));
        assert!(
            parts
                .iter()
                .all(|p| !p.contains('&') || p.contains("&amp;"))
        );
        let big = "é".repeat(9000);
        let parts = split_message(&big, MAX_MESSAGE_CHARS);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.concat(), big);
    }

    #[test]
    fn notify_list() {
        assert_eq!(NoticeKind::parse_list("all").unwrap().len(), 5);
        assert!(NoticeKind::parse_list("none").unwrap().is_empty());
        assert_eq!(
            NoticeKind::parse_list("paid, chain").unwrap(),
            vec![NoticeKind::Paid, NoticeKind::Chain]
        );
        assert_eq!(NoticeKind::parse_list("paid,bogus"), Err("bogus".into()));
    }
}
