//! One Weeble node's decisions, with no I/O: everything here takes time, randomness and
//! messages as inputs and returns what to do. The node's driver (`weeble-node`) owns the
//! sockets, the disk, the clock and the container engine, and feeds these cores.
//!
//! - [`node`]: `NodeCore`, one node as a state machine: `step(now, input) -> effects`, a
//!   router over the sub-cores below.
//! - [`membership`]: who is in the cluster and alive (SWIM, the `foca` crate).
//! - [`placement`]: which member runs each replica (weighted rendezvous hashing); [`view`]:
//!   the members, the desired state and their placement, memoized.
//! - [`reconcile`]: this node's share against its containers → container actions, pod status;
//!   `reconcile::pass`, the reconcile loop as a state machine.
//! - [`status`]: every node's reported pods, newest report per node, and how a node spreads
//!   them (`StatusGossip`).
//! - [`document`]: the desired state (automerge), its file and the syncs with peers, persisted
//!   before anything that shows a change leaves the node.
//! - [`doc_sync`]: which document syncs run with whom, and when a write is held by enough peers.
//! - [`gossip`]: digests, who begins an exchange, how many peers a change goes to.
//! - [`services`]: each service's endpoints, and the variables containers see.
//! - [`probe`]: when each liveness and readiness check is due, and what the results mean.
//! - [`dns`]: which service a DNS name means.
//! - [`images`]: which peers a node may fetch an image it lacks from, in what order.
//! - [`runtime`]: containers as the core sees them (specs, observations, events).
//! - [`objects`]: the Kubernetes objects the API writes and the CLI reads (pods, nodes, lists...).

pub mod dns;
pub mod doc_sync;
pub mod document;
#[cfg(test)]
mod due;
pub mod gossip;
mod hash;
pub mod images;
pub mod keys;
pub mod membership;
mod memo;
pub mod node;
pub mod objects;
pub mod placement;
pub mod probe;
pub mod reconcile;
pub mod rollout;
pub mod runtime;
pub mod services;
pub mod status;
pub mod time;
pub mod view;
pub mod wire;
