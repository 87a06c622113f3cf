//! The Docker runtime against the real engine on this machine, with containers made from the
//! demo image (built here from `target/debug/weeble`). Each test labels its containers with
//! its own node name and removes them all when it ends, passed or failed.
//!
//! Without Docker or the `weeble` binary the tests are skipped, unless `CI=true`: then they
//! fail.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{OnceCell, mpsc};
use weeble_crdt::Protocol;
use weeble_node::runtime::demo::{DEMO_IMAGE, build_demo_image};
use weeble_node::runtime::docker::Docker;
use weeble_node::runtime::{
    ContainerRuntime, ContainerSpec, ContainerState, LABEL_NODE, LABEL_POD, LABEL_TEMPLATE_HASH,
    LogOptions, Observed, RuntimeError, RuntimeEvent, log_text,
};

/// The longest any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(20);

/// Arguments to `/weeble` that keep it running: it reads a manifest from its own standard
/// output, a pipe that never ends while the process itself holds it open. (Until `weeble`
/// has `serve-demo`, it has no long-running command of its own.)
const STAY_UP: [&str; 4] = ["apply", "--dry-run", "-f", "/proc/self/fd/1"];

/// Reports a missing prerequisite: the test is skipped, or fails when `CI=true`.
fn skip(why: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{why} (required when CI=true)"
    );
    eprintln!("skipping: {why}");
}

/// The engine, or `None` (after `skip`) if it is unreachable.
async fn docker() -> Option<Docker> {
    match Docker::connect().await {
        Ok(docker) => Some(docker),
        Err(e) => {
            skip(&format!("Docker is unreachable: {e}"));
            None
        }
    }
}

/// The id of the demo image, built once per test run; `None` (after `skip`) without the
/// `weeble` binary.
async fn demo_image(docker: &Docker) -> Option<String> {
    static BUILT: OnceCell<Option<String>> = OnceCell::const_new();
    BUILT
        .get_or_init(|| async {
            let binary = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/weeble");
            if !binary.exists() {
                skip(&format!(
                    "{} is missing (cargo build -p weeble builds it)",
                    binary.display()
                ));
                return None;
            }
            Some(
                build_demo_image(docker, &binary)
                    .await
                    .expect("building the demo image"),
            )
        })
        .await
        .clone()
}

/// A node name of its own for one test; dropping it removes every container labelled with it.
struct TestNode(String);

impl TestNode {
    fn new() -> Self {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        TestNode(format!("test-rt-{}-{n}", std::process::id()))
    }

    /// A container of this node running `/weeble <args>` from the demo image, publishing
    /// port 80 on 127.0.0.1.
    fn spec(&self, pod: &str, args: &[&str]) -> ContainerSpec {
        ContainerSpec {
            name: format!("weeble-{}-{pod}-app", self.0),
            hostname: pod.to_owned(),
            image: DEMO_IMAGE.to_owned(),
            command: vec!["/weeble".to_owned()],
            args: args.iter().map(|a| a.to_string()).collect(),
            env: vec![("MESSAGE".to_owned(), "from the test".to_owned())],
            working_dir: Some("/".to_owned()),
            ports: vec![(80, Protocol::Tcp)],
            publish_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            labels: std::sync::Arc::new(
                [(LABEL_NODE, self.0.as_str()), (LABEL_POD, pod)]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            ),
            cpu_limit_millis: 500,
            memory_limit_bytes: 256 << 20,
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let filter = format!("label={LABEL_NODE}={}", self.0);
        let Ok(listed) = Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()
        else {
            return;
        };
        let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
        let ids: Vec<&str> = listed.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = Command::new("docker").args(["rm", "-f"]).args(ids).output();
        }
    }
}

