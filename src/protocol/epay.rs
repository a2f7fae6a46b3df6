//! EPay (`submit.php`): merchants by `pid`, MD5 over the parameters exactly as sent (no decimal
//! reformatting) without `sign`/`sign_type`, key appended; `sign_type` must be MD5. `type` is
//! what shop plugins send (`alipay`, `wxpay`, nothing: the EPay defaults, or the request's
//! `token`/`network`) or a `<token>.<network>` selector, and is kept as sent for the result.
//! A create answers 302 to the checkout page; errors are the envelope with upstream's HTTP status
//! (401 signature, 400 otherwise). The callback is a signed GET (`trade_status=TRADE_SUCCESS`)
//! whose answer is `success` (or `ok`); the same signed result is what the return hop
//! (`/pay/return/{trade_id}`) appends to the merchant's return URL.
use super::{
    Action, CallbackOrder, CallbackRequest, CreateRequest, FieldRules, MerchantProtocol,
    MerchantRef, OrderView, Params, Protocol, ProtocolError, Reply, fields,
};
use crate::{
    crypto::sign::{self, SignValue},
    domain::{
        currency,
        network::{Asset, UnknownAsset},
    },
};

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

    /// BEpusdt's EPay route: pid 1000 with the API token as key is our default merchant.
    fn create_aliases(&self) -> &'static [&'static str] {
        &["/submit.php"]
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
        let order_id = fields::order_id(p, "out_trade_no")?;
        let amount = fields::amount(p, "money")?;
        let notify_url = fields::notify_url(p, "notify_url", rules)?;
        let redirect_url = fields::redirect_url(p, "return_url", rules)?;
        let epay_type = fields::text(p, "type", 64, false)?;
        let asset = payment_asset(p, &epay_type, rules)?;
        let default_currency = currency::normalize(rules.epay.currency);
        Ok(CreateRequest {
            order_id,
            amount,
            notify_url,
            redirect_url,
            currency: fields::currency(p, "currency", Some(&default_currency))?,
            network: asset.network,
            token: asset.token,
            name: fields::text(p, "name", 128, false)?,
            timeout_secs: None,
            epay_type,
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
        // As upstream (resty): the notify URL's own query is kept as sent and the signed
        // parameters follow it, sorted by key.
        let mut url = url::Url::parse(o.notify_url)?;
        let ours = encode(&result_params(o, secret));
        let query = match url.query() {
            Some(q) if !q.is_empty() => format!("{q}&{ours}"),
            _ => ours,
        };
        url.set_query(Some(&query));
        Ok(CallbackRequest {
            url: url.to_string(),
            json: None,
            expect: "success",
        })
    }

    fn acknowledged(&self, http_status: u16, body: &str, _expect: &str) -> bool {
        super::ok_or_success(http_status, body)
    }

    fn error_status(&self, code: u32) -> u16 {
        upstream_error_status(code)
    }
}

/// Upstream's HTTP status for an error envelope: codes that are HTTP statuses (400 system error,
/// 401 signature) are sent as such, business codes (10xxx) as 400.
pub fn upstream_error_status(code: u32) -> u16 {
    u16::try_from(code)
        .ok()
        .filter(|c| (400..600).contains(c))
        .unwrap_or(400)
}

/// Types that ask for the defaults: none, or what EPay shop plugins send for their payment
/// buttons (`alipay` by default, `wxpay` for WeChat Pay).
const PLUGIN_TYPES: [&str; 2] = ["alipay", "wxpay"];

/// What an EPay create pays in: a `type` selector (`usdt.tron`, `usdt.bep20`, `usdc.base`, …)
/// first; for an empty / `alipay` / `wxpay` type the request's `token` and `network`, else the
/// EPay defaults. Any other `type` is refused, naming what it may be.
fn payment_asset(p: &Params, epay_type: &str, rules: &FieldRules) -> Result<Asset, ProtocolError> {
    let plugin = epay_type.is_empty()
        || PLUGIN_TYPES
            .iter()
            .any(|t| t.eq_ignore_ascii_case(epay_type));
    if !plugin {
        return rules.networks.asset(epay_type).map_err(|e| {
            ProtocolError::bad_param(
                "type",
                format!("`{epay_type}` is not a payment type here; send alipay, wxpay or no type for the default ({} on {}), or a token.network selector: {e}", rules.epay.token, rules.epay.network),
            )
        });
    }
    let token = p.get("token").map(str::trim).unwrap_or(rules.epay.token);
    let (key, network) = match p.get("network") {
        Some(n) => ("network", n.trim()),
        None => ("epay_default_network", rules.epay.network),
    };
    rules.networks.asset_of(token, network).map_err(|e| {
        let field = match e {
            UnknownAsset::Unknown { .. } => key,
            _ => "token",
        };
        ProtocolError::bad_param(field, e.to_string())
    })
}

/// The signed EPay result of a paid order, as upstream sends it in the notify's query and the
/// return hop's: `pid` (integer), `trade_no`, `out_trade_no`, `type` (as the create sent it,
/// `alipay` when it sent none), `name`, `money` (fiat, 4 decimals), `trade_status`, then `sign`
/// = md5 over the sorted non-empty `k=v` pairs + key, and `sign_type=MD5`.
pub fn result_params(o: &CallbackOrder<'_>, secret: &str) -> Vec<(&'static str, String)> {
    let epay_type = match o.epay_type.trim() {
        "" => "alipay",
        t => t,
    };
    let mut params: Vec<(&'static str, String)> = vec![
        ("pid", o.pid.to_string()),
        ("trade_no", o.trade_id.to_string()),
        ("out_trade_no", o.order_id.to_string()),
        ("type", epay_type.to_string()),
        ("name", o.name.to_string()),
        ("money", format!("{:.4}", o.amount)),
        ("trade_status", "TRADE_SUCCESS".to_string()),
    ];
    let signed: Vec<(&str, SignValue<'_>)> = params
        .iter()
        .map(|(k, v)| (*k, SignValue::Str(v)))
        .collect();
    let signature = sign::md5_sign(&sign::canonical_string(&signed, SIGNATURE_KEYS), secret);
    params.push(("sign", signature));
    params.push(("sign_type", "MD5".to_string()));
    params.sort_by(|a, b| a.0.cmp(b.0));
    params
}

/// `k=v&…` form-encoded, in the given order.
fn encode(params: &[(&str, String)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    s.finish()
}

/// The merchant's return URL with the signed result set into its query, as upstream's return hop
/// builds it (`url.Values.Set` then `Encode`: a parameter of the same name is replaced, and the
/// whole query is sorted by key).
pub fn return_url(
    return_url: &str,
    params: &[(&'static str, String)],
) -> Result<String, ProtocolError> {
    let mut url = url::Url::parse(return_url.trim())?;
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !params.iter().any(|(p, _)| p == k))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.extend(params.iter().map(|(k, v)| (k.to_string(), v.clone())));
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in &pairs {
        s.append_pair(k, v);
    }
    url.set_query(Some(&s.finish()));
    Ok(url.to_string())
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
        assert_eq!(
            (r.name.as_str(), r.epay_type.as_str()),
            ("Book", "usdt.trc20")
        );
        // `name` is optional, as upstream.
        let nameless = Params::from_query(QUERY.replace("name=Book", "").as_bytes());
        assert_eq!(EPay.parse_create(&nameless, &rules()).unwrap().name, "");
    }

    fn create(query: &str) -> Result<CreateRequest, String> {
        let base = "out_trade_no=E1&money=10&notify_url=https://shop.example.com/n&";
        EPay.parse_create(
            &Params::from_query(format!("{base}{query}").as_bytes()),
            &rules(),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn type_is_a_plugin_button_or_a_selector() {
        let mut bsc_default = rules();
        bsc_default.epay.network = "bsc";
        bsc_default.epay.currency = "usd";
        for (query, network, stored) in [
            ("type=alipay", "tron", "alipay"),
            ("type=wxpay", "tron", "wxpay"),
            ("type=AliPay", "tron", "AliPay"),
            ("type=", "tron", ""),
            ("", "tron", ""),
            ("type=usdt.tron", "tron", "usdt.tron"),
            ("type=%20usdt.tron%20", "tron", "usdt.tron"),
            ("type=usdt.binance", "bsc", "usdt.binance"),
            ("type=USDT.BEP20", "bsc", "USDT.BEP20"),
            (
                "type=usdt.polygon&network=ethereum",
                "polygon",
                "usdt.polygon",
            ),
            (
                "type=alipay&token=usdt&network=ethereum",
                "ethereum",
                "alipay",
            ),
            ("network=bsc", "bsc", ""),
        ] {
            let r = create(query).unwrap();
            assert_eq!(
                (r.network.as_str(), r.epay_type.as_str()),
                (network, stored),
                "{query}"
            );
            assert_eq!(r.currency, "CNY");
        }
        let p = Params::from_query(
            b"out_trade_no=E1&money=10&notify_url=https://s.example/n&type=wxpay",
        );
        let r = EPay.parse_create(&p, &bsc_default).unwrap();
        assert_eq!((r.network.as_str(), r.currency.as_str()), ("bsc", "USD"));
        assert_eq!(create("type=alipay&currency=usd").unwrap().currency, "USD");
        // BEpusdt's selectors beyond USDT select the token too.
        let r = create("type=usdc.trc20").unwrap();
        assert_eq!((r.network.as_str(), r.token.as_str()), ("tron", "USDC"));
        let r = create("type=alipay&token=usdc&network=bsc").unwrap();
        assert_eq!((r.network.as_str(), r.token.as_str()), ("bsc", "USDC"));
        let e = create("type=usdt.mars").unwrap_err();
        assert!(
            e.starts_with("type `usdt.mars` is not a payment type here"),
            "{e}"
        );
        assert!(e.contains("usdt.trc20"), "{e}");
        assert_eq!(
            create("type=qqpay").unwrap_err().split(';').next().unwrap(),
            "type `qqpay` is not a payment type here"
        );
        assert!(
            create("token=dai")
                .unwrap_err()
                .starts_with("token DAI is not configured on tron")
        );
        assert!(
            create("network=mars")
                .unwrap_err()
                .starts_with("network `mars` is not a network or trade type here")
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
        // md5("money=42.0000&name=Book&out_trade_no=A1&pid=1001&trade_no=T1&trade_status=TRADE_SUCCESS&type=alipay" + SECRET)
        assert_eq!(
            cb.url,
            "https://shop.example.com/notify?x=1&money=42.0000&name=Book&out_trade_no=A1&pid=1001&sign=679dd9c9eb31233addcaecda448f1fef&sign_type=MD5&trade_no=T1&trade_status=TRADE_SUCCESS&type=alipay"
        );
        // The type as sent is echoed; an empty name is neither sent signed nor left out.
        let mut tron = paid();
        tron.epay_type = "usdt.tron";
        tron.name = "";
        tron.notify_url = "https://shop.example.com/notify";
        // md5("money=42.0000&out_trade_no=A1&pid=1001&trade_no=T1&trade_status=TRADE_SUCCESS&type=usdt.tron" + SECRET)
        assert_eq!(
            EPay.callback(&tron, SECRET).unwrap().url,
            "https://shop.example.com/notify?money=42.0000&name=&out_trade_no=A1&pid=1001&sign=b1bd2d87bb945a917060c896de25d0bb&sign_type=MD5&trade_no=T1&trade_status=TRADE_SUCCESS&type=usdt.tron"
        );
        let mut bad = paid();
        bad.notify_url = "not a url";
        assert_eq!(
            EPay.callback(&bad, SECRET).unwrap_err().to_string(),
            "relative URL without a base"
        );
    }

    #[test]
    fn acknowledged_as_upstream() {
        for body in ["success", "SUCCESS\n", " ok ", "Ok"] {
            assert!(EPay.acknowledged(200, body, "success"), "{body}");
        }
        assert!(!EPay.acknowledged(201, "success", "success"));
        assert!(!EPay.acknowledged(200, "fail", "success"));
        assert!(!EPay.acknowledged(200, "success!", "success"));
        assert_eq!(
            (upstream_error_status(401), upstream_error_status(400)),
            (401, 400)
        );
        assert_eq!(upstream_error_status(10009), 400);
    }

    #[test]
    fn return_url_sets_the_signed_result_into_the_query() {
        let params = result_params(&paid(), SECRET);
        let url = return_url("https://shop.example.com/r?z=1&pid=9&a=b%20c", &params).unwrap();
        assert_eq!(
            url,
            "https://shop.example.com/r?a=b+c&money=42.0000&name=Book&out_trade_no=A1&pid=1001&sign=679dd9c9eb31233addcaecda448f1fef&sign_type=MD5&trade_no=T1&trade_status=TRADE_SUCCESS&type=alipay&z=1"
        );
        assert!(return_url("nope", &params).is_err());
    }
}
