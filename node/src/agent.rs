//! The agent: starts a node, its driver and its actors, and wires them together.
//!
//! API (writes), transport, runtime events, prober ──▶ driver ⇄ NodeCore (membership, status,
//! the document and its syncs, placement, the reconciler)
//! driver ──▶ transport (datagrams, status, sync messages), state file (persists), runtime
//! (list, act), prober (checks), snapshot, view and status watches
//! view + status ──▶ endpoints ──▶ service proxy (and the API); view ──▶ DNS server

use crate::driver::{self, Command, Driver, Inboxes};
use crate::images::shelf::Shelf;
use crate::membership::{Detection, MemberId, MemberInfo, live_peers};
use crate::network::{NetConfig, Network};
use crate::probe::{Checker, Probes};
use crate::proxy::net::{Net, Tcp};
use crate::reconcile::pass::Settings;
use crate::runtime::ContainerRuntime;
use crate::runtime::credentials::CredentialsFile;
use crate::services::Endpoints;
use crate::shutdown::{Shutdown, Stop};
use crate::status::StatusTable;
use crate::store::disk::{Disk, FileDisk};
use crate::store::{self, StoreError};
use crate::transport::{LocalDigest, NetError, NetEvent, PodAnswer, PodRequest, Transport};
use crate::view::{View, spawn_endpoints, spawn_recorder};
use libp2p::identity::Keypair;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tracing::{Instrument, debug, info, info_span, warn};
use weeble_core::document::{Op, WriteError};
use weeble_core::keys::NodeKey;
use weeble_core::node::{self, NodeCore};
use weeble_core::objects::event::Recorder;
use weeble_crdt::{Labels, Outcome, ResourceAmounts, Snapshot};

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
    /// Requests a second each peer may send ([`crate::network::RATE_LIMIT`] by default).
    pub p2p_rate_limit: u32,
    /// The node's libp2p key (protobuf encoding) from a join token, for a data directory
    /// that holds none yet; `None`: the data directory's, made on the first start.
    pub key: Option<Vec<u8>>,
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
    /// A Docker `config.json` with the registries' credentials, read at each pull.
    pub registry_auth: Option<PathBuf>,
    /// The bytes a second this node sends in all to peers that fetch images from it, if
    /// paced (`--image-serve-rate`).
    pub image_serve_rate: Option<u64>,
    /// Pulls try the peers that hold an image before its registry (`--peers-first`).
    pub peers_first: bool,
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
            p2p_rate_limit: crate::network::RATE_LIMIT,
            key: None,
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
            registry_auth: None,
            image_serve_rate: None,
            peers_first: false,
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

/// A running node: the handles the API needs. Dropping every clone stops the node's tasks.
#[derive(Clone)]
pub struct Agent {
    pub config: Arc<NodeConfig>,
    /// The desired state, as this node last persisted it.
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    /// Every node's reported pods, as this node knows them.
    pub table: watch::Receiver<Arc<StatusTable>>,
    pub view: watch::Receiver<Arc<View>>,
    /// Every service's endpoints, as this node resolves them.
    pub endpoints: watch::Receiver<Arc<Endpoints>>,
    /// What this node saw happen, as Kubernetes events.
    pub events: Arc<Mutex<Recorder>>,
    driver: mpsc::Sender<Command>,
    /// How many containers this node ran at the reconciler's last look.
    containers: watch::Receiver<usize>,
    stop: Arc<Stop>,
}

/// How many events a node keeps (the newest).
const MAX_EVENTS: usize = 1000;

/// How long a write waits for its copies to reach `replicate_to` peers before it is
/// acknowledged anyway (it is on this node's disk already; a peer that is cut off gets it
/// later).
const REPLICATE_WAIT: Duration = Duration::from_secs(2);

