//! Real clusters as scenario backends. [`Real`] answers the runner from `docker ps` (which pods
//! run where, by the labels Weeble puts on its containers) and from the nodes' own APIs (the
//! desired state, which peers each node holds alive, the document's heads); it sends writes to
//! the API of the node a step names, and runs each steady client as a thread that asks the
//! service's port on its node over TCP. How nodes start, die, freeze and lose the network is its
//! [`Host`]'s: processes on loopback ([`super::process`]).

use crate::client::Client;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use weeble_crdt::Labels;
use weeble_scenario::backend::{
    Backend, BackendError, ClientCount, Held, Holdings, NodeState, Observation, RunningPod,
};
use weeble_scenario::spec::{Action, ClientSpec, Cluster};

/// How long one look at a node's API may take (a node that does not answer in time is
/// counted as holding nothing).
const LOOK_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the nodes may take to see each other at the start.
const FORM_MAX: Duration = Duration::from_secs(60);

/// How long a client's request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// What starts, stops, freezes and cuts off the nodes of a real cluster.
pub trait Host {
    fn name(&self) -> &'static str;

    /// Why it cannot carry out `action`, if it cannot (the writes and clients are [`Real`]'s).
    fn cannot(&self, action: &Action) -> Option<String>;

    /// Starts node `i` with `labels` (joining node 0 unless it is node 0), or again after a
    /// kill with what it had.
    fn boot(&mut self, i: usize, cluster: &Cluster, labels: &Labels) -> Result<(), String>;

    /// Node `i` dies with its containers.
    fn kill(&mut self, i: usize) -> Result<(), String>;

    /// Node `i` freezes (`true`) or runs again.
    fn freeze(&mut self, i: usize, frozen: bool) -> Result<(), String>;

    /// A partition, cut, bad link, heal, disconnect, connect or offline reboot.
    fn network(&mut self, action: &Action, cluster: &Cluster) -> Result<(), String>;

    /// What every node's name starts with: unique to the run.
    fn tag(&self) -> &str;

    /// Node `i`'s address: its API (port 7070), its p2p port (7946) and its services.
    fn ip(&self, i: usize) -> String;

    /// Node `i`'s name: its containers' `weeble.node` label.
    fn node_name(&self, i: usize) -> String {
        format!("{}-{i}", self.tag())
    }

    /// Node `i`'s API, as a URL.
    fn api(&self, i: usize) -> String {
        format!("http://{}:7070", self.ip(i))
    }

    /// Removes everything it started.
    fn clean_up(&mut self);
}

/// A node's command line (`weeble node ...`): the scenario's detection, labels, capacity and
/// pod limit, JSON logs, joining `join` if given.
pub fn node_args(
    name: &str,
    data_dir: &str,
    p2p: &str,
    api: &str,
    join: Option<String>,
    cluster: &Cluster,
    labels: &Labels,
) -> Vec<String> {
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    let d = &cluster.detection;
    let mut args: Vec<String> = [
        "node",
        "--name",
        name,
        "--data-dir",
        data_dir,
        "--p2p",
        p2p,
        "--api",
        api,
        "--log-format",
        "json",
        "--probe-interval",
        &ms(d.probe_period),
        "--probe-timeout",
        &ms(d.probe_rtt),
        "--suspect-timeout",
        &ms(d.suspect_to_down),
    ]
    .map(String::from)
    .into();
    if let Some(join) = join {
        args.extend(["--join".into(), join]);
    }
    for (k, v) in labels {
        args.extend(["--label".into(), format!("{k}={v}")]);
    }
    let mut capacity = Vec::new();
    if let Some(cpu) = cluster.cpu_millis {
        capacity.push(format!("cpu={cpu}m"));
    }
    if let Some(memory) = cluster.memory_bytes {
        capacity.push(format!("memory={memory}"));
    }
    if !capacity.is_empty() {
        args.extend(["--capacity".into(), capacity.join(",")]);
    }
    if let Some(pods) = cluster.max_pods {
        args.extend(["--max-pods".into(), pods.to_string()]);
    }
    args
}

