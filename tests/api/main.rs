//! The integration tests, one binary: one module per area (each was its own test binary, with
//! its own link step). `common` is the harness (`TestApp`, the merchant server, independent
//! signatures); `chain_support` the chain doubles (anvil, TRON mock, RPC proxy).
#[macro_use]
mod common;
#[macro_use]
mod chain_support;

mod admin_api;
mod admin_auth;
mod admin_merchant_access;
mod admin_panel;
mod admin_resolve;
mod admin_status;
mod audit;
mod backup;
mod bepusdt_compat;
mod chain_confirming;
mod chain_evm;
mod chain_lease;
mod chain_native;
mod chain_solana;
mod chain_tokens;
mod chain_tron;
mod checkout_browser;
mod cli;
mod connections;
mod deploy;
mod durability;
mod epay_compat;
mod foundation;
mod fuzz_routes;
mod gmpay_compat;
mod hostile_input;
mod import_upstream;
mod keys;
mod merchant_api;
mod money_path;
mod monitoring;
mod queue;
mod ratelimit;
mod redaction;
mod reload;
mod replay;
mod retention;
mod security_check;
mod ssrf;
mod submit_tx_hash;
mod switch_network;
mod telegram;
