//! An in-memory container runtime for unit tests and the simulator: deterministic ids, fake
//! host ports, a record of every call, and controls to kill containers or fail a create. Its
//! registry is a set of images a pull brings (given credentials, if it asks for them). Its
//! images are a config each, saved and loaded as tars of the shape `docker save` writes.
//!
//! It behaves like Docker where the reconciler can tell: an exited container has no published
//! ports and gets new host ports when started again; removing a running container reports
//! `die` then `destroy`. Times come from a clock the test sets (`set_clock_ms`), or from the
//! node's own clock for a node run inside a process (`on_node_clock`).

use super::credentials::Credentials;
use super::{
    ContainerRuntime, ContainerSpec, ContainerState, ImageStream, LABEL_NODE, LogOptions,
    LogStream, Observed, PublishedPort, RuntimeError, RuntimeEvent,
};
use crate::images::tarball;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

/// The first fake host port handed out; they count up from here.
const FIRST_HOST_PORT: u16 = 30000;
/// How many events a watcher may leave unread; later ones are dropped (the reconciler's
/// periodic resync covers for them, as it must for Docker).
const WATCH_CAPACITY: usize = 64;

/// A runtime call, as recorded by [`MemoryRuntime::calls`] (whether it succeeded or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Create { name: String },
    Start { id: String },
    Remove { id: String },
    Terminate { id: String },
    Exec { id: String, command: Vec<String> },
    Pull { image: String },
    Logs { id: String, options: LogOptions },
}

/// The fake runtime; clones share one state.
#[derive(Debug, Clone, Default)]
pub struct MemoryRuntime {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    /// The engine's images by name, and their ids.
    images: BTreeMap<String, String>,
    /// Every image the engine holds, named or not: its config by id.
    configs: BTreeMap<String, Vec<u8>>,
    /// What a pull can bring, with the user it must be asked by (`None`: anyone).
    registry: BTreeMap<String, Option<String>>,
    /// By id.
    containers: BTreeMap<String, FakeContainer>,
    calls: Vec<Call>,
    fail_next_create: Option<RuntimeError>,
    /// What `exec` returns in each container (0 where unset).
    exec_codes: BTreeMap<String, i64>,
    watchers: Vec<(String, mpsc::Sender<RuntimeEvent>)>,
    ids_issued: u64,
    next_host_port: u16,
    /// The time stamped on starts and exits; `None`: the node's clock.
    clock_ms: Option<i64>,
}

impl Default for State {
    fn default() -> Self {
        State {
            images: BTreeMap::new(),
            configs: BTreeMap::new(),
            registry: BTreeMap::new(),
            containers: BTreeMap::new(),
            calls: Vec::new(),
            fail_next_create: None,
            exec_codes: BTreeMap::new(),
            watchers: Vec::new(),
            ids_issued: 0,
            next_host_port: FIRST_HOST_PORT,
            // Not 0, which means "never" in `Observed`.
            clock_ms: Some(1),
        }
    }
}

#[derive(Debug)]
struct FakeContainer {
    spec: ContainerSpec,
    state: ContainerState,
    ports: Vec<PublishedPort>,
    started_at_ms: i64,
    finished_at_ms: i64,
    /// What `logs` returns: one line per start and exit.
    output: Vec<String>,
}

impl MemoryRuntime {
    /// An empty runtime: no images, no containers, clock at 1 ms.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `image` present, so containers can be created from it.
    pub fn add_image(&self, image: &str) {
        self.state().add_image(image);
    }

    /// Makes `image` present with a config of about `bytes` bytes (its tar is as large): an
    /// image whose transfer takes many parts.
    pub fn add_image_of_size(&self, image: &str, bytes: usize) {
        let mut config = config(image);
        config.truncate(config.len() - 1);
        config.extend(format!(",\"padding\":\"{}\"}}", "x".repeat(bytes)).into_bytes());
        self.state().add(image, config);
    }

    /// Puts `image` in the registry, pulled by anyone, or only by `user` if given.
    pub fn add_to_registry(&self, image: &str, user: Option<&str>) {
        let user = user.map(str::to_string);
        self.state().registry.insert(image.to_owned(), user);
    }

