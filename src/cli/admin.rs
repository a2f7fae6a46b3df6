//! `epusdt admin add|list|disable|enable|role|reset-password|reset-totp|link-telegram|
//! unlink-telegram`: admin accounts for the admin API and the Telegram bot. There are no default credentials: the first owner is made here. A generated
//! password is printed once; `--password-stdin` reads one line instead (never an argument,
//! which would land in the shell history and `ps`).
use std::io::BufRead;

use clap::Subcommand;
use epusdt::{
    app,
    audit::{ACTOR_CLI, AuditEvent, actions},
    config::Config,
    secret::Secret,
    service::admin::{self, Role},
};

use super::CliResult;

#[derive(Subcommand)]
pub enum AdminAction {
    /// Add an admin; without --password-stdin a generated password is printed once (and must
    /// be changed at first login).
    Add {
        #[arg(long)]
        username: String,
        /// owner (everything), admin (merchants, wallets, orders, rates) or viewer (read only).
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Read the password (one line, ≥ 12 characters, not containing the username) from stdin.
        #[arg(long)]
        password_stdin: bool,
        /// Link this Telegram user id (the bot then acts with this admin's role).
        #[arg(long, value_parser = parse_telegram_id)]
        telegram_id: Option<i64>,
    },
    /// List admins (no hashes, no secrets).
    List,
    /// Disable an admin and end its sessions.
    Disable { username: String },
    /// Enable a disabled admin.
    Enable { username: String },
    /// Change an admin's role and end its sessions.
    Role {
        username: String,
        #[arg(value_parser = parse_role)]
        role: Role,
    },
    /// Set a new password (generated unless --password-stdin), end every session, clear the lockout.
    ResetPassword {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove an admin's TOTP (lost device) and end its sessions.
    ResetTotp { username: String },
    /// Link a Telegram user id to an admin: the bot acts with the admin's role. The bot tells an
    /// unlinked user their id.
    LinkTelegram {
        username: String,
        #[arg(value_parser = parse_telegram_id)]
        telegram_id: i64,
        /// Also opt in to the bot's notices (`tg_notify` chooses the kinds; `/notify` in the
        /// chat switches them).
        #[arg(long)]
        notify: bool,
    },
    /// Unlink an admin's Telegram user (the bot refuses it from then on).
    UnlinkTelegram { username: String },
}

fn parse_telegram_id(s: &str) -> Result<i64, String> {
    s.trim()
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| format!("`{s}` is not a Telegram user id (a positive number)"))
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("`{s}` is not a role; use owner, admin or viewer"))
}

fn read_password() -> Result<Secret, std::io::Error> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(Secret::new(line.trim_end_matches(['\r', '\n'])))
}

/// The password to set and whether it was generated (then it is printed once).
fn password(from_stdin: bool) -> Result<(Secret, bool), std::io::Error> {
    if from_stdin {
        Ok((read_password()?, false))
    } else {
        Ok((admin::generate_password(), true))
    }
}

pub async fn run(action: AdminAction, config: &Config) -> CliResult {
    let (db, _keys, audit) = app::open_secured(config).await?;
    let (action_name, target, details) = match action {
        AdminAction::Add {
            username,
            role,
            password_stdin,
            telegram_id,
        } => {
            let (pw, generated) = password(password_stdin)?;
            let mut a = admin::add(&db, &username, &pw, role, generated).await?;
            if telegram_id.is_some() {
                a = admin::telegram::link(&db, &username, telegram_id).await?;
            }
            println!(
                "admin added: id={} username={} role={}",
                a.id, a.username, a.role
            );
            if generated {
                println!(
                    "password (shown once; change it after the first login): {}",
                    pw.expose()
                );
            }
            (
                actions::ADMIN_ADD,
                a.username,
                serde_json::json!({ "role": a.role, "telegram_id": a.telegram_id }),
            )
        }
        AdminAction::List => {
            println!(
                "{:<6} {:<24} {:<8} {:<6} {:<9} {:<14} created_at",
                "id", "username", "role", "totp", "disabled", "telegram"
            );
            for a in admin::list(&db).await? {
                let tg = match a.telegram_id {
                    Some(id) if a.tg_notify => format!("{id}+notify"),
                    Some(id) => id.to_string(),
                    None => "-".into(),
                };
                println!(
                    "{:<6} {:<24} {:<8} {:<6} {:<9} {:<14} {}",
                    a.id, a.username, a.role, a.totp_enabled, a.disabled, tg, a.created_at
                );
            }
            return Ok(());
        }
        AdminAction::Disable { username } => {
            let a = admin::set_disabled(&db, &username, true).await?;
            println!("admin {} disabled; its sessions ended", a.username);
            (actions::ADMIN_DISABLE, a.username, serde_json::json!({}))
        }
        AdminAction::Enable { username } => {
            let a = admin::set_disabled(&db, &username, false).await?;
            println!("admin {} enabled", a.username);
            (actions::ADMIN_ENABLE, a.username, serde_json::json!({}))
        }
        AdminAction::Role { username, role } => {
            let a = admin::set_role(&db, &username, role).await?;
            println!("admin {} is now {}; its sessions ended", a.username, a.role);
            (
                actions::ADMIN_ROLE,
                a.username,
                serde_json::json!({ "role": a.role }),
            )
        }
        AdminAction::ResetPassword {
            username,
            password_stdin,
        } => {
            let (pw, generated) = password(password_stdin)?;
            let a = admin::set_password(&db, &username, &pw, generated).await?;
            println!("password of {} reset; its sessions ended", a.username);
            if generated {
                println!(
                    "password (shown once; change it after the next login): {}",
                    pw.expose()
                );
            }
            (
                actions::ADMIN_PASSWORD_RESET,
                a.username,
                serde_json::json!({}),
            )
        }
        AdminAction::LinkTelegram {
            username,
            telegram_id,
            notify,
        } => {
            admin::telegram::link(&db, &username, Some(telegram_id)).await?;
            let a = admin::telegram::set_notify(&db, &username, notify).await?;
            println!(
                "admin {} linked to Telegram user {telegram_id}; notices {}",
                a.username,
                if notify { "on" } else { "off" }
            );
            (
                actions::ADMIN_TELEGRAM_LINK,
                a.username,
                serde_json::json!({ "telegram_id": telegram_id, "notify": notify }),
            )
        }
        AdminAction::UnlinkTelegram { username } => {
            let a = admin::telegram::link(&db, &username, None).await?;
            println!("admin {} unlinked from Telegram", a.username);
            (
                actions::ADMIN_TELEGRAM_UNLINK,
                a.username,
                serde_json::json!({}),
            )
        }
        AdminAction::ResetTotp { username } => {
            let a = admin::reset_totp(&db, &username).await?;
            println!("TOTP of {} removed; its sessions ended", a.username);
            (actions::ADMIN_TOTP_RESET, a.username, serde_json::json!({}))
        }
    };
    audit
        .record(
            AuditEvent::new(ACTOR_CLI, action_name, format!("admin:{target}"))
                .with_details(details),
        )
        .await?;
    Ok(())
}