/// Waits for the event `action` of container `id`, skipping the others.
async fn wait_for(events: &mut mpsc::Receiver<RuntimeEvent>, id: &str, action: &str) {
    let found = tokio::time::timeout(WAIT, async {
        while let Some(event) = events.recv().await {
            if event.container_id == id && event.action == action {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        found,
        Ok(true),
        "no {action} event for {id} within {WAIT:?}"
    );
}

/// The node's container `id` as listed now.
async fn listed(docker: &Docker, node: &TestNode, id: &str) -> Observed {
    let all = docker.list(&node.0).await.unwrap();
    all.into_iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("{id} is not listed for {}", node.0))
}

#[tokio::test]
async fn an_absent_image_is_missing_and_never_pulled() {
    let Some(docker) = docker().await else { return };
    let node = TestNode::new();
    let mut spec = node.spec("absent-0", &[]);
    spec.image = "weeble-test-absent:never".to_owned();
    assert_eq!(
        docker.create_and_start(&spec).await,
        Err(RuntimeError::ImageMissing(spec.image.clone()))
    );
    assert!(docker.list(&node.0).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_demo_image_runs_serve_demo() {
    let Some(docker) = docker().await else { return };
    let Some(id) = demo_image(&docker).await else {
        return;
    };
    let inspect = Command::new("docker")
        .args([
            "image",
            "inspect",
            "-f",
            "{{.Id}} {{json .Config.Cmd}} {{json .Config.ExposedPorts}}",
        ])
        .arg(DEMO_IMAGE)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&inspect.stdout).trim(),
        format!(r#"{id} ["/weeble","serve-demo","--listen","0.0.0.0:80"] {{"80/tcp":{{}}}}"#)
    );
}

#[tokio::test]
async fn exited_containers_report_exit_codes_and_logs_and_start_again() {
    let Some(docker) = docker().await else { return };
    if demo_image(&docker).await.is_none() {
        return;
    }
    let node = TestNode::new();
    let mut events = docker.watch(&node.0);
    let ok = docker
        .create_and_start(&node.spec("version-0", &["--version"]))
        .await
        .unwrap();
    let bad = docker
        .create_and_start(&node.spec("bad-0", &["--definitely-not-a-flag"]))
        .await
        .unwrap();
    wait_for(&mut events, &ok, "die").await;
    wait_for(&mut events, &bad, "die").await;

    let version = listed(&docker, &node, &ok).await;
    assert_eq!(version.state, ContainerState::Exited { code: 0 });
    assert_eq!(version.name, format!("weeble-{}-version-0-app", node.0));
    assert_eq!(version.image, DEMO_IMAGE);
    assert_eq!(version.labels[LABEL_POD], "version-0");
    assert!(version.started_at_ms > 1_700_000_000_000, "{version:?}");
    // The engine stamps the start once its start call returns, which a container that exits
    // at once can beat by a millisecond or two: "after", give or take that.
    assert!(
        version.finished_at_ms + 100 >= version.started_at_ms,
        "{version:?}"
    );
    // The engine reports no published ports for a container that is not running.
    assert!(version.ports.is_empty(), "{version:?}");
    let rejected = listed(&docker, &node, &bad).await;
    assert_eq!(
        rejected.state,
        ContainerState::Exited { code: 2 },
        "clap's usage error"
    );

    let logs = last_lines(&docker, &ok, 10).await.unwrap();
    assert!(
        logs.contains(&format!("weeble {}", env!("CARGO_PKG_VERSION"))),
        "{logs:?}"
    );
    let logs = last_lines(&docker, &bad, 50).await.unwrap();
    assert!(
        logs.contains("--definitely-not-a-flag"),
        "stderr is included: {logs:?}"
    );

    docker.start(&ok).await.unwrap();
    wait_for(&mut events, &ok, "start").await;
    wait_for(&mut events, &ok, "die").await;
    let again = listed(&docker, &node, &ok).await;
    assert_eq!(again.state, ContainerState::Exited { code: 0 });
    assert!(again.started_at_ms >= version.finished_at_ms, "{again:?}");
    let logs = last_lines(&docker, &ok, 10).await.unwrap();
    assert_eq!(
        logs.matches("weeble ").count(),
        2,
        "one line per run: {logs:?}"
    );
    assert_eq!(
        last_lines(&docker, &ok, 1).await.unwrap().lines().count(),
        1
    );
}

/// The last `tail` lines of container `id`'s output, as text.
async fn last_lines(docker: &Docker, id: &str, tail: usize) -> Result<String, RuntimeError> {
    let options = LogOptions {
        tail: Some(tail),
        ..LogOptions::default()
    };
    log_text(docker.logs(id, &options)).await
}

#[tokio::test]
async fn running_containers_publish_their_ports_and_are_removed() {
    let Some(docker) = docker().await else { return };
    if demo_image(&docker).await.is_none() {
        return;
    }
    let node = TestNode::new();
    let mut events = docker.watch(&node.0);
    let spec = node.spec("web-0", &STAY_UP);
    let id = docker.create_and_start(&spec).await.unwrap();
    wait_for(&mut events, &id, "start").await;

    let running = listed(&docker, &node, &id).await;
    assert_eq!(running.state, ContainerState::Running);
    assert_eq!(running.finished_at_ms, 0, "never exited");
    let [port] = running.ports.as_slice() else {
        panic!("one published port expected: {running:?}");
    };
    assert_eq!((port.container_port, port.protocol), (80, Protocol::Tcp));
    assert_eq!(port.host_ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_ne!(port.host_port, 0);

    // The same spec again (a retry after a create that timed out): the container is
    // adopted, never made twice.
    assert_eq!(docker.create_and_start(&spec).await, Ok(id.clone()));
    assert_eq!(docker.list(&node.0).await.unwrap().len(), 1);
    docker
        .start(&id)
        .await
        .expect("starting a running container is a no-op");

    docker.remove(&id).await.unwrap();
    wait_for(&mut events, &id, "die").await;
    wait_for(&mut events, &id, "destroy").await;
    docker.remove(&id).await.expect("removing twice is fine");
    assert!(docker.list(&node.0).await.unwrap().is_empty());
    assert_eq!(
        docker.start(&id).await,
        Err(RuntimeError::NotFound(id.clone()))
    );
    assert_eq!(
        last_lines(&docker, &id, 5).await,
        Err(RuntimeError::NotFound(id.clone()))
    );
}

#[tokio::test]
async fn a_container_that_cannot_start_is_not_left_behind() {
    let Some(docker) = docker().await else { return };
    if demo_image(&docker).await.is_none() {
        return;
    }
    let node = TestNode::new();
    let mut spec = node.spec("broken-0", &[]);
    spec.command = vec!["/no/such/program".to_owned()];
    let Err(RuntimeError::Failed(message)) = docker.create_and_start(&spec).await else {
        panic!("a container with no program started");
    };
    assert!(message.contains(&spec.name), "{message}");
    assert!(docker.list(&node.0).await.unwrap().is_empty());
}

/// Makes a container named `name` with `labels` straight through the engine (as a create
/// that timed out here but went through there would have); returns its id.
fn made_behind_our_back(name: &str, labels: &[(&str, &str)]) -> String {
    let mut args = vec!["create".to_owned(), "--name".to_owned(), name.to_owned()];
    for (k, v) in labels {
        args.extend(["--label".to_owned(), format!("{k}={v}")]);
    }
    args.extend([
        DEMO_IMAGE.to_owned(),
        "/weeble".to_owned(),
        "serve-demo".to_owned(),
    ]);
    let out = Command::new("docker").args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn exists(id: &str) -> bool {
    Command::new("docker")
        .args(["inspect", id])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn a_create_whose_name_is_taken_adopts_the_same_pod_and_replaces_an_older_one() {
    let Some(docker) = docker().await else { return };
    if demo_image(&docker).await.is_none() {
        return;
    }
    let node = TestNode::new();
    let serve = ["serve-demo", "--listen", "0.0.0.0:80"];
    let mut spec = node.spec("taken-0", &serve);
    std::sync::Arc::make_mut(&mut spec.labels)
        .insert(LABEL_TEMPLATE_HASH.to_owned(), "new".to_owned());
    let labels: Vec<(&str, &str)> = spec
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();

    // The same pod's container, made by a create whose answer never came: adopted, started.
    let earlier = made_behind_our_back(&spec.name, &labels);
    let id = docker.create_and_start(&spec).await.expect("adopted");
    assert!(
        earlier.starts_with(&id) || id.starts_with(&earlier),
        "{id} vs {earlier}"
    );
    assert_eq!(
        listed(&docker, &node, &id).await.state,
        ContainerState::Running
    );
    docker.remove(&id).await.unwrap();

    // An older container of this node under the name (another template): replaced.
    let older_labels: Vec<(&str, &str)> = labels
        .iter()
        .map(|&(k, v)| {
            if k == LABEL_TEMPLATE_HASH {
                (k, "old")
            } else {
                (k, v)
            }
        })
        .collect();
    let older = made_behind_our_back(&spec.name, &older_labels);
    let id = docker.create_and_start(&spec).await.expect("replaced");
    assert!(!older.starts_with(&id) && !id.starts_with(&older));
    assert!(!exists(&older), "the older container is gone");
    assert_eq!(
        listed(&docker, &node, &id).await.state,
        ContainerState::Running
    );
}

#[tokio::test]
async fn a_create_whose_name_another_owner_holds_fails_and_leaves_it_alone() {
    let Some(docker) = docker().await else { return };
    if demo_image(&docker).await.is_none() {
        return;
    }
    let node = TestNode::new();
    let spec = node.spec("stranger-0", &["serve-demo"]);
    let stranger = made_behind_our_back(&spec.name, &[("weeble.test-owner", &node.0)]);
    let refused = docker.create_and_start(&spec).await;
    let left_alone = exists(&stranger);
    // Not labelled as the test node's: removed here, before anything can fail.
    let _ = Command::new("docker")
        .args(["rm", "-f", &stranger])
        .output();
    let Err(RuntimeError::Failed(why)) = refused else {
        panic!("{refused:?}");
    };
    assert!(why.contains("did not make"), "{why}");
    assert!(left_alone);
}