    /// Every call made so far, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// The next `create_and_start` fails with `error` (and creates nothing).
    pub fn fail_next_create(&self, error: RuntimeError) {
        self.state().fail_next_create = Some(error);
    }

    /// An empty runtime that stamps starts and exits with the node's clock
    /// (`clock::now_ms`), as Docker does: for nodes run inside a process.
    pub fn on_node_clock() -> Self {
        let runtime = Self::default();
        runtime.state().clock_ms = None;
        runtime
    }

    /// The time stamped on starts and exits from now on, in Unix milliseconds.
    pub fn set_clock_ms(&self, now_ms: i64) {
        self.state().clock_ms = Some(now_ms);
    }

    /// Makes running container `id` exit with `exit_code`, as if its process ended, and
    /// tells watchers (`die`).
    pub fn kill(&self, id: &str, exit_code: i64) -> Result<(), RuntimeError> {
        let mut state = self.state();
        let now = state.now_ms();
        let container = state
            .containers
            .get_mut(id)
            .ok_or_else(|| RuntimeError::NotFound(id.to_owned()))?;
        if container.state != ContainerState::Running {
            return Err(RuntimeError::Failed(format!(
                "killing container {id}: it is not running"
            )));
        }
        container.exit(exit_code, now);
        let node = container.node();
        state.emit(&node, id, "die");
        Ok(())
    }

    /// Container `id` writes `line` to its output (ignored if there is no such container).
    pub fn write(&self, id: &str, line: &str) {
        if let Some(container) = self.state().containers.get_mut(id) {
            container.output.push(line.to_owned());
        }
    }

    /// Makes every later `exec` in container `id` exit with `code`.
    pub fn set_exec_code(&self, id: &str, code: i64) {
        self.state().exec_codes.insert(id.to_owned(), code);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock leaves a consistent state behind.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn now_ms(&self) -> i64 {
        self.clock_ms.unwrap_or_else(crate::clock::now_ms)
    }

    /// Publishes `spec`'s ports on fresh fake host ports.
    fn publish(&mut self, spec: &ContainerSpec) -> Vec<PublishedPort> {
        spec.ports
            .iter()
            .map(|&(container_port, protocol)| {
                let host_port = self.next_host_port;
                self.next_host_port = host_port.checked_add(1).unwrap_or(FIRST_HOST_PORT);
                PublishedPort {
                    container_port,
                    protocol,
                    host_ip: spec.publish_ip,
                    host_port,
                }
            })
            .collect()
    }

    /// Sends an event to `node`'s watchers, forgetting those whose receiver is gone.
    fn emit(&mut self, node: &str, id: &str, action: &str) {
        self.watchers.retain(|(watched, tx)| {
            if watched != node {
                return !tx.is_closed();
            }
            let event = RuntimeEvent {
                container_id: id.to_owned(),
                action: action.to_owned(),
            };
            match tx.try_send(event) {
                Ok(()) => true,
                Err(TrySendError::Full(event)) => {
                    tracing::warn!(%node, ?event, "watcher is not keeping up; event dropped");
                    true
                }
                Err(TrySendError::Closed(_)) => false,
            }
        });
    }

    /// Runs container `id` (which must exist) from now on.
    fn run(&mut self, id: &str) {
        let now = self.now_ms();
        let spec = self.containers[id].spec.clone();
        let ports = self.publish(&spec);
        let container = self
            .containers
            .get_mut(id)
            .expect("the caller checked it exists");
        container.state = ContainerState::Running;
        container.ports = ports;
        container.started_at_ms = now;
        container.output.push(format!("started {}", spec.name));
        self.emit(&container_node(&spec), id, "start");
    }
}

impl FakeContainer {
    fn node(&self) -> String {
        container_node(&self.spec)
    }

    fn exit(&mut self, code: i64, now_ms: i64) {
        self.state = ContainerState::Exited { code };
        self.ports.clear();
        self.finished_at_ms = now_ms;
        self.output.push(format!("exited with code {code}"));
    }
}

/// The node a container belongs to: its `weeble.node` label.
fn container_node(spec: &ContainerSpec) -> String {
    spec.labels.get(LABEL_NODE).cloned().unwrap_or_default()
}

/// The config of the twin's image `image` (the image is nothing else): its sha256 is the
/// image's id, as on an engine.
fn config(image: &str) -> Vec<u8> {
    format!("{{\"weeble-memory-image\":{image:?}}}").into_bytes()
}

impl State {
    fn add_image(&mut self, image: &str) {
        self.add(image, config(image));
    }

