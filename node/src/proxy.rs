//! The service proxy: every node serves every service, with no kube-proxy and no master. For
//! each TCP service port it listens on the node's own address and forwards each connection to
//! a ready endpoint anywhere in the cluster, taking the endpoints in turn (round-robin).
//!
//! Each endpoint has a connection made ahead ([`Spares`]), so a client's connection waits for
//! no second handshake. A connection that fails to an endpoint is tried on the next one
//! before the client sees an error: when the connect fails, and also when the endpoint closes or resets before sending
//! its first byte (Docker's userland proxy accepts for a container that has just died, then
//! closes). Until that first byte, what the client sent is kept (up to [`REPLAY_LIMIT`]) and
//! sent again to the next endpoint; after it, the two connections are joined as they are
//! (in the kernel, by `splice`, on Linux).
//!
//! Which service gets which port is [`listeners`] (pure); the rest is thin I/O over a
//! [`net::Net`]: real TCP, or its in-memory twin.

use crate::services::Endpoints;
use net::Net;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use weeble_crdt::{ObjectKey, Protocol};

/// How long a connect to one endpoint may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// What the client sends before the endpoint answers is kept, up to this much, to be sent
/// again if the endpoint fails; past it the connection is committed to that endpoint.
pub const REPLAY_LIMIT: usize = 64 * 1024;
/// How often a port that could not be bound is tried again.
const BIND_RETRY: Duration = Duration::from_secs(5);

/// The service port a node port serves: the service, and the index of the port in its spec.
pub type Owner = (ObjectKey, usize);

/// Which service port each node port serves. Every service is served on the node's own
/// address, so a port number can serve one service only: when two services ask for the same
/// port, the one whose namespace/name sorts first has it (every node decides alike), and the
/// others are returned as conflicts. UDP ports are not proxied.
pub fn listeners(endpoints: &Endpoints) -> (BTreeMap<u16, Owner>, Vec<(Owner, Owner)>) {
    let mut ports: BTreeMap<u16, Owner> = BTreeMap::new();
    let mut conflicts = Vec::new();
    for (key, service_ports) in endpoints {
        for (index, port) in service_ports.iter().enumerate() {
            if port.protocol != Protocol::Tcp {
                continue;
            }
            let owner = (key.clone(), index);
            match ports.get(&port.port) {
                Some(first) => conflicts.push((owner, first.clone())),
                None => {
                    ports.insert(port.port, owner);
                }
            }
        }
    }
    (ports, conflicts)
}

/// Starts the proxy on `ip` of `net`; it follows `endpoints` until that channel closes.
pub fn start<N: Net>(net: N, ip: IpAddr, endpoints: watch::Receiver<Arc<Endpoints>>) {
    tokio::spawn(run(net, ip, endpoints));
}

async fn run<N: Net>(net: N, ip: IpAddr, mut endpoints: watch::Receiver<Arc<Endpoints>>) {
    let mut serving: BTreeMap<u16, (Owner, JoinHandle<()>)> = BTreeMap::new();
    let mut reported = Vec::new();
    loop {
        let (wanted, conflicts) = listeners(&endpoints.borrow_and_update());
        if conflicts != reported {
            for ((key, _), (first, _)) in &conflicts {
                warn!(service = %key, port_of = %first, "service port taken by another service: not served");
            }
            reported = conflicts;
        }
        serving.retain(|port, (owner, task)| {
            let keep = wanted.get(port) == Some(owner);
            if !keep {
                task.abort();
            }
            keep
        });
        let mut unbound = false;
        for (port, owner) in wanted {
            if serving.contains_key(&port) {
                continue;
            }
            match net.bind(SocketAddr::new(ip, port)).await {
                Ok(listener) => {
                    info!(service = %owner.0, %ip, port, "serving service port");
                    let (net, owner_, endpoints_) = (net.clone(), owner.clone(), endpoints.clone());
                    let task = tokio::spawn(accept(net, listener, owner_, endpoints_));
                    serving.insert(port, (owner, task));
                }
                Err(e) => {
                    warn!(service = %owner.0, %ip, port, error = %e, "cannot serve service port; retrying");
                    unbound = true;
                }
            }
        }
        tokio::select! {
            changed = endpoints.changed() => if changed.is_err() {
                serving.values().for_each(|(_, task)| task.abort());
                return;
            },
            _ = tokio::time::sleep(BIND_RETRY), if unbound => {}
        }
    }
}

async fn accept<N: Net>(
    net: N,
    mut listener: N::Listener,
    (key, index): Owner,
    endpoints: watch::Receiver<Arc<Endpoints>>,
) {
    let turn = Arc::new(AtomicUsize::new(0));
    let spares = Spares::new(net);
    loop {
        let Ok(client) = N::accept(&mut listener).await else {
            continue;
        };
        let addrs: Vec<SocketAddr> = endpoints
            .borrow()
            .get(&key)
            .and_then(|ports| ports.get(index))
            .map(|p| p.ready.iter().map(|e| e.addr).collect())
            .unwrap_or_default();
        let first = turn.fetch_add(1, Ordering::Relaxed);
        let spares = spares.clone();
        tokio::spawn(async move {
            if let Err(e) = forward(client, &addrs, first, &spares).await {
                debug!(error = %e, "proxied connection ended");
            }
        });
    }
}

