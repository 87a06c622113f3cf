//! The validated desired state: deployments and services as Weeble stores and acts on them.
//!
//! These types are what manifests become after validation (see `manifest`), what the
//! automerge document holds (as JSON per field), and what the agent reconciles. Every value
//! here has already been checked: names are DNS-1123, ports are in range, quantities parsed.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Labels and selectors: ordered, so that every node iterates them alike.
pub type Labels = BTreeMap<String, String>;

/// The namespace Kubernetes uses when a manifest names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Identifies an object of one kind: `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Parses `namespace/name`, or a bare `name` in the default namespace.
    pub fn parse(text: &str) -> Self {
        match text.split_once('/') {
            Some((namespace, name)) => ObjectKey::new(namespace, name),
            None => ObjectKey::new(DEFAULT_NAMESPACE, text),
        }
    }
}

/// `namespace/name`, or the name alone for an object of no namespace.
impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.namespace.as_str() {
            "" => f.write_str(&self.name),
            ns => write!(f, "{ns}/{}", self.name),
        }
    }
}

/// The kinds of object Weeble stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    Deployment,
    Service,
    Namespace,
}

impl Kind {
    /// The kinds whose objects live in a namespace (and go with it).
    pub const NAMESPACED: [Kind; 2] = [Kind::Deployment, Kind::Service];

    /// kubectl's name of the kind, before an object's name: `deployment.apps/web`.
    pub fn kubectl_name(self) -> &'static str {
        match self {
            Kind::Deployment => "deployment.apps",
            Kind::Service => "service",
            Kind::Namespace => "namespace",
        }
    }

    /// The API path of object `key` of this kind (a namespace's own namespace is empty).
    pub fn path(self, key: &ObjectKey) -> String {
        let (ns, name) = (&key.namespace, &key.name);
        match self {
            Kind::Deployment => format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}"),
            Kind::Service => format!("/api/v1/namespaces/{ns}/services/{name}"),
            Kind::Namespace => format!("/api/v1/namespaces/{name}"),
        }
    }

    /// The Kubernetes `apiVersion` this kind is served under.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Deployment => "apps/v1",
            Kind::Service | Kind::Namespace => "v1",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Deployment => "Deployment",
            Kind::Service => "Service",
            Kind::Namespace => "Namespace",
        })
    }
}

/// Object metadata. `generation` counts spec changes; 0 means not stored yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    /// Kept as written; Weeble reads [`ROLLBACK_ON_FAILURE`] and [`CHANGE_CAUSE`].
    pub annotations: Labels,
    pub generation: u64,
    /// The object's identity, the same at every node: a UUID made from the document's id of
    /// its map, so an object deleted and created again is a new object. Empty until stored.
    pub uid: String,
    /// When it was created, by the clock of the node that created it (Unix ms); 0 until
    /// stored, and for objects stored before Weeble kept it.
    pub created_ms: i64,
}

/// A deployment annotation: `"true"` reverts a rollout that cannot progress to the last
/// revision that completed, by itself (Kubernetes only reports `ProgressDeadlineExceeded`).
pub const ROLLBACK_ON_FAILURE: &str = "weeble.io/rollback-on-failure";

/// The annotation that numbers a deployment's revision: the cluster's to write (as
/// Kubernetes' controller writes it), dropped from the manifests it comes back in.
pub const REVISION: &str = "deployment.kubernetes.io/revision";

/// A deployment annotation kept with each revision: `rollout history`'s CHANGE-CAUSE.
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

/// The pod template annotation `rollout restart` sets (as kubectl does): a new template,
/// so a new rollout of the same containers.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

impl Meta {
    pub fn key(&self) -> ObjectKey {
        ObjectKey::new(&self.namespace, &self.name)
    }
}

/// A desired object of any supported kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Object {
    Deployment(Deployment),
    Service(Service),
    Namespace(Namespace),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Deployment(_) => Kind::Deployment,
            Object::Service(_) => Kind::Service,
            Object::Namespace(_) => Kind::Namespace,
        }
    }

    pub fn meta(&self) -> &Meta {
        match self {
            Object::Deployment(d) => &d.meta,
            Object::Service(s) => &s.meta,
            Object::Namespace(n) => &n.meta,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub meta: Meta,
    pub spec: DeploymentSpec,
    /// The revisions the document keeps: empty in a manifest.
    pub history: History,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentSpec {
    pub replicas: u32,
    /// `matchLabels`; always a subset of the template's labels.
    pub selector: Labels,
    pub template: PodTemplate,
    pub strategy: Strategy,
    /// A new pod counts as available once it has been ready this long.
    pub min_ready_seconds: u32,
    /// A rollout that made no progress this long has failed (`ProgressDeadlineExceeded`).
    pub progress_deadline_seconds: u32,
    /// How many old revisions the document keeps for `rollout undo`.
    pub revision_history_limit: u32,
    /// A paused deployment starts no rollout step (`rollout pause`). `None` in a manifest
    /// that does not say: an apply leaves it as `rollout pause|resume` left it, as kubectl's
    /// apply leaves a field it never set; always `Some` as the document holds it.
    pub paused: Option<bool>,
}

impl DeploymentSpec {
    pub fn is_paused(&self) -> bool {
        self.paused == Some(true)
    }
}

/// Kubernetes' defaults for the rollout fields.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: u32 = 600;
pub const DEFAULT_REVISION_HISTORY_LIMIT: u32 = 10;

/// A deployment's revisions: the current template's number, and the old templates kept (a
/// Kubernetes Deployment keeps them as old ReplicaSets), oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub revision: u64,
    pub old: Vec<Revision>,
    /// When the current template was written (Unix ms, the writer's clock; 0 if before
    /// this was kept): where a rollout's progress deadline counts from.
    pub changed_ms: i64,
    /// The cluster reverted a rollout that could not progress, by itself
    /// ([`ROLLBACK_ON_FAILURE`]); cleared by the next template change.
    pub reverted: Option<Reverted>,
}

/// A rollout the cluster reverted by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reverted {
    /// The revision that failed, now an old one.
    pub from: u64,
    /// The revision the template went back to (its number before the revert).
    pub to: u64,
    /// Why, as the nodes saw it (`ProgressDeadlineExceeded: ...`).
    pub reason: String,
}

