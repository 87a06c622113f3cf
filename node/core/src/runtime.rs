//! Containers as the core sees them: what it asks a runtime to make ([`ContainerSpec`]), what
//! a runtime reports ([`Observed`], [`RuntimeEvent`]), and how a runtime call fails. The
//! runtimes themselves (Docker, the in-memory twin) live in the node, behind its trait.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use weeble_crdt::Protocol;

/// Label: the node that owns the container (the only containers a node ever touches).
pub const LABEL_NODE: &str = "weeble.node";
/// Label: the pod name, `<deployment>-<index>`.
pub const LABEL_POD: &str = "weeble.pod";
/// Label: the deployment, `namespace/name`.
pub const LABEL_DEPLOYMENT: &str = "weeble.deployment";
/// Label: a hash of the pod template the container was made from (to notice spec changes).
pub const LABEL_TEMPLATE_HASH: &str = "weeble.template-hash";
/// Label: the container's name within the pod template.
pub const LABEL_CONTAINER: &str = "weeble.container";

/// Everything needed to create one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// The runtime's container name, unique on the host:
    /// `weeble_<node>_<namespace>_<pod>_<container>`.
    pub name: String,
    /// The container's hostname: the pod name.
    pub hostname: String,
    pub image: String,
    /// Replaces the image's entrypoint when not empty (Kubernetes `command`).
    pub command: Vec<String>,
    /// Replaces the image's cmd when not empty (Kubernetes `args`).
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    /// Container ports to publish, each on a free host port of `publish_ip`.
    pub ports: Vec<(u16, Protocol)>,
    pub publish_ip: IpAddr,
    /// Must include `weeble.node`; the reconciler adds pod, deployment, template hash.
    /// Shared with the container the runtime then observes ([`Observed::created`]).
    pub labels: Arc<BTreeMap<String, String>>,
    /// 0 means no limit.
    pub cpu_limit_millis: u64,
    /// 0 means no limit.
    pub memory_limit_bytes: u64,
}

/// What a container is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    /// Made but never started (or being started).
    Created,
    Running,
    /// Stopped, with its exit code.
    Exited {
        code: i64,
    },
    /// Anything else the runtime reports (paused, restarting, removing, dead).
    Other,
}

/// A container port published on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishedPort {
    pub container_port: u16,
    pub protocol: Protocol,
    pub host_ip: IpAddr,
    pub host_port: u16,
}

/// One container as the runtime sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub id: String,
    pub name: String,
    pub image: String,
    /// The engine's id of that image (`sha256:…`); empty where the engine did not say.
    pub image_id: String,
    /// Shared by the copies of one observation (the runtime's and the reconciler's).
    pub labels: Arc<BTreeMap<String, String>>,
    pub state: ContainerState,
    pub ports: Vec<PublishedPort>,
    /// Its own address (on the engine's bridge), where this node's probes reach it; none
    /// while it is not running.
    pub ip: Option<IpAddr>,
    /// When the container last started, Unix milliseconds (0 if never).
    pub started_at_ms: i64,
    /// When it last exited, Unix milliseconds (0 if never).
    pub finished_at_ms: i64,
}

impl Observed {
    /// The container an engine reports once it created and started `spec` at `now_ms`.
    pub fn created(id: String, spec: &ContainerSpec, now_ms: i64) -> Self {
        Observed {
            id,
            name: spec.name.clone(),
            image: spec.image.clone(),
            image_id: String::new(),
            labels: spec.labels.clone(),
            state: ContainerState::Running,
            ports: Vec::new(),
            ip: None,
            started_at_ms: now_ms,
            finished_at_ms: 0,
        }
    }
}

/// A change the runtime noticed in one of the node's containers (start, die, destroy...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeEvent {
    pub container_id: String,
    /// The runtime's word for what happened: `start`, `die`, `destroy`, `oom`, ...
    pub action: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The image is not on this host and nothing can be pulled (like ErrImageNeverPull).
    #[error("image {0:?} is not present on this node and cannot be pulled")]
    ImageMissing(String),
    /// A pull of an image failed: what the engine or the registry said.
    #[error("{0}")]
    PullFailed(String),
    #[error("container {0} not found")]
    NotFound(String),
    #[error("container runtime failed: {0}")]
    Failed(String),
}
