//! Seeded random fault schedules on 5–20 nodes, and the promises that must hold after them.
//!
//! A schedule ([`Schedule::random`]) is a minute of crashes, restarts, pauses, clock steps,
//! partitions, one-way cuts, slow and lossy links, heals, and writes (create, scale, delete)
//! at random peers. [`check`] runs it, then heals every link, resumes and restarts every node
//! and lets the cluster settle; then, as Jepsen's set checker does:
//!
//! - every node's document has the same heads;
//! - every acknowledged create that no one asked to delete is on every node, and every
//!   acknowledged delete is on every node too (the object is gone); no object appears that was
//!   never created, and a deployment's replicas are a count someone wrote;
//! - every replica that placement could give an owner runs exactly once;
//! - after the heal, no replica ran twice for longer than the make-before-break bound
//!   ([`HANDOVER_MAX_MS`] and a resync);
//! - every node's status table holds the same reports, every node's own among them;
//! - no node was declared dead falsely. A declaration is first-hand if, within the detection
//!   window before it, the node or its declarer was crashed or paused, or the link between
//!   them was cut or partitioned (a slow or lossy link still reaches); any other declaration
//!   must be of an identity some node declared dead first-hand: that news is final in SWIM
//!   for the identity it names, and reaches the rest of the cluster once a cut heals (the
//!   node then rejoins under a renewed identity).
//!
//! A failure names the seed and the command that replays it.

use crate::net::Impairment;
use crate::world::{Conditions, Death, World};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use weeble_core::document::Op;
use weeble_core::membership::{Detection, MAX_TOLERANCE};
use weeble_core::reconcile::HANDOVER_MAX_MS;
use weeble_crdt::{Kind, ObjectKey};

/// When the faults begin (the cluster has formed), virtual µs.
const FAULTS_FROM_US: u64 = 5_000_000;

/// When they end.
const FAULTS_UNTIL_US: u64 = FAULTS_FROM_US + 60_000_000;

/// How long the cluster settles after the last heal before the checks.
const SETTLE_US: u64 = 60_000_000;

/// How long before a death a node and its declarer must have been whole and in touch for the
/// death to be false: SWIM's probe and its indirect probes, the longest suspicion the accrual
/// detector allows, and room for TCP's retransmissions on a lossy link.
fn detection_window_us() -> u64 {
    let d = Detection::default();
    let longest = d.probe_period + d.probe_rtt + d.suspect_to_down * MAX_TOLERANCE;
    longest.as_micros() as u64 + 3_000_000
}

/// How long a replica may run twice after the heal: a handover's bound, and the resync that
/// notices it ran out.
const TWICE_MAX_US: u64 = HANDOVER_MAX_MS as u64 * 1000 + 10_000_000;

/// How often the replicas running twice are counted after the heal.
const SAMPLE_US: u64 = 100_000;

/// One thing that happens in a schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    Crash(usize),
    Restart(usize),
    Pause(usize),
    Resume(usize),
    /// The node's clock is stepped to this offset from virtual time, µs.
    Clock(usize, i64),
    /// Node `i` is on side `sides[i]`.
    Split(Vec<u32>),
    /// One direction of one link: (from, to, what is wrong).
    Impair(usize, usize, Impairment),
    Heal,
    /// A write at a node, with its id.
    Write(usize, u64, Change),
}

impl Fault {
    /// Whether it touches any of `nodes` (a split or a heal touches every node).
    fn involves(&self, nodes: &[usize]) -> bool {
        match self {
            Fault::Crash(i)
            | Fault::Restart(i)
            | Fault::Pause(i)
            | Fault::Resume(i)
            | Fault::Clock(i, _)
            | Fault::Write(i, ..) => nodes.contains(i),
            Fault::Impair(a, b, _) => nodes.contains(a) || nodes.contains(b),
            Fault::Split(_) | Fault::Heal => true,
        }
    }
}

/// A write a schedule makes. Each create names a new deployment.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Create(String, u32),
    Scale(String, u32),
    Delete(String),
}

/// A seeded random schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub seed: u64,
    pub nodes: usize,
    /// The chance that a container action fails.
    pub failure_rate: f64,
    /// What happens, at virtual µs (in time order, from 5 s, once the cluster has formed).
    pub faults: Vec<(u64, Fault)>,
}

