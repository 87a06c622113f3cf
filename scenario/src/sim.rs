//! The simulator as a backend: the scenario's nodes are `weeble_sim::World`'s cores, in
//! virtual time, on the simulated network and container engine. The same seed gives the same
//! run, event for event, so the same report byte for byte.
//!
//! A steady client is modelled on the service proxy: a request through a node succeeds if that
//! node is up and, among the endpoints it holds ready, taken in turn, one's pod really runs on
//! a node it can reach (the proxy tries the next endpoint when one fails). A write is
//! acknowledged once it is on the writer's disk (the real API then waits up to 2 s more for
//! peers); a writer that crashes first never acknowledges it.

use crate::backend::{
    Backend, BackendError, ClientCount, Held, Holdings, NodeState, Observation, RunningPod,
};
use crate::spec::{Action, ClientSpec, Cluster};
use std::collections::{BTreeMap, BTreeSet};
use weeble_core::document::Op;
use weeble_core::membership::Liveness;
use weeble_core::runtime::{ContainerState, LABEL_DEPLOYMENT};
use weeble_core::services;
use weeble_crdt::{Kind, Object, ObjectKey, ResourceAmounts};
use weeble_sim::net::Impairment;
use weeble_sim::world::{Conditions, World, numbered, pod_key};

/// How long the cluster may take to form, virtual ms.
const FORM_MAX_MS: u64 = 120_000;

pub struct Sim {
    seed: u64,
    threads: usize,
    world: Option<World>,
    /// Nodes started so far (the next `addNode` takes this index).
    started: usize,
    offline: Vec<bool>,
    /// Writes awaiting their answer: id → the writer.
    pending: BTreeMap<u64, usize>,
    refused: BTreeSet<u64>,
    clients: BTreeMap<usize, Client>,
    /// Labels for the nodes the timeline adds, in order.
    added_labels: Vec<weeble_crdt::Labels>,
}

struct Client {
    service: ObjectKey,
    port: Option<u16>,
    via: usize,
    interval_ms: u64,
    next_ms: u64,
    active: bool,
    /// The proxy's turn among the endpoints.
    turn: usize,
    count: ClientCount,
}

impl Sim {
    pub fn new(seed: u64, threads: usize, added_labels: Vec<weeble_crdt::Labels>) -> Self {
        Sim {
            seed,
            threads,
            world: None,
            started: 0,
            offline: Vec::new(),
            pending: BTreeMap::new(),
            refused: BTreeSet::new(),
            clients: BTreeMap::new(),
            added_labels,
        }
    }

    fn world(&self) -> &World {
        self.world.as_ref().expect("the backend has started")
    }

    fn world_mut(&mut self) -> &mut World {
        self.world.as_mut().expect("the backend has started")
    }

