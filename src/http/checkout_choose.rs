//! The payer's network choice on our checkout: the page of a placeholder (GMPay order created
//! without token/network: [`render_choose`]) and the "pay on another network" offer on the page
//! of a waiting order ([`switch_options`]). Both post to `/pay/switch-network` from
//! `assets/switch.js`. Pure rendering, like `checkout_page`: every value escaped by the
//! template engine, the script's values JSON-encoded.
use std::sync::LazyLock;

use axum::response::Html;
use minijinja::{Value, context};
use serde::Serialize;

use super::render::{Inline, RenderError, render};
use crate::domain::network::{Asset, Network, Networks, Token};

/// The network-choice script, also part of the waiting order's page.
pub(super) const SWITCH_JS: &str = include_str!("../../assets/switch.js");
/// The placeholder page's script.
static SCRIPT: LazyLock<Inline> = LazyLock::new(|| Inline::script(&[SWITCH_JS]));

/// One asset (token on a network) the payer may choose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwitchOption {
    pub network: &'static str,
    pub token: &'static str,
    /// The network's display name.
    pub label: String,
}

impl SwitchOption {
    pub fn new(a: Asset, networks: &Networks) -> Self {
        Self {
            network: a.network.as_str(),
            token: a.token.as_str(),
            label: networks.label(a.network),
        }
    }
}

/// The options as the templates read them (`n.network`, `n.label`).
pub fn options_value(options: &[SwitchOption]) -> Value {
    Value::from(
        options
            .iter()
            .map(|o| context! { network => o.network, token => o.token, label => o.label.as_str() })
            .collect::<Vec<Value>>(),
    )
}

/// What a waiting order's page offers: nothing for a child (it cannot switch again); the
/// asset of its child for a parent that has one; otherwise every supported asset but its own.
pub fn switch_options(
    own: Asset,
    is_child: bool,
    child_assets: &[Asset],
    supported: &[Asset],
    networks: &Networks,
) -> Vec<SwitchOption> {
    if is_child {
        return Vec::new();
    }
    if !child_assets.is_empty() {
        return child_assets
            .iter()
            .map(|a| SwitchOption::new(*a, networks))
            .collect();
    }
    supported
        .iter()
        .filter(|a| **a != own)
        .map(|a| SwitchOption::new(*a, networks))
        .collect()
}

/// The asset of a stored order (its token as stored; an unknown symbol is still shown).
pub fn asset_of(o: &crate::domain::order::Order) -> Asset {
    Asset {
        network: o.network,
        token: Token::named(&o.token),
    }
}

/// The USDT asset of `n` (tests and defaults).
pub fn usdt(n: Network) -> Asset {
    Asset {
        network: n,
        token: Token::USDT,
    }
}

/// The page of a placeholder: the order total and one button per network.
pub fn render_choose(
    trade_id: &str,
    order_id: &str,
    fiat_amount: &str,
    currency: &str,
    networks: &[SwitchOption],
) -> Result<Html<String>, RenderError> {
    render(
        "choose.html",
        context! {
            css => super::checkout_page::STYLE.body(),
            css_hash => super::checkout_page::STYLE.hash(),
            script => SCRIPT.body(),
            script_hash => SCRIPT.hash(),
            switch_networks => options_value(networks),
            cfg => context! { tradeId => trade_id },
            state => "waiting",
            trade_id,
            order_id,
            fiat_amount,
            currency,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_follow_the_one_child_rule() {
        let r = Networks::presets();
        let (tron, eth, bsc) = (
            usdt(Network::TRON),
            usdt(Network::ETHEREUM),
            usdt(Network::BSC),
        );
        let tron_usdc = Asset {
            network: Network::TRON,
            token: Token::USDC,
        };
        let all = [tron, tron_usdc, eth, bsc];
        let nets = |v: Vec<SwitchOption>| {
            v.iter()
                .map(|o| format!("{}.{}", o.token, o.network))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            nets(switch_options(tron, false, &[], &all, &r)),
            ["USDC.tron", "USDT.ethereum", "USDT.bsc"]
        );
        assert_eq!(
            nets(switch_options(tron, false, &[bsc], &all, &r)),
            ["USDT.bsc"]
        );
        assert!(switch_options(eth, true, &[], &all, &r).is_empty());
    }

    #[test]
    fn the_choose_page_escapes_and_lists_networks() {
        let html = render_choose(
            "2026",
            "<b>o</b>",
            "72.00",
            "CNY",
            &[
                SwitchOption::new(usdt(Network::TRON), &Networks::presets()),
                SwitchOption::new(usdt(Network::POLYGON), &Networks::presets()),
            ],
        )
        .expect("renders")
        .0;
        assert!(html.contains("&lt;b&gt;o&lt;/b&gt;"));
        assert!(!html.contains("<b>o</b>"));
        assert!(html.contains(r#"data-switch-network="tron""#));
        assert!(html.contains(r#"data-switch-network="polygon""#));
        assert!(html.contains("/pay/switch-network"));
    }
}
