//! The Weeble agent: the actors of a node (network, membership, state store, status gossip,
//! reconciler, API) and the pure cores they run (membership, placement, reconcile).

pub mod agent;
pub mod api;
pub mod clock;
pub mod dns;
pub mod network;
pub mod probe;
pub mod proxy;
pub mod runtime;
pub mod status;
pub mod store;
pub mod view;

pub use weeble_core::{membership, placement, reconcile, services};