impl Schedule {
    /// The schedule of `seed`: 5 to 20 nodes, a fault or write every 0.1–3 s for a minute.
    pub fn random(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let nodes = rng.random_range(5..=20);
        let failure_rate = [0.0, 0.0, 0.05][rng.random_range(0..3)];
        let mut plan = Plan {
            rng,
            nodes,
            down: BTreeSet::new(),
            paused: BTreeMap::new(),
            created: Vec::new(),
            writes: 0,
        };
        let mut faults = Vec::new();
        let mut at = FAULTS_FROM_US;
        loop {
            at += plan.rng.random_range(100_000..3_000_000);
            if at >= FAULTS_UNTIL_US {
                break;
            }
            let resumed: Vec<usize> = plan
                .paused
                .iter()
                .filter(|&(_, &until)| until <= at)
                .map(|(&i, _)| i)
                .collect();
            for i in resumed {
                plan.paused.remove(&i);
                faults.push((at, Fault::Resume(i)));
            }
            if let Some(fault) = plan.next(at) {
                faults.push((at, fault));
            }
        }
        Schedule {
            seed,
            nodes,
            failure_rate,
            faults,
        }
    }
}

/// What a schedule being drawn knows of the cluster, so that each fault makes sense.
struct Plan {
    rng: StdRng,
    nodes: usize,
    down: BTreeSet<usize>,
    /// Paused nodes, and when they resume (µs).
    paused: BTreeMap<usize, u64>,
    created: Vec<String>,
    writes: u64,
}

impl Plan {
    fn node(&mut self) -> usize {
        self.rng.random_range(0..self.nodes)
    }

    /// A node that is up, if one is.
    fn up(&mut self) -> Option<usize> {
        let up: Vec<usize> = (0..self.nodes).filter(|i| !self.down.contains(i)).collect();
        (!up.is_empty()).then(|| up[self.rng.random_range(0..up.len())])
    }

    fn next(&mut self, at: u64) -> Option<Fault> {
        let roll = self.rng.random_range(0..100);
        Some(match roll {
            0..40 => {
                let node = self.up()?;
                self.writes += 1;
                let change = self.change();
                Fault::Write(node, self.writes, change)
            }
            40..50 => {
                let node = self.up()?;
                if self.down.len() + 1 >= self.nodes {
                    return None;
                }
                self.down.insert(node);
                self.paused.remove(&node);
                Fault::Crash(node)
            }
            50..60 => {
                let down: Vec<usize> = self.down.iter().copied().collect();
                let node = *down.get(self.rng.random_range(0..down.len().max(1)))?;
                self.down.remove(&node);
                Fault::Restart(node)
            }
            60..66 => {
                let node = self.up()?;
                if self.paused.contains_key(&node) {
                    return None;
                }
                let until = at + self.rng.random_range(200_000..4_000_000);
                self.paused.insert(node, until);
                Fault::Pause(node)
            }
            66..71 => {
                let node = self.node();
                Fault::Clock(node, self.rng.random_range(-30_000_000..30_000_000))
            }
            71..78 => {
                let parts = self.rng.random_range(2..=3);
                Fault::Split(
                    (0..self.nodes)
                        .map(|_| self.rng.random_range(0..parts))
                        .collect(),
                )
            }
            78..90 => {
                let (from, to) = (self.node(), self.node());
                if from == to {
                    return None;
                }
                let impairment = match self.rng.random_range(0..3) {
                    0 => Impairment {
                        cut: true,
                        ..Impairment::default()
                    },
                    1 => Impairment {
                        extra_us: self.rng.random_range(10_000..200_000),
                        ..Impairment::default()
                    },
                    _ => Impairment {
                        loss: self.rng.random_range(0.01..0.2),
                        ..Impairment::default()
                    },
                };
                Fault::Impair(from, to, impairment)
            }
            _ => Fault::Heal,
        })
    }

    fn change(&mut self) -> Change {
        let replicas = self.rng.random_range(0..=4);
        match (self.created.len(), self.rng.random_range(0..10)) {
            (0, _) | (_, 0..5) => {
                let name = format!("d{}", self.created.len());
                self.created.push(name.clone());
                Change::Create(name, replicas)
            }
            (n, 5..8) => Change::Scale(self.created[self.rng.random_range(0..n)].clone(), replicas),
            (n, _) => Change::Delete(self.created[self.rng.random_range(0..n)].clone()),
        }
    }
}

