//! `epusdt import upstream --from <database url>`: moves an assimon/epusdt or
//! GMWalletApp/epusdt shop (wallets, API keys, order history) into our configured database.
//! Thin: opens our database (migrated, master key checked), calls `service::import` and prints
//! the summary; safe to run again.
use clap::Subcommand;
use epusdt::{
    app,
    audit::{ACTOR_CLI, AuditEvent, actions},
    config::{Config, Secret},
    service::import::{ImportOptions, import_upstream},
};

use super::CliResult;

#[derive(Subcommand)]
pub enum ImportAction {
    /// Import an assimon/epusdt or GMWalletApp/epusdt database (MySQL, PostgreSQL or SQLite).
    Upstream {
        /// The upstream database: mysql://user:pass@host/db, postgres://…, sqlite:///path/epusdt.db
        #[arg(long)]
        from: String,
        /// Upstream's mysql_table_prefix / postgres_table_prefix / sqlite_table_prefix.
        #[arg(long, default_value = "")]
        table_prefix: String,
        /// assimon/epusdt only: its api_auth_token (default: api_auth_token of our config).
        #[arg(long)]
        api_token: Option<String>,
    },
}

pub async fn run(action: ImportAction, config: &Config) -> CliResult {
    let ImportAction::Upstream {
        from,
        table_prefix,
        api_token,
    } = action;
    let (db, keys, audit) = app::open_secured(config).await?;
    let opts = ImportOptions {
        from: from.clone(),
        table_prefix,
        api_token: api_token.filter(|t| !t.is_empty()).map(Secret::new),
    };
    let sum = import_upstream(&db, &keys, config, &opts).await?;
    let source = epusdt::redact::secrets(&from);
    audit
        .record(
            AuditEvent::new(ACTOR_CLI, actions::UPSTREAM_IMPORT, source.clone()).with_details(
                serde_json::json!({
                    "variant": sum.variant,
                    "wallets": sum.wallets.imported,
                    "merchants": sum.merchants.imported,
                    "orders": sum.orders.imported,
                }),
            ),
        )
        .await?;
    println!(
        "imported from {} ({})",
        source,
        sum.variant.unwrap_or("unknown")
    );
    println!("wallets:   {}", sum.wallets);
    println!("merchants: {}", sum.merchants);
    println!("orders:    {}", sum.orders);
    println!(
        "paid orders' transaction hashes recorded (never credited again): {}",
        sum.hashes_recorded
    );
    for n in &sum.notes {
        println!("note: {n}");
    }
    Ok(())
}
