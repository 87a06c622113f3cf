//! Reconcile: this node's share of the desired pods against the containers it observes.
//!
//! `plan` is the pure core: desired pods, observed containers, the restart book and the time
//! in; actions out (create, start, remove). Level-triggered and idempotent: the same inputs
//! give the same plan, and a plan that was cut short is simply made again on the next pass.
//! `pod_statuses` turns the same inputs into the status this node gossips. What a container
//! waits on its image for (a pull, a failed one, a name that cannot be read) is [`pulls`].

use crate::placement::{Placement, ReplicaKey};
use crate::probe::{Check, How, Kind};
use crate::rollout::{self, Choice, Pace};
use crate::runtime::*;
use crate::services;
use crate::status::{
    CONTAINER_CREATING, HeldImage, MAX_HELD_IMAGES, Phase, PodStatus, PortStatus, StatusTable,
};
use pulls::{Gate, Pulls};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use weeble_crdt::{
    Deployment, Labels, ObjectKey, PodTemplate, ProbeAction, PullPolicy, RestartPolicy, Snapshot,
    TargetPort,
};

/// A pod this node should run.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredPod {
    pub key: ReplicaKey,
    /// Shared by the deployment's pods on this node: a template copied per pod was a tenth of
    /// a simulated node's memory once its pods ran.
    pub template: Arc<PodTemplate>,
    /// The template's labels, shared with the pod's status reports (a map copied per pod
    /// allocated a 500-byte node of its B-tree, held in each version of the node's report).
    pub labels: Arc<Labels>,
    pub template_hash: String,
    /// The services' variables its containers get when they are created (not part of the
    /// template hash: a service coming or going restarts nothing, as in Kubernetes).
    pub service_env: Vec<(String, String)>,
}

impl DesiredPod {
    pub fn name(&self) -> String {
        self.key.pod_name()
    }

    /// `namespace/pod`: unique in the cluster.
    fn id(&self) -> String {
        format!("{}/{}", self.key.deployment.namespace, self.name())
    }
}

/// The pods of the replicas placement gives this node (`owned`, in key order:
/// [`Placement::owned_by`]), each with the template its deployment's rollout gives it
/// (`paces`, for the deployments in a rollout: [`rollout::pace`]; the current template for the
/// others), and the surge replicas beside them; `service_ip` is where the node serves the
/// services its pods' variables point to. A deployment's replicas come one after another,
/// and those of one template share it, its hash and the services' variables, made once for
/// them all (each pass made them per pod: at 1,000 simulated nodes, most of a resync's time).
pub fn desired_pods(
    snapshot: &Snapshot,
    owned: &[ReplicaKey],
    service_ip: IpAddr,
    paces: &BTreeMap<ObjectKey, Pace>,
) -> Vec<DesiredPod> {
    let mut pods = Pods {
        snapshot,
        service_ip,
        pods: Vec::new(),
        last: None,
    };
    for key in owned {
        let Some(d) = snapshot.deployments.get(&key.deployment) else {
            continue;
        };
        let current = &d.spec.template;
        let Some(pace) = paces.get(&key.deployment) else {
            pods.push(d, current, key.clone());
            continue;
        };
        let template = match pace.slots.get(key.index as usize) {
            Some(Choice::Old(hash)) => d.history.by_hash(hash).map_or(current, |r| &r.template),
            Some(Choice::Nothing) => continue,
            Some(Choice::Current) | None => current,
        };
        pods.push(d, template, key.clone());
        let replicas = d.spec.replicas;
        let beside = |&i: &u32| rollout::surge_slot(replicas, i) == Some(key.index);
        for index in (replicas..replicas + pace.surge).filter(beside) {
            let deployment = key.deployment.clone();
            pods.push(d, current, ReplicaKey { deployment, index });
        }
    }
    pods.pods
}

/// The desired pods as they are made: the pods of one template, one after another, share it.
struct Pods<'a> {
    snapshot: &'a Snapshot,
    service_ip: IpAddr,
    pods: Vec<DesiredPod>,
    /// The template the last pod was made from, compared by address (a deployment's current
    /// and old templates are the snapshot's own).
    last: Option<&'a PodTemplate>,
}

