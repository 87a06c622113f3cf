//! Three nodes in one process: the real agent (its driver, `NodeCore`, store and reconciler)
//! over the in-memory transport and the in-memory container runtime. The integration tests in
//! the repository's `tests/` run real processes on real Docker; this one shows that the same
//! node runs, and stops, inside a process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use weeble_crdt::parse_manifests;
use weeble_node::agent::{self, Agent, NodeConfig};
use weeble_node::membership::Liveness;
use weeble_node::runtime::memory::MemoryRuntime;
use weeble_node::runtime::{ContainerRuntime, ContainerState};
use weeble_node::shutdown::Stop;
use weeble_node::transport::LocalDigest;
use weeble_node::transport::memory::Switchboard;

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9400 + i as u16))
}

/// A fresh data directory for node `i` of this test run.
fn data_dir(i: usize) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weeble-in-process-{}-n{i}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

async fn start(board: &Switchboard, runtime: &MemoryRuntime, i: usize) -> Agent {
    let mut config = NodeConfig::new(format!("n{i}"), data_dir(i), addr(i), addr(100 + i));
    config.join = vec![addr(0)];
    config.dns_port = 0;
    config.resync = Duration::from_secs(1);
    config.join_grace = Duration::from_millis(500);
    let digest = Arc::new(LocalDigest::default());
    let (transport, events) = board.attach(addr(i), format!("peer{i}"), digest.clone());
    let (stop, shutdown) = Stop::new();
    agent::start_on(
        config,
        runtime.clone(),
        transport,
        events,
        digest,
        stop,
        shutdown,
    )
    .await
    .expect("the node starts")
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

/// Running containers per node, n0..n2.
async fn running(runtime: &MemoryRuntime) -> Vec<usize> {
    let mut counts = Vec::new();
    for i in 0..3 {
        let all = runtime.list(&format!("n{i}")).await.unwrap();
        counts.push(
            all.iter()
                .filter(|c| c.state == ContainerState::Running)
                .count(),
        );
    }
    counts
}

fn alive(agent: &Agent) -> Vec<String> {
    let view = agent.view.borrow();
    let live = view.members.iter().filter(|(_, l)| *l == Liveness::Alive);
    live.map(|(m, _)| m.name.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_in_one_process_run_a_deployment_and_move_it_off_a_stopped_node() {
    let board = Switchboard::default();
    let runtime = MemoryRuntime::new();
    runtime.add_image("img");
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(start(&board, &runtime, i).await);
    }
    until("every node sees three members alive", async || {
        nodes.iter().all(|n| alive(n).len() == 3)
    })
    .await;

    let manifest = "kind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 6\n  template:\n    \
                    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      \
                    - {name: web, image: img}\n";
    let objects = parse_manifests(manifest).unwrap().objects;
    nodes[0].store.apply(objects).await.unwrap();
    nodes[0].replicate().await;
    until("six replicas run, spread over the nodes", async || {
        let counts = running(&runtime).await;
        counts.iter().sum::<usize>() == 6 && counts.iter().all(|c| *c > 0)
    })
    .await;
    until("every node's status table shows the six pods", async || {
        nodes.iter().all(|n| n.table.borrow().pods().len() == 6)
    })
    .await;

    // n2 stops inside the process; its containers keep running, as after SIGKILL.
    nodes[2].stop();
    board.detach(addr(2));
    let before = running(&runtime).await[2];
    until("n0 and n1 find n2 gone", async || {
        nodes[..2].iter().all(|n| alive(n) == ["n0", "n1"])
    })
    .await;
    until("n2's replicas run on n0 and n1", async || {
        let counts = running(&runtime).await;
        counts[0] + counts[1] == 6
    })
    .await;
    assert_eq!(
        running(&runtime).await[2],
        before,
        "a stopped node's reconciler does nothing"
    );

    for node in &nodes {
        node.stop();
        let _ = std::fs::remove_dir_all(&node.config.data_dir);
    }
}
