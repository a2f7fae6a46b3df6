//! [`Networks`]: the networks and tokens of one configuration — what merchants may ask for,
//! how each is shown, and which contract is which token.

use super::{Network, NetworkKind, Token, presets};

/// One token of a network: a contract token (USDT, USDC) or the chain's native coin.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenInfo {
    pub token: Token,
    /// Normalised like wallets' addresses (EVM lower-case `0x…`, TRON base58); empty for the
    /// native coin.
    pub contract: String,
    pub decimals: u32,
    /// The chain's own coin (TRX, ETH, BNB): paid by value transfers, not by a contract.
    pub native: bool,
    /// Decimal places of payable amounts (`None`: the global `amount_precision`).
    pub amount_precision: Option<u32>,
    /// Step between candidate amounts of one slot (`None`: the global `amount_step`).
    pub amount_step: Option<rust_decimal::Decimal>,
    /// USDT per 1 coin forced by the configuration (`usdt_price`), used when no admin-set
    /// price exists. Natives only.
    pub usdt_price: Option<rust_decimal::Decimal>,
}

/// What [`TokenInfo::contract`] is stored as on the transfers of a native coin.
pub const NATIVE_CONTRACT: &str = "native";

/// One network of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInfo {
    pub network: Network,
    pub kind: NetworkKind,
    pub chain_id: Option<u64>,
    pub display_name: String,
    /// `{}` is replaced by the transaction hash.
    pub explorer_tx_url: Option<String>,
    pub tokens: Vec<TokenInfo>,
    /// Watched: enabled and with `rpc_urls`.
    pub watched: bool,
    /// Merchants may select it: it has a `[networks.<name>]` section, or it is one of the four
    /// networks every order could name before networks were configurable (tron, ethereum,
    /// bsc, polygon). Other presets must be configured first.
    pub selectable: bool,
    /// BEpusdt's name for the network in a `trade_type` (`trc20`), when not its own.
    pub trade_alias: Option<String>,
    /// Further names merchants send for it (lower-case).
    pub aliases: Vec<String>,
}

impl NetworkInfo {
    /// The network as the preset describes it (not watched).
    pub fn from_preset(p: &presets::Preset) -> Self {
        Self {
            network: Network::named(p.name),
            kind: p.kind,
            chain_id: p.chain_id,
            display_name: p.display_name.to_string(),
            explorer_tx_url: Some(p.explorer_tx_url.to_string()),
            tokens: p
                .tokens
                .iter()
                .map(|t| TokenInfo {
                    token: Token::named(t.symbol),
                    contract: p
                        .kind
                        .parse_address(t.contract)
                        .unwrap_or_else(|_| t.contract.to_string()),
                    decimals: t.decimals,
                    ..Default::default()
                })
                .collect(),
            watched: false,
            selectable: LEGACY.contains(&p.name),
            trade_alias: p.trade_alias.map(str::to_string),
            aliases: p.aliases.iter().map(|a| a.to_string()).collect(),
        }
    }

    pub fn token(&self, token: Token) -> Option<&TokenInfo> {
        self.tokens.iter().find(|t| t.token == token)
    }

    /// The `trade_type` of `token` here: `usdt.trc20`, `usdc.base`; a native coin's is
    /// `<network>.<coin>` as BEpusdt writes it (`tron.trx`, `ethereum.eth`, `bsc.bnb`).
    pub fn trade_type(&self, token: Token) -> String {
        if self.token(token).is_some_and(|t| t.native) {
            return format!("{}.{}", self.network, token.lower());
        }
        let net = self.trade_alias.as_deref().unwrap_or(self.network.as_str());
        format!("{}.{net}", token.lower())
    }

    /// The native coin, when configured.
    pub fn native(&self) -> Option<&TokenInfo> {
        self.tokens.iter().find(|t| t.native)
    }

    fn answers_to(&self, s: &str) -> bool {
        self.network.as_str() == s
            || self.trade_alias.as_deref() == Some(s)
            || self.aliases.iter().any(|a| a == s)
    }
}

/// What an order is paid in: a token on a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Asset {
    pub network: Network,
    pub token: Token,
}