impl<'a> Pods<'a> {
    fn push(&mut self, d: &Deployment, template: &'a PodTemplate, key: ReplicaKey) {
        let same = self.last.is_some_and(|last| std::ptr::eq(last, template));
        let pod = match self.pods.last() {
            Some(last) if same => DesiredPod {
                key,
                ..last.clone()
            },
            _ => DesiredPod {
                template: Arc::new(template.clone()),
                labels: Arc::new(template.labels.clone()),
                template_hash: template.hash(),
                service_env: services::environment(
                    self.snapshot,
                    &d.meta.namespace,
                    self.service_ip,
                ),
                key,
            },
        };
        self.last = Some(template);
        self.pods.push(pod);
    }
}

/// The longest an old owner keeps a replica whose new owner has not reported it Running.
pub const HANDOVER_MAX_MS: i64 = 30_000;

/// A replica placed on another node that this node still runs (make before break).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handover {
    /// The new owner reports the pod Running and ready: this node's copy can go.
    pub owner_running: bool,
    /// When this node first saw the pod placed elsewhere (Unix ms).
    pub since_ms: i64,
}

impl Handover {
    /// Whether this node's copy must stay for now.
    fn keeps(&self, now_ms: i64) -> bool {
        !self.owner_running && now_ms - self.since_ms < HANDOVER_MAX_MS
    }
}

/// The handovers in progress: pods (`namespace/pod`) this node has containers of while
/// placement gives them to another node, with whether that node runs them yet. `since`
/// remembers when each began, across passes; finished ones are forgotten.
pub fn handovers(
    node: &str,
    placement: &Placement,
    observed: &[Observed],
    table: &StatusTable,
    since: &mut BTreeMap<String, i64>,
    now_ms: i64,
) -> BTreeMap<String, Handover> {
    let here: std::collections::BTreeSet<ReplicaKey> =
        observed.iter().filter_map(replica_of).collect();
    let mut current = BTreeMap::new();
    for key in here {
        let Some(owner) = placement.owner(&key) else {
            continue;
        };
        let id = format!("{}/{}", key.deployment.namespace, key.pod_name());
        if owner == node {
            continue;
        }
        let owner_running = table.report(owner).is_some_and(|n| {
            n.pods.iter().any(|p| {
                p.name == key.pod_name()
                    && p.namespace == key.deployment.namespace
                    && p.phase == Phase::Running
                    && p.ready
            })
        });
        let since_ms = *since.entry(id.clone()).or_insert(now_ms);
        current.insert(
            id,
            Handover {
                owner_running,
                since_ms,
            },
        );
    }
    since.retain(|id, _| current.contains_key(id));
    current
}

/// When the earliest handover in progress runs out (Unix ms), if any.
pub fn next_handover_deadline(handovers: &BTreeMap<String, Handover>, now_ms: i64) -> Option<i64> {
    handovers
        .values()
        .filter(|h| h.keeps(now_ms))
        .map(|h| h.since_ms + HANDOVER_MAX_MS)
        .min()
}

/// How long the reconciler may wait for something to wake it after a pass: no wait if the
/// pass left actions for the next one (`more`), else until the next retry or handover
/// deadline, and `resync_ms` at the most.
pub fn next_pass_in_ms(
    book: &Book,
    handovers: &BTreeMap<String, Handover>,
    more: bool,
    resync_ms: i64,
    now_ms: i64,
) -> i64 {
    if more {
        return 0;
    }
    book.containers
        .values()
        .map(|a| a.not_before_ms)
        .chain(book.pulls.next_retry_ms())
        .chain(next_handover_deadline(handovers, now_ms))
        .map(|at| at - now_ms)
        .filter(|&ms| ms > 0)
        .map(|ms| ms + 1)
        .fold(resync_ms, i64::min)
}

/// The running containers whose liveness probe failed in their current run (`failing`: by
/// container id, the start of the run that failed): to be killed, for their restart policy
/// to decide what follows. One that restarted since is left alone.
pub fn failed_liveness<'a>(
    observed: &'a [Observed],
    failing: &BTreeMap<String, i64>,
) -> Vec<&'a str> {
    observed
        .iter()
        .filter(|o| o.state == ContainerState::Running)
        .filter(|o| failing.get(&o.id) == Some(&o.started_at_ms))
        .map(|o| o.id.as_str())
        .collect()
}

