//! The sliding-window arithmetic shared by both stores: what a [`Rule`] is, what one check
//! observed (`Observed`, the same numbers the Lua script returns) and how that becomes a
//! [`Decision`] per rule and a [`Verdict`] per request. Pure integer math: no clock, no I/O.
use std::time::Duration;

/// Where a decision was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Redis,
    InProcess,
    /// Redis was down and the policy (`allow` / `deny`) answered without counting.
    Unavailable,
    /// The limit is 0 (disabled): nothing was counted.
    Unlimited,
}

/// One limit to apply: at most `limit` requests per sliding `window` for `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Short name for headers and logs: `ip`, `route`, `merchant`.
    pub name: &'static str,
    pub key: String,
    /// `0` means unlimited: the rule is skipped.
    pub limit: u32,
    pub window: Duration,
}

/// The outcome of one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Does this rule admit the request?
    pub allowed: bool,
    pub name: &'static str,
    pub limit: u32,
    pub window: Duration,
    /// Requests still admitted right now (after counting this one, if it was admitted).
    pub remaining: u32,
    /// Time until the full quota is back.
    pub reset_after: Duration,
    /// When denied: time until one more request would be admitted. Zero when allowed.
    pub retry_after: Duration,
    /// True exactly once per key per window: the first denial (for the audit log).
    pub first_denial: bool,
    pub source: Source,
}

/// The outcome of all rules of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Admitted by every rule (and then counted against every rule).
    pub allowed: bool,
    /// One per rule with a non-zero limit, in the order given.
    pub decisions: Vec<Decision>,
}

impl Verdict {
    /// The decision to report in headers: the denying rule that asks for the longest wait, or,
    /// when admitted, the rule with the fewest requests left.
    pub fn binding(&self) -> Option<&Decision> {
        if self.allowed {
            self.decisions
                .iter()
                .min_by_key(|d| (d.remaining, std::cmp::Reverse(d.reset_after)))
        } else {
            self.decisions
                .iter()
                .filter(|d| !d.allowed)
                .max_by_key(|d| d.retry_after)
        }
    }
}

pub(super) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The state of one rule as seen by a check (the same numbers the Lua script returns).
#[derive(Debug, Clone, Copy)]
pub(super) struct Observed {
    pub(super) fits: bool,
    pub(super) prev: u64,
    /// After counting this request, if it was admitted.
    pub(super) curr: u64,
    pub(super) elapsed: u64,
    pub(super) first_denial: bool,
}

/// Would one more request fit? `prev·(w−e) + (curr+1)·w ≤ limit·w`, in integers (the Lua
/// script evaluates the same inequality).
pub(super) fn fits(limit: u64, w: u64, prev: u64, curr: u64, e: u64) -> bool {
    let lhs =
        u128::from(prev) * u128::from(w.saturating_sub(e)) + (u128::from(curr) + 1) * u128::from(w);
    lhs <= u128::from(limit) * u128::from(w)
}

pub(super) fn decide(rule: &Rule, o: Observed, source: Source) -> Decision {
    let limit = u64::from(rule.limit);
    let w = ms(rule.window);
    let e = o.elapsed.min(w);
    let decayed = u128::from(o.prev) * u128::from(w - e);
    let budget = (u128::from(limit) * u128::from(w)).saturating_sub(decayed) / u128::from(w);
    let remaining = u64::try_from(budget)
        .unwrap_or(u64::MAX)
        .saturating_sub(o.curr)
        .min(limit);
    let reset_ms = if o.curr > 0 {
        2 * w - e
    } else if o.prev > 0 {
        w - e
    } else {
        0
    };
    let retry_ms = if o.fits {
        0
    } else if o.curr < limit && o.prev > 0 {
        // Still fits in this window once enough of the previous window has slid out.
        let room = u128::from(limit - o.curr - 1) * u128::from(w);
        let keep = u64::try_from(room / u128::from(o.prev)).unwrap_or(u64::MAX);
        (w.saturating_sub(keep)).saturating_sub(e).max(1)
    } else {
        // This window is full: wait for the next one, then for the old count to slide out.
        let room = u128::from(limit.saturating_sub(1)) * u128::from(w);
        let keep = u64::try_from(room / u128::from(o.curr.max(1))).unwrap_or(u64::MAX);
        (w - e) + w.saturating_sub(keep)
    };
    Decision {
        allowed: o.fits,
        name: rule.name,
        limit: rule.limit,
        window: rule.window,
        remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        reset_after: Duration::from_millis(reset_ms),
        retry_after: Duration::from_millis(retry_ms),
        first_denial: o.first_denial,
        source,
    }
}

