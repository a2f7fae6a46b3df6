//! `epusdt keys show|rotate`: the master key in use (id and fingerprint, never the key) and its
//! rotation, which re-seals every stored secret under a new key.
use clap::Subcommand;
use epusdt::{
    app,
    audit::{ACTOR_CLI, AuditEvent, AuditLog, actions},
    config::Config,
    crypto::{
        keys::KeyStore,
        master_key::{self, MasterKey},
    },
    service,
};

use super::{CliError, CliResult};

#[derive(Subcommand)]
pub enum KeysAction {
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

pub async fn run(action: KeysAction, config: &Config) -> CliResult {
    let (db, keys, audit) = app::open_secured(config).await?;
    match action {
        KeysAction::Show => {
            println!(
                "key_id={} fingerprint={}",
                keys.current_key_id(),
                keys.fingerprint()
            );
        }
        KeysAction::Rotate { new_key } => rotate_keys(config, &db, &keys, &audit, new_key).await?,
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
) -> CliResult {
    let new = match new_key {
        Some(k) => MasterKey::parse(&k)?,
        None => MasterKey::generate(),
    };
    let old_id = keys.current_key_id();
    if new.key_id() == old_id {
        return Err(CliError::SameKey.into());
    }
    let next = KeyStore::from_keyring(keys.rotated(new.clone()));
    let txn = epusdt::store::begin_write(db).await?;
    let rows = service::merchant::reseal_all(&txn, &next).await?
        + service::admin::reseal_all(&txn, &next).await?;
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
    // The bot's `security` notice, through the shared queue (a running gateway sends it).
    if config.tg_bot_token.is_some() {
        let notice = epusdt::domain::notice::Notice::KeyRotated {
            key_id: new.key_id().to_string(),
        };
        let sent = match app::open_queue(config, db).await {
            Ok(q) => service::telegram::raise(&q, notice)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = sent {
            eprintln!("epusdt: the key rotation notice could not be queued: {e}");
        }
    }
    Ok(())
}
