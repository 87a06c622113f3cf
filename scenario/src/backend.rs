//! What the runner needs of a cluster, whatever runs it: the simulator ([`crate::sim`]),
//! real `weeble node` processes, or nodes in containers. A backend starts the nodes, lets time
//! pass (virtual or real), carries out the timeline's actions, runs the steady clients, and
//! says what it sees: which nodes are up, which pods run where, what each node holds.

use crate::spec::{Action, ClientSpec, Cluster};
use std::collections::{BTreeMap, BTreeSet};

/// A node as the runner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum NodeState {
    /// Not added yet.
    Absent,
    Up,
    Down,
    Paused,
    /// Running, off the network.
    Offline,
}

/// One running container's pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningPod {
    /// `namespace/name`.
    pub pod: String,
    pub deployment: String,
    pub node: usize,
}

/// What a backend sees at one moment.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    pub nodes: Vec<NodeState>,
    /// Every running workload container's pod, on nodes that are up.
    pub running: Vec<RunningPod>,
    /// Replicas desired by deployment name, as the first node that is up holds them.
    pub desired: BTreeMap<String, u32>,
    /// For each node that is up, the nodes it holds alive (not declared dead).
    pub alive_seen: Vec<Option<BTreeSet<usize>>>,
    /// Whether every node that is up holds the same desired state and status.
    pub agreed: bool,
}

/// What one node holds of one deployment or service at the end (a service: nothing beyond
/// being there, [`Held::default`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    pub replicas: Option<u32>,
    /// The first container's image, for a deployment.
    pub image: Option<String>,
    pub env: BTreeMap<String, String>,
    /// Why the cluster reverted the deployment's last template change, if it did (its own
    /// write, which supersedes the change).
    pub reverted: Option<String>,
}

/// What one node holds: `Deployment/name` or `Service/name` → what it holds of it.
pub type Holdings = BTreeMap<String, Held>;

/// A steady client's count so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClientCount {
    pub requests: u64,
    pub answered: u64,
}

/// Why a backend could not go on.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

pub trait Backend {
    /// Its name on the command line (`sim`, `process`, `docker`).
    fn name(&self) -> &'static str;

    /// Why it cannot carry out `action`, if it cannot.
    fn cannot(&self, action: &Action) -> Option<String>;

    /// Starts the cluster's first `cluster.nodes` nodes (room for `total` in all) and returns
    /// once they all see each other.
    fn start(&mut self, cluster: &Cluster, total: usize) -> Result<(), BackendError>;

    /// Milliseconds since the backend started (virtual in the simulator).
    fn now_ms(&self) -> u64;

    /// Lets time pass until `until_ms`, the clients asking as they go.
    fn advance(&mut self, until_ms: u64);

    /// Carries out `action` (a write is sent to node `on`, under the id `write`). An error
    /// says why it could not be done (a write refused is not an error: see `acknowledged`).
    fn act(&mut self, action: &Action, on: usize, write: u64) -> Result<(), String>;

    /// Whether write `id` was acknowledged: `None` while its answer is awaited.
    fn acknowledged(&self, id: u64) -> Option<bool>;

    /// Client `id` starts asking as `client` says, from now until [`Backend::stop_client`].
    fn start_client(&mut self, id: usize, client: &ClientSpec);

    fn stop_client(&mut self, id: usize);

    fn client_count(&self, id: usize) -> ClientCount;

    fn observe(&mut self) -> Observation;

    /// What node `i` holds, if it is up and answers.
    fn holdings(&mut self, i: usize) -> Option<Holdings>;

    /// A fingerprint of the run, where the backend has one (the simulator's trace).
    fn trace(&self) -> Option<u64> {
        None
    }
}
