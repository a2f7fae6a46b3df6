//! The `epusdt` binary: a thin CLI over the library. Config → telemetry → App::build → run until
//! SIGTERM/SIGINT, plus operator commands (migrate, config check, merchants, wallets, rates).
//!
//! Exit codes: 0 ok, 1 runtime failure, 2 configuration error.
use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use epusdt::{
    app::{self, App},
    audit::{ACTOR_CLI, AuditEvent, AuditLog, actions},
    config::{Config, Sources},
    crypto::{
        keys::KeyStore,
        master_key::{self, MasterKey},
    },
    service, telemetry,
};
use rust_decimal::Decimal;

#[derive(Parser)]
#[command(name = "epusdt", version, about = "Self-hosted USDT payment gateway")]
struct Cli {
    /// TOML config file (default: ./epusdt.toml if present).
    #[arg(long, global = true, env = "EPUSDT_CONFIG")]
    config: Option<PathBuf>,
    /// .env file with upstream key names (default: ./.env if present).
    #[arg(long, global = true)]
    env_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (HTTP API, checkout, job workers).
    Serve,
    /// Upstream-compatible alias: `epusdt http start`.
    Http {
        #[command(subcommand)]
        action: HttpAction,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Manage merchants (pid + secret for GMPay/EPay).
    Merchant {
        #[command(subcommand)]
        action: MerchantAction,
    },
    /// Manage receive wallets (watch-only addresses).
    Wallet {
        #[command(subcommand)]
        action: WalletAction,
    },
    /// Inspect orders and resend callbacks.
    Order {
        #[command(subcommand)]
        action: OrderAction,
    },
    /// Master key management.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Admin-set fiat → USDT rates (fiat units per 1 USDT).
    Rate {
        #[command(subcommand)]
        action: RateAction,
    },
}

#[derive(Subcommand)]
enum HttpAction {
    Start,
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Validate the effective config and print it with secrets redacted.
    Check,
}

#[derive(Subcommand)]
enum MerchantAction {
    /// Add a merchant; prints its pid and secret once.
    Add {
        #[arg(long)]
        name: String,
        #[arg(long)]
        pid: Option<i64>,
        /// Signing secret (≥ 16 chars); generated when omitted.
        #[arg(long)]
        secret: Option<String>,
        /// Require timestamp + nonce on GMPay requests.
        #[arg(long)]
        strict: bool,
    },
    List,
}

#[derive(Subcommand)]
enum WalletAction {
    Add {
        /// tron, ethereum, bsc or polygon (aliases like trc20, bep20 accepted).
        #[arg(long)]
        network: String,
        #[arg(long)]
        address: String,
        /// Only this merchant (pid) receives on it; shared by all when omitted.
        #[arg(long)]
        merchant: Option<i64>,
        #[arg(long, default_value = "")]
        label: String,
    },
    List,
    /// Disable by id or address.
    Disable {
        wallet: String,
    },
    /// Enable by id or address.
    Enable {
        wallet: String,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Re-encrypt every stored secret under a new master key (generated unless given). With
    /// file-based keys the old key is kept as `<key file>.previous`, so running gateways keep
    /// reading; with `EPUSDT_MASTER_KEY` the new key is printed once.
    Rotate {
        /// The new key (64 hex digits or base64 of 32 bytes); generated when omitted.
        #[arg(long)]
        new_key: Option<String>,
    },
    /// Show the key id and fingerprint in use (never the key).
    Show,
}

#[derive(Subcommand)]
enum OrderAction {
    /// An order with its flags and every callback attempt.
    Show { trade_id: String },
    /// Queue a fresh callback delivery for a paid order.
    Resend { trade_id: String },
}

#[derive(Subcommand)]
enum RateAction {
    /// e.g. `epusdt rate set CNY 7.2`
    Set { currency: String, rate: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let sources = Sources {
        toml_file: cli.config.clone(),
        dotenv_file: cli.env_file.clone(),
        process_env: true,
    };
    let config = match Config::load(&sources) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", epusdt::redact::secrets(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    for (name, hint) in epusdt::config::unknown_env_vars(std::env::vars()) {
        let hint = hint
            .map(|h| format!(" (did you mean `{h}`?)"))
            .unwrap_or_default();
        eprintln!(
            "warning: ignoring environment variable `{name}`: not an epusdt config key{hint}"
        );
    }
    // Every command but `config check` opens the data directory (database, queue, audit, keys).
    if !matches!(cli.command, Command::Config { .. }) {
        restrict_file_modes(&config);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", epusdt::redact::secrets(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> Result<(), Box<dyn std::error::Error>> {
    epusdt::net::install_crypto_provider();
    match command {
        Command::Serve
        | Command::Http {
            action: HttpAction::Start,
        } => {
            let _guard = telemetry::init(&config.log_level, &config.effective_log_dir())
                .map_err(|e| format!("cannot open log directory: {e}"))?;
            if config.tg_bot_token.is_some() {
                tracing::warn!(
                    "tg_bot_token is set but the Telegram bot is not part of this release"
                );
            }
            let app = App::build(config).await?;
            app.run_until_stopped(app::shutdown_signal()).await?;
        }
        Command::Migrate => {
            app::open_database(&config).await?;
            println!(
                "migrations applied to {}",
                redact(&config.effective_database_url())
            );
        }
        Command::Config {
            action: ConfigAction::Check,
        } => {
            println!("{}", toml_like(&config)?);
            println!(
                "# config ok; database: {}",
                redact(&config.effective_database_url())
            );
        }
        Command::Merchant { action } => {
            let (db, keys, audit) = app::open_secured(&config).await?;
            match action {
                MerchantAction::Add {
                    name,
                    pid,
                    secret,
                    strict,
                } => {
                    let m = service::merchant::add(&db, &keys, &name, pid, secret, strict).await?;
                    audit
                        .record(
                            AuditEvent::new(ACTOR_CLI, actions::MERCHANT_ADD, format!("merchant:{}", m.pid))
                                .with_details(serde_json::json!({ "name": m.name, "strict_replay": m.strict_replay })),
                        )
                        .await?;
                    println!("merchant added: pid={} name={}", m.pid, m.name);
                    println!(
                        "secret (shown once, store it safely): {}",
                        m.secret.expose()
                    );
                }
                MerchantAction::List => {
                    println!("{:<8} {:<8} {:<8} name", "pid", "enabled", "strict");
                    for m in service::merchant::list(&db).await? {
                        println!(
                            "{:<8} {:<8} {:<8} {}",
                            m.pid, m.enabled, m.strict_replay, m.name
                        );
                    }
                }
            }
        }
        Command::Wallet { action } => {
            let (db, keys, audit) = app::open_secured(&config).await?;
            match action {
                WalletAction::Add {
                    network,
                    address,
                    merchant,
                    label,
                } => {
                    let merchant_id = match merchant {
                        Some(pid) => Some(
                            service::merchant::find_by_pid(&db, &keys, pid)
                                .await?
                                .ok_or_else(|| format!("no merchant with pid {pid}"))?
                                .id,
                        ),
                        None => None,
                    };
                    let w =
                        service::wallet::add(&db, &network, &address, merchant_id, &label).await?;
                    audit
                        .record(
                            AuditEvent::new(ACTOR_CLI, actions::WALLET_ADD, format!("{}:{}", w.network, w.address))
                                .with_details(serde_json::json!({ "id": w.id, "merchant_id": w.merchant_id, "label": w.label })),
                        )
                        .await?;
                    println!("wallet added: id={} {} {}", w.id, w.network, w.address);
                }
                WalletAction::List => {
                    println!(
                        "{:<5} {:<9} {:<8} {:<9} address",
                        "id", "network", "enabled", "merchant"
                    );
                    for w in service::wallet::list(&db).await? {
                        let owner = w
                            .merchant_id
                            .map(|m| m.to_string())
                            .unwrap_or_else(|| "all".into());
                        println!(
                            "{:<5} {:<9} {:<8} {:<9} {}",
                            w.id, w.network, w.enabled, owner, w.address
                        );
                    }
                }
                WalletAction::Disable { wallet } => {
                    let n = service::wallet::set_enabled(&db, &wallet, false).await?;
                    audit
                        .record(AuditEvent::new(
                            ACTOR_CLI,
                            actions::WALLET_DISABLE,
                            wallet.clone(),
                        ))
                        .await?;
                    println!("{n} wallet(s) disabled");
                }
                WalletAction::Enable { wallet } => {
                    let n = service::wallet::set_enabled(&db, &wallet, true).await?;
                    audit
                        .record(AuditEvent::new(ACTOR_CLI, "wallet.enable", wallet.clone()))
                        .await?;
                    println!("{n} wallet(s) enabled");
                }
            }
        }
        Command::Keys { action } => {
            let (db, keys, audit) = app::open_secured(&config).await?;
            match action {
                KeysAction::Show => {
                    println!(
                        "key_id={} fingerprint={}",
                        keys.current_key_id(),
                        keys.fingerprint()
                    );
                }
                KeysAction::Rotate { new_key } => {
                    rotate_keys(&config, &db, &keys, &audit, new_key).await?
                }
            }
        }
        Command::Order { action } => {
            let (db, _keys, _audit) = app::open_secured(&config).await?;
            match action {
                OrderAction::Show { trade_id } => {
                    let o = service::order::find_by_trade_id(&db, &trade_id)
                        .await?
                        .ok_or_else(|| format!("no order with trade_id {trade_id}"))?;
                    println!(
                        "trade_id={} order_id={} status={} network={} address={} amount={} {} actual_amount={} USDT flags={} tx={} callback_state={}",
                        o.trade_id,
                        o.order_id,
                        o.status.code(),
                        o.network,
                        o.address,
                        o.amount,
                        o.currency,
                        o.actual_amount,
                        o.flags,
                        o.block_transaction_id.as_deref().unwrap_or("-"),
                        o.callback_state
                    );
                    for a in service::notify::attempts(&db, o.id.get()).await? {
                        println!(
                            "  attempt {} at {} status={} latency={}ms success={} {}",
                            a.attempt,
                            a.attempted_at,
                            a.http_status
                                .map(|s| s.to_string())
                                .unwrap_or_else(|| "-".into()),
                            a.latency_ms,
                            a.success,
                            a.error
                        );
                    }
                }
                OrderAction::Resend { trade_id } => {
                    let queue = app::open_queue(&config, &db).await?;
                    service::notify::resend(&db, &queue, &trade_id).await?;
                    println!("callback queued for {trade_id}");
                }
            }
        }
        Command::Rate {
            action: RateAction::Set { currency, rate },
        } => {
            let currency = currency.trim().to_ascii_uppercase();
            if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_alphabetic()) {
                return Err(format!("`{currency}` is not a currency code like CNY").into());
            }
            let rate = epusdt::domain::amount::parse_plain(rate.trim(), false)
                .filter(|r| *r > Decimal::ZERO)
                .ok_or_else(|| format!("`{rate}` must be a positive decimal, e.g. 7.2"))?;
            let db = app::open_database(&config).await?;
            service::rate::set_rate(&db, &currency, rate).await?;
            println!("rate set: 1 USDT = {rate} {currency}");
        }
    }
    Ok(())
}

/// `epusdt keys rotate`: seals every secret under a new key in one transaction. The new key is
/// on disk (or printed) before the transaction commits, so the database is never sealed with a
/// key nobody has.
async fn rotate_keys(
    config: &Config,
    db: &sea_orm::DatabaseConnection,
    keys: &KeyStore,
    audit: &AuditLog,
    new_key: Option<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    let new = match new_key {
        Some(k) => MasterKey::parse(&k)?,
        None => MasterKey::generate(),
    };
    let old_id = keys.current_key_id();
    if new.key_id() == old_id {
        return Err("the new key is the key already in use".into());
    }
    let next = KeyStore::from_keyring(keys.rotated(new.clone()));
    let txn = epusdt::store::begin_write(db).await?;
    let rows = service::merchant::reseal_all(&txn, &next).await?;
    service::merchant::set_fingerprint(&txn, &new.fingerprint()).await?;
    match KeyStore::file_paths(config) {
        Some((current, previous)) => {
            let staged = current.with_extension(format!("new-{}", std::process::id()));
            master_key::write_key_file(&staged, &new)?;
            std::fs::rename(&current, &previous)?;
            std::fs::rename(&staged, &current)?;
            txn.commit().await?;
            println!(
                "rotated: {rows} secret(s) re-encrypted; new key {} in {} (old key kept in {} until every instance has restarted — then delete it)",
                new.key_id(),
                current.display(),
                previous.display()
            );
        }
        None => {
            txn.commit().await?;
            println!(
                "rotated: {rows} secret(s) re-encrypted under key {}",
                new.key_id()
            );
            println!(
                "set EPUSDT_MASTER_KEY to the new key below and EPUSDT_MASTER_KEY_PREVIOUS to the old one, restart every instance, then remove EPUSDT_MASTER_KEY_PREVIOUS:"
            );
            println!("{}", new.to_hex().expose());
        }
    }
    audit
        .record(
            AuditEvent::new(ACTOR_CLI, actions::KEY_ROTATE, "master_key").with_details(
                serde_json::json!({ "old_key_id": old_id, "new_key_id": new.key_id(), "rows": rows }),
            ),
        )
        .await?;
    Ok(())
}

/// Files and directories this process creates are private to its user (umask 0077: the database,
/// its -wal/-shm, logs, the job queue, the audit trail), and an existing data directory made
/// before is closed to others (0700). Failing to tighten an existing directory (owned by someone
/// else, a read-only mount) is a warning, not a reason to refuse to start.
fn restrict_file_modes(config: &Config) {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: umask only sets the process's file mode creation mask; it cannot fail.
    unsafe { libc::umask(0o077) };
    for dir in [config.data_dir.clone(), config.effective_log_dir()] {
        let Ok(meta) = std::fs::metadata(&dir) else {
            continue;
        };
        if meta.is_dir()
            && meta.permissions().mode() & 0o077 != 0
            && let Err(e) = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        {
            eprintln!(
                "warning: cannot make {} private (mode 0700): {e}",
                dir.display()
            );
        }
    }
}

fn redact(url: &str) -> String {
    epusdt::redact::secrets(url)
}

/// The effective config as `key = value` lines (secrets already redacted by `Secret`).
fn toml_like(config: &Config) -> Result<String, serde_json::Error> {
    let v = serde_json::to_value(config)?;
    let mut out = String::from("# effective configuration (secrets redacted)\n");
    if let serde_json::Value::Object(map) = v {
        for (k, v) in map {
            out.push_str(&format!("{k} = {v}\n"));
        }
    }
    Ok(out)
}
