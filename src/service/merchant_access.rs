//! Who may use a merchant's credentials, beyond the signature: its IP allow-list (GMWalletApp's
//! per-key whitelist; empty = any address) and, for `secret_overlap_secs` after a rotation, its
//! previous secret. The request path (`http::merchant::authenticate`) enforces both; this module
//! parses, stores and seals them. The previous secret is sealed like the current one, under its
//! own AAD (`merchant:<pid>:previous_secret`), and never logged.
use std::{net::IpAddr, str::FromStr};

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    Set,
};

use super::merchant::{Merchant, MerchantError, aad};
use crate::{
    config::ratelimit::Cidr, crypto::keys::KeyStore, secret::Secret, store::entities::merchant,
};

/// Most entries in one allow-list.
pub const ALLOWLIST_MAX: usize = 64;

fn previous_aad(pid: i64) -> String {
    format!("merchant:{pid}:previous_secret")
}

/// Parses a stored or submitted allow-list: IPs or CIDRs separated by commas or whitespace.
pub fn parse_allowlist(raw: &str) -> Result<Vec<Cidr>, String> {
    let nets = raw
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(Cidr::from_str)
        .collect::<Result<Vec<_>, _>>()?;
    if nets.len() > ALLOWLIST_MAX {
        return Err(format!(
            "ip_allowlist has {} entries; at most {ALLOWLIST_MAX}",
            nets.len()
        ));
    }
    Ok(nets)
}

impl Merchant {
    /// Whether a request from `client` may use this merchant (an unknown client address is
    /// refused when a list is set).
    pub fn allows(&self, client: Option<IpAddr>) -> bool {
        self.ip_allowlist.is_empty()
            || client.is_some_and(|ip| self.ip_allowlist.iter().any(|n| n.contains(ip)))
    }
}

/// The previous secret of a row while its overlap lasts; an unreadable one is ignored (logged):
/// failing closed only refuses the old secret.
pub(super) fn open_previous(m: &merchant::Model, keys: &KeyStore) -> Option<Secret> {
    let (Some(sealed), Some(until)) = (&m.previous_secret, m.previous_secret_until) else {
        return None;
    };
    if until <= super::now() {
        return None;
    }
    match keys.decrypt(sealed, &previous_aad(m.pid)) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(pid = m.pid, error = %e, "previous merchant secret unreadable; only the current one verifies");
            None
        }
    }
}

/// What a rotation stores as the previous secret: the current one re-sealed under the previous
/// AAD with its deadline, or nothing (`overlap_secs` 0).
pub(super) fn previous_for_rotation(
    m: &merchant::Model,
    keys: &KeyStore,
    overlap_secs: u32,
) -> Result<(Option<String>, Option<i64>), MerchantError> {
    if overlap_secs == 0 {
        return Ok((None, None));
    }
    let current = keys
        .decrypt(&m.secret, &aad(m.pid))
        .map_err(|source| MerchantError::Secret { pid: m.pid, source })?;
    Ok((
        Some(keys.encrypt(current.expose(), &previous_aad(m.pid))),
        Some(super::now() + i64::from(overlap_secs)),
    ))
}

/// Re-seals a row's previous secret under the current master key (`keys rotate`); 0 or 1.
pub(super) async fn reseal_previous(
    db: &impl ConnectionTrait,
    keys: &KeyStore,
    m: &merchant::Model,
) -> Result<usize, MerchantError> {
    let Some(old) = &m.previous_secret else {
        return Ok(0);
    };
    let sealed = keys
        .reseal(old, &previous_aad(m.pid))
        .map_err(|source| MerchantError::Secret { pid: m.pid, source })?;
    let Some(new) = sealed else {
        return Ok(0);
    };
    let res = merchant::Entity::update_many()
        .col_expr(
            merchant::Column::PreviousSecret,
            sea_orm::sea_query::Expr::value(Some(new)),
        )
        .filter(merchant::Column::Id.eq(m.id))
        .filter(merchant::Column::PreviousSecret.eq(old.clone()))
        .exec(db)
        .await?;
    Ok(res.rows_affected as usize)
}

/// Replaces a merchant's IP allow-list (admin API); returns the row without its secret.
pub async fn set_ip_allowlist(
    db: &DatabaseConnection,
    pid: i64,
    raw: &[String],
) -> Result<Option<merchant::Model>, MerchantError> {
    let nets = parse_allowlist(&raw.join(",")).map_err(MerchantError::Invalid)?;
    let Some(m) = super::merchant::row_by_pid(db, pid).await? else {
        return Ok(None);
    };
    let text = nets
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut am: merchant::ActiveModel = m.into();
    am.ip_allowlist = Set(text);
    am.updated_at = Set(super::now());
    let mut m = am.update(db).await?;
    m.secret = String::new();
    m.previous_secret = None;
    Ok(Some(m))
}

/// Highest per-merchant limit accepted (requests per minute); above it, use 0 = unlimited.
pub const RATE_LIMIT_MAX: u32 = 1_000_000;

/// Sets a merchant's own signed-requests-per-minute limit (`None` = the configured
/// `rate_limit_merchant_per_minute`, `Some(0)` = unlimited). `Ok(None)`: no such merchant.
pub async fn set_rate_limit(
    db: &DatabaseConnection,
    pid: i64,
    per_minute: Option<u32>,
) -> Result<Option<merchant::Model>, MerchantError> {
    if let Some(n) = per_minute.filter(|n| *n > RATE_LIMIT_MAX) {
        return Err(MerchantError::Invalid(format!(
            "rate_limit_per_minute {n} is above {RATE_LIMIT_MAX}; use 0 for unlimited or null for the default"
        )));
    }
    let Some(m) = super::merchant::row_by_pid(db, pid).await? else {
        return Ok(None);
    };
    let mut am: merchant::ActiveModel = m.into();
    // Fits: checked against RATE_LIMIT_MAX above.
    am.rate_limit_per_minute = Set(per_minute.map(|n| n as i32));
    am.updated_at = Set(super::now());
    let mut m = am.update(db).await?;
    m.secret = String::new();
    m.previous_secret = None;
    Ok(Some(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists_parse_normalise_and_match() {
        let nets = parse_allowlist("10.0.0.0/8, 192.0.2.7 2001:db8::/32").unwrap();
        assert_eq!(
            nets.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]
        );
        assert!(parse_allowlist("").unwrap().is_empty());
        assert!(parse_allowlist("10.0.0.0/33").is_err());
        assert!(parse_allowlist("example.com").is_err());
        let many = vec!["10.0.0.1"; ALLOWLIST_MAX + 1].join(",");
        assert!(parse_allowlist(&many).is_err());

        let m = |list: &str| Merchant {
            id: 1,
            pid: 1001,
            name: "shop".into(),
            secret: Secret::new("s"),
            strict_replay: false,
            sign_mode: crate::crypto::sign::SignMode::Dual,
            enabled: true,
            ip_allowlist: parse_allowlist(list).unwrap(),
            previous_secret: None,
            rate_limit_per_minute: None,
        };
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(m("").allows(None), "empty = any, even an unknown address");
        let listed = m("10.0.0.0/8,2001:db8::1");
        assert!(listed.allows(ip("10.1.2.3")));
        assert!(listed.allows(ip("::ffff:10.1.2.3")), "IPv4-mapped IPv6");
        assert!(listed.allows(ip("2001:db8::1")));
        assert!(!listed.allows(ip("11.0.0.1")));
        assert!(!listed.allows(ip("2001:db8::2")));
        assert!(!listed.allows(None), "an unknown client address is refused");
    }
}
