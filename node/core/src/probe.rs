//! Health checks as Kubernetes writes them: liveness and readiness probes by HTTP GET, TCP
//! connect or a command, with `initialDelaySeconds`, `periodSeconds`, `timeoutSeconds` and the
//! success and failure thresholds.
//!
//! [`Prober`]: which check is due when, and what the results add up to. The node's prober
//! actor runs the due checks and reports their results; the [`Health`] they add up to decides:
//! a readiness probe that is not passing keeps its pod unready (no service traffic); a
//! liveness probe that fails its threshold has the reconciler kill the container, which its
//! restart policy then restarts.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use weeble_crdt::Probe;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Liveness,
    Readiness,
}

/// One probe of one running container, resolved to what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub container_id: String,
    /// When the container (last) started, Unix ms: a restart begins the probe afresh.
    pub started_ms: i64,
    pub kind: Kind,
    pub probe: Probe,
    pub how: How,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum How {
    Http { addr: SocketAddr, path: String },
    Tcp { addr: SocketAddr },
    Exec { command: Vec<String> },
}

/// What the probes say about the node's containers (by id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// Containers whose readiness probe is not passing (or has not passed yet).
    pub unready: BTreeSet<String>,
    /// Containers whose liveness probe failed, with the start of the run that failed: to be
    /// killed (unless they have restarted since).
    pub failing: BTreeMap<String, i64>,
}

#[derive(Debug)]
struct Tracker {
    check: Check,
    /// When it runs next (Unix ms); `None` while it runs.
    due_ms: Option<i64>,
    successes: u32,
    failures: u32,
    passing: bool,
}

/// Every check of the node and where its results stand. Pure: time comes in as Unix ms.
#[derive(Debug, Default)]
pub struct Prober {
    trackers: BTreeMap<(String, Kind), Tracker>,
}

impl Prober {
    /// The checks to run from now on. A check that is unchanged (same container, same start,
    /// same probe) keeps its count; a new one waits out its initial delay, unready (a
    /// readiness probe) or alive (a liveness probe) until its results say otherwise.
    pub fn set(&mut self, checks: Vec<Check>) {
        let mut old = std::mem::take(&mut self.trackers);
        for check in checks {
            let key = (check.container_id.clone(), check.kind);
            let tracker = match old.remove(&key) {
                Some(t) if t.check == check => t,
                _ => Tracker {
                    due_ms: Some(
                        check.started_ms + i64::from(check.probe.initial_delay_seconds) * 1000,
                    ),
                    passing: check.kind == Kind::Liveness,
                    successes: 0,
                    failures: 0,
                    check,
                },
            };
            self.trackers.insert(key, tracker);
        }
    }

    /// The checks due at `now_ms`; each is marked running until its result is recorded.
    pub fn take_due(&mut self, now_ms: i64) -> Vec<Check> {
        self.trackers
            .values_mut()
            .filter(|t| t.due_ms.is_some_and(|due| due <= now_ms))
            .map(|t| {
                t.due_ms = None;
                t.check.clone()
            })
            .collect()
    }

    /// When the next check is due, if any is waiting.
    pub fn next_due_ms(&self) -> Option<i64> {
        self.trackers.values().filter_map(|t| t.due_ms).min()
    }

    /// Counts a result of `check` (ignored if the check was replaced meanwhile).
    pub fn record(&mut self, check: &Check, passed: bool, now_ms: i64) {
        let key = (check.container_id.clone(), check.kind);
        let Some(t) = self.trackers.get_mut(&key).filter(|t| &t.check == check) else {
            return;
        };
        let probe = &t.check.probe;
        if passed {
            t.successes += 1;
            t.failures = 0;
            if t.successes >= probe.success_threshold {
                t.passing = true;
            }
        } else {
            t.failures += 1;
            t.successes = 0;
            if t.failures >= probe.failure_threshold {
                t.passing = false;
            }
        }
        t.due_ms = Some(now_ms + i64::from(probe.period_seconds) * 1000);
    }

    pub fn health(&self) -> Health {
        let mut health = Health::default();
        for ((id, kind), t) in &self.trackers {
            match (kind, t.passing) {
                (_, true) => {}
                (Kind::Readiness, false) => {
                    health.unready.insert(id.clone());
                }
                (Kind::Liveness, false) => {
                    health.failing.insert(id.clone(), t.check.started_ms);
                }
            }
        }
        health
    }
}

#[cfg(test)]
mod tests;
