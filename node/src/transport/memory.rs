//! The in-memory twin of the libp2p transport: nodes in one process reach each other through
//! a [`Switchboard`], addressed by their p2p address as over TCP. A node that leaves the
//! switchboard (it stopped) is gone: its peers' links to it close, and a check finds nothing
//! there, as a check of a dead process's address does. Links can be cut and mended, to split
//! a cluster in two.

use super::{Inbound, LocalDigest, NetError, NetEvent, Request, Response, Transport};
use crate::membership::MemberId;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

/// How long a request waits for its answer, as the libp2p transport's request timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Events waiting for a node's driver at most; past it, datagrams are dropped (as a full
/// socket buffer would) and requests wait.
const EVENTS: usize = 1024;

/// A node on the switchboard.
struct Line {
    peer_id: String,
    events: mpsc::Sender<NetEvent>,
    digest: Arc<LocalDigest>,
}

#[derive(Default)]
struct Board {
    lines: HashMap<SocketAddr, Line>,
    /// Pairs of addresses that cannot reach each other, smaller first.
    cut: BTreeSet<(SocketAddr, SocketAddr)>,
}

/// The nodes of one process, and the links between them.
#[derive(Clone, Default)]
pub struct Switchboard(Arc<Mutex<Board>>);

/// One node's end of the switchboard.
#[derive(Clone)]
pub struct MemoryTransport {
    board: Switchboard,
    me: SocketAddr,
    peer_id: String,
}

fn pair(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    (a.min(b), a.max(b))
}

impl Switchboard {
    /// Puts a node on the board at `addr`: its transport, and what arrives for it.
    pub fn attach(
        &self,
        addr: SocketAddr,
        peer_id: String,
        digest: Arc<LocalDigest>,
    ) -> (MemoryTransport, mpsc::Receiver<NetEvent>) {
        let (events, rx) = mpsc::channel(EVENTS);
        let line = Line {
            peer_id: peer_id.clone(),
            events,
            digest,
        };
        self.board().lines.insert(addr, line);
        let transport = MemoryTransport {
            board: self.clone(),
            me: addr,
            peer_id,
        };
        (transport, rx)
    }

    /// Takes the node at `addr` off the board (it stopped): every other node's link to it
    /// closes.
    pub fn detach(&self, addr: SocketAddr) {
        let mut board = self.board();
        let Some(gone) = board.lines.remove(&addr) else {
            return;
        };
        for line in board.lines.values() {
            let _ = line
                .events
                .try_send(NetEvent::Disconnected(gone.peer_id.clone()));
        }
    }

    /// Cuts the link between `a` and `b` (both ways), or mends it.
    pub fn set_cut(&self, a: SocketAddr, b: SocketAddr, cut: bool) {
        let mut board = self.board();
        match cut {
            true => board.cut.insert(pair(a, b)),
            false => board.cut.remove(&pair(a, b)),
        };
    }

    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The events sender and digest of the node at `to`, if `from` can reach it.
    fn reach(
        &self,
        from: SocketAddr,
        to: SocketAddr,
    ) -> Option<(mpsc::Sender<NetEvent>, Arc<LocalDigest>, String)> {
        let board = self.board();
        if board.cut.contains(&pair(from, to)) {
            return None;
        }
        let line = board.lines.get(&to)?;
        Some((
            line.events.clone(),
            line.digest.clone(),
            line.peer_id.clone(),
        ))
    }
}

impl MemoryTransport {
    /// Sends a datagram as a request; hands the datagram it calls for, if any, back to this
    /// node. Returns once the peer answered (or cannot be reached).
    async fn datagram(&self, to: MemberId, data: Vec<u8>) {
        let (Some((theirs, _, _)), Some((mine, my_digest, _))) = (
            self.board.reach(self.me, to.p2p),
            self.board.reach(to.p2p, self.me),
        ) else {
            debug!(peer = %to.p2p, "unreachable: datagram dropped");
            return;
        };
        let (reply, answer) = oneshot::channel();
        let event = NetEvent::Membership {
            from: self.peer_id.clone(),
            data,
            digest: my_digest.get(),
            reply: Some(reply),
        };
        if theirs.try_send(event).is_err() {
            debug!(peer = %to.p2p, "the peer is busy: datagram dropped");
            return;
        }
        let Ok(Ok(Some(data))) = tokio::time::timeout(REQUEST_TIMEOUT, answer).await else {
            return;
        };
        if let Some((_, digest, peer_id)) = self.board.reach(self.me, to.p2p) {
            let back = NetEvent::Membership {
                from: peer_id,
                data,
                digest: digest.get(),
                reply: None,
            };
            let _ = mine.try_send(back);
        }
    }
}

impl Transport for MemoryTransport {
    fn peer_id(&self) -> String {
        self.peer_id.clone()
    }

    async fn send_membership(&self, to: MemberId, data: Vec<u8>) {
        let transport = self.clone();
        tokio::spawn(async move { transport.datagram(to, data).await });
    }

    async fn deliver_membership(&self, to: MemberId, data: Vec<u8>) {
        self.datagram(to, data).await;
    }

    async fn request(&self, to: MemberId, request: Request) -> Result<Response, NetError> {
        let failed = |reason: &str| NetError::Request {
            peer: to.name.clone(),
            reason: reason.to_string(),
        };
        let Some(request) = Inbound::of(request) else {
            return Err(failed("datagrams go by send_membership"));
        };
        let (events, _, _) = self
            .board
            .reach(self.me, to.p2p)
            .ok_or_else(|| failed("unreachable"))?;
        let (reply, answer) = oneshot::channel();
        let event = NetEvent::Request {
            from: self.peer_id.clone(),
            request,
            reply,
        };
        events.send(event).await.map_err(|_| failed("stopped"))?;
        match tokio::time::timeout(REQUEST_TIMEOUT, answer).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_)) => Err(failed("the peer dropped the request")),
            Err(_) => Err(failed("timed out")),
        }
    }

    async fn check(&self, peer: MemberId) {
        let gone = !self.board.board().lines.contains_key(&peer.p2p);
        if gone && let Some((mine, _, _)) = self.board.reach(self.me, self.me) {
            let _ = mine.try_send(NetEvent::Gone(peer.peer_id.clone()));
        }
    }

    async fn disconnect(&self, _peer_id: String) {
        // No connection is kept between datagrams: nothing to close.
    }
}