/// A starting node's join grace: until a peer answers, or the grace is over, it keeps to the
/// containers it already runs and starts nothing else (alone, it would own every replica).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinGrace {
    until_ms: Option<i64>,
}

/// Where a join grace stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grace {
    /// Still holding back, until then (Unix ms) unless a peer answers first.
    Holding { until_ms: i64 },
    /// A peer answered just now: run this node's share.
    PeerAnswered,
    /// No peer answered in time, just now: run the desired state alone.
    RanOut,
    /// Over (it ended earlier).
    Over,
}

impl JoinGrace {
    pub fn new(now_ms: i64, grace_ms: i64) -> Self {
        JoinGrace {
            until_ms: Some(now_ms + grace_ms),
        }
    }

    /// Where the grace stands at `now_ms`, a live peer being known or not. It ends once.
    pub fn check(&mut self, now_ms: i64, peer_alive: bool) -> Grace {
        let Some(until_ms) = self.until_ms else {
            return Grace::Over;
        };
        let grace = match (peer_alive, now_ms >= until_ms) {
            (true, _) => Grace::PeerAnswered,
            (false, true) => Grace::RanOut,
            (false, false) => return Grace::Holding { until_ms },
        };
        self.until_ms = None;
        grace
    }
}

/// Whether a runtime event calls for a pass: a container stopped or went away. Not `kill`,
/// which comes before the container has stopped (a pass then would find it still running
/// and delay the one that restarts it), nor the echoes of the reconciler's own actions.
pub fn wakes(action: &str) -> bool {
    matches!(action, "die" | "destroy" | "oom")
}

/// The pods among `desired` that already have a container in `observed`. A node that has
/// just started and heard from no peer yet would own every replica; until it has (or its join
/// grace is over) it keeps what it runs and starts nothing new.
pub fn already_running(desired: Vec<DesiredPod>, observed: &[Observed]) -> Vec<DesiredPod> {
    desired
        .into_iter()
        .filter(|pod| {
            observed
                .iter()
                .any(|o| observed_key(o).is_some_and(|(id, _)| id == pod.id()))
        })
        .collect()
}

/// Restart and retry bookkeeping per container (`namespace/pod/container`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attempts {
    /// Restarts so far (shown in `get pods`).
    pub restarts: u32,
    /// Consecutive quick failures: sets the next backoff.
    pub failures: u32,
    /// No new attempt before this time (Unix ms).
    pub not_before_ms: i64,
    /// The last error from the runtime, with its Kubernetes reason.
    pub error: Option<(String, String)>,
}

/// What the reconciler remembers from pass to pass: each container's attempts (by
/// [`book_key`]) and each image's pulls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Book {
    pub containers: BTreeMap<String, Attempts>,
    pub pulls: Pulls,
}

impl Book {
    pub fn new() -> Self {
        Book::default()
    }
}

/// The wait before the next attempt after `failures` quick failures in a row: the first
/// restart is immediate (a killed container is back at once), then 1 s doubling to 60 s.
pub fn backoff_ms(failures: u32) -> i64 {
    match failures {
        0 | 1 => 0,
        n => (1000i64 << (n - 2).min(6)).min(60_000),
    }
}

/// A container that ran at least this long before exiting is not crash-looping.
const STABLE_RUN_MS: i64 = 30_000;

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Create {
        book_key: String,
        spec: Box<ContainerSpec>,
        /// Its image's: a missing image is pulled, unless `Never`.
        policy: PullPolicy,
    },
    Start {
        book_key: String,
        id: String,
    },
    Remove {
        id: String,
        why: &'static str,
    },
}

/// A container's entry in the book: `namespace/pod/container@template-hash`. A new template
/// starts afresh, as a new Kubernetes pod does: its create is not held back by the backoff
/// of the one it replaces (after an update to an absent image, the next template's pods
/// waited out that backoff, up to 30 s, in `ContainerCreating`).
fn book_key(pod: &DesiredPod, container: &str) -> String {
    format!("{}/{}@{}", pod.id(), container, pod.template_hash)
}