/// An old template, under the number it had when it was current.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    pub revision: u64,
    pub template: PodTemplate,
    /// The deployment's `kubernetes.io/change-cause` when this template was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_cause: Option<String>,
}

impl History {
    /// The old revision whose template has this hash.
    pub fn by_hash(&self, hash: &str) -> Option<&Revision> {
        self.old.iter().find(|r| r.template.hash() == hash)
    }

    pub fn by_number(&self, revision: u64) -> Option<&Revision> {
        self.old.iter().find(|r| r.revision == revision)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplate {
    pub labels: Labels,
    /// Left out of the JSON when empty, so that templates written before it keep their hash
    /// (and their containers).
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub annotations: Labels,
    pub containers: Vec<Container>,
    pub node_selector: Labels,
    pub restart_policy: RestartPolicy,
}

impl PodTemplate {
    /// A short, stable hash of the template (FNV-1a of its JSON): containers made from
    /// another template are replaced, and a rollout tells revisions apart by it.
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(self).expect("templates serialize");
        let hash = json.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        format!("{hash:016x}")
    }

    /// The sum of the containers' requests: what placement reserves on a node per replica.
    pub fn requests(&self) -> ResourceAmounts {
        self.containers
            .iter()
            .fold(ResourceAmounts::default(), |sum, c| ResourceAmounts {
                cpu_millis: sum.cpu_millis + c.resources.requests.cpu_millis,
                memory_bytes: sum.memory_bytes + c.resources.requests.memory_bytes,
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<EnvVar>,
    pub ports: Vec<ContainerPort>,
    pub resources: Resources,
    pub working_dir: Option<String>,
    /// Failing it restarts the container. Absent from documents written before probes (and
    /// from a container without one, so its template hash is what it was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    /// Until it passes, the pod is not ready and gets no service traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    /// As the manifest gave it, unless it is the image's default ([`crate::image::policy`]):
    /// then absent, here and in the document (so a template hashes the same with or without
    /// it, and as it did before the field existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
}

impl Container {
    /// The policy its image is pulled by: the manifest's, or Kubernetes' default for the image.
    pub fn pull_policy(&self) -> PullPolicy {
        crate::image::policy(&self.image, self.image_pull_policy)
    }
}

/// A health check, as Kubernetes times it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    pub action: ProbeAction,
    pub initial_delay_seconds: u32,
    pub period_seconds: u32,
    pub timeout_seconds: u32,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

/// What a probe does. Ports are container ports: the probe reaches them where they are
/// published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProbeAction {
    /// An HTTP GET of `path`: any status from 200 to 399 passes.
    HttpGet { path: String, port: TargetPort },
    /// A TCP connection that opens passes.
    TcpSocket { port: TargetPort },
    /// The command run in the container exits 0 to pass.
    Exec { command: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    pub name: Option<String>,
    pub container_port: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Protocol {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        })
    }
}

/// Requests (what placement reserves) and limits (what the runtime enforces).
/// Zero means "not set".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub requests: ResourceAmounts,
    pub limits: ResourceAmounts,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceAmounts {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

/// When a node pulls a container's image (Kubernetes' `imagePullPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PullPolicy {
    /// Before every container is made, even if the image is present.
    Always,
    /// Only when the image is not present.
    IfNotPresent,
    /// Never: a missing image is the pod's `ErrImageNeverPull`.
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Strategy {
    RollingUpdate {
        max_surge: IntOrPercent,
        max_unavailable: IntOrPercent,
    },
    Recreate,
}

/// A count, or a percentage of the desired replicas (`maxSurge: 25%`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IntOrPercent {
    Count(u32),
    Percent(u32),
}

impl IntOrPercent {
    /// A zero count or percentage (whatever the replicas).
    pub fn is_zero(self) -> bool {
        matches!(self, IntOrPercent::Count(0) | IntOrPercent::Percent(0))
    }

    /// The count for `replicas`, a percentage rounded up (`maxSurge`) or down
    /// (`maxUnavailable`), as Kubernetes does.
    pub fn of(self, replicas: u32, round_up: bool) -> u32 {
        match self {
            IntOrPercent::Count(n) => n,
            IntOrPercent::Percent(p) => {
                let scaled = u64::from(replicas) * u64::from(p);
                let n = if round_up {
                    scaled.div_ceil(100)
                } else {
                    scaled / 100
                };
                n as u32
            }
        }
    }
}

/// A namespace an operator made (`kind: Namespace`): its name (in `meta.name`; its
/// `meta.namespace` is empty) and labels. Objects may name a namespace no one made, as
/// Weeble has always let them; deleting a namespace deletes what is in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    pub meta: Meta,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub meta: Meta,
    pub spec: ServiceSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub selector: Labels,
    pub ports: Vec<ServicePort>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: u16,
    pub target_port: TargetPort,
    pub protocol: Protocol,
}

/// Where a service port forwards to: a container port by number or by its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

impl fmt::Display for TargetPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetPort::Number(n) => write!(f, "{n}"),
            TargetPort::Name(name) => f.write_str(name),
        }
    }
}
