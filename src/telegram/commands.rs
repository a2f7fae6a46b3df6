//! The bot's commands: each parses its arguments and calls the same service function as the
//! admin API route. Reads answer at once; writes answer with a confirmation keyboard
//! ([`super::confirm`]) and run only when an admin presses "Confirm".
use teloxide::{
    types::{InlineKeyboardButton, InlineKeyboardMarkup},
    utils::command::BotCommands,
};

use super::{Reply, access::Caller, confirm::Action};
use crate::{
    domain::{admin::Role, amount, currency, notice::escape_html as e, order::OrderStatus},
    service::{
        self,
        order::search::{self, OrderQuery},
        telegram::render::order_lines,
    },
    state::AppState,
};

/// Every command, registered with `setMyCommands`; `/help` prints these descriptions.
#[derive(BotCommands, Clone, Debug, PartialEq, Eq)]
#[command(rename_rule = "snake_case", description = "epusdt gateway commands:")]
pub enum Command {
    #[command(description = "this help")]
    Help,
    #[command(description = "who you are to the gateway")]
    Start,
    #[command(description = "per network: head, cursor, lag, RPC; queue depth; paid today")]
    Status,
    #[command(description = "latest orders: /orders [n]")]
    Orders(String),
    #[command(description = "one order: /order <trade_id|order_id>")]
    Order(String),
    #[command(description = "receive wallets")]
    Wallets,
    #[command(description = "add a wallet: /wallet_add <network> <address>")]
    WalletAdd(String),
    #[command(description = "stop using a wallet: /wallet_disable <id>")]
    WalletDisable(String),
    #[command(description = "use a wallet again: /wallet_enable <id>")]
    WalletEnable(String),
    #[command(description = "queue an order's callback again: /resend <trade_id>")]
    Resend(String),
    #[command(description = "rates in effect, or set one: /rate [<fiat> <value>]")]
    Rate(String),
    #[command(description = "your notices: /notify on|off")]
    Notify(String),
}

fn needs(caller: &Caller, role: Role) -> Option<Reply> {
    (!caller.role.allows(role)).then(|| {
        Reply::text(format!(
            "This needs the {role} role; you are {}.",
            caller.role
        ))
    })
}

/// A write: checked now, asked to confirm, done by [`super::confirm::run`].
fn ask(caller: &Caller, action: Action, question: String) -> Reply {
    if let Some(r) = needs(caller, Role::Admin) {
        return r;
    }
    let Some(data) = action.encode() else {
        return Reply::text("That argument is too long for a confirmation button.".into());
    };
    Reply {
        text: format!("{question}\nConfirm?"),
        keyboard: Some(InlineKeyboardMarkup::new([[
            InlineKeyboardButton::callback("✅ Confirm", data),
            InlineKeyboardButton::callback("✖ Cancel", Action::CANCEL),
        ]])),
    }
}

