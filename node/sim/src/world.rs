//! The discrete-event loop: N `NodeCore`s, a queue of (virtual time, origin, sequence) →
//! event, the simulated [`Net`], each node's state file (what it persisted) and containers.
//! Every effect a core returns is carried out here as a driver would, with the network's
//! delays: datagrams and their answers, status messages, sync requests and their (possibly
//! later) answers, persists, timers, container work. A crashed node loses everything but its
//! file; a restarted one loads that file, as `weeble node` does. A paused node (a frozen
//! process) runs nothing until it resumes: what reaches it waits, its timers come late. Each
//! node's clock can be set off from the others', and stepped at any time, as NTP does.
//!
//! The nodes are dealt to [`Shard`]s that a few threads run, a window of virtual
//! time at a time, as a conservative parallel simulation does: nothing one node sends reaches
//! another sooner than the network's latency, so within a window no shard hears from
//! another, and what one sends to another's nodes is handed over when the window closes. The
//! run is the same whatever the number of shards: each node's random draws are its own, an
//! event's place in a node's queue is (time, the node that made it, that node's count), and
//! the trace is each node's hash of the events it ran.

use crate::net::{Links, Net};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weeble_core::document::{self, Op, Stored, journal};
use weeble_core::gossip::Digest;
use weeble_core::keys::NodeKey;
use weeble_core::membership::{Detection, Liveness, MemberId};
use weeble_core::node::{Answer, Config, Effect, Input, NodeCore, Shared, Timer, next_epoch};
use weeble_core::reconcile::Action;
use weeble_core::reconcile::pass::{Event, Settings};
use weeble_core::runtime::{
    ContainerState, LABEL_DEPLOYMENT, LABEL_POD, Observed, PublishedPort, RuntimeError,
    RuntimeEvent,
};
use weeble_core::status::{NodeStatus, Send, StatusMessage};
use weeble_crdt::{ActorId, DesiredState};

/// How long a request to a node that does not answer waits (the transport's timeout).
const REQUEST_TIMEOUT_US: u64 = 5_000_000;

/// How long the disk takes to append and fsync.
const DISK_US: u64 = 1_000;

/// How long the container engine takes to list, kill or probe.
const ENGINE_US: u64 = 1_000;

/// Connections a node keeps open at most, the least recently used closed first (the
/// transport's `MAX_CONNECTED`).
const MAX_CONNECTED: usize = 64;

/// FNV-1a's offset basis: a trace's hash before any event.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// How the simulated world behaves.
#[derive(Debug, Clone)]
pub struct Conditions {
    pub links: Links,
    /// How long a container takes to start.
    pub start_us: u64,
    /// The chance that a container action fails.
    pub failure_rate: f64,
    /// Images neither the engine nor a registry holds: creating a container of one finds
    /// it missing, and a pull of it fails.
    pub absent_images: BTreeSet<String>,
    /// Threads the nodes are run on (at least 1; one if the links have no latency, which
    /// leaves no window). The run is the same for any number.
    pub threads: usize,
    /// Every node's failure detection.
    pub detection: Detection,
}

impl Default for Conditions {
    /// A LAN, containers that start in 200 ms, an engine that fails nothing and holds every
    /// image, one thread, the default detection.
    fn default() -> Self {
        Conditions {
            links: Links::default(),
            start_us: 200_000,
            failure_rate: 0.0,
            absent_images: BTreeSet::new(),
            threads: 1,
            detection: Detection::default(),
        }
    }
}

/// One simulated node.
struct Node {
    member: MemberId,
    /// `None` while it is down.
    core: Option<NodeCore>,
    /// What it persisted: survives a crash.
    file: Vec<u8>,
    containers: Vec<Observed>,
    /// Containers made so far, for their ids.
    made: u64,
    /// The nodes it has a connection with.
    links: Connections,
    /// Frozen: what reaches it waits in `held`, in order.
    paused: bool,
    held: Vec<Occurrence>,
    /// How far its clock is off virtual time, µs.
    clock_us: i64,
    /// Its last life's epoch (kept on disk, as `weeble node` keeps it).
    epoch: Option<u64>,
    /// Its draws (the network's delays and losses, its containers' failures).
    rng: StdRng,
    /// Events it made so far: the last part of their place in the queue.
    made_events: u64,
    /// FNV-1a over every event it ran.
    trace: u64,
    /// Sync requests it was sent, waiting for its answer: request id → who asked, in which
    /// life.
    requests: BTreeMap<u64, (usize, u32)>,
    next_request: u64,
}

/// A node's connections: the peers, and when each was last used (µs). At most
/// [`MAX_CONNECTED`], so a plain list, searched in place, is the quickest to keep.
#[derive(Default)]
struct Connections(Vec<(usize, u64)>);

impl Connections {
    /// The connection to `peer` is used at `now`, opened if need be; past [`MAX_CONNECTED`],
    /// the least recently used one (the lowest peer among equals) closes, and its peer is
    /// returned.
    fn used(&mut self, peer: usize, now: u64) -> Option<usize> {
        if let Some(link) = self.0.iter_mut().find(|(p, _)| *p == peer) {
            link.1 = now;
            return None;
        }
        self.0.push((peer, now));
        if self.0.len() <= MAX_CONNECTED {
            return None;
        }
        let (oldest, _) = self
            .0
            .iter()
            .enumerate()
            .min_by_key(|(_, (p, at))| (*at, *p))?;
        Some(self.0.swap_remove(oldest).0)
    }

    /// Closes the connection to `peer`; true if there was one.
    fn remove(&mut self, peer: usize) -> bool {
        let Some(at) = self.0.iter().position(|(p, _)| *p == peer) else {
            return false;
        };
        self.0.swap_remove(at);
        true
    }

    fn peers(self) -> impl Iterator<Item = usize> {
        self.0.into_iter().map(|(p, _)| p)
    }
}

/// Something that happens at a virtual time.
enum Occurrence {
    /// An input for node `node` in its life `life`.
    Input {
        node: usize,
        life: u32,
        input: Input,
    },
    /// A membership datagram (a request) reaches `to`, with what `from` held when it sent it.
    Datagram {
        from: usize,
        to: usize,
        data: Vec<u8>,
        digest: Digest,
    },
    /// A status message reaches `to`.
    Status {
        from: usize,
        to: usize,
        message: StatusMessage,
    },
    /// A sync message reaches `to`.
    Sync {
        from: usize,
        life: u32,
        to: usize,
        message: Vec<u8>,
    },
    /// Container actions of node `node` are done.
    Acted {
        node: usize,
        life: u32,
        actions: Vec<Action>,
        failed: Vec<Option<RuntimeError>>,
    },
    /// `from` closed its connection to `to` (it had too many): `to`'s side closes, quietly.
    Closed { from: usize, to: usize },
}

/// An event's place in the queue: its time, the node that made it (the world's driver is
/// past the last node), and that one's count of events made.
type Key = (u64, usize, u64);

