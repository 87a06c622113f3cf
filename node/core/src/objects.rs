//! The Kubernetes objects Weeble serves, as typed read models: the API builds them from the
//! node's data (desired state, placement, gossiped status, membership) and serializes them;
//! the CLI reads the API's answers back into the same types.
//!
//! Shapes follow Kubernetes' where Weeble has the field, plus a few `weeble.io/` annotations.
//! A field is left out only where Weeble's answers always left it out (a pending pod has no
//! `hostIP`); other empty fields are written, as `null` or `[]`.

use crate::membership::{Liveness, MemberId, MemberList};
use crate::placement::Unplaced;
use crate::rollout::{self, Report};
use crate::services::PortEndpoints;
use crate::status::{self, Phase};
use crate::time;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use weeble_crdt::echo::clip_to;
use weeble_crdt::{
    self as crdt, Admission, Admissions, ContainerPort, EnvVar, IntOrPercent, Kind, Labels,
    ObjectKey, Outcome, Parsed, Protocol, ROLLBACK_ON_FAILURE, RestartPolicy, Strategy, TargetPort,
};

/// On a pod: the deployment it is a replica of, `namespace/name`.
pub const ANNOTATION_DEPLOYMENT: &str = "weeble.io/deployment";
/// On a reported pod: the template hash its containers were made from.
pub const ANNOTATION_TEMPLATE_HASH: &str = "weeble.io/template-hash";
/// On a node: the address of its API.
pub const ANNOTATION_API: &str = "weeble.io/api";
/// On a node: its libp2p peer id.
pub const ANNOTATION_PEER_ID: &str = "weeble.io/peer-id";
/// On a node: `Alive`, `Suspect` or `Down`, as SWIM sees it.
pub const ANNOTATION_LIVENESS: &str = "weeble.io/liveness";

/// A kind of object the API serves, with the `kind` and `apiVersion` it is written with.
pub trait Resource: Serialize + DeserializeOwned {
    const KIND: &'static str;
    const API_VERSION: &'static str;
}

/// A kind of object with metadata: one that is listed, versioned and watched.
pub trait Object: Resource {
    fn metadata(&self) -> &ObjectMeta;
    fn metadata_mut(&mut self) -> &mut ObjectMeta;
}

