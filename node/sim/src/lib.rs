//! Weeble's node code at scale, in one deterministic process: N `weeble_core::node::NodeCore`s
//! (the very state machine `weeble node` runs) over a simulated network, disk and container
//! engine, in virtual time. The same seed gives the same run, event for event: there is no
//! wall clock, thread or unseeded randomness on the simulation's path, and every map is
//! ordered; [`Report::trace_hash`] is a hash of every event run.
//!
//! - [`world`]: the event loop and what it carries out for each core (a driver's part).
//! - [`net`]: links with latency, jitter, loss and retransmission; partitions, one-way cuts,
//!   slow and lossy links.
//! - [`run`]: the scenario of `weeble sim` — a cluster forms, deployments are applied at one
//!   peer and run, nodes crash — and its [`Report`].
//! - [`schedule`]: seeded random fault schedules, and the promises checked after each.

pub mod net;
pub mod schedule;
pub mod world;

use net::Links;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::BTreeMap;
use weeble_core::document::Op;
use weeble_core::gossip;
use weeble_core::node::NodeCore;
use weeble_crdt::{ObjectKey, parse_manifests};
use world::{Conditions, World};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Options {
    pub nodes: usize,
    /// Replicas in all, spread over `deployments` deployments.
    pub replicas: u32,
    pub deployments: u32,
    /// Nodes crashed once the replicas run.
    pub kill: usize,
    pub seed: u64,
    /// Virtual time in all, seconds.
    pub duration_s: u64,
    pub links: Links,
    /// How long a container takes to start, µs.
    pub start_us: u64,
    /// The chance that a container action fails.
    pub failure_rate: f64,
    /// Threads the nodes run on: the run is the same for any number.
    pub threads: usize,
    /// After the write, change every deployment's image (a rolling update, 25 % / 25 %) and
    /// time it, before the crash.
    pub update: bool,
}

/// What a run showed (the keys of `weeble sim --json`).
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub nodes: usize,
    pub replicas_desired: u32,
    /// Pods with at least one running container on a live node, at the end.
    pub replicas_running: usize,
    /// Running containers beyond one per pod, at the end.
    pub duplicates: usize,
    /// Virtual seconds from a crash until every live node declared the node dead.
    pub detect_p50_s: f64,
    pub detect_p95_s: f64,
    /// Virtual seconds from a crash until each replica it ran runs elsewhere.
    pub restore_p50_s: f64,
    pub restore_p95_s: f64,
    /// Virtual seconds from every replica running until every live node held the same
    /// status table and document.
    pub agreed_s: f64,
    /// Sent per node and virtual second over a 10 s idle window (from 10 s after every
    /// replica runs, or from when every node agreed if that is later; before the crash).
    pub bytes_per_node_s: f64,
    pub msgs_per_node_s: f64,
    /// The idle bytes per node and second by kind: membership, status, document sync.
    pub idle_bytes: [f64; 3],
    /// A write after the idle window (a Service, which starts no pod, applied at a random
    /// node): virtual seconds until it was acknowledged (held by enough peers), and until
    /// half and 99 % of the nodes held it.
    pub write_ack_s: f64,
    pub write_spread_p50_s: f64,
    pub write_spread_p99_s: f64,
    /// With [`Options::update`]: virtual seconds from the image change, applied at a random
    /// node, until every replica runs the new image once and nothing else runs.
    pub update_s: Option<f64>,
    pub virtual_s: f64,
    pub trace_hash: u64,
    /// Phases that did not finish in time, if any.
    pub unfinished: Vec<&'static str>,
}

/// The idle window the traffic is measured over, virtual µs.
const IDLE_US: u64 = 10_000_000;

/// How long the write after the idle window may take to reach every node, virtual µs.
const SPREAD_MAX_US: u64 = 10_000_000;

/// How often the nodes are looked at while the write spreads, virtual µs.
const SPREAD_STEP_US: u64 = 1_000;

