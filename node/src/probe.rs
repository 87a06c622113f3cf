//! Running one health check, as the driver sees it: the [`Checker`] trait, implemented by
//! [`Probes`] (a TCP connect or an HTTP GET to the container's published port, a command
//! through the runtime) and by its in-memory twin [`MemoryProbes`]. Which checks are due, and
//! what their outcomes mean, is the core's [`Prober`].

use crate::runtime::ContainerRuntime;
use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
pub use weeble_core::probe::*;

/// Runs health checks. Implementations are cheap to clone (a handle).
pub trait Checker: Clone + Send + Sync + 'static {
    /// Runs `check` once: whether it passed within its timeout.
    fn run(&self, check: Check) -> impl Future<Output = bool> + Send;
}

/// The real checks: over the network, and through the container runtime.
#[derive(Clone)]
pub struct Probes<R>(pub R);

impl<R: ContainerRuntime> Checker for Probes<R> {
    async fn run(&self, check: Check) -> bool {
        let timeout = Duration::from_secs(u64::from(check.probe.timeout_seconds));
        let attempt = async {
            match &check.how {
                How::Tcp { addr } => tokio::net::TcpStream::connect(addr).await.is_ok(),
                How::Http { addr, path } => http_get(*addr, path).await.unwrap_or(false),
                How::Exec { command } => self
                    .0
                    .exec(&check.container_id, command)
                    .await
                    .is_ok_and(|code| code == 0),
            }
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .unwrap_or(false)
    }
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

/// The in-memory twin: every check passes, but those of the containers told to fail.
#[derive(Clone, Default)]
pub struct MemoryProbes {
    failing: Arc<Mutex<BTreeSet<String>>>,
}

impl MemoryProbes {
    /// From now on every check of container `id` fails (`true`) or passes (`false`).
    pub fn set_failing(&self, id: &str, failing: bool) {
        let mut set = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        match failing {
            true => set.insert(id.to_string()),
            false => set.remove(id),
        };
    }
}

impl Checker for MemoryProbes {
    async fn run(&self, check: Check) -> bool {
        let set = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        !set.contains(&check.container_id)
    }
}
