//! A scripted [`Scanner`]: a test double for the cursor loop, never configured by the program.
//!
//! The chain is a head, a hash per block (`h<n>` unless set), and a list of transfers; scan
//! calls answer from it unless a scripted error is queued for them, or the range is larger than
//! the refusal cap ([`ScanError::RangeTooLarge`]). Clones share one chain, so a test keeps a
//! handle to change the chain (a new head, a reorg) while a [`Watcher`](super::Watcher) owns
//! another. It must never do I/O.
use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
};

use super::{Heads, ScanBatch, ScanError, Scanner};
use crate::domain::transfer::IncomingTransfer;

#[derive(Debug, Default)]
struct Chain {
    heads: Heads,
    hashes: BTreeMap<u64, String>,
    transfers: Vec<IncomingTransfer>,
    /// Answers of the next scan calls: `None` answers from the chain, `Some` fails.
    script: VecDeque<Option<ScanError>>,
    /// Ranges longer than this are refused as too large.
    refuse_above: Option<u64>,
    /// Every scan call, in order.
    scans: Vec<(u64, u64)>,
    /// [`Scanner::ranges_at_once`] (1 unless set).
    at_once: usize,
}

/// A scripted chain (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct FakeScanner(Arc<Mutex<Chain>>);

impl FakeScanner {
    /// A chain whose head (and finalized head) is `head`.
    pub fn new(head: u64) -> Self {
        let fake = Self::default();
        fake.set_head(head);
        fake
    }

    fn chain(&self) -> MutexGuard<'_, Chain> {
        match self.0.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Moves the head and the finalized head to `head`.
    pub fn set_head(&self, head: u64) {
        self.chain().heads = Heads {
            head,
            finalized: head,
        };
    }

    /// The hash of block `number` (`h<number>` unless set).
    pub fn hash(&self, number: u64) -> String {
        hash_of(&self.chain(), number)
    }

    /// Replaces the hash of every block from `from` on with `<prefix><number>` (a reorg).
    pub fn reorg_from(&self, from: u64, prefix: &str) {
        let mut chain = self.chain();
        let head = chain.heads.head;
        for n in from..=head {
            chain.hashes.insert(n, format!("{prefix}{n}"));
        }
    }

    /// A transfer found by scans covering its block; its block hash is the block's at scan time.
    pub fn add_transfer(&self, t: IncomingTransfer) {
        self.chain().transfers.push(t);
    }

    /// The next scan calls answer in this order (`None`: from the chain; `Some`: that error).
    pub fn script_scans(&self, answers: impl IntoIterator<Item = Option<ScanError>>) {
        self.chain().script.extend(answers);
    }

    /// Refuses scans of more than `max` blocks with [`ScanError::RangeTooLarge`] (no hint).
    pub fn refuse_above(&self, max: u64) {
        self.chain().refuse_above = Some(max);
    }

    /// Lets the cursor loop scan up to `n` ranges at once.
    pub fn set_ranges_at_once(&self, n: usize) {
        self.chain().at_once = n;
    }

    /// Every scan call so far, as `(from, to)`.
    pub fn scans(&self) -> Vec<(u64, u64)> {
        self.chain().scans.clone()
    }
}

fn hash_of(chain: &Chain, number: u64) -> String {
    chain
        .hashes
        .get(&number)
        .cloned()
        .unwrap_or_else(|| format!("h{number}"))
}

impl Scanner for FakeScanner {
    fn ranges_at_once(&self) -> usize {
        self.chain().at_once.max(1)
    }

    async fn heads(&self) -> Result<Heads, ScanError> {
        Ok(self.chain().heads)
    }

    async fn block_hash(&self, number: u64) -> Result<String, ScanError> {
        let chain = self.chain();
        if number > chain.heads.finalized {
            return Err(ScanError::Unavailable(format!(
                "fake: block {number} is above the finalized head"
            )));
        }
        Ok(hash_of(&chain, number))
    }

    async fn scan(
        &self,
        from: u64,
        to: u64,
        watched: &HashSet<String>,
    ) -> Result<ScanBatch, ScanError> {
        let mut chain = self.chain();
        chain.scans.push((from, to));
        if let Some(Some(e)) = chain.script.pop_front() {
            return Err(e);
        }
        if let Some(max) = chain.refuse_above
            && to - from + 1 > max
        {
            return Err(ScanError::RangeTooLarge {
                message: format!("fake: range of {} blocks refused", to - from + 1),
                hint: None,
            });
        }
        if to > chain.heads.finalized {
            return Err(ScanError::Unavailable(format!(
                "fake: block {to} is above the finalized head"
            )));
        }
        let transfers = chain
            .transfers
            .iter()
            .filter(|t| {
                u64::try_from(t.block_number).is_ok_and(|b| (from..=to).contains(&b))
                    && watched.contains(&t.to_address)
            })
            .map(|t| IncomingTransfer {
                block_hash: hash_of(&chain, u64::try_from(t.block_number).unwrap_or(0)),
                ..t.clone()
            })
            .collect();
        Ok(ScanBatch {
            transfers,
            to_hash: hash_of(&chain, to),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_from_the_script_then_from_the_chain() {
        let fake = FakeScanner::new(10);
        fake.script_scans([Some(ScanError::Unavailable("down".into())), None]);
        let watched = HashSet::new();
        assert!(matches!(
            fake.scan(1, 5, &watched).await,
            Err(ScanError::Unavailable(_))
        ));
        assert_eq!(fake.scan(1, 5, &watched).await.expect("ok").to_hash, "h5");
        assert_eq!(fake.scan(6, 10, &watched).await.expect("ok").to_hash, "h10");
        assert_eq!(fake.scans(), vec![(1, 5), (1, 5), (6, 10)]);
        assert!(fake.scan(6, 11, &watched).await.is_err(), "above the head");
    }

    #[tokio::test]
    async fn refuses_large_ranges_and_reorgs_hashes() {
        let fake = FakeScanner::new(10);
        fake.refuse_above(3);
        let watched = HashSet::new();
        assert!(matches!(
            fake.scan(1, 4, &watched).await,
            Err(ScanError::RangeTooLarge { hint: None, .. })
        ));
        assert!(fake.scan(1, 3, &watched).await.is_ok());
        fake.reorg_from(8, "x");
        assert_eq!(fake.block_hash(7).await.expect("ok"), "h7");
        assert_eq!(fake.block_hash(8).await.expect("ok"), "x8");
        assert_eq!(fake.hash(10), "x10");
    }
}