pub async fn run(state: &AppState, caller: &Caller, cmd: Command) -> anyhow::Result<Reply> {
    Ok(match cmd {
        Command::Help => Reply::text(e(&Command::descriptions().to_string())),
        Command::Start => Reply::text(format!(
            "Hello {}: you are {} here. /help lists the commands.",
            e(caller.username.as_deref().unwrap_or("manager")),
            caller.role
        )),
        Command::Status => Reply::text(status(state).await?),
        Command::Orders(arg) => {
            let n = match arg.trim() {
                "" => 10,
                s => match s.parse::<u64>() {
                    Ok(n) if (1..=50).contains(&n) => n,
                    _ => return Ok(Reply::text("Usage: /orders [n], n from 1 to 50".into())),
                },
            };
            let page = search::search(
                &state.db,
                &OrderQuery {
                    limit: n,
                    ..Default::default()
                },
            )
            .await?;
            if page.orders.is_empty() {
                return Ok(Reply::text("No orders yet.".into()));
            }
            let mut s = format!("<b>Latest {} orders</b>\n", page.orders.len());
            for o in &page.orders {
                s += &format!(
                    "<code>{}</code> {} {} {} {} · {}\n",
                    e(&o.trade_id),
                    OrderStatus::word_of(o.status),
                    e(&o.actual_amount),
                    e(&o.token),
                    e(&o.network),
                    e(&o.order_id)
                );
            }
            Reply::text(s)
        }
        Command::Order(arg) => Reply::text(order(state, arg.trim()).await?),
        Command::Wallets => {
            let rows = service::wallet::list(&state.db).await?;
            if rows.is_empty() {
                return Ok(Reply::text(
                    "No wallets. Add one: /wallet_add tron T…".into(),
                ));
            }
            let mut s = String::from("<b>Wallets</b>\n");
            for w in rows {
                s += &format!(
                    "#{} {} <code>{}</code> {}{}\n",
                    w.id,
                    e(&w.network),
                    e(&w.address),
                    if w.enabled { "enabled" } else { "disabled" },
                    if w.label.is_empty() {
                        String::new()
                    } else {
                        format!(" · {}", e(&w.label))
                    }
                );
            }
            Reply::text(s)
        }
        Command::WalletAdd(arg) => {
            let mut it = arg.split_whitespace();
            let (Some(net), Some(addr), None) = (it.next(), it.next(), it.next()) else {
                return Ok(Reply::text(
                    "Usage: /wallet_add &lt;network&gt; &lt;address&gt;".into(),
                ));
            };
            let networks = state.config.registry();
            let Some(network) = networks.usable(net) else {
                return Ok(Reply::text(format!(
                    "Unknown network <code>{}</code>; use one of {}.",
                    e(net),
                    e(&networks.usable_names())
                )));
            };
            let address = match networks.parse_address(network, addr) {
                Ok(a) => a,
                Err(err) => {
                    return Ok(Reply::text(format!(
                        "Invalid address: {}",
                        e(&err.to_string())
                    )));
                }
            };
            let q = format!(
                "Add wallet {} ({}) <code>{}</code>?",
                network.as_str(),
                e(&networks.label(network)),
                e(&address)
            );
            ask(
                caller,
                Action::WalletAdd {
                    network: network.as_str().to_string(),
                    address,
                },
                q,
            )
        }
        Command::WalletDisable(arg) | Command::WalletEnable(arg)
            if arg.trim().parse::<i64>().is_err() =>
        {
            Reply::text("Usage: /wallet_disable &lt;id&gt; (ids: /wallets)".into())
        }
        Command::WalletDisable(arg) => {
            let id: i64 = arg.trim().parse().unwrap_or_default();
            ask(
                caller,
                Action::WalletEnabled { id, enabled: false },
                format!("Disable wallet #{id}?"),
            )
        }
        Command::WalletEnable(arg) => {
            let id: i64 = arg.trim().parse().unwrap_or_default();
            ask(
                caller,
                Action::WalletEnabled { id, enabled: true },
                format!("Enable wallet #{id}?"),
            )
        }
        Command::Resend(arg) => {
            let trade_id = arg.trim();
            if trade_id.is_empty() || trade_id.contains(char::is_whitespace) {
                return Ok(Reply::text("Usage: /resend &lt;trade_id&gt;".into()));
            }
            ask(
                caller,
                Action::Resend {
                    trade_id: trade_id.to_string(),
                },
                format!("Queue the callback of <code>{}</code> again?", e(trade_id)),
            )
        }
        Command::Rate(arg) => {
            let mut it = arg.split_whitespace();
            match (it.next(), it.next(), it.next()) {
                (None, _, _) => Reply::text(rates(state).await?),
                (Some(fiat), Some(value), None) => {
                    let cur = currency::normalize(fiat);
                    if !currency::is_fiat_code(&cur) {
                        return Ok(Reply::text(format!(
                            "<code>{}</code> is not a currency code like CNY.",
                            e(&cur)
                        )));
                    }
                    let Some(rate) = amount::parse_plain(value, false)
                        .filter(|r| *r > rust_decimal::Decimal::ZERO)
                    else {
                        return Ok(Reply::text(
                            "The rate must be a positive decimal, e.g. 7.2".into(),
                        ));
                    };
                    let rate = rate.normalize();
                    ask(
                        caller,
                        Action::Rate {
                            currency: cur.clone(),
                            rate,
                        },
                        format!("Set the {} rate to {rate} per USDT?", e(&cur)),
                    )
                }
                _ => Reply::text("Usage: /rate or /rate &lt;fiat&gt; &lt;value&gt;".into()),
            }
        }
        Command::Notify(arg) => {
            let on = match arg.trim().to_ascii_lowercase().as_str() {
                "on" => true,
                "off" => false,
                _ => return Ok(Reply::text("Usage: /notify on|off".into())),
            };
            let Some(name) = &caller.username else {
                return Ok(Reply::text(
                    "tg_manage always receives notices; link an admin account to choose.".into(),
                ));
            };
            service::admin::telegram::set_notify(&state.db, name, on).await?;
            Reply::text(if on {
                format!(
                    "Notices on ({}).",
                    e(&state
                        .config
                        .tg_notify_kinds()
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", "))
                )
            } else {
                "Notices off.".into()
            })
        }
    })
}

