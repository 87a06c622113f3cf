//! The agent: starts every actor of a node and wires them together.
//!
//! network ──events──▶ router ──▶ membership / store (sync) / status
//! router: a peer's digest differs from ours ──▶ status exchange / sync driver
//! store + membership ──▶ view (placement) ──▶ reconciler ──▶ runtime, status
//! store changes, a write to acknowledge, a differing digest ──▶ sync driver ──▶ network
//! view + status ──▶ endpoints ──▶ service proxy (and the API)
//! view ──▶ DNS server (service names to this node's service address)

use crate::membership::{
    ANNOUNCES_PER_TICK, Detection, Effect, Liveness, MemberId, Membership, announce_targets,
    gone_for_good, live_peers, take_answer,
};
use crate::network::{Inbound, LocalDigest, NetConfig, NetError, NetEvent, Network, Response};
use crate::probe::{self, Check, Health};
use crate::reconcile::{self, Book, DesiredPod, Grace, JoinGrace};
use crate::runtime::{ContainerRuntime, Observed};
use crate::services::Endpoints;
use crate::status::{Status, StatusConfig};
use crate::store::{Store, StoreError};
use crate::view::{View, spawn_endpoints, spawn_unschedulable, spawn_view};
use foca::Timer;
use futures::StreamExt;
use libp2p::identity::Keypair;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{Instrument, debug, info, info_span, warn};
use weeble_core::doc_sync::{DocSync, SyncEffect};
use weeble_core::gossip::{doc_fingerprint, starts_exchange};
use weeble_crdt::{Labels, ResourceAmounts};

/// The kubelet's default pod limit per node.
pub const DEFAULT_MAX_PODS: u32 = 110;

/// Peers beyond ⌈ln N⌉ a change is pushed to (`gossip::push_width`): the cluster then misses
/// about e^-3, 5 %, of a node per change, and that node learns it from the digests within a
/// second or so.
pub const DEFAULT_FANOUT: usize = 3;

/// Other nodes that hold a write on disk before it is acknowledged. Up to five nodes that is
/// every live peer, as before: an acknowledged write survives all but one of them dying.
/// Beyond, a write survives any four nodes dying at once, and spreads to the rest by gossip.
pub const DEFAULT_REPLICATE_TO: usize = 4;

/// Everything a node is told at start. Built by the binary from its command line.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub p2p: SocketAddr,
    pub api: SocketAddr,
    pub join: Vec<SocketAddr>,
    /// Where containers' ports are published (default: the p2p address's IP).
    pub publish_ip: Option<IpAddr>,
    /// Where the node serves every service's ports (default: the p2p address's IP).
    pub service_ip: Option<IpAddr>,
    /// The UDP port of the node's DNS server for services, on the service IP; 0: none.
    pub dns_port: u16,
    /// With a key, the node runs a libp2p private network (TCP only).
    pub cluster_key: Option<[u8; 32]>,
    pub labels: Labels,
    pub capacity: ResourceAmounts,
    /// The most pods this node runs at once (the kubelet's `--max-pods`); placement puts the
    /// rest elsewhere, or leaves them Pending.
    pub max_pods: u32,
    pub detection: Detection,
    /// How often the reconciler looks again even if nothing woke it.
    pub resync: Duration,
    /// How many random peers beyond ⌈ln N⌉ a change (to the document or a status report)
    /// is pushed to (`gossip::push_width`).
    pub fanout: usize,
    /// How many other nodes must hold a write on disk before it is acknowledged (all live
    /// peers when there are fewer).
    pub replicate_to: usize,
    /// How long a starting node that has heard from no peer keeps to the containers it
    /// already runs before it takes on the whole desired state alone.
    pub join_grace: Duration,
}

impl NodeConfig {
    /// Where the node serves every service: `service_ip`, or the p2p address's IP.
    pub fn service_ip(&self) -> IpAddr {
        self.service_ip.unwrap_or(self.p2p.ip())
    }