/// `resource!(Pod, "v1")`: the type is served as kind `Pod` under `apiVersion` v1, and is
/// an [`Object`] with its `metadata`; `resource!(Status, "v1", no metadata)`: only the first.
macro_rules! resource {
    ($type:ident, $api_version:literal, no metadata) => {
        impl $crate::objects::Resource for $type {
            const KIND: &'static str = stringify!($type);
            const API_VERSION: &'static str = $api_version;
        }
    };
    ($type:ident, $api_version:literal) => {
        resource!($type, $api_version, no metadata);

        impl $crate::objects::Object for $type {
            fn metadata(&self) -> &$crate::objects::ObjectMeta {
                &self.metadata
            }

            fn metadata_mut(&mut self) -> &mut $crate::objects::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

/// Object metadata. Each kind fills the fields Weeble has for it; the others are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// The same at every node; a new one when the object is made again ([`crdt::uid_of`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// RFC 3339; absent where Weeble does not know it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    /// This node's version of the object ([`watch`]): changes whenever what it serves of
    /// the object changes; set by the API as it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
}

impl ObjectMeta {
    /// The metadata of a stored object: name, namespace, labels, generation, uid, creation.
    fn stored(meta: &crdt::Meta) -> Self {
        ObjectMeta {
            name: meta.name.clone(),
            namespace: Some(meta.namespace.clone()),
            labels: Some(meta.labels.clone()),
            // Written even when empty, as Kubernetes' controllers leave some on every object:
            // `rollout undo` replaces them with a JSON patch, which needs them there.
            annotations: Some(meta.annotations.clone()),
            generation: Some(meta.generation),
            uid: (!meta.uid.is_empty()).then(|| meta.uid.clone()),
            creation_timestamp: known_time(meta.created_ms),
            resource_version: None,
        }
    }

    /// Annotations from `(key, value)` pairs.
    fn annotation_map(pairs: &[(&str, String)]) -> Option<BTreeMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    /// One annotation, if it is there.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

/// The uid of pod `name` of deployment `d` on `node` whose first container is `container`:
/// a replica placed on another node, or whose containers were made again (a new template, a
/// pod deleted), is another pod, as Kubernetes makes a new one; a container restarted in place
/// keeps its pod. A pod gets its uid with its first container (until then it has none).
pub fn pod_uid(d: &crdt::Meta, name: &str, node: &str, container: &str) -> String {
    crdt::uid_of(&format!("{}/{name}/{node}/{container}", d.uid))
}

/// A time (Unix ms) in RFC 3339, if it is known (not 0).
fn known_time(ms: i64) -> Option<String> {
    (ms > 0).then(|| time::rfc3339(ms))
}

/// `True`, `False` or `Unknown`: a condition's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl From<bool> for ConditionStatus {
    fn from(holds: bool) -> Self {
        if holds {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

/// A condition of a pod or a node (Weeble writes only `Ready`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The condition type Weeble writes.
const READY: &str = "Ready";

impl Condition {
    fn ready(status: ConditionStatus, reason: Option<&str>, message: Option<&str>) -> Self {
        Condition {
            type_: READY.into(),
            status,
            reason: reason.map(String::from),
            message: message.map(String::from),
        }
    }
}

/// The status of the `Ready` condition among `conditions`; Unknown if there is none.
fn readiness(conditions: &[Condition]) -> ConditionStatus {
    conditions
        .iter()
        .find(|c| c.type_ == READY)
        .map_or(ConditionStatus::Unknown, |c| c.status)
}

/// A port by number or by name (Kubernetes' IntOrString).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(u16),
    String(String),
}

impl From<&TargetPort> for IntOrString {
    fn from(port: &TargetPort) -> Self {
        match port {
            TargetPort::Number(n) => IntOrString::Int(*n),
            TargetPort::Name(name) => IntOrString::String(name.clone()),
        }
    }
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrString::Int(n) => write!(f, "{n}"),
            IntOrString::String(name) => f.write_str(name),
        }
    }
}

/// A container of a pod or a pod template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<EnvVar>,
    pub ports: Vec<ContainerPort>,
    pub liveness_probe: Option<Probe>,
    pub readiness_probe: Option<Probe>,
    /// As Kubernetes shows it: the manifest's, or the default it got.
    pub image_pull_policy: crdt::PullPolicy,
}

impl From<&crdt::Container> for Container {
    fn from(c: &crdt::Container) -> Self {
        Container {
            name: c.name.clone(),
            image: c.image.clone(),
            command: c.command.clone(),
            args: c.args.clone(),
            env: c.env.clone(),
            ports: c.ports.clone(),
            liveness_probe: c.liveness_probe.as_ref().map(Probe::from),
            readiness_probe: c.readiness_probe.as_ref().map(Probe::from),
            image_pull_policy: c.pull_policy(),
        }
    }
}

/// The containers of a deployment's template.
fn containers(d: &crdt::Deployment) -> Vec<Container> {
    containers_of(&d.spec.template)
}

/// The containers of a template.
fn containers_of(template: &crdt::PodTemplate) -> Vec<Container> {
    template.containers.iter().map(Container::from).collect()
}

/// A health check: its timing, and exactly one of `httpGet`, `tcpSocket` and `exec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    pub initial_delay_seconds: u32,
    pub period_seconds: u32,
    pub timeout_seconds: u32,
    pub success_threshold: u32,
    pub failure_threshold: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpGetAction {
    pub path: String,
    pub port: IntOrString,
    pub scheme: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpSocketAction {
    pub port: IntOrString,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecAction {
    pub command: Vec<String>,
}

impl From<&crdt::Probe> for Probe {
    fn from(p: &crdt::Probe) -> Self {
        let mut probe = Probe {
            initial_delay_seconds: p.initial_delay_seconds,
            period_seconds: p.period_seconds,
            timeout_seconds: p.timeout_seconds,
            success_threshold: p.success_threshold,
            failure_threshold: p.failure_threshold,
            http_get: None,
            tcp_socket: None,
            exec: None,
        };
        match &p.action {
            crdt::ProbeAction::HttpGet { path, port } => {
                probe.http_get = Some(HttpGetAction {
                    path: path.clone(),
                    port: port.into(),
                    scheme: "HTTP".into(),
                });
            }
            crdt::ProbeAction::TcpSocket { port } => {
                probe.tcp_socket = Some(TcpSocketAction { port: port.into() });
            }
            crdt::ProbeAction::Exec { command } => {
                probe.exec = Some(ExecAction {
                    command: command.clone(),
                });
            }
        }
        probe
    }
}

/// A pod: a replica of a deployment, as placement and its node's report say it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: PodSpec,
    pub status: PodStatus,
}

resource!(Pod, "v1");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// The node placement gives the pod to; null while it has none.
    pub node_name: Option<String>,
    pub containers: Vec<Container>,
    pub restart_policy: RestartPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    pub phase: Phase,
    /// Why the pod is not running (`ContainerCreating`, `Unschedulable`, `CrashLoopBackOff`).
    pub reason: Option<String>,
    pub message: Option<String>,
    /// The node's address, where `ports` are published; not known until the node reports.
    #[serde(rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
    /// Where the pod is reached: its node's address, on which its ports are published
    /// (Weeble's pods have no address of their own on a cluster network).
    #[serde(rename = "podIP", skip_serializing_if = "Option::is_none")]
    pub pod_ip: Option<IpAddr>,
    /// When the containers last started (RFC 3339, as Kubernetes writes times); absent if
    /// they are not running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    pub conditions: Vec<Condition>,
    /// One per container the node runs for the pod; absent until the node reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_statuses: Option<Vec<ContainerStatus>>,
    pub restart_count: u32,
    pub ports: Vec<PodPort>,
}

impl PodStatus {
    /// Whether the pod's `Ready` condition is True.
    pub fn ready(&self) -> bool {
        readiness(&self.conditions) == ConditionStatus::True
    }
}

/// A container of a reported pod, as Kubernetes' clients read it (the Python client needs
/// every field but `containerID` and `state`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    pub name: String,
    pub image: String,
    /// Weeble does not report image digests: empty, as for a container not yet made.
    #[serde(rename = "imageID")]
    pub image_id: String,
    /// `docker://<id>`; absent while the container is not made.
    #[serde(rename = "containerID", skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    pub ready: bool,
    pub started: bool,
    pub restart_count: u32,
    pub state: ContainerState,
}

