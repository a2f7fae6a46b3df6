//! Networks and tokens as data (DESIGN §6): [`Network`] and [`Token`] are cheap `Copy` handles
//! (interned names), [`NetworkKind`] the scanner family, [`presets`] the built-in networks, and
//! [`Networks`] the registry resolved from the configuration — display names, chain ids, token
//! contracts, and the parsing of what merchants send (`usdt.trc20`, `usdc.base`, `binance`, …).
//!
//! There is no process-global registry: every `App` carries its own (tests run several with
//! different configurations in one process). Only the *names* are interned process-wide, and
//! only names from the configuration or the database are: merchant input is looked up in a
//! registry and never interned. Pure data; never performs I/O.

use std::{
    collections::HashSet,
    fmt,
    sync::{Mutex, OnceLock},
};

use serde::{Deserialize, Serialize};

pub mod presets;
mod registry;

pub use registry::{Asset, NATIVE_CONTRACT, NetworkInfo, Networks, TokenInfo, UnknownAsset};

/// Longest network name: the `network` columns are 16 characters wide.
pub const MAX_NAME_LEN: usize = 16;
/// Longest token symbol: `orders.token` is 16 characters wide.
pub const MAX_SYMBOL_LEN: usize = 16;

fn intern(pool: &'static OnceLock<Mutex<HashSet<&'static str>>>, s: &str) -> &'static str {
    let pool = pool.get_or_init(|| Mutex::new(HashSet::new()));
    let mut pool = pool
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(known) = pool.get(s) {
        return known;
    }
    let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
    pool.insert(leaked);
    leaked
}

static NETWORK_NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
static TOKEN_SYMBOLS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();

/// A chain the gateway can watch, by its canonical (configured) name: `tron`, `ethereum`,
/// `arbitrum`, `mychain`, … Its properties live in a [`Networks`] registry.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Network(&'static str);

impl Network {
    pub const TRON: Network = Network("tron");
    pub const ETHEREUM: Network = Network("ethereum");
    pub const BSC: Network = Network("bsc");
    pub const POLYGON: Network = Network("polygon");
    pub const ARBITRUM: Network = Network("arbitrum");
    pub const BASE: Network = Network("base");

    /// The handle of a canonical name from the configuration or the database (lower-case).
    /// Interns the name: never call it with merchant input — use [`Networks::network`].
    pub fn named(name: &str) -> Network {
        match presets::preset(name) {
            Some(p) => Network(p.name),
            None => Network(intern(&NETWORK_NAMES, name)),
        }
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Network({})", self.0)
    }
}

impl Serialize for Network {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for Network {
    /// Only our own data (jobs, stored rows) is deserialized into a handle.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        valid_name(&s).map_err(serde::de::Error::custom)?;
        Ok(Network::named(&s))
    }
}

/// Is `s` usable as a network name (`[networks.<name>]`)? Lower-case ASCII letters, digits,
/// `-` and `_`, starting with a letter, at most [`MAX_NAME_LEN`] characters.
pub fn valid_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a network name: use 1..={MAX_NAME_LEN} lower-case letters, digits, `-` or `_`, starting with a letter"
        ))
    }
}

/// A token symbol, upper-case: `USDT`, `USDC`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(&'static str);

impl Token {
    pub const USDT: Token = Token("USDT");
    pub const USDC: Token = Token("USDC");

    /// The handle of a symbol from the configuration or the database (any case). Interns it:
    /// never call it with merchant input — use [`Networks::asset`].
    pub fn named(symbol: &str) -> Token {
        let upper = symbol.trim().to_ascii_uppercase();
        match upper.as_str() {
            "USDT" => Token::USDT,
            "USDC" => Token::USDC,
            _ => Token(intern(&TOKEN_SYMBOLS, &upper)),
        }
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// Lower-case, as in a `trade_type` (`usdc.base`).
    pub fn lower(self) -> String {
        self.0.to_ascii_lowercase()
    }
}

/// USDT: what an order is paid in when nothing else is said.
impl Default for Token {
    fn default() -> Self {
        Token::USDT
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({})", self.0)
    }
}

impl Serialize for Token {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

/// Is `s` usable as a token symbol (`[networks.<name>.tokens.<symbol>]`)?
pub fn valid_symbol(s: &str) -> Result<(), String> {
    let ok =
        !s.is_empty() && s.len() <= MAX_SYMBOL_LEN && s.chars().all(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not a token symbol: use 1..={MAX_SYMBOL_LEN} ASCII letters or digits, e.g. usdt"
        ))
    }
}

/// Which scanner family watches a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkKind {
    /// JSON-RPC, ERC-20 `Transfer` logs and native value transfers (`chain::evm`).
    Evm,
    /// java-tron's FullNode HTTP API, TRC-20 (`chain::tron`).
    Tron,
    /// Solana JSON-RPC, SPL tokens (`chain::solana`, when built in).
    Solana,
}

impl NetworkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkKind::Evm => "evm",
            NetworkKind::Tron => "tron",
            NetworkKind::Solana => "solana",
        }
    }

    pub fn parse(s: &str) -> Option<NetworkKind> {
        match s.trim().to_ascii_lowercase().as_str() {
            "evm" => Some(NetworkKind::Evm),
            "tron" => Some(NetworkKind::Tron),
            "solana" => Some(NetworkKind::Solana),
            _ => None,
        }
    }

    /// Normalises and validates a receive address (or token contract) of this family.
    pub fn parse_address(self, s: &str) -> Result<String, super::address::AddressError> {
        match self {
            NetworkKind::Tron => super::address::parse_tron(s),
            NetworkKind::Evm => super::address::parse_evm(s),
            NetworkKind::Solana => super::address::parse_solana(s),
        }
    }
}

impl fmt::Display for NetworkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests;
