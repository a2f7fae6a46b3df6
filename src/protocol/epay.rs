//! EPay (`submit.php`): merchants by `pid`, MD5 over the parameters exactly as sent (no decimal
//! reformatting) without `sign`/`sign_type`, key appended; `sign_type` must be MD5. A create
//! answers 302 to the checkout page; the callback is a signed GET whose answer is `success`.
use super::{
    Action, CallbackOrder, CallbackRequest, CreateRequest, FieldRules, MerchantProtocol,
    MerchantRef, OrderView, Params, Protocol, ProtocolError, Reply, fields,
};
use crate::crypto::sign::{self, SignValue};

pub const CREATE_PATH: &str = "/payments/epay/v1/order/create-transaction/submit.php";

/// The parameters a signature leaves out.
const SIGNATURE_KEYS: &[&str] = &["sign", "sign_type"];

pub struct EPay;

impl MerchantProtocol for EPay {
    fn id(&self) -> Protocol {
        Protocol::EPay
    }

    fn create_path(&self) -> &'static str {
        CREATE_PATH
    }

    fn create_accepts_get(&self) -> bool {
        true
    }

    fn signature_field(&self) -> &'static str {
        "sign"
    }

    fn check_envelope(&self, p: &Params) -> Result<(), ProtocolError> {
        match p.get("sign_type") {
            Some(t) if !t.eq_ignore_ascii_case("MD5") => {
                Err(ProtocolError::bad_param("sign_type", "must be MD5"))
            }
            _ => Ok(()),
        }
    }

    fn merchant(&self, p: &Params) -> Result<MerchantRef, ProtocolError> {
        fields::pid(p).map(MerchantRef::Pid)
    }

    fn canonical(&self, p: &Params, _action: Action) -> String {
        sign::canonical_string(&p.raw_values(), SIGNATURE_KEYS)
    }

    fn sign(&self, canonical: &str, secret: &str) -> String {
        sign::md5_sign(canonical, secret)
    }

    fn parse_create(&self, p: &Params, rules: &FieldRules) -> Result<CreateRequest, ProtocolError> {
        Ok(CreateRequest {
            order_id: fields::order_id(p, "out_trade_no")?,
            amount: fields::amount(p, "money")?,
            notify_url: fields::notify_url(p, "notify_url", rules)?,
            redirect_url: fields::redirect_url(p, "return_url", rules)?,
            currency: fields::currency(p, "currency", Some("CNY"))?,
            network: fields::network(p, "type", rules)?,
            name: fields::text(p, "name", 128, true)?,
            timeout_secs: None,
        })
    }

    fn reply(&self, o: &OrderView<'_>) -> Reply {
        // EPay clients expect a plain 302 Found.
        Reply::Redirect(o.payment_url.clone())
    }

    fn callback(
        &self,
        o: &CallbackOrder<'_>,
        secret: &str,
    ) -> Result<CallbackRequest, ProtocolError> {
        let money = format!("{:.2}", o.amount);
        let pid = o.pid.to_string();
        let epay_type = o.network.map(|n| n.trade_type()).unwrap_or("");
        let params: [(&str, &str); 7] = [
            ("pid", &pid),
            ("trade_no", o.trade_id),
            ("out_trade_no", o.order_id),
            ("type", epay_type),
            ("name", o.name),
            ("money", &money),
            ("trade_status", "TRADE_SUCCESS"),
        ];
        let sv: Vec<(&str, SignValue<'_>)> = params
            .iter()
            .map(|(k, v)| (*k, SignValue::Str(v)))
            .collect();
        let signature = self.sign(&sign::canonical_string(&sv, SIGNATURE_KEYS), secret);
        let mut url = url::Url::parse(o.notify_url)?;
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in &params {
                q.append_pair(k, v);
            }
            q.append_pair("sign", &signature);
            q.append_pair("sign_type", "MD5");
        }
        Ok(CallbackRequest {
            url: url.to_string(),
            json: None,
            expect: "success",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Verification, test_support::*};

    // md5("money=10.00&name=Book&notify_url=https://shop.example.com/n&out_trade_no=E1&pid=1001&return_url=https://shop.example.com/r&type=usdt.trc20" + SECRET)
    const QUERY: &str = "pid=1001&type=usdt.trc20&out_trade_no=E1&notify_url=https%3A%2F%2Fshop.example.com%2Fn&return_url=https://shop.example.com/r&name=Book&money=10.00&sign_type=MD5&sign=eb30c3095b22486e7eff294544cc16db";

    #[test]
    fn signed_request_verifies_and_a_tampered_one_does_not() {
        let p = Params::from_query(QUERY.as_bytes());
        assert!(EPay.check_envelope(&p).is_ok());
        assert_eq!(EPay.merchant(&p).unwrap(), MerchantRef::Pid(1001));
        assert_eq!(EPay.verify(&p, Action::Create, SECRET), Verification::Valid);
        // Amounts are signed as sent: 10.0 is not 10.00.
        let tampered = Params::from_query(QUERY.replace("money=10.00", "money=10.0").as_bytes());
        assert!(matches!(
            EPay.verify(&tampered, Action::Create, SECRET),
            Verification::Mismatch { .. }
        ));
        let unsigned = Params::from_query(b"pid=1001&money=1");
        assert_eq!(
            EPay.verify(&unsigned, Action::Create, SECRET),
            Verification::Missing
        );
        let sha = Params::from_query(b"sign_type=SHA256");
        assert_eq!(
            EPay.check_envelope(&sha).unwrap_err().to_string(),
            "sign_type must be MD5"
        );
    }

    #[test]
    fn fields_read_epay_names() {
        let p = Params::from_query(QUERY.as_bytes());
        let r = EPay.parse_create(&p, &rules()).unwrap();
        assert_eq!(r.order_id, "E1");
        assert_eq!(r.amount.to_string(), "10.00");
        assert_eq!(r.redirect_url, "https://shop.example.com/r");
        assert_eq!((r.currency.as_str(), r.network.as_str()), ("CNY", "tron"));
        assert_eq!(r.name, "Book");
        let nameless = Params::from_query(QUERY.replace("name=Book", "").as_bytes());
        assert_eq!(
            EPay.parse_create(&nameless, &rules())
                .unwrap_err()
                .to_string(),
            "name is required"
        );
    }

    #[test]
    fn reply_redirects_to_the_checkout_page() {
        assert_eq!(
            EPay.reply(&view()),
            Reply::Redirect("https://pay.example.com/pay/checkout-counter/T1".into())
        );
    }

    #[test]
    fn callback_matches_the_known_vector() {
        let cb = EPay.callback(&paid(), SECRET).unwrap();
        assert_eq!(cb.json, None);
        assert_eq!(cb.expect, "success");
        // md5("money=42.00&name=Book&out_trade_no=A1&pid=1001&trade_no=T1&trade_status=TRADE_SUCCESS&type=usdt.trc20" + SECRET)
        assert_eq!(
            cb.url,
            "https://shop.example.com/notify?x=1&pid=1001&trade_no=T1&out_trade_no=A1&type=usdt.trc20&name=Book&money=42.00&trade_status=TRADE_SUCCESS&sign=e57206c6994e65af482d59904117e236&sign_type=MD5"
        );
        let mut bad = paid();
        bad.notify_url = "not a url";
        assert_eq!(
            EPay.callback(&bad, SECRET).unwrap_err().to_string(),
            "relative URL without a base"
        );
    }
}
