//! GMPay v1: merchants by `pid`, HMAC-SHA256 keyed with the merchant's secret over the same
//! canonical string as v1, a replay guard (`timestamp` + `nonce`), USDT only. GMPay merchants
//! cancel on v1's cancel route, naming their `pid`.
use serde_json::{Value, json};

use super::{
    Action, CallbackOrder, CallbackRequest, CreateRequest, FieldRules, MerchantProtocol,
    MerchantRef, OrderView, Params, Protocol, ProtocolError, ReplayStamp, Reply, fields,
    order_data, signed_json_callback, v1,
};
use crate::crypto::sign::{self, SignValue};

pub const CREATE_PATH: &str = "/payments/gmpay/v1/order/create-transaction";

pub struct GmPay;

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

    fn canonical(&self, p: &Params, action: Action) -> String {
        v1::request_canonical(p, action)
    }

    fn sign(&self, canonical: &str, secret: &str) -> String {
        sign::hmac_sha256_sign(canonical, secret)
    }

    fn parse_create(&self, p: &Params, rules: &FieldRules) -> Result<CreateRequest, ProtocolError> {
        if let Some(t) = p.get("token")
            && !t.trim().eq_ignore_ascii_case("usdt")
        {
            return Err(ProtocolError::bad_param(
                "token",
                format!("`{t}` is not supported; only USDT"),
            ));
        }
        Ok(CreateRequest {
            order_id: fields::order_id(p, "order_id")?,
            amount: fields::amount(p, "amount")?,
            notify_url: fields::notify_url(p, "notify_url", rules)?,
            redirect_url: fields::redirect_url(p, "redirect_url", rules)?,
            currency: fields::currency(p, "currency", None)?,
            network: fields::network(p, "network", rules)?,
            name: fields::text(p, "name", 128, false)?,
            timeout_secs: fields::timeout(p)?,
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
        data.insert("network".into(), json!(o.network.as_str()));
        data.insert("status".into(), json!(o.status));
        Reply::Data(Value::Object(data))
    }

    fn callback(
        &self,
        o: &CallbackOrder<'_>,
        secret: &str,
    ) -> Result<CallbackRequest, ProtocolError> {
        let network = o.network.map(|n| n.as_str()).unwrap_or("");
        Ok(signed_json_callback(
            self,
            &[
                ("pid", SignValue::Int(o.pid)),
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
            secret,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Verification, test_support::*};

    // hex(HMAC-SHA256(SECRET, "amount=10&currency=USD&network=tron&nonce=abc&notify_url=https://shop.example.com/n&order_id=G1&pid=1001&timestamp=1700000000"))
    const BODY: &str = r#"{"pid":1001,"order_id":"G1","amount":10.00,"currency":"USD","network":"tron","notify_url":"https://shop.example.com/n","timestamp":1700000000,"nonce":"abc","signature":"fd7d4f6f2e63a7688227053207e9f2220ef063dafe1eb66c46f00a3ca4dd496f"}"#;

    #[test]
    fn signed_request_verifies_and_a_tampered_one_does_not() {
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
        // MD5 (v1's algorithm) over the same string does not pass.
        let md5 = sign::md5_sign(&GmPay.canonical(&p, Action::Create), SECRET);
        let mut forged = p.clone();
        forged
            .0
            .insert("signature".into(), super::super::params::Param::Text(md5));
        assert!(matches!(
            GmPay.verify(&forged, Action::Create, SECRET),
            Verification::Mismatch { .. }
        ));
        let stamp = GmPay.replay_stamp(&p).unwrap();
        assert_eq!(stamp.timestamp, Some("1700000000"));
        assert_eq!(stamp.nonce, Some("abc"));
    }

    #[test]
    fn fields_need_a_currency_and_only_usdt() {
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
        assert_eq!(
            GmPay.parse_create(&trx, &rules()).unwrap_err().to_string(),
            "token `TRX` is not supported; only USDT"
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
    fn reply_adds_currency_address_network_and_status() {
        let Reply::Data(data) = GmPay.reply(&view()) else {
            panic!("GMPay answers with data");
        };
        assert_eq!(
            data.to_string(),
            r#"{"actual_amount":5.8333,"amount":42,"currency":"CNY","expiration_time":1700000600,"network":"tron","order_id":"A1","payment_url":"https://pay.example.com/pay/checkout-counter/T1","receive_address":"TWallet","status":1,"token":"TWallet","trade_id":"T1"}"#
        );
    }

    #[test]
    fn callback_matches_the_known_vector() {
        let cb = GmPay.callback(&paid(), SECRET).unwrap();
        assert_eq!(cb.url, "https://shop.example.com/notify?x=1");
        assert_eq!(cb.expect, "ok");
        // hex(HMAC-SHA256(SECRET, "actual_amount=5.8333&amount=42&block_transaction_id=0xabc&currency=CNY&network=tron&order_id=A1&pid=1001&receive_address=TWallet&status=2&token=USDT&trade_id=T1"))
        assert_eq!(
            cb.json.as_deref(),
            Some(
                r#"{"actual_amount":5.8333,"amount":42,"block_transaction_id":"0xabc","currency":"CNY","network":"tron","order_id":"A1","pid":1001,"receive_address":"TWallet","signature":"5ef94ec568fc8a2201d487bbd208637b29ad2259b74763a4b9c2236013877f2a","status":2,"token":"USDT","trade_id":"T1"}"#
            )
        );
    }
}