/// Exactly one of `running` (since when) and `waiting` (why).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<ContainerStateRunning>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<ContainerStateWaiting>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStateRunning {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStateWaiting {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ContainerStatus {
    /// The statuses of `p`'s containers, named from the template it was made from (`d`'s
    /// current one or an old revision's). A node reports the ids of the containers it has
    /// made, in the template's order: where it has made them all, each gets its id and the
    /// pod's state; else every container is shown waiting, for the pod's reason.
    fn of(d: &crdt::Deployment, p: &status::PodStatus) -> Vec<Self> {
        let template = match d.history.by_hash(&p.template_hash) {
            Some(old) => &old.template,
            None => &d.spec.template,
        };
        let all_made = p.container_ids.len() == template.containers.len();
        let running = all_made && p.phase == Phase::Running;
        template
            .containers
            .iter()
            .enumerate()
            .map(|(i, c)| ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone(),
                image_id: String::new(),
                container_id: all_made.then(|| format!("docker://{}", p.container_ids[i])),
                ready: p.ready,
                started: running,
                restart_count: p.restarts,
                state: match running {
                    true => ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: known_time(p.started_at_ms),
                        }),
                        waiting: None,
                    },
                    false => ContainerState {
                        running: None,
                        waiting: Some(ContainerStateWaiting {
                            reason: p.reason.clone(),
                            message: p.message.clone(),
                        }),
                    },
                },
            })
            .collect()
    }
}

/// A container port published on the pod's node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodPort {
    pub container_port: u16,
    pub protocol: Protocol,
    pub host_port: u16,
    #[serde(rename = "hostIP")]
    pub host_ip: IpAddr,
}

/// Kubernetes' name of a phase (the same text its serde form has).
impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        })
    }
}

impl Pod {
    /// Replica `name` of `d`: its owner's report if there is one; else Pending, waiting for
    /// the owner (`owner` is a node name) or for a node to place it on (`owner` says why
    /// there is none).
    pub fn desired(
        d: &crdt::Deployment,
        name: &str,
        owner: Result<&str, Unplaced>,
        reported: Option<&status::PodStatus>,
    ) -> Self {
        match (reported, owner) {
            (Some(p), _) => Pod::reported(d, p),
            (None, Ok(node)) => Pod::pending(
                d,
                name,
                Some(node),
                status::CONTAINER_CREATING,
                "waiting for the node to report",
            ),
            (None, Err(why)) => {
                let message = match why {
                    Unplaced::NoEligibleNode => "no live node matches the nodeSelector",
                    Unplaced::InsufficientCapacity => {
                        "no live node has room for the pod's requests"
                    }
                    Unplaced::TooManyPods => {
                        "every live node that fits the pod already runs its --max-pods pods"
                    }
                };
                Pod::pending(d, name, None, "Unschedulable", message)
            }
        }
    }

    /// A pod as its node reports it.
    fn reported(d: &crdt::Deployment, p: &status::PodStatus) -> Self {
        let annotations = [
            (ANNOTATION_DEPLOYMENT, d.meta.key().to_string()),
            (ANNOTATION_TEMPLATE_HASH, p.template_hash.clone()),
        ];
        let status = PodStatus {
            phase: p.phase,
            reason: p.reason.clone(),
            message: p.message.clone(),
            host_ip: Some(p.host_ip),
            pod_ip: Some(p.host_ip),
            start_time: (p.started_at_ms > 0).then(|| time::rfc3339(p.started_at_ms)),
            conditions: vec![Condition::ready(p.ready.into(), None, None)],
            container_statuses: Some(ContainerStatus::of(d, p)),
            restart_count: p.restarts,
            ports: p
                .ports
                .iter()
                .map(|port| PodPort {
                    container_port: port.container_port,
                    protocol: port.protocol,
                    host_port: port.host_port,
                    host_ip: p.host_ip,
                })
                .collect(),
        };
        let created_ms = match p.started_at_ms {
            0 => d.meta.created_ms,
            started => started,
        };
        let meta = (p.name.as_str(), &*p.labels, &annotations[..], created_ms);
        let container = p.container_ids.first().map(String::as_str);
        Pod::of(d, meta, (Some(&p.node), container), status)
    }

    /// A pod no node reports yet, on `node` if placement gave it one.
    fn pending(
        d: &crdt::Deployment,
        name: &str,
        node: Option<&str>,
        reason: &str,
        message: &str,
    ) -> Self {
        let status = PodStatus {
            phase: Phase::Pending,
            reason: Some(reason.into()),
            message: Some(message.into()),
            host_ip: None,
            pod_ip: None,
            start_time: None,
            conditions: vec![Condition::ready(ConditionStatus::False, None, None)],
            container_statuses: None,
            restart_count: 0,
            ports: vec![],
        };
        let annotations = [(ANNOTATION_DEPLOYMENT, d.meta.key().to_string())];
        let meta = (
            name,
            &d.spec.template.labels,
            &annotations[..],
            d.meta.created_ms,
        );
        Pod::of(d, meta, (node, None), status)
    }

