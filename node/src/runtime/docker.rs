//! The container runtime on a Docker engine, through bollard. Creating a container never
//! pulls: a missing image is `ImageMissing`, and the reconciler decides whether to `pull`
//! (see `demo` for the one image Weeble builds itself).
//!
//! Two things about the engine that callers should know: an exited container reports no
//! published ports, and starting it again gives each port a new free host port (they are
//! published with an empty `HostPort`).

use super::credentials::Credentials;
use super::{
    ContainerRuntime, ContainerSpec, ContainerState, ImageStream, LABEL_NODE, LogOptions,
    LogStream, Observed, PublishedPort, RuntimeError, RuntimeEvent,
};
use bollard::auth::DockerCredentials;
use bollard::errors::Error as BollardError;
use bollard::exec::StartExecOptions;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummary,
    ContainerSummaryStateEnum, EventMessage, ExecConfig, HostConfig, PortBinding, PortMap,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder,
    ImportImageOptionsBuilder, InspectContainerOptions, KillContainerOptions,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptions, StartContainerOptions, TagImageOptionsBuilder,
};
use futures::{StreamExt, TryStreamExt};
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use weeble_crdt::Protocol;

/// How many events a watcher may leave unread before the watch task waits for it.
const WATCH_CAPACITY: usize = 64;
/// The first pause before following the event stream again after it failed.
const WATCH_RETRY_FIRST: Duration = Duration::from_millis(100);
/// The longest pause between attempts to follow the event stream.
const WATCH_RETRY_MAX: Duration = Duration::from_secs(5);
/// How often a running command (a probe's) is looked at until it has exited.
const EXEC_POLL: Duration = Duration::from_millis(20);
/// The longest any one engine call may take: a stalled engine fails the call (and the pass
/// tries again later) instead of holding the reconciler for bollard's two minutes.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest one container's inspection may take during a listing; past it, that
/// container is reported from the listing alone and the others are not held up.
const INSPECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a pull may go without a word of progress from the engine before it fails.
const PULL_STALL: Duration = Duration::from_secs(120);

/// The longest an image's load may take, from the first byte sent to the engine's answer.
const LOAD_TIMEOUT: Duration = Duration::from_secs(3600);

/// `call`, or `RequestTimeoutError` if the engine has not answered within `limit`.
async fn timed<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, BollardError>>,
) -> Result<T, BollardError> {
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or(Err(BollardError::RequestTimeoutError))
}

/// A handle on the local Docker engine; cheap to clone.
#[derive(Debug, Clone)]
pub struct Docker {
    client: bollard::Docker,
    /// What inspecting each container said while it was running: a running container's
    /// details do not change until it stops, so `list` needs one call, not one per container.
    running: Arc<Mutex<Known>>,
}

/// What `list` may reuse, and how many engine events arrived so far: a listing that saw an
/// event arrive while it ran keeps nothing, since what it inspected may already be stale.
#[derive(Debug, Default)]
struct Known {
    running: HashMap<String, Observed>,
    events: u64,
}

impl Docker {
    /// Connects to the local engine (`DOCKER_HOST`, or the default socket), checks that it
    /// answers, and settles on an API version both sides speak.
    pub async fn connect() -> Result<Self, RuntimeError> {
        Docker::connect_to(None).await
    }

    /// Connects to the engine at `host` (`unix:///PATH` or `tcp://HOST:PORT`; the local one if
    /// `None`), as [`Docker::connect`]: a node with an engine of its own (its own images).
    pub async fn connect_to(host: Option<&str>) -> Result<Self, RuntimeError> {
        let shown = host.unwrap_or("the local engine");
        let unreachable = |e: BollardError| {
            RuntimeError::Failed(format!(
                "cannot reach the Docker engine at {shown} (is it running, and may this user \
                 use its socket?): {e}"
            ))
        };
        let version = bollard::API_DEFAULT_VERSION;
        let client = match host {
            None => bollard::Docker::connect_with_local_defaults(),
            Some(h) if h.starts_with("unix://") => {
                bollard::Docker::connect_with_unix(h, CALL_TIMEOUT.as_secs(), version)
            }
            Some(h) if h.starts_with("tcp://") || h.starts_with("http://") => {
                bollard::Docker::connect_with_http(h, CALL_TIMEOUT.as_secs(), version)
            }
            Some(h) => {
                return Err(RuntimeError::Failed(format!(
                    "--docker-host {h:?}: give unix:///PATH or tcp://HOST:PORT"
                )));
            }
        }
        .map_err(unreachable)?;
        client.ping().await.map_err(unreachable)?;
        // bollard speaks a newer API than older engines accept (Docker 20.10 stops at 1.41).
        let client = client.negotiate_version().await.map_err(unreachable)?;
        Ok(Self {
            client,
            running: Arc::default(),
        })
    }

