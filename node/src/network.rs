//! The libp2p [`crate::transport::Transport`]: one event loop owns the Swarm (TCP, optional pre-shared-key
//! private network, noise, yamux; one request-response protocol carrying the three exchanges
//! of [`crate::transport`]). The driver reaches it through the [`Network`] handle; what
//! arrives is handed out as [`NetEvent`]s. A node keeps at most [`MAX_CONNECTED`] peers connected:
//! beyond, the least recently used connection closes, and SWIM dials again when it probes.

use crate::membership::MemberId;
use crate::rate::{Limiter, Verdict};
use crate::shutdown::Shutdown;
use crate::transport::{
    ImagePart, Inbound, LocalDigest, NetError, NetEvent, PodAnswer, Request, Response,
};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, upgrade::Version};
use libp2p::core::{ConnectedPoint, Transport};
use libp2p::multiaddr::Protocol as Ma;
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, identity, noise, tcp, yamux};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};
use weeble_core::wire::{self, MAX_MESSAGE};

const PROTOCOL: StreamProtocol = StreamProtocol::new("/weeble/rpc/3");
/// Peers connected at most: past it, the least recently used connection is closed.
pub const MAX_CONNECTED: usize = 64;

/// Where the answer to a request goes.
type Reply = oneshot::Sender<Result<Response, NetError>>;

enum Command {
    SendMembership {
        to: MemberId,
        data: Vec<u8>,
        /// Told once the peer answered, or the request failed.
        delivered: Option<Reply>,
    },
    Request {
        to: MemberId,
        request: Request,
        reply: Reply,
    },
    /// Close every connection to a peer declared dead.
    Disconnect(String),
    /// Dial a peer whose connection closed (the how-many-th attempt).
    Check(MemberId, u8),
    Respond {
        channel: ResponseChannel<Response>,
        response: Response,
    },
}

/// Cheap handle to the network actor.
#[derive(Clone)]
pub struct Network {
    tx: mpsc::Sender<Command>,
    peer_id: PeerId,
}

/// Network settings, from the node's configuration.
pub struct NetConfig {
    pub keypair: identity::Keypair,
    pub listen: SocketAddr,
    pub cluster_key: Option<[u8; 32]>,
    /// What this node holds, sent with every membership datagram.
    pub digest: Arc<LocalDigest>,
    /// The actor ends, closing every connection, when this fires.
    pub shutdown: Shutdown,
    /// Requests a second each peer may send (twice that in a burst); past it, they are
    /// dropped (`--p2p-rate-limit`).
    pub rate_limit: u32,
}

/// The default of `--p2p-rate-limit`: well above what a peer sends a node in a busy
/// cluster (SWIM a few a second, status pushes 20 at most, a document exchange's 16 rounds).
pub const RATE_LIMIT: u32 = 100;

/// Parts of images each peer may ask for a second (twice that in a burst), beside
/// `--p2p-rate-limit`: a transfer does not eat the budget of membership and gossip. At
/// 4 MiB a part, 200 MiB/s from each peer.
pub const IMAGE_PARTS_RATE: u32 = 50;

/// Requests for pods' logs and removals each peer may send a second (twice that in a burst),
/// beside `--p2p-rate-limit`: clients that follow logs through a node do not eat the budget
/// of membership and gossip. A busy log is asked for ten times a second (`pods::LINGER`), a
/// quiet one every 2 s.
pub const POD_REQUESTS_RATE: u32 = 50;

#[derive(NetworkBehaviour)]
struct Behaviour {
    rpc: request_response::Behaviour<WireCodec>,
}