    /// Pod `name` of `d` with `labels`, `annotations` and a creation time, on `node` with
    /// its first container `container` ([`pod_uid`]).
    fn of(
        d: &crdt::Deployment,
        (name, labels, annotations, created_ms): (&str, &Labels, &[(&str, String)], i64),
        (node, container): (Option<&str>, Option<&str>),
        status: PodStatus,
    ) -> Self {
        Pod {
            api_version: Self::API_VERSION.into(),
            kind: Self::KIND.into(),
            metadata: ObjectMeta {
                name: name.into(),
                namespace: Some(d.meta.namespace.clone()),
                labels: Some(labels.clone()),
                annotations: ObjectMeta::annotation_map(annotations),
                uid: node
                    .zip(container)
                    .map(|(node, container)| pod_uid(&d.meta, name, node, container)),
                creation_timestamp: known_time(created_ms),
                ..ObjectMeta::default()
            },
            spec: PodSpec {
                node_name: node.map(String::from),
                containers: containers(d),
                restart_policy: d.spec.template.restart_policy,
            },
            status,
        }
    }
}

/// A deployment as read: its desired spec, and how many replicas are placed and ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: DeploymentSpec,
    pub status: DeploymentStatus,
}

resource!(Deployment, "apps/v1");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSpec {
    pub replicas: u32,
    pub selector: LabelSelector,
    pub strategy: DeploymentStrategy,
    pub template: PodTemplateSpec,
    pub min_ready_seconds: u32,
    pub progress_deadline_seconds: u32,
    pub revision_history_limit: u32,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

/// A deployment's strategy as Kubernetes writes it: `{type: RollingUpdate, rollingUpdate:
/// {maxSurge: 25%, maxUnavailable: 1}}` or `{type: Recreate}` (what `kubectl get -o yaml` shows,
/// and what applies again as it is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStrategy {
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdateDeployment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollingUpdateDeployment {
    pub max_surge: serde_json::Value,
    pub max_unavailable: serde_json::Value,
}

impl From<&Strategy> for DeploymentStrategy {
    fn from(strategy: &Strategy) -> Self {
        let int_or_string = |v: IntOrPercent| match v {
            IntOrPercent::Count(n) => serde_json::Value::from(n),
            IntOrPercent::Percent(p) => serde_json::Value::from(format!("{p}%")),
        };
        match strategy {
            Strategy::RollingUpdate {
                max_surge,
                max_unavailable,
            } => DeploymentStrategy {
                type_: "RollingUpdate".into(),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: int_or_string(*max_surge),
                    max_unavailable: int_or_string(*max_unavailable),
                }),
            },
            Strategy::Recreate => DeploymentStrategy {
                type_: "Recreate".into(),
                rolling_update: None,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    pub match_labels: Labels,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodTemplateSpec {
    pub metadata: TemplateMeta,
    pub spec: TemplatePodSpec,
}

impl From<&crdt::PodTemplate> for PodTemplateSpec {
    fn from(template: &crdt::PodTemplate) -> Self {
        PodTemplateSpec {
            metadata: TemplateMeta {
                labels: template.labels.clone(),
                annotations: template.annotations.clone(),
            },
            spec: TemplatePodSpec {
                containers: containers_of(template),
                node_selector: template.node_selector.clone(),
                restart_policy: template.restart_policy,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateMeta {
    pub labels: Labels,
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub annotations: Labels,
}

/// A template's pod spec: no node yet, and the nodes it may go to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplatePodSpec {
    pub containers: Vec<Container>,
    pub node_selector: Labels,
    pub restart_policy: RestartPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStatus {
    pub observed_generation: u64,
    /// The replicas (each a pod, running or not, as Kubernetes counts pod objects) and the
    /// pods past them (surge, or left from a larger count).
    pub replicas: u32,
    /// Replicas running ready on the node placement gives them to.
    pub ready_replicas: usize,
    /// Pods ready for `minReadySeconds`, of any template.
    pub available_replicas: u32,
    /// Pods of the current template, surge included.
    pub updated_replicas: u32,
    /// The desired replicas not available.
    pub unavailable_replicas: u32,
    pub conditions: Vec<DeploymentCondition>,
}

/// Kubernetes' deployment conditions: `Available` and `Progressing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentCondition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    pub message: String,
}

/// The reasons of the `Progressing` condition that end a rollout: `rollout status` stops
/// waiting on them (the first is Kubernetes', the second Weeble's own revert).
pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
pub const ROLLED_BACK: &str = "RolledBack";

impl DeploymentCondition {
    fn new(type_: &str, status: &str, reason: &str, message: String) -> Self {
        DeploymentCondition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
        }
    }

    /// `d`'s conditions, from its rollout as this node sees it (`report`).
    fn of(d: &crdt::Deployment, report: &Report) -> Vec<Self> {
        let (replicas, progress) = (d.spec.replicas, &report.progress);
        let (_, max_unavailable) = rollout::bounds(&d.spec.strategy, replicas);
        let available = match progress.available + max_unavailable >= replicas {
            true => Self::new(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
            ),
            false => Self::new(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
            ),
        };
        let revision = d.history.revision;
        let progressing = match (&report.stalled, &d.history.reverted) {
            _ if d.spec.is_paused() => Self::new(
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused".into(),
            ),
            (Some(why), _) => Self::new(
                "Progressing",
                "False",
                PROGRESS_DEADLINE_EXCEEDED,
                why.clone(),
            ),
            (None, Some(r)) => Self::new(
                "Progressing",
                "False",
                ROLLED_BACK,
                format!(
                    "revision {} failed ({}); the cluster went back to revision {}'s template \
                     as revision {revision} ({ROLLBACK_ON_FAILURE})",
                    r.from, r.reason, r.to
                ),
            ),
            (None, None) if progress.complete(replicas) => Self::new(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                format!("revision {revision} has successfully progressed."),
            ),
            (None, None) => Self::new(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                format!("revision {revision} is progressing."),
            ),
        };
        vec![available, progressing]
    }
}

impl Deployment {
    /// `d` as this node sees its rollout (`report`), `ready` of its replicas running ready.
    pub fn new(d: &crdt::Deployment, report: &Report, ready: usize) -> Self {
        Deployment {
            api_version: Self::API_VERSION.into(),
            kind: Self::KIND.into(),
            metadata: {
                let mut meta = ObjectMeta::stored(&d.meta);
                let revision = d.history.revision.to_string();
                let annotations = meta.annotations.get_or_insert_default();
                annotations.insert(crdt::REVISION.into(), revision);
                meta
            },
            spec: DeploymentSpec {
                replicas: d.spec.replicas,
                selector: LabelSelector {
                    match_labels: d.spec.selector.clone(),
                },
                strategy: DeploymentStrategy::from(&d.spec.strategy),
                template: PodTemplateSpec::from(&d.spec.template),
                min_ready_seconds: d.spec.min_ready_seconds,
                progress_deadline_seconds: d.spec.progress_deadline_seconds,
                revision_history_limit: d.spec.revision_history_limit,
                paused: d.spec.is_paused(),
            },
            status: DeploymentStatus {
                observed_generation: d.meta.generation,
                replicas: d.spec.replicas + report.progress.beyond,
                ready_replicas: ready,
                available_replicas: report.progress.available,
                updated_replicas: report.progress.updated + report.progress.surge,
                unavailable_replicas: d.spec.replicas.saturating_sub(report.progress.available),
                conditions: DeploymentCondition::of(d, report),
            },
        }
    }
}

/// One revision of a deployment, as `rollout history` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    pub revision: u64,
    /// Whether the deployment runs it now.
    pub current: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_cause: Option<String>,
    /// Its containers' images, in order.
    pub images: Vec<String>,
    pub template_hash: String,
}

impl Revision {
    /// `d`'s revisions, oldest first, the current one last.
    pub fn history(d: &crdt::Deployment) -> Vec<Self> {
        let of = |revision, template: &crdt::PodTemplate, change_cause: Option<&String>| Revision {
            revision,
            current: false,
            change_cause: change_cause.cloned(),
            images: template
                .containers
                .iter()
                .map(|c| c.image.clone())
                .collect(),
            template_hash: template.hash(),
        };
        let old = d.history.old.iter();
        let mut all: Vec<Revision> = old
            .map(|r| of(r.revision, &r.template, r.change_cause.as_ref()))
            .collect();
        let cause = d.meta.annotations.get(crdt::CHANGE_CAUSE);
        all.push(Revision {
            current: true,
            ..of(d.history.revision, &d.spec.template, cause)
        });
        all
    }
}

/// A deployment's scale subresource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Scale {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: ScaleSpec,
    pub status: ScaleStatus,
}

resource!(Scale, "autoscaling/v1");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleSpec {
    pub replicas: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleStatus {
    /// The replicas running ready.
    pub replicas: usize,
}

impl Scale {
    /// The scale of deployment `key`: `replicas` wanted, `ready` running ready.
    pub fn new(key: &ObjectKey, replicas: u32, ready: usize) -> Self {
        Scale {
            api_version: Self::API_VERSION.into(),
            kind: Self::KIND.into(),
            metadata: ObjectMeta {
                name: key.name.clone(),
                namespace: Some(key.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: ScaleSpec { replicas },
            status: ScaleStatus { replicas: ready },
        }
    }
}

/// The body of a `PUT .../scale`: the replicas wanted, read from `{"spec": {"replicas": N}}`
/// and checked against [`weeble_crdt::validate::MAX_REPLICAS`]; the error says what was
/// expected.
pub fn scale_replicas(body: &str) -> Result<u32, String> {
    #[derive(Deserialize)]
    struct Body {
        spec: Spec,
    }
    #[derive(Deserialize)]
    struct Spec {
        replicas: i64,
    }
    let body: Body = serde_json::from_str(body).map_err(|e| {
        format!(
            "expected {{\"spec\": {{\"replicas\": N}}}}: {}",
            clip_to(&e.to_string(), 200)
        )
    })?;
    let max = i64::from(u32::try_from(weeble_crdt::validate::MAX_REPLICAS).unwrap_or(u32::MAX));
    u32::try_from(body.spec.replicas)
        .ok()
        .filter(|&n| i64::from(n) <= max)
        .ok_or_else(|| {
            format!(
                "spec.replicas: must be between 0 and {max}, got {}",
                body.spec.replicas
            )
        })
}

/// The body of a `rollout/undo`: the revision to go back to, from `{"toRevision": N}`, or
/// `None` (nothing, or 0) for the last old one.
pub fn undo_revision(body: &str) -> Result<Option<u64>, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Body {
        to_revision: Option<u64>,
    }
    match body.trim() {
        "" => Ok(None),
        text => serde_json::from_str::<Body>(text)
            .map(|b| b.to_revision.filter(|&n| n > 0))
            .map_err(|e| {
                format!(
                    "expected {{\"toRevision\": N}} or nothing: {}",
                    clip_to(&e.to_string(), 200)
                )
            }),
    }
}

/// A service as a node serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: ServiceSpec,
}

resource!(Service, "v1");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Always `ClusterIP`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The serving node's own service address.
    #[serde(rename = "clusterIP")]
    pub cluster_ip: IpAddr,
    pub selector: Labels,
    pub ports: Vec<ServicePort>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
    pub target_port: IntOrString,
}

impl Service {
    /// `s` as the node with service address `ip` serves it: its `clusterIP` is `ip` (every
    /// node serves every service on its own address).
    pub fn new(s: &crdt::Service, ip: IpAddr) -> Self {
        Service {
            api_version: Self::API_VERSION.into(),
            kind: Self::KIND.into(),
            metadata: ObjectMeta::stored(&s.meta),
            spec: ServiceSpec {
                type_: "ClusterIP".into(),
                cluster_ip: ip,
                selector: s.spec.selector.clone(),
                ports: s
                    .spec
                    .ports
                    .iter()
                    .map(|p| ServicePort {
                        name: p.name.clone(),
                        port: p.port,
                        protocol: p.protocol,
                        target_port: (&p.target_port).into(),
                    })
                    .collect(),
            },
        }
    }
}

/// Where a service's ports forward to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub subsets: Vec<EndpointSubset>,
}

resource!(Endpoints, "v1");

/// Ready addresses (`addresses`) or pods that are not ready (`notReadyAddresses`), and the
/// port they go with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSubset {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<EndpointAddress>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_ready_addresses: Option<Vec<EndpointAddress>>,
    pub ports: Vec<EndpointPort>,
}

/// A pod and its node's address (for a ready one, where its port is published).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointAddress {
    pub ip: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    pub target_ref: ObjectReference,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectReference {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointPort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
}

impl Endpoints {
    /// The endpoints of service `key` (`service`: its metadata, for their uid and creation).
    /// Each ready pod publishes the target port on a port of its own node, so each ready
    /// address gets a subset of its own; a port's pods that are not ready share one, with the
    /// service port.
    pub fn new(key: &ObjectKey, ports: &[PortEndpoints], service: Option<&crdt::Meta>) -> Self {
        let pod = |name: &str| ObjectReference {
            kind: Pod::KIND.into(),
            namespace: key.namespace.clone(),
            name: name.into(),
        };
        let subsets = ports
            .iter()
            .flat_map(|p| {
                let port = move |number| EndpointPort {
                    name: p.name.clone(),
                    port: number,
                    protocol: p.protocol,
                };
                let ready = p.ready.iter().map(move |e| EndpointSubset {
                    addresses: Some(vec![EndpointAddress {
                        ip: e.addr.ip(),
                        node_name: Some(e.node.clone()),
                        target_ref: pod(&e.pod),
                    }]),
                    not_ready_addresses: None,
                    ports: vec![port(e.addr.port())],
                });
                let waiting = (!p.not_ready.is_empty()).then(|| EndpointSubset {
                    addresses: None,
                    not_ready_addresses: Some(
                        p.not_ready
                            .iter()
                            .map(|n| EndpointAddress {
                                ip: n.ip,
                                node_name: Some(n.node.clone()),
                                target_ref: pod(&n.pod),
                            })
                            .collect(),
                    ),
                    ports: vec![port(p.port)],
                });
                ready.chain(waiting)
            })
            .collect();
        Endpoints {
            api_version: Self::API_VERSION.into(),
            kind: Self::KIND.into(),
            metadata: ObjectMeta {
                name: key.name.clone(),
                namespace: Some(key.namespace.clone()),
                uid: Some(crdt::uid_of(&format!(
                    "endpoints/{key}/{}",
                    service.map_or("", |s| s.uid.as_str())
                ))),
                creation_timestamp: service.and_then(|s| known_time(s.created_ms)),
                ..ObjectMeta::default()
            },
            subsets,
        }
    }
}

/// A member of the cluster as a Kubernetes node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: NodeSpec,
    pub status: NodeStatus,
}