    /// A configuration with the default timings.
    pub fn new(name: String, data_dir: PathBuf, p2p: SocketAddr, api: SocketAddr) -> Self {
        NodeConfig {
            name,
            data_dir,
            p2p,
            api,
            join: Vec::new(),
            publish_ip: None,
            service_ip: None,
            dns_port: 53,
            cluster_key: None,
            labels: Labels::new(),
            capacity: ResourceAmounts {
                cpu_millis: 1000,
                memory_bytes: 1 << 30,
            },
            max_pods: DEFAULT_MAX_PODS,
            detection: Detection::default(),
            resync: Duration::from_secs(10),
            fanout: DEFAULT_FANOUT,
            replicate_to: DEFAULT_REPLICATE_TO,
            join_grace: Duration::from_secs(3),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("node key {path} is unreadable: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Network(#[from] NetError),
}

/// A running node: the handles the API needs.
#[derive(Clone)]
pub struct Agent {
    pub config: Arc<NodeConfig>,
    pub store: Store,
    pub status: Status,
    pub view: watch::Receiver<Arc<View>>,
    /// Every service's endpoints, as this node resolves them.
    pub endpoints: watch::Receiver<Arc<Endpoints>>,
    sync: mpsc::Sender<SyncCommand>,
    leave: mpsc::Sender<MembershipInput>,
    /// How many containers this node ran at the reconciler's last look.
    containers: watch::Receiver<usize>,
}

/// How long a write waits for its copies to reach `replicate_to` peers before it is
/// acknowledged anyway (it is on this node's disk already; a peer that is cut off gets it
/// later).
const REPLICATE_WAIT: Duration = Duration::from_secs(2);

impl Agent {
    /// Syncs the desired state with `replicate_to` live peers (all of them if fewer) and
    /// returns once that many hold it on disk (or after [`REPLICATE_WAIT`]). The API calls it
    /// after each write before acknowledging.
    pub async fn replicate(&self) {
        let (done, wait) = oneshot::channel();
        if self.sync.send(SyncCommand::Replicate(done)).await.is_ok()
            && tokio::time::timeout(REPLICATE_WAIT, wait).await.is_err()
        {
            warn!(
                "a write was acknowledged before enough live peers had it (a peer is slow or cut off)"
            );
        }
    }

    /// Leaves the cluster, making before breaking: the node tells its peers it takes no pods
    /// any more, so they place its replicas elsewhere, and keeps each of its containers until
    /// the new owner runs that pod (or `reconcile::HANDOVER_MAX_MS`); then it leaves the
    /// membership, and peers drop it at once, with no suspicion. Returns once its containers
    /// are gone, or at once if no peer is alive to take them (they keep running), or after
    /// `grace` whatever is left.
    pub async fn leave(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        self.status.set_leaving().await;
        let mut containers = self.containers.clone();
        loop {
            let alone = live_peers(&self.view.borrow().members, &self.config.name)
                .next()
                .is_none();
            let left = *containers.borrow_and_update();
            if left == 0 || alone {
                info!(
                    containers = left,
                    alone, "handed over what could be handed over"
                );
                break;
            }
            tokio::select! {
                _ = containers.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = tokio::time::sleep_until(deadline) => {
                    warn!(containers = left, "the grace ran out before every pod was handed over");
                    break;
                }
            }
        }
        let (done, left) = oneshot::channel();
        if self.leave.send(MembershipInput::Leave(done)).await.is_ok() {
            let _ = tokio::time::timeout(LEAVE_WAIT, left).await;
        }
    }
}

/// How long a leaving node waits for its leave datagrams to be answered.
const LEAVE_WAIT: Duration = Duration::from_secs(1);

/// The node's libp2p key: made once, kept in the data directory (a stable identity).
fn node_key(data_dir: &Path) -> Result<Keypair, AgentError> {
    let path = data_dir.join("node.key");
    let bad = |reason: String| AgentError::Key {
        path: path.clone(),
        reason,
    };
    match std::fs::read(&path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|e| bad(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key.to_protobuf_encoding().map_err(|e| bad(e.to_string()))?;
            std::fs::write(&path, bytes).map_err(|source| AgentError::DataDir {
                path: path.clone(),
                source,
            })?;
            Ok(key)
        }
        Err(e) => Err(bad(e.to_string())),
    }
}

/// Starts every actor of the node.
pub async fn start<R: ContainerRuntime>(
    config: NodeConfig,
    runtime: R,
) -> Result<Agent, AgentError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| AgentError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let keypair = node_key(&config.data_dir)?;
    let store = Store::open(&config.data_dir)?;
    let digest = Arc::new(LocalDigest::default());
    spawn_doc_digest(store.watch(), digest.clone());
    let (network, events) = Network::start(NetConfig {
        keypair,
        listen: config.p2p,
        cluster_key: config.cluster_key,
        digest: digest.clone(),
    })?;
    let epoch = crate::clock::now_ms() as u64;
    let me = MemberId {
        name: config.name.clone(),
        peer_id: network.peer_id().to_string(),
        p2p: config.p2p,
        api: config.api,
        labels: config.labels.clone(),
        capacity: config.capacity,
        max_pods: config.max_pods,
        bump: epoch,
    };
    info!(node = %me.name, peer_id = %me.peer_id, p2p = %me.p2p, api = %me.api, "node starting");
    let membership = Membership::new(me.clone(), config.detection, epoch);
    let (members_tx, members_rx) = watch::channel(membership.members().to_vec());
    let status = Status::start(StatusConfig {
        node: config.name.clone(),
        epoch,
        network: network.clone(),
        members: members_rx.clone(),
        digest: digest.clone(),
        fanout: config.fanout,
    });
    let (membership_tx, membership_rx) = mpsc::channel(1024);
    let leave = membership_tx.clone();
    let peers_file = config.data_dir.join("peers");
    let mut known = read_peers(&peers_file);
    known.extend(&config.join);
    known.remove(&config.p2p);
    let members_loop = MembershipLoop {
        membership,
        network: network.clone(),
        inbox: membership_tx.clone(),
        members: members_tx,
        status: status.clone(),
        known,
        peers_file,
        turn: 0,
    };
    tokio::spawn(
        members_loop
            .run(membership_rx)
            .instrument(info_span!("membership")),
    );

    let (sync_tx, sync_rx) = mpsc::channel(256);
    let router = Router {
        me: me.peer_id.clone(),
        membership: membership_tx,
        store: store.clone(),
        status: status.clone(),
        sync: sync_tx.clone(),
        digest,
    };
    tokio::spawn(router.run(events).instrument(info_span!("router")));

    spawn_readiness(store.persist_error(), status.clone());
    let unschedulable = spawn_unschedulable(status.watch());
    let view = spawn_view(store.watch(), members_rx.clone(), unschedulable);
    let (done_tx, done_rx) = mpsc::channel(256);
    let sync = SyncDriver {
        me: me.name.clone(),
        store: store.clone(),
        network,
        members: members_rx,
        sync: DocSync::new(config.fanout, epoch ^ 1),
        replicate_to: config.replicate_to,
        writes: BTreeMap::new(),
        next_write: 0,
        done: done_tx,
    };
    tokio::spawn(sync.run(sync_rx, done_rx).instrument(info_span!("sync")));

    let (checks_tx, checks_rx) = watch::channel(Vec::new());
    let (containers_tx, containers_rx) = watch::channel(usize::MAX);
    let reconciler = Reconciler {
        containers: containers_tx,
        node: config.name.clone(),
        host_ip: config.publish_ip.unwrap_or(config.p2p.ip()),
        service_ip: config.service_ip(),
        checks: checks_tx,
        health: probe::start(runtime.clone(), checks_rx),
        runtime,
        view: view.clone(),
        status: status.clone(),
        resync: config.resync,
        grace: JoinGrace::new(crate::clock::now_ms(), config.join_grace.as_millis() as i64),
        book: Book::new(),
        handover_since: BTreeMap::new(),
    };
    tokio::spawn(reconciler.run().instrument(info_span!("reconciler")));

    let endpoints = spawn_endpoints(view.clone(), status.watch());
    crate::proxy::start(config.service_ip(), endpoints.clone());
    if config.dns_port != 0 {
        let addr = SocketAddr::new(config.service_ip(), config.dns_port);
        crate::dns::start(addr, config.service_ip(), view.clone());
    }

    Ok(Agent {
        config: Arc::new(config),
        store,
        status,
        view,
        endpoints,
        sync: sync_tx,
        leave,
        containers: containers_rx,
    })
}

/// Hands what the network receives to the actor it is for, and starts an exchange with a
/// peer whose digest says it holds something else than this node.
struct Router {
    /// This node's libp2p id.
    me: String,
    membership: mpsc::Sender<MembershipInput>,
    store: Store,
    status: Status,
    sync: mpsc::Sender<SyncCommand>,
    digest: Arc<LocalDigest>,
}

impl Router {
    async fn run(self, mut events: mpsc::Receiver<NetEvent>) {
        while let Some(event) = events.recv().await {
            match event {
                NetEvent::Membership {
                    from,
                    data,
                    digest,
                    reply,
                } => {
                    let from = from.to_string();
                    let input = MembershipInput::Data {
                        data,
                        from: from.clone(),
                        reply,
                    };
                    let _ = self.membership.send(input).await;
                    let differs = self.digest.get().differs(&digest);
                    if starts_exchange(&self.me, &from) {
                        if differs.status {
                            self.status.exchange(from.clone());
                        }
                        if differs.doc {
                            let _ = self.sync.try_send(SyncCommand::With(from));
                        }
                    }
                }
                NetEvent::Request {
                    from,
                    request: Inbound::Status(message),
                    reply,
                } => self.status.receive(from.to_string(), message, reply).await,
                NetEvent::Request {
                    from,
                    request: Inbound::Sync(message),
                    reply,
                } => {
                    let store = self.store.clone();
                    tokio::spawn(async move {
                        let from = from.to_string();
                        let answer = match store.sync_in(&from, message).await {
                            Ok(message) => Response::Sync(message),
                            Err(e) => {
                                warn!(peer = %from, error = %e, "sync from peer refused");
                                Response::SyncRefused(e.to_string())
                            }
                        };
                        let _ = reply.send(answer);
                    });
                }
                NetEvent::Disconnected(peer) => {
                    let _ = self
                        .membership
                        .send(MembershipInput::Disconnected(peer.to_string()))
                        .await;
                }
                NetEvent::Gone(peer) => {
                    let _ = self
                        .membership
                        .send(MembershipInput::Gone(peer.to_string()))
                        .await;
                }
            }
        }
    }
}

/// Keeps the document's fingerprint in this node's digest.
fn spawn_doc_digest(
    mut snapshots: watch::Receiver<Arc<weeble_crdt::Snapshot>>,
    digest: Arc<LocalDigest>,
) {
    tokio::spawn(async move {
        loop {
            digest.set_doc(doc_fingerprint(&snapshots.borrow_and_update().heads));
            if snapshots.changed().await.is_err() {
                return;
            }
        }
    });
}

enum MembershipInput {
    /// A datagram from peer `from` (libp2p id); if it came as a request, the datagram it
    /// calls for at once goes back on `reply`.
    Data {
        data: Vec<u8>,
        from: String,
        reply: Option<oneshot::Sender<Option<Vec<u8>>>>,
    },
    Timer(Timer<MemberId>),
    /// The network lost its last connection to this peer (libp2p peer id).
    Disconnected(String),
    /// Nothing listens at this peer's address any more.
    Gone(String),
    /// Leave the cluster; `done` once the datagrams saying so are answered (or failed).
    Leave(oneshot::Sender<()>),
}

struct MembershipLoop {
    membership: Membership,
    network: Network,
    inbox: mpsc::Sender<MembershipInput>,
    members: watch::Sender<Vec<(MemberId, Liveness)>>,
    status: Status,
    /// Every peer address this node was given or has met, kept in `peers_file`: a node that
    /// restarts, or whose links come back after hours, finds the cluster again through them.
    known: BTreeSet<SocketAddr>,
    peers_file: PathBuf,
    /// Where the next round of announces starts in the list of inactive addresses.
    turn: usize,
}

impl MembershipLoop {
    async fn run(mut self, mut inbox: mpsc::Receiver<MembershipInput>) {
        // Every second, announce to known addresses with no live member: that is how a
        // new node joins, and how the sides of a healed partition find each other again.
        let mut announce = tokio::time::interval(Duration::from_secs(1));
        // The membership core's clock: time since the loop began.
        let epoch = tokio::time::Instant::now();
        loop {
            let effects = tokio::select! {
                input = inbox.recv() => match input {
                    None => return,
                    Some(MembershipInput::Data { data, from, reply }) => {
                        let mut effects = self.membership.receive(&data, epoch.elapsed());
                        if let (Some(reply), Ok(effects)) = (reply, &mut effects) {
                            let _ = reply.send(take_answer(effects, &from));
                        }
                        effects
                    }
                    Some(MembershipInput::Timer(timer)) => self.membership.timer(timer, epoch.elapsed()),
                    Some(MembershipInput::Disconnected(peer)) => {
                        let member = self.members.borrow().iter().find(|(m, l)| m.peer_id == peer && *l != Liveness::Down).map(|(m, _)| m.clone());
                        if let Some(member) = member {
                            self.network.check(member).await;
                        }
                        Ok(Vec::new())
                    }
                    Some(MembershipInput::Gone(peer)) => self.membership.declare_down(&peer),
                    Some(MembershipInput::Leave(done)) => {
                        info!("leaving the cluster");
                        let sends = self.membership.leave().into_iter().filter_map(|e| match e {
                            Effect::Send { to, data } => Some(self.network.deliver_membership(to, data)),
                            _ => None,
                        });
                        futures::future::join_all(sends.collect::<Vec<_>>()).await;
                        let _ = done.send(());
                        return;
                    }
                },
                _ = announce.tick() => Ok(self.announce()),
            };
            match effects {
                Ok(effects) => self.apply(effects).await,
                Err(e) => debug!(error = %e, "membership message rejected"),
            }
            let members = self.membership.members();
            self.members.send_if_modified(|old| {
                let changed = old.as_slice() != members;
                if changed {
                    for (m, was, now) in crate::membership::suspicions(old, members) {
                        match now {
                            Liveness::Suspect => info!(peer = %m.name, "peer suspected"),
                            _ => info!(peer = %m.name, ?was, "peer no longer suspected"),
                        }
                    }
                    *old = members.to_vec();
                }
                changed
            });
        }
    }

    /// Announces to a few known addresses at which no member is alive.
    fn announce(&mut self) -> Vec<Effect> {
        let seeds = announce_targets(&self.known, &self.members.borrow(), self.turn);
        let mut effects = Vec::new();
        for seed in seeds {
            match self.membership.join(seed) {
                Ok(more) => effects.extend(more),
                Err(e) => debug!(%seed, error = %e, "announce failed"),
            }
        }
        self.turn = self.turn.wrapping_add(ANNOUNCES_PER_TICK);
        effects
    }

    /// Remembers a peer's address, on disk too.
    fn learn(&mut self, addr: SocketAddr) {
        if addr == self.membership.me().p2p || !self.known.insert(addr) {
            return;
        }
        let text: String = self.known.iter().map(|a| format!("{a}\n")).collect();
        if let Err(e) = std::fs::write(&self.peers_file, text) {
            warn!(file = %self.peers_file.display(), error = %e, "cannot save the known peers");
        }
    }

    async fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Send { to, data } => self.network.send_membership(to, data).await,
                Effect::Schedule { after, timer } => {
                    let inbox = self.inbox.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        let _ = inbox.send(MembershipInput::Timer(timer)).await;
                    });
                }
                Effect::Up(m) => {
                    info!(peer = %m.name, addr = %m.p2p, "peer joined");
                    self.learn(m.p2p);
                }
                Effect::Down(m) => {
                    info!(peer = %m.name, "peer declared dead");
                    if gone_for_good(self.membership.members(), &m) {
                        self.status.forget(m.name).await;
                    }
                    self.network.disconnect(m.peer_id).await;
                }
                Effect::Active => info!("joined the cluster"),
                Effect::Idle => info!("no live peer left: running alone"),
                Effect::Rejoined(me) => {
                    info!(
                        bump = me.bump,
                        "peers had declared this node dead: rejoining under a renewed identity"
                    );
                    // Peers forgot this node's status: spread it again.
                    self.status.renew().await;
                    // Introduce the new identity now rather than at the next tick.
                    let more = self.announce();
                    Box::pin(self.apply(more)).await;
                }
            }
        }
    }
}

