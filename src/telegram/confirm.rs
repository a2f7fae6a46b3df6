//! Confirmation of writes: the button carries the whole action (Telegram allows 64 bytes of
//! callback data), so a confirmation survives a restart and needs no state. Whoever presses
//! the button is authorised again; the write goes through the same service function as the
//! admin API and is audited.
use rust_decimal::Decimal;
use serde_json::json;

use super::access::Caller;
use crate::{
    audit::actions,
    domain::{admin::Role, notice::escape_html as e},
    service,
    state::AppState,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    WalletAdd { network: String, address: String },
    WalletEnabled { id: i64, enabled: bool },
    Resend { trade_id: String },
    Rate { currency: String, rate: Decimal },
}

/// Telegram's limit on callback data.
const MAX_DATA: usize = 64;

impl Action {
    /// The Cancel button's data.
    pub const CANCEL: &'static str = "no";

    pub fn encode(&self) -> Option<String> {
        let s = match self {
            Action::WalletAdd { network, address } => format!("wa:{network}:{address}"),
            Action::WalletEnabled { id, enabled: true } => format!("we:{id}"),
            Action::WalletEnabled { id, enabled: false } => format!("wd:{id}"),
            Action::Resend { trade_id } => format!("rs:{trade_id}"),
            Action::Rate { currency, rate } => format!("rt:{currency}:{rate}"),
        };
        (s.len() <= MAX_DATA).then_some(s)
    }

    pub fn decode(data: &str) -> Option<Action> {
        let (tag, rest) = data.split_once(':')?;
        Some(match tag {
            "wa" => {
                let (network, address) = rest.split_once(':')?;
                Action::WalletAdd {
                    network: network.into(),
                    address: address.into(),
                }
            }
            "we" | "wd" => Action::WalletEnabled {
                id: rest.parse().ok()?,
                enabled: tag == "we",
            },
            "rs" => Action::Resend {
                trade_id: rest.into(),
            },
            "rt" => {
                let (currency, rate) = rest.split_once(':')?;
                Action::Rate {
                    currency: currency.into(),
                    rate: Decimal::from_str_exact(rate).ok()?,
                }
            }
            _ => return None,
        })
    }
}

/// Runs a confirmed action for `caller`; the text replaces the question.
pub async fn run(state: &AppState, caller: &Caller, action: Action) -> anyhow::Result<String> {
    if !caller.role.allows(Role::Admin) {
        return Ok(format!(
            "This needs the admin role; you are {}.",
            caller.role
        ));
    }
    Ok(match action {
        Action::WalletAdd { network, address } => {
            match service::wallet::add(
                &state.db,
                state.config.registry(),
                &network,
                &address,
                None,
                "telegram",
            )
            .await
            {
                Ok(w) => {
                    state
                        .audit
                        .record(
                            caller
                                .event(
                                    actions::WALLET_ADD,
                                    format!("wallet:{}:{}", w.network, w.address),
                                )
                                .with_details(json!({ "id": w.id, "via": "telegram", "telegram_id": caller.telegram_id })),
                        )
                        .await?;
                    format!(
                        "✅ Wallet #{} added: {} <code>{}</code>",
                        w.id,
                        e(&w.network),
                        e(&w.address)
                    )
                }
                Err(err) => format!("Not added: {}", e(&err.to_string())),
            }
        }
        Action::WalletEnabled { id, enabled } => {
            match service::wallet::update(&state.db, id, None, Some(enabled)).await {
                Ok(w) => {
                    state
                        .audit
                        .record(
                            caller
                                .event(
                                    actions::WALLET_UPDATE,
                                    format!("wallet:{}:{}", w.network, w.address),
                                )
                                .with_details(json!({ "id": w.id, "enabled": enabled, "via": "telegram", "telegram_id": caller.telegram_id })),
                        )
                        .await?;
                    format!(
                        "✅ Wallet #{} {}: {} <code>{}</code>",
                        w.id,
                        if enabled { "enabled" } else { "disabled" },
                        e(&w.network),
                        e(&w.address)
                    )
                }
                Err(err) => format!("Not changed: {}", e(&err.to_string())),
            }
        }
        Action::Resend { trade_id } => {
            match service::notify::resend(&state.db, &state.queue, &trade_id).await {
                Ok(()) => {
                    state
                        .audit
                        .record(caller.event(actions::ORDER_RESEND, format!("order:{trade_id}")))
                        .await?;
                    format!("✅ Callback of <code>{}</code> queued.", e(&trade_id))
                }
                Err(err) => format!("Not queued: {}", e(&err.to_string())),
            }
        }
        Action::Rate { currency, rate } => {
            service::rate::set_rate(&state.db, &currency, rate).await?;
            state
                .audit
                .record(
                    caller
                        .event(actions::RATE_SET, format!("rate:{currency}"))
                        .with_details(json!({ "rate": rate.normalize().to_string(), "via": "telegram", "telegram_id": caller.telegram_id })),
                )
                .await?;
            let effective = service::rate::usdt_rate(&state.db, &state.config, &currency).await?;
            format!(
                "✅ {} rate set to {}; in effect: {}",
                e(&currency),
                rate.normalize(),
                effective
                    .map(|r| r.normalize().to_string())
                    .unwrap_or_else(|| "none".into())
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_within_64_bytes() {
        for a in [
            Action::WalletAdd {
                network: "ethereum".into(),
                address: format!("0x{}", "ab".repeat(20)),
            },
            Action::WalletEnabled {
                id: 7,
                enabled: false,
            },
            Action::Resend {
                trade_id: "T2026120212345678".into(),
            },
            Action::Rate {
                currency: "CNY".into(),
                rate: "7.25".parse().unwrap(),
            },
        ] {
            let d = a.encode().expect("fits");
            assert!(d.len() <= 64);
            assert_eq!(Action::decode(&d), Some(a));
        }
        assert_eq!(Action::decode("xx:1"), None);
        assert!(
            Action::Resend {
                trade_id: "x".repeat(80)
            }
            .encode()
            .is_none()
        );
    }
}