/// A steady client's thread.
struct ClientThread {
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    answered: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

pub struct Real<H: Host> {
    host: H,
    cluster: Cluster,
    states: Vec<NodeState>,
    started: Instant,
    acks: BTreeMap<u64, bool>,
    clients: BTreeMap<usize, ClientThread>,
    added_labels: Vec<Labels>,
}

impl<H: Host> Real<H> {
    pub fn new(host: H, added_labels: Vec<Labels>) -> Self {
        Real {
            host,
            cluster: Cluster::default(),
            states: Vec::new(),
            started: Instant::now(),
            acks: BTreeMap::new(),
            clients: BTreeMap::new(),
            added_labels,
        }
    }

    fn api(&self, i: usize) -> Client {
        Client::with_timeout(&self.host.api(i), LOOK_TIMEOUT)
    }

    fn labels(&self, i: usize) -> Labels {
        match i.checked_sub(self.cluster.nodes) {
            None => self.cluster.labels.get(&i).cloned().unwrap_or_default(),
            Some(added) => self.added_labels.get(added).cloned().unwrap_or_default(),
        }
    }

    fn up(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.states.len()).filter(|&i| self.states[i] == NodeState::Up)
    }

    fn boot(&mut self, i: usize) -> Result<(), String> {
        let labels = self.labels(i);
        self.host.boot(i, &self.cluster, &labels)?;
        self.states[i] = NodeState::Up;
        Ok(())
    }

    /// The names of the nodes `i` holds alive (not declared dead), if it answers.
    fn alive_seen(&self, i: usize) -> Option<BTreeSet<String>> {
        let nodes: Value = self.api(i).get("/api/v1/nodes").ok()?;
        let items = nodes["items"].as_array()?;
        let alive = items
            .iter()
            .filter(|n| n["metadata"]["annotations"]["weeble.io/liveness"] != "Down");
        Some(
            alive
                .filter_map(|n| Some(n["metadata"]["name"].as_str()?.to_string()))
                .collect(),
        )
    }

    /// The write `action` at node `on`; `Ok` once the node acknowledged it.
    fn write(&self, action: &Action, on: usize) -> anyhow::Result<()> {
        let api = Client::new(&self.host.api(on));
        let deployment =
            |name: &str| format!("/apis/apps/v1/namespaces/default/deployments/{name}");
        match action {
            Action::Apply(m) => api
                .post_text::<Value>("/apis/weeble.io/v1/apply", &m.text)
                .map(drop),
            Action::Scale {
                deployment: d,
                replicas,
            } => {
                let body = serde_json::json!({"spec": {"replicas": replicas}});
                api.put_json::<Value>(&format!("{}/scale", deployment(d)), &body)
                    .map(drop)
            }
            Action::Delete { deployment: d } => api.delete(&deployment(d)).map(drop),
            Action::Update {
                deployment: d,
                image,
                env,
            } => {
                let mut object: Value = api.get(&deployment(d))?;
                let container = &mut object["spec"]["template"]["spec"]["containers"][0];
                if let Some(image) = image {
                    container["image"] = image.clone().into();
                }
                let mut vars: Vec<Value> = container["env"].as_array().cloned().unwrap_or_default();
                for (name, value) in env {
                    vars.retain(|v| v["name"] != name.as_str());
                    vars.push(serde_json::json!({"name": name, "value": value}));
                }
                container["env"] = vars.into();
                let manifest = serde_json::json!({
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": d, "namespace": "default", "annotations": object["metadata"]["annotations"]},
                    "spec": object["spec"],
                });
                api.post_text::<Value>("/apis/weeble.io/v1/apply", &manifest.to_string())
                    .map(drop)
            }
            other => anyhow::bail!("{} is not a write", other.name()),
        }
    }
}

