//! Wiring of the chain watchers: the start-up check of every configured network and one
//! [`Watcher`] task per network, from the dependencies the application hands over ([`Deps`]).
//!
//! Must never: reach up for the application state (`state`, `app`): everything a watcher needs
//! comes in through [`Deps`].
use std::{path::PathBuf, time::Duration};

use sea_orm::DatabaseConnection;
use tokio::{sync::watch, task::JoinHandle};

use super::{
    ChainError, InstanceId, Registry, ScanError, Watcher, evm,
    solana::{self, SolanaSettings},
    tron,
};
use crate::{
    audit::AuditLog, config::Config, domain::network::NetworkKind, queue::JobQueue,
    service::order::OrderRules,
};

/// What the chain watchers need from the application, built by `app` from `AppState`.
#[derive(Clone)]
pub struct Deps {
    pub db: DatabaseConnection,
    /// Where callbacks of paid orders are queued.
    pub queue: JobQueue,
    /// Where reorged transfers are recorded for review.
    pub audit: AuditLog,
    /// The `/health` view every watcher updates.
    pub registry: Registry,
    /// Order matching rules (clock tolerance) from the configuration.
    pub rules: OrderRules,
    /// Where the instance id file lives (`data_dir`).
    pub data_dir: PathBuf,
}

/// Start-up checks of every configured network: settings resolve, each token contract reports
/// the configured decimals (and each EVM RPC the configured chain id), and the TRON API key is
/// accepted. A mismatch is an error (refuse to start); an unreachable RPC is only logged — the
/// watcher checks again before its first scan and scans nothing until the check passes.
pub async fn check_startup(config: &Config, registry: &Registry) -> Result<(), ChainError> {
    let chains = config.chains()?;
    let mut checks = Vec::new();
    for settings in &chains {
        registry.register(settings);
        let check: futures::future::BoxFuture<'static, Result<(), ScanError>> = match settings.kind
        {
            NetworkKind::Evm => {
                let scanner = evm::EvmScanner::new(settings)?;
                Box::pin(async move { scanner.check_contract().await })
            }
            NetworkKind::Tron => {
                let scanner = tron::TronScanner::new(settings)?;
                Box::pin(async move { scanner.check_contract().await })
            }
            NetworkKind::Solana => {
                let scanner = solana::SolanaScanner::new(&SolanaSettings::from_chain(settings))?;
                Box::pin(async move { scanner.check_mints().await })
            }
        };
        let limit = settings.request_timeout.min(Duration::from_secs(10));
        let network = settings.network;
        checks.push(async move {
            match tokio::time::timeout(limit, check).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(ScanError::Fatal(msg))) => Err(ChainError::Mismatch(msg)),
                Ok(Err(e)) => {
                    tracing::warn!(%network, error = %e, "could not verify the token contract at start-up; the watcher checks again before scanning");
                    Ok(())
                }
                Err(_) => {
                    tracing::warn!(%network, "token contract check timed out at start-up; the watcher checks again before scanning");
                    Ok(())
                }
            }
        });
    }
    // All networks at once, so a slow RPC delays start-up by one timeout at most.
    futures::future::join_all(checks)
        .await
        .into_iter()
        .collect::<Result<Vec<()>, ChainError>>()
        .map(|_| ())
}

/// Spawns one watcher per network of `config`; each stops when `stop` turns true.
pub fn spawn_all(config: &Config, deps: &Deps, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let chains = match config.chains() {
        Ok(c) => c,
        Err(e) => {
            // App::build validated them already; this cannot happen short of a bug.
            tracing::error!(error = %e, "chain watchers not started");
            return Vec::new();
        }
    };
    if chains.is_empty() {
        return Vec::new();
    }
    // One identity for every watcher of this process (the id file is locked while they run).
    let instance = InstanceId::load(&deps.data_dir);
    let mut handles = Vec::new();
    for settings in chains {
        let network = settings.network;
        let stop = stop.clone();
        let handle = match settings.kind {
            NetworkKind::Solana => {
                match solana::SolanaScanner::new(&SolanaSettings::from_chain(&settings)) {
                    Ok(scanner) => {
                        let w = Watcher::new(scanner, settings, deps).with_instance(&instance);
                        tokio::spawn(w.run(stop))
                    }
                    Err(e) => {
                        tracing::error!(%network, error = %e, "chain watcher not started");
                        continue;
                    }
                }
            }
            NetworkKind::Evm => match evm::EvmScanner::new(&settings) {
                Ok(scanner) => {
                    let w = Watcher::new(scanner, settings, deps).with_instance(&instance);
                    tokio::spawn(w.run(stop))
                }
                Err(e) => {
                    tracing::error!(%network, error = %e, "chain watcher not started");
                    continue;
                }
            },
            NetworkKind::Tron => match tron::TronScanner::new(&settings) {
                Ok(scanner) => {
                    let w = Watcher::new(scanner, settings, deps).with_instance(&instance);
                    tokio::spawn(w.run(stop))
                }
                Err(e) => {
                    tracing::error!(%network, error = %e, "chain watcher not started");
                    continue;
                }
            },
        };
        handles.push(handle);
    }
    handles
}
