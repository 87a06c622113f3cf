//! How fast each caller may ask: a token bucket per caller, refilled at a rate a second up
//! to twice that. The API's callers are its tokens' names (or `anonymous` on a node that asks
//! for no token; `--api-rate-limit`: past it, 429 with how long to wait); the network's are
//! peer ids (`--p2p-rate-limit`: past it, the request is dropped). Each caller's refusals
//! are logged at most once per [`LOG_EVERY_MS`]. Pure: [`Limiter::allow`] takes the caller
//! and the time.

use std::collections::HashMap;

/// A caller's refusals are logged at most this often.
pub const LOG_EVERY_MS: i64 = 10_000;

/// Callers tracked at most: past it, the buckets that are full again (idle callers) go first,
/// so a flood of names cannot grow the table without bound.
pub const MAX_CALLERS: usize = 4096;

#[derive(Debug)]
struct Bucket {
    /// Requests it may still make now.
    left: f64,
    at_ms: i64,
    /// When a refusal of it was last logged.
    logged_ms: Option<i64>,
}

/// What [`Limiter::allow`] says of one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Allowed,
    /// Refused: the caller may ask again in `retry_after_s`; `log`: this refusal is the one to
    /// log in this period.
    Limited {
        retry_after_s: u64,
        log: bool,
    },
}

#[derive(Debug)]
pub struct Limiter {
    per_second: f64,
    burst: f64,
    buckets: HashMap<String, Bucket>,
}

impl Limiter {
    /// `per_second` requests a second for each caller, and bursts of twice that.
    pub fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second.max(1));
        Limiter {
            per_second,
            burst: 2.0 * per_second,
            buckets: HashMap::new(),
        }
    }

    /// The requests a second each caller may make.
    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// Whether `caller` may make one more request at `now_ms`.
    pub fn allow(&mut self, caller: &str, now_ms: i64) -> Verdict {
        if !self.buckets.contains_key(caller) && self.buckets.len() >= MAX_CALLERS {
            self.forget_idle(now_ms);
        }
        let (per_second, burst) = (self.per_second, self.burst);
        let bucket = self.buckets.entry(caller.to_string()).or_insert(Bucket {
            left: burst,
            at_ms: now_ms,
            logged_ms: None,
        });
        let elapsed_s = (now_ms - bucket.at_ms).max(0) as f64 / 1000.0;
        bucket.left = (bucket.left + elapsed_s * per_second).min(burst);
        bucket.at_ms = now_ms;
        if bucket.left >= 1.0 {
            bucket.left -= 1.0;
            return Verdict::Allowed;
        }
        let log = bucket
            .logged_ms
            .is_none_or(|at| now_ms - at >= LOG_EVERY_MS);
        if log {
            bucket.logged_ms = Some(now_ms);
        }
        let retry_after_s = ((1.0 - bucket.left) / per_second).ceil().max(1.0) as u64;
        Verdict::Limited { retry_after_s, log }
    }

    /// Drops the buckets that would be full by now; if none would, the one idle longest.
    fn forget_idle(&mut self, now_ms: i64) {
        let (per_second, burst) = (self.per_second, self.burst);
        let full =
            |b: &Bucket| b.left + (now_ms - b.at_ms).max(0) as f64 / 1000.0 * per_second >= burst;
        self.buckets.retain(|_, b| !full(b));
        if self.buckets.len() >= MAX_CALLERS {
            let oldest = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.at_ms)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.buckets.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_gets_its_burst_then_its_rate_and_each_caller_its_own() {
        let mut limiter = Limiter::new(10);
        let allowed = (0..25)
            .filter(|_| limiter.allow("alice", 0) == Verdict::Allowed)
            .count();
        assert_eq!(allowed, 20, "a burst of twice the rate");
        assert_eq!(
            limiter.allow("alice", 0),
            Verdict::Limited {
                retry_after_s: 1,
                log: false
            },
            "logged once: the first refusal was"
        );
        assert_eq!(
            limiter.allow("bob", 0),
            Verdict::Allowed,
            "another caller has its own"
        );
        let after_half_a_second = (0..10)
            .filter(|_| limiter.allow("alice", 500) == Verdict::Allowed)
            .count();
        assert_eq!(after_half_a_second, 5, "refilled at 10 a second");
        assert!(matches!(
            limiter.allow("alice", LOG_EVERY_MS + 500),
            Verdict::Allowed
        ));
    }

    #[test]
    fn refusals_are_logged_once_per_period() {
        let mut limiter = Limiter::new(1);
        // Whether the first refusal at `at` (once the bucket is drained) is the one to log.
        let mut first_refusal_logged = |at: i64| {
            (0..100).find_map(|_| match limiter.allow("x", at) {
                Verdict::Limited { log, .. } => Some(log),
                Verdict::Allowed => None,
            })
        };
        assert_eq!(first_refusal_logged(0), Some(true));
        assert_eq!(
            first_refusal_logged(5_000),
            Some(false),
            "within the period"
        );
        assert_eq!(
            first_refusal_logged(LOG_EVERY_MS),
            Some(true),
            "the next period"
        );
    }

    #[test]
    fn the_table_of_callers_is_bounded() {
        let mut limiter = Limiter::new(1);
        for i in 0..(MAX_CALLERS * 3) {
            limiter.allow(&format!("caller-{i}"), i as i64);
        }
        assert!(limiter.buckets.len() <= MAX_CALLERS);
    }
}