/// The peer addresses saved by an earlier run; none if there is no file (or it is unreadable:
/// the join addresses still work).
fn read_peers(path: &Path) -> BTreeSet<SocketAddr> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

/// Tells the cluster, through this node's status, whether the store can persist changes: a
/// node that cannot is not Ready and leaves placement until it can.
fn spawn_readiness(mut failing: watch::Receiver<Option<String>>, status: Status) {
    tokio::spawn(async move {
        loop {
            let why = failing.borrow_and_update().clone();
            match &why {
                Some(why) => warn!(%why, "this node cannot persist the desired state: not Ready"),
                None => info!("this node persists the desired state: Ready"),
            }
            status
                .set_not_ready(why.map(|e| format!("cannot persist the desired state: {e}")))
                .await;
            if failing.changed().await.is_err() {
                return;
            }
        }
    });
}

/// What the sync driver is asked to do.
enum SyncCommand {
    /// A write to acknowledge: answer once `replicate_to` peers hold it (`DocSync::replicate`).
    Replicate(oneshot::Sender<()>),
    /// Sync with this peer (libp2p id): its digest differs from ours.
    With(String),
}

/// The shell around the core's [`DocSync`], which decides which automerge syncs run with
/// whom: it feeds it the store's changes, writes to acknowledge, differing digests and the
/// ends of exchanges; runs each exchange it starts; answers each write it says is held.
struct SyncDriver {
    me: String,
    store: Store,
    network: Network,
    members: watch::Receiver<Vec<(MemberId, Liveness)>>,
    sync: DocSync,
    replicate_to: usize,
    /// The writes waiting to be answered, by the id given to `DocSync::replicate`.
    writes: BTreeMap<u64, oneshot::Sender<()>>,
    next_write: u64,
    /// Where exchanges report their end: (peer, completed).
    done: mpsc::Sender<(String, bool)>,
}