    fn known_running(&self, id: &str) -> Option<Observed> {
        let known = self.running.lock().expect("never poisoned");
        known
            .running
            .get(id)
            .filter(|o| o.state == ContainerState::Running)
            .cloned()
    }

    /// Keeps what was observed of the containers the listing showed running, and nothing else
    /// (nothing at all if an event came in since `events_before`).
    fn remember_running(
        &self,
        events_before: u64,
        listed_running: &[String],
        observed: &[Observed],
    ) {
        let mut known = self.running.lock().expect("never poisoned");
        known.running.clear();
        if known.events != events_before {
            return;
        }
        known.running.extend(
            observed
                .iter()
                .filter(|o| o.state == ContainerState::Running && listed_running.contains(&o.id))
                .map(|o| (o.id.clone(), o.clone())),
        );
    }

    /// Something happened to container `id`: the next `list` inspects it again.
    fn forget(&self, id: &str) {
        let mut known = self.running.lock().expect("never poisoned");
        known.running.remove(id);
        known.events += 1;
    }

    /// Imports a root filesystem tarball as image `reference` (`repo:tag`), applying
    /// Dockerfile instructions such as `CMD [...]` or `EXPOSE 80/tcp`, like `docker import
    /// --change`; returns the new image id. The image that had this reference before, if any
    /// and if no container uses it, is deleted so that rebuilds leave no dangling images.
    pub(crate) async fn import_rootfs(
        &self,
        tarball: Vec<u8>,
        reference: &str,
        changes: &[&str],
    ) -> Result<String, RuntimeError> {
        let previous = self.image_id(reference).await?;
        let options = CreateImageOptionsBuilder::new()
            .from_src("-")
            .repo(reference)
            .changes(changes.iter().map(|c| c.to_string()).collect())
            .build();
        self.client
            .create_image(
                Some(options),
                Some(bollard::body_full(tarball.into())),
                None,
            )
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| RuntimeError::Failed(format!("importing image {reference}: {e}")))?;
        let id = self.image_id(reference).await?.ok_or_else(|| {
            RuntimeError::Failed(format!(
                "importing image {reference}: the engine accepted it but has no such image"
            ))
        })?;
        if let Some(old) = previous.filter(|old| *old != id)
            && let Err(e) = self
                .client
                .remove_image(&old, None::<RemoveImageOptions>, None)
                .await
        {
            tracing::debug!(image = %old, error = %e, "keeping the previous {reference}");
        }
        Ok(id)
    }

    /// Creates container `spec.name` (stopped); returns its id. A name already taken is
    /// sorted out by [`Docker::claim_name`].
    async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        match self.create_once(spec).await {
            Ok(id) => Ok(id),
            Err(e) if status(&e) == Some(409) => self.claim_name(spec).await,
            Err(e) => Err(container_error(&spec.name, "creating")(e)),
        }
    }

    async fn create_once(&self, spec: &ContainerSpec) -> Result<String, BollardError> {
        let options = CreateContainerOptionsBuilder::new()
            .name(&spec.name)
            .build();
        timed(
            CALL_TIMEOUT,
            self.client
                .create_container(Some(options), create_body(spec)),
        )
        .await
        .map(|created| created.id)
    }

    /// The name of `spec` is taken, most likely by a create of the same container that timed
    /// out here but went through in the engine. That container is adopted if it is the same
    /// (labels say the same node, pod, container and template), replaced if it is another of
    /// this node's, and left alone otherwise.
    async fn claim_name(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        let holder = timed(
            CALL_TIMEOUT,
            self.client
                .inspect_container(&spec.name, None::<InspectContainerOptions>),
        )
        .await
        .map_err(container_error(
            &spec.name,
            "inspecting the holder of the name of",
        ))?;
        let id = holder.id.clone().unwrap_or_else(|| spec.name.clone());
        let labels = holder
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let same = spec.labels.iter().all(|(k, v)| labels.get(k) == Some(v));
        if same {
            tracing::info!(container = %spec.name, %id, "adopting the container a timed-out create made");
            return Ok(id);
        }
        if labels.get(LABEL_NODE) != spec.labels.get(LABEL_NODE) {
            return Err(RuntimeError::Failed(format!(
                "creating container {}: the name is taken by container {id}, which this node \
                 did not make; remove or rename it",
                spec.name
            )));
        }
        tracing::info!(container = %spec.name, %id, "replacing an older container of the same name");
        self.remove(&id).await?;
        self.create_once(spec)
            .await
            .map_err(container_error(&spec.name, "creating"))
    }
}

