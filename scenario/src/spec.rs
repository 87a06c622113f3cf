//! The scenario file: a cluster, the manifests it starts with, a timeline of actions and the
//! expectations a run is judged by. [`Scenario::parse`] reads and checks a whole file before
//! anything starts; every problem is named with its field path (`timeline[2].killNode`).
//!
//! ```yaml
//! description: One of five nodes dies; its replicas run on the others within seconds.
//! cluster: {nodes: 5}
//! manifests:
//! - kind: Deployment
//!   metadata: {name: web}
//!   spec: {replicas: 10, template: {...}}
//! timeline:
//! - {at: 5s, killNode: 2}
//! duration: 30s
//! expect:
//! - running: {deployment: web, replicas: 10, within: 10s}
//! ```
//!
//! Times count from when the cluster has formed and the manifests were acknowledged.

use serde::Deserialize;
use serde_yaml_ng::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;
use weeble_core::membership::Detection;
use weeble_crdt::quantity::{RawQuantity, cpu_millis, memory_bytes};
use weeble_crdt::{Labels, Object, parse_manifests};

/// The most nodes a scenario may have (the simulator's proven range).
pub const MAX_NODES: usize = 10_000;

/// The most actions a timeline may expand to (its repeats counted).
pub const MAX_ACTIONS: usize = 100_000;

/// The longest run: a week of (virtual) time.
pub const MAX_DURATION_MS: u64 = 7 * 24 * 3600 * 1000;

/// A checked scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub description: String,
    pub cluster: Cluster,
    /// Applied at one peer once the cluster has formed: time 0 is when they are acknowledged.
    pub manifests: Manifests,
    pub timeline: Vec<Step>,
    pub duration_ms: u64,
    pub expect: Vec<Expect>,
}

#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub nodes: usize,
    /// Labels by node index.
    pub labels: BTreeMap<usize, Labels>,
    /// Each node's capacity, where the file sets it.
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub max_pods: Option<u32>,
    pub detection: Detection,
    /// Images no node holds (an update to one fails, as with a registry out of reach).
    pub missing_images: BTreeSet<String>,
}

/// Manifests as written (what a real node is sent) and as read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Manifests {
    pub text: String,
    pub objects: Vec<Object>,
}

/// One line of the timeline.
#[derive(Debug, Clone)]
pub struct Step {
    /// `timeline[i]`, for what is said of it.
    pub path: String,
    pub at_ms: u64,
    /// The node a write is sent to.
    pub on: usize,
    pub action: Action,
    /// Undone after this long (a node killed then restarted, a partition then healed).
    pub for_ms: Option<u64>,
    /// Done again every `every_ms` until `until_ms`.
    pub every_ms: Option<u64>,
    pub until_ms: Option<u64>,
}

impl Step {
    /// When it and everything it brings (its undo, its repeats) are over.
    pub fn end_ms(&self) -> u64 {
        let last = self.until_ms.unwrap_or(self.at_ms);
        last + self.for_ms.unwrap_or(0)
    }