/// A node declared dead by another.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Death {
    pub at: u64,
    pub by: usize,
    pub dead: usize,
    /// The identity declared dead (its bump).
    pub bump: u64,
}

/// Messages sent, and their bytes, of one kind.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Sent {
    pub messages: u64,
    pub bytes: u64,
}

/// What the world counts: messages sent, by kind.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counts {
    pub membership: Sent,
    pub status: Sent,
    pub sync: Sent,
}

impl Counts {
    pub fn total(&self) -> Sent {
        let all = [self.membership, self.status, self.sync];
        Sent {
            messages: all.iter().map(|s| s.messages).sum(),
            bytes: all.iter().map(|s| s.bytes).sum(),
        }
    }

    /// What was sent since `before`.
    pub fn since(&self, before: &Counts) -> Counts {
        let minus = |a: Sent, b: Sent| Sent {
            messages: a.messages - b.messages,
            bytes: a.bytes - b.bytes,
        };
        Counts {
            membership: minus(self.membership, before.membership),
            status: minus(self.status, before.status),
            sync: minus(self.sync, before.sync),
        }
    }

    /// Adds what `other` counted, and empties it.
    fn take(&mut self, other: &mut Counts) {
        let other = std::mem::take(other);
        for (mine, theirs) in [
            (&mut self.membership, other.membership),
            (&mut self.status, other.status),
            (&mut self.sync, other.sync),
        ] {
            mine.messages += theirs.messages;
            mine.bytes += theirs.bytes;
        }
    }
}

/// What the nodes of a shard did in one window that the world records, each with the node
/// it happened at.
#[derive(Default)]
struct Found {
    counts: Counts,
    written: Vec<(u64, usize, u64)>,
    replicated: Vec<(u64, usize, u64)>,
    deaths: Vec<Death>,
    started: Vec<(u64, String, usize)>,
}

/// The simulated world.
pub struct World {
    shards: Vec<Shard>,
    /// How many threads run the shards ([`World::run_until`]).
    threads: usize,
    common: Common,
    /// Events the driver made (crashes, writes, restarts): the last part of their place.
    made_events: u64,
    /// Virtual time, µs.
    pub now: u64,
    pub net: Net,
    /// The driver's draws (whom a node knows at start, its seed).
    rng: StdRng,
    pub counts: Counts,
    /// Writes on disk (`Written` with success): id → when.
    pub written: BTreeMap<u64, u64>,
    /// Writes held by enough peers to be acknowledged (`Replicated`): id → when.
    pub replicated: BTreeMap<u64, u64>,
    /// Nodes each node declared dead (by `Disconnect`), in the order of their time.
    pub deaths: Vec<Death>,
    /// When each pod (namespace/name) last started running, and where, in the order of
    /// their time.
    pub started: Vec<(u64, String, usize)>,
    /// What the cores share, as the cores of one process do.
    shared: Shared,
}

/// What every shard reads during a window and only the world's driver changes.
struct Common {
    settings: Conditions,
    /// Each node's life (grows with every crash: events for an earlier life are dropped),
    /// and whether it is up.
    lives: Vec<(u32, bool)>,
    /// Each node's libp2p id.
    peer_ids: Vec<String>,
    by_peer: BTreeMap<String, usize>,
}

/// Some of the nodes (those whose index is `index` modulo the number of shards), their
/// queue of events, and what they did in the window running.
struct Shard {
    index: usize,
    count: usize,
    nodes: Vec<Node>,
    queue: BTreeMap<Key, Box<Occurrence>>,
    /// Events for the other shards' nodes, by their shard, handed over when the window
    /// closes: each with the soonest time among them.
    out: Vec<(u64, Events)>,
    /// What the other shards' nodes made for this shard's in the last window, and the
    /// soonest time among them: put in the queue when the next window begins, by the thread
    /// that runs this shard (when one thread put every shard's in, between windows, the
    /// others waited for it).
    inbox: (u64, Vec<Events>),
    /// The node whose event runs: the events made meanwhile are its.
    acting: usize,
    now: u64,
    found: Found,
    sizes: StatusSizes,
}

/// Events with their places in the queue, in no order.
type Events = Vec<(Key, Box<Occurrence>)>;

/// A shard's work in one window, with what it reads of the world.
struct Window<'a> {
    shard: &'a mut Shard,
    /// When it closes: nothing a node makes for another shard's nodes may come sooner.
    end: u64,
    common: &'a Common,
    net: &'a Net,
}

fn addr(i: usize) -> SocketAddr {
    let i = i as u32 + 1;
    SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 7000))
}

/// The node at `addr` ([`addr`]'s inverse), if it is one of `n`: worked out, not looked up
/// (a map of 10,000 addresses was looked up for every message, a comparison of addresses at
/// each of its levels).
fn index(addr: SocketAddr, n: usize) -> Option<usize> {
    let SocketAddr::V4(v4) = addr else {
        return None;
    };
    let [ten, a, b, c] = v4.ip().octets();
    let i = (usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c)).checked_sub(1)?;
    (ten == 10 && v4.port() == 7000 && i < n).then_some(i)
}

/// The time as a node whose clock is `clock_us` off sees it at `now`: virtual time counted
/// from a fixed epoch, and the offset.
fn clock(now: u64, clock_us: i64) -> Duration {
    let us = 1_700_000_000_000_000 + now as i64 + clock_us;
    Duration::from_micros(us.max(0) as u64)
}