impl Network {
    /// Starts the event loop; returns the handle and the stream of arriving events.
    pub fn start(config: NetConfig) -> Result<(Network, mpsc::Receiver<NetEvent>), NetError> {
        let setup = |e: &dyn std::fmt::Display| NetError::Setup(e.to_string());
        let peer_id = config.keypair.public().to_peer_id();
        let psk = config.cluster_key.map(PreSharedKey::new);
        let connected = Connected::default();
        let marks = connected.clone();
        let swarm = libp2p::SwarmBuilder::with_existing_identity(config.keypair)
            .with_tokio()
            .with_other_transport(|key| transport(key, psk, marks).map_err(|e| e.into()))
            .map_err(|e| setup(&e))?
            .with_behaviour(|_| Behaviour {
                rpc: request_response::Behaviour::with_codec(
                    WireCodec,
                    [(PROTOCOL, ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(5)),
                ),
            })
            .map_err(|e| setup(&e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
            .build();
        let (tx, rx) = mpsc::channel(1024);
        let (events_tx, events_rx) = mpsc::channel(1024);
        let actor = NetworkActor {
            swarm,
            events: events_tx,
            commands: tx.clone(),
            pending: HashMap::new(),
            digest: config.digest,
            last_used: HashMap::new(),
            closing: HashSet::new(),
            peers_by_addr: BTreeMap::new(),
            waiting_for_dial: BTreeMap::new(),
            dialling: HashMap::new(),
            checking: HashMap::new(),
            listen: multiaddr(config.listen),
            listening: false,
            handshake_warnings: Warnings::default(),
            connected,
            limiter: Limiter::new(config.rate_limit),
            image_limiter: Limiter::new(IMAGE_PARTS_RATE),
            pod_limiter: Limiter::new(POD_REQUESTS_RATE),
            started: tokio::time::Instant::now(),
        };
        tokio::spawn(actor.run(rx, config.shutdown));
        Ok((Network { tx, peer_id }, events_rx))
    }
}

/// libp2p's own `Transport` trait is in scope here too: this one is named in full.
impl crate::transport::Transport for Network {
    fn peer_id(&self) -> String {
        self.peer_id.to_string()
    }

    async fn send_membership(&self, to: MemberId, data: Vec<u8>) {
        let command = Command::SendMembership {
            to,
            data,
            delivered: None,
        };
        let _ = self.tx.send(command).await;
    }

    async fn deliver_membership(&self, to: MemberId, data: Vec<u8>) {
        let (delivered, answered) = oneshot::channel();
        let command = Command::SendMembership {
            to,
            data,
            delivered: Some(delivered),
        };
        if self.tx.send(command).await.is_ok() {
            let _ = answered.await;
        }
    }

    async fn request(&self, to: MemberId, request: Request) -> Result<Response, NetError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Request { to, request, reply })
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    async fn check(&self, peer: MemberId) {
        let _ = self.tx.send(Command::Check(peer, 1)).await;
    }

    async fn disconnect(&self, peer_id: String) {
        let _ = self.tx.send(Command::Disconnect(peer_id)).await;
    }
}

fn multiaddr(addr: SocketAddr) -> Multiaddr {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) => Ma::Ip4(ip),
        std::net::IpAddr::V6(ip) => Ma::Ip6(ip),
    };
    Multiaddr::empty().with(ip).with(Ma::Tcp(addr.port()))
}

/// Addresses this node dialled whose TCP connection was made, noted until the dial ends: a
/// dial that fails after that failed in its handshake.
#[derive(Clone, Default)]
struct Connected(Arc<Mutex<BTreeSet<Multiaddr>>>);

impl Connected {
    /// Addresses noted at most; past it, the notes start over.
    const CAPACITY: usize = 1024;

    fn note(&self, endpoint: &ConnectedPoint) {
        if let ConnectedPoint::Dialer { address, .. } = endpoint {
            let mut set = self.0.lock().expect("never poisoned");
            if set.len() >= Self::CAPACITY {
                set.clear();
            }
            set.insert(without_peer(address));
        }
    }

    /// Whether a dial to `address` had made its TCP connection (and forgets it).
    fn take(&self, address: &Multiaddr) -> bool {
        self.0
            .lock()
            .expect("never poisoned")
            .remove(&without_peer(address))
    }
}

/// `address` without its `/p2p/...` part.
fn without_peer(address: &Multiaddr) -> Multiaddr {
    address
        .iter()
        .filter(|p| !matches!(p, Ma::P2p(_)))
        .collect()
}

/// TCP, then (with a cluster key) the pre-shared-key handshake, then noise and yamux. The
/// timeout bounds dials to nodes with another key, whose handshake would otherwise hang.
/// Each dial's TCP connection is noted in `connected`, so that a dial that fails later is
/// known to have failed in its handshake (another key), not on the way (a partition).
fn transport(
    key: &identity::Keypair,
    psk: Option<PreSharedKey>,
    connected: Connected,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, noise::Error> {
    let noise = noise::Config::new(key)?;
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true)).and_then(
        move |socket, endpoint| {
            connected.note(&endpoint);
            futures::future::ready(Ok::<_, io::Error>(socket))
        },
    );
    let timeout = Duration::from_secs(5);
    Ok(match psk {
        Some(psk) => tcp
            .and_then(move |socket, _| PnetConfig::new(psk).handshake(socket))
            .upgrade(Version::V1Lazy)
            .authenticate(noise)
            .multiplex(yamux::Config::default())
            .timeout(timeout)
            .boxed(),
        None => tcp
            .upgrade(Version::V1Lazy)
            .authenticate(noise)
            .multiplex(yamux::Config::default())
            .timeout(timeout)
            .boxed(),
    })
}

