//! What the process tests share: the `weeble` binary, polling with a limit, and a cluster
//! of real `weeble node` processes (one 127.0.0.x address each) that stops everything it
//! started, processes and labelled containers, when dropped.
#![allow(dead_code)] // each test target uses its own part of this module

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const WEEBLE: &str = env!("CARGO_BIN_EXE_weeble");
pub const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const DEMO_IMAGE: &str = "weeble-demo:v1";

/// Held by a test that must not share the machine with another of its binary: timing
/// matters to it (failure detection), or it watches every container of its nodes.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The p2p address of the test node on `ip`: a port of its own (20000 + the last octet), so
/// that `ss` and logs tell the nodes' connections apart (libp2p dials from the unspecified
/// address, so on loopback every node's packets come from 127.0.0.1).
pub fn p2p(ip: &str) -> String {
    let last: u16 = ip.rsplit('.').next().unwrap().parse().unwrap();
    format!("{ip}:{}", 20000 + last)
}

pub fn docker_available() -> bool {
    let up = Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    needed("the Docker engine", up)
}

/// Whether `program` is installed (on the PATH), as [`needed`] says.
pub fn installed(program: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    needed(program, found)
}

/// Whether a test may go on, `what` it needs being `present` or not: under CI=true it must be
/// (a panic); elsewhere its absence skips the test, with a message.
pub fn needed(what: &str, present: bool) -> bool {
    if !present && std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what} is required under CI=true (.ci/run provides it) and is missing");
    }
    if !present {
        eprintln!("SKIPPED: {what} is missing; this test needs it");
    }
    present
}