/// Why a merchant's network/token selection is refused. The message names what is offered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnknownAsset {
    #[error("`{asked}` is not a network or trade type here; use one of {offered}")]
    Unknown { asked: String, offered: String },
    #[error("{token} is not configured on {network}; use one of {offered}")]
    Token {
        token: String,
        network: Network,
        offered: String,
    },
    #[error(
        "{network} is not configured on this gateway (no [networks.{network}] section); use one of {offered}"
    )]
    NotConfigured { network: Network, offered: String },
    #[error(
        "`{asked}` is a native coin that is not configured here (it needs [networks.{network}.tokens.{coin}] native = true and a price); use one of {offered}"
    )]
    Native {
        asked: String,
        network: Network,
        coin: String,
        offered: String,
    },
}

/// The networks orders could name before networks were configurable: always selectable.
const LEGACY: [&str; 4] = ["tron", "ethereum", "bsc", "polygon"];

/// Native coin symbols BEpusdt's `<network>.<coin>` trade types name.
const NATIVE_SYMBOLS: [&str; 9] = [
    "trx", "eth", "bnb", "pol", "matic", "avax", "sol", "okb", "xpl",
];

/// The networks of one configuration, in display order (presets first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Networks {
    list: Vec<NetworkInfo>,
}

impl Default for Networks {
    fn default() -> Self {
        Self::presets()
    }
}

impl Networks {
    pub fn new(list: Vec<NetworkInfo>) -> Self {
        Self { list }
    }

    /// Every preset, none watched (a configuration without `[networks]`).
    pub fn presets() -> Self {
        Self::new(
            presets::PRESETS
                .iter()
                .map(NetworkInfo::from_preset)
                .collect(),
        )
    }

    pub fn iter(&self) -> impl Iterator<Item = &NetworkInfo> {
        self.list.iter()
    }

    /// The watched networks, in display order.
    pub fn watched(&self) -> impl Iterator<Item = &NetworkInfo> {
        self.list.iter().filter(|n| n.watched)
    }

    pub fn get(&self, n: Network) -> Option<&NetworkInfo> {
        self.list.iter().find(|i| i.network == n)
    }

    /// The scanner family of `n`; a network this configuration does not know (a stored row of
    /// a removed section) is taken by its preset, else as EVM.
    pub fn kind(&self, n: Network) -> NetworkKind {
        self.get(n)
            .map(|i| i.kind)
            .or_else(|| presets::preset(n.as_str()).map(|p| p.kind))
            .unwrap_or(NetworkKind::Evm)
    }

    /// The human label of `n` (its `display_name`; the name for an unknown network).
    pub fn label(&self, n: Network) -> String {
        self.get(n)
            .map(|i| i.display_name.clone())
            .unwrap_or_else(|| n.as_str().to_string())
    }

    pub fn token(&self, n: Network, token: Token) -> Option<&TokenInfo> {
        self.get(n).and_then(|i| i.token(token))
    }

    /// The `trade_type` of an asset (`usdt.trc20`, `usdc.arbitrum`).
    pub fn trade_type(&self, a: Asset) -> String {
        match self.get(a.network) {
            Some(i) => i.trade_type(a.token),
            None => format!("{}.{}", a.token.lower(), a.network),
        }
    }

    /// The explorer link of a transaction, when the network has one.
    pub fn explorer_tx_url(&self, n: Network, tx: &str) -> Option<String> {
        self.get(n)?
            .explorer_tx_url
            .as_deref()
            .map(|u| u.replace("{}", tx))
    }

    /// Normalises and validates a receive address of `n`.
    pub fn parse_address(
        &self,
        n: Network,
        s: &str,
    ) -> Result<String, super::super::address::AddressError> {
        self.kind(n).parse_address(s)
    }

    /// A network by its name or any alias (`binance`, `trc20`, `matic`; case-insensitive).
    pub fn network(&self, s: &str) -> Option<Network> {
        let s = s.trim().to_ascii_lowercase();
        self.list
            .iter()
            .find(|i| i.answers_to(&s))
            .map(|i| i.network)
    }

    /// [`Networks::network`] among the networks that may be used here (`selectable`: the four
    /// legacy ones and every configured one) — what wallets and orders may name.
    pub fn usable(&self, s: &str) -> Option<Network> {
        self.network(s)
            .filter(|n| self.get(*n).is_some_and(|i| i.selectable))
    }

