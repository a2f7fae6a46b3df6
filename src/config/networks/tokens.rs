//! The tokens of one `[networks.<name>]` section resolved over its preset: contract tokens
//! (USDT, USDC, any configured one), the native coin (`native = true`), and each token's
//! payable rounding (`amount_precision`, `amount_step`). Errors are (field, message); the caller
//! prefixes `networks.<name>.`.

use super::NetworkConfig;
use super::TokenConfig;
use crate::domain::network::{self, NetworkKind, Token, TokenInfo, presets};

/// `[networks.<name>.tokens.<symbol>] native = true`, validated: no contract, the preset's
/// coin symbol, one per network, never on Solana; decimals, rounding and price checked.
fn resolve_native(
    name: &str,
    kind: NetworkKind,
    preset: Option<&presets::Preset>,
    field: &str,
    token: Token,
    tc: &TokenConfig,
    already: Option<&TokenInfo>,
) -> Result<TokenInfo, (String, String)> {
    let key = |f: &str| format!("{field}.{f}");
    if kind == NetworkKind::Solana {
        return Err((
            key("native"),
            format!(
                "native SOL is not supported in this build (only SPL tokens are watched on `{name}`); remove the section or use usdt/usdc"
            ),
        ));
    }
    if let Some(other) = already {
        return Err((
            key("native"),
            format!(
                "`{name}` already has the native coin {}; a network has at most one",
                other.token
            ),
        ));
    }
    if tc.contract.is_some() {
        return Err((
            key("contract"),
            "a native coin has no contract; remove contract (or native = true for a token)".into(),
        ));
    }
    let pn = preset.map(|p| p.native);
    if let Some(pn) = pn
        && !pn.symbol.eq_ignore_ascii_case(token.as_str())
    {
        return Err((
            key("native"),
            format!(
                "the native coin of `{name}` is {}; name the section [networks.{name}.tokens.{}]",
                pn.symbol,
                pn.symbol.to_ascii_lowercase()
            ),
        ));
    }
    let decimals = match (tc.decimals, pn) {
        (Some(d), _) => d,
        (None, Some(pn)) => pn.decimals,
        (None, None) => {
            return Err((
                key("decimals"),
                format!(
                    "is required for the native coin {token} of `{name}` (no preset knows it), e.g. decimals = 18"
                ),
            ));
        }
    };
    if decimals > 24 {
        return Err((
            key("decimals"),
            format!("{decimals} is out of range; use 0..=24"),
        ));
    }
    if let Some(pn) = pn
        && decimals != pn.decimals
    {
        return Err((
            key("decimals"),
            format!(
                "{token} has {} decimals on `{name}`; remove decimals or set it to {}",
                pn.decimals, pn.decimals
            ),
        ));
    }
    // A native coin without a preset: 6 places (or fewer, if the coin has fewer).
    let default_precision = pn.map_or(decimals.min(6), |p| p.precision);
    let (p, s) = rounding(field, tc, decimals, Some(default_precision))?;
    if let Some(price) = tc.usdt_price
        && price <= rust_decimal::Decimal::ZERO
    {
        return Err((
            key("usdt_price"),
            format!("{price} is not a price; use USDT per 1 {token}, e.g. usdt_price = \"0.25\""),
        ));
    }
    Ok(TokenInfo {
        token,
        contract: String::new(),
        decimals,
        native: true,
        amount_precision: p,
        amount_step: s,
        usdt_price: tc.usdt_price,
    })
}

/// A token's `amount_precision` / `amount_step`, validated (`default_precision` for natives:
/// the step then defaults to one unit there). `None` = the global keys.
fn rounding(
    field: &str,
    tc: &TokenConfig,
    decimals: u32,
    default_precision: Option<u32>,
) -> Result<(Option<u32>, Option<rust_decimal::Decimal>), (String, String)> {
    let key = |f: &str| format!("{field}.{f}");
    let precision = tc.amount_precision.or(default_precision);
    if let Some(p) = precision
        && p > decimals
    {
        return Err((
            key("amount_precision"),
            format!("{p} places is finer than the token's {decimals} decimals; use 0..={decimals}"),
        ));
    }
    let step = tc.amount_step.or_else(|| {
        precision
            .filter(|_| default_precision.is_some())
            .map(|p| rust_decimal::Decimal::new(1, p))
    });
    if let Some(s) = step {
        if s <= rust_decimal::Decimal::ZERO {
            return Err((
                key("amount_step"),
                format!("{s} must be greater than 0, e.g. 0.01"),
            ));
        }
        if let Some(p) = precision
            && s.normalize().scale() > p
        {
            return Err((
                key("amount_step"),
                format!(
                    "{s} has more places than amount_precision ({p}); use a multiple of 1e-{p}"
                ),
            ));
        }
        if s.normalize().scale() > decimals {
            return Err((
                key("amount_step"),
                format!("{s} is finer than the token's {decimals} decimals"),
            ));
        }
    }
    Ok((precision, step))
}

