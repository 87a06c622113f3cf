//! The prober actor: runs the checks the core's [`Prober`] says are due against the node's
//! containers (their ports where they are published, commands through the runtime) and
//! publishes the [`Health`] of the node's containers.

use crate::runtime::ContainerRuntime;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
pub use weeble_core::probe::*;

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
