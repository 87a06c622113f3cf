//! The Weeble agent: placement today; membership, state sync, reconcile and the API build on it.

pub mod placement;
pub mod runtime;
