//! The in-process store: one `Bucket` per (window, key) behind one mutex, so all rules of a
//! request are checked and counted atomically. Used when no Redis is configured and as the
//! fallback while Redis is down. Memory is bounded (`Local::new`'s `max_keys`): keys that have
//! slid out are swept, and under a flood of distinct keys arbitrary ones are evicted.
use std::{collections::HashMap, sync::Mutex, time::Instant};

use super::{
    WARN_EVERY_MS,
    window::{Observed, Rule, fits, ms},
};

const SWEEP_EVERY_MS: u64 = 10_000;

/// One key's counters: the window index they belong to, the current and previous counts, and the
/// window in which the key was last reported as limited.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    window_ms: u64,
    idx: u64,
    curr: u64,
    prev: u64,
    denied_idx: Option<u64>,
}

impl Bucket {
    fn roll(&mut self, idx: u64) {
        if self.idx != idx {
            self.prev = if idx == self.idx.wrapping_add(1) {
                self.curr
            } else {
                0
            };
            self.curr = 0;
            self.idx = idx;
        }
    }
}

pub(super) struct Local {
    epoch: Instant,
    max_keys: usize,
    state: Mutex<LocalState>,
}

#[derive(Default)]
struct LocalState {
    buckets: HashMap<String, Bucket>,
    last_sweep_ms: u64,
    last_evict_warn_ms: Option<u64>,
}

impl Local {
    pub(super) fn new(max_keys: usize) -> Self {
        Self {
            epoch: Instant::now(),
            max_keys: max_keys.max(16),
            state: Mutex::new(LocalState::default()),
        }
    }

    pub(super) fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Checks and counts all rules at `now_ms` atomically (one lock).
    pub(super) fn check_at(&self, rules: &[Rule], now_ms: u64) -> Vec<(Observed, bool)> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if now_ms.saturating_sub(state.last_sweep_ms) >= SWEEP_EVERY_MS {
            state.last_sweep_ms = now_ms;
            // A bucket two windows old has fully slid out: it counts nothing any more.
            state
                .buckets
                .retain(|_, b| now_ms / b.window_ms < b.idx.saturating_add(2));
        }
        let keys: Vec<String> = rules
            .iter()
            .map(|r| format!("{}:{}", ms(r.window), r.key))
            .collect();
        let new_keys = keys
            .iter()
            .filter(|k| !state.buckets.contains_key(*k))
            .count();
        if state.buckets.len() + new_keys > self.max_keys {
            // Under a flood of distinct keys (spoofed IPv6 /64s, say) bound memory: drop an
            // arbitrary eighth. Those keys restart from zero, which only ever errs on the lenient side.
            let drop = self.max_keys / 8 + new_keys;
            let victims: Vec<String> = state.buckets.keys().take(drop).cloned().collect();
            for k in victims {
                state.buckets.remove(&k);
            }
            if state
                .last_evict_warn_ms
                .is_none_or(|t| now_ms.saturating_sub(t) >= WARN_EVERY_MS)
            {
                state.last_evict_warn_ms = Some(now_ms);
                tracing::warn!(
                    max_keys = self.max_keys,
                    "in-process rate limiter is full; evicting arbitrary keys"
                );
            }
        }
        let mut seen = Vec::with_capacity(rules.len());
        for (rule, key) in rules.iter().zip(&keys) {
            let w = ms(rule.window);
            let idx = now_ms / w;
            let b = state.buckets.entry(key.clone()).or_insert(Bucket {
                window_ms: w,
                idx,
                ..Bucket::default()
            });
            b.roll(idx);
            let ok = fits(u64::from(rule.limit), w, b.prev, b.curr, now_ms - idx * w);
            seen.push((idx, ok));
        }
        let all = seen.iter().all(|(_, ok)| *ok);
        let mut out = Vec::with_capacity(rules.len());
        for ((rule, key), (idx, ok)) in rules.iter().zip(&keys).zip(seen) {
            let w = ms(rule.window);
            let Some(b) = state.buckets.get_mut(key) else {
                continue;
            };
            let mut first_denial = false;
            if all {
                b.curr += 1;
            } else if !ok && b.denied_idx != Some(idx) {
                b.denied_idx = Some(idx);
                first_denial = true;
            }
            out.push((
                Observed {
                    fits: ok,
                    prev: b.prev,
                    curr: b.curr,
                    elapsed: now_ms - idx * w,
                    first_denial,
                },
                all,
            ));
        }
        out
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .buckets
            .len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::security::ratelimit::{Source, Verdict, window::assemble};

    fn rule(name: &'static str, limit: u32, window_ms: u64) -> Rule {
        Rule {
            name,
            key: name.into(),
            limit,
            window: Duration::from_millis(window_ms),
        }
    }

    fn run(local: &Local, rules: &[Rule], now: u64) -> Verdict {
        assemble(rules, local.check_at(rules, now), Source::InProcess)
    }

    #[test]
    fn admits_exactly_the_limit_then_denies_with_a_retry_time() {
        let l = Local::new(1000);
        let r = [rule("a", 3, 1000)];
        for left in [2, 1, 0] {
            let v = run(&l, &r, 10);
            assert!(v.allowed);
            assert_eq!(v.decisions[0].remaining, left);
        }
        let v = run(&l, &r, 20);
        assert!(!v.allowed);
        assert!(v.decisions[0].first_denial);
        // Window full: next window starts in 980 ms, then 3 old requests must slide to ≤ 2:
        // 3·(1000−e)/1000 ≤ 2 → e ≥ 334 → 980 + 334.
        assert_eq!(v.decisions[0].retry_after, Duration::from_millis(1314));
        assert!(
            !run(&l, &r, 30).decisions[0].first_denial,
            "once per window"
        );
        assert!(!run(&l, &r, 1000 + 333).allowed);
        assert!(run(&l, &r, 1000 + 334).allowed);
    }

    #[test]
    fn the_window_slides_instead_of_resetting() {
        let l = Local::new(1000);
        let r = [rule("a", 10, 1000)];
        for _ in 0..10 {
            assert!(run(&l, &r, 900).allowed);
        }
        // A fixed window would hand out 10 fresh requests at t=1000; the sliding one has
        // 10·(1−0.1)=9 still counted, so one more fits.
        assert!(run(&l, &r, 1100).allowed);
        assert!(!run(&l, &r, 1100).allowed);
        // Two windows later everything has slid out.
        let v = run(&l, &r, 3000);
        assert!(v.allowed);
        assert_eq!(v.decisions[0].remaining, 9);
    }

    #[test]
    fn a_denied_rule_counts_nothing_anywhere() {
        let l = Local::new(1000);
        let wide = rule("ip", 100, 1000);
        let narrow = rule("route", 1, 1000);
        assert!(run(&l, &[wide.clone(), narrow.clone()], 0).allowed);
        let v = run(&l, &[wide.clone(), narrow.clone()], 1);
        assert!(!v.allowed);
        assert!(v.decisions[0].allowed && !v.decisions[1].allowed);
        assert_eq!(v.binding().map(|d| d.name), Some("route"));
        assert_eq!(run(&l, &[wide], 2).decisions[0].remaining, 98);
    }

    #[test]
    fn memory_stays_bounded() {
        let l = Local::new(100);
        for i in 0..1000 {
            let r = Rule {
                key: format!("k{i}"),
                ..rule("k", 5, 1000)
            };
            run(&l, &[r], 0);
        }
        assert!(l.len() <= 100, "{}", l.len());
        // Old keys are swept once they have slid out.
        run(&l, &[rule("late", 5, 1000)], 60_000);
        assert_eq!(l.len(), 1);
    }
}
