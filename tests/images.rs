//! Images on real engines, as a fleet has them: three `weeble node` processes on
//! 127.0.0.162-164, each on a Docker engine of its own (a `dockerd` with its own data root,
//! socket and bridge, started by the test and empty of images), and registries on loopback
//! (Debian's `docker-registry`, one open and one behind htpasswd) that the demo image is
//! pushed to. A deployment of it runs on the three nodes, each having pulled it; with wrong
//! credentials, and with a tag the registry lacks, the pods say why (`ErrImagePull`, then
//! `ImagePullBackOff`) and recover once the credentials file or the registry is fixed; the
//! password is nowhere in the nodes' logs or the API. With the registry stopped, an image
//! one node holds reaches the others over the cluster's own connections (with a cluster key),
//! and a peer killed halfway through sending it does not stop it. An image pushed with
//! `weeble image push` reaches the nodes it is for, and runs there with no registry.
//!
//! Needs Docker, `docker-registry` and `htpasswd` (`.ci/run` installs them) and root (the
//! engines' bridges): skipped with a message when one is missing, except under CI=true.

mod support;

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::*;

const IPS: [&str; 3] = ["127.0.0.162", "127.0.0.163", "127.0.0.164"];
const REGISTRY_IP: &str = "127.0.0.165";
const OPEN_PORT: u16 = 15000;
const LOCKED_PORT: u16 = 15001;
const USER: &str = "fleet";
const PASSWORD: &str = "pw-never-shown-7f3a";

/// Runs `program ARGS`, and says what it printed if it failed.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// What node `name` logged with `message`, field `field` of each such line.
fn logged_fields(cluster: &Cluster, name: &str, message: &str, field: &str) -> Vec<Value> {
    let log = json_log(cluster, name);
    messages(&log, message)
        .iter()
        .map(|l| l["fields"][field].clone())
        .collect()
}

/// A Docker engine of the test's own: data root, exec root, socket and bridge in a
/// directory of its own. Dropped, it removes its containers, stops, and leaves nothing.
struct Engine {
    dir: PathBuf,
    bridge: String,
    daemon: Child,
}

