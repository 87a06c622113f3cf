//! How a node reaches its peers, as its driver sees it: the [`Transport`] trait, implemented
//! by libp2p ([`crate::network::Network`]) and by an in-memory twin ([`memory`]) that joins
//! nodes running in one process. What arrives comes as [`NetEvent`]s on the receiver each
//! transport hands out when it starts; peers are named by their libp2p id (base58).
//!
//! Five exchanges: membership datagrams, each carrying the sender's [`Digest`] (answered with
//! the datagram they call for at once, SWIM's ack to a ping); status messages; automerge
//! sync (answered with the peer's reply message); parts of images (`crate::images`); and a
//! pod's logs or removal, done by its node for another node's API client (`crate::pods`).

pub mod memory;

use crate::membership::MemberId;
use crate::status::StatusMessage;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::oneshot;
use weeble_core::gossip::Digest;
pub use weeble_core::wire::{ImagePart, PodAnswer, PodRequest, Request, Response};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("network setup failed: {0}")]
    Setup(String),
    #[error("request to {peer} failed: {reason}")]
    Request { peer: String, reason: String },
    #[error("the network has stopped")]
    Stopped,
}

/// What the network hands to the rest of the node.
#[derive(Debug)]
pub enum NetEvent {
    /// A membership datagram, and what its sender holds. A datagram that came as a request
    /// has a `reply`: the datagram to send back to its sender at once, if any, goes there.
    Membership {
        from: String,
        data: Vec<u8>,
        digest: Digest,
        reply: Option<oneshot::Sender<Option<Vec<u8>>>>,
    },
    /// A peer's sync message, status message, request for part of an image or for a pod's
    /// logs or removal: send the answer on `reply` (`Response::Sync` or `SyncRefused`;
    /// `Response::Status` or `Ack`; `Response::Image`; `Response::Pod`).
    Request {
        from: String,
        request: Inbound,
        reply: oneshot::Sender<Response>,
    },
    /// The last connection to this peer closed.
    Disconnected(String),
    /// A check found nothing listening at the peer's address any more: its process is gone.
    Gone(String),
}

/// A request that needs the node's answer.
#[derive(Debug)]
pub enum Inbound {
    Sync(Vec<u8>),
    Status(StatusMessage),
    Image { id: String, offset: u64, len: u32 },
    Pod(PodRequest),
}

impl Inbound {
    /// What a request asks of the node; `None` for a membership datagram (the network hands
    /// those out as [`NetEvent::Membership`]).
    pub fn of(request: Request) -> Option<Inbound> {
        match request {
            Request::Status(message) => Some(Inbound::Status(message)),
            Request::Sync(message) => Some(Inbound::Sync(message)),
            Request::Image { id, offset, len } => Some(Inbound::Image { id, offset, len }),
            Request::Pod(request) => Some(Inbound::Pod(request)),
            Request::Membership { .. } => None,
        }
    }
}

/// What this node holds, in a digest every membership datagram carries, read by the
/// transport on each send and set by the driver whenever the core says it changed.
#[derive(Default)]
pub struct LocalDigest {
    status: AtomicU64,
    doc: AtomicU64,
    members: AtomicU64,
}

impl LocalDigest {
    pub fn get(&self) -> Digest {
        Digest {
            status: self.status.load(Ordering::Relaxed),
            doc: self.doc.load(Ordering::Relaxed),
            members: self.members.load(Ordering::Relaxed),
        }
    }

    pub fn set(&self, digest: Digest) {
        self.status.store(digest.status, Ordering::Relaxed);
        self.doc.store(digest.doc, Ordering::Relaxed);
        self.members.store(digest.members, Ordering::Relaxed);
    }
}

/// What the driver asks of the network. Implementations are cheap to clone (a handle).
pub trait Transport: Clone + Send + Sync + 'static {
    /// This node's libp2p id.
    fn peer_id(&self) -> String;

    /// Sends a membership datagram; delivery is best effort, as SWIM expects. A datagram
    /// the peer answers with arrives as a [`NetEvent::Membership`] without a reply.
    fn send_membership(&self, to: MemberId, data: Vec<u8>) -> impl Future<Output = ()> + Send;

    /// Sends a membership datagram and returns once the peer answered or the request failed:
    /// for a node about to stop, whose last words must go out first.
    fn deliver_membership(&self, to: MemberId, data: Vec<u8>) -> impl Future<Output = ()> + Send;

    /// Sends a status or sync request and waits for the peer's answer.
    fn request(
        &self,
        to: MemberId,
        request: Request,
    ) -> impl Future<Output = Result<Response, NetError>> + Send;

    /// Dials a peer whose connection closed: if nothing listens at its address any more, a
    /// [`NetEvent::Gone`] follows. A peer that is only slow or cut off is left to SWIM.
    fn check(&self, peer: MemberId) -> impl Future<Output = ()> + Send;

    /// Closes the connections to a peer declared dead (a connection that hung through a
    /// partition would otherwise be reused after the heal, at TCP's retransmission pace).
    fn disconnect(&self, peer_id: String) -> impl Future<Output = ()> + Send;

    /// Sends a sync message and waits for the peer's reply.
    fn sync(
        &self,
        to: MemberId,
        message: Vec<u8>,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, NetError>> + Send {
        async move {
            let peer = to.name.clone();
            match self.request(to, Request::Sync(message)).await? {
                Response::Sync(message) => Ok(message),
                Response::SyncRefused(reason) => Err(NetError::Request { peer, reason }),
                other => Err(unexpected(peer, &other)),
            }
        }
    }

    /// Sends a status message; returns the peer's answer, if it has one.
    fn status(
        &self,
        to: MemberId,
        message: StatusMessage,
    ) -> impl Future<Output = Result<Option<StatusMessage>, NetError>> + Send {
        async move {
            let peer = to.name.clone();
            match self.request(to, Request::Status(message)).await? {
                Response::Status(answer) => Ok(Some(answer)),
                Response::Ack => Ok(None),
                other => Err(unexpected(peer, &other)),
            }
        }
    }

    /// Asks a peer for `len` bytes from `offset` of image `id`'s tar.
    fn image_part(
        &self,
        to: MemberId,
        id: String,
        offset: u64,
        len: u32,
    ) -> impl Future<Output = Result<ImagePart, NetError>> + Send {
        async move {
            let peer = to.name.clone();
            match self.request(to, Request::Image { id, offset, len }).await? {
                Response::Image(part) => Ok(part),
                other => Err(unexpected(peer, &other)),
            }
        }
    }

    /// Asks a pod's node for its logs or its removal.
    fn pod(
        &self,
        to: MemberId,
        request: PodRequest,
    ) -> impl Future<Output = Result<PodAnswer, NetError>> + Send {
        async move {
            let peer = to.name.clone();
            match self.request(to, Request::Pod(request)).await? {
                Response::Pod(answer) => Ok(answer),
                other => Err(unexpected(peer, &other)),
            }
        }
    }
}

/// A peer answered a request with the answer to another kind.
fn unexpected(peer: String, response: &Response) -> NetError {
    NetError::Request {
        peer,
        reason: format!("unexpected answer {response:?}"),
    }
}
