//! How a value may be written: decimals as plain text, rate tables as a TOML table or
//! `USD:1,EUR:0.92`, lists as an array or `a,b,c`; and how secrets in URLs are shown when the
//! config is serialized (`epusdt config check`).

use std::collections::BTreeMap;

use figment::value::Value;
use rust_decimal::Decimal;
use serde::{Deserialize, Serializer};

pub(super) fn redact_url_password<S: Serializer>(
    v: &Option<String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        None => s.serialize_none(),
        Some(raw) => s.serialize_str(&crate::redact::secrets(raw)),
    }
}

/// `usdt_rates` as a TOML table or as the `.env`/env string form `USD:1,EUR:0.92`.
pub(super) fn rates_from_map_or_string<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Decimal>, D::Error> {
    use serde::de::Error;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Map(BTreeMap<String, Value>),
        Str(String),
    }
    let pairs: Vec<(String, String)> = match Raw::deserialize(d)? {
        Raw::Map(m) => m
            .into_iter()
            // Write rates as strings (`EUR = "0.92"`): a TOML float would pass through f64.
            .map(|(k, v)| {
                let text = v
                    .to_i128()
                    .map(|n| n.to_string())
                    .or_else(|| v.into_string());
                (k, text.unwrap_or_else(|| "not-a-string".into()))
            })
            .collect(),
        Raw::Str(s) => s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.split_once([':', '='])
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .ok_or_else(|| D::Error::custom(format!("`{p}` must look like USD:1")))
            })
            .collect::<Result<_, _>>()?,
    };
    pairs
        .into_iter()
        .map(|(k, v)| {
            let rate = crate::domain::amount::parse_plain(v.trim().trim_matches('"'), true)
                .ok_or_else(|| {
                    D::Error::custom(format!(
                        "rate for {k} `{v}` is not a decimal number (plain digits and one `.`, e.g. 0.92)"
                    ))
                })?;
            Ok((k.to_ascii_uppercase(), rate))
        })
        .collect()
}

/// A decimal config value: a number, or plain decimal text (`7.2`, never `7_2` or `7.2e0`,
/// which `rust_decimal` would take). Signs are let through for `validate` to name the key.
pub(super) fn plain_decimal<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    use serde::de::Error;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Str(String),
        Int(i64),
        Float(f64),
    }
    match Raw::deserialize(d)? {
        Raw::Str(s) => crate::domain::amount::parse_plain(s.trim(), true).ok_or_else(|| {
            D::Error::custom(format!(
                "`{s}` is not a decimal number (plain digits and one `.`, e.g. 7.2)"
            ))
        }),
        Raw::Int(n) => Ok(Decimal::from(n)),
        // Float text from TOML or the env: its shortest round-trip form, parsed exactly.
        Raw::Float(f) => Decimal::from_str_exact(&f.to_string())
            .map_err(|_| D::Error::custom(format!("`{f}` is not a decimal number"))),
    }
}

pub(super) fn opt_plain_decimal<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Decimal>, D::Error> {
    #[derive(Deserialize)]
    struct Plain(#[serde(deserialize_with = "plain_decimal")] Decimal);
    Ok(Option::<Plain>::deserialize(d)?.map(|p| p.0))
}

pub(super) fn redact_rpc_urls<S: Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(v.len()))?;
    for u in v {
        seq.serialize_element(&crate::redact::rpc_url(u))?;
    }
    seq.end()
}

/// A list as a TOML array, or as the env/`.env` string form `a,b,c`.
pub(super) fn list_from_seq_or_string<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Str(String),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::List(v) => v,
        Raw::Str(s) => s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect(),
    })
}