    fn add(&mut self, image: &str, config: Vec<u8>) {
        let id = tarball::image_id(&config);
        self.images.insert(image.to_owned(), id.clone());
        self.configs.insert(id, config);
    }
}

impl ContainerRuntime for MemoryRuntime {
    async fn list(&self, node: &str) -> Result<Vec<Observed>, RuntimeError> {
        let state = self.state();
        let mut observed: Vec<Observed> = state
            .containers
            .iter()
            .filter(|(_, c)| c.node() == node)
            .map(|(id, c)| Observed {
                id: id.clone(),
                name: c.spec.name.clone(),
                image: c.spec.image.clone(),
                image_id: state.images.get(&c.spec.image).cloned().unwrap_or_default(),
                labels: c.spec.labels.clone(),
                state: c.state,
                ports: c.ports.clone(),
                ip: None,
                started_at_ms: c.started_at_ms,
                finished_at_ms: c.finished_at_ms,
            })
            .collect();
        observed.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(observed)
    }

    async fn pull(
        &self,
        image: &str,
        credentials: Option<Credentials>,
    ) -> Result<(), RuntimeError> {
        let mut state = self.state();
        state.calls.push(Call::Pull {
            image: image.to_owned(),
        });
        let user = credentials.and_then(|c| c.username);
        match state.registry.get(image) {
            Some(None) => {}
            Some(Some(wanted)) if user.as_ref() == Some(wanted) => {}
            Some(Some(_)) => {
                return Err(RuntimeError::PullFailed(format!(
                    "Failed to pull image {image:?}: unauthorized"
                )));
            }
            None => {
                return Err(RuntimeError::PullFailed(format!(
                    "Failed to pull image {image:?}: not found"
                )));
            }
        }
        state.add_image(image);
        Ok(())
    }

    async fn image_id(&self, reference: &str) -> Result<Option<String>, RuntimeError> {
        let state = self.state();
        let named = state.images.get(reference).cloned();
        Ok(named.or_else(|| {
            state
                .configs
                .contains_key(reference)
                .then(|| reference.to_owned())
        }))
    }

    fn save(&self, id: &str) -> ImageStream {
        let saved = match self.state().configs.get(id) {
            Some(config) => Ok(bytes::Bytes::from(tarball::write(config, &[]))),
            None => Err(RuntimeError::Failed(format!("no such image: {id}"))),
        };
        futures::stream::once(async move { saved }).boxed()
    }

    async fn load(&self, tar: ImageStream) -> Result<(), RuntimeError> {
        use futures::TryStreamExt;
        let failed = |why: String| RuntimeError::Failed(format!("loading an image: {why}"));
        let chunks: Vec<bytes::Bytes> = tar.try_collect().await?;
        let tar = chunks.concat();
        let mut archive = tar::Archive::new(&tar[..]);
        let entries = archive.entries().map_err(|e| failed(e.to_string()))?;
        let mut configs = Vec::new();
        for entry in entries {
            let mut entry = entry.map_err(|e| failed(e.to_string()))?;
            let path = entry.path().map_err(|e| failed(e.to_string()))?;
            if path.to_string_lossy().ends_with(".json") && path.as_os_str() != "manifest.json" {
                let mut config = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut config)
                    .map_err(|e| failed(e.to_string()))?;
                configs.push(config);
            }
        }
        let [config] = <[Vec<u8>; 1]>::try_from(configs)
            .map_err(|c| failed(format!("{} configs in the tar, not one", c.len())))?;
        self.state()
            .configs
            .insert(tarball::image_id(&config), config);
        Ok(())
    }

    async fn tag(&self, id: &str, reference: &str) -> Result<(), RuntimeError> {
        let mut state = self.state();
        if !state.configs.contains_key(id) {
            return Err(RuntimeError::Failed(format!("no such image: {id}")));
        }
        state.images.insert(reference.to_owned(), id.to_owned());
        Ok(())
    }