fn fnv(hash: u64, words: &[u64]) -> u64 {
    words
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .fold(hash, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

impl World {
    /// `n` nodes, each knowing node 0's address and one other's; none started yet.
    pub fn new(n: usize, seed: u64, settings: Conditions) -> Self {
        let threads = match settings.links.latency_us {
            0 => 1,
            _ => settings.threads.clamp(1, n.max(1)),
        };
        let count = match threads {
            1 => 1,
            _ => (threads * SHARDS_PER_THREAD).min(n),
        };
        let mut shards: Vec<Shard> = (0..count)
            .map(|index| Shard {
                index,
                count,
                nodes: Vec::with_capacity(n / count + 1),
                queue: BTreeMap::new(),
                out: (0..count).map(|_| (u64::MAX, Vec::new())).collect(),
                inbox: (u64::MAX, Vec::new()),
                acting: 0,
                now: 0,
                found: Found::default(),
                sizes: StatusSizes::default(),
            })
            .collect();
        let mut peer_ids = Vec::with_capacity(n);
        for i in 0..n {
            let mut state = DesiredState::new(ActorId::from(actor(seed, i, 0)));
            let member = MemberId::numbered(i, addr(i));
            peer_ids.push(member.peer_id.clone());
            shards[i % count].nodes.push(Node {
                member,
                core: None,
                file: journal::file(&state.save()),
                containers: Vec::new(),
                made: 0,
                links: Connections::default(),
                paused: false,
                held: Vec::new(),
                clock_us: 0,
                epoch: None,
                rng: StdRng::seed_from_u64(fnv(seed, &[i as u64])),
                made_events: 0,
                trace: FNV_OFFSET,
                requests: BTreeMap::new(),
                next_request: 0,
            });
        }
        let by_peer = peer_ids.iter().cloned().zip(0..).collect();
        World {
            shards,
            threads,
            common: Common {
                settings: settings.clone(),
                lives: vec![(0, false); n],
                peer_ids,
                by_peer,
            },
            made_events: 0,
            now: 0,
            net: Net::new(n, settings.links),
            rng: StdRng::seed_from_u64(seed),
            counts: Counts::default(),
            written: BTreeMap::new(),
            replicated: BTreeMap::new(),
            deaths: Vec::new(),
            started: Vec::new(),
            shared: Shared::default(),
        }
    }

    /// How many nodes the world has, up or down.
    pub fn size(&self) -> usize {
        self.common.lives.len()
    }

    fn node(&self, i: usize) -> &Node {
        let count = self.shards.len();
        &self.shards[i % count].nodes[i / count]
    }

    fn node_mut(&mut self, i: usize) -> &mut Node {
        let count = self.shards.len();
        &mut self.shards[i % count].nodes[i / count]
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.common.lives[i].1
    }

    pub fn core(&self, i: usize) -> Option<&NodeCore> {
        self.node(i).core.as_ref()
    }

    /// The trace's hash: of each node's hash of the events it ran, in the nodes' order.
    pub fn trace(&self) -> u64 {
        let traces: Vec<u64> = (0..self.size()).map(|i| self.node(i).trace).collect();
        fnv(FNV_OFFSET, &traces)
    }

    /// Starts (or restarts) node `i` on what its file holds.
    pub fn start(&mut self, i: usize) {
        let other = addr(self.rng.random_range(0..self.size()));
        let seed = self.rng.random::<u64>();
        let (now, shared) = (self.now, self.shared.clone());
        let detection = self.common.settings.detection;
        let life = {
            let (life, up) = &mut self.common.lives[i];
            *life += 1;
            *up = true;
            *life
        };
        let node = self.node_mut(i);
        let now = clock(now, node.clock_us);
        let epoch = next_epoch(node.epoch, now.as_millis() as u64);
        node.epoch = Some(epoch);
        node.member.bump = epoch;
        let loaded = document::load(Some(&node.file), ActorId::from(actor(seed, i, life)))
            .expect("a file this simulation wrote loads");
        let stored = Stored {
            state: loaded.state,
            len: loaded.good_len.unwrap_or(0) as u64,
            failing: None,
        };
        let config = Config {
            me: node.member.clone(),
            key: NodeKey::numbered(i),
            detection,
            fanout: 3,
            replicate_to: 4,
            epoch,
            seed,
            known: [addr(0), other].into(),
            reconcile: Settings {
                node: node.member.name.clone(),
                host_ip: addr(i).ip(),
                service_ip: addr(i).ip(),
                resync_ms: 10_000,
                join_grace_ms: 3_000,
            },
            shared,
        };
        node.core = Some(NodeCore::new(config, stored, now));
        self.input_at(self.now, i, life, Input::Timer(Timer::Announce));
    }

    /// Node `i` crashes: its process and containers are gone, its file stays. Its peers'
    /// connections to it close (the kernel resets them, as when a process dies).
    pub fn crash(&mut self, i: usize) {
        let (life, up) = &mut self.common.lives[i];
        *life += 1;
        *up = false;
        let node = self.node_mut(i);
        node.core = None;
        node.containers.clear();
        node.paused = false;
        node.held.clear();
        let peers: Vec<usize> = std::mem::take(&mut node.links).peers().collect();
        let peer_id = node.member.peer_id.clone();
        for peer in peers {
            if self.node_mut(peer).links.remove(i) {
                let life = self.common.lives[peer].0;
                let input = Input::Disconnected(peer_id.clone());
                let at = self.now + self.net.links.latency_us;
                self.input_at(at, peer, life, input);
            }
        }
    }

    /// Node `i` freezes (SIGSTOP): nothing it is sent or asked for runs until [`World::resume`].
    pub fn pause(&mut self, i: usize) {
        let up = self.is_up(i);
        self.node_mut(i).paused = up;
    }

    /// Node `i` runs again: what waited for it comes now, in the order it came.
    pub fn resume(&mut self, i: usize) {
        let node = self.node_mut(i);
        node.paused = false;
        for event in std::mem::take(&mut node.held) {
            self.at(self.now, event);
        }
    }

    pub fn is_paused(&self, i: usize) -> bool {
        self.node(i).paused
    }

    /// What node `i`'s clock reads now, Unix ms.
    pub fn clock_ms(&self, i: usize) -> i64 {
        clock(self.now, self.node(i).clock_us).as_millis() as i64
    }

    /// Node `i`'s clock reads `offset_us` off virtual time from now on (a skew, or a step).
    pub fn set_clock(&mut self, i: usize, offset_us: i64) {
        self.node_mut(i).clock_us = offset_us;
    }

    /// Node `i`'s identity before it starts: its labels, capacity and pod limit.
    pub fn member_mut(&mut self, i: usize) -> &mut MemberId {
        &mut self.node_mut(i).member
    }

    /// The container of `pod` (namespace/name) on node `i` dies (exit 137, as `docker kill`),
    /// and the node hears the engine's event; false if none of its containers runs it.
    pub fn kill_container(&mut self, i: usize, pod: &str) -> bool {
        let now_ms = clock(self.now, self.node(i).clock_us).as_millis() as i64;
        let running = self
            .node_mut(i)
            .containers
            .iter_mut()
            .find(|c| c.state == ContainerState::Running && pod_key(c) == pod);
        let Some(c) = running else {
            return false;
        };
        c.state = ContainerState::Exited { code: 137 };
        c.finished_at_ms = now_ms;
        let event = RuntimeEvent {
            container_id: c.id.clone(),
            action: "die".into(),
        };
        let life = self.common.lives[i].0;
        self.input_at(self.now + ENGINE_US, i, life, Input::Container(event));
        true
    }

    /// The containers of node `i`, running or not (none while it is down).
    pub fn containers_of(&self, i: usize) -> &[Observed] {
        &self.node(i).containers
    }

    /// A write at node `i`, with the id it is acknowledged under.
    pub fn write(&mut self, i: usize, id: u64, op: Op) {
        let life = self.common.lives[i].0;
        let input = Input::Write { id, op };
        self.input_at(self.now, i, life, input);
    }

    /// The pods running on live nodes: (namespace/pod) → how many copies.
    pub fn running(&self) -> BTreeMap<String, usize> {
        let mut pods = BTreeMap::new();
        let nodes = self.shards.iter().flat_map(|s| &s.nodes);
        for node in nodes.filter(|n| n.core.is_some()) {
            for c in &node.containers {
                if c.state == ContainerState::Running {
                    *pods.entry(pod_key(c)).or_default() += 1;
                }
            }
        }
        pods
    }

    /// The running containers of `nodes` that are up.
    pub fn containers_on<'a>(&'a self, nodes: &'a [usize]) -> impl Iterator<Item = &'a Observed> {
        let up = nodes.iter().filter(|&&i| self.is_up(i));
        let on = up.flat_map(|&i| &self.node(i).containers);
        on.filter(|c| c.state == ContainerState::Running)
    }

    /// The pods (namespace/pod) with a running container on `nodes`.
    pub fn pods_on(&self, nodes: &[usize]) -> BTreeSet<String> {
        let on = nodes.iter().flat_map(|&i| &self.node(i).containers);
        let running = on.filter(|c| c.state == ContainerState::Running);
        running.map(pod_key).collect()
    }

    /// Runs every event due up to `until` µs, a window at a time: with one shard, one
    /// window; with more, windows no longer than the network's latency or a request's
    /// timeout (the soonest anything one node makes for another comes), each thread running
    /// its own block of shards ([`SHARDS_PER_THREAD`]) and then the others' not yet taken,
    /// the threads meeting at a [`Gate`] between windows.
    pub fn run_until(&mut self, until: u64) {
        let World {
            shards,
            threads,
            common,
            net,
            counts,
            written,
            replicated,
            deaths,
            started,
            ..
        } = self;
        let (common, net, threads) = (&*common, &*net, *threads);
        let mut record = |shards: &mut [&mut Shard]| {
            hand_over(shards, counts, written, replicated, deaths, started)
        };
        if let [one] = &mut shards[..] {
            one.run(common, net, until + 1);
            record(&mut [one]);
        } else {
            let cells: Vec<Mutex<Shard>> =
                std::mem::take(shards).into_iter().map(Mutex::new).collect();
            // The soonest a node's event for another node comes: the network's latency, or
            // a request's timeout (a lost request's answer) if that is sooner.
            let width = net.links.latency_us.min(REQUEST_TIMEOUT_US);
            let end = AtomicU64::new(0);
            let gate = Gate::new(threads);
            fn lock(cell: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
                cell.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
            }
            // Each thread has a block of shards of its own, which it runs first, one after
            // the other; then it takes those of the other blocks no thread took yet. A
            // thread whose nodes had less to do takes more, and a shard's nodes mostly stay
            // on one core, with what they hold in its cache.
            let blocks: Vec<&[Mutex<Shard>]> =
                cells.chunks(cells.len().div_ceil(threads)).collect();
            // How many shards of each block were taken in the window running.
            let taken: Vec<AtomicUsize> = blocks.iter().map(|_| AtomicUsize::new(0)).collect();
            let run_window = |me: usize, end: u64| {
                for b in (0..blocks.len()).map(|o| (me + o) % blocks.len()) {
                    while let Some(cell) = blocks[b].get(taken[b].fetch_add(1, Ordering::AcqRel)) {
                        lock(cell).run(common, net, end);
                    }
                }
            };
            std::thread::scope(|scope| {
                for me in 1..threads {
                    let (end, gate, run_window) = (&end, &gate, &run_window);
                    scope.spawn(move || {
                        let _breaks = gate.breaks_on_panic();
                        loop {
                            gate.wait();
                            match end.load(Ordering::Acquire) {
                                STOP => break,
                                end => run_window(me, end),
                            }
                            gate.wait();
                        }
                    });
                }
                let _breaks = gate.breaks_on_panic();
                loop {
                    let next_at = cells.iter().filter_map(|c| lock(c).next_at()).min();
                    let Some(next_at) = next_at.filter(|&at| at <= until) else {
                        end.store(STOP, Ordering::Release);
                        gate.wait();
                        break;
                    };
                    let window_end = next_at.saturating_add(width).min(until + 1);
                    end.store(window_end, Ordering::Release);
                    for t in &taken {
                        t.store(0, Ordering::Release);
                    }
                    gate.wait();
                    run_window(0, window_end);
                    gate.wait();
                    let mut guards: Vec<_> = cells.iter().map(lock).collect();
                    let mut all: Vec<&mut Shard> = guards.iter_mut().map(|g| &mut **g).collect();
                    record(&mut all);
                }
            });
            *shards = cells
                .into_iter()
                .map(|c| c.into_inner().unwrap_or_else(|p| p.into_inner()))
                .collect();
        }
        self.now = until;
    }

    /// `input` for node `node` in its life `life`, at `at`, from the driver.
    fn input_at(&mut self, at: u64, node: usize, life: u32, input: Input) {
        self.at(at, Occurrence::Input { node, life, input });
    }

    /// An event the driver makes.
    fn at(&mut self, at: u64, event: Occurrence) {
        self.made_events += 1;
        let key = (at, self.size(), self.made_events);
        let count = self.shards.len();
        self.shards[target(&event) % count]
            .queue
            .insert(key, Box::new(event));
    }
}

/// What [`World::run_until`]'s threads are told to do next: run the window that ends then,
/// or stop.
const STOP: u64 = u64::MAX;

/// Hands over what each shard's nodes sent to the others' (to their inboxes, for the next
/// window), and records what they found: in the order of time, then of node, the same
/// whatever the shards (each node's own in the order it found them).
fn hand_over(
    shards: &mut [&mut Shard],
    counts: &mut Counts,
    written: &mut BTreeMap<u64, u64>,
    replicated: &mut BTreeMap<u64, u64>,
    deaths: &mut Vec<Death>,
    started: &mut Vec<(u64, String, usize)>,
) {
    let mut found = Found::default();
    for from in 0..shards.len() {
        for to in 0..shards.len() {
            let (soonest, events) =
                std::mem::replace(&mut shards[from].out[to], (u64::MAX, Vec::new()));
            if !events.is_empty() {
                let inbox = &mut shards[to].inbox;
                inbox.0 = inbox.0.min(soonest);
                inbox.1.push(events);
            }
        }
    }
    for shard in shards.iter_mut() {
        let theirs = &mut shard.found;
        counts.take(&mut theirs.counts);
        found.written.append(&mut theirs.written);
        found.replicated.append(&mut theirs.replicated);
        found.deaths.append(&mut theirs.deaths);
        found.started.append(&mut theirs.started);
    }
    found.written.sort_by_key(|&(at, node, _)| (at, node));
    found.replicated.sort_by_key(|&(at, node, _)| (at, node));
    found.deaths.sort_by_key(|d| (d.at, d.by));
    found.started.sort_by_key(|&(at, _, node)| (at, node));
    written.extend(found.written.into_iter().map(|(at, _, id)| (id, at)));
    replicated.extend(found.replicated.into_iter().map(|(at, _, id)| (id, at)));
    deaths.append(&mut found.deaths);
    started.append(&mut found.started);
}

/// Where the threads of a run meet between windows: each waits until all have come. A
/// window lasts microseconds to milliseconds of wall time, so a thread spins a while before
/// it yields its core; it yields, so more threads than cores still make progress. A thread
/// that panics breaks the gate, and every thread that waits there then panics too, rather
/// than wait for ever.
struct Gate {
    parties: usize,
    arrived: AtomicUsize,
    round: AtomicUsize,
    broken: AtomicBool,
}

/// Breaks its gate if the thread holding it panics.
struct Breaks<'a>(&'a Gate);

impl Drop for Breaks<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.broken.store(true, Ordering::Release);
        }
    }
}

