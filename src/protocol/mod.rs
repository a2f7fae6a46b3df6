//! The merchant protocols (DESIGN §4): epusdt v1, GMPay and EPay, each one file behind the
//! [`MerchantProtocol`] trait, and the registry ([`all`], [`for_id`]) the HTTP router, the rate
//! limiter and the callback builder ask. A protocol owns its routes, the request fields it reads
//! (into a protocol-neutral [`CreateRequest`]), how it names the merchant, its canonical string
//! and signature algorithm, its success reply and its signed callback.
//!
//! A new merchant protocol is one new file here, one line in [`all`] and a variant of
//! [`Protocol`].
//!
//! Must never: do I/O (no database, no HTTP framework: plain params in, JSON values and strings
//! out), compare signatures with `==` (only [`sign::signature_matches`]), format an amount
//! through `f64`, or put a secret into anything it returns.
pub mod epay;
pub mod fields;
pub mod gmpay;
pub mod params;
pub mod v1;

use rust_decimal::Decimal;
use serde_json::Value;

pub use self::{fields::FieldRules, params::Params};
pub use crate::domain::protocol::Protocol;
use crate::{
    crypto::sign::{self, SignAlg, SignMode, SignValue},
    domain::network::{Network, Token},
};

/// Why a merchant's request or a callback could not be handled by a protocol.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// A request field is missing or malformed: the merchant sees `"{field} {problem}"`.
    #[error("{field} {problem}")]
    BadParam { field: String, problem: String },
    /// The request body is neither JSON nor a form (answered as a bad `request`).
    #[error("multipart bodies are not supported; send JSON or a urlencoded form")]
    Multipart,
    #[error("body is not a JSON object ({0})")]
    NotJsonObject(serde_json::Error),
    #[error("{key}: {source}")]
    BadString {
        key: String,
        source: serde_json::Error,
    },
    /// The order's notify URL does not parse (EPay puts the callback in its query).
    #[error("{0}")]
    CallbackUrl(#[from] url::ParseError),
    /// The request cannot name a merchant (a missing, non-integral or garbage `pid`): upstream
    /// answers a signature error, and so do we. The text is for the log.
    #[error("{0}")]
    NoMerchant(String),
}

impl ProtocolError {
    pub fn bad_param(field: &str, problem: impl std::fmt::Display) -> Self {
        Self::BadParam {
            field: field.to_string(),
            problem: problem.to_string(),
        }
    }
}

/// What a request is for: the canonical string of a cancel keeps amounts verbatim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Cancel,
}

/// How a request names its merchant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MerchantRef {
    /// The gateway's default merchant (`api_auth_token`).
    Default,
    /// A merchant by `pid`.
    Pid(i64),
}

/// The outcome of checking a request's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    Valid,
    /// The request carries no signature.
    Missing,
    /// The signature does not match; the canonical string is for the log (never the secret).
    Mismatch {
        canonical: String,
    },
    /// The request holds a value that cannot be signed (a boolean, array or object; a number
    /// beyond `f64`): a signature error, as upstream. The reason is for the log.
    Refused {
        reason: String,
    },
}

/// A create-order request in protocol-neutral terms, every field validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest {
    pub order_id: String,
    /// Fiat amount.
    pub amount: Decimal,
    pub notify_url: String,
    pub redirect_url: String,
    pub currency: String,
    pub network: Network,
    /// The token paid (USDT, USDC), chosen with the network.
    pub token: Token,
    pub name: String,
    /// Seconds; `None` = `order_expiration_time`.
    pub timeout_secs: Option<i64>,
    /// EPay's `type` as sent (trimmed; empty for other protocols), echoed in its result.
    pub epay_type: String,
}

/// The GMPay replay guard's inputs, as the request carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayStamp<'a> {
    pub timestamp: Option<&'a str>,
    pub nonce: Option<&'a str>,
}

/// A created order, as a create reply shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderView<'a> {
    pub trade_id: &'a str,
    pub order_id: &'a str,
    /// As stored (its scale is the merchant's, e.g. `1.00`).
    pub amount: Decimal,
    pub actual_amount: Decimal,
    pub currency: &'a str,
    pub network: Network,
    pub token: &'a str,
    /// The order's own `trade_type` (`usdc.base`).
    pub trade_type: String,
    pub address: &'a str,
    pub status: i16,
    pub expires_at: i64,
    /// The checkout page of this order.
    pub payment_url: String,
}

