//! Three nodes in one process: the real agent (its driver and `NodeCore`) over the
//! in-memory transport, container runtime and disk. The integration tests in
//! the repository's `tests/` run real processes on real Docker; this one shows that the same
//! node runs, and stops, inside a process.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;
use weeble_core::document::{Op, WriteError};
use weeble_core::keys::NodeKey;
use weeble_core::objects::{List, Node, Pod};
use weeble_core::status::Phase;
use weeble_core::wire::{PodAnswer, PodLog, PodRef, PodRequest};
use weeble_crdt::parse_manifests;
use weeble_node::agent::{self, Adapters, Agent, NodeConfig};
use weeble_node::api::{self, ApiOptions};
use weeble_node::membership::Liveness;
use weeble_node::probe::MemoryProbes;
use weeble_node::proxy::net::{MemoryNet, Net};
use weeble_node::runtime::memory::{Call, MemoryRuntime};
use weeble_node::runtime::{ContainerRuntime, ContainerState};
use weeble_node::shutdown::Stop;
use weeble_node::store::disk::MemoryDisk;
use weeble_node::transport::memory::Switchboard;
use weeble_node::transport::{LocalDigest, Transport};

/// Where node `i` serves every service (each node has its own, as on a LAN).
fn service_ip(i: usize) -> IpAddr {
    IpAddr::from([127, 0, 0, 20 + i as u8])
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9400 + i as u16))
}