impl ContainerRuntime for Docker {
    async fn list(&self, node: &str) -> Result<Vec<Observed>, RuntimeError> {
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&HashMap::from([("label", vec![node_label(node)])]))
            .build();
        let summaries = timed(CALL_TIMEOUT, self.client.list_containers(Some(options)))
            .await
            .map_err(|e| RuntimeError::Failed(format!("listing the containers of {node}: {e}")))?;
        let events_before = self.running.lock().expect("never poisoned").events;
        let mut observed = Vec::with_capacity(summaries.len());
        let mut still_running = Vec::new();
        for summary in summaries {
            let Some(id) = summary.id.clone() else {
                continue;
            };
            if summary.state == Some(ContainerSummaryStateEnum::RUNNING) {
                still_running.push(id.clone());
                if let Some(known) = self.known_running(&id) {
                    observed.push(known);
                    continue;
                }
            }
            let inspected = timed(
                INSPECT_TIMEOUT,
                self.client
                    .inspect_container(&id, None::<InspectContainerOptions>),
            )
            .await;
            match inspected {
                Ok(info) => observed.push(observe(id, info)),
                // Removed between the listing and now: it is not there any more.
                Err(e) if status(&e) == Some(404) => {}
                // One container the engine cannot describe holds up only its own pod.
                Err(e) => {
                    tracing::warn!(container = %id, error = %e, "cannot inspect a container: its state is unknown for now");
                    observed.push(summarized(id, summary));
                }
            }
        }
        self.remember_running(events_before, &still_running, &observed);
        observed.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(observed)
    }

    async fn create_and_start(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        if self.image_id(&spec.image).await?.is_none() {
            return Err(RuntimeError::ImageMissing(spec.image.clone()));
        }
        let id = self.create(spec).await?;
        let started = timed(
            CALL_TIMEOUT,
            self.client
                .start_container(&id, None::<StartContainerOptions>),
        )
        .await;
        // 304: an adopted container was running already.
        if let Err(e) = started.or_else(|e| {
            if status(&e) == Some(304) {
                Ok(())
            } else {
                Err(e)
            }
        }) {
            if let Err(cleanup) = self.remove(&id).await {
                tracing::warn!(container = %spec.name, error = %cleanup,
                    "could not remove a container that failed to start");
            }
            return Err(RuntimeError::Failed(format!(
                "starting new container {} ({id}): {e}",
                spec.name
            )));
        }
        Ok(id)
    }

    async fn pull(
        &self,
        image: &str,
        credentials: Option<Credentials>,
    ) -> Result<(), RuntimeError> {
        let failed = |why: String| {
            RuntimeError::PullFailed(format!("Failed to pull image {image:?}: {why}"))
        };
        let reference = weeble_crdt::image::Reference::parse(image).map_err(failed)?;
        let name = reference.repository();
        // The engine pulls every tag of a name given no tag: the tag (or digest) always goes.
        let tag = reference
            .digest
            .or(reference.tag)
            .unwrap_or(weeble_crdt::image::DEFAULT_TAG);
        let options = CreateImageOptionsBuilder::new()
            .from_image(&name)
            .tag(tag)
            .build();
        let credentials = credentials.map(|c| DockerCredentials {
            username: c.username,
            password: c.password,
            identitytoken: c.identity_token,
            serveraddress: Some(c.registry),
            ..Default::default()
        });
        let mut progress = stalling(self.client.create_image(Some(options), None, credentials));
        while let Some(info) = progress.next().await {
            if let Some(e) = info.map_err(failed)?.error_detail.and_then(|d| d.message) {
                return Err(failed(e));
            }
        }
        match self.image_id(image).await? {
            Some(_) => Ok(()),
            None => Err(failed("the engine finished but has no such image".into())),
        }
    }

    async fn image_id(&self, reference: &str) -> Result<Option<String>, RuntimeError> {
        match timed(CALL_TIMEOUT, self.client.inspect_image(reference)).await {
            Ok(image) => Ok(image.id),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(RuntimeError::Failed(format!(
                "inspecting image {reference}: {e}"
            ))),
        }
    }

    fn save(&self, id: &str) -> ImageStream {
        let id = id.to_string();
        stalling(self.client.export_image(&id))
            .map(move |chunk| {
                chunk.map_err(|e| RuntimeError::Failed(format!("saving image {id}: {e}")))
            })
            .boxed()
    }

    async fn load(&self, tar: ImageStream) -> Result<(), RuntimeError> {
        let failed = |why: String| RuntimeError::Failed(format!("loading an image: {why}"));
        let options = ImportImageOptionsBuilder::new().quiet(true).build();
        // The engine answers once it has read the whole tar, and loaded it: longer than any
        // other call takes (bollard's timeout runs until the answer).
        let client = self.client.clone().with_timeout(LOAD_TIMEOUT);
        let progress = client.import_image_stream(options, tar, None);
        let mut progress = stalling(progress);
        while let Some(info) = progress.next().await {
            if let Some(e) = info.map_err(failed)?.error_detail.and_then(|d| d.message) {
                return Err(failed(e));
            }
        }
        Ok(())
    }

    async fn tag(&self, id: &str, reference: &str) -> Result<(), RuntimeError> {
        let failed =
            |why: String| RuntimeError::Failed(format!("naming image {id} {reference}: {why}"));
        let parsed = weeble_crdt::image::Reference::parse(reference).map_err(failed)?;
        let tag = parsed.tag.unwrap_or(weeble_crdt::image::DEFAULT_TAG);
        let options = TagImageOptionsBuilder::new()
            .repo(&parsed.repository())
            .tag(tag)
            .build();
        timed(CALL_TIMEOUT, self.client.tag_image(id, Some(options)))
            .await
            .map_err(|e| failed(engine_message(e)))
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.forget(id);
        timed(
            CALL_TIMEOUT,
            self.client
                .start_container(id, None::<StartContainerOptions>),
        )
        .await
        .map_err(container_error(id, "starting"))
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        self.forget(id);
        match timed(
            CALL_TIMEOUT,
            self.client.remove_container(id, Some(options)),
        )
        .await
        {
            Err(e) if status(&e) != Some(404) => Err(container_error(id, "removing")(e)),
            _ => Ok(()),
        }
    }

    async fn terminate(&self, id: &str) -> Result<(), RuntimeError> {
        self.forget(id);
        timed(
            CALL_TIMEOUT,
            self.client.kill_container(id, None::<KillContainerOptions>),
        )
        .await
        .map_err(container_error(id, "killing"))
    }

    async fn exec(&self, id: &str, command: &[String]) -> Result<i64, RuntimeError> {
        let config = ExecConfig {
            cmd: Some(command.to_vec()),
            ..Default::default()
        };
        let exec = timed(CALL_TIMEOUT, self.client.create_exec(id, config))
            .await
            .map_err(container_error(id, "running a command in"))?;
        let detached = StartExecOptions {
            detach: true,
            ..Default::default()
        };
        timed(
            CALL_TIMEOUT,
            self.client.start_exec(&exec.id, Some(detached)),
        )
        .await
        .map_err(container_error(id, "running a command in"))?;
        // The caller bounds the wait (a probe's timeout).
        loop {
            let state = timed(CALL_TIMEOUT, self.client.inspect_exec(&exec.id))
                .await
                .map_err(container_error(id, "running a command in"))?;
            if state.running != Some(true) {
                return Ok(state.exit_code.unwrap_or(-1));
            }
            tokio::time::sleep(EXEC_POLL).await;
        }
    }

    /// The engine's log stream; a call that does not follow still ends within
    /// [`CALL_TIMEOUT`] of its last chunk (an engine that stops answering ends it with an
    /// error).
    fn logs(&self, id: &str, options: &LogOptions) -> LogStream {
        let mut builder = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .follow(options.follow)
            .timestamps(options.timestamps);
        if let Some(tail) = options.tail {
            builder = builder.tail(&tail.to_string());
        }
        if let Some(since) = options.since_s {
            builder = builder.since(i32::try_from(since).unwrap_or(i32::MAX));
        }
        let (id, follow) = (id.to_owned(), options.follow);
        let chunks = self.client.logs(&id, Some(builder.build()));
        // Each chunk within the call timeout of the one before, unless it follows.
        let limit = if follow { None } else { Some(CALL_TIMEOUT) };
        futures::stream::unfold(chunks, move |mut chunks| {
            let id = id.clone();
            async move {
                let next = match limit {
                    Some(limit) => timed(limit, async { chunks.next().await.transpose() }).await,
                    None => chunks.next().await.transpose(),
                };
                let chunk = next
                    .map_err(|e| container_error(&id, "reading the logs of")(e))
                    .transpose()?;
                Some((chunk.map(|c| c.into_bytes()), chunks))
            }
        })
        .boxed()
    }

    /// Must be called within a tokio runtime: it spawns the task that follows the engine's
    /// events. Events from the moment of the call on are delivered, even those that happen
    /// before the task has connected.
    fn watch(&self, node: &str) -> mpsc::Receiver<RuntimeEvent> {
        let (tx, rx) = mpsc::channel(WATCH_CAPACITY);
        tokio::spawn(follow_events(self.clone(), node.to_owned(), tx));
        rx
    }
}

