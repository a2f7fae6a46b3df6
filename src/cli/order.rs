//! `epusdt order show|resend`: an order with its callback attempts; a fresh callback delivery.
use clap::Subcommand;
use epusdt::{app, config::Config, service};

use super::{CliError, CliResult};

#[derive(Subcommand)]
pub enum OrderAction {
    /// An order with its flags and every callback attempt.
    Show { trade_id: String },
    /// Queue a fresh callback delivery for a paid order.
    Resend { trade_id: String },
}

pub async fn run(action: OrderAction, config: &Config) -> CliResult {
    let (db, _keys, _audit) = app::open_secured(config).await?;
    match action {
        OrderAction::Show { trade_id } => {
            let o = service::order::find_by_trade_id(&db, &trade_id)
                .await?
                .ok_or_else(|| CliError::NoOrder(trade_id.clone()))?;
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
            let queue = app::open_queue(config, &db).await?;
            service::notify::resend(&db, &queue, &trade_id).await?;
            println!("callback queued for {trade_id}");
        }
    }
    Ok(())
}