impl SyncDriver {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<SyncCommand>,
        mut done: mpsc::Receiver<(String, bool)>,
    ) {
        let mut changes = self.store.watch();
        loop {
            let peers: Vec<MemberId> = live_peers(&self.members.borrow(), &self.me)
                .cloned()
                .collect();
            let effects = tokio::select! {
                r = changes.changed() => match r {
                    Ok(()) => self.sync.changed(&peers),
                    Err(_) => return,
                },
                command = commands.recv() => match command {
                    None => return,
                    Some(SyncCommand::Replicate(reply)) => {
                        let id = self.next_write;
                        self.next_write += 1;
                        self.writes.insert(id, reply);
                        self.sync.replicate(id, &peers, self.replicate_to)
                    }
                    Some(SyncCommand::With(peer)) => match peers.iter().find(|m| m.peer_id == peer) {
                        Some(member) => self.sync.differs(member),
                        None => Vec::new(),
                    },
                },
                Some((peer, completed)) = done.recv() => self.sync.ended(&peer, completed),
            };
            for effect in effects {
                match effect {
                    SyncEffect::Start { peer, differs } => self.start(peer, differs),
                    SyncEffect::Replicated { id } => {
                        if let Some(reply) = self.writes.remove(&id) {
                            let _ = reply.send(());
                        }
                    }
                }
            }
        }
    }

    /// Runs an exchange with `peer`; its end goes back to the core.
    fn start(&self, peer: MemberId, differs: bool) {
        let (store, network, done) = (self.store.clone(), self.network.clone(), self.done.clone());
        tokio::spawn(async move {
            let id = peer.peer_id.clone();
            let completed = sync_with(&store, &network, peer, differs).await;
            let _ = done.send((id, completed)).await;
        });
    }
}

