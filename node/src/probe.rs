//! Health checks as Kubernetes writes them: liveness and readiness probes by HTTP GET, TCP
//! connect or a command, with `initialDelaySeconds`, `periodSeconds`, `timeoutSeconds` and the
//! success and failure thresholds.
//!
//! [`Prober`] is the pure core: which check is due when, and what the results add up to. The
//! actor ([`start`]) runs the due checks against the containers (their ports where they are
//! published, commands through the runtime) and publishes the [`Health`] of the node's
//! containers: a readiness probe that is not passing keeps its pod unready (no service
//! traffic); a liveness probe that fails its threshold has the reconciler kill the container,
//! which its restart policy then restarts.

use crate::runtime::ContainerRuntime;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
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

/// Runs the checks it is given on `checks` and publishes the containers' health.
pub fn start<R: ContainerRuntime>(
    runtime: R,
    mut checks: watch::Receiver<Vec<Check>>,
) -> watch::Receiver<Arc<Health>> {
    let (health_tx, health_rx) = watch::channel(Arc::new(Health::default()));
    tokio::spawn(async move {
        let mut prober = Prober::default();
        let (results_tx, mut results) = mpsc::channel::<(Check, bool)>(256);
        loop {
            let now = crate::clock::now_ms();
            for check in prober.take_due(now) {
                let (runtime, results_tx) = (runtime.clone(), results_tx.clone());
                tokio::spawn(async move {
                    let passed = run(&runtime, &check).await;
                    let _ = results_tx.send((check, passed)).await;
                });
            }
            let wait = prober
                .next_due_ms()
                .map_or(Duration::from_secs(3600), |due| {
                    Duration::from_millis(due.saturating_sub(now).max(0) as u64)
                });
            tokio::select! {
                changed = checks.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    prober.set(checks.borrow_and_update().clone());
                }
                Some((check, passed)) = results.recv() => {
                    prober.record(&check, passed, crate::clock::now_ms());
                }
                _ = tokio::time::sleep(wait) => {}
            }
            let health = prober.health();
            health_tx.send_if_modified(|old| {
                let changed = **old != health;
                if changed {
                    *old = Arc::new(health);
                }
                changed
            });
        }
    });
    health_rx
}

/// One run of a check, within its timeout: whether it passed.
async fn run<R: ContainerRuntime>(runtime: &R, check: &Check) -> bool {
    let timeout = Duration::from_secs(u64::from(check.probe.timeout_seconds));
    let attempt = async {
        match &check.how {
            How::Tcp { addr } => tokio::net::TcpStream::connect(addr).await.is_ok(),
            How::Http { addr, path } => http_get(*addr, path).await.unwrap_or(false),
            How::Exec { command } => runtime
                .exec(&check.container_id, command)
                .await
                .is_ok_and(|code| code == 0),
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or(false)
}

/// An HTTP/1.0 GET: whether the status is 200-399, as Kubernetes counts it.
async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<bool> {
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: weeble-probe\r\n\r\n");
    conn.write_all(request.as_bytes()).await?;
    let mut head = [0u8; 12]; // "HTTP/1.1 200"
    conn.read_exact(&mut head).await?;
    let status: u16 = std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((200..400).contains(&status))
}

#[cfg(test)]
mod tests;