struct NetworkActor {
    swarm: Swarm<Behaviour>,
    events: mpsc::Sender<NetEvent>,
    commands: mpsc::Sender<Command>,
    /// Requests waiting for their answer.
    pending: HashMap<OutboundRequestId, Reply>,
    digest: Arc<LocalDigest>,
    /// How fast each peer may ask ([`NetConfig::rate_limit`]).
    limiter: Limiter,
    /// How fast each peer may ask for parts of images ([`IMAGE_PARTS_RATE`]).
    image_limiter: Limiter,
    /// How fast each peer may ask for pods' logs and removals ([`POD_REQUESTS_RATE`]).
    pod_limiter: Limiter,
    /// The limiter's clock starts here.
    started: tokio::time::Instant,
    /// When each connected peer last sent or was sent a request: the least recently used one
    /// is disconnected when more than [`MAX_CONNECTED`] are.
    last_used: HashMap<PeerId, tokio::time::Instant>,
    /// Peers whose connection this node closed to stay under [`MAX_CONNECTED`].
    closing: HashSet<PeerId>,
    /// Peers learned from connections we dialled, by the address we dialled.
    peers_by_addr: BTreeMap<Multiaddr, PeerId>,
    /// Requests for peers known only by address, sent once the dial tells us who is there.
    waiting_for_dial: BTreeMap<Multiaddr, Vec<Request>>,
    /// Dials to bare addresses in flight, so a failed one drops what waited on it.
    dialling: HashMap<ConnectionId, Multiaddr>,
    /// Dials that check whether a disconnected peer is still there, and which attempt.
    checking: HashMap<ConnectionId, (MemberId, u8)>,
    /// The address to listen on, and whether a listener is open on it. A node that starts
    /// with its network down (its address not configured yet) keeps trying.
    listen: Multiaddr,
    listening: bool,
    /// Addresses whose failed handshakes were logged lately.
    handshake_warnings: Warnings,
    /// Dialled addresses whose TCP connection was made (see [`Connected`]).
    connected: Connected,
}

/// At most one warning per address a minute: a node with the wrong key retries every second.
#[derive(Default)]
struct Warnings(BTreeMap<String, tokio::time::Instant>);

impl Warnings {
    const EVERY: Duration = Duration::from_secs(60);
    /// Addresses remembered at most; past it, the oldest memories are dropped.
    const CAPACITY: usize = 1024;

    /// Whether a warning about `addr` is due now (and if so, it counts as given).
    fn first(&mut self, addr: &str) -> bool {
        let now = tokio::time::Instant::now();
        if self.0.get(addr).is_some_and(|&at| now < at + Self::EVERY) {
            return false;
        }
        if self.0.len() >= Self::CAPACITY {
            self.0.retain(|_, &mut at| now < at + Self::EVERY);
            if self.0.len() >= Self::CAPACITY {
                self.0.clear();
            }
        }
        self.0.insert(addr.to_owned(), now);
        true
    }
}