/// A bounded exchange: our message, their reply, until one side has nothing to say. True if
/// it got there (the peer then holds what this node held when it began).
///
/// `differs`: the peer's digest showed another document. If this node's sync state with it
/// says there is nothing to send all the same, that state is stale (the peer restarted and
/// lost a change, say): it starts over, or the two would never sync.
async fn sync_with(store: &Store, network: &Network, peer: MemberId, differs: bool) -> bool {
    let mut next = store.sync_out(&peer.peer_id).await;
    if next.is_none() && differs {
        debug!(peer = %peer.name, "the peer's document differs, yet nothing to send: starting over");
        store.reset_peer(&peer.peer_id).await;
        next = store.sync_out(&peer.peer_id).await;
    }
    for _ in 0..16 {
        let Some(message) = next.take() else {
            return true;
        };
        match network.sync(peer.clone(), message).await {
            Ok(None) => return true,
            Ok(Some(reply)) => match store.sync_in(&peer.peer_id, reply).await {
                Ok(answer) => next = answer,
                Err(e) => {
                    warn!(peer = %peer.name, error = %e, "sync reply rejected");
                    return false;
                }
            },
            Err(e) => {
                debug!(peer = %peer.name, error = %e, "sync failed; starting over next time");
                store.reset_peer(&peer.peer_id).await;
                return false;
            }
        }
    }
    false
}