/// The replica a container belongs to, from its labels: the deployment's key and the index
/// that ends its pod's name (`<deployment>-<index>`, exactly as [`ReplicaKey::pod_name`]
/// writes it).
pub(crate) fn replica_of(o: &Observed) -> Option<ReplicaKey> {
    let deployment = ObjectKey::parse(o.labels.get(LABEL_DEPLOYMENT)?);
    let pod = o.labels.get(LABEL_POD)?;
    let index = pod.strip_prefix(&deployment.name)?.strip_prefix('-')?;
    let key = ReplicaKey {
        index: index.parse().ok()?,
        deployment,
    };
    (key.pod_name() == *pod).then_some(key)
}

/// The container's identity in the runtime's labels: (namespace/pod, container name).
fn observed_key(o: &Observed) -> Option<(String, String)> {
    let deployment = o.labels.get(LABEL_DEPLOYMENT)?;
    let namespace = deployment.split_once('/')?.0;
    Some((
        format!("{namespace}/{}", o.labels.get(LABEL_POD)?),
        o.labels.get(LABEL_CONTAINER)?.clone(),
    ))
}

/// What a pass does: the actions on containers, and the images to pull.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Images to pull now (none of them is being pulled; as many as
    /// [`pulls::MAX_PULLS_IN_FLIGHT`] allows): their containers are made once they are here.
    pub pulls: Vec<String>,
}

/// What to do now. Removals come first, so a replacement never collides with the name of
/// the container it replaces. A pod handed over to another node is kept until that node
/// runs it (see [`Handover`]). A container whose image must be pulled first waits for the
/// pull ([`Pulls::gate`]).
pub fn plan(
    node: &str,
    publish_ip: IpAddr,
    desired: &[DesiredPod],
    observed: &[Observed],
    handovers: &BTreeMap<String, Handover>,
    book: &Book,
    now_ms: i64,
) -> Plan {
    let mut by_key: BTreeMap<(String, String), Vec<&Observed>> = BTreeMap::new();
    let mut removals = Vec::new();
    for o in observed {
        match observed_key(o) {
            Some(key) => by_key.entry(key).or_default().push(o),
            None => removals.push(Action::Remove {
                id: o.id.clone(),
                why: "not made by this version of Weeble",
            }),
        }
    }
    let mut actions = Vec::new();
    let mut pulls = Vec::new();
    let pull_room = pulls::MAX_PULLS_IN_FLIGHT.saturating_sub(book.pulls.in_flight());
    for pod in desired {
        for container in &pod.template.containers {
            let key = book_key(pod, &container.name);
            let found = by_key
                .remove(&(pod.id(), container.name.clone()))
                .unwrap_or_default();
            let (current, stale): (Vec<&Observed>, Vec<&Observed>) = found
                .into_iter()
                .partition(|o| o.labels.get(LABEL_TEMPLATE_HASH) == Some(&pod.template_hash));
            for o in &stale {
                removals.push(Action::Remove {
                    id: o.id.clone(),
                    why: "made from an older template",
                });
            }
            for extra in current.iter().skip(1) {
                removals.push(Action::Remove {
                    id: extra.id.clone(),
                    why: "duplicate of the pod's container",
                });
            }
            let waiting = book
                .containers
                .get(&key)
                .is_some_and(|a| now_ms < a.not_before_ms);
            match current.first() {
                None if !waiting => {
                    let (image, policy) = (&container.image, container.pull_policy());
                    match book.pulls.gate(image, policy, now_ms) {
                        Gate::Go => actions.push(Action::Create {
                            book_key: key,
                            spec: Box::new(container_spec(node, publish_ip, pod, &container.name)),
                            policy,
                        }),
                        Gate::Pull if !pulls.contains(image) && pulls.len() < pull_room => {
                            pulls.push(image.clone())
                        }
                        _ => {}
                    }
                }
                None => {}
                Some(o) => {
                    let restart = match o.state {
                        ContainerState::Running | ContainerState::Other => false,
                        ContainerState::Created => true,
                        ContainerState::Exited { code } => match pod.template.restart_policy {
                            RestartPolicy::Always => true,
                            RestartPolicy::OnFailure => code != 0,
                            RestartPolicy::Never => false,
                        },
                    };
                    if restart && !waiting {
                        actions.push(Action::Start {
                            book_key: key,
                            id: o.id.clone(),
                        });
                    }
                }
            }
        }
    }
    for ((pod, _), leftovers) in by_key {
        let why = match handovers.get(&pod) {
            Some(h) if h.keeps(now_ms) => continue,
            Some(h) if h.owner_running => "handed over: its new owner runs it",
            Some(_) => "handed over: its new owner did not report it running in time",
            None => "no longer placed on this node",
        };
        removals.extend(leftovers.into_iter().map(|o| Action::Remove {
            id: o.id.clone(),
            why,
        }));
    }
    removals.extend(actions);
    Plan {
        actions: removals,
        pulls,
    }
}