resource!(Node, "v1");

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// The node is leaving: it takes no pods (kubectl shows `SchedulingDisabled`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unschedulable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub conditions: Vec<Condition>,
    pub addresses: Vec<NodeAddress>,
    pub capacity: Capacity,
    pub allocatable: Capacity,
}

impl NodeStatus {
    /// The status of the node's `Ready` condition: Unknown while it is suspected.
    pub fn readiness(&self) -> ConditionStatus {
        readiness(&self.conditions)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddress {
    /// Always `InternalIP`: the node's peer-to-peer address.
    #[serde(rename = "type")]
    pub type_: String,
    pub address: IpAddr,
}

/// What a node offers, as Kubernetes quantities (`500m` CPU, memory in bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    pub cpu: String,
    pub memory: String,
    pub pods: String,
}

/// SWIM's word for a member's liveness, as the `weeble.io/liveness` annotation writes it
/// (the same text as its serde form).
impl fmt::Display for Liveness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Liveness::Alive => "Alive",
            Liveness::Suspect => "Suspect",
            Liveness::Down => "Down",
        })
    }
}

impl Node {
    /// Member `m` with its liveness and the status it gossips (`report`, if heard): Ready
    /// unless it is suspected, down, or reports that it cannot persist the desired state;
    /// unschedulable while it is leaving.
    pub fn new(m: &MemberId, liveness: Liveness, report: Option<&status::NodeStatus>) -> Self {
        use ConditionStatus::{False, True, Unknown};
        let not_ready = report.and_then(|n| n.not_ready.as_deref());
        let ready = match (liveness, not_ready) {
            (Liveness::Alive, None) => Condition::ready(True, Some("KubeletReady"), None),
            (Liveness::Suspect, _) => Condition::ready(
                Unknown,
                Some("NodeStatusUnknown"),
                Some("the node is suspected: it has not answered lately"),
            ),
            (Liveness::Down, _) => {
                Condition::ready(False, Some("NodeDown"), Some("the node was declared dead"))
            }
            (Liveness::Alive, Some(why)) => {
                Condition::ready(False, Some("StateNotPersisted"), Some(why))
            }
        };
        let capacity = Capacity {
            cpu: format!("{}m", m.capacity.cpu_millis),
            memory: m.capacity.memory_bytes.to_string(),
            pods: m.max_pods.to_string(),
        };
        let annotations = [
            (ANNOTATION_API, m.api.to_string()),
            (ANNOTATION_PEER_ID, m.peer_id.clone()),
            (ANNOTATION_LIVENESS, liveness.to_string()),
        ];
        Node {
            api_version: Self::API_VERSION.into(),
            kind: Self::KIND.into(),
            metadata: ObjectMeta {
                name: m.name.clone(),
                labels: Some(m.labels.clone()),
                annotations: ObjectMeta::annotation_map(&annotations),
                // Its key's, and the start of its current life.
                uid: Some(crdt::uid_of(&format!("node/{}", m.peer_id))),
                creation_timestamp: known_time(i64::try_from(m.bump).unwrap_or(0)),
                ..ObjectMeta::default()
            },
            // A leaving node takes no pods: kubectl shows it `Ready,SchedulingDisabled`, as
            // cordoned.
            spec: NodeSpec {
                unschedulable: report.is_some_and(|n| n.leaving),
            },
            status: NodeStatus {
                conditions: vec![ready],
                addresses: vec![NodeAddress {
                    type_: "InternalIP".into(),
                    address: m.p2p.ip(),
                }],
                allocatable: capacity.clone(),
                capacity,
            },
        }
    }
}