/// A placeholder (no token/network yet: the payer chooses), as a create reply shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceholderView<'a> {
    pub trade_id: &'a str,
    pub order_id: &'a str,
    pub amount: Decimal,
    pub currency: &'a str,
    /// Upstream's 4: waiting for the payer to choose token and network.
    pub status: i16,
    pub expires_at: i64,
    pub payment_url: String,
}

/// A create reply's success shape. Errors share one envelope for every protocol
/// (`http::reply`), so they are not the protocols' business.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The envelope with this `data`.
    Data(Value),
    /// A plain 302 Found to this URL.
    Redirect(String),
}

/// A paid order, as a callback shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackOrder<'a> {
    pub pid: i64,
    pub trade_id: &'a str,
    pub order_id: &'a str,
    pub amount: Decimal,
    pub actual_amount: Decimal,
    pub currency: &'a str,
    pub token: &'a str,
    /// `None` when the stored network is not known (signed as empty).
    pub network: Option<Network>,
    pub address: &'a str,
    pub name: &'a str,
    pub block_transaction_id: &'a str,
    pub status: i64,
    pub notify_url: &'a str,
    /// EPay's `type` as the create sent it (empty: none was sent).
    pub epay_type: &'a str,
}

/// The request a callback makes: a JSON POST to `url`, or a GET of `url` (EPay puts the params
/// in the query) when `json` is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackRequest {
    pub url: String,
    pub json: Option<String>,
    /// The answer that means "delivered".
    pub expect: &'static str,
}

/// One merchant protocol.
pub trait MerchantProtocol: Send + Sync + 'static {
    /// The value stored in `orders.protocol`.
    fn id(&self) -> Protocol;

    /// The create-order route.
    fn create_path(&self) -> &'static str;

    /// Further paths of the create route (another upstream's spelling of it).
    fn create_aliases(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether the create route also answers GET (EPay's form redirects do).
    fn create_accepts_get(&self) -> bool {
        false
    }

    /// The cancel route this protocol serves, if any (several protocols may share one).
    fn cancel_path(&self) -> Option<&'static str> {
        None
    }

    /// Whether a request to the shared cancel route is this protocol's.
    fn claims_cancel(&self, _p: &Params) -> bool {
        false
    }

    /// The parameter that carries the signature.
    fn signature_field(&self) -> &'static str {
        "signature"
    }

    /// Checks made before the merchant is looked up, so their answer cannot tell a known merchant
    /// from an unknown one.
    fn check_envelope(&self, _p: &Params) -> Result<(), ProtocolError> {
        Ok(())
    }

    /// Which merchant the request names.
    fn merchant(&self, p: &Params) -> Result<MerchantRef, ProtocolError>;

    /// The canonical string the request's signature covers.
    fn canonical(&self, p: &Params, action: Action) -> String;

    /// Signs a canonical string with the merchant's secret (lower-case hex).
    fn sign(&self, canonical: &str, secret: &str) -> String;

    /// Checks the request's signature in constant time.
    fn verify(&self, p: &Params, action: Action, secret: &str) -> Verification {
        let Some(provided) = p.get(self.signature_field()) else {
            return Verification::Missing;
        };
        let canonical = self.canonical(p, action);
        if sign::signature_matches(&self.sign(&canonical, secret), provided) {
            Verification::Valid
        } else {
            Verification::Mismatch { canonical }
        }
    }

    /// Checks the request's signature under the merchant's GMPay sign mode: `Ok` with the
    /// algorithm the request was signed with (`None` = the protocol's own, the only one it
    /// accepts), else why not. Protocols without sign modes ignore `mode`.
    fn verify_mode(
        &self,
        p: &Params,
        action: Action,
        secret: &str,
        _mode: SignMode,
    ) -> Result<Option<SignAlg>, Verification> {
        match self.verify(p, action, secret) {
            Verification::Valid => Ok(None),
            other => Err(other),
        }
    }

    /// The protocol whose callbacks an order created by this request gets (`orders.protocol`).
    fn order_protocol(&self, _p: &Params) -> Protocol {
        self.id()
    }

    /// The HTTP status of an error reply with this envelope `status_code` (v1: always 200).
    fn error_status(&self, _code: u32) -> u16 {
        200
    }

    /// Reads and validates the create request's fields, in the order their errors are reported.
    fn parse_create(&self, p: &Params, rules: &FieldRules) -> Result<CreateRequest, ProtocolError>;

    /// The replay guard's inputs, for protocols that have one (checked after the fields, so a
    /// typo does not burn the merchant's nonce).
    fn replay_stamp<'a>(&self, _p: &'a Params) -> Option<ReplayStamp<'a>> {
        None
    }

    /// The success reply to a create request.
    fn reply(&self, o: &OrderView<'_>) -> Reply;

    /// Whether the create request asks for a placeholder the payer completes on the checkout
    /// (GMPay: neither `token` nor `network`; only one of them is a bad request).
    fn placeholder(&self, _p: &Params) -> Result<bool, ProtocolError> {
        Ok(false)
    }

    /// The success reply to a create request that made a placeholder: upstream's shape with
    /// no address, `actual_amount` 0 and an empty token.
    fn placeholder_reply(&self, o: &PlaceholderView<'_>) -> Reply {
        let mut map = serde_json::Map::new();
        map.insert("trade_id".into(), o.trade_id.into());
        map.insert("order_id".into(), o.order_id.into());
        map.insert("amount".into(), raw_num(&o.amount.to_string()));
        map.insert("currency".into(), o.currency.into());
        map.insert("actual_amount".into(), Value::from(0));
        map.insert("receive_address".into(), "".into());
        map.insert("token".into(), "".into());
        map.insert("network".into(), "".into());
        map.insert("status".into(), o.status.into());
        map.insert("expiration_time".into(), o.expires_at.into());
        map.insert("payment_url".into(), o.payment_url.clone().into());
        Reply::Data(Value::Object(map))
    }

    /// The signed callback for a paid order.
    fn callback(
        &self,
        o: &CallbackOrder<'_>,
        secret: &str,
    ) -> Result<CallbackRequest, ProtocolError>;

    /// The signed callback, signed with `alg` when the order recorded one (`orders.sign_alg`:
    /// the algorithm its create request was signed with); protocols with one algorithm ignore it.
    fn callback_signed(
        &self,
        o: &CallbackOrder<'_>,
        secret: &str,
        _alg: Option<SignAlg>,
    ) -> Result<CallbackRequest, ProtocolError> {
        self.callback(o, secret)
    }

    /// Whether the merchant's answer to a callback means "delivered": by default a 2xx whose
    /// body is exactly `expect` (surrounding whitespace aside).
    fn acknowledged(&self, http_status: u16, body: &str, expect: &str) -> bool {
        (200..300).contains(&http_status) && body.trim() == expect
    }
}

