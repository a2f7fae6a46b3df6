//! SPL token transfers in one `getTransaction` answer (`encoding: "jsonParsed"`): the
//! `transfer` and `transferChecked` instructions of the token program — top-level and inner
//! (a payment routed through another program) — whose destination is one of our associated
//! token accounts.
//!
//! What counts, and why:
//! - a failed transaction (`meta.err` not null) never counts, nor one without `meta`;
//! - the instruction's program must be the token program the mint lives under;
//! - `transferChecked` names its mint and decimals: both must be the configured ones;
//! - plain `transfer` names no mint: the destination's entry in `pre/postTokenBalances` must
//!   show the configured mint when the node lists one (the ATA address itself is derived
//!   from the mint, so the account cannot hold another);
//! - the log index is the instruction's position: `i` for top-level instruction `i`,
//!   `1000·(i+1) + j` for inner instruction `j` of instruction `i`, so both are unique in
//!   the transaction and stable across replays.
//!
//! Must never panic on a malformed answer: an instruction that does not parse is skipped.
use std::collections::HashMap;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;

use crate::domain::amount;

/// Position of inner instructions: `INNER_BASE · (outer + 1) + inner`.
pub const INNER_BASE: i64 = 1000;

/// One of our associated token accounts.
#[derive(Debug, Clone)]
pub(super) struct Target {
    /// The watched wallet (owner) address, base58.
    pub(super) owner: String,
    /// The mint, base58.
    pub(super) mint: String,
    /// The token program the mint lives under, base58.
    pub(super) program: String,
    pub(super) decimals: u32,
}

/// A transfer to one of our token accounts, before block data is attached.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Found {
    pub(super) log_index: i64,
    /// The watched owner it was paid to.
    pub(super) owner: String,
    pub(super) mint: String,
    /// The owner of the source token account when the node says, else that account.
    pub(super) from: String,
    pub(super) amount: Decimal,
}

#[derive(Debug, Deserialize)]
pub(super) struct Tx {
    pub(super) slot: u64,
    #[serde(rename = "blockTime")]
    pub(super) block_time: Option<i64>,
    pub(super) meta: Option<Meta>,
    pub(super) transaction: Body,
}

#[derive(Debug, Deserialize)]
pub(super) struct Meta {
    #[serde(default)]
    pub(super) err: Value,
    #[serde(rename = "preTokenBalances", default)]
    pre_token_balances: Option<Vec<TokenBalance>>,
    #[serde(rename = "postTokenBalances", default)]
    post_token_balances: Option<Vec<TokenBalance>>,
    #[serde(rename = "innerInstructions", default)]
    inner_instructions: Option<Vec<Inner>>,
}

