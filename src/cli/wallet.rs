//! `epusdt wallet add|list|disable|enable`: receive wallets (watch-only addresses).
use clap::Subcommand;
use epusdt::{
    app,
    audit::{ACTOR_CLI, AuditEvent, AuditLog, actions},
    config::Config,
    service,
};

use super::{CliError, CliResult};

#[derive(Subcommand)]
pub enum WalletAction {
    Add {
        /// tron, ethereum, bsc, polygon or a configured network (aliases like trc20, bep20
        /// accepted). The wallet receives every token of its network.
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

pub async fn run(action: WalletAction, config: &Config) -> CliResult {
    let (db, keys, audit) = app::open_secured(config).await?;
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
                        .ok_or(CliError::NoMerchant(pid))?
                        .id,
                ),
                None => None,
            };
            let w = service::wallet::add(
                &db,
                config.registry(),
                &network,
                &address,
                merchant_id,
                &label,
            )
            .await?;
            audit
                .record(
                    AuditEvent::new(
                        ACTOR_CLI,
                        actions::WALLET_ADD,
                        format!("{}:{}", w.network, w.address),
                    )
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
        WalletAction::Disable { wallet } => set_enabled(&db, &audit, &wallet, false).await?,
        WalletAction::Enable { wallet } => set_enabled(&db, &audit, &wallet, true).await?,
    }
    Ok(())
}

/// `wallet enable|disable`: by id or address; the audit trail records what was asked for.
async fn set_enabled(
    db: &sea_orm::DatabaseConnection,
    audit: &AuditLog,
    wallet: &str,
    enabled: bool,
) -> CliResult {
    let n = service::wallet::set_enabled(db, wallet, enabled).await?;
    let (action, done) = if enabled {
        (actions::WALLET_ENABLE, "enabled")
    } else {
        (actions::WALLET_DISABLE, "disabled")
    };
    audit
        .record(AuditEvent::new(ACTOR_CLI, action, wallet.to_string()))
        .await?;
    println!("{n} wallet(s) {done}");
    Ok(())
}