impl Agent {
    /// Writes to the desired state: returns once the change is on this node's disk and in
    /// [`Agent::snapshot`] and [`Agent::view`], and `replicate_to` live peers (all of them if
    /// fewer) hold it on theirs (or after [`REPLICATE_WAIT`]); or at once if it was refused.
    pub async fn write(&self, op: Op) -> Result<Vec<Outcome>, WriteError> {
        let (written, on_disk) = oneshot::channel();
        let (replicated, held) = oneshot::channel();
        let command = Command::Write {
            op,
            written,
            replicated,
        };
        self.driver
            .send(command)
            .await
            .map_err(|_| WriteError::Stopped)?;
        let outcomes = on_disk.await.map_err(|_| WriteError::Stopped)??;
        // Read your writes: the node's view (what reads are served from) shows it before the
        // write is answered, as the document does.
        let heads = self.snapshot.borrow().heads.clone();
        let mut view = self.view.clone();
        let shown = async move { view.wait_for(|v| v.snapshot.heads == heads).await.is_ok() };
        let (shown, held) = tokio::join!(
            tokio::time::timeout(REPLICATE_WAIT, shown),
            tokio::time::timeout(REPLICATE_WAIT, held)
        );
        if held.is_err() {
            warn!(
                "a write was acknowledged before enough live peers had it (a peer is slow or cut off)"
            );
        }
        if !shown.unwrap_or(false) {
            debug!("a write was answered before this node's view showed it (other changes came)");
        }
        Ok(outcomes)
    }

    /// Leaves the cluster, making before breaking: the node tells its peers it takes no pods
    /// any more, so they place its replicas elsewhere, and keeps each of its containers until
    /// the new owner runs that pod (or `reconcile::HANDOVER_MAX_MS`); then it leaves the
    /// membership, and peers drop it at once, with no suspicion. Returns once its containers
    /// are gone, or at once if no peer is alive to take them (they keep running), or after
    /// `grace` whatever is left.
    pub async fn leave(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        let _ = self.driver.send(Command::Leaving).await;
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
        if self.driver.send(Command::Leave(done)).await.is_ok() {
            let _ = left.await;
        }
    }

    /// Asks pod's node `to` for its logs or its removal, for a client of this node's API
    /// (`crate::pods`).
    pub async fn ask_pod(&self, to: MemberId, request: PodRequest) -> Result<PodAnswer, NetError> {
        let (answer, answered) = oneshot::channel();
        let command = Command::AskPod {
            to,
            request,
            answer,
        };
        self.driver
            .send(command)
            .await
            .map_err(|_| NetError::Stopped)?;
        answered.await.map_err(|_| NetError::Stopped)?
    }

    /// Stops the node's tasks, inside the process: its driver, transport and reconciler end
    /// (its containers keep running, as after SIGKILL).
    pub fn stop(&self) {
        self.stop.stop();
    }
}

