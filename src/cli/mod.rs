//! The command line: the clap [`Cli`] and its [`Command`] groups, one file per group, and
//! [`run`], which dispatches a parsed command. Commands use the library only (`epusdt::…`):
//! they open what they need through `epusdt::app`, call one service function, record what an
//! operator changed in the audit trail and print the outcome. No business rule lives here.
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use epusdt::config::{Config, Sources};

mod admin;
mod backup;
mod config;
mod health;
mod import;
mod keys;
mod merchant;
mod order;
mod rate;
mod serve;
mod wallet;

/// What `run` returns: any failure, printed by `main` (redacted) with exit code 1.
pub type CliResult = Result<(), Box<dyn std::error::Error>>;

/// Failures the command line finds itself (the library's errors pass through as they are).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot open log directory: {0}")]
    LogDir(std::io::Error),
    #[error("cannot install the SIGHUP handler: {0}")]
    Signal(std::io::Error),
    #[error("no merchant with pid {0}")]
    NoMerchant(i64),
    #[error("no order with trade_id {0}")]
    NoOrder(String),
    #[error("`{0}` is not a currency code like CNY")]
    Currency(String),
    #[error("`{0}` must be a positive decimal, e.g. 7.2")]
    Rate(String),
    /// A native coin price that cannot be set (the message says why and what to do).
    #[error("{0}")]
    Invalid(String),
    #[error("the new key is the key already in use")]
    SameKey,
    #[error("unhealthy: {0}")]
    Unhealthy(String),
}

#[derive(Parser)]
#[command(name = "epusdt", version, about = "Self-hosted USDT payment gateway")]
pub struct Cli {
    /// TOML config file (default: ./epusdt.toml if present).
    #[arg(long, global = true, env = "EPUSDT_CONFIG")]
    pub config: Option<PathBuf>,
    /// .env file with upstream key names (default: ./.env if present).
    #[arg(long, global = true)]
    pub env_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the gateway (HTTP API, checkout, job workers).
    Serve,
    /// Upstream-compatible alias: `epusdt http start`.
    Http {
        #[command(subcommand)]
        action: serve::HttpAction,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        action: config::ConfigAction,
    },
    /// Manage merchants (pid + secret for GMPay/EPay).
    Merchant {
        #[command(subcommand)]
        action: merchant::MerchantAction,
    },
    /// Manage receive wallets (watch-only addresses).
    Wallet {
        #[command(subcommand)]
        action: wallet::WalletAction,
    },
    /// Inspect orders and resend callbacks.
    Order {
        #[command(subcommand)]
        action: order::OrderAction,
    },
    /// Master key management.
    Keys {
        #[command(subcommand)]
        action: keys::KeysAction,
    },
    /// Admin-set fiat → USDT rates (fiat units per 1 USDT) and native coin prices (USDT per coin).
    Rate {
        #[command(subcommand)]
        action: rate::RateAction,
    },
    /// Admin accounts of the admin API (no default credentials: add the first owner here).
    Admin {
        #[command(subcommand)]
        action: admin::AdminAction,
    },
    /// Bring a shop over from another epusdt (`import upstream --from <database url>`).
    Import {
        #[command(subcommand)]
        action: import::ImportAction,
    },
    /// Copy the database, audit files and (with --include-key) the master key into a new
    /// directory while the gateway keeps serving.
    Backup {
        /// A new or empty directory for the backup.
        #[arg(long)]
        to: PathBuf,
        /// Also copy the master key: whoever holds the backup can then read every merchant
        /// secret. Without it, keep the key safe apart; a restore needs it.
        #[arg(long)]
        include_key: bool,
    },
    /// Restore a backup into an empty data directory and an empty database (exit 2 if not).
    Restore {
        /// The backup directory (`epusdt backup --to`).
        #[arg(long)]
        from: PathBuf,
    },
    /// Ask this instance's GET /health; exit 0 only when it says "ok" (container HEALTHCHECK).
    Healthcheck {
        /// Health URL (default: http://<http_listen>/health, 0.0.0.0 read as 127.0.0.1).
        #[arg(long)]
        url: Option<String>,
    },
}

/// Runs one parsed command to completion. `sources` are where `config` came from (`serve`
/// reads them again on SIGHUP).
pub async fn run(command: Command, config: Config, sources: Sources) -> CliResult {
    epusdt::net::install_crypto_provider();
    match command {
        Command::Serve
        | Command::Http {
            action: serve::HttpAction::Start,
        } => serve::serve(config, sources).await,
        Command::Migrate => serve::migrate(&config).await,
        Command::Config { action } => config::run(action, &config),
        Command::Merchant { action } => merchant::run(action, &config).await,
        Command::Wallet { action } => wallet::run(action, &config).await,
        Command::Order { action } => order::run(action, &config).await,
        Command::Keys { action } => keys::run(action, &config).await,
        Command::Rate { action } => rate::run(action, &config).await,
        Command::Admin { action } => admin::run(action, &config).await,
        Command::Import { action } => import::run(action, &config).await,
        Command::Backup { to, include_key } => backup::backup(&config, &to, include_key).await,
        Command::Restore { from } => backup::restore(&config, &from).await,
        Command::Healthcheck { url } => health::check(&config, url).await,
    }
}

/// Files and directories this process creates are private to its user (umask 0077: the database,
/// its -wal/-shm, logs, the job queue, the audit trail), and an existing data directory made
/// before is closed to others (0700). Failing to tighten an existing directory (owned by someone
/// else, a read-only mount) is a warning, not a reason to refuse to start.
pub fn restrict_file_modes(config: &Config) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["epusdt", "--config", "x.toml", "wallet", "enable", "7"])
            .expect("parses");
        assert_eq!(cli.config.as_deref(), Some(std::path::Path::new("x.toml")));
        assert!(matches!(
            cli.command,
            Command::Wallet {
                action: wallet::WalletAction::Enable { .. }
            }
        ));
    }

    #[test]
    fn messages_stay_what_operators_know() {
        assert_eq!(
            CliError::NoMerchant(1001).to_string(),
            "no merchant with pid 1001"
        );
        assert_eq!(
            CliError::Currency("US".into()).to_string(),
            "`US` is not a currency code like CNY"
        );
        assert_eq!(
            CliError::Rate("-1".into()).to_string(),
            "`-1` must be a positive decimal, e.g. 7.2"
        );
    }
}
