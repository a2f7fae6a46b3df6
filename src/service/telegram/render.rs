//! The text of each notice: Telegram HTML, every value from outside escaped.
use sea_orm::{ConnectionTrait, DbErr, EntityTrait};

use crate::{
    domain::notice::{Notice, escape_html as e},
    store::entities::{merchant, order},
};

/// The preset of a stored network name (label and explorer), if it is one.
fn preset(network: &str) -> Option<&'static crate::domain::network::presets::Preset> {
    crate::domain::network::presets::preset(network)
}

/// A transaction link on the network's public explorer (the presets' explorers), or the bare
/// hash for other networks.
pub fn tx_link(network: &str, tx: &str) -> String {
    match preset(network) {
        Some(p) => {
            let url = p.explorer_tx_url.replace("{}", tx);
            format!("<a href=\"{}\">{}</a>", e(&url), e(tx))
        }
        None => format!("<code>{}</code>", e(tx)),
    }
}

/// `tron (TRON (TRC20))`: the stored name and, for a preset, its label.
fn network_line(network: &str) -> String {
    match preset(network) {
        Some(p) => format!("{} ({})", e(network), e(p.display_name)),
        None => e(network),
    }
}

/// One order as the bot shows it (orders in notices and `/order`).
pub fn order_lines(o: &order::Model, merchant: Option<&merchant::Model>) -> String {
    let mut s = String::new();
    if let Some(m) = merchant {
        s += &format!("Merchant: {} ({})\n", e(&m.name), m.pid);
    }
    s += &format!("Order: <code>{}</code>\n", e(&o.order_id));
    s += &format!("Trade: <code>{}</code>\n", e(&o.trade_id));
    s += &format!(
        "Amount: {} {} = {} {}\n",
        e(&o.amount),
        e(&o.currency),
        e(&o.actual_amount),
        e(&o.token)
    );
    s += &format!("Network: {}\n", network_line(&o.network));
    s += &format!("Address: <code>{}</code>\n", e(&o.address));
    if let Some(tx) = &o.block_transaction_id {
        s += &format!("Tx: {}\n", tx_link(&o.network, tx));
    }
    s
}

async fn order_and_merchant(
    db: &impl ConnectionTrait,
    id: i64,
) -> Result<Option<(order::Model, Option<merchant::Model>)>, DbErr> {
    let Some(o) = order::Entity::find_by_id(id).one(db).await? else {
        return Ok(None);
    };
    let m = merchant::Entity::find_by_id(o.merchant_id).one(db).await?;
    Ok(Some((o, m)))
}

/// The notice's message, or `None` when what it names is gone.
pub async fn render(db: &impl ConnectionTrait, notice: &Notice) -> Result<Option<String>, DbErr> {
    Ok(Some(match notice {
        Notice::OrderPaid { order_id } => {
            let Some((o, m)) = order_and_merchant(db, *order_id).await? else {
                return Ok(None);
            };
            format!("✅ <b>Order paid</b>\n{}", order_lines(&o, m.as_ref()))
        }
        Notice::Transfer {
            kind,
            network,
            tx_hash,
            amount,
            to,
            order_id,
        } => {
            let mut s = format!(
                "⚠️ <b>{} transfer</b>\nNetwork: {}\nAmount: {}\nTo: <code>{}</code>\nTx: {}\n",
                e(&kind.replace('_', " ")),
                network_line(network),
                e(amount),
                e(to),
                tx_link(network, tx_hash)
            );
            if let Some(id) = order_id
                && let Some((o, m)) = order_and_merchant(db, *id).await?
            {
                s += &format!("Matching order:\n{}", order_lines(&o, m.as_ref()));
            }
            s += "Resolve it in the admin panel (credit or dismiss).";
            s
        }
        Notice::CallbackGaveUp { order_id, attempts } => {
            let Some((o, m)) = order_and_merchant(db, *order_id).await? else {
                return Ok(None);
            };
            format!(
                "❌ <b>Callback given up</b> after {attempts} attempts\n{}Resend: /resend {}",
                order_lines(&o, m.as_ref()),
                e(&o.trade_id)
            )
        }
        Notice::Chain { network, problem } => {
            format!("🛑 <b>Chain {}</b>: {}", e(network), e(problem))
        }
        Notice::KeyRotated { key_id } => {
            format!(
                "🔑 <b>Master key rotated</b>: now <code>{}</code>",
                e(key_id)
            )
        }
        Notice::Lockout { username } => format!(
            "🔒 <b>Admin locked</b>: <code>{}</code> after failed logins",
            e(username)
        ),
    }))
}
