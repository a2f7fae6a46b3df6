//! Block-hash checkpoints for finding the fork point of a reorg deeper than the step-back.
//!
//! A row `chain_hashes:<network>` in `settings` keeps `(block, hash)` pairs of past cursor
//! positions, one per line (`<block> <hash>`), oldest first. Every cursor move writes it in the
//! same transaction as the cursor. The newest [`KEEP_NEWEST`] positions are kept, older ones
//! thinned to about two per power of two of distance from the newest, so the list stays small
//! (under a hundred entries) while reaching back millions of blocks. When the cursor block's
//! hash changed, the newest checkpoint at least the step-back deep whose hash the chain still
//! has is the fork-safe place to rescan from: every block at or below it is unchanged.
//!
//! Entries are only ever hashes we scanned; a damaged line is skipped (it can only make the
//! step back deeper, never shallower).
use std::collections::BTreeSet;

use sea_orm::{ActiveModelTrait, ConnectionTrait, DbErr, EntityTrait, Set};

use crate::{domain::network::Network, service, store::entities::setting};

/// Newest cursor positions always kept.
pub const KEEP_NEWEST: usize = 16;

fn key(network: Network) -> String {
    format!("chain_hashes:{}", network.as_str())
}

/// The stored checkpoints of `network`, oldest first.
pub async fn load(
    db: &impl ConnectionTrait,
    network: Network,
) -> Result<Vec<(i64, String)>, DbErr> {
    Ok(setting::Entity::find_by_id(key(network))
        .one(db)
        .await?
        .map(|row| decode(&row.value))
        .unwrap_or_default())
}

/// Records that the cursor now is `(block, hash)` (after a scan or a step back): entries at or
/// above `block` are dropped (they belong to a chain we left), `prev` is kept when the list is
/// empty, and the list is thinned. Runs inside the cursor's transaction.
pub async fn record(
    txn: &impl ConnectionTrait,
    network: Network,
    prev: (i64, &str),
    next: (i64, &str),
) -> Result<(), DbErr> {
    let row = setting::Entity::find_by_id(key(network)).one(txn).await?;
    let mut list = row.as_ref().map(|r| decode(&r.value)).unwrap_or_default();
    list.retain(|(b, _)| *b < next.0);
    if list.is_empty() && prev.0 >= 0 && prev.0 < next.0 && !prev.1.is_empty() {
        list.push((prev.0, prev.1.to_string()));
    }
    if next.0 >= 0 && !next.1.is_empty() {
        list.push((next.0, next.1.to_string()));
    }
    thin(&mut list);
    let value = encode(&list);
    let model = setting::ActiveModel {
        key: Set(key(network)),
        value: Set(value),
        updated_at: Set(service::now()),
    };
    if row.is_some() {
        model.update(txn).await?;
    } else {
        model.insert(txn).await?;
    }
    Ok(())
}

fn decode(text: &str) -> Vec<(i64, String)> {
    let mut list: Vec<(i64, String)> = text
        .lines()
        .filter_map(|line| {
            let (b, h) = line.trim().split_once(' ')?;
            let b: i64 = b.parse().ok()?;
            (b >= 0 && !h.is_empty()).then(|| (b, h.to_string()))
        })
        .collect();
    list.sort_by_key(|(b, _)| *b);
    list.dedup_by_key(|(b, _)| *b);
    list
}

fn encode(list: &[(i64, String)]) -> String {
    list.iter()
        .map(|(b, h)| format!("{b} {h}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Keeps the newest [`KEEP_NEWEST`] entries, and of the older ones the newest and the oldest
/// per power-of-two distance from the newest entry. `list` is sorted oldest first.
fn thin(list: &mut Vec<(i64, String)>) {
    let Some(newest) = list.last().map(|(b, _)| *b) else {
        return;
    };
    let len = list.len();
    if len <= KEEP_NEWEST {
        return;
    }
    let bucket = |b: i64| 64 - (newest - b).max(1).leading_zeros();
    let mut keep = BTreeSet::new();
    let mut last_bucket = None;
    for (i, (b, _)) in list.iter().enumerate() {
        if i + KEEP_NEWEST >= len {
            keep.insert(i);
            continue;
        }
        let k = bucket(*b);
        // Oldest of its bucket (first seen), or newest (next one is in another bucket).
        let next_other = list.get(i + 1).is_none_or(|(n, _)| bucket(*n) != k);
        if last_bucket != Some(k) || next_other {
            keep.insert(i);
        }
        last_bucket = Some(k);
    }
    let mut i = 0;
    list.retain(|_| {
        let kept = keep.contains(&i);
        i += 1;
        kept
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_recent_and_exponentially_spaced_old_checkpoints() {
        let mut list: Vec<(i64, String)> = Vec::new();
        for b in 0..200_000i64 {
            list.retain(|(x, _)| *x < b);
            list.push((b, format!("h{b}")));
            thin(&mut list);
        }
        assert!(list.len() < 60, "{}", list.len());
        let blocks: Vec<i64> = list.iter().map(|(b, _)| *b).collect();
        // The newest ones, all of them.
        assert_eq!(
            blocks[blocks.len() - KEEP_NEWEST..],
            (200_000 - KEEP_NEWEST as i64..200_000).collect::<Vec<_>>()[..]
        );
        // For any depth, a checkpoint at most about twice as deep exists.
        for depth in [20i64, 33, 100, 1_000, 10_000, 100_000] {
            let target = 199_999 - depth;
            let found = blocks.iter().rev().find(|b| **b <= target).copied();
            let found = found.unwrap_or_else(|| panic!("nothing below depth {depth}"));
            assert!(199_999 - found <= depth * 2 + 2, "depth {depth}: {found}");
        }
        // Sorted, unique, round-trips.
        assert!(blocks.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(decode(&encode(&list)), list);
        assert_eq!(
            decode("5 0xa\nbad\n-1 x\n3 0xb\n5 0xc"),
            vec![(3, "0xb".to_string()), (5, "0xa".to_string())]
        );
    }
}
