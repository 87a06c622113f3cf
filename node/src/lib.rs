//! The Weeble agent: the driver that runs one node's state machine (`weeble-core`'s
//! `NodeCore`) against the world, its adapters and its tasks. Layout:
//!
//! - [`agent`]: starts a node (`start` on the real adapters, `start_on` on any `Adapters`) and
//!   its tasks; `Agent::leave`, `Agent::stop`.
//! - [`driver`]: feeds `NodeCore` its inputs and carries out its effects.
//! - [`transport`]: how a node reaches its peers (the trait, the wire messages, the in-memory
//!   switchboard twin); [`network`]: the libp2p transport, bounded connections.
//! - [`store`]: the state file: opened at start, written as the core's document asks
//!   (`store::disk`: the file, and its in-memory twin; the format is `weeble_core::document`'s).
//! - [`view`]: the endpoints as a watch.
//! - [`clock`]: the node's one clock; [`shutdown`]: stopping a node inside a process.
//! - [`runtime`]: the container runtime trait, Docker (bollard), the in-memory twin, the demo
//!   image.
//! - [`images`]: images passed between peers (the holder's tars, the fetcher's transfer, the
//!   check a tar passes before it is loaded).
//! - [`pods`]: a pod's logs and removal, done on its node for this node's API or a peer's.
//! - [`probe`]: runs health checks (real, and the in-memory twin); [`proxy`]: every service's
//!   ports on this node; [`dns`]: service names.
//! - [`api`]: the HTTP API (its accept loop, guards, paged lists).
//!
//! The pure cores (`membership`, `placement`, `reconcile`, `services`, `status`) are
//! `weeble-core`'s, re-exported here under the same names.

pub mod agent;
pub mod api;
pub mod clock;
pub mod dns;
pub mod driver;
pub mod images;
pub mod join;
pub mod network;
pub mod pods;
pub mod probe;
pub mod proxy;
pub mod rate;
pub mod runtime;
pub mod shutdown;
pub mod store;
pub mod transport;
pub mod view;

pub use weeble_core::{membership, placement, reconcile, services, status};
