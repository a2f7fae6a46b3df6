//! GMPay v1 (GMWalletApp/epusdt): merchants by `pid` (a JSON string, integer or integral float),
//! upstream's canonical string (shared with v1), signed per the merchant's [`SignMode`]: MD5 of
//! the string + secret (upstream's algorithm), HMAC-SHA256 keyed with the secret, or either
//! (`dual`, the default); the order records which one its create request used and its callback
//! is signed the same way. A replay guard (`timestamp` + `nonce`); `token` + `network` select a
//! configured token (USDT, USDC). Replies and callbacks are upstream-shaped (`token` = the coin
//! symbol, the address in `receive_address`, `pid` as a string); business errors answer HTTP
//! 400 and signature errors HTTP 401, both in the usual envelope. `payment_type=Epay` (any
//! case) makes the order an EPay order: its callback is EPay's. GMPay merchants cancel on v1's
//! cancel route, naming their `pid`.
use serde_json::{Value, json};

use super::{
    Action, CallbackOrder, CallbackRequest, CreateRequest, FieldRules, MerchantProtocol,
    MerchantRef, OrderView, Params, Protocol, ProtocolError, ReplayStamp, Reply, Verification,
    fields, json_callback, order_data, v1,
};
use crate::{
    crypto::sign::{self, SignAlg, SignMode, SignValue},
    domain::network::{Network, UnknownAsset},
};

pub const CREATE_PATH: &str = "/payments/gmpay/v1/order/create-transaction";

pub struct GmPay;

/// Upstream's key for a network in GMPay replies and callbacks: BSC is `binance` there.
pub fn network_key(n: Network) -> &'static str {
    match n {
        Network::BSC => "binance",
        other => other.as_str(),
    }
}

impl MerchantProtocol for GmPay {
    fn id(&self) -> Protocol {
        Protocol::GmPay
    }