    /// The times it is done: at `at`, then every `every` before `until`.
    pub fn times(&self) -> impl Iterator<Item = u64> + '_ {
        let step = self.every_ms.unwrap_or(u64::MAX);
        let until = self.until_ms.unwrap_or(self.at_ms);
        std::iter::successors(Some(self.at_ms), move |t| t.checked_add(step))
            .take_while(move |&t| t <= until)
    }
}

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Apply(Manifests),
    Scale {
        deployment: String,
        replicas: u32,
    },
    /// A new pod template: the first container's image, environment variables set.
    Update {
        deployment: String,
        image: Option<String>,
        env: BTreeMap<String, String>,
    },
    Delete {
        deployment: String,
    },
    KillNode(usize),
    RestartNode(usize),
    PauseNode(usize),
    ResumeNode(usize),
    /// The container of one pod: the named one, or one of the deployment's, or of any, chosen
    /// by the run's seed among those running.
    KillContainer {
        deployment: Option<String>,
        pod: Option<String>,
    },
    /// Groups of node indices that cannot reach each other; unnamed nodes are in the first.
    Partition(Vec<Vec<usize>>),
    /// One direction of one link.
    Cut {
        from: usize,
        to: usize,
    },
    /// Both directions of one link lose packets or are slow.
    Link {
        between: [usize; 2],
        loss: f64,
        delay_ms: u64,
    },
    /// Every partition, cut, bad link and disconnected node whole again.
    Heal,
    /// A node off the network (its process keeps running).
    Disconnect(usize),
    Connect(usize),
    /// A new node joins; it takes the next index.
    AddNode {
        labels: Labels,
    },
    /// A node killed and started again while off the network: it boots from its own disk with
    /// no peer, and stays off the network until `connect` or `heal`.
    RebootOffline(usize),
    /// A steady client, until the step's `for` is over or the run ends.
    Client(ClientSpec),
}

/// A client that asks a service (its first port, or `port`), through node `via`, every
/// `interval_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientSpec {
    pub service: String,
    pub port: Option<u16>,
    pub via: usize,
    pub interval_ms: u64,
}

impl Action {
    /// Its name in the file.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Apply(_) => "apply",
            Action::Scale { .. } => "scale",
            Action::Update { .. } => "update",
            Action::Delete { .. } => "delete",
            Action::KillNode(_) => "killNode",
            Action::RestartNode(_) => "restartNode",
            Action::PauseNode(_) => "pauseNode",
            Action::ResumeNode(_) => "resumeNode",
            Action::KillContainer { .. } => "killContainer",
            Action::Partition(_) => "partition",
            Action::Cut { .. } => "cut",
            Action::Link { .. } => "link",
            Action::Heal => "heal",
            Action::Disconnect(_) => "disconnect",
            Action::Connect(_) => "connect",
            Action::AddNode { .. } => "addNode",
            Action::RebootOffline(_) => "rebootOffline",
            Action::Client(_) => "client",
        }
    }

    /// Whether it writes to the desired state.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Action::Apply(_) | Action::Scale { .. } | Action::Update { .. } | Action::Delete { .. }
        )
    }

    /// What undoes it after a `for`, if anything can.
    pub fn undo(&self) -> Option<Action> {
        Some(match self {
            Action::KillNode(i) => Action::RestartNode(*i),
            Action::PauseNode(i) => Action::ResumeNode(*i),
            Action::Disconnect(i) | Action::RebootOffline(i) => Action::Connect(*i),
            Action::Partition(_) | Action::Cut { .. } | Action::Link { .. } => Action::Heal,
            _ => return None,
        })
    }

    /// The node indices it names.
    fn nodes(&self) -> Vec<usize> {
        match self {
            Action::KillNode(i)
            | Action::RestartNode(i)
            | Action::PauseNode(i)
            | Action::ResumeNode(i)
            | Action::Disconnect(i)
            | Action::Connect(i)
            | Action::RebootOffline(i) => vec![*i],
            Action::Client(c) => vec![c.via],
            Action::Partition(groups) => groups.iter().flatten().copied().collect(),
            Action::Cut { from, to } => vec![*from, *to],
            Action::Link { between, .. } => between.to_vec(),
            _ => Vec::new(),
        }
    }
}

/// What a run is judged by.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// `replicas` pods of `deployment` (of every deployment if none) run, each once, at some
    /// moment from `after_ms` to `after_ms + within_ms`.
    Running {
        deployment: Option<String>,
        replicas: u32,
        within_ms: u64,
        after_ms: u64,
    },
    /// Every acknowledged write is held by every node at the end.
    NoLostWrites,
    /// Pods running twice: at most `at_most` at once, for at most `for_at_most_ms` at a time.
    Duplicates {
        at_most: Option<u32>,
        for_at_most_ms: Option<u64>,
    },
    /// The share of the client's requests answered, from 0 to 1.
    Client { success_at_least: f64 },
    /// A figure of the report at most this (seconds for times).
    Figure { name: String, at_most: f64 },
}