/// How many shards the nodes are dealt to per thread: a thread takes the next shard not yet
/// run in a window, so one whose nodes had less to do takes more, and the threads wait less
/// for each other at the window's end.
const SHARDS_PER_THREAD: usize = 8;

/// How many times a thread at the gate spins before it yields between looks.
const SPINS: u32 = 1 << 14;

impl Gate {
    fn new(parties: usize) -> Self {
        Gate {
            parties,
            arrived: AtomicUsize::new(0),
            round: AtomicUsize::new(0),
            broken: AtomicBool::new(false),
        }
    }

    /// A guard that breaks the gate if this thread panics while it holds it.
    fn breaks_on_panic(&self) -> Breaks<'_> {
        Breaks(self)
    }

    /// Waits for every party; what each did before it came is seen by all after.
    fn wait(&self) {
        let round = self.round.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.parties {
            self.arrived.store(0, Ordering::Relaxed);
            self.round.store(round.wrapping_add(1), Ordering::Release);
            return;
        }
        let mut spins = 0;
        while self.round.load(Ordering::Acquire) == round {
            assert!(
                !self.broken.load(Ordering::Acquire),
                "another simulation thread panicked"
            );
            if spins < SPINS {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

impl Shard {
    /// When its next event comes, if it has one.
    fn next_at(&self) -> Option<u64> {
        let queued = self.queue.keys().next().map(|k| k.0);
        let handed = (!self.inbox.1.is_empty()).then_some(self.inbox.0);
        queued.into_iter().chain(handed).min()
    }

    /// Runs its events due before `end`, with those handed to it.
    fn run(&mut self, common: &Common, net: &Net, end: u64) {
        let (_, handed) = std::mem::replace(&mut self.inbox, (u64::MAX, Vec::new()));
        for events in handed {
            self.queue.extend(events);
        }
        let mut window = Window {
            shard: self,
            end,
            common,
            net,
        };
        window.run();
    }
}

impl Window<'_> {
    fn run(&mut self) {
        while let Some(entry) = self.shard.queue.first_entry() {
            let (at, ..) = *entry.key();
            if at >= self.end {
                break;
            }
            let event = entry.remove();
            let i = target(&event);
            self.shard.now = at;
            self.shard.acting = i;
            let node = self.node(i);
            match node.paused {
                true => node.held.push(*event),
                false => self.occur(*event),
            }
        }
    }

    fn node(&mut self, i: usize) -> &mut Node {
        debug_assert_eq!(
            i % self.shard.count,
            self.shard.index,
            "a node of this shard"
        );
        &mut self.shard.nodes[i / self.shard.count]
    }

    fn is_up(&self, i: usize) -> bool {
        self.common.lives[i].1
    }

    fn life(&self, i: usize) -> u32 {
        self.common.lives[i].0
    }

    fn alive(&self, i: usize, life: u32) -> bool {
        self.common.lives[i] == (life, true)
    }

    /// The node at `addr`: every address a core names is one of the world's.
    fn index(&self, addr: SocketAddr) -> usize {
        index(addr, self.common.lives.len()).expect("an address of the simulated world")
    }

    /// How long a message from the acting node to `to` takes, if it gets there.
    fn transit(&mut self, to: usize) -> Option<u64> {
        let from = self.shard.acting;
        let net = self.net;
        net.transit(&mut self.node(from).rng, from, to)
    }

    /// An event the acting node makes, for whichever node it happens to.
    fn at(&mut self, at: u64, event: Occurrence) {
        let acting = self.shard.acting;
        let node = self.node(acting);
        node.made_events += 1;
        let key = (at, acting, node.made_events);
        let event = Box::new(event);
        match target(&event) % self.shard.count == self.shard.index {
            true => self.shard.queue.insert(key, event),
            false => {
                // The other shard may have run past any sooner time in this window.
                assert!(
                    at >= self.end,
                    "an event for another shard within the window"
                );
                let out = &mut self.shard.out[target(&event) % self.shard.count];
                out.0 = out.0.min(at);
                out.1.push((key, event));
                None
            }
        };
    }

    /// `input` for node `node` in its life `life`, at `at`.
    fn input_at(&mut self, at: u64, node: usize, life: u32, input: Input) {
        self.at(at, Occurrence::Input { node, life, input });
    }

    /// A request from the acting node `from` to `to`: `arrives` after the network's delay,
    /// or, if it cannot get there, `failed` (if any) back to `from` once the request times
    /// out.
    fn request(&mut self, from: usize, to: usize, arrives: Occurrence, failed: Option<Input>) {
        if self.is_up(to) {
            self.contact(from, to);
        }
        match self.transit(to) {
            Some(delay) => self.at(self.shard.now + delay, arrives),
            None => {
                if let Some(input) = failed {
                    let life = self.life(from);
                    let timeout = self.shard.now + REQUEST_TIMEOUT_US;
                    self.input_at(timeout, from, life, input);
                }
            }
        }
    }

    /// Node `this` (the acting one) uses its connection to `other`, opening it if need be;
    /// past [`MAX_CONNECTED`] it closes its least recently used one, quietly: the other side
    /// hears of it a latency later.
    fn contact(&mut self, this: usize, other: usize) {
        let now = self.shard.now;
        if let Some(oldest) = self.node(this).links.used(other, now) {
            let at = now + self.net.links.latency_us;
            self.at(
                at,
                Occurrence::Closed {
                    from: this,
                    to: oldest,
                },
            );
        }
    }

    fn occur(&mut self, event: Occurrence) {
        match event {
            Occurrence::Input { node, life, input } => {
                if self.alive(node, life) {
                    self.step(node, input);
                }
            }
            Occurrence::Datagram {
                from,
                to,
                data,
                digest,
            } => {
                if !self.is_up(to) {
                    return;
                }
                self.contact(to, from);
                let input = Input::Datagram {
                    from: self.common.peer_ids[from].clone(),
                    data,
                    digest,
                    request: true,
                };
                if let Some(Answer::Membership(Some(data))) = self.step(to, input) {
                    let back = Input::Datagram {
                        from: self.common.peer_ids[to].clone(),
                        data,
                        digest: self.digest(to),
                        request: false,
                    };
                    self.send(from, back);
                }
            }
            Occurrence::Status { from, to, message } => {
                let asks = message.asks();
                let answer = match self.is_up(to) {
                    true => {
                        self.contact(to, from);
                        let from = self.common.peer_ids[from].clone();
                        self.step(to, Input::Status { from, message })
                    }
                    false => None,
                };
                if asks {
                    let answer = match answer {
                        Some(Answer::Status(answer)) => answer,
                        _ => None,
                    };
                    // The asker hears back whatever happens, as a transport's request does:
                    // the answer, or after a timeout, nothing.
                    let peer = self.node(to).member.clone();
                    let lost = Input::StatusAnswer {
                        peer: peer.clone(),
                        answer: None,
                    };
                    let life = self.life(from);
                    self.answer(from, life, Input::StatusAnswer { peer, answer }, lost);
                }
            }
            Occurrence::Sync {
                from,
                life,
                to,
                message,
            } => {
                if !self.is_up(to) {
                    let reply = Input::SyncReply {
                        peer: self.common.peer_ids[to].clone(),
                        reply: Err("unreachable".into()),
                    };
                    let at = self.shard.now + REQUEST_TIMEOUT_US;
                    self.input_at(at, from, life, reply);
                    return;
                }
                self.contact(to, from);
                let node = self.node(to);
                node.next_request += 1;
                let id = node.next_request;
                node.requests.insert(id, (from, life));
                let from_peer = self.common.peer_ids[from].clone();
                self.step(
                    to,
                    Input::SyncRequest {
                        id,
                        from: from_peer,
                        message,
                    },
                );
            }
            Occurrence::Acted {
                node,
                life,
                actions,
                failed,
            } => {
                if !self.alive(node, life) {
                    return;
                }
                let outcomes = actions
                    .iter()
                    .zip(failed)
                    .map(|(action, failed)| match failed {
                        Some(error) => Err(error),
                        None => {
                            self.act(node, action);
                            Ok(())
                        }
                    })
                    .collect();
                self.step(node, Input::Reconcile(Event::Acted(outcomes)));
            }
            Occurrence::Closed { from, to } => {
                self.node(to).links.remove(from);
            }
        }
    }

    fn digest(&mut self, i: usize) -> Digest {
        self.node(i)
            .core
            .as_ref()
            .map(|c| c.digest())
            .unwrap_or_default()
    }

    /// The acting node's answer to a request of `asker` (in its life `life`): `answer` after
    /// the network's delay, or `lost` after the request's timeout if it cannot get there.
    fn answer(&mut self, asker: usize, life: u32, answer: Input, lost: Input) {
        let (delay, input) = match self.transit(asker) {
            Some(delay) => (delay, answer),
            None => (REQUEST_TIMEOUT_US, lost),
        };
        self.input_at(self.shard.now + delay, asker, life, input);
    }

    /// An input for `to` from the acting node, after the network's delay (lost if it cannot
    /// get there).
    fn send(&mut self, to: usize, input: Input) {
        if let Some(delay) = self.transit(to) {
            let life = self.life(to);
            self.input_at(self.shard.now + delay, to, life, input);
        }
    }

    /// Steps node `i` and carries out its effects; returns its answer to a request.
    fn step(&mut self, i: usize, input: Input) -> Option<Answer> {
        let now = self.shard.now;
        let node = self.node(i);
        node.trace = fnv(node.trace, &[now, i as u64, kind(&input)]);
        let at = clock(now, node.clock_us);
        let effects = node.core.as_mut()?.step(at, input);
        let mut answer = None;
        for effect in effects {
            match effect {
                Effect::Answer(a) => answer = Some(a),
                other => self.carry(i, other),
            }
        }
        answer
    }

    fn count(sent: &mut Sent, bytes: usize) {
        sent.messages += 1;
        sent.bytes += bytes as u64;
    }

    /// What a driver does with one effect of node `i`.
    fn carry(&mut self, i: usize, effect: Effect) {
        let life = self.life(i);
        let now = self.shard.now;
        let soon = now + ENGINE_US;
        match effect {
            Effect::Membership { to, data } => {
                Self::count(&mut self.shard.found.counts.membership, data.len() + 24);
                let to = self.index(to.p2p);
                let digest = self.digest(i);
                let arrives = Occurrence::Datagram {
                    from: i,
                    to,
                    data,
                    digest,
                };
                self.request(i, to, arrives, None);
            }
            Effect::Status(Send { to, message }) => {
                let size = self.shard.sizes.message(&message);
                Self::count(&mut self.shard.found.counts.status, size + 8);
                let to_index = self.index(to.p2p);
                let failed = message.asks().then(|| {
                    let answer = None;
                    Input::StatusAnswer { peer: to, answer }
                });
                let (from, to) = (i, to_index);
                self.request(i, to, Occurrence::Status { from, to, message }, failed);
            }
            Effect::Sync { to, message } => {
                Self::count(&mut self.shard.found.counts.sync, message.len() + 8);
                let to_index = self.index(to.p2p);
                let reply = Err("unreachable".into());
                let failed = Input::SyncReply {
                    peer: to.peer_id.clone(),
                    reply,
                };
                let (from, to) = (i, to_index);
                let arrives = Occurrence::Sync {
                    from,
                    life,
                    to,
                    message,
                };
                self.request(i, to, arrives, Some(failed));
            }
            Effect::SyncAnswer { id, answer } => {
                let Some((asker, asker_life)) = self.node(i).requests.remove(&id) else {
                    return;
                };
                let size = answer
                    .as_ref()
                    .map_or(0, |m| m.as_ref().map_or(0, Vec::len));
                Self::count(&mut self.shard.found.counts.sync, size + 8);
                let peer = self.common.peer_ids[i].clone();
                let lost = Input::SyncReply {
                    peer: peer.clone(),
                    reply: Err("timed out".into()),
                };
                let reply = Input::SyncReply {
                    peer,
                    reply: answer,
                };
                self.answer(asker, asker_life, reply, lost);
            }
            Effect::Persist(persist) => {
                let file = &mut self.node(i).file;
                match persist {
                    document::Persist::Append { frame, .. } => file.extend(frame),
                    document::Persist::Replace(bytes) => *file = bytes,
                }
                let input = Input::Persisted(Ok(()));
                self.input_at(now + DISK_US, i, life, input);
            }
            Effect::Written { id, result } => {
                if result.is_ok() {
                    self.shard.found.written.push((now, i, id));
                }
            }
            Effect::Schedule { after, timer } => {
                // Rounded up: a timer asked for in less than a microsecond must still come
                // later than now, or a core that asks again for the rest never sees time move
                // (the fault schedules found one: a suspicion's timer, every 0 µs, forever).
                let at = now + after.as_nanos().div_ceil(1000) as u64;
                self.input_at(at, i, life, Input::Timer(timer));
            }
            Effect::ListContainers => {
                let listed = Ok(self.node(i).containers.clone());
                let input = Input::Reconcile(Event::Listed(listed));
                self.input_at(soon, i, life, input);
            }
            Effect::Terminate(ids) => {
                for c in &mut self.node(i).containers {
                    if ids.contains(&c.id) {
                        c.state = ContainerState::Exited { code: 137 };
                    }
                }
                let input = Input::Reconcile(Event::Terminated);
                self.input_at(soon, i, life, input);
            }
            Effect::Act(actions) => {
                let settings = &self.common.settings;
                let (rate, absent) = (settings.failure_rate, &settings.absent_images);
                let rng = &mut self.node(i).rng;
                let failed = actions
                    .iter()
                    .map(|action| match action {
                        Action::Create { spec, .. } if absent.contains(&spec.image) => {
                            Some(RuntimeError::ImageMissing(spec.image.clone()))
                        }
                        _ => (rate > 0.0 && rng.random::<f64>() < rate)
                            .then(|| RuntimeError::Failed("simulated failure".into())),
                    })
                    .collect();
                let creates = actions.iter().any(|a| !matches!(a, Action::Remove { .. }));
                let delay = if creates {
                    self.common.settings.start_us
                } else {
                    ENGINE_US
                };
                let event = Occurrence::Acted {
                    node: i,
                    life,
                    actions,
                    failed,
                };
                self.at(now + delay, event);
            }
            Effect::Pull { pull, .. } => {
                // No registry has an absent image; every other one is pulled at once.
                let image = &pull.image;
                let outcome = match self.common.settings.absent_images.contains(image) {
                    true => Err(RuntimeError::PullFailed(format!("{image:?}: not found"))),
                    false => Ok(()),
                };
                let input = Input::Reconcile(Event::Pulled { pull, outcome });
                self.input_at(soon, i, life, input);
            }
            Effect::Probe(check) => {
                let input = Input::Probed {
                    check,
                    passed: true,
                };
                self.input_at(soon, i, life, input);
            }
            Effect::Check(member) => {
                let to = self.index(member.p2p);
                if !self.is_up(to) {
                    let input = Input::Gone(member.peer_id.clone());
                    self.input_at(soon, i, life, input);
                }
            }
            Effect::Disconnect(peer) => {
                if let Some(&dead) = self.common.by_peer.get(&peer) {
                    // The identity declared dead: the newest one of that node it holds down.
                    let members = self.node(i).core.as_ref().map(|c| c.view().members.iter());
                    let down = members
                        .into_iter()
                        .flatten()
                        .filter(|(m, l)| *l == Liveness::Down && m.peer_id == peer);
                    let bump = down.map(|(m, _)| m.bump).max().unwrap_or_default();
                    self.shard.found.deaths.push(Death {
                        at: now,
                        by: i,
                        dead,
                        bump,
                    });
                }
            }
            Effect::Replicated(id) => {
                self.shard.found.replicated.push((now, i, id));
            }
            Effect::Snapshot(_)
            | Effect::Containers(_)
            | Effect::Known(_)
            | Effect::Digest(_)
            | Effect::View(_)
            | Effect::Table(_)
            | Effect::Answer(_) => {}
        }
    }

    /// One container action on node `i`, as an engine that took it would.
    fn act(&mut self, i: usize, action: &Action) {
        let now = self.shard.now;
        let node = self.node(i);
        let now_ms = clock(now, node.clock_us).as_millis() as i64;
        match action {
            Action::Create { spec, .. } => {
                node.made += 1;
                let id = format!("{}-{}", node.member.name, node.made);
                let mut observed = Observed::created(id, spec, now_ms);
                // As Docker publishes them: each on a free port of the node's address.
                let made = node.made;
                observed.ports = spec
                    .ports
                    .iter()
                    .enumerate()
                    .map(|(k, &(container_port, protocol))| PublishedPort {
                        container_port,
                        protocol,
                        host_ip: spec.publish_ip,
                        host_port: 30_000 + ((made * 8 + k as u64) % 30_000) as u16,
                    })
                    .collect();
                let pod = pod_key(&observed);
                node.containers.push(observed);
                self.shard.found.started.push((now, pod, i));
            }
            Action::Start { id, .. } => {
                for c in node.containers.iter_mut().filter(|c| &c.id == id) {
                    c.state = ContainerState::Running;
                    c.started_at_ms = now_ms;
                }
            }
            Action::Remove { id, .. } => node.containers.retain(|c| &c.id != id),
        }
    }
}

/// The node an occurrence happens to.
fn target(event: &Occurrence) -> usize {
    match *event {
        Occurrence::Input { node, .. } | Occurrence::Acted { node, .. } => node,
        Occurrence::Datagram { to, .. }
        | Occurrence::Status { to, .. }
        | Occurrence::Sync { to, .. }
        | Occurrence::Closed { to, .. } => to,
    }
}

/// How many bytes a status message takes on the wire (bincode, as the transport encodes it),
/// counted without writing them anywhere. A report is the same bytes each time it is sent, so
/// the sizes of each node's last [`SIZES_KEPT`] versions are kept: pushing a report to a few
/// peers and passing it on costs one count, not one per message. Several versions of one
/// node's report are in flight at once while its pods start: keeping the latest only, 1,000
/// nodes starting 30,000 replicas counted 102,656 reports for 2,307 versions (a sixth of the
/// start's wall time); keeping four, 3,257.
#[derive(Default)]
struct StatusSizes {
    /// Per node, by its number ([`numbered`]): the sizes of its reports' last versions
    /// counted, oldest first. Its name is read, not looked up: hashing and comparing names in
    /// a map was a twentieth of a deployment's start at 5,000 nodes.
    reports: Vec<Vec<Counted>>,
}

/// A report's version (epoch, version) and its size in bytes.
type Counted = ((u64, u64), usize);

/// The versions of one node's report whose sizes [`StatusSizes`] keeps.
const SIZES_KEPT: usize = 4;

impl StatusSizes {
    fn message(&mut self, message: &StatusMessage) -> usize {
        // The variant's index, then its fields; a Vec is its length, then its items.
        match message {
            StatusMessage::Reports(reports) => 1 + self.reports(reports),
            StatusMessage::Delta { reports, want } => {
                1 + self.reports(reports) + encoded_size(want)
            }
            StatusMessage::Sums(_) | StatusMessage::Versions { .. } => encoded_size(message),
        }
    }

    fn reports(&mut self, reports: &[Arc<NodeStatus>]) -> usize {
        let each: usize = reports.iter().map(|r| self.report(r)).sum();
        varint_size(reports.len()) + each
    }

    fn report(&mut self, report: &NodeStatus) -> usize {
        let Some(node) = numbered(&report.node) else {
            return encoded_size(report);
        };
        let at = (report.epoch, report.version);
        if let Some(sizes) = self.reports.get(node)
            && let Some(&(_, size)) = sizes.iter().find(|(counted, _)| *counted == at)
        {
            return size;
        }
        let size = encoded_size(report);
        if self.reports.len() <= node {
            self.reports.resize_with(node + 1, Vec::new);
        }
        let sizes = &mut self.reports[node];
        if sizes.len() == SIZES_KEPT {
            sizes.remove(0);
        }
        sizes.push((at, size));
        size
    }
}

/// The number of the simulated node named `name` ("n" and the number, as
/// `MemberId::numbered` names them), if it is such a name: one number per name.
pub fn numbered(name: &str) -> Option<usize> {
    let digits = name.strip_prefix('n')?;
    let canonical = digits == "0" || !digits.starts_with('0');
    let decimal = digits.bytes().all(|b| b.is_ascii_digit());
    if canonical && decimal {
        digits.parse().ok()
    } else {
        None
    }
}

/// How many bytes bincode's variable-length integer encoding takes for `n`.
fn varint_size(n: usize) -> usize {
    match n {
        0..251 => 1,
        251..65_536 => 3,
        65_536..4_294_967_296 => 5,
        _ => 9,
    }
}

/// How many bytes `value` takes in bincode's standard encoding, counted without writing them.
fn encoded_size(value: &impl serde::Serialize) -> usize {
    struct Count<'a>(&'a mut usize);
    impl bincode::enc::write::Writer for Count<'_> {
        fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
            *self.0 += bytes.len();
            Ok(())
        }
    }
    let mut size = 0;
    let config = bincode::config::standard();
    let _ = bincode::serde::encode_into_writer(value, Count(&mut size), config);
    size
}

