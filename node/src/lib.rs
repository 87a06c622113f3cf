//! The Weeble agent: the actors that run one node's decisions (`weeble-core`) against the
//! world. Layout:
//!
//! - [`agent`]: starts a node and wires its actors: the membership loop, the router (a
//!   differing digest starts an exchange), the sync driver, the reconciler; `Agent::leave`.
//! - [`network`]: the libp2p swarm (request-response: membership datagrams with digests,
//!   status messages, automerge sync), bounded connections.
//! - [`store`]: the desired-state document on disk (`store::journal`: checksummed frames).
//! - [`status`]: the status table, spread by pushes and digest/delta exchanges.
//! - [`view`]: placement and endpoints kept as watches; [`clock`]: the wall clock.
//! - [`runtime`]: the container runtime trait, Docker (bollard), the in-memory twin, the demo
//!   image.
//! - [`probe`]: runs health checks; [`proxy`]: every service's ports on this node; [`dns`]:
//!   service names.
//! - [`api`]: the HTTP API (its accept loop, guards, paged lists).
//!
//! The pure cores (`membership`, `placement`, `reconcile`, `services`) are `weeble-core`'s,
//! re-exported here under the same names.

pub mod agent;
pub mod api;
pub mod clock;
pub mod dns;
pub mod driver;
pub mod network;
pub mod probe;
pub mod proxy;
pub mod runtime;
pub mod shutdown;
pub mod status;
pub mod store;
pub mod transport;
pub mod view;

pub use weeble_core::{membership, placement, reconcile, services};