impl Expect {
    /// How the report names it.
    pub fn describe(&self) -> String {
        match self {
            Expect::Running {
                deployment,
                replicas,
                within_ms,
                after_ms,
            } => format!(
                "{replicas} replicas of {} running within {} after {}",
                deployment.as_deref().unwrap_or("every deployment"),
                seconds(*within_ms),
                seconds(*after_ms)
            ),
            Expect::NoLostWrites => "no acknowledged write lost".into(),
            Expect::Duplicates {
                at_most,
                for_at_most_ms,
            } => {
                let mut parts = Vec::new();
                if let Some(k) = at_most {
                    parts.push(format!("at most {k} pods running twice"));
                }
                if let Some(t) = for_at_most_ms {
                    parts.push(format!("running twice for at most {}", seconds(*t)));
                }
                parts.join(", ")
            }
            Expect::Client { success_at_least } => format!(
                "the client's success rate at least {:.2} %",
                success_at_least * 100.0
            ),
            Expect::Figure { name, at_most } => format!("{name} at most {at_most}"),
        }
    }
}

/// The figures an expectation may bound (the report's `figures`, in seconds for times).
pub const FIGURES: &[&str] = &[
    "detect_p50_s",
    "detect_max_s",
    "restore_p50_s",
    "restore_max_s",
    "duplicates_max",
    "duplicate_window_s",
    "converged_s",
    "false_deaths",
    "writes_lost",
    "client_failures",
];

/// `1.5 s`, `20 ms`, `3 h`.
pub fn seconds(ms: u64) -> String {
    match ms {
        ms if ms < 1000 => format!("{ms} ms"),
        ms if ms >= 3_600_000 && ms % 360_000 == 0 => format!("{} h", ms as f64 / 3_600_000.0),
        ms => format!("{} s", ms as f64 / 1000.0),
    }
}

/// A scenario file that cannot run: every problem, each with its field path.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct SpecError {
    pub problems: Vec<String>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("\n"))
    }
}

/// A duration in a file: `500ms`, `2s`, `1.5m`, `3h`.
#[derive(Debug, Clone, Copy)]
struct Ms(u64);

impl<'de> Deserialize<'de> for Ms {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        weeble_core::time::parse_duration(&text)
            .map(|d| Ms(d.as_millis() as u64))
            .map_err(serde::de::Error::custom)
    }
}

/// A share: `99%`, `99.5 %` or a number from 0 to 1.
#[derive(Debug, Clone, Copy)]
struct Share(f64);

