//! epusdt v1, byte-compatible with upstream epusdt: the default merchant (`api_auth_token`),
//! MD5 over the sorted `k=v&…` string with the token appended. The canonical string is
//! upstream's (assimon/epusdt and GMWalletApp/epusdt share `util/sign/sign.go`): whole `k=v`
//! strings sorted, text signed as sent, JSON numbers as Go spells their `float64`, booleans,
//! arrays and objects refused. v1 also owns the cancel route (GMPay merchants use it with their
//! `pid`).
use serde_json::Value;

use super::{
    Action, CallbackOrder, CallbackRequest, CreateRequest, FieldRules, MerchantProtocol,
    MerchantRef, OrderView, Params, Protocol, ProtocolError, Reply, Verification, fields,
    order_data, signed_json_callback,
};
use crate::crypto::sign::{self, SignAlg, SignMode, SignValue};

pub const CREATE_PATH: &str = "/api/v1/order/create-transaction";
pub const CANCEL_PATH: &str = "/api/v1/order/cancel-transaction";

pub struct V1;

/// The canonical string of a v1 or GMPay request, as upstream builds it: text as sent, JSON
/// numbers as Go spells their `float64`, `signature` left out. `Err(reason)` when a value
/// cannot be signed (a boolean, array or object).
pub(super) fn request_canonical(p: &Params) -> Result<String, String> {
    Ok(sign::canonical_string(&p.sign_values()?, &["signature"]))
}

/// Checks a v1 or GMPay request's `signature` with the algorithms `mode` accepts: the one that
/// matched, or why none did.
pub(super) fn verify_request(
    p: &Params,
    secret: &str,
    mode: SignMode,
) -> Result<SignAlg, Verification> {
    let Some(provided) = p.get("signature") else {
        return Err(Verification::Missing);
    };
    let canonical = request_canonical(p).map_err(|reason| Verification::Refused { reason })?;
    mode.verify(&canonical, secret, provided)
        .ok_or(Verification::Mismatch { canonical })
}

impl MerchantProtocol for V1 {
    fn id(&self) -> Protocol {
        Protocol::V1
    }

