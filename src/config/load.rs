//! Figment layering (defaults < TOML < `.env` < `EPUSDT_*`), extraction with errors that name
//! the key and its source, and unknown-key detection (an error in the TOML file, a warning for
//! the process environment, each with a "did you mean" hint).

use std::path::{Path, PathBuf};

use figment::{
    Figment, Provider,
    providers::{Env, Format, Serialized, Toml},
};

use super::{Config, ConfigError, dotenv::DotEnv};

/// Where to read config from; tests pass everything explicitly instead of touching the process env.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `--config FILE`; when `None`, `epusdt.toml` in the working directory if it exists.
    pub toml_file: Option<PathBuf>,
    /// `.env` file; when `None`, `.env` in the working directory if it exists.
    pub dotenv_file: Option<PathBuf>,
    /// Read `EPUSDT_*` from the process environment.
    pub process_env: bool,
}

impl Config {
    /// Loads the layered config the way the binary does.
    pub fn load(sources: &Sources) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match &sources.toml_file {
            Some(p) => {
                if !p.exists() {
                    return Err(ConfigError::Parse(format!(
                        "config file {} does not exist",
                        p.display()
                    )));
                }
                check_toml_keys(p)?;
                fig = fig.merge(Toml::file_exact(p));
            }
            None => {
                if Path::new("epusdt.toml").exists() {
                    check_toml_keys(Path::new("epusdt.toml"))?;
                    fig = fig.merge(Toml::file_exact("epusdt.toml"));
                }
            }
        }
        let dotenv = sources
            .dotenv_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(".env"));
        let mut ignored = Vec::new();
        if dotenv.exists() {
            let d = DotEnv::read(&dotenv)?;
            ignored = d.ignored.clone();
            fig = fig.merge(d);
        }
        if sources.process_env {
            fig = fig.merge(
                Env::prefixed("EPUSDT_")
                    .split("__")
                    .ignore(&["config"])
                    .filter(|k| !k.as_str().starts_with("test_")),
            );
        }
        let mut cfg = Self::from_figment(fig)?;
        cfg.dotenv_ignored = ignored;
        Ok(cfg)
    }

    /// Extracts and validates; used by [`Config::load`] and by tests that build a figment.
    pub fn from_figment(fig: Figment) -> Result<Self, ConfigError> {
        let cfg: Config = fig.extract().map_err(|e| {
            let msgs: Vec<String> = e.into_iter().map(|e| describe_figment_error(&e)).collect();
            ConfigError::Parse(msgs.join("; "))
        })?;
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Every top-level config key: the fields of [`Config`] as it serializes (the flattened rate
/// limit keys included) — the struct is the one source of truth.
pub fn known_keys() -> Vec<String> {
    match serde_json::to_value(Config::default()) {
        Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// The known key closest to `key` by edit distance, when it is close enough to be a typo.
pub fn did_you_mean<'a>(key: &str, known: &'a [String]) -> Option<&'a str> {
    let (best, d) = known
        .iter()
        .map(|k| (k, edit_distance(key, k)))
        .min_by_key(|(_, d)| *d)?;
    let near = (key.chars().count() / 4).clamp(1, 3);
    (d <= near).then_some(best.as_str())
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn unknown_key_message(key: &str, known: &[String]) -> String {
    match did_you_mean(key, known) {
        Some(k) => format!("`{key}` (did you mean `{k}`?)"),
        None => format!("`{key}`"),
    }
}

/// A top-level key of the TOML file that is no config key stops start-up (a typo would
/// otherwise silently leave the default in force). Syntax errors are left to the extraction,
/// which reports them with the line.
fn check_toml_keys(path: &Path) -> Result<(), ConfigError> {
    let Ok(data) = Toml::file_exact(path).data() else {
        return Ok(());
    };
    let known = known_keys();
    let unknown: Vec<String> = data
        .values()
        .flat_map(|dict| dict.keys())
        .filter(|k| !known.contains(k))
        .map(|k| unknown_key_message(k, &known))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(ConfigError::Parse(format!(
        "unknown key{} {} in {}; remove or rename {} (see `epusdt config check` for every key)",
        if unknown.len() == 1 { "" } else { "s" },
        unknown.join(", "),
        path.display(),
        if unknown.len() == 1 { "it" } else { "them" },
    )))
}

/// `EPUSDT_*` variables among `vars` that name no config key, each with the variable meant when
/// one is close: for warnings, not errors, because the environment is shared with other
/// programs. `EPUSDT_CONFIG` and `EPUSDT_TEST_*` are not config keys but are ours.
pub fn unknown_env_vars(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Vec<(String, Option<String>)> {
    let known = known_keys();
    vars.into_iter()
        .filter_map(|(name, _)| {
            let rest = name.strip_prefix("EPUSDT_")?.to_ascii_lowercase();
            let top = rest.split("__").next().unwrap_or_default().to_string();
            if top == "config" || top.starts_with("test_") || known.contains(&top) {
                return None;
            }
            let hint =
                did_you_mean(&top, &known).map(|k| format!("EPUSDT_{}", k.to_ascii_uppercase()));
            Some((name, hint))
        })
        .collect()
}

fn describe_figment_error(e: &figment::Error) -> String {
    let key = if e.path.is_empty() {
        "<root>".to_string()
    } else {
        e.path.join(".")
    };
    let source = e
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            Some(src) => format!("{} ({src})", m.name),
            None => m.name.to_string(),
        })
        .unwrap_or_else(|| "defaults".into());
    format!("key `{key}` from {source}: {}", e.kind)
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature, not ours
mod tests {
    use super::*;
    use crate::config::{Secret, dotenv::DOTENV_KEYS};
    use figment::Jail;

    #[test]
    fn every_key_stays_known_and_typos_get_a_suggestion() {
        let known = known_keys();
        for k in DOTENV_KEYS.iter().chain(&["networks"]) {
            assert!(
                known.iter().any(|n| n == k),
                "{k} is missing from known_keys()"
            );
        }
        assert_eq!(did_you_mean("http_lisen", &known), Some("http_listen"));
        assert_eq!(did_you_mean("queue_worker", &known), Some("queue_workers"));
        assert_eq!(did_you_mean("completely_unrelated", &known), None);
        let warned = unknown_env_vars([
            ("EPUSDT_CONFIG".to_string(), String::new()),
            ("EPUSDT_TEST_REQUIRE_SERVICES".to_string(), String::new()),
            ("EPUSDT_NETWORKS__TRON__RPC_URLS".to_string(), String::new()),
            ("EPUSDT_RATE_LIMIT_PER_MINUTE".to_string(), String::new()),
            ("EPUSDT_DATA_DIRR".to_string(), String::new()),
            ("HOME".to_string(), String::new()),
        ]);
        assert_eq!(
            warned,
            [(
                "EPUSDT_DATA_DIRR".to_string(),
                Some("EPUSDT_DATA_DIR".to_string())
            )]
        );
    }

    #[test]
    fn defaults_are_the_embedded_setup() {
        let c = Config::from_figment(Figment::from(Serialized::defaults(Config::default())))
            .expect("defaults valid");
        assert_eq!(c.http_listen.to_string(), "127.0.0.1:8000");
        assert!(
            c.effective_database_url()
                .starts_with("sqlite://data/epusdt.db")
        );
        assert_eq!(c.order_expiration_time, 10);
    }

    #[test]
    fn layering_and_bad_value_names_the_key() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "epusdt.toml",
                "http_listen = \"127.0.0.1:7000\"\norder_expiration_time = 5",
            )?;
            jail.create_file(".env", "http_listen=:9000\napi_auth_token=123456\nforced_usdt_rate=7.1\nusdt_rates=USD:1,eur:0.9\nfoo_unknown=1\n")?;
            let src = Sources {
                process_env: true,
                ..Default::default()
            };
            let c = Config::load(&src).expect("valid");
            assert_eq!(c.http_listen.to_string(), "0.0.0.0:9000");
            assert_eq!(c.order_expiration_time, 5);
            assert_eq!(
                c.api_auth_token.as_ref().map(Secret::expose),
                Some("123456")
            );
            assert_eq!(
                c.usdt_rates.get("EUR").map(|d| d.to_string()).as_deref(),
                Some("0.9")
            );
            jail.set_env("EPUSDT_HTTP_LISTEN", "127.0.0.1:9100");
            let c = Config::load(&src).expect("valid");
            assert_eq!(c.http_listen.to_string(), "127.0.0.1:9100");
            jail.set_env("EPUSDT_HTTP_LISTEN", "not-an-address");
            let e = Config::load(&src).expect_err("invalid").to_string();
            assert!(e.contains("http_listen"), "{e}");
            jail.set_env("EPUSDT_HTTP_LISTEN", "127.0.0.1:9100");
            jail.set_env("EPUSDT_ORDER_EXPIRATION_TIME", "0");
            let e = Config::load(&src).expect_err("invalid").to_string();
            assert!(e.contains("order_expiration_time"), "{e}");
            Ok(())
        });
    }
}