impl NetworkActor {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>, mut shutdown: Shutdown) {
        // Listen before dialling: libp2p dials from the listening port once it knows it (port
        // reuse), so every connection of this node comes from one port, the one peers know.
        self.try_listen();
        if self.listening {
            let listening = async {
                loop {
                    let event = self.swarm.select_next_some().await;
                    let listening = matches!(event, SwarmEvent::NewListenAddr { .. });
                    self.swarm_event(event).await;
                    if listening {
                        return;
                    }
                }
            };
            if tokio::time::timeout(Duration::from_secs(5), listening)
                .await
                .is_err()
            {
                warn!("not listening after 5 s; dialling anyway");
            }
        }
        let mut relisten = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                command = commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => return,
                },
                event = self.swarm.select_next_some() => self.swarm_event(event).await,
                _ = relisten.tick(), if !self.listening => self.try_listen(),
            }
        }
    }

    fn try_listen(&mut self) {
        match self.swarm.listen_on(self.listen.clone()) {
            Ok(_) => self.listening = true,
            Err(e) => debug!(address = %self.listen, error = %e, "cannot listen yet; retrying"),
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::SendMembership {
                to,
                data,
                delivered,
            } => {
                let digest = self.digest.get();
                self.request(&to, Request::Membership { data, digest }, delivered)
            }
            Command::Request { to, request, reply } => self.request(&to, request, Some(reply)),
            Command::Disconnect(peer) => {
                if let Ok(peer) = peer.parse::<PeerId>() {
                    let _ = self.swarm.disconnect_peer_id(peer);
                }
            }
            Command::Check(member, attempt) => {
                let Ok(peer) = member.peer_id.parse::<PeerId>() else {
                    return;
                };
                let dial = DialOpts::peer_id(peer)
                    .addresses(vec![multiaddr(member.p2p)])
                    .condition(PeerCondition::Disconnected)
                    .build();
                let id = dial.connection_id();
                // Already connected again: nothing to check.
                match self.swarm.dial(dial) {
                    Ok(()) => {
                        debug!(peer = %member.name, attempt, "checking a disconnected peer");
                        self.checking.insert(id, (member, attempt));
                    }
                    Err(e) => debug!(peer = %member.name, error = %e, "no check needed"),
                }
            }
            Command::Respond { channel, response } => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .rpc
                    .send_response(channel, response);
            }
        }
    }

    fn request(&mut self, to: &MemberId, request: Request, reply: Option<Reply>) {
        let addr = multiaddr(to.p2p);
        let peer = to
            .peer_id
            .parse::<PeerId>()
            .ok()
            .or_else(|| self.peers_by_addr.get(&addr).copied());
        let Some(peer) = peer else {
            // Known only by address (a --join seed): dial, and send once we know who answered.
            // Only membership announces go to bare addresses; the rest needs a known peer.
            if let Some(reply) = reply {
                let _ = reply.send(Err(NetError::Request {
                    peer: to.p2p.to_string(),
                    reason: "peer id unknown".into(),
                }));
                return;
            }
            let queue = self.waiting_for_dial.entry(addr.clone()).or_default();
            if queue.is_empty() {
                let dial = DialOpts::unknown_peer_id().address(addr.clone()).build();
                self.dialling.insert(dial.connection_id(), addr.clone());
                if let Err(e) = self.swarm.dial(dial) {
                    warn!(%addr, error = %e, "cannot dial join address");
                }
            }
            if queue.len() < 16 {
                queue.push(request);
            }
            return;
        };
        self.used(peer);
        let id =
            self.swarm
                .behaviour_mut()
                .rpc
                .send_request_with_addresses(&peer, request, vec![addr]);
        if let Some(reply) = reply {
            self.pending.insert(id, reply);
        }
    }

    async fn swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => info!(%address, "listening for peers"),
            SwarmEvent::ListenerClosed { reason, .. } => {
                warn!(address = %self.listen, ?reason, "stopped listening; retrying");
                self.listening = false;
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                connection_id,
                ..
            } => {
                self.connected.take(endpoint.get_remote_address());
                debug!(%peer_id, "connected");
                self.closing.remove(&peer_id);
                self.last_used.insert(peer_id, tokio::time::Instant::now());
                self.keep_connections_bounded();
                self.dialling.remove(&connection_id);
                self.checking.remove(&connection_id);
                if endpoint.is_dialer() {
                    let addr = endpoint.get_remote_address().clone();
                    self.peers_by_addr.insert(addr.clone(), peer_id);
                    for request in self.waiting_for_dial.remove(&addr).unwrap_or_default() {
                        self.swarm
                            .behaviour_mut()
                            .rpc
                            .send_request(&peer_id, request);
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                debug!(?peer_id, %error, "dial failed");
                if let Some(addr) = self.dialling.remove(&connection_id) {
                    if self.connected.take(&addr)
                        && self.handshake_warnings.first(&addr.to_string())
                    {
                        warn!(peer = %addr, %error, "cannot connect to the peer: the handshake failed. Do both nodes have the same --cluster-key (or both none)?");
                    }
                    self.waiting_for_dial.remove(&addr);
                }
                if let Some((member, attempt)) = self.checking.remove(&connection_id) {
                    match dial_failure(&error.to_string()) {
                        DialFailure::NothingListens => {
                            info!(peer = %member.name, %error, "nothing listens at the peer's address: its process is gone");
                            let _ = self
                                .events
                                .send(NetEvent::Gone(member.peer_id.clone()))
                                .await;
                        }
                        // A process that is dying may still accept, then reset: look again.
                        DialFailure::Reset if attempt < CHECK_ATTEMPTS => {
                            let commands = self.commands.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(CHECK_RETRY).await;
                                let _ = commands.send(Command::Check(member, attempt + 1)).await;
                            });
                        }
                        _ => {}
                    }
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } if self.handshake_warnings.first(&send_back_addr.to_string()) => {
                warn!(from = %send_back_addr, %error, "a connection from a peer failed its handshake: a node with another --cluster-key (or none) trying to join?");
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                debug!(%peer_id, "last connection closed");
                self.last_used.remove(&peer_id);
                // Closed to keep the connections bounded: nothing is wrong with the peer.
                if !self.closing.remove(&peer_id) {
                    let _ = self
                        .events
                        .send(NetEvent::Disconnected(peer_id.to_string()))
                        .await;
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Rpc(event)) => self.rpc_event(event).await,
            _ => {}
        }
    }

    /// Answers a request with what `answer` comes to, without holding up the event loop.
    fn respond_later(
        &self,
        channel: ResponseChannel<Response>,
        answer: impl std::future::Future<Output = Response> + Send + 'static,
    ) {
        let commands = self.commands.clone();
        tokio::spawn(async move {
            let response = answer.await;
            let _ = commands.send(Command::Respond { channel, response }).await;
        });
    }

    /// Whether `peer` may send one more request now (a part of an image, and a request for a
    /// pod's log or removal, count against budgets of their own, [`IMAGE_PARTS_RATE`] and
    /// [`POD_REQUESTS_RATE`]); a refusal is logged once a period.
    fn within_rate(&mut self, peer: PeerId, request: &Request) -> bool {
        let now_ms = self.started.elapsed().as_millis() as i64;
        let (limiter, what) = match request {
            Request::Image { .. } => (&mut self.image_limiter, "parts of images faster than"),
            Request::Pod(_) => (&mut self.pod_limiter, "pods' logs and removals faster than"),
            _ => (&mut self.limiter, "requests faster than --p2p-rate-limit:"),
        };
        match limiter.allow(&peer.to_base58(), now_ms) {
            Verdict::Allowed => true,
            Verdict::Limited { log, .. } => {
                if log {
                    warn!(
                        %peer,
                        "a peer asks for {what} {} a second allows: they are refused for now; \
                         logged once every 10 s",
                        limiter.per_second(),
                    );
                }
                false
            }
        }
    }

    /// Notes that `peer`'s connection (if it has one) is in use now.
    fn used(&mut self, peer: PeerId) {
        if let Some(at) = self.last_used.get_mut(&peer) {
            *at = tokio::time::Instant::now();
        }
    }

    /// Closes the least recently used connections while more than [`MAX_CONNECTED`] peers
    /// are connected: a node's connections stay bounded however large the cluster.
    fn keep_connections_bounded(&mut self) {
        while self.last_used.len() > MAX_CONNECTED {
            let Some((&oldest, _)) = self.last_used.iter().min_by_key(|&(_, at)| *at) else {
                return;
            };
            self.last_used.remove(&oldest);
            self.closing.insert(oldest);
            debug!(peer = %oldest, "closing the least recently used connection");
            let _ = self.swarm.disconnect_peer_id(oldest);
        }
    }

    async fn rpc_event(&mut self, event: request_response::Event<Request, Response>) {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                self.used(peer);
                if !self.within_rate(peer, &request) {
                    // Dropped: a membership datagram is best effort, and the others are told
                    // why.
                    let refused = match request {
                        Request::Membership { .. } => return,
                        Request::Image { .. } => {
                            Response::Image(ImagePart::Busy("over the rate limit".into()))
                        }
                        Request::Pod(_) => Response::Pod(PodAnswer::Refused {
                            status: 429,
                            message: "the pod's node is asked for logs and removals too \
                                      often by this node: try again"
                                .into(),
                        }),
                        _ => Response::SyncRefused("over the rate limit".into()),
                    };
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .rpc
                        .send_response(channel, refused);
                    return;
                }
                let request = match request {
                    Request::Membership { data, digest } => {
                        let (reply, answer) = oneshot::channel();
                        let event = NetEvent::Membership {
                            from: peer.to_string(),
                            data,
                            digest,
                            reply: Some(reply),
                        };
                        if self.events.send(event).await.is_ok() {
                            let digest = self.digest.clone();
                            self.respond_later(channel, async move {
                                match answer.await {
                                    Ok(Some(data)) => Response::Membership {
                                        data,
                                        digest: digest.get(),
                                    },
                                    _ => Response::Ack,
                                }
                            });
                        }
                        return;
                    }
                    other => Inbound::of(other).expect("only datagrams are not inbound requests"),
                };
                let (reply, answer) = oneshot::channel();
                let event = NetEvent::Request {
                    from: peer.to_string(),
                    request,
                    reply,
                };
                if self.events.send(event).await.is_ok() {
                    self.respond_later(channel, async move {
                        answer.await.unwrap_or_else(|_| {
                            Response::SyncRefused("the node is stopping".into())
                        })
                    });
                }
            }
            Event::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                self.used(peer);
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                } else if let Response::Membership { data, digest } = response {
                    let event = NetEvent::Membership {
                        from: peer.to_string(),
                        data,
                        digest,
                        reply: None,
                    };
                    let _ = self.events.send(event).await;
                }
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                debug!(%peer, %error, "request failed");
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(Err(NetError::Request {
                        peer: peer.to_string(),
                        reason: error.to_string(),
                    }));
                }
            }
            _ => {}
        }
    }
}