    /// The names of the usable networks, for error messages.
    pub fn usable_names(&self) -> String {
        self.list
            .iter()
            .filter(|i| i.selectable)
            .map(|i| i.network.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The trade types offered, for error messages: those of the watched networks, or of every
    /// known network when none is watched.
    pub fn offered(&self) -> String {
        let watched: Vec<&NetworkInfo> = self.watched().collect();
        let list: Vec<&NetworkInfo> = if watched.is_empty() {
            self.list.iter().filter(|i| i.selectable).collect()
        } else {
            watched
        };
        list.iter()
            .flat_map(|i| i.tokens.iter().map(|t| i.trade_type(t.token)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn is_symbol(&self, s: &str) -> Option<Token> {
        self.list
            .iter()
            .flat_map(|i| i.tokens.iter())
            .map(|t| t.token)
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
    }

    fn pick(&self, network: Network, token: Token) -> Result<Asset, UnknownAsset> {
        if !self.get(network).is_some_and(|i| i.selectable) {
            return Err(UnknownAsset::NotConfigured {
                network,
                offered: self.offered(),
            });
        }
        match self.token(network, token) {
            Some(_) => Ok(Asset { network, token }),
            None => Err(UnknownAsset::Token {
                token: token.to_string(),
                network,
                offered: self.offered(),
            }),
        }
    }

    /// What a merchant's `trade_type` / network field selects: `<token>.<network or alias>`
    /// (`usdt.trc20`, `usdc.base`; `-` and `_` work as the dot), the legacy
    /// `<network>.<token>` (`trc20.usdt`), or a bare network (`tron`, `binance`: its USDT, or
    /// its only token). Case-insensitive. Never interns what it is given.
    pub fn asset(&self, s: &str) -> Result<Asset, UnknownAsset> {
        let s = s.trim().to_ascii_lowercase();
        if let Some(n) = self.network(&s) {
            let info = self.get(n).expect("found by network()");
            let token = match info.token(Token::USDT) {
                Some(_) => Token::USDT,
                None => match info.tokens.as_slice() {
                    [only] => only.token,
                    _ => Token::USDT,
                },
            };
            return self.pick(n, token);
        }
        for sep in ['.', '-', '_'] {
            let Some((a, b)) = s.split_once(sep) else {
                continue;
            };
            if let (Some(token), Some(n)) = (self.is_symbol(a), self.network(b)) {
                return self.pick(n, token);
            }
            if let Some(n) = self.network(a) {
                if let Some(token) = self.is_symbol(b) {
                    return self.pick(n, token);
                }
                if NATIVE_SYMBOLS.contains(&b) {
                    return Err(UnknownAsset::Native {
                        asked: s.clone(),
                        network: n,
                        coin: b.to_string(),
                        offered: self.offered(),
                    });
                }
            }
            if self.is_symbol(a).is_some() || valid_token_like(a) {
                // `usdt.nowhere`: the network is what is wrong.
                break;
            }
        }
        Err(UnknownAsset::Unknown {
            asked: s,
            offered: self.offered(),
        })
    }

    /// GMPay's `token` + `network` pair (and EPay's): the same selection as
    /// [`Networks::asset`] for `<token>.<network>`.
    pub fn asset_of(&self, token: &str, network: &str) -> Result<Asset, UnknownAsset> {
        let t = token.trim();
        let n = network.trim().to_ascii_lowercase();
        // The network may be written as a trade type too (`usdt.erc20`): its network counts.
        let Some(net) = self
            .network(&n)
            .or_else(|| self.asset(&n).ok().map(|a| a.network))
        else {
            return Err(UnknownAsset::Unknown {
                asked: n,
                offered: self.offered(),
            });
        };
        match self.is_symbol(t) {
            Some(token) => self.pick(net, token),
            None if NATIVE_SYMBOLS.contains(&t.to_ascii_lowercase().as_str()) => {
                Err(UnknownAsset::Native {
                    asked: format!("{net}.{}", t.to_ascii_lowercase()),
                    network: net,
                    coin: t.to_ascii_lowercase(),
                    offered: self.offered(),
                })
            }
            None => Err(UnknownAsset::Token {
                token: t.to_ascii_uppercase(),
                network: net,
                offered: self.offered(),
            }),
        }
    }

    /// The token whose contract is `contract` on `n` (normalised form).
    pub fn token_by_contract(&self, n: Network, contract: &str) -> Option<Token> {
        self.get(n)?
            .tokens
            .iter()
            .find(|t| !t.native && t.contract == contract)
            .map(|t| t.token)
    }
}

fn valid_token_like(s: &str) -> bool {
    matches!(s, "usdt" | "usdc")
}