impl<H: Host> Backend for Real<H> {
    fn name(&self) -> &'static str {
        self.host.name()
    }

    fn cannot(&self, action: &Action) -> Option<String> {
        self.host.cannot(action)
    }

    fn start(&mut self, cluster: &Cluster, total: usize) -> Result<(), BackendError> {
        self.cluster = cluster.clone();
        self.states = vec![NodeState::Absent; total];
        for i in 0..cluster.nodes {
            self.boot(i).map_err(BackendError)?;
        }
        let deadline = Instant::now() + FORM_MAX;
        loop {
            let formed = (0..cluster.nodes)
                .all(|i| self.alive_seen(i).is_some_and(|a| a.len() == cluster.nodes));
            if formed {
                self.started = Instant::now();
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(BackendError(format!(
                    "the {} nodes did not all see each other within {} s",
                    cluster.nodes,
                    FORM_MAX.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn advance(&mut self, until_ms: u64) {
        let now = self.now_ms();
        if until_ms > now {
            std::thread::sleep(Duration::from_millis(until_ms - now));
        }
    }

    fn act(&mut self, action: &Action, on: usize, write: u64) -> Result<(), String> {
        let state = |s: &Self, i: usize| s.states.get(i).copied().unwrap_or(NodeState::Absent);
        match action {
            a if a.is_write() => {
                let written = match state(self, on) {
                    NodeState::Up => self.write(a, on).map_err(|e| format!("{e:#}")),
                    other => Err(format!("node {on} is {other:?}")),
                };
                self.acks.insert(write, written.is_ok());
                written
            }
            Action::KillNode(i) if state(self, *i) == NodeState::Up => {
                self.host.kill(*i)?;
                self.states[*i] = NodeState::Down;
                Ok(())
            }
            Action::RestartNode(i) if state(self, *i) == NodeState::Down => self.boot(*i),
            Action::PauseNode(i) if state(self, *i) == NodeState::Up => {
                self.host.freeze(*i, true)?;
                self.states[*i] = NodeState::Paused;
                Ok(())
            }
            Action::ResumeNode(i) if state(self, *i) == NodeState::Paused => {
                self.host.freeze(*i, false)?;
                self.states[*i] = NodeState::Up;
                Ok(())
            }
            Action::KillContainer { pod: Some(pod), .. } => {
                let name = pod.rsplit('/').next().unwrap_or(pod);
                let nodes: Vec<String> = self.up().map(|i| self.host.node_name(i)).collect();
                let running = containers()?;
                let id = running
                    .iter()
                    .find(|c| c.pod == name && nodes.contains(&c.node))
                    .map(|c| c.id.clone())
                    .ok_or(format!("pod {pod} runs nowhere"))?;
                docker(&["kill", &id]).map(drop)
            }
            Action::AddNode { .. } => {
                let i = self
                    .states
                    .iter()
                    .position(|s| *s == NodeState::Absent)
                    .ok_or("no room for another node")?;
                self.boot(i)
            }
            Action::KillNode(i) | Action::PauseNode(i) => Err(format!("node {i} is not up")),
            Action::RestartNode(i) => Err(format!("node {i} is not down")),
            Action::ResumeNode(i) => Err(format!("node {i} is not paused")),
            other => {
                self.host.network(other, &self.cluster)?;
                let nodes = self.states.len();
                let mut online = |i: usize, on: bool| {
                    let (from, to) = if on {
                        (NodeState::Offline, NodeState::Up)
                    } else {
                        (NodeState::Up, NodeState::Offline)
                    };
                    if self.states[i] == from {
                        self.states[i] = to;
                    }
                };
                match other {
                    Action::Disconnect(i) | Action::RebootOffline(i) => online(*i, false),
                    Action::Connect(i) => online(*i, true),
                    Action::Heal => (0..nodes).for_each(|i| online(i, true)),
                    _ => {}
                }
                Ok(())
            }
        }
    }

    fn acknowledged(&self, id: u64) -> Option<bool> {
        self.acks.get(&id).copied()
    }

    fn start_client(&mut self, id: usize, spec: &ClientSpec) {
        let port = spec.port.or_else(|| {
            let path = format!("/api/v1/namespaces/default/services/{}", spec.service);
            let service: Value = self.api(0).get(&path).ok()?;
            service["spec"]["ports"][0]["port"]
                .as_u64()
                .map(|p| p as u16)
        });
        let addr: Option<SocketAddr> =
            port.and_then(|p| format!("{}:{p}", self.host.ip(spec.via)).parse().ok());
        let (stop, requests, answered) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let (s, r, a, interval) = (
            stop.clone(),
            requests.clone(),
            answered.clone(),
            Duration::from_millis(spec.interval_ms),
        );
        let thread = std::thread::spawn(move || {
            let mut next = Instant::now();
            while !s.load(Ordering::Relaxed) {
                r.fetch_add(1, Ordering::Relaxed);
                if addr.is_some_and(ask) {
                    a.fetch_add(1, Ordering::Relaxed);
                }
                next += interval;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        });
        self.clients.insert(
            id,
            ClientThread {
                stop,
                requests,
                answered,
                thread: Some(thread),
            },
        );
    }

    fn stop_client(&mut self, id: usize) {
        if let Some(c) = self.clients.get_mut(&id) {
            c.stop.store(true, Ordering::Relaxed);
            if let Some(thread) = c.thread.take() {
                let _ = thread.join();
            }
        }
    }

    fn client_count(&self, id: usize) -> ClientCount {
        self.clients
            .get(&id)
            .map_or_else(ClientCount::default, |c| ClientCount {
                requests: c.requests.load(Ordering::Relaxed),
                answered: c.answered.load(Ordering::Relaxed),
            })
    }

    fn observe(&mut self) -> Observation {
        let names: BTreeMap<String, usize> = (0..self.states.len())
            .map(|i| (self.host.node_name(i), i))
            .collect();
        let running = containers()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| {
                let node = *names.get(&c.node)?;
                (self.states[node] != NodeState::Down).then(|| RunningPod {
                    pod: format!("{}/{}", c.namespace, c.pod),
                    deployment: c.deployment,
                    node,
                })
            })
            .collect();
        let desired = self
            .up()
            .find_map(|i| self.api(i).get::<Value>("/apis/apps/v1/deployments").ok())
            .map(|list| {
                let items = list["items"].as_array().cloned().unwrap_or_default();
                items
                    .iter()
                    .filter_map(|d| {
                        Some((
                            d["metadata"]["name"].as_str()?.to_string(),
                            d["spec"]["replicas"].as_u64()? as u32,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let alive_seen = (0..self.states.len())
            .map(|i| {
                let seen = (self.states[i] == NodeState::Up)
                    .then(|| self.alive_seen(i))
                    .flatten()?;
                Some(seen.iter().filter_map(|n| names.get(n).copied()).collect())
            })
            .collect();
        let heads: Vec<Option<Value>> = self
            .up()
            .map(|i| {
                self.api(i)
                    .get::<Value>("/apis/weeble.io/v1/state")
                    .ok()
                    .map(|s| s["heads"].clone())
            })
            .collect();
        let agreed = heads.iter().all(|h| h.is_some() && *h == heads[0]);
        Observation {
            nodes: self.states.clone(),
            running,
            desired,
            alive_seen,
            agreed,
        }
    }

    fn holdings(&mut self, i: usize) -> Option<Holdings> {
        let api = self.api(i);
        let deployments: Value = api.get("/apis/apps/v1/deployments").ok()?;
        let services: Value = api.get("/api/v1/services").ok()?;
        let mut held = Holdings::new();
        for d in deployments["items"].as_array()? {
            let container = &d["spec"]["template"]["spec"]["containers"][0];
            let env = container["env"].as_array().into_iter().flatten();
            let conditions = d["status"]["conditions"].as_array().into_iter().flatten();
            let reverted = conditions
                .filter(|c| c["reason"] == "RolledBack")
                .find_map(|c| c["message"].as_str().map(String::from));
            held.insert(
                format!("Deployment/{}", d["metadata"]["name"].as_str()?),
                Held {
                    replicas: d["spec"]["replicas"].as_u64().map(|r| r as u32),
                    image: container["image"].as_str().map(String::from),
                    env: env
                        .filter_map(|e| {
                            Some((
                                e["name"].as_str()?.to_string(),
                                e["value"].as_str()?.to_string(),
                            ))
                        })
                        .collect(),
                    reverted,
                },
            );
        }
        for s in services["items"].as_array()? {
            let name = s["metadata"]["name"].as_str()?;
            held.insert(format!("Service/{name}"), Held::default());
        }
        Some(held)
    }
}

impl<H: Host> Drop for Real<H> {
    fn drop(&mut self) {
        let ids: Vec<usize> = self.clients.keys().copied().collect();
        for id in ids {
            self.stop_client(id);
        }
        self.host.clean_up();
        sweep_workloads(self.host.tag());
    }
}

/// How many times [`sweep_workloads`] looks at most, and how long apart.
const SWEEPS: usize = 10;
const SWEEP_EVERY: Duration = Duration::from_millis(500);

/// Removes every workload container of the run's nodes (named `TAG-N`), looking again until
/// two looks in a row find none: the engine may still finish a create that a node asked for
/// just before it was killed (a kill-node run once left two such containers behind).
fn sweep_workloads(tag: &str) {
    let prefix = format!("{tag}-");
    let format = r#"{{.ID}} {{.Label "weeble.node"}}"#;
    let mut empty_looks = 0;
    for _ in 0..SWEEPS {
        let listed = docker(&[
            "ps",
            "-a",
            "--filter",
            "label=weeble.node",
            "--format",
            format,
        ]);
        let ids: Vec<String> = listed
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, node)| node.starts_with(&prefix))
            .map(|(id, _)| id.to_string())
            .collect();
        if ids.is_empty() {
            empty_looks += 1;
            if empty_looks == 2 {
                return;
            }
        } else {
            empty_looks = 0;
            let _ = remove(&ids);
        }
        std::thread::sleep(SWEEP_EVERY);
    }
}

/// One request through a service port: whether an HTTP 200 came back in time.
fn ask(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
    let _ = stream.set_write_timeout(Some(REQUEST_TIMEOUT));
    if stream.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// A running workload container, by the labels Weeble gives it.
pub struct Container {
    pub id: String,
    pub node: String,
    pub namespace: String,
    pub deployment: String,
    pub pod: String,
}

/// Every running container Weeble made, on this machine's engine.
pub fn containers() -> Result<Vec<Container>, String> {
    let format = r#"{{.ID}}	{{.Label "weeble.node"}}	{{.Label "weeble.deployment"}}	{{.Label "weeble.pod"}}"#;
    let out = docker(&["ps", "--filter", "label=weeble.pod", "--format", format])?;
    Ok(out
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let (id, node, deployment, pod) = (
                fields.next()?,
                fields.next()?,
                fields.next()?,
                fields.next()?,
            );
            let (namespace, deployment) = deployment.split_once('/')?;
            Some(Container {
                id: id.to_string(),
                node: node.to_string(),
                namespace: namespace.to_string(),
                deployment: deployment.to_string(),
                pod: pod.to_string(),
            })
        })
        .collect())
}

/// Removes every workload container of node `node`, running or not.
pub fn remove_workloads(node: &str) -> Result<(), String> {
    let out = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=weeble.node={node}"),
    ])?;
    remove(&out.lines().map(String::from).collect::<Vec<_>>())
}

/// `docker rm -f` of `ids` (nothing to do for none).
fn remove(ids: &[String]) -> Result<(), String> {
    if ids.is_empty() {
        return Ok(());
    }
    let mut args = vec!["rm", "-f"];
    args.extend(ids.iter().map(String::as_str));
    docker(&args).map(drop)
}

/// What every real backend needs first: the Docker engine answering, and the demo image (the
/// scenarios' workload, and in it the `weeble` that `--backend docker` runs) built by `binary`.
pub fn prepare(binary: &std::path::Path) -> Result<(), String> {
    docker(&["info", "--format", "{{.ServerVersion}}"])
        .map_err(|e| format!("a real backend needs the Docker engine: {e}"))?;
    let built = Command::new(binary).args(["image", "build-demo"]).output();
    built
        .is_ok_and(|o| o.status.success())
        .then_some(())
        .ok_or_else(|| "could not build the demo image (weeble image build-demo)".into())
}

/// The longest one `docker` command may take: an engine that hangs (Docker 20.10 once never
/// finished a `docker rm -f` of ten containers) fails the run, it does not hold it forever.
const DOCKER_CALL_LIMIT_S: u32 = 120;

/// `docker ARGS`, for [`DOCKER_CALL_LIMIT_S`] at most: its output, or why it failed.
pub fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("timeout")
        .args(["--kill-after=5", &DOCKER_CALL_LIMIT_S.to_string(), "docker"])
        .args(args)
        .output()
        .map_err(|e| format!("docker: {e}"))?;
    // timeout(1)'s own exit codes: the command ran out of time (124), or was killed (137).
    if matches!(out.status.code(), Some(124 | 137)) {
        return Err(format!(
            "docker {}: no answer within {DOCKER_CALL_LIMIT_S} s (is the engine stuck?)",
            args.join(" ")
        ));
    }
    if !out.status.success() {
        return Err(format!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