/// How often a check dial that was reset is tried again, and after how long.
const CHECK_ATTEMPTS: u8 = 3;
const CHECK_RETRY: Duration = Duration::from_millis(100);

/// What a failed dial says of the peer.
#[derive(Debug, PartialEq)]
enum DialFailure {
    /// Its host answered that nothing listens on its port, or the host is gone from the
    /// network: its process is gone.
    NothingListens,
    /// The connection was reset (a process that is dying may still accept, then reset).
    Reset,
    /// Anything else (a timeout, a failed handshake): it may only be slow.
    Other,
}

/// What a failed dial's message (`DialError`'s display) says. libp2p wraps the socket's
/// error in several layers, not all of which expose it as a `source`; the message carries
/// the OS error's own, `(os error N)`.
fn dial_failure(message: &str) -> DialFailure {
    let kinds: Vec<io::ErrorKind> = message
        .split("(os error ")
        .skip(1)
        .filter_map(|rest| rest.split(')').next()?.parse::<i32>().ok())
        .map(|code| io::Error::from_raw_os_error(code).kind())
        .collect();
    use io::ErrorKind::*;
    if kinds
        .iter()
        .any(|k| matches!(k, ConnectionRefused | HostUnreachable))
    {
        DialFailure::NothingListens
    } else if kinds.iter().any(|k| matches!(k, ConnectionReset)) {
        DialFailure::Reset
    } else {
        DialFailure::Other
    }
}