#[derive(Debug, Deserialize)]
struct TokenBalance {
    #[serde(rename = "accountIndex")]
    account_index: usize,
    mint: String,
    owner: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Inner {
    index: i64,
    #[serde(default)]
    instructions: Vec<Instruction>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Body {
    message: Message,
    #[serde(default)]
    pub(super) signatures: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Message {
    #[serde(rename = "accountKeys", default)]
    account_keys: Vec<AccountKey>,
    #[serde(default)]
    instructions: Vec<Instruction>,
}

/// `jsonParsed` lists `{pubkey, signer, writable, source}`; `json` plain strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum AccountKey {
    Parsed { pubkey: String },
    Plain(String),
}

impl AccountKey {
    fn pubkey(&self) -> &str {
        match self {
            AccountKey::Parsed { pubkey } | AccountKey::Plain(pubkey) => pubkey,
        }
    }
}

/// A parsed instruction (`{program, programId, parsed: {type, info}}`) or an unparsed one
/// (`{programId, accounts, data}`); `parsed` is a plain string for some programs (memo).
#[derive(Debug, Deserialize)]
struct Instruction {
    #[serde(rename = "programId", default)]
    program_id: String,
    #[serde(default)]
    parsed: Value,
}

impl Tx {
    /// Whether the transaction succeeded (`meta.err` null). No `meta`: not proven, so no.
    #[cfg(test)]
    pub(super) fn succeeded(&self) -> bool {
        self.meta.as_ref().is_some_and(|m| m.err.is_null())
    }

    /// Transfers to `targets` (keyed by token account address) in this transaction; empty
    /// when it failed.
    pub(super) fn transfers(&self, targets: &HashMap<String, Target>) -> Vec<Found> {
        let Some(meta) = self.meta.as_ref().filter(|m| m.err.is_null()) else {
            return Vec::new();
        };
        let keys = &self.transaction.message.account_keys;
        let mut out = Vec::new();
        for (i, ix) in self.transaction.message.instructions.iter().enumerate() {
            let index = i64::try_from(i).unwrap_or(i64::MAX);
            out.extend(self.one(ix, index, meta, keys, targets));
        }
        for group in meta.inner_instructions.iter().flatten() {
            for (j, ix) in group.instructions.iter().enumerate() {
                let index = INNER_BASE
                    .saturating_mul(group.index.saturating_add(1))
                    .saturating_add(i64::try_from(j).unwrap_or(i64::MAX));
                out.extend(self.one(ix, index, meta, keys, targets));
            }
        }
        out
    }

    fn one(
        &self,
        ix: &Instruction,
        log_index: i64,
        meta: &Meta,
        keys: &[AccountKey],
        targets: &HashMap<String, Target>,
    ) -> Option<Found> {
        let kind = ix.parsed["type"].as_str()?;
        if kind != "transfer" && kind != "transferChecked" {
            return None;
        }
        let info = &ix.parsed["info"];
        let destination = info["destination"].as_str()?;
        let target = targets.get(destination)?;
        if ix.program_id != target.program {
            tracing::warn!(program = %ix.program_id, destination, "token transfer by another program than the mint's token program; ignored");
            return None;
        }
        let balance = |account: &str| -> Option<&TokenBalance> {
            let index = keys.iter().position(|k| k.pubkey() == account)?;
            meta.post_token_balances
                .iter()
                .chain(meta.pre_token_balances.iter())
                .flatten()
                .find(|b| b.account_index == index)
        };
        let units = if kind == "transferChecked" {
            let token_amount = &info["tokenAmount"];
            if info["mint"].as_str() != Some(target.mint.as_str()) {
                return None;
            }
            if token_amount["decimals"].as_u64() != Some(u64::from(target.decimals)) {
                tracing::error!(destination, decimals = %token_amount["decimals"], expected = target.decimals, "transferChecked with other decimals than configured for the mint; ignored — check the token's decimals setting");
                return None;
            }
            token_amount["amount"].as_str()?
        } else {
            if let Some(b) = balance(destination)
                && b.mint != target.mint
            {
                return None;
            }
            info["amount"].as_str()?
        };
        let Some(amount) = units
            .parse::<u64>()
            .ok()
            .and_then(|u| amount::from_base_units(u128::from(u), target.decimals))
        else {
            tracing::error!(destination, amount = %crate::redact::truncate(units, 40), "token transfer amount is not a u64; skipped (not credited) — review it by hand");
            return None;
        };
        let source = info["source"].as_str().unwrap_or_default();
        let from = balance(source)
            .and_then(|b| b.owner.clone())
            .unwrap_or_else(|| source.to_string());
        Some(Found {
            log_index,
            owner: target.owner.clone(),
            mint: target.mint.clone(),
            from,
            amount,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TOKEN: &str = super::super::address::TOKEN_PROGRAM;
    const MINT: &str = super::super::address::USDC_MINT;
    const FAKE_MINT: &str = "7o36UsWR1JQLpZ9PE2gn9L4SQ69CNNiWAXd4Jt7rqz9Z";
    const OWNER: &str = "86xCnPeV69n6t3DnyGvkKobf9FdN2H9oiVDdaMpo2MMY";
    const ATA: &str = "9SHQTA66Ekh7ZgMnKWsjxXk6DwXku8przs45E8bcEe38";
    const PAYER: &str = "B8UwBUUnKwCyKuGMbFKWaG7exYdDk2ozZrPg72NyVbfj";
    const PAYER_ATA: &str = "DShWnroshVbeUp28oopA3Pu7oFPDBtC1DBmPECXXAQ9n";

    fn targets() -> HashMap<String, Target> {
        [(
            ATA.to_string(),
            Target {
                owner: OWNER.into(),
                mint: MINT.into(),
                program: TOKEN.into(),
                decimals: 6,
            },
        )]
        .into()
    }

    fn balance(index: usize, mint: &str, owner: &str, amount: &str) -> Value {
        json!({"accountIndex": index, "mint": mint, "owner": owner, "programId": TOKEN,
               "uiTokenAmount": {"amount": amount, "decimals": 6, "uiAmount": null, "uiAmountString": "0"}})
    }

    fn tx(err: Value, instructions: Value, inner: Value, mint: &str) -> Tx {
        serde_json::from_value(tx_value(err, instructions, inner, mint)).expect("shape")
    }

    fn tx_value(err: Value, instructions: Value, inner: Value, mint: &str) -> Value {
        json!({
            "blockTime": 1_700_000_000, "slot": 42, "version": 0,
            "meta": {"computeUnitsConsumed": 6_200, "err": err, "fee": 5000,
                     "innerInstructions": inner, "logMessages": [], "postBalances": [], "preBalances": [],
                     "preTokenBalances": [balance(1, mint, PAYER, "20000000"), balance(2, mint, OWNER, "0")],
                     "postTokenBalances": [balance(1, mint, PAYER, "7660000"), balance(2, mint, OWNER, "12340000")],
                     "rewards": [], "status": if err.is_null() { json!({"Ok": null}) } else { json!({"Err": err}) }},
            "transaction": {"message": {
                "accountKeys": [
                    {"pubkey": PAYER, "signer": true, "source": "transaction", "writable": true},
                    {"pubkey": PAYER_ATA, "signer": false, "source": "transaction", "writable": true},
                    {"pubkey": ATA, "signer": false, "source": "transaction", "writable": true},
                    {"pubkey": mint, "signer": false, "source": "transaction", "writable": false},
                    {"pubkey": TOKEN, "signer": false, "source": "transaction", "writable": false}],
                "addressTableLookups": [],
                "instructions": instructions,
                "recentBlockhash": "EkSnNWid2cvwEVnVx9aBqawnmiCNiDgp3gUdkDPTKN1N"},
                "signatures": ["5h6xBEauJ3PK6SWCZ1PGjBvj8vDdWG3KpwATGy1ARAXFSDwt8GFXM7W5Ncn16wmqokgpiKRLuS83KUxyZyv2sUYv"]}
        })
    }

    fn checked(mint: &str, destination: &str, amount: &str, decimals: u8) -> Value {
        json!({"program": "spl-token", "programId": TOKEN, "stackHeight": null, "parsed": {
            "type": "transferChecked", "info": {"authority": PAYER, "destination": destination,
            "mint": mint, "source": PAYER_ATA, "tokenAmount": {"amount": amount, "decimals": decimals,
            "uiAmount": 12.34, "uiAmountString": "12.34"}}}})
    }

    fn plain(destination: &str, amount: &str) -> Value {
        json!({"program": "spl-token", "programId": TOKEN, "stackHeight": 2, "parsed": {
            "type": "transfer", "info": {"amount": amount, "authority": PAYER,
            "destination": destination, "source": PAYER_ATA}}})
    }

    #[test]
    fn finds_checked_plain_and_inner_transfers_to_our_account() {
        let memo = json!({"program": "spl-memo", "programId": "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr", "parsed": "order 17", "stackHeight": null});
        let unparsed = json!({"accounts": [PAYER], "data": "3Bxs4h24hBtQy9rw", "programId": "ComputeBudget111111111111111111111111111111", "stackHeight": null});
        let t = tx(
            Value::Null,
            json!([
                unparsed,
                memo,
                checked(MINT, ATA, "12340000", 6),
                checked(MINT, PAYER_ATA, "1", 6)
            ]),
            json!([{"index": 1, "instructions": [plain(ATA, "500000"), plain(PAYER_ATA, "9")]}]),
            MINT,
        );
        let found = t.transfers(&targets());
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].log_index, 2);
        assert_eq!(found[0].amount.to_string(), "12.340000");
        assert_eq!(found[0].owner, OWNER);
        assert_eq!(found[0].from, PAYER, "the source account's owner");
        assert_eq!(found[0].mint, MINT);
        assert_eq!(found[1].log_index, 2000, "inner 0 of instruction 1");
        assert_eq!(found[1].amount.to_string(), "0.500000");
    }

    #[test]
    fn ignores_failed_lookalike_and_mismatched_transfers() {
        let failed = tx(
            json!({"InstructionError": [0, {"Custom": 1}]}),
            json!([checked(MINT, ATA, "12340000", 6)]),
            json!([]),
            MINT,
        );
        assert!(!failed.succeeded());
        assert!(failed.transfers(&targets()).is_empty());
        // A node naming another mint (or other decimals) for our account: not ours.
        let other = tx(
            Value::Null,
            json!([
                checked(FAKE_MINT, ATA, "12340000", 6),
                checked(MINT, ATA, "12340000", 9),
                plain(ATA, "1")
            ]),
            json!([]),
            FAKE_MINT,
        );
        assert!(other.transfers(&targets()).is_empty());
        // Another program posing as a token program.
        let mut fake = checked(MINT, ATA, "12340000", 6);
        fake["programId"] = json!("Fake111111111111111111111111111111111111111");
        assert!(
            tx(Value::Null, json!([fake]), json!([]), MINT)
                .transfers(&targets())
                .is_empty()
        );
        // No meta: not proven successful.
        let mut no_meta = tx(
            Value::Null,
            json!([checked(MINT, ATA, "1", 6)]),
            json!([]),
            MINT,
        );
        no_meta.meta = None;
        assert!(no_meta.transfers(&targets()).is_empty());
        // An amount that is not a u64.
        assert!(
            tx(Value::Null, json!([plain(ATA, "-5")]), json!([]), MINT)
                .transfers(&targets())
                .is_empty()
        );
    }

    /// The payer creates our ATA in the same transaction: no balance before, one after.
    #[test]
    fn counts_a_transfer_into_an_account_created_by_the_same_transaction() {
        let create = json!({"program": "spl-associated-token-account", "programId": "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL",
            "parsed": {"type": "createIdempotent", "info": {"account": ATA, "mint": MINT, "source": PAYER,
            "systemProgram": "11111111111111111111111111111111", "tokenProgram": TOKEN, "wallet": OWNER}}, "stackHeight": null});
        let mut v = tx_value(
            Value::Null,
            json!([create, plain(ATA, "2500000")]),
            json!([]),
            MINT,
        );
        v["meta"]["preTokenBalances"] = json!([balance(1, MINT, PAYER, "20000000")]);
        let t: Tx = serde_json::from_value(v).expect("shape");
        let found = t.transfers(&targets());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].log_index, 1);
        assert_eq!(found[0].amount.to_string(), "2.500000");
    }
}