pub(super) fn uncounted(rule: &Rule, source: Source) -> Decision {
    Decision {
        allowed: true,
        name: rule.name,
        limit: rule.limit,
        window: rule.window,
        remaining: rule.limit,
        reset_after: Duration::ZERO,
        retry_after: Duration::ZERO,
        first_denial: false,
        source,
    }
}

pub(super) fn assemble(rules: &[Rule], seen: Vec<(Observed, bool)>, source: Source) -> Verdict {
    let allowed = seen.iter().all(|(_, all)| *all) && seen.len() == rules.len();
    Verdict {
        allowed,
        decisions: rules
            .iter()
            .zip(seen)
            .map(|(r, (o, _))| decide(r, o, source))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(limit: u32, window_ms: u64) -> Rule {
        Rule {
            name: "r",
            key: "k".into(),
            limit,
            window: Duration::from_millis(window_ms),
        }
    }

    fn seen(fits: bool, prev: u64, curr: u64, elapsed: u64) -> Observed {
        Observed {
            fits,
            prev,
            curr,
            elapsed,
            first_denial: false,
        }
    }

    #[test]
    fn fits_is_the_weighted_inequality_at_its_boundary() {
        // 10 per 1000 ms, 10 in the previous window, 100 ms into this one: 9 still count.
        assert!(fits(10, 1000, 10, 0, 100));
        assert!(!fits(10, 1000, 10, 1, 100));
        assert!(fits(3, 1000, 0, 2, 0));
        assert!(!fits(3, 1000, 0, 3, 0));
        assert!(!fits(0, 1000, 0, 0, 0), "limit 0 admits nothing here");
    }

    #[test]
    fn decide_reports_remaining_reset_and_retry() {
        let r = rule(3, 1000);
        let d = decide(&r, seen(true, 0, 1, 200), Source::InProcess);
        assert!(d.allowed);
        assert_eq!(d.remaining, 2);
        assert_eq!(d.reset_after, Duration::from_millis(1800));
        assert_eq!(d.retry_after, Duration::ZERO);
        let d = decide(&r, seen(false, 0, 3, 20), Source::Redis);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.retry_after, Duration::from_millis(1314));
        assert_eq!(d.source, Source::Redis);
    }

    #[test]
    fn binding_is_the_longest_wait_when_denied_else_the_fewest_left() {
        let a = decide(&rule(10, 1000), seen(true, 0, 1, 0), Source::InProcess);
        let b = decide(&rule(3, 1000), seen(true, 0, 2, 0), Source::InProcess);
        let v = Verdict {
            allowed: true,
            decisions: vec![a, b],
        };
        assert_eq!(v.binding().map(|d| d.limit), Some(3));
        let short = Decision {
            allowed: false,
            retry_after: Duration::from_millis(10),
            ..a
        };
        let long = Decision {
            allowed: false,
            retry_after: Duration::from_millis(900),
            ..b
        };
        let v = Verdict {
            allowed: false,
            decisions: vec![short, a, long],
        };
        assert_eq!(v.binding().map(|d| d.retry_after.as_millis()), Some(900));
    }

    #[test]
    fn assemble_refuses_when_a_rule_has_no_observation() {
        let rules = [rule(3, 1000), rule(3, 1000)];
        let v = assemble(&rules, vec![(seen(true, 0, 1, 0), true)], Source::Redis);
        assert!(!v.allowed);
        let v = assemble(
            &rules,
            vec![(seen(true, 0, 1, 0), true), (seen(true, 0, 1, 0), true)],
            Source::Redis,
        );
        assert!(v.allowed);
        assert_eq!(v.decisions.len(), 2);
        let u = uncounted(&rules[0], Source::Unlimited);
        assert!(u.allowed && u.remaining == 3 && u.source == Source::Unlimited);
    }
}
