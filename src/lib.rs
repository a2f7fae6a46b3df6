//! epusdt — a self-hosted, non-custodial USDT payment gateway.
//!
//! Layers, lowest first (a module uses only lower layers; `tests/architecture.rs` fails on a
//! back edge; wiki/ARCHITECTURE.md has the map and "where to add X"):
//! 0. [`secret`], [`redact`], [`domain`] — leaves: redacting types, pure domain model.
//! 1. [`config`] — figment layering and validation.
//! 2. [`crypto`], [`store`], [`telemetry`] — signatures and keys, sea-orm, logs.
//! 3. [`audit`], [`queue`], [`protocol`] — audit trail, the durable job queue, merchant protocols.
//! 4. [`security`] — rate limits, replay nonces, SSRF policy (no HTTP types).
//! 5. [`net`] — outbound clients and the TLS provider.
//! 6. [`service`] — use cases (orders, notify, merchants, wallets, rates).
//! 7. [`chain`] — chain watchers.
//! 8. [`state`] — `AppState`.
//! 9. [`http`], [`jobs`] — axum routers and middleware, the job handler.
//! 10. [`app`] — wires and spawns everything. The binary's `cli` sits on top.
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
pub mod telegram;
pub mod telemetry;

pub use app::App;
pub use config::Config;