    /// Node `i` stops: its pending writes are never acknowledged.
    fn crash(&mut self, i: usize) {
        self.world_mut().crash(i);
        let lost: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, w)| **w == i)
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            self.pending.remove(&id);
            self.refused.insert(id);
        }
    }

    fn set_offline(&mut self, i: usize, off: bool) {
        self.offline[i] = off;
        self.world_mut().net.set_off(i, off);
    }

    /// Whether node `i` is running and not frozen.
    fn serving(&self, i: usize) -> bool {
        let w = self.world();
        i < self.started && w.is_up(i) && !w.is_paused(i)
    }

    /// Whether a request of `client` through its node is answered now.
    fn ask(&self, client: &mut Client) -> bool {
        let w = self.world();
        let via = client.via;
        let Some(core) = w.core(via).filter(|_| self.serving(via)) else {
            return false;
        };
        let endpoints = services::endpoints(&core.view().snapshot, core.table());
        let Some(ports) = endpoints.get(&client.service) else {
            return false;
        };
        let port = match client.port {
            Some(p) => ports.iter().find(|e| e.port == p),
            None => ports.first(),
        };
        let Some(ready) = port.map(|p| &p.ready).filter(|r| !r.is_empty()) else {
            return false;
        };
        for k in 0..ready.len() {
            let endpoint = &ready[(client.turn + k) % ready.len()];
            let pod = format!("{}/{}", client.service.namespace, endpoint.pod);
            let serves = numbered(&endpoint.node).is_some_and(|j| {
                self.serving(j)
                    && w.net.reaches(via, j)
                    && w.net.reaches(j, via)
                    && w.containers_of(j)
                        .iter()
                        .any(|c| c.state == ContainerState::Running && pod_key(c) == pod)
            });
            if serves {
                client.turn += k + 1;
                return true;
            }
        }
        false
    }

    /// The write `action` stands for, read against node `on`'s view where it needs one.
    fn op(&self, action: &Action, on: usize) -> Result<Op, String> {
        let key = |name: &str| ObjectKey::new("default", name);
        Ok(match action {
            Action::Apply(m) => Op::Apply(m.objects.clone()),
            Action::Scale {
                deployment,
                replicas,
            } => Op::Scale(key(deployment), *replicas),
            Action::Delete { deployment } => Op::Delete(Kind::Deployment, key(deployment)),
            Action::Update {
                deployment,
                image,
                env,
            } => {
                let core = self.world().core(on).ok_or(format!("node {on} is down"))?;
                let held = core
                    .view()
                    .snapshot
                    .deployments
                    .get(&key(deployment))
                    .cloned();
                let mut d =
                    (*held.ok_or(format!("node {on} holds no deployment {deployment}"))?).clone();
                let container = d
                    .spec
                    .template
                    .containers
                    .first_mut()
                    .ok_or("no container")?;
                if let Some(image) = image {
                    container.image.clone_from(image);
                }
                for (name, value) in env {
                    container.env.retain(|e| &e.name != name);
                    container.env.push(weeble_crdt::EnvVar {
                        name: name.clone(),
                        value: value.clone(),
                    });
                }
                Op::Apply(vec![Object::Deployment(d)])
            }
            other => return Err(format!("{} is not a write", other.name())),
        })
    }
}

impl Backend for Sim {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn cannot(&self, _: &Action) -> Option<String> {
        None
    }

    fn start(&mut self, cluster: &Cluster, total: usize) -> Result<(), BackendError> {
        let conditions = Conditions {
            absent_images: cluster.missing_images.clone(),
            threads: self.threads,
            detection: cluster.detection,
            ..Conditions::default()
        };
        let mut world = World::new(total, self.seed, conditions);
        for i in 0..total {
            let labels = match i.checked_sub(cluster.nodes) {
                None => cluster.labels.get(&i).cloned(),
                Some(added) => self.added_labels.get(added).cloned(),
            };
            let member = world.member_mut(i);
            member.labels = labels.unwrap_or_default();
            member.capacity = ResourceAmounts {
                cpu_millis: cluster.cpu_millis.unwrap_or(member.capacity.cpu_millis),
                memory_bytes: cluster.memory_bytes.unwrap_or(member.capacity.memory_bytes),
            };
            member.max_pods = cluster.max_pods.unwrap_or(member.max_pods);
        }
        for i in 0..cluster.nodes {
            world.start(i);
        }
        self.world = Some(world);
        self.started = cluster.nodes;
        self.offline = vec![false; total];
        let formed = |w: &World, n: usize| {
            (0..n).all(|i| {
                w.core(i).is_some_and(|c| {
                    let alive = c
                        .view()
                        .members
                        .iter()
                        .filter(|(_, l)| *l != Liveness::Down);
                    alive.count() == n
                })
            })
        };
        while !formed(self.world(), cluster.nodes) {
            let now = self.world().now;
            if now >= FORM_MAX_MS * 1000 {
                return Err(BackendError(format!(
                    "the {} nodes did not form a cluster within {} virtual s",
                    cluster.nodes,
                    FORM_MAX_MS / 1000
                )));
            }
            self.world_mut().run_until(now + 100_000);
        }
        Ok(())
    }