/// The most engine calls a node has in flight at once: a flood of pods must not swamp the
/// engine (Docker 20.10 deadlocked under 33,000 calls at once).
pub const ENGINE_CALLS_IN_FLIGHT: usize = 4;

/// The most actions one pass takes before it looks at the desired state again.
pub const ACTIONS_PER_PASS: usize = 16;

/// The actions of this pass (the plan's first [`ACTIONS_PER_PASS`], removals first as the
/// plan has them), and whether more are left for the next pass, which should come at once.
pub fn batch(mut actions: Vec<Action>) -> (Vec<Action>, bool) {
    let more = actions.len() > ACTIONS_PER_PASS;
    actions.truncate(ACTIONS_PER_PASS);
    (actions, more)
}

/// Records the outcome of an action in the book. A create that found its image missing,
/// with a policy that pulls, is no failure of the container: its image is pulled next.
pub fn record(
    book: &mut Book,
    action: &Action,
    outcome: &Result<(), RuntimeError>,
    observed: &[Observed],
    now_ms: i64,
) {
    let (key, restarting) = match action {
        Action::Create {
            spec,
            policy,
            book_key,
        } if *policy != PullPolicy::Never
            && matches!(outcome, Err(RuntimeError::ImageMissing(_))) =>
        {
            book.pulls.missing(&spec.image, now_ms);
            // What it waits on now is its image: an older error of its would hide that.
            if let Some(attempts) = book.containers.get_mut(book_key) {
                attempts.error = None;
            }
            return;
        }
        Action::Create { book_key, spec, .. } => {
            if outcome.is_ok() {
                book.pulls.present(&spec.image);
            }
            (book_key, false)
        }
        Action::Start { book_key, id } => {
            let ran_ms = observed
                .iter()
                .find(|o| &o.id == id)
                .map_or(0, |o| o.finished_at_ms.saturating_sub(o.started_at_ms));
            let entry = book.containers.entry(book_key.clone()).or_default();
            if ran_ms >= STABLE_RUN_MS {
                entry.failures = 0;
            }
            (book_key, true)
        }
        Action::Remove { .. } => return,
    };
    let entry = book.containers.entry(key.clone()).or_default();
    match outcome {
        Ok(()) => {
            if restarting {
                entry.restarts += 1;
                entry.failures += 1;
            }
            entry.error = None;
            entry.not_before_ms = now_ms + backoff_ms(entry.failures);
        }
        Err(e) => {
            entry.failures += 1;
            let reason = match e {
                RuntimeError::ImageMissing(_) => "ErrImageNeverPull",
                _ => "CreateContainerError",
            };
            entry.error = Some((reason.to_string(), e.to_string()));
            entry.not_before_ms = now_ms + backoff_ms(entry.failures).max(1000);
        }
    }
}

