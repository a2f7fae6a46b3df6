//! epusdt — a self-hosted, non-custodial USDT payment gateway.
//!
//! Code map (dependency direction: http, jobs, chain → service → store, domain):
//! - [`config`]: figment layering (defaults < epusdt.toml < .env < `EPUSDT_*`), validation.
//! - [`telemetry`]: JSON logs to stdout and a daily-rotated file.
//! - [`app`]: `App::build(config)` wires database, queue and router; `run_until_stopped`.
//! - [`domain`]: pure types (networks, amounts, addresses, order status graph). Depends on nothing.
//! - [`crypto`]: merchant request/callback signatures, master key, envelope encryption of secrets.
//! - [`store`]: sea-orm entities and database connection.
//! - [`service`]: use cases (merchants, wallets, orders, notify).
//! - [`jobs`]: the durable job queue (apalis) and its handlers.
//! - [`protocol`]: the merchant protocols (v1, GMPay, EPay) behind one trait, and their registry.
//! - [`http`]: axum routers (merchant protocols, checkout, ops).
//! - [`security`]: rate limiting (Redis or in-process) and GMPay replay nonces.
//! - [`redact`]: the one redactor of credentials in URLs and text (config output, logs, errors).
//! - [`audit`]: append-only audit trail (table + daily JSONL file), secrets redacted.
//! - [`chain`]: the `Scanner` trait, EVM (alloy) and TRON (HTTP API) scanners, the cursor loop
//!   with its lease and reorg handling.
pub mod app;
pub mod audit;
pub mod chain;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod http;
pub mod jobs;
pub mod net;
pub mod protocol;
pub mod queue;
pub mod redact;
pub mod secret;
pub mod security;
pub mod service;
pub mod state;
pub mod store;
pub mod telemetry;

pub use app::App;
pub use config::Config;
