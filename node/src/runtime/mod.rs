//! The container runtime as the reconciler sees it: a small trait, implemented by Docker
//! (through bollard) and by an in-memory fake for unit tests and the simulator.
//!
//! The runtime knows nothing of placement or pods: it creates, lists, removes and watches
//! containers carrying Weeble's labels, and pulls, saves, loads and names images. Every container it makes is labelled
//! `weeble.node=<node>`, and `list`/`watch` only ever see the given node's containers.

pub mod credentials;
pub mod demo;
pub mod docker;
pub mod memory;

use std::future::Future;
use tokio::sync::mpsc;
pub use weeble_core::runtime::*;

/// What to read of a container's output (Kubernetes' `pods/log` parameters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Only the last lines; all of them if `None`.
    pub tail: Option<usize>,
    /// Go on with what the container writes next, until it stops or the reader goes.
    pub follow: bool,
    /// Only what was written since this time (Unix seconds).
    pub since_s: Option<i64>,
    /// Each line starts with its RFC 3339 time.
    pub timestamps: bool,
}

/// A container's output, chunk by chunk.
pub type LogStream = futures::stream::BoxStream<'static, Result<bytes::Bytes, RuntimeError>>;

/// An image as a tar (what `docker save` writes and `docker load` reads), chunk by chunk.
pub type ImageStream = futures::stream::BoxStream<'static, Result<bytes::Bytes, RuntimeError>>;

/// The whole of a log stream that ends (one that does not follow), as text.
pub async fn log_text(stream: LogStream) -> Result<String, RuntimeError> {
    use futures::TryStreamExt;
    let bytes: Vec<u8> = stream
        .try_fold(Vec::new(), |mut all, chunk| {
            all.extend_from_slice(&chunk);
            futures::future::ready(Ok(all))
        })
        .await?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The operations the reconciler needs. Implementations must be cheap to clone (a handle).
pub trait ContainerRuntime: Clone + Send + Sync + 'static {
    /// Every container labelled `weeble.node=<node>`, running or not.
    fn list(&self, node: &str) -> impl Future<Output = Result<Vec<Observed>, RuntimeError>> + Send;

    /// Creates and starts a container; returns its id. Fails with `ImageMissing` at once if
    /// the image is not present (it never pulls: [`ContainerRuntime::pull`] does).
    fn create_and_start(
        &self,
        spec: &ContainerSpec,
    ) -> impl Future<Output = Result<String, RuntimeError>> + Send;

    /// Pulls `image` from its registry, telling it `credentials` if given; done once the
    /// engine has the image. A pull that stops making progress fails.
    fn pull(
        &self,
        image: &str,
        credentials: Option<credentials::Credentials>,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// The id of the image `reference` names (a name, or an id), if the engine has it.
    fn image_id(
        &self,
        reference: &str,
    ) -> impl Future<Output = Result<Option<String>, RuntimeError>> + Send;

    /// Image `id` as a tar with no names in it, as `docker save` writes one.
    fn save(&self, id: &str) -> ImageStream;

    /// Loads an image tar such as [`ContainerRuntime::save`] writes (check it first: the
    /// engine takes the names a tar carries). Its layers are checked against its config by
    /// the engine.
    fn load(&self, tar: ImageStream) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Names image `id` `reference` (a name with a tag), taking the name from any image
    /// that had it.
    fn tag(
        &self,
        id: &str,
        reference: &str,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

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

    /// A container's output (stdout and stderr), as `options` asks: all of it or its last
    /// lines, from a time on, with timestamps, and on as it is written if it follows.
    fn logs(&self, id: &str, options: &LogOptions) -> LogStream;

    /// Events for the node's containers, as they happen, until the receiver is dropped.
    fn watch(&self, node: &str) -> mpsc::Receiver<RuntimeEvent>;
}