impl<'de> Deserialize<'de> for Share {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        let share = match Raw::deserialize(d)? {
            Raw::Number(n) => n,
            Raw::Text(t) => {
                let number = t.trim().strip_suffix('%').map(str::trim);
                let parsed = number.and_then(|n| n.parse::<f64>().ok());
                parsed.map(|p| p / 100.0).ok_or_else(|| {
                    serde::de::Error::custom(format!("{t:?} is not a share (e.g. 99%, 0.99)"))
                })?
            }
        };
        if !(0.0..=1.0).contains(&share) {
            return Err(serde::de::Error::custom(format!(
                "{share} is not a share from 0 to 1 (0 % to 100 %)"
            )));
        }
        Ok(Share(share))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct File {
    description: String,
    #[serde(default)]
    cluster: ClusterFile,
    #[serde(default)]
    manifests: Vec<Value>,
    #[serde(default)]
    timeline: Vec<StepFile>,
    duration: Option<Ms>,
    #[serde(default)]
    expect: Vec<ExpectFile>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClusterFile {
    nodes: Option<usize>,
    #[serde(default)]
    labels: BTreeMap<usize, Labels>,
    capacity: Option<CapacityFile>,
    detection: Option<DetectionFile>,
    #[serde(default)]
    missing_images: BTreeSet<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CapacityFile {
    cpu: Option<RawQuantity>,
    memory: Option<RawQuantity>,
    pods: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DetectionFile {
    probe_period: Option<Ms>,
    probe_rtt: Option<Ms>,
    suspect_to_down: Option<Ms>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StepFile {
    at: Ms,
    on: Option<usize>,
    #[serde(rename = "for")]
    for_: Option<Ms>,
    every: Option<Ms>,
    until: Option<Ms>,
    apply: Option<Vec<Value>>,
    scale: Option<ScaleFile>,
    update: Option<UpdateFile>,
    delete: Option<DeleteFile>,
    kill_node: Option<usize>,
    restart_node: Option<usize>,
    pause_node: Option<usize>,
    resume_node: Option<usize>,
    kill_container: Option<KillContainerFile>,
    partition: Option<Vec<Vec<usize>>>,
    cut: Option<CutFile>,
    link: Option<LinkFile>,
    heal: Option<Empty>,
    disconnect: Option<usize>,
    connect: Option<usize>,
    add_node: Option<AddNodeFile>,
    reboot_offline: Option<usize>,
    client: Option<ClientFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleFile {
    deployment: String,
    replicas: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateFile {
    deployment: String,
    image: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteFile {
    deployment: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KillContainerFile {
    deployment: Option<String>,
    pod: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CutFile {
    from: usize,
    to: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkFile {
    between: [usize; 2],
    loss: Option<Share>,
    delay: Option<Ms>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddNodeFile {
    #[serde(default)]
    labels: Labels,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFile {
    service: String,
    port: Option<u16>,
    via: Option<usize>,
    interval: Option<Ms>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ExpectFile {
    running: Option<RunningFile>,
    no_lost_writes: Option<bool>,
    duplicates: Option<DuplicatesFile>,
    client: Option<ClientExpectFile>,
    figure: Option<FigureFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunningFile {
    deployment: Option<String>,
    replicas: u32,
    within: Ms,
    after: Option<Ms>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DuplicatesFile {
    at_most: Option<u32>,
    for_at_most: Option<Ms>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClientExpectFile {
    success_at_least: Share,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FigureFile {
    name: String,
    at_most: FigureBound,
}

/// A figure's bound: a number, or a duration for a time (in seconds then).
#[derive(Deserialize)]
#[serde(untagged)]
enum FigureBound {
    Number(f64),
    Duration(Ms),
}

/// The client's default pace.
const CLIENT_INTERVAL_MS: u64 = 100;

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn parse(text: &str) -> Result<Scenario, SpecError> {
        let value: Value = serde_yaml_ng::from_str(text).map_err(|e| SpecError {
            problems: vec![format!("invalid YAML: {e}")],
        })?;
        let file: File = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let at = if path == "." {
                String::new()
            } else {
                format!("{path}: ")
            };
            SpecError {
                problems: vec![format!("{at}{}", e.into_inner())],
            }
        })?;
        let mut check = Check::default();
        let scenario = check.file(file);
        match check.problems.is_empty() {
            true => Ok(scenario),
            false => Err(SpecError {
                problems: check.problems,
            }),
        }
    }

    /// Nodes at the start and added by the timeline.
    pub fn total_nodes(&self) -> usize {
        self.cluster.nodes + self.added_labels().len()
    }

    /// The labels of each node the timeline adds, in the order they join (a repeated
    /// `addNode` adds one each time).
    pub fn added_labels(&self) -> Vec<Labels> {
        let adds = self.timeline.iter().filter_map(|s| match &s.action {
            Action::AddNode { labels } => {
                Some(std::iter::repeat_n(labels.clone(), s.times().count()))
            }
            _ => None,
        });
        adds.flatten().collect()
    }

    /// The scenario with `nodes` nodes at the start instead: the timeline's indices still name
    /// the same first nodes, the manifests and expectations are unchanged.
    pub fn with_nodes(mut self, nodes: usize) -> Result<Scenario, SpecError> {
        if !(1..=MAX_NODES).contains(&nodes) || nodes < self.cluster.nodes {
            return Err(SpecError {
                problems: vec![format!(
                    "--nodes {nodes}: give from the file's {} to {MAX_NODES}",
                    self.cluster.nodes
                )],
            });
        }
        self.cluster.nodes = nodes;
        Ok(self)
    }
}

/// The checks of a file, gathering every problem.
#[derive(Default)]
struct Check {
    problems: Vec<String>,
}

impl Check {
    fn problem(&mut self, path: &str, message: impl fmt::Display) {
        self.problems.push(format!("{path}: {message}"));
    }

    fn file(&mut self, file: File) -> Scenario {
        if file.description.trim().is_empty() || file.description.contains('\n') {
            self.problem(
                "description",
                "give one line saying what the scenario shows",
            );
        }
        let cluster = self.cluster(file.cluster);
        let manifests = self.manifests("manifests", &file.manifests);
        let mut nodes = cluster.nodes;
        let mut deployments: BTreeSet<String> = deployment_names(&manifests.objects);
        let mut timeline = Vec::new();
        let mut previous = 0;
        let mut actions = 0usize;
        for (i, step) in file.timeline.into_iter().enumerate() {
            let path = format!("timeline[{i}]");
            let Some(step) = self.step(&path, step, nodes, &deployments) else {
                continue;
            };
            if step.at_ms < previous {
                self.problem(&format!("{path}.at"), "steps must come in time order");
            }
            previous = step.at_ms;
            actions = actions.saturating_add(step.times().count());
            match &step.action {
                Action::AddNode { .. } => nodes += step.times().count(),
                Action::Apply(m) => deployments.extend(deployment_names(&m.objects)),
                _ => {}
            }
            timeline.push(step);
        }
        if actions > MAX_ACTIONS {
            self.problem(
                "timeline",
                format!("{actions} actions in all; at most {MAX_ACTIONS}"),
            );
        }
        let last = timeline.iter().map(Step::end_ms).max().unwrap_or(0);
        let duration_ms = match file.duration {
            Some(Ms(d)) => d,
            None => last + 30_000,
        };
        if duration_ms <= last || duration_ms > MAX_DURATION_MS {
            self.problem(
                "duration",
                format!(
                    "{}: give more than the timeline's last moment ({}) and at most a week",
                    seconds(duration_ms),
                    seconds(last)
                ),
            );
        }
        let expect = file
            .expect
            .into_iter()
            .enumerate()
            .filter_map(|(i, e)| self.expectation(&format!("expect[{i}]"), e, last, &deployments))
            .collect();
        Scenario {
            description: file.description.trim().to_string(),
            cluster,
            manifests,
            timeline,
            duration_ms,
            expect,
        }
    }

    fn cluster(&mut self, file: ClusterFile) -> Cluster {
        let nodes = file.nodes.unwrap_or(3);
        if !(1..=MAX_NODES).contains(&nodes) {
            self.problem("cluster.nodes", format!("{nodes}: give 1 to {MAX_NODES}"));
        }
        for &i in file.labels.keys() {
            if i >= nodes {
                self.problem(
                    &format!("cluster.labels.{i}"),
                    format!(
                        "no node {i}: the nodes are 0 to {}",
                        nodes.saturating_sub(1)
                    ),
                );
            }
        }
        let mut cluster = Cluster {
            nodes,
            labels: file.labels,
            missing_images: file.missing_images,
            ..Cluster::default()
        };
        if let Some(c) = file.capacity {
            let mut quantity =
                |field: &str,
                 raw: Option<RawQuantity>,
                 parse: fn(&RawQuantity) -> Result<u64, String>| {
                    raw.and_then(|raw| {
                        parse(&raw)
                            .map_err(|e| self.problem(&format!("cluster.capacity.{field}"), e))
                            .ok()
                    })
                };
            cluster.cpu_millis = quantity("cpu", c.cpu, cpu_millis);
            cluster.memory_bytes = quantity("memory", c.memory, memory_bytes);
            cluster.max_pods = c.pods;
        }
        if let Some(d) = file.detection {
            let set = |ms: Option<Ms>, default: Duration| {
                ms.map_or(default, |Ms(ms)| Duration::from_millis(ms))
            };
            let base = Detection::default();
            cluster.detection = Detection {
                probe_period: set(d.probe_period, base.probe_period),
                probe_rtt: set(d.probe_rtt, base.probe_rtt),
                suspect_to_down: set(d.suspect_to_down, base.suspect_to_down),
            };
            if cluster.detection.probe_rtt >= cluster.detection.probe_period {
                self.problem(
                    "cluster.detection.probeRtt",
                    "must be shorter than probePeriod (a probe's answer is awaited within a period)",
                );
            }
        }
        cluster
    }

    /// Manifests given as a list of YAML objects, read as one file of documents.
    fn manifests(&mut self, path: &str, documents: &[Value]) -> Manifests {
        if documents.is_empty() {
            return Manifests::default();
        }
        let mut text = String::new();
        for document in documents {
            text.push_str("---\n");
            text.push_str(&serde_yaml_ng::to_string(document).unwrap_or_default());
        }
        match parse_manifests(&text) {
            Ok(parsed) => Manifests {
                text,
                objects: parsed.objects,
            },
            Err(e) => {
                for located in e.errors {
                    let document = located
                        .document
                        .map_or(String::new(), |n| format!("[{}]", n - 1));
                    let field = match located.path.as_str() {
                        "" => String::new(),
                        p => format!(".{p}"),
                    };
                    self.problem(&format!("{path}{document}{field}"), located.message);
                }
                Manifests::default()
            }
        }
    }

    fn step(
        &mut self,
        path: &str,
        file: StepFile,
        nodes: usize,
        deployments: &BTreeSet<String>,
    ) -> Option<Step> {
        let mut actions: Vec<(&str, Action)> = Vec::new();
        let mut put = |name: &'static str, action: Option<Action>| {
            if let Some(a) = action {
                actions.push((name, a));
            }
        };
        let applied = file
            .apply
            .as_ref()
            .map(|docs| self.manifests(&format!("{path}.apply"), docs));
        put("apply", applied.map(Action::Apply));
        put(
            "scale",
            file.scale.map(|s| Action::Scale {
                deployment: s.deployment,
                replicas: s.replicas,
            }),
        );
        put(
            "update",
            file.update.map(|u| Action::Update {
                deployment: u.deployment,
                image: u.image,
                env: u.env,
            }),
        );
        put(
            "delete",
            file.delete.map(|d| Action::Delete {
                deployment: d.deployment,
            }),
        );
        put("killNode", file.kill_node.map(Action::KillNode));
        put("restartNode", file.restart_node.map(Action::RestartNode));
        put("pauseNode", file.pause_node.map(Action::PauseNode));
        put("resumeNode", file.resume_node.map(Action::ResumeNode));
        put(
            "killContainer",
            file.kill_container.map(|k| Action::KillContainer {
                deployment: k.deployment,
                pod: k.pod,
            }),
        );
        put("partition", file.partition.map(Action::Partition));
        put(
            "cut",
            file.cut.map(|c| Action::Cut {
                from: c.from,
                to: c.to,
            }),
        );
        put(
            "link",
            file.link.map(|l| Action::Link {
                between: l.between,
                loss: l.loss.map_or(0.0, |Share(s)| s),
                delay_ms: l.delay.map_or(0, |Ms(ms)| ms),
            }),
        );
        put("heal", file.heal.map(|_| Action::Heal));
        put("disconnect", file.disconnect.map(Action::Disconnect));
        put("connect", file.connect.map(Action::Connect));
        put(
            "addNode",
            file.add_node.map(|a| Action::AddNode { labels: a.labels }),
        );
        put(
            "rebootOffline",
            file.reboot_offline.map(Action::RebootOffline),
        );
        put(
            "client",
            file.client.map(|c| {
                Action::Client(ClientSpec {
                    service: c.service,
                    port: c.port,
                    via: c.via.unwrap_or(0),
                    interval_ms: c.interval.map_or(CLIENT_INTERVAL_MS, |Ms(ms)| ms),
                })
            }),
        );
        let (name, action) = match actions.len() {
            1 => actions.pop()?,
            0 => {
                self.problem(
                    path,
                    "say what happens: one action (killNode, apply, partition, ...)",
                );
                return None;
            }
            _ => {
                let names: Vec<&str> = actions.iter().map(|(n, _)| *n).collect();
                self.problem(
                    path,
                    format!("one action per step, not {}", names.join(" and ")),
                );
                return None;
            }
        };
        let step = Step {
            path: path.to_string(),
            at_ms: file.at.0,
            on: file.on.unwrap_or(0),
            action,
            for_ms: file.for_.map(|Ms(ms)| ms),
            every_ms: file.every.map(|Ms(ms)| ms),
            until_ms: file.until.map(|Ms(ms)| ms),
        };
        self.step_fits(&step, name, nodes, deployments);
        Some(step)
    }

    fn step_fits(&mut self, step: &Step, name: &str, nodes: usize, deployments: &BTreeSet<String>) {
        let path = &step.path;
        let at = format!("{path}.{name}");
        for i in step.action.nodes() {
            if i >= nodes {
                self.problem(
                    &at,
                    format!(
                        "no node {i} then: the nodes are 0 to {}",
                        nodes.saturating_sub(1)
                    ),
                );
            }
        }
        if step.on >= nodes {
            self.problem(
                &format!("{path}.on"),
                format!("no node {}: the nodes are 0 to {}", step.on, nodes - 1),
            );
        }
        if step.every_ms.is_some() != step.until_ms.is_some() {
            self.problem(
                path,
                "`every` and `until` go together (repeat every E until U)",
            );
        }
        if let (Some(every), Some(until)) = (step.every_ms, step.until_ms) {
            if every == 0 || until < step.at_ms {
                self.problem(
                    &format!("{path}.every"),
                    "give a positive `every` and an `until` after `at`",
                );
            }
            if let Some(f) = step.for_ms.filter(|&f| f >= every) {
                self.problem(
                    &format!("{path}.for"),
                    format!("{} is not shorter than `every`", seconds(f)),
                );
            }
        }
        if step.for_ms.is_some()
            && step.action.undo().is_none()
            && !matches!(step.action, Action::Client(_))
        {
            self.problem(
                &format!("{path}.for"),
                format!("{name} cannot be undone; drop `for`"),
            );
        }
        if step.on != 0 && !step.action.is_write() {
            self.problem(
                &format!("{path}.on"),
                "only a write (apply, scale, update, delete) is sent to a node",
            );
        }
        let unknown = |d: &str| !deployments.contains(d);
        match &step.action {
            Action::Scale { deployment, .. }
            | Action::Delete { deployment }
            | Action::Update { deployment, .. }
                if unknown(deployment) =>
            {
                self.problem(
                    &format!("{at}.deployment"),
                    format!("no deployment {deployment:?} is applied before this step"),
                );
            }
            Action::KillContainer {
                deployment: Some(d),
                ..
            } if unknown(d) => {
                self.problem(
                    &format!("{at}.deployment"),
                    format!("no deployment {d:?} is applied before this step"),
                );
            }
            Action::KillContainer {
                deployment: Some(_),
                pod: Some(_),
            } => {
                self.problem(&at, "name a pod or a deployment, not both");
            }
            Action::Update {
                image: None, env, ..
            } if env.is_empty() => {
                self.problem(
                    &at,
                    "give an image, env, or both: what changes in the template",
                );
            }
            Action::Partition(groups) => {
                let mut seen = BTreeSet::new();
                if groups.len() < 2 {
                    self.problem(&at, "give at least two groups of nodes");
                }
                for i in groups.iter().flatten() {
                    if !seen.insert(i) {
                        self.problem(&at, format!("node {i} is in two groups"));
                    }
                }
            }
            Action::Cut { from, to } if from == to => {
                self.problem(&at, "a link joins two different nodes")
            }
            Action::Link {
                between,
                loss,
                delay_ms,
            } => {
                if between[0] == between[1] {
                    self.problem(&format!("{at}.between"), "a link joins two different nodes");
                }
                if *loss == 0.0 && *delay_ms == 0 {
                    self.problem(&at, "give a loss, a delay, or both");
                }
            }
            Action::Client(c) if c.interval_ms == 0 => {
                self.problem(&format!("{at}.interval"), "give a positive interval")
            }
            _ => {}
        }
    }

    fn expectation(
        &mut self,
        path: &str,
        file: ExpectFile,
        last_ms: u64,
        deployments: &BTreeSet<String>,
    ) -> Option<Expect> {
        let mut found = Vec::new();
        if let Some(r) = file.running {
            if let Some(d) = r.deployment.as_ref().filter(|d| !deployments.contains(*d)) {
                self.problem(
                    &format!("{path}.running.deployment"),
                    format!("no deployment {d:?} in the scenario"),
                );
            }
            found.push(Expect::Running {
                deployment: r.deployment,
                replicas: r.replicas,
                within_ms: r.within.0,
                after_ms: r.after.map_or(last_ms, |Ms(ms)| ms),
            });
        }
        match file.no_lost_writes {
            Some(true) => found.push(Expect::NoLostWrites),
            Some(false) => self.problem(
                &format!("{path}.noLostWrites"),
                "say `true`, or leave it out",
            ),
            None => {}
        }
        if let Some(d) = file.duplicates {
            if d.at_most.is_none() && d.for_at_most.is_none() {
                self.problem(
                    &format!("{path}.duplicates"),
                    "give atMost, forAtMost, or both",
                );
            }
            found.push(Expect::Duplicates {
                at_most: d.at_most,
                for_at_most_ms: d.for_at_most.map(|Ms(ms)| ms),
            });
        }
        if let Some(c) = file.client {
            found.push(Expect::Client {
                success_at_least: c.success_at_least.0,
            });
        }
        if let Some(f) = file.figure {
            if !FIGURES.contains(&f.name.as_str()) {
                self.problem(
                    &format!("{path}.figure.name"),
                    format!("{:?} is not a figure: {}", f.name, FIGURES.join(", ")),
                );
            }
            let at_most = match f.at_most {
                FigureBound::Number(n) => n,
                FigureBound::Duration(Ms(ms)) => ms as f64 / 1000.0,
            };
            found.push(Expect::Figure {
                name: f.name,
                at_most,
            });
        }
        match found.len() {
            1 => found.pop(),
            0 => {
                self.problem(
                    path,
                    "say what is expected: running, noLostWrites, duplicates, client or figure",
                );
                None
            }
            _ => {
                self.problem(path, "one expectation per entry");
                None
            }
        }
    }
}

fn deployment_names(objects: &[Object]) -> BTreeSet<String> {
    objects
        .iter()
        .filter_map(|o| match o {
            Object::Deployment(d) => Some(d.meta.name.clone()),
            _ => None,
        })
        .collect()
}
