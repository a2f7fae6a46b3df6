//! `epusdt merchant add|list`: merchants (pid + signing secret for GMPay/EPay).
use clap::Subcommand;
use epusdt::{
    app,
    audit::{ACTOR_CLI, AuditEvent, actions},
    config::Config,
    service,
};

use super::CliResult;

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
    },
    List,
}

pub async fn run(action: MerchantAction, config: &Config) -> CliResult {
    let (db, keys, audit) = app::open_secured(config).await?;
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
                    AuditEvent::new(
                        ACTOR_CLI,
                        actions::MERCHANT_ADD,
                        format!("merchant:{}", m.pid),
                    )
                    .with_details(
                        serde_json::json!({ "name": m.name, "strict_replay": m.strict_replay }),
                    ),
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
    Ok(())
}
