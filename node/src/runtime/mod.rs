//! The container runtime as the reconciler sees it: a small trait, implemented by Docker
//! (through bollard) and by an in-memory fake for unit tests and the simulator.
//!
//! The runtime knows nothing of placement or pods: it creates, lists, removes and watches
//! containers carrying Weeble's labels. Every container it makes is labelled
//! `weeble.node=<node>`, and `list`/`watch` only ever see the given node's containers.

pub mod demo;
pub mod docker;
pub mod memory;

use std::future::Future;
use tokio::sync::mpsc;
pub use weeble_core::runtime::*;

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