    fn create_path(&self) -> &'static str {
        CREATE_PATH
    }

    fn cancel_path(&self) -> Option<&'static str> {
        Some(v1::CANCEL_PATH)
    }

    fn claims_cancel(&self, p: &Params) -> bool {
        p.get("pid").is_some()
    }

    fn merchant(&self, p: &Params) -> Result<MerchantRef, ProtocolError> {
        fields::pid(p).map(MerchantRef::Pid)
    }

    fn canonical(&self, p: &Params, _action: Action) -> String {
        v1::request_canonical(p).unwrap_or_default()
    }

    /// The algorithm of orders that recorded none (created before sign modes): HMAC-SHA256.
    fn sign(&self, canonical: &str, secret: &str) -> String {
        sign::hmac_sha256_sign(canonical, secret)
    }

    fn verify(&self, p: &Params, _action: Action, secret: &str) -> Verification {
        match v1::verify_request(p, secret, SignMode::Dual) {
            Ok(_) => Verification::Valid,
            Err(v) => v,
        }
    }

    fn verify_mode(
        &self,
        p: &Params,
        _action: Action,
        secret: &str,
        mode: SignMode,
    ) -> Result<Option<SignAlg>, Verification> {
        v1::verify_request(p, secret, mode).map(Some)
    }

    fn order_protocol(&self, p: &Params) -> Protocol {
        match p.get("payment_type") {
            Some(t) if t.trim().eq_ignore_ascii_case("epay") => Protocol::EPay,
            _ => Protocol::GmPay,
        }
    }

    /// Upstream: a signature error is HTTP 401, every other error HTTP 400.
    fn acknowledged(&self, http_status: u16, body: &str, _expect: &str) -> bool {
        super::ok_or_success(http_status, body)
    }

    fn error_status(&self, code: u32) -> u16 {
        match code {
            200 => 200,
            401 => 401,
            _ => 400,
        }
    }

    fn parse_create(&self, p: &Params, rules: &FieldRules) -> Result<CreateRequest, ProtocolError> {
        // `token` + `network` select the asset as `<token>.<network>` would (USDT when no token).
        let asset = match p.get("token") {
            Some(t) => {
                let network = p.get("network").unwrap_or(rules.default_network);
                rules.networks.asset_of(t, network).map_err(|e| {
                    let field = match e {
                        UnknownAsset::Unknown { .. } => "network",
                        _ => "token",
                    };
                    ProtocolError::bad_param(field, e.to_string())
                })?
            }
            None => fields::asset(p, "network", rules)?,
        };
        Ok(CreateRequest {
            order_id: fields::order_id(p, "order_id")?,
            amount: fields::amount(p, "amount")?,
            notify_url: fields::notify_url(p, "notify_url", rules)?,
            redirect_url: fields::redirect_url(p, "redirect_url", rules)?,
            currency: fields::currency(p, "currency", None)?,
            network: asset.network,
            token: asset.token,
            name: fields::text(p, "name", 128, false)?,
            timeout_secs: fields::timeout(p)?,
            epay_type: String::new(),
        })
    }

    /// Upstream: `token` and `network` both or neither; neither = status 4, the payer chooses.
    fn placeholder(&self, p: &Params) -> Result<bool, ProtocolError> {
        match (p.get("token"), p.get("network")) {
            (None, None) => Ok(true),
            (Some(_), Some(_)) => Ok(false),
            (None, Some(_)) => Err(ProtocolError::bad_param(
                "token",
                "is required with network (send both, or neither to let the payer choose)",
            )),
            (Some(_), None) => Err(ProtocolError::bad_param(
                "network",
                "is required with token (send both, or neither to let the payer choose)",
            )),
        }
    }

    fn replay_stamp<'a>(&self, p: &'a Params) -> Option<ReplayStamp<'a>> {
        Some(ReplayStamp {
            timestamp: p.canonical("timestamp"),
            nonce: p.canonical("nonce"),
        })
    }

    fn reply(&self, o: &OrderView<'_>) -> Reply {
        let mut data = order_data(o);
        data.insert("currency".into(), json!(o.currency));
        data.insert("receive_address".into(), json!(o.address));
        data.insert("token".into(), json!(o.token));
        data.insert("network".into(), json!(network_key(o.network)));
        data.insert("status".into(), json!(o.status));
        Reply::Data(Value::Object(data))
    }

    fn callback(
        &self,
        o: &CallbackOrder<'_>,
        secret: &str,
    ) -> Result<CallbackRequest, ProtocolError> {
        self.callback_signed(o, secret, None)
    }

    /// Upstream's `OrderNotifyResponse` (`pid` as a string, `token` the coin, the address in
    /// `receive_address`) plus `currency` and `network`, signed like every other field.
    fn callback_signed(
        &self,
        o: &CallbackOrder<'_>,
        secret: &str,
        alg: Option<SignAlg>,
    ) -> Result<CallbackRequest, ProtocolError> {
        let network = o.network.map(network_key).unwrap_or("");
        let pid = o.pid.to_string();
        let alg = alg.unwrap_or(SignAlg::HmacSha256);
        Ok(json_callback(
            &[
                ("pid", SignValue::Str(&pid)),
                ("trade_id", SignValue::Str(o.trade_id)),
                ("order_id", SignValue::Str(o.order_id)),
                ("amount", SignValue::Dec(o.amount)),
                ("actual_amount", SignValue::Dec(o.actual_amount)),
                ("currency", SignValue::Str(o.currency)),
                ("token", SignValue::Str(o.token)),
                ("network", SignValue::Str(network)),
                ("receive_address", SignValue::Str(o.address)),
                (
                    "block_transaction_id",
                    SignValue::Str(o.block_transaction_id),
                ),
                ("status", SignValue::Int(o.status)),
            ],
            o.notify_url,
            |canonical| alg.sign(canonical, secret),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Verification, params::Param, test_support::*};

    // hex(HMAC-SHA256(SECRET, "amount=10&currency=USD&network=tron&nonce=abc&notify_url=https://shop.example.com/n&order_id=G1&pid=1001&timestamp=1700000000"))
    const BODY: &str = r#"{"pid":1001,"order_id":"G1","amount":10.00,"currency":"USD","network":"tron","notify_url":"https://shop.example.com/n","timestamp":1700000000,"nonce":"abc","signature":"fd7d4f6f2e63a7688227053207e9f2220ef063dafe1eb66c46f00a3ca4dd496f"}"#;

    fn with_signature(p: &Params, sig: String) -> Params {
        let mut p = p.clone();
        p.0.insert("signature".into(), Param::Text(sig));
        p
    }

    #[test]
    fn signed_request_verifies_per_sign_mode() {
        let p = Params::from_json(BODY.as_bytes()).unwrap();
        assert_eq!(GmPay.merchant(&p).unwrap(), MerchantRef::Pid(1001));
        assert_eq!(
            GmPay.verify(&p, Action::Create, SECRET),
            Verification::Valid
        );
        let tampered = Params::from_json(BODY.replace("\"G1\"", "\"G2\"").as_bytes()).unwrap();
        assert!(matches!(
            GmPay.verify(&tampered, Action::Create, SECRET),
            Verification::Mismatch { .. }
        ));
        let canonical = GmPay.canonical(&p, Action::Create);
        let md5 = with_signature(&p, sign::md5_sign(&canonical, SECRET));
        let hmac = p.clone();
        let v = |p: &Params, mode| GmPay.verify_mode(p, Action::Create, SECRET, mode);
        assert_eq!(v(&hmac, SignMode::Dual), Ok(Some(SignAlg::HmacSha256)));
        assert_eq!(v(&md5, SignMode::Dual), Ok(Some(SignAlg::Md5)));
        assert_eq!(v(&md5, SignMode::Md5), Ok(Some(SignAlg::Md5)));
        assert_eq!(
            v(&hmac, SignMode::HmacSha256),
            Ok(Some(SignAlg::HmacSha256))
        );
        assert!(matches!(
            v(&hmac, SignMode::Md5),
            Err(Verification::Mismatch { .. })
        ));
        assert!(matches!(
            v(&md5, SignMode::HmacSha256),
            Err(Verification::Mismatch { .. })
        ));
        // Exact comparison: the right signature in upper case is refused.
        let upper = with_signature(&p, sign::md5_sign(&canonical, SECRET).to_uppercase());
        assert!(matches!(
            v(&upper, SignMode::Dual),
            Err(Verification::Mismatch { .. })
        ));
        // A boolean field is refused (upstream cannot sign it either).
        let flag =
            Params::from_json(BODY.replacen('{', r#"{"test":false,"#, 1).as_bytes()).unwrap();
        assert!(matches!(
            v(&flag, SignMode::Dual),
            Err(Verification::Refused { .. })
        ));
        let stamp = GmPay.replay_stamp(&p).unwrap();
        assert_eq!(stamp.timestamp, Some("1700000000"));
        assert_eq!(stamp.nonce, Some("abc"));
    }

    #[test]
    fn pid_may_be_a_string_an_integer_or_an_integral_float() {
        for pid in [r#""1001""#, "1001", "1001.0", "1.001e3", r#"" 1001 ""#] {
            let p = Params::from_json(format!(r#"{{"pid":{pid}}}"#).as_bytes()).unwrap();
            assert_eq!(GmPay.merchant(&p).unwrap(), MerchantRef::Pid(1001), "{pid}");
        }
        for pid in [
            r#""abc""#,
            "1001.5",
            r#""1001.0""#,
            r#""""#,
            "null",
            "true",
            "-1",
        ] {
            let p = Params::from_json(format!(r#"{{"pid":{pid}}}"#).as_bytes()).unwrap();
            assert!(
                matches!(GmPay.merchant(&p), Err(ProtocolError::NoMerchant(_))),
                "{pid}"
            );
        }
    }

    #[test]
    fn payment_type_epay_makes_an_epay_order() {
        for (q, want) in [
            ("payment_type=Epay", Protocol::EPay),
            ("payment_type=EPAY", Protocol::EPay),
            ("payment_type=%20epay%20", Protocol::EPay),
            ("payment_type=Gmpay", Protocol::GmPay),
            ("payment_type=alipay", Protocol::GmPay),
            ("", Protocol::GmPay),
        ] {
            assert_eq!(
                GmPay.order_protocol(&Params::from_query(q.as_bytes())),
                want,
                "{q}"
            );
        }
    }

    #[test]
    fn errors_are_http_400_and_signature_errors_401() {
        assert_eq!(GmPay.error_status(401), 401);
        assert_eq!(GmPay.error_status(10009), 400);
        assert_eq!(GmPay.error_status(400), 400);
        assert_eq!(GmPay.error_status(10002), 400);
    }

    #[test]
    fn fields_need_a_currency_and_a_configured_token() {
        let p = Params::from_json(BODY.as_bytes()).unwrap();
        let r = GmPay.parse_create(&p, &rules()).unwrap();
        assert_eq!((r.currency.as_str(), r.network.as_str()), ("USD", "tron"));
        let no_currency =
            Params::from_query(b"order_id=G1&amount=1&notify_url=https://shop.example.com/n");
        assert_eq!(
            GmPay
                .parse_create(&no_currency, &rules())
                .unwrap_err()
                .to_string(),
            "currency is required, e.g. CNY or USD"
        );
        let trx = Params::from_query(b"token=TRX&order_id=");
        let e = GmPay.parse_create(&trx, &rules()).unwrap_err().to_string();
        assert!(
            e.starts_with("token `tron.trx` is a native coin that is not configured here (it needs [networks.tron.tokens.trx] native = true and a price)"),
            "{e}"
        );
        let dai = Params::from_query(b"token=DAI&network=tron&order_id=");
        let e = GmPay.parse_create(&dai, &rules()).unwrap_err().to_string();
        assert!(
            e.starts_with("token DAI is not configured on tron; use one of usdt.trc20, usdc.trc20"),
            "{e}"
        );
        let usdc = Params::from_query(
            b"order_id=G1&amount=1&currency=USD&notify_url=https://shop.example.com/n&network=binance&token=usdc",
        );
        let r = GmPay.parse_create(&usdc, &rules()).unwrap();
        assert_eq!(
            (r.network, r.token),
            (Network::BSC, crate::domain::network::Token::USDC)
        );
        let binance = Params::from_query(
            b"order_id=G1&amount=1&currency=USD&notify_url=https://shop.example.com/n&network=binance",
        );
        assert_eq!(
            GmPay.parse_create(&binance, &rules()).unwrap().network,
            Network::BSC
        );
        assert_eq!(
            GmPay.merchant(&Params::default()).unwrap_err().to_string(),
            "pid is required"
        );
    }

    #[test]
    fn token_and_network_come_both_or_neither() {
        let p = |q: &[u8]| GmPay.placeholder(&Params::from_query(q));
        assert!(p(b"order_id=1").unwrap());
        assert!(p(b"order_id=1&token=&network=").unwrap());
        assert!(!p(b"token=USDT&network=tron").unwrap());
        assert_eq!(
            p(b"network=tron").unwrap_err().to_string(),
            "token is required with network (send both, or neither to let the payer choose)"
        );
        assert!(
            p(b"token=USDT")
                .unwrap_err()
                .to_string()
                .starts_with("network is required")
        );
        // Other protocols never make placeholders.
        assert!(
            !super::super::v1::V1
                .placeholder(&Params::default())
                .unwrap()
        );
    }

    #[test]
    fn reply_is_upstream_shaped() {
        let Reply::Data(data) = GmPay.reply(&view()) else {
            panic!("GMPay answers with data");
        };
        assert_eq!(
            data.to_string(),
            r#"{"actual_amount":5.8333,"amount":42,"currency":"CNY","expiration_time":1700000600,"network":"tron","order_id":"A1","payment_url":"https://pay.example.com/pay/checkout-counter/T1","receive_address":"TWallet","status":1,"token":"USDT","trade_id":"T1"}"#
        );
        let mut bsc = view();
        bsc.network = Network::BSC;
        let Reply::Data(data) = GmPay.reply(&bsc) else {
            panic!("GMPay answers with data");
        };
        assert_eq!(data["network"], "binance");
    }

    #[test]
    fn callback_is_signed_with_the_orders_algorithm() {
        let cb = GmPay.callback(&paid(), SECRET).unwrap();
        assert_eq!(cb.url, "https://shop.example.com/notify?x=1");
        assert_eq!(cb.expect, "ok");
        // hex(HMAC-SHA256(SECRET, "actual_amount=5.8333&amount=42&block_transaction_id=0xabc&currency=CNY&network=tron&order_id=A1&pid=1001&receive_address=TWallet&status=2&token=USDT&trade_id=T1"))
        assert_eq!(
            cb.json.as_deref(),
            Some(
                r#"{"actual_amount":5.8333,"amount":42,"block_transaction_id":"0xabc","currency":"CNY","network":"tron","order_id":"A1","pid":"1001","receive_address":"TWallet","signature":"5ef94ec568fc8a2201d487bbd208637b29ad2259b74763a4b9c2236013877f2a","status":2,"token":"USDT","trade_id":"T1"}"#
            )
        );
        let canonical = "actual_amount=5.8333&amount=42&block_transaction_id=0xabc&currency=CNY&network=tron&order_id=A1&pid=1001&receive_address=TWallet&status=2&token=USDT&trade_id=T1";
        let md5 = GmPay
            .callback_signed(&paid(), SECRET, Some(SignAlg::Md5))
            .unwrap();
        let body: Value = serde_json::from_str(md5.json.as_deref().unwrap()).unwrap();
        assert_eq!(body["signature"], sign::md5_sign(canonical, SECRET));
        let hmac = GmPay
            .callback_signed(&paid(), SECRET, Some(SignAlg::HmacSha256))
            .unwrap();
        assert_eq!(hmac, cb);
    }
}