    fn create_path(&self) -> &'static str {
        CREATE_PATH
    }

    fn cancel_path(&self) -> Option<&'static str> {
        Some(CANCEL_PATH)
    }

    fn claims_cancel(&self, p: &Params) -> bool {
        p.get("pid").is_none()
    }

    fn merchant(&self, _p: &Params) -> Result<MerchantRef, ProtocolError> {
        Ok(MerchantRef::Default)
    }

    fn canonical(&self, p: &Params, _action: Action) -> String {
        request_canonical(p).unwrap_or_default()
    }

    fn sign(&self, canonical: &str, secret: &str) -> String {
        sign::md5_sign(canonical, secret)
    }

    fn verify(&self, p: &Params, _action: Action, secret: &str) -> Verification {
        match verify_request(p, secret, SignMode::Md5) {
            Ok(_) => Verification::Valid,
            Err(v) => v,
        }
    }

    fn parse_create(&self, p: &Params, rules: &FieldRules) -> Result<CreateRequest, ProtocolError> {
        bepusdt_refusals(p)?;
        let asset = fields::asset(p, "trade_type", rules)?;
        Ok(CreateRequest {
            order_id: fields::order_id(p, "order_id")?,
            amount: fields::amount(p, "amount")?,
            notify_url: fields::notify_url(p, "notify_url", rules)?,
            redirect_url: fields::redirect_url(p, "redirect_url", rules)?,
            currency: bepusdt_currency(p)?,
            network: asset.network,
            token: asset.token,
            name: fields::text(p, "name", 128, false)?,
            timeout_secs: fields::timeout(p)?,
            epay_type: String::new(),
        })
    }

    /// Today's data, plus BEpusdt's `trade_type` (the order's own: `usdc.base`).
    fn reply(&self, o: &OrderView<'_>) -> Reply {
        let mut data = order_data(o);
        data.insert("trade_type".into(), Value::from(o.trade_type.clone()));
        Reply::Data(Value::Object(data))
    }

    fn callback(
        &self,
        o: &CallbackOrder<'_>,
        secret: &str,
    ) -> Result<CallbackRequest, ProtocolError> {
        Ok(signed_json_callback(
            self,
            &[
                ("trade_id", SignValue::Str(o.trade_id)),
                ("order_id", SignValue::Str(o.order_id)),
                ("amount", SignValue::Dec(o.amount)),
                ("actual_amount", SignValue::Dec(o.actual_amount)),
                ("token", SignValue::Str(o.address)),
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

/// The fiat currency: `currency`, or BEpusdt's name for it, `fiat` (the same value if both are
/// sent); CNY when neither is.
fn bepusdt_currency(p: &Params) -> Result<String, ProtocolError> {
    match (p.get("currency"), p.get("fiat")) {
        (Some(_), Some(_)) => {
            let c = fields::currency(p, "currency", None)?;
            let f = fields::currency(p, "fiat", None)?;
            if c != f {
                return Err(ProtocolError::bad_param(
                    "fiat",
                    format!("`{f}` contradicts currency `{c}`; send one of them"),
                ));
            }
            Ok(c)
        }
        (None, Some(_)) => fields::currency(p, "fiat", None),
        _ => fields::currency(p, "currency", Some("CNY")),
    }
}

/// BEpusdt lets the merchant choose the rate and the receive address; here both come from the
/// operator (rates, wallets). Ignoring them would charge another amount or pay another address
/// than the shop asked for, so they are refused.
fn bepusdt_refusals(p: &Params) -> Result<(), ProtocolError> {
    for (key, why) in [
        (
            "rate",
            "the rate is the operator's (epusdt rate set / usdt_rates); remove it",
        ),
        (
            "address",
            "the receive address is chosen from the operator's wallets; remove it",
        ),
    ] {
        if p.get(key).is_some_and(|v| !v.trim().is_empty()) {
            return Err(ProtocolError::bad_param(
                key,
                format!("is not supported: {why}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Verification, test_support::*};

    /// Upstream epusdt's documented example.
    const TOKEN: &str = "epusdt_password_xasddawqe";
    const BODY: &str = r#"{"order_id":"20220201030210321","amount":42.00,"notify_url":"http://example.com/notify","redirect_url":"http://example.com/redirect","signature":"1cd4b52df5587cfb1968b0c0c6e156cd"}"#;

    #[test]
    fn upstream_request_verifies_and_a_tampered_one_does_not() {
        let p = Params::from_json(BODY.as_bytes()).unwrap();
        assert_eq!(V1.verify(&p, Action::Create, TOKEN), Verification::Valid);
        assert_eq!(V1.merchant(&p).unwrap(), MerchantRef::Default);
        // The same request as a form, amount as text "42": signed alike.
        let form = b"order_id=20220201030210321&amount=42&notify_url=http%3A%2F%2Fexample.com%2Fnotify&redirect_url=http://example.com/redirect&signature=1cd4b52df5587cfb1968b0c0c6e156cd";
        let f = Params::from_query(form);
        assert_eq!(V1.verify(&f, Action::Create, TOKEN), Verification::Valid);
        // Text is signed as sent (upstream): "42.00" is not "42".
        let text = Params::from_json(BODY.replace("42.00", "\"42.00\"").as_bytes()).unwrap();
        assert!(matches!(
            V1.verify(&text, Action::Create, TOKEN),
            Verification::Mismatch { .. }
        ));
        // An upper-case signature is refused (exact comparison, as upstream).
        let upper = Params::from_json(
            BODY.replace(
                "1cd4b52df5587cfb1968b0c0c6e156cd",
                "1CD4B52DF5587CFB1968B0C0C6E156CD",
            )
            .as_bytes(),
        )
        .unwrap();
        assert!(matches!(
            V1.verify(&upper, Action::Create, TOKEN),
            Verification::Mismatch { .. }
        ));
        // A boolean cannot be signed.
        let flag = Params::from_json(BODY.replacen('{', r#"{"paid":true,"#, 1).as_bytes()).unwrap();
        assert!(matches!(
            V1.verify(&flag, Action::Create, TOKEN),
            Verification::Refused { .. }
        ));

        let tampered = Params::from_json(BODY.replace("42.00", "4.20").as_bytes()).unwrap();
        assert_eq!(
            V1.verify(&tampered, Action::Create, TOKEN),
            Verification::Mismatch {
                canonical: "amount=4.2&notify_url=http://example.com/notify&order_id=20220201030210321&redirect_url=http://example.com/redirect".into()
            }
        );
        assert_eq!(
            V1.verify(&p, Action::Create, "other-token"),
            Verification::Mismatch {
                canonical: "amount=42&notify_url=http://example.com/notify&order_id=20220201030210321&redirect_url=http://example.com/redirect".into()
            }
        );
        let unsigned = Params::from_query(b"order_id=1&amount=1");
        assert_eq!(
            V1.verify(&unsigned, Action::Create, TOKEN),
            Verification::Missing
        );
    }

    #[test]
    fn text_amounts_are_signed_verbatim() {
        let p = Params::from_query(b"trade_id=T1&amount=1.50&signature=x");
        assert_eq!(V1.canonical(&p, Action::Cancel), "amount=1.50&trade_id=T1");
        assert_eq!(V1.canonical(&p, Action::Create), "amount=1.50&trade_id=T1");
        let j = Params::from_json(br#"{"trade_id":"T1","amount":1.50}"#).unwrap();
        assert_eq!(V1.canonical(&j, Action::Create), "amount=1.5&trade_id=T1");
    }

    #[test]
    fn fields_default_to_cny_and_the_configured_network() {
        let p = Params::from_json(BODY.as_bytes()).unwrap();
        let r = V1.parse_create(&p, &rules()).unwrap();
        assert_eq!(r.order_id, "20220201030210321");
        assert_eq!(r.amount.to_string(), "42.00");
        assert_eq!(r.currency, "CNY");
        assert_eq!(r.network.as_str(), "tron");
        assert_eq!(r.timeout_secs, None);
        assert_eq!(r.name, "");
    }

    #[test]
    fn reply_is_todays_data() {
        let Reply::Data(data) = V1.reply(&view()) else {
            panic!("v1 answers with data");
        };
        assert_eq!(
            data.to_string(),
            r#"{"actual_amount":5.8333,"amount":42,"expiration_time":1700000600,"order_id":"A1","payment_url":"https://pay.example.com/pay/checkout-counter/T1","token":"TWallet","trade_id":"T1","trade_type":"usdt.trc20"}"#
        );
    }

    #[test]
    fn callback_matches_the_known_vector() {
        let cb = V1.callback(&paid(), SECRET).unwrap();
        assert_eq!(cb.url, "https://shop.example.com/notify?x=1");
        assert_eq!(cb.expect, "ok");
        // md5("actual_amount=5.8333&amount=42&block_transaction_id=0xabc&order_id=A1&status=2&token=TWallet&trade_id=T1" + SECRET)
        assert_eq!(
            cb.json.as_deref(),
            Some(
                r#"{"actual_amount":5.8333,"amount":42,"block_transaction_id":"0xabc","order_id":"A1","signature":"809623407bcfdbcaad8a6e2861775312","status":2,"token":"TWallet","trade_id":"T1"}"#
            )
        );
    }
}