/// Forwards the engine's events for `node`'s containers to `tx` until its receiver is
/// dropped, following the stream again (from where it broke off) whenever it fails.
/// A container with news is inspected afresh by the next `list`: the engine sends `die`
/// before its listing shows the container stopped.
async fn follow_events(docker: Docker, node: String, tx: mpsc::Sender<RuntimeEvent>) {
    let client = &docker.client;
    let filters = HashMap::from([
        ("type", vec!["container".to_owned()]),
        ("label", vec![node_label(&node)]),
    ]);
    let mut since_nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    let mut retry = WATCH_RETRY_FIRST;
    loop {
        let options = EventsOptionsBuilder::new()
            .since(&docker_time(since_nanos))
            .filters(&filters)
            .build();
        let mut events = client.events(Some(options));
        let problem = loop {
            let next = tokio::select! {
                _ = tx.closed() => return,
                next = events.next() => next,
            };
            match next {
                Some(Ok(message)) => {
                    retry = WATCH_RETRY_FIRST;
                    if let Some(nanos) = message.time_nano {
                        since_nanos = nanos + 1;
                    }
                    if let Some(event) = runtime_event(message) {
                        docker.forget(&event.container_id);
                        if tx.send(event).await.is_err() {
                            return;
                        }
                    }
                }
                Some(Err(e)) => break e.to_string(),
                None => break "the engine closed the stream".to_owned(),
            }
        };
        tracing::warn!(%node, %problem, retry_in = ?retry, "following Docker events failed");
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(WATCH_RETRY_MAX);
    }
}