/// Length-prefixed bincode frames for [`Request`] and [`Response`].
#[derive(Clone, Default)]
pub struct WireCodec;

async fn read_frame<T: serde::de::DeserializeOwned>(
    io: &mut (impl AsyncRead + Unpin + Send),
) -> io::Result<T> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message of {len} bytes is over the limit"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    wire::decode(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

async fn write_frame<T: Serialize>(
    io: &mut (impl AsyncWrite + Unpin + Send),
    value: &T,
) -> io::Result<()> {
    let bytes = wire::encode(value).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    io.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
    io.write_all(&bytes).await?;
    io.close().await
}

impl request_response::Codec for WireCodec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Request> {
        read_frame(io).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Response> {
        read_frame(io).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Request,
    ) -> io::Result<()> {
        write_frame(io, &req).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Response,
    ) -> io::Result<()> {
        write_frame(io, &res).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_or_reset_dial_is_told_from_a_slow_one() {
        let refused = "Failed to negotiate transport protocol(s): [(/ip4/127.0.0.33/tcp/27946: : \
            Connection refused (os error 111): Connection refused (os error 111))]";
        let reset = "Failed to negotiate transport protocol(s): [(/ip4/127.0.0.33/tcp/27946/p2p/x: \
            : Handshake failed: Handshake failed: Connection reset by peer (os error 104))]";
        let unreachable = "[(/ip4/172.30.1.12/tcp/7946: : No route to host (os error 113))]";
        let slow = "Failed to negotiate transport protocol(s): [(/ip4/10.0.0.1/tcp/7946: : Timeout \
            has been reached)]";
        assert_eq!(dial_failure(refused), DialFailure::NothingListens);
        assert_eq!(dial_failure(unreachable), DialFailure::NothingListens);
        assert_eq!(dial_failure(reset), DialFailure::Reset);
        assert_eq!(dial_failure(slow), DialFailure::Other);
    }
}