/// A peer as the cluster admits it (`weeble get peers`, `GET /apis/weeble.io/v1/peers`):
/// named by its peer id; what the desired state says of it, and the member it is, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Peer {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: PeerSpec,
    pub status: PeerStatus,
}

resource!(Peer, "weeble.io/v1");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerSpec {
    /// `allowed`, `denied`, or absent: neither (admitted while no peer is allowed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admission: Option<Admission>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerStatus {
    /// Whether the cluster takes it in now.
    pub admitted: bool,
    /// The node it is, if it is a member: its name, p2p address and liveness.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness: Option<String>,
}

impl Peer {
    /// Every peer the members or the admission list name, by peer id (a member's newest
    /// identity where it has several).
    pub fn all(members: &MemberList, peers: &Admissions) -> Vec<Peer> {
        let mut by_id: BTreeMap<&str, Option<&(MemberId, Liveness)>> = BTreeMap::new();
        for (peer, _) in peers.iter() {
            by_id.insert(peer, None);
        }
        for entry in members.iter().filter(|(m, _)| !m.peer_id.is_empty()) {
            let held = by_id.entry(entry.0.peer_id.as_str()).or_default();
            if held.is_none_or(|(m, _)| m.bump < entry.0.bump) {
                *held = Some(entry);
            }
        }
        let peer = |(id, member): (&str, Option<&(MemberId, Liveness)>)| Peer {
            api_version: Self::API_VERSION.into(),
            kind: Self::KIND.into(),
            metadata: ObjectMeta {
                name: id.to_string(),
                ..ObjectMeta::default()
            },
            spec: PeerSpec {
                admission: peers.get(id),
            },
            status: PeerStatus {
                admitted: peers.admits(id),
                node: member.map(|(m, _)| m.name.clone()),
                address: member.map(|(m, _)| m.p2p.to_string()),
                liveness: member.map(|(_, l)| l.to_string()),
            },
        };
        by_id.into_iter().map(peer).collect()
    }
}