async fn status(state: &AppState) -> anyhow::Result<String> {
    let persisted = crate::chain::cursors(&state.db).await.unwrap_or_default();
    let mut s = String::from("<b>Networks</b>\n");
    let chains = state.chains.snapshot();
    if chains.is_empty() {
        s += "none watched\n";
    }
    let dash = |v: Option<String>| v.unwrap_or_else(|| "–".into());
    for (network, c) in chains {
        let cursor = persisted.get(network).copied().or(c.cursor);
        let lag = match (c.confirmed_head, cursor) {
            (Some(h), Some(k)) => Some((h - k).max(0)),
            _ => c.lag_blocks,
        };
        s += &format!(
            "{network} ({}): head {}, cursor {}, lag {}, RPC {}{}\n",
            c.role,
            dash(c.head.map(|v| v.to_string())),
            dash(cursor.map(|v| v.to_string())),
            dash(lag.map(|v| v.to_string())),
            e(&dash(c.rpc_url.clone())),
            c.error
                .as_deref()
                .map(|x| format!(" ⚠️ {}", e(x)))
                .unwrap_or_default()
        );
    }
    let depth = match state.queue.pending_jobs().await {
        Ok(n) => n.to_string(),
        Err(err) => format!("unavailable ({})", e(&err.to_string())),
    };
    s += &format!(
        "<b>Queue</b> ({}): {depth} pending\n",
        state.queue.backend_name()
    );
    let now = service::now();
    let today = service::stats::window(&state.db, now - now.rem_euclid(86_400)).await?;
    let paid = today.orders_by_status.get("paid").copied().unwrap_or(0);
    s += &format!("<b>Today</b>: {paid} paid");
    for (network, tokens) in &today.paid_volume {
        for (token, v) in tokens {
            s += &format!(", {} {} on {}", e(v), e(token), e(network));
        }
    }
    Ok(s)
}

async fn order(state: &AppState, key: &str) -> anyhow::Result<String> {
    if key.is_empty() {
        return Ok("Usage: /order &lt;trade_id|order_id&gt;".into());
    }
    let mut found = search::detail(&state.db, key).await?;
    if found.is_none() {
        // A merchant's order_id: the newest order with exactly that id.
        let page = search::search(
            &state.db,
            &OrderQuery {
                q: Some(key.to_string()),
                limit: 50,
                ..Default::default()
            },
        )
        .await?;
        if let Some(o) = page.orders.iter().find(|o| o.order_id == key) {
            found = search::detail(&state.db, &o.trade_id).await?;
        }
    }
    let Some(d) = found else {
        return Ok(format!("No order <code>{}</code>.", e(key)));
    };
    let o = &d.order;
    let merchant = {
        use sea_orm::EntityTrait;
        crate::store::entities::merchant::Entity::find_by_id(o.merchant_id)
            .one(&state.db)
            .await?
    };
    let mut s = format!(
        "<b>Order {}</b>{}\n{}",
        OrderStatus::word_of(o.status),
        if o.flags != 0 {
            format!(" (flags {})", o.flags)
        } else {
            String::new()
        },
        order_lines(o, merchant.as_ref())
    );
    if let Some(p) = &o.paid_amount {
        s += &format!("Paid: {}\n", e(p));
    }
    s += &format!("Callback attempts: {}", d.attempts.len());
    if let Some(a) = d.attempts.last() {
        s += &format!(
            " (last: {}{})",
            if a.success { "ok" } else { "failed" },
            a.http_status
                .map(|c| format!(", HTTP {c}"))
                .unwrap_or_default()
        );
    }
    Ok(s)
}

async fn rates(state: &AppState) -> anyhow::Result<String> {
    let rows = service::rate::list(&state.db, &state.config).await?;
    if rows.is_empty() {
        return Ok("No rate set. /rate CNY 7.2 sets one.".into());
    }
    let mut s = String::from("<b>Rates</b> (fiat per USDT)\n");
    for (c, r, source) in rows {
        s += &format!("{} {} ({source})\n", e(&c), r.normalize());
    }
    Ok(s)
}
