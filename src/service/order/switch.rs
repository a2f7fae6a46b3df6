//! The payer's network choice (`POST /pay/switch-network`, upstream's SwitchNetwork) and what
//! ties a parent order to the child a switch creates.
//!
//! - A placeholder ([`super::choice`]) is completed in place: an order with the SAME trade_id,
//!   its slot found exactly as for a create, then the placeholder is marked chosen.
//! - A waiting order switched to another network gets its only child (`parent_trade_id`; the
//!   unique index `orders_parent_trade_id_key` allows one child per parent, ever). The child
//!   never calls back (`callback_state::NONE`); the merchant only knows the parent.
//!
//! Money rules (enforced in [`settle_parent`] and [`end_children`], called by crediting, expiry
//! and cancel): a paid child pays the parent, which is called back once with its own ids; a
//! payment to one of them after the other was paid is recorded against the parent as
//! `PAID_TWICE` for the operator and never produces a second callback; the parent's payment,
//! expiry or cancel ends a waiting child.
use rust_decimal::Decimal;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QuerySelect,
    sea_query::Expr,
};

use super::{
    IncomingTransfer, NewOrder, OrderError, callback_state,
    choice::{self, Lookup},
    create::{Placed, Placement, WalletCache, new_trade_id, place_order},
    credit::{CreditOutcome, lock_orders, set_flag},
    expire::change_status,
    find_by_trade_id, maybe_order, orders,
};
use crate::{
    config::Config,
    crypto::keys::KeyStore,
    domain::{
        network::{Asset, Network},
        order::{Order, OrderStatus, TradeId, flags},
        protocol::Protocol,
    },
    service::{merchant, now},
    store::entities::{order, wallet},
};

/// A switch's result: the order to pay now, and upstream's `is_selected`.
#[derive(Debug, Clone)]
pub struct Switched {
    pub order: Order,
    pub is_selected: bool,
}

/// The networks a payer may choose: those with an enabled wallet, and — once any network is
/// watched (`[networks.*]` with `rpc_urls`) — only watched ones, so nobody is offered a chain
/// whose payments nobody would see.
pub async fn supported_networks(
    db: &impl ConnectionTrait,
    config: &Config,
) -> Result<Vec<Network>, OrderError> {
    let with_wallet: Vec<String> = wallet::Entity::find()
        .select_only()
        .column(wallet::Column::Network)
        .filter(wallet::Column::Enabled.eq(true))
        .distinct()
        .into_tuple()
        .all(db)
        .await?;
    let registry = config.registry();
    let any_watched = registry.watched().next().is_some();
    Ok(registry
        .iter()
        .filter(|i| with_wallet.iter().any(|w| w == i.network.as_str()))
        .filter(|i| !any_watched || i.watched)
        .map(|i| i.network)
        .collect())
}

/// The assets a payer may choose: every token of each [`supported_networks`] network.
pub async fn supported_assets(
    db: &impl ConnectionTrait,
    config: &Config,
) -> Result<Vec<Asset>, OrderError> {
    let registry = config.registry();
    Ok(supported_networks(db, config)
        .await?
        .into_iter()
        .flat_map(|n| {
            registry
                .get(n)
                .map(|i| i.tokens.iter().map(|t| t.token).collect::<Vec<_>>())
                .unwrap_or_default()
                .into_iter()
                .map(move |token| Asset { network: n, token })
        })
        .collect())
}

/// The asset a payer asked for, if this gateway offers it (a configured token on a supported
/// network).
async fn asset(
    db: &impl ConnectionTrait,
    config: &Config,
    token: &str,
    network: &str,
) -> Result<Asset, OrderError> {
    let unsupported = || OrderError::UnsupportedAsset(format!("{token} on {network}"));
    let a = config
        .registry()
        .asset_of(token, network)
        .map_err(|_| unsupported())?;
    if !supported_networks(db, config).await?.contains(&a.network) {
        return Err(unsupported());
    }
    Ok(a)
}

/// The children of an order (at most one).
pub async fn children(db: &impl ConnectionTrait, trade_id: &str) -> Result<Vec<Order>, OrderError> {
    orders(
        order::Entity::find()
            .filter(order::Column::ParentTradeId.eq(trade_id))
            .all(db)
            .await?,
    )
}