impl Engine {
    /// Engine `index`, on the bridge `wbimg<index>` (172.31.<10 + index>.1/24).
    fn start(index: u8) -> Engine {
        let dir =
            std::env::temp_dir().join(format!("weeble-engine-{}-{index}", std::process::id()));
        let bridge = format!("wbimg{index}");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let _ = Command::new("ip").args(["link", "del", &bridge]).output();
        run("ip", &["link", "add", &bridge, "type", "bridge"]);
        let address = format!("172.31.{}.1/24", 10 + index);
        run("ip", &["addr", "add", &address, "dev", &bridge]);
        run("ip", &["link", "set", &bridge, "up"]);
        // A config of its own: the machine's daemon.json may name a data root it would share.
        std::fs::write(dir.join("daemon.json"), "{}").unwrap();
        let path = |p: &str| dir.join(p).to_str().unwrap().to_string();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let daemon = Command::new("dockerd")
            .args(["--config-file", &path("daemon.json")])
            .args(["--data-root", &path("data"), "--exec-root", &path("exec")])
            .args([
                "--pidfile",
                &path("pid"),
                "-H",
                &format!("unix://{}", path("sock")),
            ])
            .args(["--bridge", &bridge, "--iptables=false", "--ip-masq=false"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("dockerd starts");
        let engine = Engine {
            dir,
            bridge,
            daemon,
        };
        wait_for("the engine answers", Duration::from_secs(60), || {
            engine.try_docker(&["info"]).then_some(())
        });
        engine
    }

    fn host(&self) -> String {
        format!("unix://{}", self.dir.join("sock").display())
    }

    fn try_docker(&self, args: &[&str]) -> bool {
        let host = self.host();
        let mut all = vec!["-H", host.as_str()];
        all.extend_from_slice(args);
        Command::new("docker")
            .args(&all)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn has_image(&self, image: &str) -> bool {
        self.try_docker(&["image", "inspect", image])
    }

    /// The engine's id of `image`.
    fn image_id(&self, image: &str) -> String {
        let host = self.host();
        let id = run(
            "docker",
            &["-H", &host, "image", "inspect", "-f", "{{.Id}}", image],
        );
        id.trim().to_string()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let host = self.host();
        let ids = Command::new("docker")
            .args(["-H", &host, "ps", "-aq"])
            .output()
            .map(|o| text(&o.stdout))
            .unwrap_or_default();
        for id in ids.lines() {
            let _ = Command::new("docker")
                .args(["-H", &host, "rm", "-f", id])
                .output();
        }
        // TERM: the engine stops its containerd; whatever outlives it is killed by path.
        let pid = self.daemon.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..150 {
            if self.daemon.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        let dir = self.dir.to_str().unwrap();
        let _ = Command::new("pkill").args(["-KILL", "-f", dir]).status();
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let mut inside: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(1))
            .filter(|m| m.starts_with(dir))
            .collect();
        inside.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in inside {
            let _ = Command::new("umount").args(["-l", mount]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

/// A registry on `REGISTRY_IP:port` (Debian's `docker-registry`), behind htpasswd for
/// [`USER`] if `locked`. Dropped, it stops and its storage goes.
struct Registry {
    dir: PathBuf,
    process: Child,
    address: String,
}

impl Registry {
    fn start(port: u16, locked: bool) -> Registry {
        let dir =
            std::env::temp_dir().join(format!("weeble-registry-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let address = format!("{REGISTRY_IP}:{port}");
        let auth = match locked {
            true => {
                let htpasswd = run("htpasswd", &["-Bbn", USER, PASSWORD]);
                std::fs::write(dir.join("htpasswd"), htpasswd).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: weeble-test\n    path: {}\n",
                    dir.join("htpasswd").display()
                )
            }
            false => String::new(),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: {address}\n{auth}",
            dir.join("data").display()
        );
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let process = Command::new("docker-registry")
            .args(["serve", dir.join("config.yml").to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("docker-registry starts");
        let registry = Registry {
            dir,
            process,
            address,
        };
        wait_for("the registry answers", Duration::from_secs(30), || {
            try_http_get(&registry.address, "/v2/").ok().map(|_| ())
        });
        registry
    }

    /// Pushes the main engine's `local` image as `name` (`path:tag`) into this registry,
    /// logged in with a Docker config of the test's own (the machine's is left alone).
    fn push(&self, local: &str, name: &str) -> String {
        let image = format!("{}/{name}", self.address);
        let config = self.dir.join("docker-config");
        let config = config.to_str().unwrap();
        run("docker", &["tag", local, &image]);
        let login = [
            "--config",
            config,
            "login",
            &self.address,
            "-u",
            USER,
            "-p",
            PASSWORD,
        ];
        if self.dir.join("htpasswd").exists() {
            run("docker", &login);
        }
        run("docker", &["--config", config, "push", &image]);
        run("docker", &["rmi", &image]);
        image
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Applies deployment `name`: 3 replicas of `image`, one container `web` (one on each node:
/// each runs one pod at most).
fn apply(cluster: &Cluster, name: &str, image: &str) {
    apply_replicas(cluster, name, image, 3);
}

fn apply_replicas(cluster: &Cluster, name: &str, image: &str, replicas: u32) {
    let manifest = format!(
        "kind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  template:\n    \
         metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers:\n      \
         - {{name: web, image: \"{image}\"}}\n"
    );
    applied(cluster, &cluster.server(0), name, &manifest);
}

/// Three nodes of `cluster` on [`IPS`], each on an engine of its own ([`Engine`]) and
/// running one pod at most, with the `extra` arguments; once every node sees the three Ready.
fn fleet(cluster: &mut Cluster, tag: &str, extra: &[&str]) -> Vec<Engine> {
    let engines: Vec<Engine> = (0..3).map(Engine::start).collect();
    for (i, ip) in IPS.iter().enumerate() {
        let host = engines[i].host();
        let join = p2p(IPS[(i + 1) % 3]);
        let name = format!("{tag}{}-{i}", std::process::id());
        let mut args = vec!["--join", &join, "--docker-host", &host, "--max-pods", "1"];
        args.extend_from_slice(extra);
        cluster.start(&name, ip, &args);
    }
    for i in 0..3 {
        wait_for("three ready nodes", Duration::from_secs(30), || {
            (ready_nodes(&cluster.server(i)).len() == 3).then_some(())
        });
    }
    for engine in &engines {
        let images = run("docker", &["-H", &engine.host(), "images", "-q"]);
        assert_eq!(
            images.trim(),
            "",
            "an engine of its own starts with no image"
        );
    }
    engines
}

/// Deployment `name`'s pods at node 1: (node, phase, waiting reason and message).
fn states(cluster: &Cluster, name: &str) -> Vec<(String, String, String)> {
    states_at(cluster, 1, name)
}

/// Deployment `name`'s pods at node `at`.
fn states_at(cluster: &Cluster, at: usize, name: &str) -> Vec<(String, String, String)> {
    let of = |p: &&Value| p["metadata"]["labels"]["app"] == name;
    pods(&cluster.server(at))
        .iter()
        .filter(of)
        .map(|p| {
            let waiting = &p["status"]["containerStatuses"][0]["state"]["waiting"];
            let why = format!("{} {}", waiting["reason"], waiting["message"]);
            let node = p["spec"]["nodeName"].as_str().unwrap_or_default();
            let phase = p["status"]["phase"].as_str().unwrap_or_default();
            (node.to_string(), phase.to_string(), why)
        })
        .collect()
}

/// Waits until deployment `name` runs 3 pods, one per node; then deletes it (it leaves
/// room for the next).
fn runs_everywhere(cluster: &Cluster, name: &str, limit: Duration) {
    runs_on_every_node(cluster, name, limit);
    delete(cluster, name);
}

/// Waits until deployment `name` runs 3 pods, one per node.
fn runs_on_every_node(cluster: &Cluster, name: &str, limit: Duration) {
    wait_for(&format!("{name} running on the three nodes"), limit, || {
        let states = states(cluster, name);
        let nodes: std::collections::BTreeSet<_> = states.iter().map(|s| &s.0).collect();
        let running = states.iter().all(|s| s.1 == "Running");
        (states.len() == 3 && running && nodes.len() == 3).then_some(())
    });
}

fn delete(cluster: &Cluster, name: &str) {
    let out = weeble(&["--server", &cluster.server(2), "delete", "deployment", name]);
    assert!(out.status.success(), "delete: {}", text(&out.stderr));
}

/// Waits until `weeble describe pod POD` at node 2 says every one of `parts` (events come
/// as node 2 hears of them); what it said.
fn describes(cluster: &Cluster, pod: &str, parts: &[&str]) -> String {
    let what = format!("describe {pod} saying {parts:?}");
    wait_for(&what, Duration::from_secs(30), || {
        let out = weeble(&["--server", &cluster.server(2), "describe", "pod", pod]);
        let said = text(&out.stdout);
        (out.status.success() && parts.iter().all(|p| said.contains(p))).then_some(said)
    })
}

/// Waits until some pod of `name` waits with `reason`, whose message has `part`.
fn waits_with(cluster: &Cluster, name: &str, reason: &str, part: &str) {
    wait_for(
        &format!("{name} waiting with {reason}"),
        Duration::from_secs(60),
        || {
            states(cluster, name)
                .iter()
                .any(|s| s.2.contains(reason) && s.2.contains(part))
                .then_some(())
        },
    );
}

#[test]
fn nodes_pull_from_registries_say_why_a_pull_fails_and_recover_once_it_is_fixed() {
    let _one_at_a_time = serial();
    if !docker_available() || !installed("docker-registry") || !installed("htpasswd") {
        return;
    }
    assert!(weeble(&["image", "build-demo"]).status.success());
    let open = Registry::start(OPEN_PORT, false);
    let locked = Registry::start(LOCKED_PORT, true);
    let image = open.push("weeble-demo:v1", "weeble/web:1");
    let private = locked.push("weeble-demo:v1", "weeble/private:1");
    // What `docker login` wrote: a Docker config.json, as an operator has one.
    let logged_in = std::fs::read_to_string(locked.dir.join("docker-config/config.json")).unwrap();
    let mut cluster = Cluster::new("images");
    let auth = cluster.dir.join("registry-auth.json");
    let locked_at = &locked.address;
    let wrong =
        format!(r#"{{"auths": {{"{locked_at}": {{"username": "{USER}", "password": "wrong"}}}}}}"#);
    std::fs::write(&auth, wrong).unwrap();
    let engines = fleet(
        &mut cluster,
        "img",
        &["--registry-auth", auth.to_str().unwrap()],
    );

    // Pulled from the open registry by every node, into its own engine.
    apply(&cluster, "web", &image);
    runs_on_every_node(&cluster, "web", Duration::from_secs(180));
    assert!(engines.iter().all(|e| e.has_image(&image)));
    // Each node's report says it holds it, by the engine's id: `get images` at any node.
    let held = wait_for(
        "the image held by three nodes",
        Duration::from_secs(30),
        || {
            let images = json(&cluster.server(2), &["get", "images"]);
            let items = images["items"].as_array()?.clone();
            let named = |i: &&Value| {
                i["status"]["names"]
                    .as_array()
                    .is_some_and(|n| n.contains(&image.as_str().into()))
            };
            let item = items.iter().find(named)?.clone();
            (item["status"]["nodes"].as_array()?.len() == 3).then_some(item)
        },
    );
    // The pull (371 MB) took long enough for every node to hear of it.
    let pulling = format!("Normal   Pulling: Pulling image \"{image}\"");
    describes(&cluster, "web-0", &[&pulling, "Normal   Started"]);
    let id = held["metadata"]["name"].as_str().unwrap().to_string();
    assert_eq!(engines[0].image_id(&image), format!("sha256:{id}"));
    let table = text(&weeble(&["--server", &cluster.server(0), "get", "images"]).stdout);
    assert!(
        table.contains(&id[..12]) && table.contains(&image),
        "{table}"
    );
    delete(&cluster, "web");

    // The locked registry refuses the wrong password: ErrImagePull, then ImagePullBackOff.
    apply(&cluster, "private", &private);
    waits_with(&cluster, "private", "ImagePullBackOff", "unauthorized");
    let told = [
        "Warning  ErrImagePull: Failed to pull image",
        "Warning  ImagePullBackOff: Back-off pulling image",
        "unauthorized",
    ];
    let described = describes(&cluster, "private-0", &told);
    // Fixed in the file: the next pull (after the back-off) brings it.
    std::fs::write(&auth, &logged_in).unwrap();
    runs_everywhere(&cluster, "private", Duration::from_secs(120));

    // A tag the registry lacks: the registry says so; pushed, the pods run.
    let missing = format!("{REGISTRY_IP}:{OPEN_PORT}/weeble/web:2");
    apply(&cluster, "later", &missing);
    // ErrImagePull, then ImagePullBackOff: both say it.
    waits_with(&cluster, "later", "ImagePull", "not found");
    open.push("weeble-demo:v1", "weeble/web:2");
    runs_everywhere(&cluster, "later", Duration::from_secs(120));

    // A name no registry could hold is never pulled.
    apply(&cluster, "bad", "Weeble/Web:1");
    waits_with(&cluster, "bad", "InvalidImageName", "Weeble/Web");

    // The password (used for every pull of `private` that worked) is nowhere a person could
    // read it: not in the logs, the API's pods and events, or describe.
    let config: Value = serde_json::from_str(&logged_in).unwrap();
    let token = config["auths"][&locked.address]["auth"]
        .as_str()
        .unwrap()
        .to_string();
    let mut shown: Vec<(String, String)> = cluster
        .nodes
        .iter()
        .map(|n| {
            (
                n.name.clone(),
                std::fs::read_to_string(cluster.log_path(&n.name)).unwrap(),
            )
        })
        .collect();
    for path in ["/api/v1/pods", "/api/v1/events"] {
        shown.push((path.into(), http_get(&format!("{}:17070", IPS[0]), path)));
    }
    shown.push(("describe".into(), described));
    for (place, said) in &shown {
        assert!(said.len() > 100, "{place} says something: {said}");
        let secret = said.contains(PASSWORD) || said.contains(&token);
        assert!(!secret, "{place} shows the password");
    }
    drop(cluster);
    drop(engines);
}

#[test]
fn images_pass_between_peers_where_no_registry_can_be_reached() {
    let _one_at_a_time = serial();
    if !docker_available() || !installed("docker-registry") {
        return;
    }
    assert!(weeble(&["image", "build-demo"]).status.success());
    let registry = Registry::start(OPEN_PORT, false);
    let image = registry.push("weeble-demo:v1", "weeble/web:1");
    let mut cluster = Cluster::new("peers");
    // Over connections that run the cluster key's handshake; paced, so that a transfer
    // (371 MB) lasts long enough to be cut halfway.
    let key = cluster.key("cluster.key");
    let key = key.to_str().unwrap();
    let paced = ["--cluster-key", key, "--image-serve-rate", "40Mi"];
    let engines = fleet(&mut cluster, "peer", &paced);
    let names: Vec<String> = cluster.nodes.iter().map(|n| n.name.clone()).collect();
    let index = |name: &str| names.iter().position(|n| n == name).unwrap();
    // The nodes (by index) that run a pod of `web`, as node `at` sees them.
    let running_on = |cluster: &Cluster, at: usize| -> Vec<usize> {
        let states = states_at(cluster, at, "web");
        let running = states.iter().filter(|s| s.1 == "Running");
        running.map(|s| index(&s.0)).collect()
    };
    let limit = Duration::from_secs(180);

    // One node pulls it from the registry; then the registry goes.
    apply_replicas(&cluster, "web", &image, 1);
    let first = wait_for("one pod running", limit, || {
        match running_on(&cluster, 0)[..] {
            [one] => Some(one),
            _ => None,
        }
    });
    drop(registry);

    // A second node's pull fails (nothing listens at the registry): it fetches the image
    // from the first, over the cluster's connections.
    apply_replicas(&cluster, "web", &image, 2);
    let second = wait_for("two pods running", limit, || {
        let on = running_on(&cluster, 0);
        (on.len() == 2).then(|| on.into_iter().find(|&i| i != first))?
    });
    let id = engines[first].image_id(&image);
    assert_eq!(engines[second].image_id(&image), id);
    let peers = logged_fields(
        &cluster,
        &names[second],
        "fetching an image from a peer",
        "peer",
    );
    assert_eq!(peers, [Value::from(names[first].as_str())]);
    assert!(logged(&cluster, &names[second], "image fetched from peers"));

    // The third fetches from one of the two, which is killed halfway through: it goes on
    // from the other.
    apply_replicas(&cluster, "web", &image, 3);
    let third = 3 - first - second;
    let partial = cluster.dir.join(&names[third]).join("images");
    let fetched = || -> u64 {
        let files = std::fs::read_dir(&partial).into_iter().flatten().flatten();
        let fetch = files.filter(|f| f.path().extension().is_some_and(|e| e == "fetch"));
        fetch
            .filter_map(|f| f.metadata().ok())
            .map(|m| m.len())
            .sum()
    };
    wait_for("half the image at the third node", limit, || {
        (fetched() > 150_000_000).then_some(())
    });
    let peers = logged_fields(
        &cluster,
        &names[third],
        "fetching an image from a peer",
        "peer",
    );
    let serving = index(peers.last().unwrap().as_str().unwrap());
    cluster.crash(serving);
    let other = 3 - third - serving;
    wait_for("the third node's pod running", limit, || {
        running_on(&cluster, other).contains(&third).then_some(())
    });
    assert_eq!(engines[third].image_id(&image), id);
    let failed = logged_fields(
        &cluster,
        &names[third],
        "fetching from a peer failed",
        "peer",
    );
    assert_eq!(failed, [Value::from(names[serving].as_str())]);
    let froms = logged_fields(
        &cluster,
        &names[third],
        "fetching an image from a peer",
        "from",
    );
    let peers = logged_fields(
        &cluster,
        &names[third],
        "fetching an image from a peer",
        "peer",
    );
    assert_eq!(peers.last().unwrap(), names[other].as_str());
    // The two holders' engines wrote the same tar: the third went on where it stopped.
    assert!(
        froms.last().unwrap().as_u64().unwrap() > 150_000_000,
        "{froms:?}"
    );
    assert!(!logged(&cluster, &names[third], "starting over"));
    drop(cluster);
    drop(engines);
}

#[test]
fn an_image_pushed_through_one_node_reaches_the_nodes_it_is_for() {
    let _one_at_a_time = serial();
    if !docker_available() {
        return;
    }
    assert!(weeble(&["image", "build-demo"]).status.success());
    let mut cluster = Cluster::new("pushed");
    let engines = fleet(&mut cluster, "push", &[]);
    let names: Vec<String> = cluster.nodes.iter().map(|n| n.name.clone()).collect();
    let limit = Duration::from_secs(120);
    let push = |server: usize, args: &[&str]| {
        let server = cluster.server(server);
        let mut all = vec!["--server", server.as_str(), "image", "push"];
        all.extend_from_slice(args);
        weeble(&all)
    };

    // For node 1 only: it gets it, and node 0, which took it, holds it; node 2 does not.
    let some = "weeble-pushed:some";
    run("docker", &["tag", "weeble-demo:v1", some]);
    let out = push(0, &[some, "--nodes", &names[1]]);
    run("docker", &["rmi", some]);
    assert!(out.status.success(), "push: {}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.contains(&format!("image/{some} pushed")), "{said}");
    wait_for("node 1 holding the image", limit, || {
        engines[1].has_image(some).then_some(())
    });
    assert!(engines[0].has_image(some));

    // For every node, through node 2: the three engines hold the local engine's image.
    let out = push(2, &["weeble-demo:v1"]);
    assert!(out.status.success(), "push: {}", text(&out.stderr));
    let id = run(
        "docker",
        &["image", "inspect", "-f", "{{.Id}}", "weeble-demo:v1"],
    );
    wait_for("every node holding the image", limit, || {
        engines
            .iter()
            .all(|e| e.has_image("weeble-demo:v1"))
            .then_some(())
    });
    for engine in &engines {
        assert_eq!(engine.image_id("weeble-demo:v1"), id.trim());
    }
    assert!(!engines[2].has_image(some), "node 2 was not one it was for");
    // Each node lists it (`get images`), and pods run from it with no registry anywhere.
    wait_for("three nodes listing the image", limit, || {
        let listed = json(&cluster.server(1), &["get", "images"]);
        let item = listed["items"].as_array()?.iter().find(|i| {
            i["status"]["names"]
                .as_array()
                .is_some_and(|n| n.contains(&"weeble-demo:v1".into()))
        })?;
        (item["status"]["nodes"].as_array()?.len() == 3).then_some(())
    });
    apply(&cluster, "web", "weeble-demo:v1");
    runs_on_every_node(&cluster, "web", limit);

    // An image the local engine lacks: a clear error, and nothing sent.
    let out = push(0, &["weeble-missing:v9"]);
    assert!(!out.status.success());
    let said = text(&out.stderr);
    assert!(
        said.contains("no image weeble-missing:v9 in the local engine"),
        "{said}"
    );
    drop(cluster);
    drop(engines);
}
