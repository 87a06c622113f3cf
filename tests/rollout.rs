//! Rolling updates on real containers, paced by three `weeble node` processes on
//! 127.0.0.101-103 with no leader: a 5-replica deployment behind a service is updated (its
//! `MESSAGE` changes) while a client sends requests through every node's service port. No
//! request fails, the available replicas never fall below `replicas - maxUnavailable`, and
//! every reply ends with the new message. An update to an image no node has stops with the
//! old replicas serving, `rollout status` fails with the reason, `rollout undo` restores it;
//! annotated `weeble.io/rollback-on-failure`, the cluster goes back by itself and says so.
//! A paused deployment changes nothing until resumed; a restart replaces every container; an
//! undo to a numbered revision brings its template back.
//!
//! Needs Docker: skipped with a message when it is missing, except under CI=true.

mod support;

use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

const IPS: [&str; 3] = ["127.0.0.101", "127.0.0.102", "127.0.0.103"];
const PORT: u16 = 18181;

/// The deployment `roll` (5 replicas, 25 % / 25 %: one more, one fewer) with `image` and
/// `message`, behind the service `roll`; `annotations` as YAML flow, or empty; a rollout
/// that makes no progress for `deadline` seconds fails.
fn manifest(image: &str, message: &str, annotations: &str, deadline: u32) -> String {
    format!(
        "kind: Deployment
metadata: {{name: roll, annotations: {{{annotations}}}}}
spec:
  replicas: 5
  progressDeadlineSeconds: {deadline}
  template:
    metadata: {{labels: {{app: roll}}}}
    spec:
      containers:
      - name: web
        image: {image}
        env: [{{name: MESSAGE, value: {message}}}]
        ports: [{{containerPort: 80, name: http}}]
        readinessProbe: {{httpGet: {{path: /, port: 80}}, periodSeconds: 1}}
---
kind: Service
metadata: {{name: roll}}
spec:
  selector: {{app: roll}}
  ports: [{{port: {PORT}, targetPort: http}}]
"
    )
}

fn apply(cluster: &Cluster, manifest: &str) {
    applied(cluster, &cluster.server(1), "roll", manifest);
}

/// `weeble rollout ARGS… deployment/roll` at node `i`.
fn rollout(cluster: &Cluster, i: usize, args: &[&str]) -> std::process::Output {
    let server = cluster.server(i);
    let mut all = vec!["--server", server.as_str(), "rollout"];
    all.extend_from_slice(args);
    all.push("deployment/roll");
    weeble(&all)
}

/// `weeble rollout status` at node `i` says the rollout completed within 90 s.
fn rolled_out(cluster: &Cluster, i: usize) {
    let status = rollout(cluster, i, &["status", "--timeout", "90s"]);
    assert!(status.status.success(), "{}", text(&status.stderr));
}

/// Waits until every node's service port answers with `message`.
fn serving(message: &str) {
    wait_for(
        &format!("{message} behind every port"),
        Duration::from_secs(30),
        || {
            IPS.iter()
                .all(|ip| ask(ip).as_deref() == Ok(message))
                .then_some(())
        },
    );
}

/// What a request through node `ip`'s service port got: the message, or what went wrong.
fn ask(ip: &str) -> Result<String, String> {
    let reply = try_http_get(&format!("{ip}:{PORT}"), "/").map_err(|e| format!("{ip}: {e}"))?;
    let message = reply
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| body.strip_prefix("hello from ")?.split_once(": "));
    match message {
        Some((_, message)) => Ok(message.trim().to_string()),
        None => Err(format!("{ip} answered {reply:?}")),
    }
}

/// What one request got: the message, or what went wrong.
type Reply = Result<String, String>;