/// Switches the payment of `trade_id` to `token` on `network` (see the module doc).
pub async fn switch_network(
    db: &DatabaseConnection,
    config: &Config,
    keys: &KeyStore,
    wallets: &WalletCache,
    trade_id: &str,
    token: &str,
    network: &str,
) -> Result<Switched, OrderError> {
    let now = now();
    let parent = match choice::lookup(db, trade_id).await? {
        None => return Err(OrderError::NotFound),
        Some(Lookup::Choice(c)) => {
            if !choice::is_choosing(&c, now) {
                return Err(OrderError::NotWaiting);
            }
            let a = asset(db, config, token, network).await?;
            return complete_choice(db, config, keys, wallets, c, a).await;
        }
        Some(Lookup::Order(o)) => o,
    };
    if parent.parent_trade_id.is_some() {
        return Err(OrderError::CannotSwitchChild);
    }
    if parent.effective_status(now) != OrderStatus::Waiting {
        return Err(OrderError::NotWaiting);
    }
    let wanted = config.registry().asset_of(token, network).ok();
    let is =
        |o: &Order| wanted.is_some_and(|a| a.network == o.network && a.token.as_str() == o.token);
    if is(&parent) {
        return Ok(Switched {
            order: parent,
            is_selected: true,
        });
    }
    let existing = children(db, parent.trade_id.as_str()).await?;
    if let Some(child) = existing
        .iter()
        .find(|c| is(c) && c.effective_status(now) == OrderStatus::Waiting)
    {
        return Ok(Switched {
            order: child.clone(),
            is_selected: true,
        });
    }
    if !existing.is_empty() {
        return Err(OrderError::SubOrderLimit);
    }
    let a = asset(db, config, token, network).await?;
    let n = a.network;
    let m = merchant::find_by_id(db, keys, parent.merchant_id.get())
        .await?
        .ok_or(OrderError::NotFound)?;
    let child_id = new_trade_id();
    let req = NewOrder {
        merchant: m,
        protocol: parent.protocol,
        order_id: child_id.to_string(),
        currency: parent.currency.clone(),
        amount: parent.amount,
        network: n,
        token: a.token,
        notify_url: String::new(),
        redirect_url: parent.redirect_url.clone(),
        name: parent.name.clone(),
        timeout_secs: None,
        // A child never calls back (its parent does), so it signs nothing.
        sign_alg: String::new(),
        epay_type: parent.epay_type.clone(),
    };
    let placed = place_order(
        db,
        config,
        wallets,
        &req,
        Placement {
            trade_id: Some(child_id),
            parent_trade_id: Some(parent.trade_id.to_string()),
            callback_state: callback_state::NONE,
            ..Placement::default()
        },
    )
    .await;
    let child = match placed {
        Ok(child) => child.order,
        Err(Placed::Exists) => {
            // A concurrent switch made the one child first.
            let now_children = children(db, parent.trade_id.as_str()).await?;
            return match now_children
                .into_iter()
                .find(|c| c.network == n && c.token == a.token.as_str())
            {
                Some(c) if c.effective_status(now) == OrderStatus::Waiting => Ok(Switched {
                    order: c,
                    is_selected: true,
                }),
                _ => Err(OrderError::SubOrderLimit),
            };
        }
        Err(Placed::Failed(e)) => return Err(e),
    };
    // The parent may have been paid, cancelled or expired while the child was placed: then the
    // child must not stay payable.
    let still = find_by_trade_id(db, parent.trade_id.as_str()).await?;
    if still.is_none_or(|p| p.effective_status(now) != OrderStatus::Waiting) {
        change_status(
            db,
            child.id,
            OrderStatus::Waiting,
            OrderStatus::Cancelled,
            false,
        )
        .await?;
        return Err(OrderError::NotWaiting);
    }
    // The parent stays payable as long as its child (upstream restarts the parent's timer);
    // the expiry sweep reads the later time.
    order::Entity::update_many()
        .col_expr(order::Column::ExpiresAt, Expr::value(child.expires_at))
        .col_expr(order::Column::UpdatedAt, Expr::value(now))
        .filter(order::Column::Id.eq(parent.id.get()))
        .filter(order::Column::Status.eq(OrderStatus::Waiting.code()))
        .filter(order::Column::ExpiresAt.lt(child.expires_at))
        .exec(db)
        .await?;
    tracing::info!(parent = %parent.trade_id, child = %child.trade_id, network = %n, "payer switched network: child order created");
    Ok(Switched {
        order: child,
        is_selected: true,
    })
}

