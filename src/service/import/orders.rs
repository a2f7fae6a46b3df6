//! Upstream orders → ours: status mapped (waiting and "choose a network" → expired with the
//! original window; paid stays paid, its callback never re-sent automatically), amounts as exact
//! decimals, trade_id / order_id / tx hash kept. One transaction per order: the order and its
//! `transfers` record go in together or not at all; the unique keys make a re-run a no-op.
use std::{collections::HashMap, str::FromStr};

use rust_decimal::Decimal;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, Set,
};

use super::{ImportError, Summary};
use crate::{
    config::Config,
    domain::{amount, network::Network, order::OrderStatus},
    service::order::callback_state,
    store::{
        self,
        entities::{order, transfer},
        upstream::{Upstream, UpstreamOrder, Variant},
    },
};

/// `request_hash` of imported orders: a create request repeating one gets "order exists".
const IMPORTED: &str = "upstream-import";

/// Why an order is not imported (the note says which order).
type Skip = String;

pub(super) async fn import_orders(
    db: &DatabaseConnection,
    config: &Config,
    up: &Upstream,
    merchants: &HashMap<String, i64>,
    sum: &mut Summary,
) -> Result<(), ImportError> {
    let now = crate::service::now();
    let window = i64::from(config.order_expiration_time) * 60;
    for o in up.orders().await.map_err(ImportError::Upstream)? {
        let row = match to_row(&o, up.variant, merchants, config, now, window) {
            Ok(r) => r,
            Err(why) => {
                sum.orders.skipped += 1;
                sum.notes.push(format!(
                    "order trade_id {}: {why}; not imported",
                    o.trade_id
                ));
                continue;
            }
        };
        match insert(db, row).await {
            Ok(recorded) => {
                sum.orders.imported += 1;
                sum.hashes_recorded += usize::from(recorded);
            }
            Err(e) if store::is_unique_violation(&e, "orders_trade_id_key", "orders.trade_id") => {
                sum.orders.present += 1;
            }
            Err(e)
                if store::is_unique_violation(
                    &e,
                    "orders_merchant_order_id_key",
                    "orders.merchant_id, orders.order_id",
                ) =>
            {
                // Both keys collide on a re-run; SQLite names only the first it checked.
                if order::Entity::find()
                    .filter(order::Column::TradeId.eq(&o.trade_id))
                    .one(db)
                    .await?
                    .is_some()
                {
                    sum.orders.present += 1;
                    continue;
                }
                sum.orders.skipped += 1;
                sum.notes.push(format!(
                    "order trade_id {}: this merchant already has an order {} here (another trade_id); not imported",
                    o.trade_id, o.order_id
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Inserts the order and, for a paid one with a hash, its transfer record, in one
/// transaction. A slot still held by a live order of ours leaves the imported one's slot free
/// (it is expired; only a payment within its window could still pay it). Returns whether a
/// transaction hash was recorded.
async fn insert(db: &DatabaseConnection, row: order::Model) -> Result<bool, DbErr> {
    let mut am: order::ActiveModel = row.clone().into();
    am.id = sea_orm::ActiveValue::NotSet;
    let txn = store::begin_write(db).await?;
    match am.clone().insert(&txn).await {
        Ok(saved) => {
            let recorded = record_hash_in(&txn, &saved).await?;
            txn.commit().await?;
            Ok(recorded)
        }
        Err(e)
            if row.live_slot.is_some()
                && store::is_unique_violation(
                    &e,
                    "orders_live_slot_key",
                    "orders.network, orders.token, orders.address, orders.actual_amount, orders.live_slot",
                ) =>
        {
            txn.rollback().await?;
            am.live_slot = Set(None);
            am.insert(db).await?;
            Ok(false)
        }
        Err(e) => {
            txn.rollback().await.ok();
            Err(e)
        }
    }
}

/// The paid order's transaction, so the watcher sees it as recorded (see the module docs).
async fn record_hash_in(
    txn: &sea_orm::DatabaseTransaction,
    m: &order::Model,
) -> Result<bool, DbErr> {
    let (Some(hash), true) = (
        &m.block_transaction_id,
        m.status == OrderStatus::Paid.code(),
    ) else {
        return Ok(false);
    };
    let row = transfer::ActiveModel {
        network: Set(m.network.clone()),
        tx_hash: Set(hash.clone()),
        log_index: Set(-1),
        block_number: Set(0),
        block_hash: Set(String::new()),
        token_contract: Set(String::new()),
        from_address: Set(String::new()),
        to_address: Set(m.address.clone()),
        amount: Set(m
            .paid_amount
            .clone()
            .unwrap_or_else(|| m.actual_amount.clone())),
        block_time: Set(m.paid_at.unwrap_or(m.updated_at)),
        order_id: Set(Some(m.id)),
        kind: Set("imported".into()),
        created_at: Set(crate::service::now()),
        ..Default::default()
    };
    match row.insert(txn).await {
        Ok(_) => Ok(true),
        Err(e)
            if store::is_unique_violation(
                &e,
                "transfers_network_tx_log_key",
                "transfers.network, transfers.tx_hash, transfers.log_index",
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// An upstream decimal as printed by its database (`10.0000`, `14.2857`, `1e-05`).
fn decimal(text: &str, what: &str) -> Result<Decimal, Skip> {
    let t = text.trim();
    Decimal::from_str(t)
        .or_else(|_| Decimal::from_scientific(t))
        .ok()
        .filter(|d| *d >= Decimal::ZERO)
        .ok_or_else(|| format!("{what} `{t}` is not a decimal"))
}

fn to_row(
    o: &UpstreamOrder,
    variant: Variant,
    merchants: &HashMap<String, i64>,
    config: &Config,
    now: i64,
    window: i64,
) -> Result<order::Model, Skip> {
    if o.trade_id.is_empty() || o.trade_id.len() > 32 {
        return Err("trade_id is empty or longer than 32 characters".into());
    }
    if o.order_id.is_empty() || o.order_id.len() > 64 {
        return Err("order_id is empty or longer than 64 characters".into());
    }
    if !matches!(o.pay_provider.as_str(), "" | "on_chain") {
        return Err(format!(
            "paid through `{}`, not on chain (no such provider here)",
            o.pay_provider
        ));
    }
    let merchant_id = match variant {
        Variant::Assimon => merchants.get(""),
        // Rows from before upstream had `api_key_id` (NULL or 0) belong to its default key.
        Variant::GmWallet => match o.api_key_id.as_deref() {
            None | Some("" | "0") => merchants.get(""),
            Some(k) => merchants.get(k),
        },
    }
    .copied()
    .ok_or_else(|| "its API key was not imported".to_string())?;
    let net_name = o.network.clone().unwrap_or_else(|| "tron".into());
    let net = crate::domain::network::Networks::presets()
        .usable(&net_name)
        .ok_or_else(|| format!("network `{net_name}` is not supported here"))?;
    let token = o.token.clone().unwrap_or_else(|| "USDT".into());
    if !token.eq_ignore_ascii_case("USDT") {
        return Err(format!("token `{token}` is not supported here (USDT only)"));
    }
    let amount_d = decimal(&o.amount, "amount")?;
    let actual = decimal(&o.actual_amount, "actual_amount")?;
    let rate = if actual > Decimal::ZERO {
        (amount_d / actual).round_dp(8)
    } else {
        Decimal::ZERO
    };
    let address = if o.address.is_empty() && o.status == 4 {
        String::new()
    } else {
        crate::domain::network::Networks::presets()
            .parse_address(net, &o.address)
            .map_err(|e| format!("receive address `{}`: {e}", o.address))?
    };
    let created = o.created_at.or(o.updated_at).unwrap_or(now);
    let updated = o.updated_at.unwrap_or(created);
    let expires_at = created + window;
    let grace = i64::from(config.slot_reuse_grace_secs);
    // Upstream: 1 waiting, 2 paid, 3 expired, 4 (GMWallet) waiting for the payer to choose.
    let (status, live_slot) = match o.status {
        2 => (OrderStatus::Paid, None),
        1 | 3 | 4 if !address.is_empty() && expires_at + grace > now => {
            (OrderStatus::Expired, Some(1))
        }
        1 | 3 | 4 => (OrderStatus::Expired, None),
        s => return Err(format!("status {s} is not an upstream order status")),
    };
    let paid = status == OrderStatus::Paid;
    let hash = o
        .block_transaction_id
        .as_ref()
        .filter(|_| paid)
        .map(|h| tx_hash(net, h));
    let cut = |s: &str, n: usize| s.chars().take(n).collect::<String>();
    let protocol = match variant {
        Variant::Assimon => "v1",
        Variant::GmWallet if o.payment_type.eq_ignore_ascii_case("epay") => "epay",
        Variant::GmWallet => "gmpay",
    };
    Ok(order::Model {
        id: 0,
        trade_id: o.trade_id.clone(),
        merchant_id,
        order_id: o.order_id.clone(),
        protocol: protocol.into(),
        network: net.as_str().into(),
        token: "USDT".into(),
        currency: o
            .currency
            .as_deref()
            .map(|c| c.trim().to_ascii_uppercase())
            .filter(|c| !c.is_empty() && c.len() <= 8)
            .unwrap_or_else(|| "CNY".into()),
        amount: amount::canonical(amount_d),
        rate: amount::canonical(rate),
        actual_amount: amount::canonical(actual),
        address,
        status: status.code(),
        live_slot,
        flags: 0,
        notify_url: cut(&o.notify_url, 512),
        redirect_url: cut(&o.redirect_url, 512),
        name: cut(&o.name, 128),
        request_hash: IMPORTED.into(),
        block_transaction_id: hash,
        paid_amount: paid.then(|| amount::canonical(actual)),
        callback_state: match (paid, o.callback_confirm) {
            (false, _) => callback_state::PENDING,
            (true, 1) => callback_state::DELIVERED,
            // Never delivered upstream: an admin can resend; not sent on its own after a move.
            (true, _) => callback_state::FAILED,
        },
        callback_attempts: i32::try_from(o.callback_num.max(0)).unwrap_or(i32::MAX),
        callback_due_at: None,
        created_at: created,
        // The sweeper frees a held slot `slot_reuse_grace_secs` after `updated_at`: hold it
        // from the end of the window, as for an order that expired here.
        updated_at: if live_slot.is_some() {
            updated.max(expires_at)
        } else {
            updated
        },
        expires_at,
        paid_at: paid.then_some(updated),
        sign_alg: String::new(),
        epay_type: cut(&o.epay_type, 64),
        parent_trade_id: None,
    })
}

/// The hash as our watchers record it: EVM `0x` + lower-case hex, TRON lower-case hex.
fn tx_hash(net: Network, h: &str) -> String {
    let h = h.trim().to_ascii_lowercase();
    let bare = h.strip_prefix("0x").unwrap_or(&h);
    if crate::domain::network::Networks::presets().kind(net)
        == crate::domain::network::NetworkKind::Evm
    {
        format!("0x{bare}")
    } else {
        bare.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_decimals_read_as_the_watchers_write_them() {
        assert_eq!(tx_hash(Network::ETHEREUM, "0xABcd"), "0xabcd");
        assert_eq!(tx_hash(Network::BSC, "abcd"), "0xabcd");
        assert_eq!(tx_hash(Network::TRON, "ABCD"), "abcd");
        assert_eq!(amount::canonical(decimal("10.0000", "a").unwrap()), "10");
        assert_eq!(
            amount::canonical(decimal("14.2857", "a").unwrap()),
            "14.2857"
        );
        assert_eq!(amount::canonical(decimal("1e-05", "a").unwrap()), "0.00001");
        assert!(decimal("-1", "a").is_err() && decimal("abc", "a").is_err());
    }
}