/// Runs the scenario; `progress` hears the virtual time reached (µs) after each virtual second.
pub fn run(options: &Options, mut progress: impl FnMut(u64)) -> Report {
    let conditions = Conditions {
        links: options.links.clone(),
        start_us: options.start_us,
        failure_rate: options.failure_rate,
        threads: options.threads,
        ..Conditions::default()
    };
    let mut world = World::new(options.nodes, options.seed, conditions);
    let mut rng = StdRng::seed_from_u64(options.seed ^ 0x5111);
    let end = options.duration_s * 1_000_000;
    let mut unfinished = Vec::new();
    for i in 0..options.nodes {
        world.start(i);
    }
    let mut advance = |world: &mut World, until: u64| {
        while world.now < until {
            let next = (world.now / 1_000_000 + 1) * 1_000_000;
            world.run_until(next.min(until));
            progress(world.now);
        }
    };
    let formed = |w: &World| {
        (0..w.size()).all(|i| {
            w.core(i)
                .is_some_and(|c| c.view().members.len() == w.size())
        })
    };
    if !run_while(&mut world, end, &mut advance, |w| !formed(w)) {
        unfinished.push("the cluster forming");
    }
    let writer = rng.random_range(0..options.nodes);
    world.write(
        writer,
        1,
        Op::Apply(deployments(options.replicas, options.deployments)),
    );
    let desired = options.replicas as usize;
    let all_running = |w: &World| w.running().len() == desired;
    if !run_while(&mut world, end, &mut advance, |w| !all_running(w)) {
        unfinished.push("the replicas starting");
    }
    // As `bench/scale.py` does: the news of the joins and the write dies down first, and
    // the nodes agree on what runs (at 10,000 nodes, the reports of 300,000 replicas
    // starting were still spreading 10 s after the last one started).
    let running_at = world.now;
    let settled = (world.now + IDLE_US).min(end);
    if !run_while(&mut world, end, &mut advance, |w| !agreed(w)) {
        unfinished.push("the nodes agreeing");
    }
    let agreed_s = seconds(world.now - running_at);
    if world.now < settled {
        advance(&mut world, settled);
    }
    let before = world.counts.clone();
    let idle_end = (world.now + IDLE_US).min(end);
    let idle_start = world.now;
    advance(&mut world, idle_end);
    let idle_s = (world.now - idle_start) as f64 / 1e6;
    let idle = world.counts.since(&before);
    let per_node_s = |n: u64| n as f64 / options.nodes as f64 / idle_s.max(1e-9);
    let idle_bytes = [idle.membership, idle.status, idle.sync].map(|s| per_node_s(s.bytes));

    let writer = rng.random_range(0..options.nodes);
    let write_at = world.now;
    let key = ObjectKey::new("default", "probe");
    world.write(writer, WRITE_ID, Op::Apply(service(&key.name)));
    let mut spread = Vec::new();
    let mut seen = vec![false; options.nodes];
    let spread_end = (world.now + SPREAD_MAX_US).min(end);
    while spread.len() < options.nodes && world.now < spread_end {
        let next = world.now + SPREAD_STEP_US;
        advance(&mut world, next);
        for (i, seen) in seen.iter_mut().enumerate().filter(|(_, seen)| !**seen) {
            let holds = |c: &NodeCore| c.view().snapshot.services.contains_key(&key);
            if world.core(i).is_some_and(holds) {
                *seen = true;
                spread.push(seconds(world.now - write_at));
            }
        }
    }
    let acked = world.replicated.get(&WRITE_ID);
    if spread.len() < options.nodes || acked.is_none() {
        unfinished.push("the write spreading");
    }
    let write_ack_s = acked.map_or(0.0, |at| seconds(at - write_at));

    let update_s = options.update.then(|| {
        let writer = rng.random_range(0..options.nodes);
        let at = world.now;
        let mut updated = deployments(options.replicas, options.deployments);
        for object in &mut updated {
            if let weeble_crdt::Object::Deployment(d) = object {
                d.spec.template.containers[0].image = UPDATED_IMAGE.into();
            }
        }
        world.write(writer, UPDATE_ID, Op::Apply(updated));
        let all: Vec<usize> = (0..options.nodes).collect();
        let done = |w: &World| {
            let mut running = w.containers_on(&all);
            let all_new = running.all(|c| c.image == UPDATED_IMAGE);
            all_new && w.running().len() == desired && w.running().values().all(|&n| n == 1)
        };
        while !done(&world) && world.now < end {
            let next = world.now + UPDATE_STEP_US;
            advance(&mut world, next.min(end));
        }
        if !done(&world) {
            unfinished.push("the rolling update");
        }
        seconds(world.now - at)
    });

    let crash_at = world.now;
    let mut victims: Vec<usize> = (0..options.nodes).collect();
    shuffle(&mut victims, &mut rng);
    victims.truncate(options.kill.min(options.nodes.saturating_sub(1)));
    victims.sort_unstable();
    let lost = world.pods_on(&victims);
    for &v in &victims {
        world.crash(v);
    }
    let started_before = world.started.len();
    let deaths_before = world.deaths.len();
    advance(&mut world, end);

    let survivors: Vec<usize> = (0..options.nodes).filter(|i| world.is_up(*i)).collect();
    let mut detect = Vec::new();
    for &v in &victims {
        let mut heard: BTreeMap<usize, u64> = BTreeMap::new();
        for death in &world.deaths[deaths_before..] {
            if death.dead == v {
                heard.entry(death.by).or_insert(death.at);
            }
        }
        if survivors.iter().all(|s| heard.contains_key(s)) {
            detect.push(seconds(
                heard.values().max().copied().unwrap_or(crash_at) - crash_at,
            ));
        }
    }
    let mut restore = Vec::new();
    for pod in &lost {
        let again = world.started[started_before..]
            .iter()
            .find(|(_, p, _)| p == pod);
        if let Some((at, _, _)) = again {
            restore.push(seconds(at - crash_at));
        }
    }
    if detect.len() < victims.len() || restore.len() < lost.len() {
        unfinished.push("the recovery from the crash");
    }
    let running = world.running();
    Report {
        nodes: options.nodes,
        replicas_desired: options.replicas,
        replicas_running: running.len(),
        duplicates: running.values().map(|n| n - 1).sum(),
        detect_p50_s: percentile(&mut detect, 50.0).unwrap_or(0.0),
        detect_p95_s: percentile(&mut detect, 95.0).unwrap_or(0.0),
        restore_p50_s: percentile(&mut restore, 50.0).unwrap_or(0.0),
        restore_p95_s: percentile(&mut restore, 95.0).unwrap_or(0.0),
        agreed_s,
        bytes_per_node_s: per_node_s(idle.total().bytes),
        msgs_per_node_s: per_node_s(idle.total().messages),
        idle_bytes,
        write_ack_s,
        write_spread_p50_s: percentile(&mut spread, 50.0).unwrap_or(0.0),
        write_spread_p99_s: percentile(&mut spread, 99.0).unwrap_or(0.0),
        update_s,
        virtual_s: seconds(world.now),
        trace_hash: world.trace(),
        unfinished,
    }
}