/// GMWalletApp's acknowledgement of a callback (GMPay and EPay): exactly HTTP 200 whose body
/// is `ok` or `success` in any case, surrounding whitespace aside.
pub fn ok_or_success(http_status: u16, body: &str) -> bool {
    let body = body.trim();
    http_status == 200 && (body.eq_ignore_ascii_case("ok") || body.eq_ignore_ascii_case("success"))
}

static ALL: [&dyn MerchantProtocol; 3] = [&v1::V1, &gmpay::GmPay, &epay::EPay];

/// Every merchant protocol the gateway serves.
pub fn all() -> &'static [&'static dyn MerchantProtocol] {
    &ALL
}

/// The protocol behind an `orders.protocol` value.
pub fn for_id(id: Protocol) -> Option<&'static dyn MerchantProtocol> {
    all().iter().copied().find(|p| p.id() == id)
}

/// The protocol a request to the shared cancel route speaks.
pub fn for_cancel(p: &Params) -> Option<&'static dyn MerchantProtocol> {
    all().iter().copied().find(|proto| proto.claims_cancel(p))
}

/// The cancel routes, each once.
pub fn cancel_paths() -> Vec<&'static str> {
    let mut paths: Vec<&'static str> = Vec::new();
    for path in all().iter().filter_map(|p| p.cancel_path()) {
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    paths
}

/// Route templates of the signed merchant API (every create and cancel route).
pub fn merchant_routes() -> Vec<&'static str> {
    let mut routes: Vec<&'static str> = all().iter().map(|p| p.create_path()).collect();
    routes.extend(
        all()
            .iter()
            .flat_map(|p| p.create_aliases().iter().copied()),
    );
    routes.extend(cancel_paths());
    routes
}

