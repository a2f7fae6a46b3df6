//! `epusdt merchant add|list|set-sign-mode`: merchants (pid + signing secret for GMPay/EPay)
//! and how their GMPay requests are verified.
use clap::Subcommand;
use epusdt::{
    app,
    audit::{ACTOR_CLI, AuditEvent, actions},
    config::Config,
    crypto::sign::SignMode,
    service,
};

use super::{CliError, CliResult};

#[derive(Subcommand)]
pub enum MerchantAction {
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
        /// How GMPay requests are verified: dual (HMAC-SHA256 or MD5, the default), md5 or
        /// hmac_sha256.
        #[arg(long, value_name = "MODE", default_value = "dual", value_parser = parse_mode)]
        sign_mode: SignMode,
    },
    List,
    /// Change how a merchant's GMPay requests are verified: dual, md5 or hmac_sha256.
    SetSignMode {
        pid: i64,
        #[arg(value_parser = parse_mode)]
        mode: SignMode,
    },
}

fn parse_mode(s: &str) -> Result<SignMode, String> {
    SignMode::parse(s)
        .ok_or_else(|| format!("unknown sign mode `{s}`; use one of {}", SignMode::NAMES))
}

pub async fn run(action: MerchantAction, config: &Config) -> CliResult {
    let (db, keys, audit) = app::open_secured(config).await?;
    match action {
        MerchantAction::Add {
            name,
            pid,
            secret,
            strict,
            sign_mode,
        } => {
            let m =
                service::merchant::add_with_mode(&db, &keys, &name, pid, secret, strict, sign_mode)
                    .await?;
            audit
                .record(
                    AuditEvent::new(
                        ACTOR_CLI,
                        actions::MERCHANT_ADD,
                        format!("merchant:{}", m.pid),
                    )
                    .with_details(serde_json::json!({
                        "name": m.name,
                        "strict_replay": m.strict_replay,
                        "sign_mode": m.sign_mode.as_str(),
                    })),
                )
                .await?;
            println!(
                "merchant added: pid={} name={} sign_mode={}",
                m.pid,
                m.name,
                m.sign_mode.as_str()
            );
            println!(
                "secret (shown once, store it safely): {}",
                m.secret.expose()
            );
        }
        MerchantAction::List => {
            println!(
                "{:<8} {:<8} {:<8} {:<12} name",
                "pid", "enabled", "strict", "sign_mode"
            );
            for m in service::merchant::list(&db).await? {
                println!(
                    "{:<8} {:<8} {:<8} {:<12} {}",
                    m.pid, m.enabled, m.strict_replay, m.sign_mode, m.name
                );
            }
        }
        MerchantAction::SetSignMode { pid, mode } => {
            let previous = service::merchant::set_sign_mode(&db, pid, mode)
                .await?
                .ok_or(CliError::NoMerchant(pid))?;
            audit
                .record(
                    AuditEvent::new(
                        ACTOR_CLI,
                        actions::MERCHANT_SIGN_MODE,
                        format!("merchant:{pid}"),
                    )
                    .with_details(serde_json::json!({
                        "from": previous,
                        "to": mode.as_str(),
                    })),
                )
                .await?;
            println!("merchant {pid}: sign_mode {previous} -> {}", mode.as_str());
        }
    }
    Ok(())
}