fn container_spec(
    node: &str,
    publish_ip: IpAddr,
    pod: &DesiredPod,
    container: &str,
) -> ContainerSpec {
    let c = pod
        .template
        .containers
        .iter()
        .find(|c| c.name == container)
        .expect("the container is in the template");
    let labels: Labels = [
        (LABEL_NODE, node.to_string()),
        (LABEL_POD, pod.name()),
        (LABEL_DEPLOYMENT, pod.key.deployment.to_string()),
        (LABEL_TEMPLATE_HASH, pod.template_hash.clone()),
        (LABEL_CONTAINER, c.name.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    ContainerSpec {
        // `_` cannot occur in a DNS label (node, namespace, pod and container names all
        // are): with `-` between them, `a` + `b-c` and `a-b` + `c` would collide.
        name: format!(
            "weeble_{node}_{}_{}_{}",
            pod.key.deployment.namespace,
            pod.name(),
            c.name
        ),
        hostname: pod.name(),
        image: c.image.clone(),
        command: c.command.clone(),
        args: c.args.clone(),
        // A container's own variable wins over a service's of the same name.
        env: pod
            .service_env
            .iter()
            .filter(|(name, _)| c.env.iter().all(|e| &e.name != name))
            .cloned()
            .chain(c.env.iter().map(|e| (e.name.clone(), e.value.clone())))
            .collect(),
        working_dir: c.working_dir.clone(),
        ports: c
            .ports
            .iter()
            .map(|p| (p.container_port, p.protocol))
            .collect(),
        publish_ip,
        labels: Arc::new(labels),
        cpu_limit_millis: c.resources.limits.cpu_millis,
        memory_limit_bytes: c.resources.limits.memory_bytes,
    }
}

/// `observed` by pod (`namespace/pod`), container name and template hash, each key made once:
/// the first of two with one key, as a search in order finds. A search for each desired
/// container made a key for every observed one: quadratic in the pods, on every pass.
fn by_template<'a>(
    observed: impl Iterator<Item = &'a Observed>,
) -> BTreeMap<(String, String, &'a str), &'a Observed> {
    let mut index = BTreeMap::new();
    for o in observed {
        if let (Some((pod, container)), Some(hash)) =
            (observed_key(o), o.labels.get(LABEL_TEMPLATE_HASH))
        {
            index.entry((pod, container, hash.as_str())).or_insert(o);
        }
    }
    index
}

/// The probes of every running container of `desired`, resolved: HTTP and TCP probes go to
/// the container's own address, commands into the container.
pub fn probe_checks(desired: &[DesiredPod], observed: &[Observed]) -> Vec<Check> {
    let probed =
        |c: &&weeble_crdt::Container| c.liveness_probe.is_some() || c.readiness_probe.is_some();
    let mut checks = Vec::new();
    if !desired
        .iter()
        .any(|pod| pod.template.containers.iter().any(|c| probed(&c)))
    {
        return checks;
    }
    let running = by_template(
        observed
            .iter()
            .filter(|o| o.state == ContainerState::Running),
    );
    for pod in desired {
        let id = pod.id();
        for c in pod.template.containers.iter().filter(probed) {
            let key = (id.clone(), c.name.clone(), pod.template_hash.as_str());
            let Some(&o) = running.get(&key) else {
                continue;
            };
            // Probes go to the container's own address, as the kubelet's go to the pod's:
            // through a published port, Docker's userland proxy accepts every connection.
            let at = |port: &TargetPort| {
                let number = match port {
                    TargetPort::Number(n) => *n,
                    TargetPort::Name(name) => {
                        c.ports
                            .iter()
                            .find(|p| p.name.as_ref() == Some(name))?
                            .container_port
                    }
                };
                Some(SocketAddr::new(o.ip?, number))
            };
            let probes = [
                (Kind::Liveness, &c.liveness_probe),
                (Kind::Readiness, &c.readiness_probe),
            ];
            for (kind, probe) in probes {
                let Some(probe) = probe else { continue };
                let how = match &probe.action {
                    ProbeAction::HttpGet { path, port } => at(port).map(|addr| How::Http {
                        addr,
                        path: path.clone(),
                    }),
                    ProbeAction::TcpSocket { port } => at(port).map(|addr| How::Tcp { addr }),
                    ProbeAction::Exec { command } => Some(How::Exec {
                        command: command.clone(),
                    }),
                };
                // A container with no address yet cannot be probed: the check waits for it.
                if let Some(how) = how {
                    checks.push(Check {
                        container_id: o.id.clone(),
                        started_ms: o.started_at_ms,
                        kind,
                        probe: probe.clone(),
                        how,
                    });
                }
            }
        }
    }
    checks
}

/// The status of each desired pod, from what the runtime shows, the book remembers and the
/// probes say (`unready`: containers whose readiness probe is not passing).
pub fn pod_statuses(
    node: &str,
    host_ip: IpAddr,
    desired: &[DesiredPod],
    observed: &[Observed],
    book: &Book,
    unready: &std::collections::BTreeSet<String>,
    now_ms: i64,
) -> Vec<PodStatus> {
    let observed = by_template(observed.iter());
    desired
        .iter()
        .map(|pod| {
            let id = pod.id();
            let mut status = PodStatus {
                name: pod.name(),
                namespace: pod.key.deployment.namespace.clone(),
                deployment: pod.key.deployment.name.clone(),
                node: node.to_string(),
                labels: pod.labels.clone(),
                container_ids: vec![],
                phase: Phase::Running,
                ready: true,
                restarts: 0,
                reason: None,
                message: None,
                host_ip,
                ports: vec![],
                started_at_ms: 0,
                template_hash: pod.template_hash.clone(),
            };
            for c in &pod.template.containers {
                let attempts = book
                    .containers
                    .get(&book_key(pod, &c.name))
                    .cloned()
                    .unwrap_or_default();
                status.restarts += attempts.restarts;
                let key = (id.clone(), c.name.clone(), pod.template_hash.as_str());
                let found = observed.get(&key).copied();
                let (phase, reason) = match found {
                    None => {
                        let (reason, message) = waiting_for(&attempts, book, c, now_ms);
                        status.message = message;
                        (Phase::Pending, Some(reason))
                    }
                    Some(o) => {
                        status.container_ids.push(o.id.clone());
                        status.ports.extend(o.ports.iter().map(|p| PortStatus {
                            container_port: p.container_port,
                            protocol: p.protocol,
                            host_port: p.host_port,
                        }));
                        match o.state {
                            ContainerState::Running => {
                                status.started_at_ms = status.started_at_ms.max(o.started_at_ms);
                                (Phase::Running, None)
                            }
                            ContainerState::Exited { code } => {
                                let restarts = match pod.template.restart_policy {
                                    RestartPolicy::Always => true,
                                    RestartPolicy::OnFailure => code != 0,
                                    RestartPolicy::Never => false,
                                };
                                if restarts && now_ms < attempts.not_before_ms {
                                    (Phase::Pending, Some("CrashLoopBackOff".into()))
                                } else if restarts {
                                    (Phase::Pending, Some("Restarting".into()))
                                } else if code == 0 {
                                    (Phase::Succeeded, Some("Completed".into()))
                                } else {
                                    (Phase::Failed, Some("Error".into()))
                                }
                            }
                            ContainerState::Created | ContainerState::Other => {
                                (Phase::Pending, Some(CONTAINER_CREATING.into()))
                            }
                        }
                    }
                };
                // The pod's phase is its least advanced container's.
                let rank = |p: Phase| match p {
                    Phase::Failed => 0,
                    Phase::Pending => 1,
                    Phase::Succeeded => 2,
                    Phase::Running => 3,
                };
                if rank(phase) < rank(status.phase) {
                    status.phase = phase;
                    status.reason = reason;
                }
            }
            status.ready = status.phase == Phase::Running
                && status.container_ids.iter().all(|id| !unready.contains(id));
            status
        })
        .collect()
}

/// The images this node's containers were made from, with the engine's ids, and the pushed
/// images it pulled: what its report says it holds, for nodes that lack one to fetch it here
/// (sorted, at most [`MAX_HELD_IMAGES`]).
pub fn held_images(observed: &[Observed], pulls: &Pulls) -> Vec<HeldImage> {
    let mut held: Vec<HeldImage> = observed
        .iter()
        .filter(|o| !o.image_id.is_empty())
        .map(|o| HeldImage {
            image: o.image.clone(),
            id: o.image_id.clone(),
        })
        .chain(pulls.held_pushed())
        .collect();
    held.sort();
    held.dedup();
    held.truncate(MAX_HELD_IMAGES);
    held
}

/// Why a container that is not made yet waits, and the message that says more: the
/// runtime's last error making it, or what its image waits on.
fn waiting_for(
    attempts: &Attempts,
    book: &Book,
    c: &weeble_crdt::Container,
    now_ms: i64,
) -> (String, Option<String>) {
    if let Some((reason, message)) = &attempts.error {
        return (reason.clone(), Some(message.clone()));
    }
    match book.pulls.gate(&c.image, c.pull_policy(), now_ms) {
        Gate::Pulling => (
            CONTAINER_CREATING.into(),
            Some(format!("Pulling image {:?}", c.image)),
        ),
        Gate::Failed { reason, message } => (reason.into(), Some(message)),
        Gate::Invalid(why) => (pulls::INVALID_IMAGE_NAME.into(), Some(why)),
        Gate::Go | Gate::Pull => (CONTAINER_CREATING.into(), None),
    }
}

pub mod pass;
pub mod pulls;

#[cfg(test)]
mod tests;