/// An image that nodes hold, as their reports say (`weeble get images`, `GET
/// /apis/weeble.io/v1/images`): named by the engine's id (its hex, without `sha256:`), with
/// the names it goes by and the nodes that hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub status: ImageStatus,
}

resource!(Image, "weeble.io/v1");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageStatus {
    /// The names the nodes' containers give it (`nginx:1.27`, `registry:5000/web@sha256:…`).
    pub names: Vec<String>,
    /// The nodes that hold it, by name.
    pub nodes: Vec<String>,
}

impl Image {
    /// Every image the reports in `table` list, by id.
    pub fn all(table: &status::StatusTable) -> Vec<Image> {
        let mut by_id: BTreeMap<&str, (BTreeSet<&str>, BTreeSet<&str>)> = BTreeMap::new();
        for report in table.nodes() {
            for held in &report.images {
                let (names, nodes) = by_id.entry(&held.id).or_default();
                names.insert(&held.image);
                nodes.insert(&report.node);
            }
        }
        let image = |(id, (names, nodes)): (&str, (BTreeSet<&str>, BTreeSet<&str>))| Image {
            api_version: Self::API_VERSION.into(),
            kind: Self::KIND.into(),
            metadata: ObjectMeta {
                name: id.trim_start_matches("sha256:").to_string(),
                ..ObjectMeta::default()
            },
            status: ImageStatus {
                names: names.into_iter().map(str::to_string).collect(),
                nodes: nodes.into_iter().map(str::to_string).collect(),
            },
        };
        by_id.into_iter().map(image).collect()
    }
}