/// A placeholder becomes an order with its trade_id (a fresh validity period from now, as
/// upstream). If the placeholder was cancelled meanwhile, the new order is cancelled at once.
async fn complete_choice(
    db: &DatabaseConnection,
    config: &Config,
    keys: &KeyStore,
    wallets: &WalletCache,
    c: choice::Choice,
    a: Asset,
) -> Result<Switched, OrderError> {
    let bad_row = |column: &str| {
        OrderError::Db(DbErr::Custom(format!(
            "order_choices row {}: bad {column}",
            c.id
        )))
    };
    let m = merchant::find_by_id(db, keys, c.merchant_id)
        .await?
        .ok_or(OrderError::NotFound)?;
    let req = NewOrder {
        merchant: m,
        protocol: Protocol::parse(&c.protocol).ok_or_else(|| bad_row("protocol"))?,
        order_id: c.order_id.clone(),
        currency: c.currency.clone(),
        amount: c.amount.parse::<Decimal>().map_err(|_| bad_row("amount"))?,
        network: a.network,
        token: a.token,
        notify_url: c.notify_url.clone(),
        redirect_url: c.redirect_url.clone(),
        name: c.name.clone(),
        timeout_secs: c.timeout_secs,
        sign_alg: c.sign_alg.clone(),
        epay_type: c.epay_type.clone(),
    };
    let trade_id = TradeId::parse(&c.trade_id).map_err(|_| bad_row("trade_id"))?;
    let placed = place_order(
        db,
        config,
        wallets,
        &req,
        Placement {
            trade_id: Some(trade_id),
            request_hash: c.request_hash.clone(),
            sign_alg: c.sign_alg.clone(),
            epay_type: c.epay_type.clone(),
            ..Placement::default()
        },
    )
    .await;
    let o = match placed {
        Ok(placed) => placed.order,
        Err(Placed::Exists) => {
            // A concurrent switch completed it first: that order is the answer.
            let o = find_by_trade_id(db, &c.trade_id)
                .await?
                .ok_or(OrderError::NotWaiting)?;
            return Ok(Switched {
                order: o,
                is_selected: false,
            });
        }
        Err(Placed::Failed(e)) => return Err(e),
    };
    if !choice::mark_chosen(db, c.id).await? {
        // Cancelled while the slot was being found: the order must not stay payable.
        change_status(
            db,
            o.id,
            OrderStatus::Waiting,
            OrderStatus::Cancelled,
            false,
        )
        .await?;
        return Err(OrderError::NotWaiting);
    }
    tracing::info!(trade_id = %o.trade_id, network = %a.network, token = %a.token, "placeholder completed by the payer's choice");
    // The merchant's order gets its network only now: counted as created here.
    crate::telemetry::metrics::order_event(
        crate::telemetry::metrics::OrderEvent::Created,
        o.network,
        &o.token,
        o.actual_amount,
    );
    Ok(Switched {
        order: o,
        is_selected: false,
    })
}

/// Ends the waiting children of a parent that was paid, expired or cancelled (same transition
/// rules and slot grace as the parent).
pub(super) async fn end_children(
    db: &impl ConnectionTrait,
    parent_trade_id: &str,
    to: OrderStatus,
    hold_slot: bool,
) -> Result<(), OrderError> {
    let waiting = orders(
        order::Entity::find()
            .filter(order::Column::ParentTradeId.eq(parent_trade_id))
            .filter(order::Column::Status.eq(OrderStatus::Waiting.code()))
            .all(db)
            .await?,
    )?;
    for c in waiting {
        if change_status(db, c.id, OrderStatus::Waiting, to, hold_slot).await? {
            tracing::info!(parent = parent_trade_id, child = %c.trade_id, status = to.code(), "child order ended with its parent");
        }
    }
    Ok(())
}

/// The child `child` was just credited by transfer `t` (inside the crediting transaction): the
/// parent is paid with the child's payment and called back — unless it was already paid (a
/// second payment: flagged, no second callback) or cancelled (flagged late).
pub(super) async fn settle_parent(
    txn: &sea_orm::DatabaseTransaction,
    child: &Order,
    parent_trade_id: &str,
    t: &IncomingTransfer,
    amount_text: &str,
) -> Result<CreditOutcome, OrderError> {
    let Some(p) = maybe_order(
        order::Entity::find()
            .filter(order::Column::TradeId.eq(parent_trade_id))
            .one(txn)
            .await?,
    )?
    else {
        tracing::error!(child = %child.trade_id, parent = parent_trade_id, "paid child order has no parent row; recorded against the child, no callback");
        return Ok(CreditOutcome::PaidTwice {
            order_id: child.id.get(),
        });
    };
    let p = lock_orders(txn, &[p.id.get()])
        .await?
        .into_iter()
        .next()
        .ok_or(OrderError::NotFound)?;
    match p.status {
        OrderStatus::Waiting | OrderStatus::Expired => {
            super::credit::mark_paid(txn, &p, t, amount_text).await?;
            tracing::info!(parent = %p.trade_id, child = %child.trade_id, tx = %t.tx_hash, "child order paid: parent credited");
            Ok(CreditOutcome::Paid {
                order_id: p.id.get(),
                trade_id: p.trade_id.to_string(),
            })
        }
        OrderStatus::Paid => {
            set_flag(txn, p.id, flags::PAID_TWICE).await?;
            tracing::warn!(parent = %p.trade_id, child = %child.trade_id, tx = %t.tx_hash, "child order paid after its parent was paid: recorded as a second payment, no callback");
            Ok(CreditOutcome::PaidTwice {
                order_id: p.id.get(),
            })
        }
        OrderStatus::Cancelled => {
            set_flag(txn, p.id, flags::LATE).await?;
            tracing::warn!(parent = %p.trade_id, child = %child.trade_id, tx = %t.tx_hash, "child order paid after its parent was cancelled: flagged, no callback");
            Ok(CreditOutcome::Late {
                order_id: p.id.get(),
            })
        }
    }
}