    fn now_ms(&self) -> u64 {
        self.world().now / 1000
    }

    fn advance(&mut self, until_ms: u64) {
        loop {
            let due = self
                .clients
                .values()
                .filter(|c| c.active)
                .map(|c| c.next_ms)
                .min()
                .unwrap_or(u64::MAX);
            let next = due.min(until_ms);
            if next * 1000 > self.world().now {
                self.world_mut().run_until(next * 1000);
            }
            if due > until_ms {
                return;
            }
            let ids: Vec<usize> = self
                .clients
                .iter()
                .filter(|(_, c)| c.active && c.next_ms <= next)
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                let mut client = self.clients.remove(&id).expect("listed");
                let answered = self.ask(&mut client);
                client.count.requests += 1;
                client.count.answered += u64::from(answered);
                client.next_ms += client.interval_ms;
                self.clients.insert(id, client);
            }
        }
    }

    fn act(&mut self, action: &Action, on: usize, write: u64) -> Result<(), String> {
        let sides = |groups: &[Vec<usize>], n: usize| {
            let mut sides = vec![0; n];
            for (g, group) in groups.iter().enumerate() {
                for &i in group {
                    sides[i] = g as u32;
                }
            }
            sides
        };
        let up = |s: &Self, i: usize| i < s.started && s.world().is_up(i);
        match action {
            a if a.is_write() => {
                if !up(self, on) {
                    self.refused.insert(write);
                    return Ok(());
                }
                let op = self.op(a, on)?;
                self.pending.insert(write, on);
                self.world_mut().write(on, write, op);
            }
            Action::KillNode(i) if up(self, *i) => self.crash(*i),
            Action::RestartNode(i) if !up(self, *i) && *i < self.started => {
                self.world_mut().start(*i)
            }
            Action::PauseNode(i) if up(self, *i) => self.world_mut().pause(*i),
            Action::ResumeNode(i) => self.world_mut().resume(*i),
            Action::KillContainer { pod: Some(pod), .. } => {
                let key = if pod.contains('/') {
                    pod.clone()
                } else {
                    format!("default/{pod}")
                };
                let on = (0..self.started).find(|&i| {
                    self.serving(i)
                        && self
                            .world()
                            .containers_of(i)
                            .iter()
                            .any(|c| c.state == ContainerState::Running && pod_key(c) == key)
                });
                let on = on.ok_or(format!("pod {key} runs nowhere"))?;
                self.world_mut().kill_container(on, &key);
            }
            Action::Partition(groups) => {
                let sides = sides(groups, self.world().size());
                self.world_mut().net.split(sides);
            }
            Action::Cut { from, to } => {
                let cut = Impairment {
                    cut: true,
                    ..Impairment::default()
                };
                self.world_mut().net.impair(*from, *to, cut);
            }
            Action::Link {
                between: [a, b],
                loss,
                delay_ms,
            } => {
                let bad = Impairment {
                    cut: false,
                    extra_us: delay_ms * 1000,
                    loss: *loss,
                };
                self.world_mut().net.impair(*a, *b, bad);
                self.world_mut().net.impair(*b, *a, bad);
            }
            Action::Heal => {
                self.world_mut().net.heal();
                self.offline.iter_mut().for_each(|o| *o = false);
            }
            Action::Disconnect(i) => self.set_offline(*i, true),
            Action::Connect(i) => self.set_offline(*i, false),
            Action::AddNode { .. } => {
                let i = self.started;
                if i >= self.world().size() {
                    return Err("no room for another node".into());
                }
                self.started += 1;
                self.world_mut().start(i);
            }
            Action::RebootOffline(i) => {
                if up(self, *i) {
                    self.crash(*i);
                }
                self.set_offline(*i, true);
                self.world_mut().start(*i);
            }
            Action::KillNode(i) | Action::PauseNode(i) => {
                return Err(format!("node {i} is not up"));
            }
            Action::RestartNode(i) => return Err(format!("node {i} is not down")),
            other => return Err(format!("{} is carried out by the runner", other.name())),
        }
        Ok(())
    }

    fn acknowledged(&self, id: u64) -> Option<bool> {
        if self.world().written.contains_key(&id) {
            return Some(true);
        }
        self.refused.contains(&id).then_some(false)
    }

    fn start_client(&mut self, id: usize, spec: &ClientSpec) {
        let now = self.now_ms();
        self.clients.insert(
            id,
            Client {
                service: ObjectKey::new("default", &spec.service),
                port: spec.port,
                via: spec.via,
                interval_ms: spec.interval_ms,
                next_ms: now,
                active: true,
                turn: 0,
                count: ClientCount::default(),
            },
        );
    }

    fn stop_client(&mut self, id: usize) {
        if let Some(c) = self.clients.get_mut(&id) {
            c.active = false;
        }
    }

    fn client_count(&self, id: usize) -> ClientCount {
        self.clients.get(&id).map(|c| c.count).unwrap_or_default()
    }

    fn observe(&mut self) -> Observation {
        let w = self.world();
        let total = w.size();
        let nodes: Vec<NodeState> = (0..total)
            .map(|i| match i {
                i if i >= self.started => NodeState::Absent,
                i if !w.is_up(i) => NodeState::Down,
                i if w.is_paused(i) => NodeState::Paused,
                i if self.offline[i] => NodeState::Offline,
                _ => NodeState::Up,
            })
            .collect();
        let mut running = Vec::new();
        for i in (0..self.started).filter(|&i| w.is_up(i)) {
            for c in w
                .containers_of(i)
                .iter()
                .filter(|c| c.state == ContainerState::Running)
            {
                let deployment = c
                    .labels
                    .get(LABEL_DEPLOYMENT)
                    .and_then(|d| d.split_once('/'));
                running.push(RunningPod {
                    pod: pod_key(c),
                    deployment: deployment.map_or("", |(_, d)| d).to_string(),
                    node: i,
                });
            }
        }
        let first = (0..self.started).find_map(|i| w.core(i));
        let desired = first.map_or_else(BTreeMap::new, |c| {
            let deployments = &c.view().snapshot.deployments;
            deployments
                .iter()
                .map(|(k, d)| (k.name.clone(), d.spec.replicas))
                .collect()
        });
        let alive_seen = (0..total)
            .map(|i| {
                w.core(i).filter(|_| i < self.started).map(|c| {
                    let members = c.view().members.iter();
                    let alive = members.filter(|(_, l)| *l != Liveness::Down);
                    alive.filter_map(|(m, _)| numbered(&m.name)).collect()
                })
            })
            .collect();
        Observation {
            nodes,
            running,
            desired,
            alive_seen,
            agreed: weeble_sim::agreed(w),
        }
    }

    fn holdings(&mut self, i: usize) -> Option<Holdings> {
        let core = self.world().core(i).filter(|_| i < self.started)?;
        let snapshot = &core.view().snapshot;
        let mut held = Holdings::new();
        for (key, d) in &snapshot.deployments {
            let first = d.spec.template.containers.first();
            held.insert(
                format!("Deployment/{}", key.name),
                Held {
                    replicas: Some(d.spec.replicas),
                    image: first.map(|c| c.image.clone()),
                    env: first
                        .map(|c| {
                            c.env
                                .iter()
                                .map(|e| (e.name.clone(), e.value.clone()))
                                .collect()
                        })
                        .unwrap_or_default(),
                    reverted: d.history.reverted.as_ref().map(|r| r.reason.clone()),
                },
            );
        }
        for key in snapshot.services.keys() {
            held.insert(format!("Service/{}", key.name), Held::default());
        }
        Some(held)
    }

    fn trace(&self) -> Option<u64> {
        Some(self.world().trace())
    }
}
