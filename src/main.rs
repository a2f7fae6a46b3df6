//! The `epusdt` binary: a thin CLI over the library. Config → telemetry → App::build → run until
//! SIGTERM/SIGINT, plus operator commands (migrate, config check, merchants, wallets, rates).
//! Each command group lives in its own file of [`cli`]; this file only parses, loads the config
//! and maps the outcome to an exit code.
//!
//! Exit codes: 0 ok, 1 runtime failure, 2 configuration error.
use std::process::ExitCode;

use clap::Parser;
use epusdt::config::{Config, Sources};

mod cli;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let sources = Sources {
        toml_file: cli.config.clone(),
        dotenv_file: cli.env_file.clone(),
        process_env: true,
    };
    let config = match Config::load(&sources) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", epusdt::redact::secrets(&e.to_string()));
            return ExitCode::from(2);
        }
    };
    for (name, hint) in epusdt::config::unknown_env_vars(std::env::vars()) {
        let hint = hint
            .map(|h| format!(" (did you mean `{h}`?)"))
            .unwrap_or_default();
        eprintln!(
            "warning: ignoring environment variable `{name}`: not an epusdt config key{hint}"
        );
    }
    // Every command but `config check` and `healthcheck` opens the data directory (database, queue, audit, keys).
    if !matches!(
        cli.command,
        cli::Command::Config { .. } | cli::Command::Healthcheck { .. }
    ) {
        cli::restrict_file_modes(&config);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli.command, config, sources)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", epusdt::redact::secrets(&e.to_string()));
            // A database that is not ours to migrate is a configuration error, like a bad key.
            if matches!(
                e.downcast_ref::<epusdt::app::AppError>(),
                Some(epusdt::app::AppError::UpstreamSchema { .. })
            ) {
                return ExitCode::from(2);
            }
            // A restore refused before changing anything (bad backup, target in use, no key).
            if e.downcast_ref::<epusdt::service::backup::BackupError>()
                .is_some_and(|e| e.is_refusal())
            {
                return ExitCode::from(2);
            }
            ExitCode::FAILURE
        }
    }
}