/// The node's libp2p key: made once (or `given`, from a join token), kept in the data
/// directory (a stable identity). A key given for a data directory that holds another is an
/// error: a join token is for a new node.
fn node_key(data_dir: &Path, given: Option<&[u8]>) -> Result<Keypair, AgentError> {
    let path = data_dir.join("node.key");
    let bad = |reason: String| AgentError::Key {
        path: path.clone(),
        reason,
    };
    match std::fs::read(&path) {
        Ok(bytes) if given.is_some_and(|given| given != bytes) => Err(bad(
            "the data directory holds another key than the join token's: a join token is for \
             a new node (give it an empty --data-dir)"
                .into(),
        )),
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|e| bad(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = match given {
                Some(given) => {
                    Keypair::from_protobuf_encoding(given).map_err(|e| bad(e.to_string()))?
                }
                None => Keypair::generate_ed25519(),
            };
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

/// The signing half of a libp2p key (an ed25519 key: the only kind `node_key` makes).
pub fn signing_key(keypair: &Keypair) -> Result<NodeKey, String> {
    let ed25519 = keypair
        .clone()
        .try_into_ed25519()
        .map_err(|e| e.to_string())?;
    let secret: [u8; 32] = ed25519
        .secret()
        .as_ref()
        .try_into()
        .map_err(|_| "not 32 bytes")?;
    Ok(NodeKey::from_secret(secret))
}

/// Starts a node on the libp2p transport, Docker (or whatever `runtime` is) and the state
/// file in its data directory.
pub async fn start<R: ContainerRuntime>(
    config: NodeConfig,
    runtime: R,
) -> Result<Agent, AgentError> {
    data_dir(&config)?;
    let keypair = node_key(&config.data_dir, config.key.as_deref())?;
    let key = signing_key(&keypair).map_err(|reason| AgentError::Key {
        path: config.data_dir.join("node.key"),
        reason,
    })?;
    let (stop, shutdown) = Stop::new();
    let digest = Arc::new(LocalDigest::default());
    let (transport, events) = Network::start(NetConfig {
        keypair,
        listen: config.p2p,
        cluster_key: config.cluster_key,
        rate_limit: config.p2p_rate_limit,
        digest: digest.clone(),
        shutdown: shutdown.clone(),
    })?;
    let adapters = Adapters {
        key,
        checker: Probes(runtime.clone()),
        services: Tcp,
        runtime,
        transport,
        events,
        digest,
        disk: Box::new(FileDisk::new(config.data_dir.join("state.automerge"))),
    };
    start_on(config, adapters, stop, shutdown).await
}

fn data_dir(config: &NodeConfig) -> Result<(), AgentError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| AgentError::DataDir {
        path: config.data_dir.clone(),
        source,
    })
}

/// What a node runs on: real adapters, or their in-memory twins (`transport::memory`,
/// `runtime::memory`, `store::disk::MemoryDisk`, `probe::MemoryProbes`,
/// `proxy::net::MemoryNet`), which run nodes inside one process.
pub struct Adapters<R, T, C, N> {
    /// The node's key: the transport's peer id is its.
    pub key: NodeKey,
    pub runtime: R,
    /// Runs the health checks.
    pub checker: C,
    /// Where the service proxy listens and connects.
    pub services: N,
    pub transport: T,
    /// What the transport receives.
    pub events: mpsc::Receiver<NetEvent>,
    /// What the transport sends with every datagram.
    pub digest: Arc<LocalDigest>,
    /// The state file.
    pub disk: Box<dyn Disk>,
}

/// Starts a node on `adapters`; `shutdown` fires when `stop` does (the transport may hold it
/// already). The data directory keeps the known peers' addresses.
pub async fn start_on<R: ContainerRuntime, T: Transport, C: Checker, N: Net>(
    config: NodeConfig,
    adapters: Adapters<R, T, C, N>,
    stop: Stop,
    shutdown: Shutdown,
) -> Result<Agent, AgentError> {
    data_dir(&config)?;
    let Adapters {
        key,
        runtime,
        checker,
        services,
        transport,
        events,
        digest,
        mut disk,
    } = adapters;
    if key.peer_id() != transport.peer_id() {
        return Err(AgentError::Key {
            path: config.data_dir.join("node.key"),
            reason: format!(
                "the transport's peer id {} is not the key's {}",
                transport.peer_id(),
                key.peer_id()
            ),
        });
    }
    let stored = store::open(disk.as_mut())?;
    let epoch = next_epoch(
        &config.data_dir.join("epoch"),
        crate::clock::now_ms() as u64,
    );
    let me = MemberId::from(MemberInfo {
        name: config.name.clone(),
        peer_id: key.peer_id(),
        p2p: config.p2p,
        api: config.api,
        labels: config.labels.clone(),
        capacity: config.capacity,
        max_pods: config.max_pods,
        bump: epoch,
    });
    info!(node = %me.name, peer_id = %me.peer_id, p2p = %me.p2p, api = %me.api, "node starting");
    let peers_file = config.data_dir.join("peers");
    let mut known = read_peers(&peers_file);
    known.extend(&config.join);
    let reconcile = Settings {
        node: config.name.clone(),
        host_ip: config.publish_ip.unwrap_or(config.p2p.ip()),
        service_ip: config.service_ip(),
        resync_ms: config.resync.as_millis() as i64,
        join_grace_ms: config.join_grace.as_millis() as i64,
    };
    let core_config = node::Config {
        me,
        key,
        detection: config.detection,
        fanout: config.fanout,
        replicate_to: config.replicate_to,
        epoch,
        // Each node its own: the actor ids of its rollbacks are drawn from it.
        seed: rand::random(),
        known,
        reconcile,
        shared: weeble_core::node::Shared::default(),
    };
    let images = config.data_dir.join("images");
    let shelf =
        Shelf::new(runtime.clone(), images.clone(), config.image_serve_rate).map_err(|source| {
            AgentError::DataDir {
                path: images,
                source,
            }
        })?;
    let core = NodeCore::new(core_config, stored, crate::clock::now());
    let (view_tx, view) = watch::channel(core.view().clone());
    let (snapshot_tx, snapshot) = watch::channel(core.view().snapshot.clone());
    let (table_tx, table) = watch::channel(core.table().clone());
    let (driver_tx, commands) = mpsc::channel(256);
    let (feedback_tx, feedback) = mpsc::channel(1024);
    let (containers_tx, containers_rx) = watch::channel(usize::MAX);
    let inboxes = Inboxes {
        events,
        commands,
        feedback,
        containers: runtime.watch(&config.name),
    };
    let driver = Driver {
        pods: crate::pods::Sessions::new(runtime.clone(), config.name.clone()),
        core,
        transport,
        runtime,
        checker,
        node: config.name.clone(),
        disk: Arc::new(Mutex::new(disk)),
        digest,
        view: view_tx,
        snapshot: snapshot_tx,
        table: table_tx,
        containers: containers_tx,
        peers_file,
        credentials: config.registry_auth.clone().map(CredentialsFile),
        shelf,
        peers_first: config.peers_first,
        feedback: feedback_tx,
        status_sends: Arc::new(Semaphore::new(driver::MAX_STATUS_SENDS)),
        shutdown: shutdown.clone(),
    };
    tokio::spawn(driver.run(inboxes).instrument(info_span!("node")));

    let endpoints = spawn_endpoints(view.clone(), table.clone());
    let events = Arc::new(Mutex::new(Recorder::new(&config.name, MAX_EVENTS)));
    spawn_recorder(view.clone(), table.clone(), events.clone());
    crate::proxy::start(services, config.service_ip(), endpoints.clone());
    if config.dns_port != 0 {
        let addr = SocketAddr::new(config.service_ip(), config.dns_port);
        crate::dns::start(addr, config.service_ip(), view.clone(), shutdown.clone());
    }

    Ok(Agent {
        config: Arc::new(config),
        snapshot,
        table,
        view,
        endpoints,
        events,
        driver: driver_tx,
        containers: containers_rx,
        stop: Arc::new(stop),
    })
}

/// The peer addresses saved by an earlier run; none if there is no file (or it is unreadable:
/// the join addresses still work).
/// This life's epoch ([`node::next_epoch`]), after the last life's kept in `path`; kept there
/// in turn. A node that cannot write it starts all the same.
fn next_epoch(path: &Path, now_ms: u64) -> u64 {
    let last = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok());
    let epoch = node::next_epoch(last, now_ms);
    if let Err(e) = std::fs::write(path, epoch.to_string()) {
        warn!(path = %path.display(), error = %e, "could not keep this life's epoch");
    }
    epoch
}

fn read_peers(path: &Path) -> BTreeSet<SocketAddr> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_follows_the_last_life_even_when_the_clock_reads_earlier() {
        let dir = std::env::temp_dir().join(format!("weeble-epoch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("epoch");
        assert_eq!(next_epoch(&path, 5_000), 5_000, "the first life: now");
        assert_eq!(next_epoch(&path, 9_000), 9_000, "a clock ahead: now");
        assert_eq!(
            next_epoch(&path, 100),
            9_001,
            "a clock behind: past the last life"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_signing_key_has_the_libp2p_keys_peer_id() {
        for _ in 0..8 {
            let keypair = Keypair::generate_ed25519();
            let peer_id = libp2p::PeerId::from(keypair.public()).to_base58();
            assert_eq!(signing_key(&keypair).unwrap().peer_id(), peer_id);
        }
    }
}
