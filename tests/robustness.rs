//! What a careless operator, a full disk or a flood cannot do to a node, for real: `weeble
//! node` processes on 127.0.0.81-89 and this machine's Docker.
//!
//! A deployment of far more replicas than the cluster may run is capped by `--max-pods` on
//! every node, and a delete is honoured within one bounded batch; a node whose disk is full
//! refuses writes without a trace, says it is not Ready and takes no pods until it has room
//! again; a state file cut mid-frame does not keep a node from starting; nodes with different
//! cluster keys say so on both sides.
//!
//! Needs Docker, and (for the full disk) root to mount a small tmpfs: skipped with a message
//! when either is missing, except under CI=true, where the test fails.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

/// The demo image, built from this binary (each test target builds it once).
fn demo_image() {
    let built = weeble(&["image", "build-demo"]);
    assert!(
        built.status.success(),
        "build-demo: {}",
        text(&built.stderr)
    );
}

/// A deployment of the demo image; with `pad` bytes of incompressible text in a variable,
/// so that its change cannot fit in the slack of a file's last page.
fn manifest(name: &str, replicas: u32, pad: usize) -> String {
    let mut seed = u64::from(std::process::id()) ^ pad as u64;
    let noise: String = (0..pad)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            char::from(b"0123456789abcdef"[(seed >> 60) as usize])
        })
        .collect();
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  \
         selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        \
         app: {name}\n    spec:\n      containers:\n      - name: web\n        image: weeble-demo:v1\n        \
         env:\n        - name: PAD\n          value: \"{noise}\"\n"
    )
}

/// `weeble apply` of deployment `name` at `server`: the command's output.
fn apply(cluster: &Cluster, server: &str, name: &str, replicas: u32) -> std::process::Output {
    apply_padded(cluster, server, name, replicas, 0)
}

fn apply_padded(
    cluster: &Cluster,
    server: &str,
    name: &str,
    replicas: u32,
    pad: usize,
) -> std::process::Output {
    let file = cluster.dir.join(format!("{name}.yaml"));
    std::fs::write(&file, manifest(name, replicas, pad)).unwrap();
    weeble(&["--server", server, "apply", "-f", file.to_str().unwrap()])
}

/// `n` node names of this test process, `<prefix><pid>-a`, `-b`, ...
fn node_names(prefix: &str, n: u8) -> Vec<String> {
    let id = std::process::id();
    (0..n)
        .map(|i| format!("{prefix}{id}-{}", char::from(b'a' + i)))
        .collect()
}

/// Starts `names` on 127.0.0.`base`..., each joining the first, with `extra` arguments, and
/// waits until the first sees them all Ready.
fn start(cluster: &mut Cluster, base: u8, names: &[String], extra: &[&str]) {
    let seed = p2p(&format!("127.0.0.{base}"));
    for (i, name) in names.iter().enumerate() {
        let mut args = extra.to_vec();
        if i > 0 {
            args.extend(["--join", &seed]);
        }
        cluster.start(name, &format!("127.0.0.{}", base + i as u8), &args);
    }
    let server = cluster.server(0);
    wait_for("every node Ready", Duration::from_secs(30), || {
        (ready_nodes(&server).len() == names.len()).then_some(())
    });
}

fn node_named<'a>(nodes: &'a Value, name: &str) -> &'a Value {
    nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("node {name} in {nodes}"))
}