/// The tokens of one network: the preset's, then the legacy `usdt_contract` / `decimals`,
/// then `tokens.<symbol>`. Errors are (field, message).
pub(super) fn resolve_tokens(
    name: &str,
    kind: NetworkKind,
    preset: Option<&presets::Preset>,
    nc: &NetworkConfig,
) -> Result<Vec<TokenInfo>, (String, String)> {
    // (symbol, contract as written, decimals)
    let mut raw: Vec<(Token, String, Option<u32>)> = preset
        .map(|p| {
            p.tokens
                .iter()
                .map(|t| {
                    (
                        Token::named(t.symbol),
                        t.contract.to_string(),
                        Some(t.decimals),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    // The legacy single-token form (`usdt_contract` and no `tokens`) keeps its meaning: that
    // contract is the network's one token, as before tokens were configurable (a testnet or a
    // private chain has none of the preset's other contracts).
    if nc.usdt_contract.is_some() && nc.tokens.is_empty() {
        raw.retain(|(t, _, _)| *t == Token::USDT);
    }
    let mut set = |token: Token, contract: Option<&String>, decimals: Option<u32>| -> bool {
        match raw.iter_mut().find(|(t, _, _)| *t == token) {
            Some(slot) => {
                if let Some(c) = contract {
                    slot.1 = c.clone();
                }
                if decimals.is_some() {
                    slot.2 = decimals;
                }
                true
            }
            None => match contract {
                Some(c) => {
                    raw.push((token, c.clone(), decimals));
                    true
                }
                None => false,
            },
        }
    };
    if (nc.usdt_contract.is_some() || nc.decimals.is_some())
        && !set(Token::USDT, nc.usdt_contract.as_ref(), nc.decimals)
    {
        return Err((
            "usdt_contract".into(),
            format!("is required: `{name}` has no preset USDT contract"),
        ));
    }
    let mut dropped = Vec::new();
    let mut native: Option<TokenInfo> = None;
    for (symbol, tc) in &nc.tokens {
        let field = format!("tokens.{symbol}");
        network::valid_symbol(symbol).map_err(|e| (field.clone(), e))?;
        let token = Token::named(symbol);
        if tc.native {
            if !tc.enabled {
                continue;
            }
            native = Some(resolve_native(
                name,
                kind,
                preset,
                &field,
                token,
                tc,
                native.as_ref(),
            )?);
            continue;
        }
        if tc.usdt_price.is_some() {
            return Err((
                format!("{field}.usdt_price"),
                format!(
                    "is for native coins only ({token} is priced like USDT through the fiat rates); remove it"
                ),
            ));
        }
        if !tc.enabled {
            dropped.push(token);
            continue;
        }
        if !set(token, tc.contract.as_ref(), tc.decimals) {
            return Err((
                format!("{field}.contract"),
                format!(
                    "is required: {token} has no preset contract on `{name}`; set contract = \"0x…\" (or the chain's address form) and decimals"
                ),
            ));
        }
    }
    raw.retain(|(t, _, _)| !dropped.contains(t));
    let mut tokens = Vec::new();
    for (token, contract, decimals) in raw {
        let sym = token.lower();
        let legacy = token == Token::USDT
            && nc.usdt_contract.is_some()
            && !nc.tokens.keys().any(|k| k.eq_ignore_ascii_case("usdt"));
        let field = |f: &str| {
            if legacy {
                if f == "contract" {
                    "usdt_contract".to_string()
                } else {
                    f.to_string()
                }
            } else {
                format!("tokens.{sym}.{f}")
            }
        };
        let contract = kind
            .parse_address(&contract)
            .map_err(|e| (field("contract"), e.to_string()))?;
        let Some(decimals) = decimals else {
            return Err((
                field("decimals"),
                format!(
                    "is required for {token} on `{name}` (it is checked against the contract at start-up), e.g. decimals = 6"
                ),
            ));
        };
        if decimals > 24 {
            return Err((
                field("decimals"),
                format!("{decimals} is out of range; USDT and USDC use 6 (18 on BSC); use 0..=24"),
            ));
        }
        if tokens.iter().any(|t: &TokenInfo| t.contract == contract) {
            return Err((
                field("contract"),
                format!("{contract} is already the contract of another token of `{name}`"),
            ));
        }
        let tc = nc
            .tokens
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&sym))
            .map(|(_, tc)| tc);
        let (amount_precision, amount_step) = match tc {
            Some(tc) => rounding(&format!("tokens.{sym}"), tc, decimals, None)?,
            None => (None, None),
        };
        tokens.push(TokenInfo {
            token,
            contract,
            decimals,
            native: false,
            amount_precision,
            amount_step,
            usdt_price: None,
        });
    }
    if let Some(n) = native {
        if tokens.iter().any(|t| t.token == n.token) {
            return Err((
                format!("tokens.{}.native", n.token.lower()),
                format!(
                    "{} is a contract token of `{name}` already; the native coin needs a symbol of its own",
                    n.token
                ),
            ));
        }
        tokens.push(n);
    }
    if tokens.is_empty() {
        return Err((
            "tokens".into(),
            format!(
                "`{name}` has no token; add [networks.{name}.tokens.usdt] with contract and decimals"
            ),
        ));
    }
    Ok(tokens)
}