/// A container's pod, `namespace/name`.
pub fn pod_key(c: &Observed) -> String {
    let namespace = c
        .labels
        .get(LABEL_DEPLOYMENT)
        .and_then(|d| d.split_once('/'))
        .map_or("", |(ns, _)| ns);
    format!(
        "{namespace}/{}",
        c.labels.get(LABEL_POD).map_or("", String::as_str)
    )
}

/// Node `i`'s actor id in life `life`, from the seed.
fn actor(seed: u64, i: usize, life: u32) -> [u8; 16] {
    let mut bytes = [0; 16];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..12].copy_from_slice(&(i as u32).to_le_bytes());
    bytes[12..].copy_from_slice(&life.to_le_bytes());
    bytes
}

/// An input's kind, for the trace's hash.
fn kind(input: &Input) -> u64 {
    match input {
        Input::Datagram { data, .. } => 1 << 32 | data.len() as u64,
        Input::Status { .. } => 2,
        Input::StatusAnswer { .. } => 3,
        Input::Timer(_) => 4,
        Input::Disconnected(_) => 5,
        Input::Gone(_) => 6,
        Input::Write { id, .. } => 7 << 32 | id,
        Input::SyncRequest { message, .. } => 8 << 32 | message.len() as u64,
        Input::SyncReply { .. } => 9,
        Input::Persisted(_) => 10,
        Input::Reconcile(_) => 11,
        Input::Container(_) => 12,
        Input::Probed { .. } => 13,
        Input::Leaving => 14,
        Input::Leave => 15,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weeble_core::status::{NodeName, Phase, PodStatus, Version};

    #[test]
    fn a_node_is_found_by_its_address() {
        for i in [0, 1, 254, 255, 256, 65_535, 65_536, 99_999] {
            assert_eq!(index(addr(i), 100_000), Some(i), "node {i} at {}", addr(i));
        }
        assert_eq!(index(addr(10), 10), None, "past the world's nodes");
        assert_eq!(
            index("10.0.0.1:7001".parse().unwrap(), 10),
            None,
            "another port"
        );
        assert_eq!(
            index("11.0.0.1:7000".parse().unwrap(), 10),
            None,
            "another network"
        );
        assert_eq!(
            index("10.0.0.0:7000".parse().unwrap(), 10),
            None,
            "before the first"
        );
    }

    fn pod(node: &str, i: usize) -> PodStatus {
        PodStatus {
            name: format!("web-{i}"),
            namespace: "default".into(),
            deployment: "web".into(),
            node: node.into(),
            labels: std::sync::Arc::new([("app".to_string(), "web".to_string())].into()),
            container_ids: vec![format!("c{i}")],
            phase: Phase::Running,
            ready: true,
            restarts: 0,
            reason: None,
            message: None,
            host_ip: [10, 0, 0, 1].into(),
            ports: Vec::new(),
            started_at_ms: 1_700_000_000_000,
            template_hash: "abc".into(),
        }
    }

    #[test]
    fn a_thread_that_panics_breaks_the_gate_and_the_others_stop_waiting() {
        use std::panic::{AssertUnwindSafe, catch_unwind};
        let gate = Gate::new(2);
        let stopped = Mutex::new(None);
        let run = catch_unwind(AssertUnwindSafe(|| {
            std::thread::scope(|scope| {
                scope.spawn(|| {
                    let _breaks = gate.breaks_on_panic();
                    panic!("a bug in a core");
                });
                let waited = catch_unwind(AssertUnwindSafe(|| gate.wait()));
                *stopped.lock().unwrap() = Some(waited.is_err());
            })
        }));
        assert!(run.is_err(), "the thread's panic is the run's");
        assert_eq!(
            *stopped.lock().unwrap(),
            Some(true),
            "the other stopped waiting"
        );
    }

    #[test]
    fn status_sizes_are_those_of_the_encoding() {
        // A node's report at one version is always the same report: its size is by version.
        let report = |node: &str, pods: usize| {
            Arc::new(NodeStatus {
                node: node.into(),
                epoch: 7,
                version: pods as u64,
                pods: (0..pods).map(|i| pod(node, i)).collect(),
                not_ready: None,
                leaving: false,
                images: Vec::new(),
                signature: Default::default(),
            })
        };
        let messages = [
            StatusMessage::Reports(vec![report("n1", 3), report("n2", 300)]),
            StatusMessage::Reports((0..300).map(|i| report(&format!("n{i}"), 0)).collect()),
            // Names that are no simulated node's: "n01" would read as node 1's.
            StatusMessage::Reports(vec![report("n01", 5), report("web", 2), report("n", 1)]),
            StatusMessage::Delta {
                reports: vec![report("n1", 3)],
                want: vec![NodeName::new("n3"), NodeName::new("n4")],
            },
            StatusMessage::Versions {
                buckets: vec![3, 9],
                versions: vec![Version::new("n1", 1, 2)],
            },
            StatusMessage::Sums(vec![1, u64::MAX, 0]),
        ];
        let mut sizes = StatusSizes::default();
        for message in &messages {
            assert_eq!(sizes.message(message), encoded_size(message), "{message:?}");
            assert_eq!(
                sizes.message(message),
                encoded_size(message),
                "counted again"
            );
        }
        assert_eq!(numbered("n0"), Some(0));
        assert_eq!(numbered("n120"), Some(120));
        for other in ["n01", "n", "web", "n1a", "m1", "n-1"] {
            assert_eq!(numbered(other), None, "{other}");
        }
    }
}