/// Connections made ahead, one per endpoint of a port: a client's connection then waits for
/// no second handshake. A spare the endpoint has closed meanwhile (an idle timeout) is
/// dropped when it is taken and a fresh connection made instead; one that fails later is
/// retried like any other.
struct Spares<N: Net> {
    net: N,
    conns: Arc<std::sync::Mutex<HashMap<SocketAddr, N::Stream>>>,
}

impl<N: Net> Clone for Spares<N> {
    fn clone(&self) -> Self {
        Spares {
            net: self.net.clone(),
            conns: self.conns.clone(),
        }
    }
}

impl<N: Net> Spares<N> {
    fn new(net: N) -> Self {
        Spares {
            net,
            conns: Arc::default(),
        }
    }

    /// A connection to `addr`, the spare if it is still open; a new spare is made meanwhile.
    /// Spares for endpoints no longer in `current` are closed.
    async fn connect(&self, addr: SocketAddr, current: &[SocketAddr]) -> Option<N::Stream> {
        let spare = {
            let mut spares = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            spares.retain(|a, _| current.contains(a));
            spares
                .remove(&addr)
                .and_then(|mut conn| N::still_open(&mut conn).then_some(conn))
        };
        let refill = self.clone();
        tokio::spawn(async move {
            if let Some(conn) = refill.connect_now(addr).await {
                let mut spares = refill.conns.lock().unwrap_or_else(|e| e.into_inner());
                spares.entry(addr).or_insert(conn);
            }
        });
        match spare {
            Some(conn) => Some(conn),
            None => self.connect_now(addr).await,
        }
    }

    async fn connect_now(&self, addr: SocketAddr) -> Option<N::Stream> {
        let connect = self.net.connect(addr);
        tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .ok()?
            .ok()
    }
}

/// Forwards `client` to the first of `addrs` (from `first`, in turn) that answers.
async fn forward<N: Net>(
    mut client: N::Stream,
    addrs: &[SocketAddr],
    first: usize,
    spares: &Spares<N>,
) -> std::io::Result<()> {
    let mut sent = Vec::new();
    let mut client_closed = false;
    for attempt in 0..addrs.len() {
        let addr = addrs[(first + attempt) % addrs.len()];
        let Some(mut upstream) = spares.connect(addr, addrs).await else {
            continue;
        };
        match until_first_byte(&mut client, &mut upstream, &mut sent, &mut client_closed).await {
            Answered::Yes if client_closed => {
                tokio::io::copy(&mut upstream, &mut client).await?;
                return client.shutdown().await;
            }
            Answered::Yes => return N::join(&mut client, &mut upstream).await,
            Answered::ClientGone => return Ok(()),
            Answered::Failed => debug!(%addr, "endpoint failed before answering; trying the next"),
        }
    }
    Err(std::io::Error::other(format!(
        "no endpoint answered (of {})",
        addrs.len()
    )))
}

enum Answered {
    /// The endpoint sent its first byte, already passed on to the client.
    Yes,
    /// The endpoint closed or reset first: try the next.
    Failed,
    ClientGone,
}

/// Passes what the client sends on to `upstream` (keeping a copy in `sent`, which is first
/// replayed) until `upstream` sends its first byte, which goes to the client.
async fn until_first_byte<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    client: &mut S,
    upstream: &mut S,
    sent: &mut Vec<u8>,
    client_closed: &mut bool,
) -> Answered {
    if upstream.write_all(sent).await.is_err() {
        return Answered::Failed;
    }
    if *client_closed && upstream.shutdown().await.is_err() {
        return Answered::Failed;
    }
    let (mut from_client, mut from_upstream) = ([0u8; 16 * 1024], [0u8; 16 * 1024]);
    loop {
        tokio::select! {
            read = upstream.read(&mut from_upstream) => return match read {
                Ok(n) if n > 0 => match client.write_all(&from_upstream[..n]).await {
                    Ok(()) => Answered::Yes,
                    Err(_) => Answered::ClientGone,
                },
                _ => Answered::Failed,
            },
            read = client.read(&mut from_client), if !*client_closed => match read {
                Ok(0) => {
                    *client_closed = true;
                    if upstream.shutdown().await.is_err() {
                        return Answered::Failed;
                    }
                }
                Ok(n) => {
                    if upstream.write_all(&from_client[..n]).await.is_err() {
                        return Answered::Failed;
                    }
                    if sent.len() + n > REPLAY_LIMIT {
                        // Too much to replay: this endpoint has the connection, answered or not.
                        return Answered::Yes;
                    }
                    sent.extend_from_slice(&from_client[..n]);
                }
                Err(_) => return Answered::ClientGone,
            },
        }
    }
}

pub mod net;
#[cfg(target_os = "linux")]
mod splice;
#[cfg(test)]
mod tests;