/// A promise a schedule broke.
#[derive(Debug)]
pub struct Broken {
    pub seed: u64,
    pub what: String,
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "schedule {}: {}\n  replay: WEEBLE_SIM_SEED={} cargo test --release -p weeble-sim \
             fault_schedules -- --nocapture",
            self.seed, self.what, self.seed
        )
    }
}

/// What a schedule that kept every promise did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Kept {
    pub nodes: usize,
    pub faults: usize,
    pub writes_acknowledged: usize,
    /// Deaths declared, every one first-hand or of an identity declared dead first-hand.
    pub deaths: usize,
    pub replicas: usize,
    pub trace_hash: u64,
}

/// When something could not be counted on: its spans of virtual µs, the last perhaps still
/// open.
struct Spans<K> {
    closed: BTreeMap<K, Vec<(u64, u64)>>,
    /// Open ones: since when.
    open: BTreeMap<K, u64>,
}

impl<K> Default for Spans<K> {
    fn default() -> Self {
        Spans {
            closed: BTreeMap::new(),
            open: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Copy> Spans<K> {
    /// A span of `key` begins at `at`, unless one is open already.
    fn begin(&mut self, key: K, at: u64) {
        self.open.entry(key).or_insert(at);
    }

    /// The open span of `key`, if any, ends at `at`.
    fn end(&mut self, key: K, at: u64) {
        if let Some(since) = self.open.remove(&key) {
            self.closed.entry(key).or_default().push((since, at));
        }
    }

    /// Every open span ends at `at`.
    fn end_all(&mut self, at: u64) {
        let open: Vec<K> = self.open.keys().copied().collect();
        for key in open {
            self.end(key, at);
        }
    }

    /// Whether a span of `key` overlaps `from..=at`.
    fn during(&self, key: K, from: u64, at: u64) -> bool {
        let closed = self.closed.get(&key);
        closed.is_some_and(|s| s.iter().any(|&(a, b)| a <= at && b >= from))
            || self.open.get(&key).is_some_and(|&since| since <= at)
    }
}

/// When nodes and links could not be counted on.
#[derive(Default)]
struct Troubles {
    /// Per node: crashed or paused.
    node: Spans<usize>,
    /// Per unordered pair: on different sides, or a direction cut.
    pair: Spans<(usize, usize)>,
}

impl Troubles {
    fn begin_pair(&mut self, a: usize, b: usize, at: u64) {
        self.pair.begin((a.min(b), a.max(b)), at);
    }

    /// Whether `by` had grounds of its own to declare `dead` dead at `at`: within the
    /// detection window before it, either was crashed or paused, or the link between them was
    /// cut or partitioned.
    fn first_hand(&self, by: usize, dead: usize, at: u64) -> bool {
        let from = at.saturating_sub(detection_window_us());
        let pair = (by.min(dead), by.max(dead));
        [by, dead].iter().any(|&i| self.node.during(i, from, at))
            || self.pair.during(pair, from, at)
    }
}

/// Runs `schedule` on `threads` threads and checks every promise after it.
pub fn check(schedule: &Schedule, threads: usize) -> Result<Kept, Broken> {
    let broken = |what: String| Broken {
        seed: schedule.seed,
        what,
    };
    let (mut world, troubles, writes) = run_faults(schedule, threads);
    settle(&mut world).map_err(broken)?;
    let acknowledged = documents_agree(&world, &writes).map_err(broken)?;
    let replicas = each_replica_runs_once(&world).map_err(broken)?;
    status_tables_agree(&world).map_err(broken)?;
    no_false_death(&world, &troubles, schedule).map_err(broken)?;
    Ok(Kept {
        nodes: schedule.nodes,
        faults: schedule.faults.len(),
        writes_acknowledged: acknowledged,
        deaths: world.deaths.len(),
        replicas,
        trace_hash: world.trace(),
    })
}

/// Starts the cluster and runs the schedule's faults and writes, then heals every link and
/// resumes or restarts every node; returns the world, when nodes and links were in trouble,
/// and the writes made, by id.
fn run_faults(schedule: &Schedule, threads: usize) -> (World, Troubles, BTreeMap<u64, Change>) {
    let conditions = Conditions {
        failure_rate: schedule.failure_rate,
        threads,
        ..Conditions::default()
    };
    let n = schedule.nodes;
    let mut world = World::new(n, schedule.seed, conditions);
    for i in 0..n {
        world.start(i);
    }
    let mut troubles = Troubles::default();
    let mut writes = BTreeMap::new();
    for &(at, ref fault) in &schedule.faults {
        world.run_until(at);
        match fault {
            Fault::Crash(i) => {
                world.crash(*i);
                troubles.node.begin(*i, at);
            }
            Fault::Restart(i) => {
                world.start(*i);
                troubles.node.end(*i, at);
            }
            Fault::Pause(i) => {
                world.pause(*i);
                troubles.node.begin(*i, at);
            }
            Fault::Resume(i) => {
                world.resume(*i);
                troubles.node.end(*i, at);
            }
            Fault::Clock(i, offset) => world.set_clock(*i, *offset),
            Fault::Split(sides) => {
                for a in 0..n {
                    for b in a + 1..n {
                        if sides[a] != sides[b] {
                            troubles.begin_pair(a, b, at);
                        }
                    }
                }
                world.net.split(sides.clone());
            }
            Fault::Impair(from, to, impairment) => {
                world.net.impair(*from, *to, *impairment);
                if impairment.cut {
                    troubles.begin_pair(*from, *to, at);
                }
            }
            Fault::Heal => {
                world.net.heal();
                troubles.pair.end_all(at);
            }
            Fault::Write(i, id, change) => {
                writes.insert(*id, change.clone());
                world.write(*i, *id, op(change));
            }
        }
    }
    world.run_until(FAULTS_UNTIL_US);
    world.net.heal();
    troubles.pair.end_all(FAULTS_UNTIL_US);
    for i in 0..n {
        if world.is_paused(i) {
            world.resume(i);
        } else if !world.is_up(i) {
            world.start(i);
        }
        troubles.node.end(i, FAULTS_UNTIL_US);
    }
    (world, troubles, writes)
}

/// Runs the settling time, checking that no replica runs twice for longer than the
/// make-before-break bound.
fn settle(world: &mut World) -> Result<(), String> {
    let mut twice_since: BTreeMap<String, u64> = BTreeMap::new();
    while world.now < FAULTS_UNTIL_US + SETTLE_US {
        world.run_until(world.now + SAMPLE_US);
        let running = world.running();
        let twice = running.into_iter().filter(|(_, c)| *c > 1).map(|(p, _)| p);
        let twice: BTreeSet<String> = twice.collect();
        twice_since.retain(|pod, _| twice.contains(pod));
        for pod in twice {
            let since = *twice_since.entry(pod.clone()).or_insert(world.now);
            if world.now - since > TWICE_MAX_US {
                return Err(format!(
                    "{pod} has run twice since {:.1} s, {:.1} s after the heal",
                    since as f64 / 1e6,
                    (since - FAULTS_UNTIL_US) as f64 / 1e6
                ));
            }
        }
    }
    Ok(())
}

/// The same document on every node, holding every acknowledged write (a set check); returns
/// how many writes were acknowledged.
fn documents_agree(world: &World, writes: &BTreeMap<u64, Change>) -> Result<usize, String> {
    let n = world.size();
    let heads: BTreeSet<&Vec<String>> = (0..n)
        .map(|i| &core(world, i).view().snapshot.heads)
        .collect();
    if heads.len() != 1 {
        return Err(format!(
            "{} different document heads after settling",
            heads.len()
        ));
    }
    let acknowledged: BTreeMap<&u64, &Change> = writes
        .iter()
        .filter(|(id, _)| world.written.contains_key(id))
        .collect();
    let deleting = |name: &str| writes.values().any(|c| *c == Change::Delete(name.into()));
    for i in 0..n {
        let snapshot = &core(world, i).view().snapshot;
        let present = |name: &str| snapshot.deployments.contains_key(&key(name));
        for (id, change) in &acknowledged {
            match change {
                Change::Create(name, _) if !present(name) && !deleting(name) => {
                    return Err(format!("n{i} lost acknowledged write {id}: create {name}"));
                }
                Change::Delete(name) if present(name) => {
                    return Err(format!(
                        "n{i} still has {name}, deleted by acknowledged write {id}"
                    ));
                }
                _ => {}
            }
        }
        for (key, deployment) in &snapshot.deployments {
            let replicas = deployment.spec.replicas;
            let written = writes.values().any(|c| match c {
                Change::Create(name, r) | Change::Scale(name, r) => {
                    *name == key.name && *r == replicas
                }
                Change::Delete(_) => false,
            });
            if !written {
                return Err(format!(
                    "n{i} has {key} with {replicas} replicas, which no write asked for"
                ));
            }
        }
    }
    Ok(acknowledged.len())
}

/// Every replica placement could give an owner runs exactly once, and nothing else runs;
/// returns how many.
fn each_replica_runs_once(world: &World) -> Result<usize, String> {
    let placement = &core(world, 0).view().placement;
    if let Some(i) = (1..world.size()).find(|&i| core(world, i).view().placement != *placement) {
        return Err(format!(
            "n{i} places the replicas otherwise than n0 after settling"
        ));
    }
    let placed: BTreeSet<String> = placement
        .replicas()
        .filter(|(_, owner)| owner.is_ok())
        .map(|(r, _)| format!("{}/{}", r.deployment.namespace, r.pod_name()))
        .collect();
    let running = world.running();
    if let Some((pod, copies)) = running.iter().find(|(_, c)| **c != 1) {
        return Err(format!("{pod} runs {copies} times after settling"));
    }
    let runs: BTreeSet<String> = running.into_keys().collect();
    if runs != placed {
        let missing: Vec<_> = placed.difference(&runs).collect();
        let extra: Vec<_> = runs.difference(&placed).collect();
        return Err(format!(
            "replicas not running: {missing:?}; running but not placed: {extra:?}"
        ));
    }
    Ok(placed.len())
}

/// No false death: every declaration first-hand ([`Troubles::first_hand`]), or of an
/// identity some node declared dead first-hand.
fn no_false_death(world: &World, troubles: &Troubles, schedule: &Schedule) -> Result<(), String> {
    let first_hand = |d: &Death| troubles.first_hand(d.by, d.dead, d.at);
    let rightly_dead: BTreeSet<(usize, u64)> = world
        .deaths
        .iter()
        .filter(|d| first_hand(d))
        .map(|d| (d.dead, d.bump))
        .collect();
    let false_death = world
        .deaths
        .iter()
        .find(|d| !rightly_dead.contains(&(d.dead, d.bump)));
    let Some(&Death { at, by, dead, .. }) = false_death else {
        return Ok(());
    };
    let window = detection_window_us();
    let recent: Vec<String> = schedule
        .faults
        .iter()
        .filter(|(t, f)| t + 2 * window >= at && *t <= at && f.involves(&[by, dead]))
        .map(|(t, f)| format!("{:.3} s {f:?}", *t as f64 / 1e6))
        .collect();
    Err(format!(
        "n{by} declared n{dead} dead at {:.3} s, though no node had grounds to in the {} s \
         before; what happened to them in the {} s before: {recent:?}",
        at as f64 / 1e6,
        window / 1_000_000,
        2 * window / 1_000_000
    ))
}

/// Every node's status table holds the same reports, every node's own among them.
fn status_tables_agree(world: &World) -> Result<(), String> {
    let n = world.size();
    let tables: BTreeSet<u64> = (0..n)
        .map(|i| core(world, i).table().fingerprint())
        .collect();
    if tables.len() != 1 {
        return Err(format!(
            "{} different status tables after settling",
            tables.len()
        ));
    }
    let table = core(world, 0).table();
    match (0..n).find(|&i| table.report(&format!("n{i}")).is_none()) {
        Some(i) => Err(format!(
            "n{i}'s report is in no status table after settling"
        )),
        None => Ok(()),
    }
}

fn core(world: &World, i: usize) -> &weeble_core::node::NodeCore {
    world.core(i).expect("every node runs after the heal")
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::new("default", name)
}

/// The document operation a change makes.
fn op(change: &Change) -> Op {
    match change {
        Change::Create(name, replicas) => Op::Apply(crate::manifest(name, *replicas)),
        Change::Scale(name, replicas) => Op::Scale(key(name), *replicas),
        Change::Delete(name) => Op::Delete(Kind::Deployment, key(name)),
    }
}
