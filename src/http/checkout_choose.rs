//! The payer's network choice on our checkout: the page of a placeholder (GMPay order created
//! without token/network: [`render_choose`]) and the "pay on another network" offer on the page
//! of a waiting order ([`switch_options`]). Both post to `/pay/switch-network` from
//! `assets/switch.js`. Pure rendering, like `checkout_page`: every value escaped by the
//! template engine, the script's values JSON-encoded.
use axum::response::Html;
use minijinja::{Value, context};
use serde::Serialize;

use super::render::{RenderError, render};
use crate::domain::network::Network;

const CSS: &str = include_str!("../../assets/checkout.css");
const SWITCH_JS: &str = include_str!("../../assets/switch.js");

/// One network the payer may choose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwitchOption {
    pub network: &'static str,
    pub label: &'static str,
}

impl From<Network> for SwitchOption {
    fn from(n: Network) -> Self {
        Self {
            network: n.as_str(),
            label: n.label(),
        }
    }
}

/// The options as the templates read them (`n.network`, `n.label`).
pub fn options_value(options: &[SwitchOption]) -> Value {
    Value::from(
        options
            .iter()
            .map(|o| context! { network => o.network, label => o.label })
            .collect::<Vec<Value>>(),
    )
}

/// The network-choice script, trusted markup for the templates.
pub fn switch_js() -> Value {
    Value::from_safe_string(SWITCH_JS.to_owned())
}

/// What a waiting order's page offers: nothing for a child (it cannot switch again); the
/// network of its child for a parent that has one; otherwise every supported network but its own.
pub fn switch_options(
    own: Network,
    is_child: bool,
    child_networks: &[Network],
    supported: &[Network],
) -> Vec<SwitchOption> {
    if is_child {
        return Vec::new();
    }
    if !child_networks.is_empty() {
        return child_networks.iter().map(|n| (*n).into()).collect();
    }
    supported
        .iter()
        .filter(|n| **n != own)
        .map(|n| (*n).into())
        .collect()
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
            css => Value::from_safe_string(CSS.to_owned()),
            switch_js => switch_js(),
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
        use Network::*;
        let all = [Tron, Ethereum, Bsc];
        let nets = |v: Vec<SwitchOption>| v.iter().map(|o| o.network).collect::<Vec<_>>();
        assert_eq!(
            nets(switch_options(Tron, false, &[], &all)),
            ["ethereum", "bsc"]
        );
        assert_eq!(nets(switch_options(Tron, false, &[Bsc], &all)), ["bsc"]);
        assert!(switch_options(Ethereum, true, &[], &all).is_empty());
    }

    #[test]
    fn the_choose_page_escapes_and_lists_networks() {
        let html = render_choose(
            "2026",
            "<b>o</b>",
            "72.00",
            "CNY",
            &[Network::Tron.into(), Network::Polygon.into()],
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