/// Runs this node's share: woken by view changes, runtime events and a period.
struct Reconciler<R> {
    node: String,
    /// How many containers this node runs, as of the last pass (for a leaving node).
    containers: watch::Sender<usize>,
    host_ip: IpAddr,
    /// Where this node serves services: what its containers' service variables point to.
    service_ip: IpAddr,
    /// The probes of the running containers, for the prober; and what it found.
    checks: watch::Sender<Vec<Check>>,
    health: watch::Receiver<Arc<Health>>,
    runtime: R,
    view: watch::Receiver<Arc<View>>,
    status: Status,
    resync: Duration,
    /// Until it is over, only already running pods are kept.
    grace: JoinGrace,
    /// Restarts and failures per container.
    book: Book,
    /// When each handover in progress began (see `reconcile::handovers`).
    handover_since: BTreeMap<String, i64>,
}

impl<R: ContainerRuntime> Reconciler<R> {
    /// Until when (Unix ms) the node still holds back from starting containers: it has just
    /// started, heard from no peer yet, and its join grace is not over.
    fn holding(&mut self, view: &View) -> Option<i64> {
        let peer = view
            .members
            .iter()
            .any(|(m, l)| m.name != self.node && *l != Liveness::Down);
        match self.grace.check(crate::clock::now_ms(), peer) {
            Grace::Holding { until_ms } => return Some(until_ms),
            Grace::PeerAnswered => info!("a peer answered: running this node's share"),
            Grace::RanOut => {
                info!("no peer answered within the join grace: running the desired state alone")
            }
            Grace::Over => {}
        }
        None
    }

