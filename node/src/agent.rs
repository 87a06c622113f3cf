//! The agent: starts a node, its driver and its actors, and wires them together.
//!
//! transport ──events──▶ driver ⇄ NodeCore (membership, status, document syncs, placement)
//! driver ──▶ transport (datagrams, status, syncs run with the store), view and status watches
//! store (the document, on disk) ──snapshots──▶ driver
//! view ──▶ reconciler ──▶ runtime; reconciler ──pods──▶ driver
//! view + status ──▶ endpoints ──▶ service proxy (and the API); view ──▶ DNS server

use crate::driver::{Command, Driver, Inboxes};
use crate::membership::{Detection, Liveness, MemberId, live_peers};
use crate::network::{NetConfig, Network};
use crate::probe::{self, Check, Health};
use crate::reconcile::{self, Book, DesiredPod, Grace, JoinGrace};
use crate::runtime::{ContainerRuntime, Observed};
use crate::services::Endpoints;
use crate::shutdown::{Shutdown, Stop};
use crate::status::StatusTable;
use crate::store::{Store, StoreError};
use crate::transport::{LocalDigest, NetError, NetEvent, Transport};
use crate::view::{View, spawn_endpoints};
use futures::StreamExt;
use libp2p::identity::Keypair;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{Instrument, debug, info, info_span, warn};
use weeble_core::node::{self, NodeCore};
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

/// A running node: the handles the API needs. Dropping every clone stops the node's tasks.
#[derive(Clone)]
pub struct Agent {
    pub config: Arc<NodeConfig>,
    pub store: Store,
    /// Every node's reported pods, as this node knows them.
    pub table: watch::Receiver<Arc<StatusTable>>,
    pub view: watch::Receiver<Arc<View>>,
    /// Every service's endpoints, as this node resolves them.
    pub endpoints: watch::Receiver<Arc<Endpoints>>,
    driver: mpsc::Sender<Command>,
    /// How many containers this node ran at the reconciler's last look.
    containers: watch::Receiver<usize>,
    stop: Arc<Stop>,
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
        if self.driver.send(Command::Write(done)).await.is_ok()
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

    /// Stops the node's tasks, inside the process: its driver, transport and reconciler end
    /// (its containers keep running, as after SIGKILL).
    pub fn stop(&self) {
        self.stop.stop();
    }
}

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

/// Starts a node on the libp2p transport.
pub async fn start<R: ContainerRuntime>(
    config: NodeConfig,
    runtime: R,
) -> Result<Agent, AgentError> {
    data_dir(&config)?;
    let keypair = node_key(&config.data_dir)?;
    let (stop, shutdown) = Stop::new();
    let digest = Arc::new(LocalDigest::default());
    let (network, events) = Network::start(NetConfig {
        keypair,
        listen: config.p2p,
        cluster_key: config.cluster_key,
        digest: digest.clone(),
        shutdown: shutdown.clone(),
    })?;
    start_on(config, runtime, network, events, digest, stop, shutdown).await
}

fn data_dir(config: &NodeConfig) -> Result<(), AgentError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| AgentError::DataDir {
        path: config.data_dir.clone(),
        source,
    })
}

/// Starts a node on any transport (`transport::memory` joins nodes inside one process):
/// `events` are what the transport receives, `digest` what it sends with every datagram.
pub async fn start_on<R: ContainerRuntime, T: Transport>(
    config: NodeConfig,
    runtime: R,
    transport: T,
    events: mpsc::Receiver<NetEvent>,
    digest: Arc<LocalDigest>,
    stop: Stop,
    shutdown: Shutdown,
) -> Result<Agent, AgentError> {
    data_dir(&config)?;
    let store = Store::open(&config.data_dir)?;
    let epoch = crate::clock::now_ms() as u64;
    let me = MemberId {
        name: config.name.clone(),
        peer_id: transport.peer_id(),
        p2p: config.p2p,
        api: config.api,
        labels: config.labels.clone(),
        capacity: config.capacity,
        max_pods: config.max_pods,
        bump: epoch,
    };
    info!(node = %me.name, peer_id = %me.peer_id, p2p = %me.p2p, api = %me.api, "node starting");
    let peers_file = config.data_dir.join("peers");
    let mut known = read_peers(&peers_file);
    known.extend(&config.join);
    let core = NodeCore::new(
        node::Config {
            me,
            detection: config.detection,
            fanout: config.fanout,
            replicate_to: config.replicate_to,
            epoch,
            seed: epoch,
            known,
        },
        store.watch().borrow().clone(),
    );
    let (view_tx, view) = watch::channel(core.view().clone());
    let (table_tx, table) = watch::channel(Arc::new(core.table().clone()));
    let (driver_tx, commands) = mpsc::channel(256);
    let (feedback_tx, feedback) = mpsc::channel(1024);
    let driver = Driver {
        core,
        transport,
        store: store.clone(),
        digest,
        view: view_tx,
        table: table_tx,
        peers_file,
        feedback: feedback_tx,
        shutdown,
    };
    let inboxes = Inboxes {
        events,
        commands,
        feedback,
    };
    tokio::spawn(driver.run(inboxes).instrument(info_span!("node")));

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
        driver: driver_tx.clone(),
        table: table.clone(),
        resync: config.resync,
        grace: JoinGrace::new(crate::clock::now_ms(), config.join_grace.as_millis() as i64),
        book: Book::new(),
        handover_since: BTreeMap::new(),
    };
    tokio::spawn(reconciler.run().instrument(info_span!("reconciler")));

    let endpoints = spawn_endpoints(view.clone(), table.clone());
    crate::proxy::start(config.service_ip(), endpoints.clone());
    if config.dns_port != 0 {
        let addr = SocketAddr::new(config.service_ip(), config.dns_port);
        crate::dns::start(addr, config.service_ip(), view.clone());
    }

    Ok(Agent {
        config: Arc::new(config),
        store,
        table,
        view,
        endpoints,
        driver: driver_tx,
        containers: containers_rx,
        stop: Arc::new(stop),
    })
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
    /// Where this node's pods go (to be spread as its status).
    driver: mpsc::Sender<Command>,
    table: watch::Receiver<Arc<StatusTable>>,
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
        let mut statuses = self.table.clone();
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
            &self.table.borrow(),
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
        let pods = reconcile::pod_statuses(
            &self.node,
            self.host_ip,
            desired,
            &observed,
            &self.book,
            &unready,
            now,
        );
        let _ = self.driver.send(Command::Pods(pods)).await;
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