#[test]
fn a_flood_of_replicas_is_capped_per_node_and_a_delete_stops_it_within_a_batch() {
    if !docker_available() {
        return;
    }
    let _serial = serial();
    demo_image();
    let mut cluster = Cluster::new("flood");
    let names = node_names("fl", 2);
    start(
        &mut cluster,
        81,
        &names,
        &["--max-pods", "3", "--dns-port", "0"],
    );
    let server = cluster.server(0);

    let out = apply(&cluster, &server, "flood", 99_999);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_for("six replicas running", Duration::from_secs(60), || {
        (cluster.containers(true).len() == 6).then_some(())
    });
    for _ in 0..20 {
        for name in &names {
            let here = cluster.containers_of(Some(name.as_str()), false).len();
            assert!(
                here <= 3,
                "{name} runs {here} containers, over --max-pods 3"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // A replica beyond every node's limit is Pending, and says why.
    let pod = json(&server, &["get", "pod", "flood-99998"]);
    assert_eq!(pod["status"]["phase"], "Pending", "{pod}");
    assert_eq!(pod["status"]["reason"], "Unschedulable", "{pod}");
    let message = pod["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("--max-pods"), "{pod}");
    let nodes = json(&server, &["get", "nodes"]);
    assert_eq!(
        node_named(&nodes, &names[1])["status"]["capacity"]["pods"],
        "3"
    );

    let out = weeble(&["--server", &server, "delete", "deployment", "flood"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_for("every container removed", Duration::from_secs(60), || {
        cluster.containers(false).is_empty().then_some(())
    });
}

#[test]
fn a_delete_is_seen_after_one_batch_not_after_the_whole_pass() {
    if !docker_available() {
        return;
    }
    let _serial = serial();
    demo_image();
    let mut cluster = Cluster::new("batch");
    // Alone, the node runs everything once its join grace is over.
    start(
        &mut cluster,
        84,
        &node_names("ba", 1),
        &["--max-pods", "60", "--dns-port", "0"],
    );
    let server = cluster.server(0);
    let out = apply(&cluster, &server, "many", 60);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_for("the first containers", Duration::from_secs(60), || {
        (!cluster.containers(false).is_empty()).then_some(())
    });
    let out = weeble(&["--server", &server, "delete", "deployment", "many"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let at_delete = cluster.containers(false).len();
    let mut most = at_delete;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = cluster.containers(false).len();
        most = most.max(now);
        if now == 0 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        cluster.containers(false).len(),
        0,
        "the delete was honoured"
    );
    // The pass in progress ends its batch (16 actions at most), then removes.
    assert!(
        most <= at_delete + 16,
        "{at_delete} containers at the delete, {most} after it: the pass ran on past the delete"
    );
}

/// A tmpfs of `kib` KiB mounted at `path` for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` (after saying so) where this user cannot mount; under CI=true, a failure.
    fn mount(path: &Path, kib: u32) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(path)
            .output()
            .expect("mount runs");
        if out.status.success() {
            return Some(Tmpfs(path.to_path_buf()));
        }
        let why = format!(
            "cannot mount a small tmpfs (root needed): {}",
            text(&out.stderr)
        );
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        eprintln!("SKIPPED: {why}");
        None
    }

    /// Takes every free byte but `leave` with a filler file.
    fn fill(&self, leave: u64) {
        let _ = std::fs::remove_file(self.0.join("filler"));
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.0)
            .output()
            .unwrap();
        let avail: u64 = text(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let filler = vec![0u8; avail.saturating_sub(leave) as usize];
        // The filler may hit ENOSPC at the very end (block rounding): that is fine too.
        let _ = std::fs::write(self.0.join("filler"), filler);
    }

    fn free(&self) {
        std::fs::remove_file(self.0.join("filler")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_node_with_a_full_disk_refuses_writes_without_a_trace_and_takes_no_pods_until_it_has_room() {
    if !docker_available() {
        return;
    }
    let _serial = serial();
    let mut cluster = Cluster::new("disk");
    let names = node_names("dk", 3);
    // The third node's data directory is a 512 KiB disk of its own.
    let Some(disk) = Tmpfs::mount(&cluster.dir.join(&names[2]), 512) else {
        return;
    };
    demo_image();
    start(&mut cluster, 86, &names, &["--dns-port", "0"]);
    let (server, full) = (cluster.server(0), cluster.server(2));
    let out = apply(&cluster, &server, "before", 1);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_for(
        "the first write on the third node",
        Duration::from_secs(10),
        || {
            deployments(&full)
                .contains(&"before".to_string())
                .then_some(())
        },
    );

    disk.fill(0);
    // The state file's last page may still have room: small writes use it up, until one
    // is refused.
    let refused_at = (1..200).find(|&n| {
        let scale = &[
            "--server",
            &full,
            "scale",
            "deployment",
            "before",
            "--replicas",
        ];
        !weeble(&[scale.as_slice(), &[&n.to_string()]].concat())
            .status
            .success()
    });
    assert!(
        refused_at.is_some(),
        "200 writes on a full disk were acknowledged"
    );
    // A write at the full node is refused, and says why.
    let out = apply_padded(&cluster, &full, "refused", 1, 8192);
    assert!(
        !out.status.success(),
        "a write on a full disk was acknowledged"
    );
    assert!(
        text(&out.stderr).contains("No space left"),
        "{}",
        text(&out.stderr)
    );
    // The node says it is not Ready, with the reason, and every node sees it.
    wait_for(
        "the full node reported not Ready",
        Duration::from_secs(15),
        || {
            let nodes = json(&server, &["get", "nodes"]);
            let ready = &node_named(&nodes, &names[2])["status"]["conditions"][0];
            (ready["status"] == "False" && ready["reason"] == "StateNotPersisted").then_some(())
        },
    );
    // Writes elsewhere go on; none of their replicas is placed on the full node.
    let out = apply_padded(&cluster, &server, "during", 9, 8192);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pods_during = pods(&server);
    let placed: Vec<&str> = pods_during
        .iter()
        .filter(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("during-")
        })
        .map(|p| p["spec"]["nodeName"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(placed.len(), 9);
    assert!(
        !placed.contains(&names[2].as_str()),
        "a replica was placed on the full node: {placed:?}"
    );
    std::thread::sleep(Duration::from_secs(3));
    for server in [&server, &full] {
        assert!(
            !deployments(server).contains(&"refused".to_string()),
            "the refused write shows on {server}"
        );
    }

    disk.free();
    wait_for("the node Ready again", Duration::from_secs(30), || {
        ready_nodes(&server).contains(&names[2]).then_some(())
    });
    wait_for("the writes it missed", Duration::from_secs(15), || {
        deployments(&full)
            .contains(&"during".to_string())
            .then_some(())
    });
    let out = apply(&cluster, &full, "after", 1);
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::thread::sleep(Duration::from_secs(3));
    for server in [&server, &full] {
        let held = deployments(server);
        assert!(held.contains(&"after".to_string()), "{server}: {held:?}");
        assert!(!held.contains(&"refused".to_string()), "{server}: {held:?}");
    }
    // The nodes stop before the small disk is unmounted, and the cluster's directory (which
    // holds the mount point) goes after it: a mounted directory cannot be removed.
    for i in 0..names.len() {
        cluster.signal(i, "-KILL");
        cluster.nodes[i].child.wait().unwrap();
    }
    let dir = cluster.dir.clone();
    drop(disk);
    drop(cluster);
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

#[test]
fn a_state_file_cut_mid_frame_does_not_keep_a_node_from_starting() {
    if !docker_available() {
        return;
    }
    let _serial = serial();
    let mut cluster = Cluster::new("torn");
    let names = node_names("tn", 2);
    start(&mut cluster, 88, &names, &["--dns-port", "0"]);
    let (server, torn) = (cluster.server(0), cluster.server(1));
    for name in ["first", "last"] {
        let out = apply(&cluster, &server, name, 0);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let file = cluster.dir.join(&names[1]).join("state.automerge");
    cluster.signal(1, "-KILL");
    cluster.nodes[1].child.wait().unwrap();
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    cluster.restart(1);
    // It starts, says what it dropped, and gets the lost change back from its peer.
    wait_for(
        "both writes on the restarted node",
        Duration::from_secs(30),
        || {
            let held = weeble(&["--server", &torn, "get", "deployments", "-o", "json"]);
            let held: Value = serde_json::from_slice(&held.stdout).ok()?;
            (held["items"].as_array()?.len() == 2).then_some(())
        },
    );
    let log = json_log(&cluster, &names[1]);
    assert!(
        log.iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("torn frame"))),
        "no warning about the torn frame"
    );
}

#[test]
fn nodes_with_different_cluster_keys_say_so_on_both_sides() {
    if !docker_available() {
        return;
    }
    let _serial = serial();
    let mut cluster = Cluster::new("keys");
    let names = node_names("ky", 2);
    let (a, b) = (&names[0], &names[1]);
    let (one, two) = (cluster.key("one.key"), cluster.key("two.key"));
    cluster.start(
        a,
        "127.0.0.80",
        &["--dns-port", "0", "--cluster-key", one.to_str().unwrap()],
    );
    let seed = p2p("127.0.0.80");
    cluster.start(
        b,
        "127.0.0.79",
        &[
            "--dns-port",
            "0",
            "--cluster-key",
            two.to_str().unwrap(),
            "--join",
            &seed,
        ],
    );
    wait_for(
        "both sides to log the mismatch",
        Duration::from_secs(20),
        || {
            (logged(&cluster, b, "Do both nodes have the same --cluster-key")
                && logged(
                    &cluster,
                    a,
                    "failed its handshake: a node with another --cluster-key",
                ))
            .then_some(())
        },
    );
    assert!(
        ready_nodes(&cluster.server(0)).len() == 1,
        "the nodes must not have joined"
    );
}