/// A namespace: one an operator made, or one that objects name (or `default`), which
/// Weeble serves as made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Namespace {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub status: NamespaceStatus,
}

resource!(Namespace, "v1");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceStatus {
    /// Always `Active`: a deleted namespace is gone at once, with what was in it.
    pub phase: String,
}

impl Namespace {
    /// Namespace `name`, as an operator made it (`made`) or as objects name it.
    pub fn new(name: &str, made: Option<&crdt::Namespace>) -> Self {
        let metadata = match made {
            Some(n) => ObjectMeta {
                namespace: None,
                ..ObjectMeta::stored(&n.meta)
            },
            None => ObjectMeta {
                name: name.into(),
                uid: Some(crdt::uid_of(&format!("namespace/{name}"))),
                ..ObjectMeta::default()
            },
        };
        Namespace {
            api_version: Self::API_VERSION.into(),
            kind: Self::KIND.into(),
            metadata,
            status: NamespaceStatus {
                phase: "Active".into(),
            },
        }
    }
}

/// A list of objects of one kind (`<Kind>List`), and where the next page starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct List<T> {
    pub api_version: String,
    pub kind: String,
    pub metadata: ListMeta,
    pub items: Vec<T>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListMeta {
    /// The token to pass back (`?continue=`) for the next page; absent on the last page.
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_: Option<String>,
    /// The node's [`journal`] number when the list was read: where a watch that follows
    /// the list starts.
    #[serde(
        rename = "resourceVersion",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub resource_version: Option<String>,
}

/// Kubernetes' `Status`: the answer to a delete, and every error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub api_version: String,
    pub kind: String,
    pub status: StatusOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Kubernetes' reason for the HTTP code (`NotFound`, `Invalid`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    pub details: StatusDetails,
}

resource!(Status, "v1", no metadata);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StatusOutcome {
    Success,
    Failure,
}

/// What a delete removed, or an error's causes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The kind's plural, lower case (`deployments`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub causes: Option<Vec<StatusCause>>,
}

/// One problem behind an error, at a field path (a manifest's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCause {
    pub field: String,
    pub message: String,
}

impl Status {
    /// An error with HTTP `code`, the Kubernetes reason that goes with it, and `causes`.
    pub fn failure(code: u16, message: String, causes: Vec<StatusCause>) -> Self {
        let reason = match code {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            405 => "MethodNotAllowed",
            409 => "Conflict",
            410 => "Expired",
            413 => "RequestEntityTooLarge",
            415 => "UnsupportedMediaType",
            422 => "Invalid",
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            500 => "InternalError",
            _ => "Unknown",
        };
        Status {
            api_version: Self::API_VERSION.into(),
            kind: Self::KIND.into(),
            status: StatusOutcome::Failure,
            message: Some(message),
            reason: Some(reason.into()),
            code: Some(code),
            details: StatusDetails {
                causes: Some(causes),
                ..StatusDetails::default()
            },
        }
    }

    /// The answer to a delete of the `kind` object `name`.
    pub fn deleted(kind: Kind, name: &str) -> Self {
        Status {
            api_version: Self::API_VERSION.into(),
            kind: Self::KIND.into(),
            status: StatusOutcome::Success,
            message: None,
            reason: None,
            code: None,
            details: StatusDetails {
                name: Some(name.into()),
                kind: Some(format!("{}s", kind.to_string().to_lowercase())),
                causes: None,
            },
        }
    }
}

/// The answer to an apply: what became of each object, and the manifest's warnings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub items: Vec<AppliedObject>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedObject {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub outcome: Outcome,
}

impl Applied {
    /// The objects of `parsed` with the outcome of applying each (in the same order).
    pub fn new(parsed: &Parsed, outcomes: Vec<Outcome>) -> Self {
        Applied {
            items: parsed
                .objects
                .iter()
                .zip(outcomes)
                .map(|(o, outcome)| AppliedObject {
                    kind: o.kind(),
                    namespace: o.meta().namespace.clone(),
                    name: o.meta().name.clone(),
                    outcome,
                })
                .collect(),
            warnings: parsed.warnings.iter().map(ToString::to_string).collect(),
        }
    }
}

pub mod discovery;
pub mod event;
pub mod journal;
pub mod openapi;
pub mod patch;
pub mod replicaset;
pub mod select;
pub mod table;

#[cfg(test)]
mod tests;