/// The label filter value that selects `node`'s containers.
fn node_label(node: &str) -> String {
    format!("{LABEL_NODE}={node}")
}

/// Unix nanoseconds in the `seconds.nanoseconds` form the engine's `since` accepts.
fn docker_time(nanos: i64) -> String {
    format!(
        "{}.{:09}",
        nanos.div_euclid(1_000_000_000),
        nanos.rem_euclid(1_000_000_000)
    )
}

/// `stream`'s items, failing (once, then ending) with the engine's words when it sends an
/// error, or when it sends nothing for [`PULL_STALL`].
fn stalling<T: Send + 'static>(
    stream: impl futures::Stream<Item = Result<T, BollardError>> + Send + 'static,
) -> futures::stream::BoxStream<'static, Result<T, String>> {
    futures::stream::unfold(Some(Box::pin(stream)), |stream| async move {
        let mut stream = stream?;
        match tokio::time::timeout(PULL_STALL, stream.next()).await {
            Ok(None) => None,
            Ok(Some(Ok(item))) => Some((Ok(item), Some(stream))),
            Ok(Some(Err(e))) => Some((Err(engine_message(e)), None)),
            Err(_) => {
                let stall = PULL_STALL.as_secs();
                Some((Err(format!("no progress for {stall} s")), None))
            }
        }
    })
    .boxed()
}

/// What the engine said, without bollard's wrapping: its message for an engine error.
fn engine_message(e: BollardError) -> String {
    match e {
        BollardError::DockerResponseServerError { message, .. } => message,
        BollardError::DockerStreamError { error } => error,
        e => e.to_string(),
    }
}