/// Whether `route` is part of the signed merchant API. These routes get no per-(IP, route) limit
/// by default — merchants' servers create many orders from one IP, and the per-merchant limit
/// (counted after the signature is verified) is the one meant to bind for them. They still count
/// toward the per-IP limit, which bounds unsigned junk. An entry in `rate_limit_routes` overrides
/// this.
pub fn is_merchant_route(route: &str) -> bool {
    all().iter().any(|p| {
        p.create_path() == route
            || p.create_aliases().contains(&route)
            || p.cancel_path() == Some(route)
    })
}

/// A canonical decimal text as a JSON number (canonical decimal text is valid JSON number text).
fn raw_num(text: &str) -> Value {
    serde_json::from_str::<Value>(text).unwrap_or(Value::Null)
}

/// The create reply's `data` every JSON protocol starts from.
fn order_data(o: &OrderView<'_>) -> serde_json::Map<String, Value> {
    let mut map = serde_json::Map::new();
    map.insert("trade_id".into(), o.trade_id.into());
    map.insert("order_id".into(), o.order_id.into());
    map.insert("amount".into(), raw_num(&o.amount.to_string()));
    map.insert(
        "actual_amount".into(),
        raw_num(&o.actual_amount.to_string()),
    );
    map.insert("token".into(), o.address.into());
    map.insert("expiration_time".into(), o.expires_at.into());
    map.insert("payment_url".into(), o.payment_url.clone().into());
    map
}

/// The callback of the JSON protocols: every field is signed (with `signature` left out of the
/// canonical string) and sent, amounts as JSON numbers written from their shortest decimal text
/// (never computed through f64), plus the `signature`; delivered means the answer `ok`.
fn signed_json_callback(
    proto: &dyn MerchantProtocol,
    fields: &[(&str, SignValue<'_>)],
    notify_url: &str,
    secret: &str,
) -> CallbackRequest {
    json_callback(fields, notify_url, |canonical| {
        proto.sign(canonical, secret)
    })
}

/// [`signed_json_callback`] with the signature made by `sign` from the canonical string.
fn json_callback(
    fields: &[(&str, SignValue<'_>)],
    notify_url: &str,
    sign: impl FnOnce(&str) -> String,
) -> CallbackRequest {
    let canonical = sign::canonical_string(fields, &["signature"]);
    let mut body = serde_json::Map::new();
    for &(key, value) in fields {
        let value = match value {
            SignValue::Str(s) => Value::from(s),
            SignValue::Dec(d) => decimal_number(d),
            SignValue::Int(i) => Value::from(i),
        };
        body.insert(key.into(), value);
    }
    body.insert("signature".into(), sign(&canonical).into());
    CallbackRequest {
        url: notify_url.to_string(),
        json: Some(Value::Object(body).to_string()),
        expect: "ok",
    }
}

/// A decimal as a JSON number, from its shortest decimal text.
fn decimal_number(d: Decimal) -> Value {
    raw_num(&d.normalize().to_string())
}

#[cfg(test)]
pub(crate) mod test_support;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_is_registered_once() {
        for id in [Protocol::V1, Protocol::GmPay, Protocol::EPay] {
            assert_eq!(for_id(id).map(|p| p.id()), Some(id));
            assert_eq!(all().iter().filter(|p| p.id() == id).count(), 1);
        }
    }

    #[test]
    fn merchant_routes_are_todays() {
        assert_eq!(
            merchant_routes(),
            [
                "/api/v1/order/create-transaction",
                "/payments/gmpay/v1/order/create-transaction",
                "/payments/epay/v1/order/create-transaction/submit.php",
                "/submit.php",
                "/api/v1/order/cancel-transaction",
            ]
        );
        for r in merchant_routes() {
            assert!(is_merchant_route(r), "{r}");
        }
        assert!(!is_merchant_route("/pay/check-status/{trade_id}"));
        assert!(!is_merchant_route("/health"));
        assert_eq!(cancel_paths(), ["/api/v1/order/cancel-transaction"]);
    }

    #[test]
    fn cancel_is_v1_without_pid_and_gmpay_with_one() {
        let p = Params::from_query(b"trade_id=1&signature=x");
        assert_eq!(for_cancel(&p).map(|p| p.id()), Some(Protocol::V1));
        let p = Params::from_query(b"trade_id=1&signature=x&pid=1001");
        assert_eq!(for_cancel(&p).map(|p| p.id()), Some(Protocol::GmPay));
        // An empty pid counts as absent, as before.
        let p = Params::from_query(b"trade_id=1&signature=x&pid=");
        assert_eq!(for_cancel(&p).map(|p| p.id()), Some(Protocol::V1));
    }
}