    async fn create_and_start(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        let mut state = self.state();
        state.calls.push(Call::Create {
            name: spec.name.clone(),
        });
        if let Some(error) = state.fail_next_create.take() {
            return Err(error);
        }
        if !state.images.contains_key(&spec.image) {
            return Err(RuntimeError::ImageMissing(spec.image.clone()));
        }
        if let Some((other, _)) = state
            .containers
            .iter()
            .find(|(_, c)| c.spec.name == spec.name)
        {
            return Err(RuntimeError::Failed(format!(
                "creating container {}: a container with this name already exists ({other}); \
                 remove it first",
                spec.name
            )));
        }
        state.ids_issued += 1;
        let id = format!("mem-{}", state.ids_issued);
        let container = FakeContainer {
            spec: spec.clone(),
            state: ContainerState::Created,
            ports: Vec::new(),
            started_at_ms: 0,
            finished_at_ms: 0,
            output: Vec::new(),
        };
        state.containers.insert(id.clone(), container);
        state.run(&id);
        Ok(id)
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let mut state = self.state();
        state.calls.push(Call::Start { id: id.to_owned() });
        let container = state
            .containers
            .get(id)
            .ok_or_else(|| RuntimeError::NotFound(id.to_owned()))?;
        // Like Docker: starting a running container changes nothing.
        if container.state != ContainerState::Running {
            state.run(id);
        }
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let mut state = self.state();
        state.calls.push(Call::Remove { id: id.to_owned() });
        if let Some(container) = state.containers.remove(id) {
            let node = container.node();
            if container.state == ContainerState::Running {
                state.emit(&node, id, "die");
            }
            state.emit(&node, id, "destroy");
        }
        Ok(())
    }

    async fn terminate(&self, id: &str) -> Result<(), RuntimeError> {
        self.state()
            .calls
            .push(Call::Terminate { id: id.to_owned() });
        self.kill(id, 137)
    }

    async fn exec(&self, id: &str, command: &[String]) -> Result<i64, RuntimeError> {
        let mut state = self.state();
        state.calls.push(Call::Exec {
            id: id.to_owned(),
            command: command.to_vec(),
        });
        match state.containers.get(id) {
            Some(c) if c.state == ContainerState::Running => {
                Ok(state.exec_codes.get(id).copied().unwrap_or(0))
            }
            Some(_) => Err(RuntimeError::Failed(format!(
                "container {id} is not running"
            ))),
            None => Err(RuntimeError::NotFound(id.to_owned())),
        }
    }

    /// The lines the container wrote (the twin keeps no times: `since_s` and `timestamps`
    /// change nothing, and a follow ends with what is there).
    fn logs(&self, id: &str, options: &LogOptions) -> LogStream {
        let mut state = self.state();
        state.calls.push(Call::Logs {
            id: id.to_owned(),
            options: options.clone(),
        });
        let text = state.containers.get(id).map(|c| {
            let output = &c.output;
            let tail = options.tail.unwrap_or(output.len());
            let kept = &output[output.len().saturating_sub(tail)..];
            kept.iter()
                .map(|line| format!("{line}\n"))
                .collect::<String>()
        });
        let chunk = text
            .map(bytes::Bytes::from)
            .ok_or_else(|| RuntimeError::NotFound(id.to_owned()));
        futures::stream::iter([chunk]).boxed()
    }