/// A client asking every node's service port in turn, and a sampler reading the available
/// replicas at each of `servers`, until stopped: what each request got, and the fewest
/// replicas available.
struct Load {
    stop: Arc<AtomicBool>,
    replies: Arc<Mutex<Vec<Reply>>>,
    fewest: Arc<Mutex<u64>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(servers: Vec<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let replies = Arc::new(Mutex::new(Vec::new()));
        let fewest = Arc::new(Mutex::new(u64::MAX));
        let (s, r) = (stop.clone(), replies.clone());
        let client = std::thread::spawn(move || {
            // Bounded: at most 40,000 requests, 5 ms apart (200 s), however long the
            // rollout takes.
            for n in 0..40_000 {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let reply = ask(IPS[n % 3]).map_err(|e| {
                    let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
                    format!("{e}, at {} ms", at.unwrap_or_default().as_millis())
                });
                r.lock().unwrap().push(reply);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let (s, f) = (stop.clone(), fewest.clone());
        let sampler = std::thread::spawn(move || {
            for _ in 0..2_000 {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                // As the nodes see it: each node's view lags the others' by the status it
                // has not heard yet, so a sample is the most any node sees available.
                let available = servers.iter().filter_map(|server| {
                    let d = json(server, &["get", "deployments", "roll"]);
                    d["status"]["availableReplicas"].as_u64()
                });
                if let Some(n) = available.max() {
                    let mut fewest = f.lock().unwrap();
                    *fewest = (*fewest).min(n);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Load {
            stop,
            replies,
            fewest,
            threads: vec![client, sampler],
        }
    }

    /// Stops; the replies, and the fewest replicas seen available.
    fn finish(self) -> (Vec<Reply>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let replies = std::mem::take(&mut *self.replies.lock().unwrap());
        let fewest = *self.fewest.lock().unwrap();
        (replies, fewest)
    }
}

/// Every request answered, the last ones all with `message`.
fn all_answered_ending_with(replies: &[Reply], message: &str) {
    let failed: Vec<_> = replies
        .iter()
        .enumerate()
        .filter_map(|(n, r)| r.as_ref().err().map(|e| format!("request {n}: {e}")))
        .collect();
    eprintln!("{} requests, {} failed", replies.len(), failed.len());
    assert!(failed.is_empty(), "no request fails: {failed:#?}");
    assert!(
        replies.len() >= 30,
        "the client kept asking: {}",
        replies.len()
    );
    let last = &replies[replies.len() - 15..];
    assert!(
        last.iter().all(|r| r.as_deref() == Ok(message)),
        "the last replies carry {message}: {last:?}"
    );
}

/// Whether `why` names a failed pull (no registry has `weeble-absent:1`).
fn pull_failed(why: &str) -> bool {
    why.contains("ErrImagePull") || why.contains("ImagePullBackOff")
}

fn image_of(cluster: &Cluster) -> String {
    let d = json(&cluster.server(2), &["get", "deployments", "roll"]);
    d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_rolling_update_drops_no_request_and_a_broken_one_stops_or_goes_back() {
    let _one_at_a_time = serial();
    let Some(cluster) = Cluster::three_with_demo("rollout-test", IPS) else {
        return;
    };
    let demo = "weeble-demo:v1";
    apply(&cluster, &manifest(demo, "v1", "", 20));
    rolled_out(&cluster, 0);
    serving("v1");

    // The update, under load: no request fails, at least 4 of 5 available throughout.
    let load = Load::start((0..3).map(|i| cluster.server(i)).collect());
    std::thread::sleep(Duration::from_secs(1));
    apply(&cluster, &manifest(demo, "v2", "", 20));
    let status = rollout(&cluster, 2, &["status", "--timeout", "120s"]);
    let said = text(&status.stdout);
    assert!(status.status.success(), "{said}{}", text(&status.stderr));
    assert!(said.contains("successfully rolled out"), "{said}");
    std::thread::sleep(Duration::from_secs(2));
    let (replies, fewest) = load.finish();
    all_answered_ending_with(&replies, "v2");
    assert!(fewest >= 4, "available replicas fell to {fewest}");
    let d: Value = json(&cluster.server(1), &["get", "deployments", "roll"]);
    assert_eq!(d["status"]["updatedReplicas"], 5, "{d}");

    // A broken update stops: the old replicas serve, `rollout status` says why.
    let load = Load::start((0..3).map(|i| cluster.server(i)).collect());
    apply(&cluster, &manifest("weeble-absent:1", "v3", "", 20));
    let status = rollout(&cluster, 1, &["status", "--timeout", "90s"]);
    let why = text(&status.stderr);
    assert!(!status.status.success(), "a broken rollout fails");
    assert!(
        why.contains("progress deadline") && pull_failed(&why),
        "{why}"
    );
    let history = text(&rollout(&cluster, 0, &["history"]).stdout);
    assert!(history.contains("3         <none>  (current)"), "{history}");
    let undo = rollout(&cluster, 0, &["undo"]);
    assert!(undo.status.success(), "{}", text(&undo.stderr));
    assert!(text(&undo.stdout).contains("rolled back"));
    rolled_out(&cluster, 2);
    assert_eq!(image_of(&cluster), demo);
    std::thread::sleep(Duration::from_secs(2));
    let (replies, fewest) = load.finish();
    all_answered_ending_with(&replies, "v2");
    assert!(fewest >= 4, "available replicas fell to {fewest}");

    // The same broken update, annotated: the cluster goes back by itself and says so.
    let load = Load::start((0..3).map(|i| cluster.server(i)).collect());
    let annotation = "weeble.io/rollback-on-failure: \"true\"";
    apply(&cluster, &manifest("weeble-absent:1", "v3", annotation, 20));
    let status = rollout(&cluster, 0, &["status", "--timeout", "90s"]);
    let why = text(&status.stderr);
    assert!(!status.status.success());
    assert!(why.contains("rolled back") && pull_failed(&why), "{why}");
    wait_for("the old template back", Duration::from_secs(30), || {
        (image_of(&cluster) == demo).then_some(())
    });
    let describe = weeble(&[
        "--server",
        &cluster.server(1),
        "describe",
        "deployment",
        "roll",
    ]);
    assert!(
        text(&describe.stdout).contains("RolledBack"),
        "{}",
        text(&describe.stdout)
    );
    std::thread::sleep(Duration::from_secs(3));
    let (replies, fewest) = load.finish();
    all_answered_ending_with(&replies, "v2");
    assert!(fewest >= 4, "available replicas fell to {fewest}");

    // Paused, a change waits; resumed, it rolls out.
    let paused = rollout(&cluster, 0, &["pause"]);
    assert!(
        text(&paused.stdout).contains("paused"),
        "{}",
        text(&paused.stderr)
    );
    apply(&cluster, &manifest(demo, "v4", annotation, 20));
    std::thread::sleep(Duration::from_secs(4));
    let d = json(&cluster.server(2), &["get", "deployments", "roll"]);
    assert_eq!(
        d["status"]["updatedReplicas"], 0,
        "nothing changed while paused: {d}"
    );
    assert!(IPS.iter().all(|ip| ask(ip).as_deref() == Ok("v2")));
    let resumed = rollout(&cluster, 1, &["resume"]);
    assert!(
        text(&resumed.stdout).contains("resumed"),
        "{}",
        text(&resumed.stderr)
    );
    rolled_out(&cluster, 2);
    serving("v4");

    // A restart replaces every container with the same template; an undo to a numbered
    // revision brings its template back.
    let before = cluster.containers(true);
    let restarted = rollout(&cluster, 0, &["restart"]);
    assert!(
        text(&restarted.stdout).contains("restarted"),
        "{}",
        text(&restarted.stderr)
    );
    let started = std::time::Instant::now();
    rolled_out(&cluster, 1);
    eprintln!("restart rolled out in {:?}", started.elapsed());
    let after = cluster.containers(true);
    assert_eq!(after.len(), 5, "{after:?}");
    assert!(
        after.iter().all(|id| !before.contains(id)),
        "every container replaced"
    );
    let history = text(&rollout(&cluster, 0, &["history"]).stdout);
    let first = history.lines().find(|l| l.starts_with("1 ")).map(|_| "1");
    let to = first.expect("revision 1 (v1) is kept");
    let undo = rollout(&cluster, 2, &["undo", "--to-revision", to]);
    assert!(undo.status.success(), "{}", text(&undo.stderr));
    rolled_out(&cluster, 0);
    serving("v1");
}