    async fn run(mut self) {
        let mut events = self.runtime.watch(&self.node);
        let mut events_open = true;
        let mut statuses = self.status.watch();
        let mut placed: BTreeSet<String> = BTreeSet::new();
        loop {
            let view = self.view.borrow_and_update().clone();
            let holding = self.holding(&view);
            let desired = reconcile::desired_pods(
                &view.snapshot,
                &view.placement,
                &self.node,
                self.service_ip,
            );
            if holding.is_none() {
                log_placement_changes(&mut placed, &desired);
            }
            statuses.mark_unchanged();
            let (wait, handing_over) = match self.pass(&view, desired, holding.is_some()).await {
                Ok(next) => next,
                Err(e) => {
                    warn!(error = %e, "cannot observe containers; retrying");
                    (Duration::from_secs(1), false)
                }
            };
            // Holding, it also looks again when the grace runs out.
            let wait = holding.map_or(wait, |until_ms| {
                let left = until_ms.saturating_sub(crate::clock::now_ms()).max(0) as u64;
                wait.min(Duration::from_millis(left))
            });
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                tokio::select! {
                    r = self.view.changed() => if r.is_err() { return } else { break },
                    event = events.recv(), if events_open => match event {
                        Some(e) if reconcile::wakes(&e.action) => {
                            debug!(container = %e.container_id, action = %e.action, "runtime event");
                            break;
                        }
                        Some(_) => {}
                        None => events_open = false,
                    },
                    r = self.health.changed() => if r.is_err() { return } else { break },
                    // A new owner may now report running what this node hands over.
                    r = statuses.changed(), if handing_over => if r.is_err() { return } else { break },
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            // Coalesce a burst of events into one pass.
            while events.try_recv().is_ok() {}
        }
    }

    /// One observe → diff → react pass. Returns how long to sleep if nothing wakes us, and
    /// whether pods are being handed over to other nodes.
    async fn pass(
        &mut self,
        view: &View,
        desired: Vec<DesiredPod>,
        holding: bool,
    ) -> Result<(Duration, bool), crate::runtime::RuntimeError> {
        let mut observed = self.runtime.list(&self.node).await?;
        if self.kill_failing(&observed).await {
            observed = self.runtime.list(&self.node).await?;
        }
        let desired = if holding {
            reconcile::already_running(desired, &observed)
        } else {
            desired
        };
        let desired = &desired[..];
        let now = crate::clock::now_ms();
        let handovers = reconcile::handovers(
            &self.node,
            &view.placement,
            &observed,
            &self.status.watch().borrow(),
            &mut self.handover_since,
            now,
        );
        let actions = reconcile::plan(
            &self.node,
            self.host_ip,
            desired,
            &observed,
            &handovers,
            &self.book,
            now,
        );
        // A bounded batch per pass, so that the next pass sees the newest desired state (a
        // delete) before it goes on; removals first (a replacement may reuse the name of what
        // it replaces), a few engine calls in flight at once.
        let (actions, more) = reconcile::batch(actions);
        let (removals, rest): (Vec<_>, Vec<_>) = actions
            .iter()
            .partition(|a| matches!(a, reconcile::Action::Remove { .. }));
        for batch in [removals, rest] {
            // Collected first: a stream over a borrowing closure trips the Send check.
            let calls: Vec<_> = batch.iter().map(|a| self.execute(a)).collect();
            let outcomes: Vec<_> = futures::stream::iter(calls)
                .buffered(reconcile::ENGINE_CALLS_IN_FLIGHT)
                .collect()
                .await;
            for (action, outcome) in batch.into_iter().zip(outcomes) {
                reconcile::record(&mut self.book, action, &outcome, &observed, now);
            }
        }
        if !actions.is_empty() {
            observed = self.runtime.list(&self.node).await?;
        }
        self.containers.send_replace(observed.len());
        let checks = reconcile::probe_checks(desired, &observed);
        self.checks.send_if_modified(|old| {
            let changed = *old != checks;
            if changed {
                *old = checks;
            }
            changed
        });
        let now = crate::clock::now_ms();
        let unready = self.health.borrow_and_update().unready.clone();
        self.status
            .set_local(reconcile::pod_statuses(
                &self.node,
                self.host_ip,
                desired,
                &observed,
                &self.book,
                &unready,
                now,
            ))
            .await;
        let resync_ms = self.resync.as_millis() as i64;
        let wait_ms = reconcile::next_pass_in_ms(&self.book, &handovers, more, resync_ms, now);
        let wait = Duration::from_millis(wait_ms as u64);
        let handing_over = reconcile::next_handover_deadline(&handovers, now).is_some();
        Ok((wait, handing_over))
    }

    /// Kills the running containers whose liveness probe failed (in their current run);
    /// their restart policy then decides. True if any was killed.
    async fn kill_failing(&mut self, observed: &[Observed]) -> bool {
        let failing = self.health.borrow_and_update().failing.clone();
        let doomed = reconcile::failed_liveness(observed, &failing);
        for id in &doomed {
            match self.runtime.terminate(id).await {
                Ok(()) => info!(%id, "liveness probe failed: container killed"),
                Err(e) => {
                    warn!(%id, error = %e, "liveness probe failed; cannot kill the container")
                }
            }
        }
        !doomed.is_empty()
    }

    async fn execute(
        &self,
        action: &reconcile::Action,
    ) -> Result<(), crate::runtime::RuntimeError> {
        use reconcile::Action;
        let result = match action {
            Action::Create { spec, .. } => self.runtime.create_and_start(spec).await.map(|id| {
                info!(pod = %spec.hostname, container = %spec.name, %id, "container started");
            }),
            Action::Start { id, book_key } => self.runtime.start(id).await.map(|()| {
                info!(container = %book_key, %id, "container restarted");
            }),
            Action::Remove { id, why } => self.runtime.remove(id).await.map(|()| {
                info!(%id, why, "container removed");
            }),
        };
        if let Err(e) = &result {
            warn!(error = %e, "container action failed");
        }
        result
    }
}

fn log_placement_changes(placed: &mut BTreeSet<String>, desired: &[DesiredPod]) {
    let now: BTreeSet<String> = desired
        .iter()
        .map(|p| format!("{}/{}", p.key.deployment.namespace, p.name()))
        .collect();
    for pod in now.difference(placed) {
        info!(%pod, "pod placed on this node");
    }
    for pod in placed.difference(&now) {
        info!(%pod, "pod no longer placed on this node");
    }
    *placed = now;
}
