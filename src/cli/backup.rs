//! `epusdt backup --to DIR [--include-key]` and `epusdt restore --from DIR`: thin over
//! `service::backup`, which copies and checks; this file prints, warns about the key and records
//! the audit event. A restore refusal (bad backup, non-empty target, missing key) exits 2.
use std::path::Path;

use epusdt::{
    app,
    audit::{ACTOR_CLI, AuditEvent, AuditLog, actions},
    config::Config,
    service::backup,
};

use super::CliResult;

const KEY_WARNING: &str = "\
WARNING: this backup contains the MASTER KEY (master.key). Anyone who holds the backup can
WARNING: decrypt every merchant secret and sign requests as any merchant. Store it encrypted,
WARNING: apart from ordinary backups, readable only by the operators who may restore it.";

/// `epusdt backup --to DIR`.
pub async fn backup(config: &Config, to: &Path, include_key: bool) -> CliResult {
    let sum = backup::create(config, to, include_key).await?;
    let m = &sum.manifest;
    if m.key_included {
        eprintln!("{KEY_WARNING}");
    }
    record(
        config,
        AuditEvent::new(
            ACTOR_CLI,
            actions::BACKUP_CREATE,
            sum.dir.display().to_string(),
        )
        .with_details(serde_json::json!({
            "backend": m.backend,
            "schema_version": m.schema_version,
            "files": m.files.len(),
            "key_included": m.key_included,
        })),
    )
    .await?;
    println!(
        "backup written to {} ({} database, schema {}, {} file(s), {})",
        sum.dir.display(),
        m.backend,
        m.schema_version,
        m.files.len(),
        m.dump_tool
    );
    if !m.key_included && m.key_fingerprint.is_some() {
        println!(
            "the master key is NOT in this backup: keep a copy of it (fingerprint {}) in a safe place; a restore needs it",
            m.key_fingerprint.as_deref().unwrap_or_default()
        );
    }
    Ok(())
}

/// `epusdt restore --from DIR`.
pub async fn restore(config: &Config, from: &Path) -> CliResult {
    let sum = backup::restore(config, from).await?;
    if let Some(path) = &sum.key_written {
        eprintln!(
            "WARNING: the master key from the backup was written to {} (mode 0600): back it up apart from the data",
            path.display()
        );
    }
    // Migrates a backup made by an older epusdt, and checks that it opens.
    let db = app::open_database(config).await?;
    let (orders, merchants) = backup::counts(&db).await?;
    let audit = AuditLog::open(db.clone(), &config.data_dir.join("audit"))?;
    audit
        .record(
            AuditEvent::new(
                ACTOR_CLI,
                actions::BACKUP_RESTORE,
                from.display().to_string(),
            )
            .with_details(serde_json::json!({
                "backend": sum.manifest.backend,
                "created_at": sum.manifest.created_at,
                "schema_version": sum.manifest.schema_version,
                "orders": orders,
                "merchants": merchants,
            })),
        )
        .await?;
    db.close().await.ok();
    println!(
        "restored the backup of {} ({} database): {orders} order(s), {merchants} merchant(s); start the gateway with `epusdt serve`",
        sum.manifest.created_at, sum.manifest.backend
    );
    Ok(())
}

/// Records `event` in the audit trail without migrating or otherwise changing the database.
async fn record(config: &Config, event: AuditEvent) -> CliResult {
    let db = epusdt::store::connect(&config.effective_database_url()).await?;
    let audit = AuditLog::open(db.clone(), &config.data_dir.join("audit"))?;
    let result = audit.record(event).await;
    db.close().await.ok();
    Ok(result?)
}