/// The HTTP status the engine answered with, if the failure was such an answer.
fn status(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Maps a failed call about container `id`: not found (404) is `NotFound`, anything else a
/// failure while `doing` it (`"starting"` gives "starting container <id>: ...").
fn container_error<'a>(
    id: &'a str,
    doing: &'a str,
) -> impl FnOnce(BollardError) -> RuntimeError + 'a {
    move |e| match (status(&e), e) {
        (Some(404), _) => RuntimeError::NotFound(id.to_owned()),
        (_, BollardError::RequestTimeoutError) => RuntimeError::Failed(format!(
            "{doing} container {id}: the engine did not answer within {} s",
            CALL_TIMEOUT.as_secs()
        )),
        (_, e) => RuntimeError::Failed(format!("{doing} container {id}: {e}")),
    }
}

/// The engine's request body for creating `spec`: no restart policy (Weeble restarts
/// containers itself), every port published on a free host port of `spec.publish_ip`.
fn create_body(spec: &ContainerSpec) -> ContainerCreateBody {
    let port_keys: Vec<String> = spec
        .ports
        .iter()
        .map(|&(port, protocol)| port_key(port, protocol))
        .collect();
    let bindings: PortMap = port_keys
        .iter()
        .map(|key| {
            let binding = PortBinding {
                host_ip: Some(spec.publish_ip.to_string()),
                host_port: Some(String::new()),
            };
            (key.clone(), Some(vec![binding]))
        })
        .collect();
    let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let limit = |v: u64| (v > 0).then(|| i64::try_from(v).unwrap_or(i64::MAX));
    ContainerCreateBody {
        hostname: Some(spec.hostname.clone()),
        image: Some(spec.image.clone()),
        entrypoint: non_empty(&spec.command),
        cmd: non_empty(&spec.args),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        working_dir: spec.working_dir.clone(),
        labels: Some(
            spec.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        exposed_ports: Some(port_keys),
        host_config: Some(HostConfig {
            port_bindings: Some(bindings),
            nano_cpus: limit(spec.cpu_limit_millis.saturating_mul(1_000_000)),
            memory: limit(spec.memory_limit_bytes),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The engine's name for a container port: `80/tcp`.
fn port_key(port: u16, protocol: Protocol) -> String {
    let protocol = match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    format!("{port}/{protocol}")
}

/// The container port and protocol of an engine port key; `None` for other protocols (sctp).
fn parse_port_key(key: &str) -> Option<(u16, Protocol)> {
    let (port, protocol) = key.split_once('/')?;
    let protocol = match protocol {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        _ => return None,
    };
    Some((port.parse().ok()?, protocol))
}

/// What `list` reports about container `id`, from the engine's inspection of it.
fn observe(id: String, info: ContainerInspectResponse) -> Observed {
    let config = info.config.unwrap_or_default();
    let engine_state = info.state.unwrap_or_default();
    let state = match engine_state.status {
        Some(ContainerStateStatusEnum::RUNNING) => ContainerState::Running,
        Some(ContainerStateStatusEnum::CREATED) => ContainerState::Created,
        Some(ContainerStateStatusEnum::EXITED) => ContainerState::Exited {
            code: engine_state.exit_code.unwrap_or_default(),
        },
        _ => ContainerState::Other,
    };
    let network = info.network_settings.unwrap_or_default();
    let ip = network
        .networks
        .iter()
        .flat_map(|networks| networks.values())
        .filter_map(|n| n.ip_address.as_deref()?.parse::<IpAddr>().ok())
        .next();
    let mut ports: Vec<PublishedPort> = network
        .ports
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(key, bindings)| Some((parse_port_key(&key)?, bindings?)))
        .flat_map(|((container_port, protocol), bindings)| {
            bindings.into_iter().filter_map(move |b| {
                Some(PublishedPort {
                    container_port,
                    protocol,
                    host_ip: b.host_ip?.parse::<IpAddr>().ok()?,
                    host_port: b.host_port?.parse().ok()?,
                })
            })
        })
        .collect();
    ports.sort_by_key(|p| {
        (
            p.container_port,
            p.protocol == Protocol::Udp,
            p.host_ip,
            p.host_port,
        )
    });
    Observed {
        name: info
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned(),
        image: config.image.unwrap_or_default(),
        image_id: info.image.unwrap_or_default(),
        labels: Arc::new(config.labels.unwrap_or_default().into_iter().collect()),
        ip: ip.filter(|_| state == ContainerState::Running),
        state,
        ports,
        started_at_ms: timestamp_ms(&id, engine_state.started_at.as_deref()),
        finished_at_ms: timestamp_ms(&id, engine_state.finished_at.as_deref()),
        id,
    }
}

/// What `list` reports about container `id` when it cannot be inspected: what the listing
/// says of it, its state unknown (so it is neither restarted nor probed until it can be).
fn summarized(id: String, summary: ContainerSummary) -> Observed {
    Observed {
        name: summary
            .names
            .and_then(|names| names.into_iter().next())
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned(),
        image: summary.image.unwrap_or_default(),
        image_id: summary.image_id.unwrap_or_default(),
        labels: Arc::new(summary.labels.unwrap_or_default().into_iter().collect()),
        state: ContainerState::Other,
        ports: Vec::new(),
        ip: None,
        started_at_ms: 0,
        finished_at_ms: 0,
        id,
    }
}

/// The event Weeble passes on for an engine event, if it names a container and an action.
fn runtime_event(message: EventMessage) -> Option<RuntimeEvent> {
    Some(RuntimeEvent {
        container_id: message.actor?.id?,
        action: message.action?,
    })
}

/// Unix milliseconds of one of container `id`'s timestamps; 0 when the engine has none or
/// gives its zero time (`0001-01-01T00:00:00Z`, "never").
fn timestamp_ms(id: &str, timestamp: Option<&str>) -> i64 {
    let Some(text) = timestamp.filter(|t| !t.is_empty()) else {
        return 0;
    };
    match parse_rfc3339_ms(text) {
        Some(ms) => ms.max(0),
        None => {
            tracing::warn!(container = %id, timestamp = %text, "unreadable Docker timestamp");
            0
        }
    }
}

/// Unix milliseconds (rounded down) of an RFC 3339 timestamp such as Docker writes,
/// `2026-11-24T23:06:25.601037217Z`; `None` if `text` is not one.
fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let separators_ok = b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't' | b' ')
        && b[13] == b':'
        && b[16] == b':';
    if !separators_ok {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<i64> {
        let digits = text.get(from..to)?;
        digits
            .bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let (year, month, day) = (number(0, 4)?, number(5, 7)?, number(8, 10)?);
    let (hour, minute, second) = (number(11, 13)?, number(14, 16)?, number(17, 19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let kept = &fraction[..digits.min(3)];
        millis = kept.parse::<i64>().ok()? * 10_i64.pow(3 - kept.len() as u32);
        rest = &fraction[digits..];
    }
    let offset_seconds = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let hours: i64 = rest[1..3].parse().ok()?;
            let minutes: i64 = rest[4..6].parse().ok()?;
            sign * (hours * 3600 + minutes * 60)
        }
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_seconds;
    Some(seconds * 1000 + millis)
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn parses_docker_timestamps() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        // date -u -d 2026-11-24T23:06:25.601037217Z +%s%3N
        assert_eq!(
            parse_rfc3339_ms("2026-11-24T23:06:25.601037217Z"),
            Some(1_795_561_585_601)
        );
        assert_eq!(
            parse_rfc3339_ms("2000-02-29T12:00:00.5Z"),
            Some(951_825_600_500)
        );
        assert_eq!(
            parse_rfc3339_ms("2000-02-29T13:30:00+01:30"),
            parse_rfc3339_ms("2000-02-29T12:00:00Z")
        );
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:59:59.999Z"), Some(-1));
        assert!(parse_rfc3339_ms("0001-01-01T00:00:00Z").is_some_and(|ms| ms < 0));
        for bad in [
            "",
            "2026-11-24",
            "2026-13-01T00:00:00Z",
            "2026-11-24T23:06:25.Z",
            "2026-11-24T23:06:25",
            "2026-11-24T23:06:25+0100",
            "2026-11-2xT23:06:25Z",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn zero_and_missing_times_are_never() {
        assert_eq!(timestamp_ms("c", Some("0001-01-01T00:00:00Z")), 0);
        assert_eq!(timestamp_ms("c", Some("")), 0);
        assert_eq!(timestamp_ms("c", None), 0);
        assert_eq!(timestamp_ms("c", Some("not a time")), 0);
        assert_eq!(timestamp_ms("c", Some("1970-01-01T00:00:01Z")), 1000);
    }

    #[test]
    fn port_keys_round_trip() {
        assert_eq!(port_key(80, Protocol::Tcp), "80/tcp");
        assert_eq!(parse_port_key("53/udp"), Some((53, Protocol::Udp)));
        assert_eq!(parse_port_key("80/sctp"), None);
        assert_eq!(parse_port_key("http/tcp"), None);
    }

    #[test]
    fn create_body_publishes_ports_and_sets_limits() {
        let spec = ContainerSpec {
            name: "weeble-n1-web-0-nginx".into(),
            hostname: "web-0".into(),
            image: "nginx:1".into(),
            command: vec![],
            args: vec!["-g".into(), "daemon off;".into()],
            env: vec![("A".into(), "1".into())],
            working_dir: None,
            ports: vec![(80, Protocol::Tcp), (53, Protocol::Udp)],
            publish_ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7)),
            labels: Arc::new(std::collections::BTreeMap::from([(
                LABEL_NODE.into(),
                "n1".into(),
            )])),
            cpu_limit_millis: 250,
            memory_limit_bytes: 0,
        };
        let body = create_body(&spec);
        assert_eq!(body.entrypoint, None);
        assert_eq!(body.cmd, Some(spec.args.clone()));
        assert_eq!(body.env, Some(vec!["A=1".to_owned()]));
        assert_eq!(
            body.exposed_ports,
            Some(vec!["80/tcp".into(), "53/udp".into()])
        );
        let host = body.host_config.unwrap();
        assert_eq!(host.nano_cpus, Some(250_000_000));
        assert_eq!(host.memory, None);
        assert_eq!(host.restart_policy, None);
        let binding = &host.port_bindings.unwrap()["53/udp"].clone().unwrap()[0];
        assert_eq!(binding.host_ip.as_deref(), Some("127.0.0.7"));
        assert_eq!(binding.host_port.as_deref(), Some(""));
    }

    #[test]
    fn observes_an_inspected_container() {
        let info: ContainerInspectResponse = serde_json::from_value(serde_json::json!({
            "Name": "/weeble-n1-web-0-app",
            "State": {"Status": "running", "ExitCode": 0,
                "StartedAt": "1970-01-01T00:00:02.5Z", "FinishedAt": "0001-01-01T00:00:00Z"},
            "Config": {"Image": "weeble-demo:v1", "Labels": {"weeble.node": "n1"}},
            "NetworkSettings": {"Ports": {
                "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32771"}],
                "81/tcp": null,
                "82/sctp": [{"HostIp": "127.0.0.1", "HostPort": "32772"}]
            }}
        }))
        .unwrap();
        let observed = observe("abc".into(), info);
        assert_eq!(observed.name, "weeble-n1-web-0-app");
        assert_eq!(observed.image, "weeble-demo:v1");
        assert_eq!(observed.state, ContainerState::Running);
        assert_eq!(observed.labels["weeble.node"], "n1");
        assert_eq!((observed.started_at_ms, observed.finished_at_ms), (2500, 0));
        assert_eq!(
            observed.ports,
            vec![PublishedPort {
                container_port: 80,
                protocol: Protocol::Tcp,
                host_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                host_port: 32771,
            }]
        );
    }

    #[tokio::test]
    async fn an_engine_call_that_never_answers_fails_after_its_timeout() {
        let stalled = std::future::pending::<Result<(), BollardError>>();
        let result = timed(Duration::from_millis(20), stalled).await;
        assert!(matches!(result, Err(BollardError::RequestTimeoutError)));
        let error = container_error("abc", "starting")(result.unwrap_err());
        assert_eq!(
            error,
            RuntimeError::Failed(format!(
                "starting container abc: the engine did not answer within {} s",
                CALL_TIMEOUT.as_secs()
            ))
        );
    }

    #[test]
    fn a_container_that_cannot_be_inspected_is_listed_with_its_state_unknown() {
        let summary: ContainerSummary = serde_json::from_value(serde_json::json!({
            "Id": "abc", "Names": ["/weeble_n1_default_web-0_app"], "Image": "weeble-demo:v1",
            "State": "running", "Labels": {"weeble.node": "n1", "weeble.pod": "web-0"}
        }))
        .unwrap();
        let observed = summarized("abc".into(), summary);
        assert_eq!(observed.name, "weeble_n1_default_web-0_app");
        assert_eq!(observed.labels["weeble.pod"], "web-0");
        // Neither restarted nor probed until the engine can say more.
        assert_eq!(observed.state, ContainerState::Other);
        assert_eq!((observed.ip, observed.ports.len()), (None, 0));
    }

    #[test]
    fn event_times_use_seconds_dot_nanoseconds() {
        assert_eq!(
            docker_time(1_700_000_000_000_000_123),
            "1700000000.000000123"
        );
    }
}