/// A fresh data directory for node `i` of test `test` (it keeps the known peers; the state
/// file is on an in-memory disk).
fn data_dir(test: &str, i: usize) -> PathBuf {
    let name = format!("weeble-in-process-{}-{test}-n{i}", std::process::id());
    let dir = std::env::temp_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Three nodes n0, n1, n2 in this process, each with its in-memory disk, over one
/// switchboard and one in-memory runtime (with the image `img:1`) on the nodes' clock. The
/// nodes read registry credentials from [`Bed::credentials`], which no test but the one
/// about pulls writes.
struct Bed {
    board: Switchboard,
    runtime: MemoryRuntime,
    probes: MemoryProbes,
    /// Where the nodes' service proxies listen, and the containers' servers.
    net: MemoryNet,
    disks: Vec<MemoryDisk>,
    nodes: Vec<Agent>,
    /// The nodes' `--registry-auth` file.
    credentials: PathBuf,
}

impl Bed {
    /// Starts the nodes for test `test`, and waits until each sees the three alive.
    async fn start(test: &str) -> Bed {
        let mut bed = Bed {
            board: Switchboard::default(),
            runtime: MemoryRuntime::on_node_clock(),
            probes: MemoryProbes::default(),
            net: MemoryNet::default(),
            disks: (0..3).map(|_| MemoryDisk::default()).collect(),
            nodes: Vec::new(),
            credentials: data_dir(test, 9).with_extension("json"),
        };
        bed.runtime.add_image("img:1");
        for i in 0..3 {
            let node = bed.node(test, i).await;
            bed.nodes.push(node);
        }
        until("every node sees three members alive", async || {
            bed.nodes.iter().all(|n| alive(n).len() == 3)
        })
        .await;
        bed
    }

    /// Starts node `i`.
    async fn node(&self, test: &str, i: usize) -> Agent {
        let dir = data_dir(test, i);
        let mut config = NodeConfig::new(format!("n{i}"), dir, addr(i), addr(100 + i));
        config.join = vec![addr(0)];
        config.service_ip = Some(service_ip(i));
        config.dns_port = 0;
        config.resync = Duration::from_secs(1);
        config.join_grace = Duration::from_millis(500);
        config.registry_auth = Some(self.credentials.clone());
        let digest = Arc::new(LocalDigest::default());
        let key = NodeKey::numbered(i);
        let (transport, events) = self.board.attach(addr(i), key.peer_id(), digest.clone());
        let adapters = Adapters {
            key,
            runtime: self.runtime.clone(),
            checker: self.probes.clone(),
            services: self.net.clone(),
            transport,
            events,
            digest,
            disk: Box::new(self.disks[i].clone()),
        };
        let (stop, shutdown) = Stop::new();
        agent::start_on(config, adapters, stop, shutdown)
            .await
            .expect("the node starts")
    }

    /// Running containers per node, n0..n2.
    async fn running(&self) -> Vec<usize> {
        let mut counts = Vec::new();
        for i in 0..3 {
            let all = self.runtime.list(&format!("n{i}")).await.unwrap();
            counts.push(
                all.iter()
                    .filter(|c| c.state == ContainerState::Running)
                    .count(),
            );
        }
        counts
    }
}

/// Stops every node and removes its data directory.
impl Drop for Bed {
    fn drop(&mut self) {
        for node in &self.nodes {
            node.stop();
            let _ = std::fs::remove_dir_all(&node.config.data_dir);
        }
        let _ = std::fs::remove_file(&self.credentials);
    }
}

/// Waits (at most 30 s) until `done` holds.
async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..300 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

fn deployment(replicas: u32) -> Vec<weeble_crdt::Object> {
    with_container(replicas, "{name: web, image: img:1}")
}

/// Deployment `web` of `replicas` pods of one container, given in YAML's flow style.
fn with_container(replicas: u32, container: &str) -> Vec<weeble_crdt::Object> {
    let manifest = format!(
        "kind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: {replicas}\n  template:\n    \
         metadata: {{labels: {{app: web}}}}\n    spec:\n      containers:\n      - {container}\n"
    );
    parse_manifests(&manifest).unwrap().objects
}

/// `method path` at node `i`'s API, called as a service in this process (no socket): the
/// status and the body.
async fn call(bed: &Bed, i: usize, method: Method, path: &str) -> (StatusCode, String) {
    let app = api::app(
        ApiOptions::default(),
        bed.nodes[i].clone(),
        bed.runtime.clone(),
    );
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 16 << 20)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// GET `path` from node `i`'s API, which must answer it.
async fn get<T: serde::de::DeserializeOwned>(bed: &Bed, i: usize, path: &str) -> T {
    let (status, body) = call(bed, i, Method::GET, path).await;
    assert!(status.is_success(), "GET {path}: {status} {body}");
    serde_json::from_slice(body.as_bytes()).unwrap()
}

fn alive(agent: &Agent) -> Vec<String> {
    let view = agent.view.borrow();
    let live = view.members.iter().filter(|(_, l)| *l == Liveness::Alive);
    live.map(|(m, _)| m.name.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_in_one_process_run_a_deployment_and_move_it_off_a_stopped_node() {
    let bed = Bed::start("moved").await;
    let nodes = &bed.nodes;
    nodes[0].write(Op::Apply(deployment(6))).await.unwrap();
    assert_eq!(
        nodes[0].snapshot.borrow().deployments.len(),
        1,
        "an acknowledged write is in the node's snapshot"
    );
    until("six replicas run, spread over the nodes", async || {
        let counts = bed.running().await;
        counts.iter().sum::<usize>() == 6 && counts.iter().all(|c| *c > 0)
    })
    .await;
    until("every node's status table shows the six pods", async || {
        nodes.iter().all(|n| n.table.borrow().pods().len() == 6)
    })
    .await;
    // n2's API, called in the process: the six pods, Running, on the three nodes.
    let pods: List<Pod> = get(&bed, 2, "/api/v1/namespaces/default/pods").await;
    assert_eq!(pods.items.len(), 6);
    assert!(pods.items.iter().all(|p| p.status.phase == Phase::Running));
    let hosts: BTreeSet<_> = pods
        .items
        .iter()
        .filter_map(|p| p.spec.node_name.clone())
        .collect();
    assert_eq!(hosts.len(), 3, "{hosts:?}");

    // n2 stops inside the process; its containers keep running, as after SIGKILL.
    nodes[2].stop();
    bed.board.detach(addr(2));
    let before = bed.running().await[2];
    until("n0 and n1 find n2 gone", async || {
        nodes[..2].iter().all(|n| alive(n) == ["n0", "n1"])
    })
    .await;
    until("n2's replicas run on n0 and n1", async || {
        let counts = bed.running().await;
        counts[0] + counts[1] == 6
    })
    .await;
    assert_eq!(
        bed.running().await[2],
        before,
        "a stopped node's reconciler does nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_disk_is_full_refuses_writes_and_takes_no_pods_until_it_has_room() {
    let bed = Bed::start("full").await;
    let (nodes, disks) = (&bed.nodes, &bed.disks);
    // n1's disk fills up: no append and no rewrite of its state file fits any more.
    disks[1].set_capacity(0);
    let refused = nodes[1].write(Op::Apply(deployment(6))).await;
    assert!(
        matches!(refused, Err(WriteError::NotPersisted(_))),
        "{refused:?}"
    );
    until("every node sees n1 take no pods", async || {
        nodes
            .iter()
            .all(|n| n.table.borrow().unschedulable().contains("n1"))
    })
    .await;
    let listed: List<Node> = get(&bed, 0, "/api/v1/nodes").await;
    let n1 = listed.items.iter().find(|n| n.metadata.name == "n1");
    let conditions = &n1.expect("n1 listed").status.conditions;
    let reasons: Vec<_> = conditions.iter().filter_map(|c| c.reason.clone()).collect();
    assert_eq!(
        reasons,
        ["StateNotPersisted"],
        "n0's API says why n1 is not Ready"
    );
    nodes[0].write(Op::Apply(deployment(6))).await.unwrap();
    until("the six replicas run on n0 and n2", async || {
        let counts = bed.running().await;
        counts[0] + counts[2] == 6
    })
    .await;
    assert_eq!(bed.running().await[1], 0, "nothing runs on the full node");
    assert!(
        nodes[1].snapshot.borrow().deployments.is_empty(),
        "n1 could not take the write in"
    );

    disks[1].set_capacity(usize::MAX);
    until(
        "n1 has room again, holds the write and takes its share",
        async || {
            let ready = nodes
                .iter()
                .all(|n| n.table.borrow().unschedulable().is_empty());
            ready && bed.running().await[1] > 0
        },
    )
    .await;
    assert_eq!(
        nodes[1].snapshot.borrow().heads,
        nodes[0].snapshot.borrow().heads
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_image_is_pulled_once_the_credentials_file_has_the_right_user() {
    let bed = Bed::start("pulled").await;
    bed.runtime.add_to_registry("private:1", Some("alice"));
    let login = |user: &str| {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:pw"));
        let file = format!(r#"{{"auths": {{"docker.io": {{"auth": "{auth}"}}}}}}"#);
        std::fs::write(&bed.credentials, file).unwrap();
    };
    login("bob");
    let nodes = &bed.nodes;
    let objects = with_container(3, "{name: web, image: private:1}");
    nodes[0].write(Op::Apply(objects)).await.unwrap();
    // At another node's API: a pod waits on the refused pull, and says why.
    until("a pod waits on a pull the registry refused", async || {
        let pods: List<Pod> = get(&bed, 2, "/api/v1/namespaces/default/pods").await;
        pods.items.iter().any(|p| {
            let said = serde_json::to_string(&p.status.container_statuses).unwrap();
            said.contains("ImagePullBackOff") && said.contains("unauthorized")
        })
    })
    .await;
    assert_eq!(bed.running().await, [0, 0, 0]);
    login("alice");
    until(
        "the next pulls bring the image and the pods run",
        async || bed.running().await.iter().sum::<usize>() == 3,
    )
    .await;
    let pulled = |c: &Call| matches!(c, Call::Pull { image } if image == "private:1");
    assert!(bed.runtime.calls().iter().any(pulled));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_whose_liveness_probe_fails_is_killed_and_restarted() {
    let bed = Bed::start("probed").await;
    let probe = "livenessProbe: {exec: {command: [check]}, periodSeconds: 1, failureThreshold: 1}";
    let container = format!("{{name: web, image: img:1, {probe}}}");
    bed.nodes[0]
        .write(Op::Apply(with_container(1, &container)))
        .await
        .unwrap();
    let running = async || {
        let mut ids = Vec::new();
        for i in 0..3 {
            let all = bed.runtime.list(&format!("n{i}")).await.unwrap();
            let up = all
                .into_iter()
                .filter(|c| c.state == ContainerState::Running);
            ids.extend(up.map(|c| c.id));
        }
        ids
    };
    until("the pod runs", async || running().await.len() == 1).await;
    let id = running().await.remove(0);
    bed.probes.set_failing(&id, true);
    until("every node sees the pod restarted", async || {
        let restarted = |n: &Agent| n.table.borrow().pods().iter().any(|p| p.restarts >= 1);
        bed.nodes.iter().all(restarted)
    })
    .await;
    let calls = bed.runtime.calls();
    assert!(
        calls.contains(&Call::Terminate { id: id.clone() }),
        "the failing container was killed: {calls:?}"
    );
    assert!(
        calls.contains(&Call::Start { id: id.clone() }),
        "and started again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_s_service_port_reaches_the_replicas_in_turn() {
    let bed = Bed::start("served").await;
    let mut objects = with_container(3, "{name: web, image: img:1, ports: [{containerPort: 80}]}");
    let service = "kind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 8080, targetPort: 80}]\n";
    objects.extend(parse_manifests(service).unwrap().objects);
    bed.nodes[0].write(Op::Apply(objects)).await.unwrap();
    until("three replicas run", async || {
        bed.running().await.iter().sum::<usize>() == 3
    })
    .await;
    // Each container's server, on its published port, says which pod it is.
    for i in 0..3 {
        for c in bed.runtime.list(&format!("n{i}")).await.unwrap() {
            let port = c.ports[0];
            let pod = c.labels["weeble.pod"].clone();
            let at = SocketAddr::new(port.host_ip, port.host_port);
            let serve = move |mut conn: weeble_node::proxy::net::MemoryStream| {
                let pod = pod.clone();
                async move {
                    let _ = conn.write_all(pod.as_bytes()).await;
                }
            };
            bed.net.serve(at, serve).await.unwrap();
        }
    }
    until("every node has the three endpoints", async || {
        bed.nodes.iter().all(|n| {
            let endpoints = n.endpoints.borrow();
            endpoints
                .values()
                .flatten()
                .map(|p| p.ready.len())
                .sum::<usize>()
                == 3
        })
    })
    .await;
    for i in 0..3 {
        let mut answered = BTreeSet::new();
        for _ in 0..3 {
            let at = SocketAddr::new(service_ip(i), 8080);
            let mut conn = bed.net.connect(at).await.expect("the node serves the port");
            let mut pod = String::new();
            conn.read_to_string(&mut pod).await.unwrap();
            answered.insert(pod);
        }
        assert_eq!(
            answered.len(),
            3,
            "n{i}'s port takes the replicas in turn: {answered:?}"
        );
    }
}

/// What kubectl and the Python client ask of any node, done on the pod's node: its logs, with
/// every parameter as the client gave it, and its deletion (`weeble_node::pods`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_s_logs_and_deletion_asked_at_another_node_are_done_on_its_node() {
    let bed = Bed::start("podlogs").await;
    let two = "{name: web, image: img:1}\n      - {name: side, image: img:1}";
    bed.nodes[0]
        .write(Op::Apply(with_container(3, two)))
        .await
        .unwrap();
    until("n0 sees the three pods running", async || {
        let pods: List<Pod> = get(&bed, 0, "/api/v1/namespaces/default/pods").await;
        let running = pods
            .items
            .iter()
            .filter(|p| p.status.phase == Phase::Running);
        running.count() == 3
    })
    .await;
    let pods: List<Pod> = get(&bed, 0, "/api/v1/namespaces/default/pods").await;
    let pod = pods
        .items
        .iter()
        .find(|p| p.spec.node_name.as_deref() != Some("n0"))
        .expect("a pod on another node than n0");
    let (name, node) = (&pod.metadata.name, pod.spec.node_name.clone().unwrap());
    let containers = bed.runtime.list(&node).await.unwrap();
    let id_of = |container: &str| {
        let c = containers.iter().find(|c| {
            c.labels.get("weeble.pod") == Some(name)
                && c.labels.get("weeble.container").map(String::as_str) == Some(container)
        });
        c.expect("the pod's container on its node").id.clone()
    };
    let (side, web) = (id_of("side"), id_of("web"));

    let path = format!("/api/v1/namespaces/default/pods/{name}");
    let asked = format!(
        "{path}/log?container=side&follow=true&tailLines=1&sinceSeconds=60&timestamps=true"
    );
    let before = bed.runtime.calls().len();
    let (status, body) = call(&bed, 0, Method::GET, &asked).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let last = format!("started weeble_{node}_default_{name}_side\n");
    assert_eq!(body, last, "the last line of side's output, read on {node}");
    let logs: Vec<_> = bed.runtime.calls()[before..]
        .iter()
        .filter_map(|call| match call {
            Call::Logs { id, options } => Some((id.clone(), options.clone())),
            _ => None,
        })
        .collect();
    let [(id, options)] = &logs[..] else {
        panic!("one read of a log: {logs:?}");
    };
    assert_eq!(id, &side, "the container asked for");
    let now_s = weeble_node::clock::now_ms() / 1000;
    let since = options.since_s.expect("sinceSeconds is kept");
    assert!(
        (now_s - 65..=now_s - 55).contains(&since),
        "{since} vs {now_s}"
    );
    assert_eq!(
        (options.tail, options.follow, options.timestamps),
        (Some(1), true, true),
        "every parameter reaches the pod's node"
    );

    // A log of many parts comes whole, in order.
    let lines: Vec<String> = (0..6000)
        .map(|i| format!("line {i:05} {}", "x".repeat(100)))
        .collect();
    for line in &lines {
        bed.runtime.write(&web, line);
    }
    let (status, body) = call(&bed, 0, Method::GET, &format!("{path}/log?container=web")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.len() > 2 * weeble_core::wire::MAX_LOG_PART,
        "{}",
        body.len()
    );
    assert!(
        body.ends_with(&format!("{}\n", lines.join("\n"))),
        "the whole output, in order"
    );

    // The pod's node's refusal is the answer, with its code and words.
    let (status, body) = call(&bed, 0, Method::GET, &format!("{path}/log")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("choose one of: [side web]"), "{body}");

    let before = bed.runtime.calls().len();
    let (status, body) = call(&bed, 0, Method::DELETE, &path).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let removed: BTreeSet<_> = bed.runtime.calls()[before..]
        .iter()
        .filter_map(|call| match call {
            Call::Remove { id } => Some(id.clone()),
            _ => None,
        })
        .collect();
    assert!(
        removed.contains(&side) && removed.contains(&web),
        "both containers go, on {node}: {removed:?}"
    );
}

/// A peer the cluster does not admit is refused a pod's log (403) and disconnected, as it is
/// refused everything else; an admitted one is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_not_admitted_is_refused_a_pod_s_log() {
    let bed = Bed::start("podintruder").await;
    bed.nodes[0].write(Op::Apply(deployment(3))).await.unwrap();
    until("a pod runs on n0", async || {
        let pods: List<Pod> = get(&bed, 0, "/api/v1/namespaces/default/pods").await;
        pods.items
            .iter()
            .any(|p| p.spec.node_name.as_deref() == Some("n0") && p.status.phase == Phase::Running)
    })
    .await;
    let pods: List<Pod> = get(&bed, 0, "/api/v1/namespaces/default/pods").await;
    let on_n0 = pods
        .items
        .iter()
        .find(|p| p.spec.node_name.as_deref() == Some("n0"))
        .unwrap();
    let pod = PodRef {
        name: on_n0.metadata.name.clone(),
        deployment: Some("default/web".into()),
    };
    let n0 = bed.nodes[1]
        .view
        .borrow()
        .members
        .iter()
        .find(|(m, _)| m.name == "n0")
        .unwrap()
        .0
        .clone();
    // An intruder with the cluster's transport (and key) but its own peer id.
    let intruder = NodeKey::numbered(9).peer_id();
    let digest = Arc::new(LocalDigest::default());
    let (transport, _events) = bed.board.attach(addr(9), intruder.clone(), digest);
    let ask = || PodRequest::Log {
        pod: pod.clone(),
        log: PodLog::default(),
    };
    let served = transport.pod(n0.clone(), ask()).await.unwrap();
    assert!(matches!(served, PodAnswer::Log { .. }), "{served:?}");

    let deny = format!("/apis/weeble.io/v1/peers/{intruder}/deny");
    let (status, body) = call(&bed, 0, Method::POST, &deny).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let refused = transport.pod(n0, ask()).await.unwrap();
    assert!(
        matches!(&refused, PodAnswer::Refused { status: 403, message } if message.contains("does not admit")),
        "{refused:?}"
    );
}