pub fn weeble(args: &[&str]) -> Output {
    Command::new(WEEBLE)
        .args(args)
        .current_dir(ROOT)
        .output()
        .expect("weeble runs")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `weeble --server <node> ARGS -o json`, parsed.
pub fn json(server: &str, args: &[&str]) -> Value {
    let mut all = vec!["--server", server];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    let out = weeble(&all);
    assert!(
        out.status.success(),
        "weeble {all:?}: {}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// Polls `check` every 100 ms until it returns Some or `limit` passes.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One `weeble node` process of the test, and how to start it again.
pub struct Node {
    pub name: String,
    pub args: Vec<String>,
    pub child: Child,
}

/// The test's nodes and everything they started; all of it is stopped on drop.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub dir: PathBuf,
}

impl Cluster {
    /// The ids of the containers labelled for the test's nodes (or for `only` of them).
    pub fn containers_of(&self, only: Option<&str>, running_only: bool) -> Vec<String> {
        let mut ids = Vec::new();
        for node in self
            .nodes
            .iter()
            .filter(|n| only.is_none_or(|o| o == n.name))
        {
            let filter = format!("label=weeble.node={}", node.name);
            let mut args = vec!["ps", "-q", "--no-trunc", "--filter", &filter];
            if !running_only {
                args.push("-a");
            } else {
                args.extend(["--filter", "status=running"]);
            }
            let out = Command::new("docker")
                .args(&args)
                .output()
                .expect("docker ps");
            ids.extend(text(&out.stdout).lines().map(str::to_string));
        }
        ids.sort();
        ids
    }

    pub fn containers(&self, running_only: bool) -> Vec<String> {
        self.containers_of(None, running_only)
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    /// A cluster with no node yet, keeping its files in a fresh temporary directory.
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("weeble-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Cluster {
            nodes: Vec::new(),
            dir,
        }
    }

    /// Three nodes on `ips`, each joining the next, every one seeing all three Ready, with the
    /// demo image built; `None` without Docker (see [`docker_available`]).
    pub fn three_with_demo(tag: &str, ips: [&str; 3]) -> Option<Self> {
        if !docker_available() {
            return None;
        }
        assert!(weeble(&["image", "build-demo"]).status.success());
        let mut cluster = Cluster::new(tag);
        for (i, ip) in ips.iter().enumerate() {
            let seed = p2p(ips[(i + 1) % 3]);
            cluster.start(
                &format!("{tag}{}-{i}", std::process::id()),
                ip,
                &["--join", &seed],
            );
        }
        for i in 0..3 {
            wait_for("three ready nodes", Duration::from_secs(30), || {
                (ready_nodes(&cluster.server(i)).len() == 3).then_some(())
            });
        }
        Some(cluster)
    }

    /// A certificate for node `name`'s API at `ip` (`weeble cert new`, in the cluster's `certs`
    /// directory, whose CA, `certs/ca.crt`, the first call makes): the node's TLS arguments.
    pub fn tls_args(&self, name: &str, ip: &str) -> Vec<String> {
        let certs = self.dir.join("certs");
        let dir = certs.to_str().unwrap();
        let made = weeble(&["cert", "new", "--dir", dir, "--name", name, "--host", ip]);
        assert!(made.status.success(), "{}", text(&made.stderr));
        let file = |ext: &str| certs.join(format!("{name}.{ext}")).display().to_string();
        vec![
            "--api-tls-cert".into(),
            file("crt"),
            "--api-tls-key".into(),
            file("key"),
        ]
    }

    /// A new cluster key, in a file of the cluster's directory.
    pub fn key(&self, file: &str) -> PathBuf {
        let path = self.dir.join(file);
        std::fs::write(&path, weeble(&["keygen"]).stdout).unwrap();
        path
    }

    /// Starts node `name` on `ip` (p2p address [`p2p`], API port 17070) with JSON logs, appended
    /// to `<dir>/<name>.log`, and the `extra` arguments (`--join`, `--cluster-key`, ...).
    pub fn start(&mut self, name: &str, ip: &str, extra: &[&str]) {
        let data = self.dir.join(name);
        let mut args: Vec<String> = [
            "node",
            "--name",
            name,
            "--data-dir",
            data.to_str().unwrap(),
            "--p2p",
            &p2p(ip),
            "--api",
            &format!("{ip}:17070"),
            "--log-format",
            "json",
        ]
        .map(String::from)
        .into();
        args.extend(extra.iter().map(|a| a.to_string()));
        let child = self.spawn(name, &args);
        self.nodes.push(Node {
            name: name.to_string(),
            args,
            child,
        });
    }

    /// The API address of node `index`.
    pub fn server(&self, index: usize) -> String {
        let api = &self.nodes[index].args[8];
        format!("http://{api}")
    }

    /// Sends `signal` (`-KILL`, `-STOP`, `-CONT`) to node `index`'s agent.
    pub fn signal(&self, index: usize, signal: &str) {
        let pid = self.nodes[index].child.id().to_string();
        let out = Command::new("kill").args([signal, &pid]).output().unwrap();
        assert!(out.status.success(), "kill {signal} {pid}");
    }

    /// Node `index` dies with everything on it: its agent killed, its containers removed.
    pub fn crash(&mut self, index: usize) {
        self.nodes[index].child.kill().unwrap();
        self.nodes[index].child.wait().unwrap();
        let ids = self.containers_of(Some(&self.nodes[index].name.clone()), false);
        assert!(remove_containers(&ids), "docker rm -f {ids:?} failed");
    }

    fn spawn(&self, name: &str, args: &[String]) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(name))
            .unwrap();
        Command::new(WEEBLE)
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("node starts")
    }

    /// Kills a node's agent with SIGKILL (its containers keep running) and starts it again
    /// with the same command line.
    pub fn restart(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        node.child.kill().unwrap();
        node.child.wait().unwrap();
        let node = &self.nodes[index];
        let child = self.spawn(&node.name, &node.args);
        self.nodes[index].child = child;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
        if std::thread::panicking() {
            self.print_warnings();
        }
        remove_containers(&self.containers(false));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Cluster {
    /// The last warnings and errors each node logged, for a test that failed: its logs go
    /// with it.
    fn print_warnings(&self) {
        for node in &self.nodes {
            let log = std::fs::read_to_string(self.log_path(&node.name)).unwrap_or_default();
            let warnings: Vec<&str> = log
                .lines()
                .filter(|line| {
                    line.contains(r#""level":"WARN""#) || line.contains(r#""level":"ERROR""#)
                })
                .collect();
            eprintln!(
                "{}: {} warnings and errors, the last 30:",
                node.name,
                warnings.len()
            );
            for line in &warnings[warnings.len().saturating_sub(30)..] {
                eprintln!("  {line}");
            }
        }
    }
}

/// `docker rm -f` of `ids`; true if it worked (or there was nothing to remove).
fn remove_containers(ids: &[String]) -> bool {
    ids.is_empty()
        || Command::new("docker")
            .arg("rm")
            .arg("-f")
            .args(ids)
            .output()
            .is_ok_and(|out| out.status.success())
}

/// The names of the nodes `server` sees as Ready.
pub fn ready_nodes(server: &str) -> BTreeSet<String> {
    let out = weeble(&["--server", server, "get", "nodes", "-o", "json"]);
    let Ok(nodes) = serde_json::from_slice::<Value>(&out.stdout) else {
        return BTreeSet::new();
    };
    nodes["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["status"]["conditions"][0]["status"] == "True")
        .map(|n| n["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

pub fn pods(server: &str) -> Vec<Value> {
    json(server, &["get", "pods"])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

pub fn running(pods: &[Value]) -> usize {
    pods.iter()
        .filter(|p| {
            p["status"]["phase"] == "Running" && p["status"]["conditions"][0]["status"] == "True"
        })
        .count()
}

/// `GET path` over HTTP/1.0 at `addr`: the whole reply.
pub fn http_get(addr: &str, path: &str) -> String {
    try_http_get(addr, path).expect("the endpoint answers")
}

/// `GET path` over HTTP/1.0 at `addr`: the whole reply, or why there was none.
pub fn try_http_get(addr: &str, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
}

/// The node's log, one parsed JSON object per line; every line must be JSON.
pub fn json_log(cluster: &Cluster, name: &str) -> Vec<Value> {
    parse_log(
        name,
        &std::fs::read_to_string(cluster.log_path(name)).unwrap(),
    )
}

fn parse_log(name: &str, log: &str) -> Vec<Value> {
    log.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}: {e}: {line}")))
        .collect()
}

/// Whether node `name`'s log holds a line whose message contains `part`.
pub fn logged(cluster: &Cluster, name: &str, part: &str) -> bool {
    json_log(cluster, name).iter().any(|l| {
        l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(part))
    })
}

/// A deployment of `replicas` of the demo image, one container named `web`.
pub fn demo_deployment(name: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  \
         replicas: {replicas}\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    \
         metadata:\n      labels:\n        app: {name}\n    spec:\n      containers:\n      \
         - name: web\n        image: weeble-demo:v1\n"
    )
}

/// `weeble apply` at `server` of [`demo_deployment`] `name`, written in the cluster's
/// directory: the command's output.
pub fn apply_demo(cluster: &Cluster, server: &str, name: &str, replicas: u32) -> Output {
    apply_file(cluster, server, name, &demo_deployment(name, replicas))
}

/// Writes `manifest` to `<dir>/<name>.yaml` and applies that file at `server`.
pub fn apply_file(cluster: &Cluster, server: &str, name: &str, manifest: &str) -> Output {
    let file = cluster.dir.join(format!("{name}.yaml"));
    std::fs::write(&file, manifest).unwrap();
    weeble(&["--server", server, "apply", "-f", file.to_str().unwrap()])
}

/// As [`apply_file`], and the node must take it.
pub fn applied(cluster: &Cluster, server: &str, name: &str, manifest: &str) {
    let out = apply_file(cluster, server, name, manifest);
    assert!(out.status.success(), "apply: {}", text(&out.stderr));
}

/// The names of the deployments `server` holds.
pub fn deployments(server: &str) -> Vec<String> {
    json(server, &["get", "deployments"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

pub fn messages<'a>(log: &'a [Value], message: &str) -> Vec<&'a Value> {
    log.iter()
        .filter(|l| l["fields"]["message"] == message)
        .collect()
}

/// The container test bed: each node runs in a container of its own (the demo image holds the
/// `weeble` binary) on a private Docker network the test makes, with the host's Docker socket
/// for its workloads, which publish their ports on the network's gateway (a host address).
/// Everything it started (nodes, their workloads, the network) is removed on drop.
pub struct Bed {
    pub network: String,
    /// The first three octets of the network's /24.
    prefix: String,
    pub nodes: Vec<String>,
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs")
}

impl Bed {
    /// A private network for the bed; None when Docker is missing (outside CI).
    pub fn new() -> Option<Self> {
        if !docker_available() {
            return None;
        }
        assert!(weeble(&["image", "build-demo"]).status.success());
        let pid = std::process::id();
        let prefix = format!("172.30.{}", 20 + pid % 200);
        let network = format!("weeble-bed-{pid}");
        let out = docker(&[
            "network",
            "create",
            "--subnet",
            &format!("{prefix}.0/24"),
            &network,
        ]);
        assert!(
            out.status.success(),
            "network create: {}",
            text(&out.stderr)
        );
        Some(Bed {
            network,
            prefix,
            nodes: Vec::new(),
        })
    }

    /// Node `index`'s address on the bed's network.
    pub fn ip(&self, index: usize) -> String {
        format!("{}.{}", self.prefix, 10 + index)
    }

    /// The URL of node `index`'s API, from the host.
    pub fn server(&self, index: usize) -> String {
        format!("http://{}:7070", self.ip(index))
    }

    /// Starts node `index` in a container, joining node 0 unless it is node 0.
    pub fn start(&mut self, index: usize) {
        let name = format!("bed{}-{index}", std::process::id());
        let ip = self.ip(index);
        let (p2p, seed) = (format!("{ip}:7946"), format!("{}:7946", self.ip(0)));
        let gateway = format!("{}.1", self.prefix);
        let mut args = vec![
            "run",
            "-d",
            "--name",
            &name,
            "--hostname",
            &name,
            "--label",
            "weeble.bed=node",
            "--network",
            &self.network,
            "--ip",
            &ip,
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock",
            "--entrypoint",
            "/weeble",
            DEMO_IMAGE,
            "node",
            "--name",
            &name,
            "--data-dir",
            "/data",
            "--p2p",
            &p2p,
            "--api",
            "0.0.0.0:7070",
            "--insecure-api",
            "--publish-ip",
            &gateway,
            "--log-format",
            "json",
        ];
        if index > 0 {
            args.extend(["--join", &seed]);
        }
        let out = docker(&args);
        assert!(
            out.status.success(),
            "docker run {name}: {}",
            text(&out.stderr)
        );
        self.nodes.push(name);
    }

    /// Cuts the nodes `one` off from the nodes `other` (and back) with iptables rules on the
    /// host's Docker bridge traffic (`DOCKER-USER`), tagged with the bed's name; every node
    /// keeps its network and the peers on its own side.
    /// False (with a message) when iptables cannot be used here (it needs root); under
    /// CI=true that is a failure.
    pub fn partition(&self, one: &[usize], other: &[usize]) -> bool {
        if !iptables_usable("partition") {
            return false;
        }
        for &a in one {
            for &b in other {
                for (src, dst) in [(self.ip(a), self.ip(b)), (self.ip(b), self.ip(a))] {
                    self.drop_rule(&["-s", &src, "-d", &dst]);
                }
            }
        }
        true
    }

    /// Makes node `index`'s link lossy: each packet to or from it on the bed's network is
    /// dropped with `probability` (iptables' `statistic` match; this kernel has no netem).
    /// False (with a message) when iptables cannot be used here; under CI=true a failure.
    pub fn lossy(&self, index: usize, probability: f64) -> bool {
        if !iptables_usable("lossy link") {
            return false;
        }
        let p = probability.to_string();
        let ip = self.ip(index);
        for way in ["-s", "-d"] {
            self.drop_rule(&[
                way,
                &ip,
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &p,
            ]);
        }
        true
    }

    /// Inserts a DROP rule for the packets `matching`, tagged with the bed's name.
    fn drop_rule(&self, matching: &[&str]) {
        let mut rule = vec!["-I", "DOCKER-USER"];
        rule.extend_from_slice(matching);
        rule.extend(["-m", "comment", "--comment", &self.network, "-j", "DROP"]);
        let rule: Vec<String> = rule.into_iter().map(String::from).collect();
        assert!(docker_user(&rule), "iptables {rule:?}");
    }

    /// The packets the bed's rules have dropped so far.
    pub fn dropped(&self) -> u64 {
        let out = Command::new("iptables")
            .args(["-L", "DOCKER-USER", "-v", "-n", "-x"])
            .output()
            .unwrap();
        text(&out.stdout)
            .lines()
            .filter(|l| l.contains(&self.network))
            .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }

    /// Removes every partition and loss rule of the bed.
    pub fn heal(&self) {
        let out = Command::new("iptables")
            .args(["-S", "DOCKER-USER"])
            .output()
            .unwrap();
        for line in text(&out.stdout)
            .lines()
            .filter(|l| l.contains(&self.network))
        {
            let rule: Vec<String> = line
                .replacen("-A ", "-D ", 1)
                .split_whitespace()
                .map(|w| w.trim_matches('"').to_string())
                .collect();
            assert!(docker_user(&rule), "iptables {rule:?}");
        }
    }

    /// Node `index` dies with everything on it: its container killed, its workloads removed.
    pub fn kill(&self, index: usize) {
        let node = &self.nodes[index];
        let out = docker(&["kill", node]);
        assert!(out.status.success(), "docker kill: {}", text(&out.stderr));
        let ids = workloads(node);
        assert!(remove_containers(&ids), "docker rm -f {ids:?} failed");
    }

    /// Node `index`'s log (`docker logs`), one parsed JSON object per line.
    pub fn log(&self, index: usize) -> Vec<Value> {
        let out = docker(&["logs", &self.nodes[index]]);
        let all = text(&out.stdout) + &text(&out.stderr);
        parse_log(&self.nodes[index], &all)
    }

    /// Cuts node `index` off from the network, as a lost link does.
    pub fn disconnect(&self, index: usize) {
        let out = docker(&["network", "disconnect", &self.network, &self.nodes[index]]);
        assert!(out.status.success(), "disconnect: {}", text(&out.stderr));
    }

    /// Puts node `index` back on the network, at its own address.
    pub fn connect(&self, index: usize) {
        let ip = self.ip(index);
        let out = docker(&[
            "network",
            "connect",
            "--ip",
            &ip,
            &self.network,
            &self.nodes[index],
        ]);
        assert!(out.status.success(), "connect: {}", text(&out.stderr));
    }

    /// `weeble ARGS` run inside node `index`'s container against its own API (which works
    /// whether or not the node is on the network); `stdin` is piped in.
    pub fn weeble_in(&self, index: usize, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new("docker")
            .args([
                "exec",
                "-i",
                &self.nodes[index],
                "/weeble",
                "--server",
                "http://127.0.0.1:7070",
            ])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker exec runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Running workload containers of `deployment` (default namespace) on node `index`.
    pub fn running(&self, index: usize, deployment: &str) -> Vec<String> {
        let out = docker(&[
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            "status=running",
            "--filter",
            &format!("label=weeble.node={}", self.nodes[index]),
            "--filter",
            &format!("label=weeble.deployment=default/{deployment}"),
        ]);
        let mut ids: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
        ids.sort();
        ids
    }
}

/// Every workload container of bed node `node`, running or not.
fn workloads(node: &str) -> Vec<String> {
    let label = format!("label=weeble.node={node}");
    let out = docker(&["ps", "-aq", "--filter", &label]);
    text(&out.stdout).lines().map(String::from).collect()
}

/// Whether iptables can be used here (it needs root); under CI=true it must be.
fn iptables_usable(what: &str) -> bool {
    if docker_user(&["-S".into(), "DOCKER-USER".into()]) {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "iptables (root) is required under CI=true for the {what} test"
    );
    eprintln!("SKIPPED: iptables is not usable here (root needed); no {what} test");
    false
}

fn docker_user(rule: &[String]) -> bool {
    Command::new("iptables")
        .args(rule)
        .output()
        .is_ok_and(|out| out.status.success())
}

impl Drop for Bed {
    fn drop(&mut self) {
        self.heal();
        if !self.nodes.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(self.nodes.iter().map(String::as_str));
            docker(&args);
        }
        for node in &self.nodes {
            remove_containers(&workloads(node));
        }
        docker(&["network", "rm", &self.network]);
    }
}
