//! The container runtime as the reconciler sees it: a small trait, implemented by Docker
//! (through bollard) and by an in-memory fake for unit tests and the simulator.
//!
//! The runtime knows nothing of placement or pods: it creates, lists, removes and watches
//! containers carrying Weeble's labels. Every container it makes is labelled
//! `weeble.node=<node>`, and `list`/`watch` only ever see the given node's containers.

pub mod demo;
pub mod docker;
pub mod memory;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use tokio::sync::mpsc;
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
    pub labels: BTreeMap<String, String>,
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
    pub labels: BTreeMap<String, String>,
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
    #[error("container {0} not found")]
    NotFound(String),
    #[error("container runtime failed: {0}")]
    Failed(String),
}

/// The operations the reconciler needs. Implementations must be cheap to clone (a handle).
pub trait ContainerRuntime: Clone + Send + Sync + 'static {
    /// Every container labelled `weeble.node=<node>`, running or not.
    fn list(&self, node: &str) -> impl Future<Output = Result<Vec<Observed>, RuntimeError>> + Send;

    /// Creates and starts a container; returns its id. Fails with `ImageMissing` at once if
    /// the image is not present (it never pulls).
    fn create_and_start(
        &self,
        spec: &ContainerSpec,
    ) -> impl Future<Output = Result<String, RuntimeError>> + Send;

    /// Starts an existing (exited) container again, keeping its id. Its ports are published
    /// again, possibly on new host ports (Docker picks new ones): `list` again to find them.
    fn start(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Stops and removes a container (force). Removing a missing container is not an error.
    fn remove(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Kills running container `id` at once (a failed liveness probe); it then exits like
    /// any other, and its restart policy decides what follows.
    fn terminate(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Runs `command` inside running container `id` and returns its exit code.
    fn exec(
        &self,
        id: &str,
        command: &[String],
    ) -> impl Future<Output = Result<i64, RuntimeError>> + Send;

    /// The last `tail` lines of a container's output (stdout and stderr).
    fn logs(
        &self,
        id: &str,
        tail: usize,
    ) -> impl Future<Output = Result<String, RuntimeError>> + Send;

    /// Events for the node's containers, as they happen, until the receiver is dropped.
    fn watch(&self, node: &str) -> mpsc::Receiver<RuntimeEvent>;
}