    fn watch(&self, node: &str) -> mpsc::Receiver<RuntimeEvent> {
        let (tx, rx) = mpsc::channel(WATCH_CAPACITY);
        self.state().watchers.push((node.to_owned(), tx));
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::log_text;
    use std::net::{IpAddr, Ipv4Addr};
    use weeble_crdt::Protocol;

    const IMAGE: &str = "app:1";

    fn spec(node: &str, name: &str) -> ContainerSpec {
        ContainerSpec {
            name: name.to_owned(),
            hostname: name.to_owned(),
            image: IMAGE.to_owned(),
            command: vec![],
            args: vec![],
            env: vec![],
            working_dir: None,
            ports: vec![(80, Protocol::Tcp), (53, Protocol::Udp)],
            publish_ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)),
            labels: Arc::new(BTreeMap::from([(LABEL_NODE.to_owned(), node.to_owned())])),
            cpu_limit_millis: 0,
            memory_limit_bytes: 0,
        }
    }

    fn runtime() -> MemoryRuntime {
        let runtime = MemoryRuntime::new();
        runtime.add_image(IMAGE);
        runtime
    }

    fn event(id: &str, action: &str) -> RuntimeEvent {
        RuntimeEvent {
            container_id: id.to_owned(),
            action: action.to_owned(),
        }
    }

    fn host_ports(observed: &Observed) -> Vec<u16> {
        observed.ports.iter().map(|p| p.host_port).collect()
    }

    #[tokio::test]
    async fn creates_running_containers_with_deterministic_ids_and_fake_ports() {
        let rt = runtime();
        rt.set_clock_ms(5_000);
        assert_eq!(
            rt.create_and_start(&spec("n1", "b")).await,
            Ok("mem-1".into())
        );
        assert_eq!(
            rt.create_and_start(&spec("n1", "a")).await,
            Ok("mem-2".into())
        );
        assert_eq!(
            rt.create_and_start(&spec("n2", "c")).await,
            Ok("mem-3".into())
        );

        let listed = rt.list("n1").await.unwrap();
        let names: Vec<&str> = listed.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["a", "b"], "only n1's containers, by name");
        let b = &listed[1];
        assert_eq!((b.id.as_str(), b.image.as_str()), ("mem-1", IMAGE));
        assert_eq!(b.state, ContainerState::Running);
        assert_eq!((b.started_at_ms, b.finished_at_ms), (5_000, 0));
        assert_eq!(b.labels[LABEL_NODE], "n1");
        assert_eq!(
            b.ports,
            vec![
                PublishedPort {
                    container_port: 80,
                    protocol: Protocol::Tcp,
                    host_ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)),
                    host_port: 30000,
                },
                PublishedPort {
                    container_port: 53,
                    protocol: Protocol::Udp,
                    host_ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)),
                    host_port: 30001,
                },
            ]
        );
        assert_eq!(host_ports(&listed[0]), [30002, 30003]);
    }

    #[tokio::test]
    async fn absent_image_is_missing_and_nothing_is_created() {
        let rt = MemoryRuntime::new();
        assert_eq!(
            rt.create_and_start(&spec("n1", "a")).await,
            Err(RuntimeError::ImageMissing(IMAGE.into()))
        );
        assert!(rt.list("n1").await.unwrap().is_empty());
        assert_eq!(rt.calls(), [Call::Create { name: "a".into() }]);
    }

    #[tokio::test]
    async fn fail_next_create_fails_exactly_once() {
        let rt = runtime();
        rt.fail_next_create(RuntimeError::Failed("disk full".into()));
        assert_eq!(
            rt.create_and_start(&spec("n1", "a")).await,
            Err(RuntimeError::Failed("disk full".into()))
        );
        assert!(rt.list("n1").await.unwrap().is_empty());
        assert_eq!(
            rt.create_and_start(&spec("n1", "a")).await,
            Ok("mem-1".into())
        );
    }

    #[tokio::test]
    async fn a_taken_name_is_a_clear_failure() {
        let rt = runtime();
        rt.create_and_start(&spec("n1", "a")).await.unwrap();
        let Err(RuntimeError::Failed(message)) = rt.create_and_start(&spec("n1", "a")).await else {
            panic!("a second container named a was created");
        };
        assert!(message.contains("already exists (mem-1)"), "{message}");
    }

    #[tokio::test]
    async fn kill_exits_the_container_and_tells_only_its_nodes_watchers() {
        let rt = runtime();
        let mut n1 = rt.watch("n1");
        let mut n2 = rt.watch("n2");
        let id = rt.create_and_start(&spec("n1", "a")).await.unwrap();
        rt.set_clock_ms(9_000);
        rt.kill(&id, 137).unwrap();

        assert_eq!(n1.try_recv(), Ok(event(&id, "start")));
        assert_eq!(n1.try_recv(), Ok(event(&id, "die")));
        assert!(n2.try_recv().is_err());
        let observed = &rt.list("n1").await.unwrap()[0];
        assert_eq!(observed.state, ContainerState::Exited { code: 137 });
        assert_eq!(observed.finished_at_ms, 9_000);
        assert!(
            observed.ports.is_empty(),
            "like Docker, an exited container publishes nothing"
        );

        assert!(matches!(rt.kill(&id, 1), Err(RuntimeError::Failed(_))));
        assert_eq!(
            rt.kill("mem-9", 1),
            Err(RuntimeError::NotFound("mem-9".into()))
        );
    }

    #[tokio::test]
    async fn start_runs_an_exited_container_again_on_new_host_ports() {
        let rt = runtime();
        let mut events = rt.watch("n1");
        let id = rt.create_and_start(&spec("n1", "a")).await.unwrap();
        rt.kill(&id, 1).unwrap();
        rt.set_clock_ms(20_000);
        rt.start(&id).await.unwrap();
        rt.start(&id).await.unwrap(); // already running: nothing happens

        let observed = &rt.list("n1").await.unwrap()[0];
        assert_eq!(
            (observed.id.as_str(), observed.state),
            (id.as_str(), ContainerState::Running)
        );
        assert_eq!(observed.started_at_ms, 20_000);
        assert_eq!(host_ports(observed), [30002, 30003]);
        let actions: Vec<String> = std::iter::from_fn(|| events.try_recv().ok())
            .map(|e| e.action)
            .collect();
        assert_eq!(actions, ["start", "die", "start"]);
        assert_eq!(
            rt.start("mem-9").await,
            Err(RuntimeError::NotFound("mem-9".into()))
        );
    }

    #[tokio::test]
    async fn remove_is_idempotent_and_reports_die_then_destroy() {
        let rt = runtime();
        let id = rt.create_and_start(&spec("n1", "a")).await.unwrap();
        let mut events = rt.watch("n1");
        rt.remove(&id).await.unwrap();
        rt.remove(&id).await.unwrap();

        assert!(rt.list("n1").await.unwrap().is_empty());
        assert_eq!(events.try_recv(), Ok(event(&id, "die")));
        assert_eq!(events.try_recv(), Ok(event(&id, "destroy")));
        assert!(events.try_recv().is_err());
        assert_eq!(
            log_text(rt.logs(&id, &LogOptions::default())).await,
            Err(RuntimeError::NotFound(id.clone()))
        );
    }

    #[tokio::test]
    async fn logs_keep_the_last_lines() {
        let rt = runtime();
        let id = rt.create_and_start(&spec("n1", "a")).await.unwrap();
        rt.kill(&id, 3).unwrap();
        let logs = |tail| {
            let options = LogOptions {
                tail,
                ..LogOptions::default()
            };
            log_text(rt.logs(&id, &options))
        };
        assert_eq!(logs(None).await.unwrap(), "started a\nexited with code 3\n");
        assert_eq!(logs(Some(1)).await.unwrap(), "exited with code 3\n");
        assert_eq!(logs(Some(0)).await.unwrap(), "");
        let missing = rt.logs("nope", &LogOptions::default());
        assert!(matches!(
            log_text(missing).await,
            Err(RuntimeError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn every_call_is_recorded_in_order() {
        let rt = runtime();
        let id = rt.create_and_start(&spec("n1", "a")).await.unwrap();
        rt.start(&id).await.unwrap();
        rt.remove(&id).await.unwrap();
        rt.remove("mem-9").await.unwrap();
        assert_eq!(
            rt.calls(),
            [
                Call::Create { name: "a".into() },
                Call::Start { id: id.clone() },
                Call::Remove { id },
                Call::Remove { id: "mem-9".into() },
            ]
        );
    }

    #[tokio::test]
    async fn watchers_are_bounded_and_forgotten_when_dropped() {
        let rt = runtime();
        let mut slow = rt.watch("n1");
        let dropped = rt.watch("n1");
        drop(dropped);
        for i in 0..(WATCH_CAPACITY + 10) {
            rt.create_and_start(&spec("n1", &format!("c{i}")))
                .await
                .unwrap();
        }
        assert_eq!(rt.state().watchers.len(), 1);
        let delivered = std::iter::from_fn(|| slow.try_recv().ok()).count();
        assert_eq!(delivered, WATCH_CAPACITY);
    }

    #[tokio::test]
    async fn clones_share_one_runtime() {
        let rt = runtime();
        let other = rt.clone();
        other.create_and_start(&spec("n1", "a")).await.unwrap();
        assert_eq!(rt.list("n1").await.unwrap().len(), 1);
    }
}