/// Runs a virtual second at a time while `going` holds, until `end`; false if it still held.
fn run_while(
    world: &mut World,
    end: u64,
    advance: &mut impl FnMut(&mut World, u64),
    going: impl Fn(&World) -> bool,
) -> bool {
    while going(world) {
        if world.now >= end {
            return false;
        }
        let next = (world.now + 1_000_000).min(end);
        advance(world, next);
    }
    true
}

/// Whether every live node holds the same status table and document.
pub fn agreed(world: &World) -> bool {
    let mut held = (0..world.size()).filter_map(|i| world.core(i)).map(|c| {
        let heads = &c.view().snapshot.heads;
        (c.table().fingerprint(), gossip::doc_fingerprint(heads))
    });
    let first = held.next();
    held.all(|h| Some(h) == first)
}

fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

/// The `p`th percentile (nearest rank), sorting `values`; `None` for none.
pub fn percentile(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    Some(values[rank.clamp(1, values.len()) - 1])
}

/// Fisher–Yates, on the seeded generator.
fn shuffle<T>(items: &mut [T], rng: &mut StdRng) {
    for i in (1..items.len()).rev() {
        let j = rng.random_range(0..=i);
        items.swap(i, j);
    }
}

/// The id of the write whose spread is measured (the deployments' is 1).
const WRITE_ID: u64 = 2;

/// The id of the rolling update's write, and the image it changes to.
const UPDATE_ID: u64 = 3;
const UPDATED_IMAGE: &str = "img-2";

/// How often the nodes are looked at while a rolling update goes on, virtual µs.
const UPDATE_STEP_US: u64 = 100_000;

/// The Service `name`, selecting the first deployment's pods.
fn service(name: &str) -> Vec<weeble_crdt::Object> {
    let text = format!(
        "kind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: d0}}\n  \
         ports: [{{port: 80}}]\n"
    );
    parse_manifests(&text)
        .expect("a generated manifest is valid")
        .objects
}

/// `count` deployments holding `replicas` in all.
fn deployments(replicas: u32, count: u32) -> Vec<weeble_crdt::Object> {
    let count = count.max(1);
    (0..count)
        .flat_map(|d| {
            manifest(
                &format!("d{d}"),
                replicas / count + u32::from(d < replicas % count),
            )
        })
        .collect()
}

/// The deployment `name` of `replicas` replicas of one small container.
pub fn manifest(name: &str, replicas: u32) -> Vec<weeble_crdt::Object> {
    let text = format!(
        "kind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  \
         template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      \
         containers: [{{name: c, image: img}}]\n"
    );
    parse_manifests(&text)
        .expect("generated manifests are valid")
        .objects
}

#[cfg(test)]
mod tests;
