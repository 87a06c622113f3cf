//! The container test bed: each node in a container of its own on a private Docker network
//! made by the test, workloads on the host's engine.
//! - A node cut off from every peer (its container disconnected from the network) keeps its
//!   replicas and takes on the rest, accepts writes, and reboots with no network from its own
//!   disk; on the heal the documents converge, the extra copies go, no acknowledged write is
//!   lost and nothing is recreated.
//! - Five nodes split 3 | 2 (iptables rules on the bridge's traffic) all write at once on
//!   both sides (creates, updates, deletes, one deployment everyone updates); the heal keeps
//!   every acknowledged write, as Jepsen's set checker counts it.
//! - A node on a lossy link (a fifth of its packets dropped) is at most suspected: nobody is
//!   evicted and no replica moves.
//! - A node killed with its workloads (`docker kill`) is declared dead and its replicas run on
//!   the others.
//!
//! Needs Docker: skipped with a message when it is missing, except under CI=true.

mod support;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::MutexGuard;
use std::time::{Duration, Instant};
use support::*;

/// Applies a deployment inside node `index`'s container; panics unless acknowledged.
fn apply_in(bed: &Bed, index: usize, name: &str, replicas: u32) {
    let out = bed.weeble_in(
        index,
        &["apply", "-f", "-"],
        &demo_deployment(name, replicas),
    );
    assert!(out.status.success(), "apply {name}: {}", text(&out.stderr));
}

/// The deployments node `index` holds, by name.
fn deployments(bed: &Bed, index: usize) -> BTreeMap<String, Value> {
    let out = bed.weeble_in(index, &["get", "deployments", "-o", "json"], "");
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            (
                d["metadata"]["name"].as_str().unwrap().to_string(),
                d.clone(),
            )
        })
        .collect()
}

fn deployment_names(bed: &Bed, index: usize) -> BTreeSet<String> {
    deployments(bed, index).into_keys().collect()
}

fn heads(bed: &Bed, index: usize) -> String {
    let reply = http_get(
        &format!("{}:7070", bed.ip(index)),
        "/apis/weeble.io/v1/state",
    );
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str::<Value>(body).unwrap_or(Value::Null)["heads"].to_string()
}

/// After a heal at `healed`: waits for identical heads on every node, then for one copy of
/// each of `replicas` replicas of `deployment`; prints how long each took.
fn wait_healed(bed: &Bed, healed: Instant, deployment: &str, replicas: usize) {
    wait_for("identical heads", Duration::from_secs(60), || {
        let all: BTreeSet<String> = (0..bed.nodes.len()).map(|i| heads(bed, i)).collect();
        (all.len() == 1 && !all.contains("null")).then_some(())
    });
    let converged = healed.elapsed();
    wait_for("one copy of each replica", Duration::from_secs(60), || {
        (total(bed, deployment) == replicas).then_some(())
    });
    eprintln!(
        "{} nodes healed: heads identical after {converged:?}, duplicates gone after {:?}",
        bed.nodes.len(),
        healed.elapsed()
    );
}

fn total(bed: &Bed, deployment: &str) -> usize {
    (0..bed.nodes.len())
        .map(|i| bed.running(i, deployment).len())
        .sum()
}

/// A bed of `n` nodes that all see each other, running 6 replicas of deployment `name`,
/// with the lock that keeps the other tests of this binary off the machine; None when
/// Docker is missing (outside CI).
fn running_bed(n: usize, name: &str) -> Option<(MutexGuard<'static, ()>, Bed)> {
    let one_at_a_time = serial();
    let mut bed = Bed::new()?;
    for i in 0..n {
        bed.start(i);
    }
    let all: Vec<usize> = (0..n).collect();
    wait_sides(&bed, &[&all]);
    apply_in(&bed, 0, name, 6);
    wait_for("six replicas running", Duration::from_secs(60), || {
        (total(&bed, name) == 6).then_some(())
    });
    Some((one_at_a_time, bed))
}

#[test]
fn a_node_cut_off_keeps_running_and_the_heal_loses_and_recreates_nothing() {
    let Some((_one_at_a_time, bed)) = running_bed(3, "edge") else {
        return;
    };
    let cut = (0..3)
        .max_by_key(|&i| bed.running(i, "edge").len())
        .unwrap();
    let others: Vec<usize> = (0..3).filter(|&i| i != cut).collect();
    let owned = bed.running(cut, "edge");
    assert!(!owned.is_empty());

    // Cut off: the node keeps what it runs, and runs the whole desired state alone; the
    // others run all of it too (one copy per side, no more).
    bed.disconnect(cut);
    wait_for(
        "both sides running all six",
        Duration::from_secs(60),
        || {
            let here = bed.running(cut, "edge");
            let there: usize = others.iter().map(|&i| bed.running(i, "edge").len()).sum();
            assert!(here.len() <= 6 && there <= 6, "more than one copy per side");
            (here.len() == 6 && there == 6).then_some(())
        },
    );
    assert!(owned.iter().all(|id| bed.running(cut, "edge").contains(id)));

    // Both sides accept writes.
    apply_in(&bed, cut, "written-while-cut-off", 1);
    apply_in(&bed, others[0], "written-by-the-rest", 1);

    // It reboots with no network: it restores its replicas from its own disk.
    let running_before_reboot = bed.running(cut, "edge");
    let out = std::process::Command::new("docker")
        .args(["restart", "-t", "1", &bed.nodes[cut]])
        .output()
        .unwrap();
    assert!(out.status.success(), "restart: {}", text(&out.stderr));
    wait_for("the rebooted node serving", Duration::from_secs(60), || {
        deployment_names(&bed, cut)
            .contains("written-while-cut-off")
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(5)); // past its join grace, alone
    assert_eq!(
        bed.running(cut, "edge"),
        running_before_reboot,
        "nothing recreated"
    );

    // The heal: one document, one copy of each replica, every write, nothing recreated.
    let healed = Instant::now();
    bed.connect(cut);
    wait_healed(&bed, healed, "edge", 6);
    for i in 0..3 {
        let names = deployment_names(&bed, i);
        for name in ["edge", "written-while-cut-off", "written-by-the-rest"] {
            assert!(names.contains(name), "node {i} lacks {name}: {names:?}");
        }
    }
    let kept = bed.running(cut, "edge");
    assert!(
        owned.iter().all(|id| kept.contains(id)),
        "the pods the node owned before the cut still run in the same containers"
    );
}

/// Waits until every node of each side sees exactly its own side ready.
fn wait_sides(bed: &Bed, sides: &[&[usize]]) {
    for side in sides {
        for &i in *side {
            wait_for(
                "each side to see itself only",
                Duration::from_secs(60),
                || (ready_nodes(&bed.server(i)).len() == side.len()).then_some(()),
            );
        }
    }
}

/// Every running container of `deployment` on the bed, whichever node runs it.
fn all_running(bed: &Bed, deployment: &str) -> BTreeSet<String> {
    (0..bed.nodes.len())
        .flat_map(|i| bed.running(i, deployment))
        .collect()
}

#[test]
fn a_node_on_a_lossy_link_is_at_most_suspected_and_nothing_moves() {
    let Some((_one_at_a_time, bed)) = running_bed(3, "lossy") else {
        return;
    };
    let before = all_running(&bed, "lossy");
    let lossy = 2;
    if !bed.lossy(lossy, LOSS) {
        return;
    }
    // For LOSSY_FOR, a fifth of the packets to and from one node are lost: no replica is
    // made or removed anywhere, and a write through that node is still acknowledged.
    let start = Instant::now();
    apply_in(&bed, lossy, "written-over-a-lossy-link", 0);
    while start.elapsed() < LOSSY_FOR {
        let now = all_running(&bed, "lossy");
        if now != before {
            // What each node saw, for whoever looks into why.
            let wanted = [
                "peer suspected",
                "peer declared dead",
                "pod placed on this node",
            ];
            let mut seen = Vec::new();
            for i in 0..3 {
                let log = bed.log(i);
                for line in wanted.iter().flat_map(|m| messages(&log, m)) {
                    seen.push(format!("node {i}: {line}"));
                }
            }
            panic!(
                "a replica moved: {before:?} became {now:?}\n{}",
                seen.join("\n")
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let dropped = bed.dropped();
    assert!(dropped > 0, "the lossy link lost nothing");
    bed.heal();
    wait_sides(&bed, &[&[0, 1, 2]]);
    eprintln!("{dropped} packets lost in {LOSSY_FOR:?}");
    for i in 0..3 {
        let log = bed.log(i);
        let dead = messages(&log, "peer declared dead");
        assert!(dead.is_empty(), "node {i} evicted a peer: {dead:?}");
        let (suspected, cleared) = (
            messages(&log, "peer suspected").len(),
            messages(&log, "peer no longer suspected").len(),
        );
        eprintln!("node {i}: suspected a peer {suspected} times, cleared {cleared} times");
        assert!(deployment_names(&bed, i).contains("written-over-a-lossy-link"));
    }
}

/// The loss rate of the lossy link test, and how long it lasts.
const LOSS: f64 = 0.2;
const LOSSY_FOR: Duration = Duration::from_secs(30);

#[test]
fn a_killed_node_s_replicas_run_on_the_others() {
    let Some((_one_at_a_time, bed)) = running_bed(3, "mortal") else {
        return;
    };
    let victim = (0..3)
        .max_by_key(|&i| bed.running(i, "mortal").len())
        .unwrap();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != victim).collect();
    let killed = Instant::now();
    bed.kill(victim);
    wait_sides(&bed, &[&survivors]);
    let detected = killed.elapsed();
    wait_for(
        "six replicas on the survivors",
        Duration::from_secs(30),
        || {
            let n: usize = survivors
                .iter()
                .map(|&i| bed.running(i, "mortal").len())
                .sum();
            assert!(n <= 6, "more than one copy of a replica");
            (n == 6).then_some(())
        },
    );
    eprintln!(
        "node container killed: seen dead after {detected:?}, replicas back after {:?}",
        killed.elapsed()
    );
    for &i in &survivors {
        let log = bed.log(i);
        let dead = messages(&log, "peer declared dead");
        assert!(
            dead.iter()
                .any(|l| l["fields"]["peer"] == bed.nodes[victim].as_str()),
            "node {i} never declared {} dead",
            bed.nodes[victim]
        );
    }
}

#[test]
fn a_three_two_partition_keeps_both_sides_writing_and_the_heal_keeps_every_write() {
    let Some((_one_at_a_time, bed)) = running_bed(5, "split") else {
        return;
    };
    let (left, right): (&[usize], &[usize]) = (&[0, 1, 2], &[3, 4]);
    apply_image(&bed, 0, SHARED, "weeble-demo:before-the-split");

    if !bed.partition(left, right) {
        return;
    }
    wait_sides(&bed, &[left, right]);
    // Each side runs every replica, one copy each.
    let side_total =
        |side: &[usize]| -> usize { side.iter().map(|&i| bed.running(i, "split").len()).sum() };
    wait_for("six replicas on each side", Duration::from_secs(60), || {
        let (l, r) = (side_total(left), side_total(right));
        assert!(l <= 6 && r <= 6, "more than one copy per side: {l}, {r}");
        (l == 6 && r == 6).then_some(())
    });
    // Every node writes at once on both sides of the split, each write acknowledged.
    let histories: Vec<History> = std::thread::scope(|scope| {
        let bed = &bed;
        let writers: Vec<_> = (0..5)
            .map(|i| scope.spawn(move || write_history(bed, i)))
            .collect();
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let healed = Instant::now();
    bed.heal();
    wait_healed(&bed, healed, "split", 6);
    wait_sides(&bed, &[&[0, 1, 2, 3, 4]]);
    check_histories(&bed, &histories);
}

/// What one writer did, every operation acknowledged.
struct History {
    /// Deployments it created and did not delete.
    created: Vec<String>,
    /// Deployments it created and then deleted.
    deleted: Vec<String>,
    /// Its own deployment, which it updated in turn to each of these images.
    own: (String, Vec<String>),
    /// The images it gave the deployment every writer updates.
    shared: Vec<String>,
}

/// The writer on node `i`: three rounds of a create, an update of its own deployment and an
/// update of the shared one, then a delete of its first create.
fn write_history(bed: &Bed, i: usize) -> History {
    let own = format!("own{i}");
    let mut history = History {
        created: Vec::new(),
        deleted: Vec::new(),
        own: (own.clone(), Vec::new()),
        shared: Vec::new(),
    };
    for round in 0..3 {
        let name = format!("w{i}-{round}");
        apply_in(bed, i, &name, 0);
        history.created.push(name);
        let image = format!("weeble-demo:w{i}-r{round}");
        apply_image(bed, i, &own, &image);
        history.own.1.push(image.clone());
        apply_image(bed, i, SHARED, &image);
        history.shared.push(image);
    }
    let first = history.created.remove(0);
    let out = bed.weeble_in(i, &["delete", "deployment", &first], "");
    assert!(
        out.status.success(),
        "delete {first}: {}",
        text(&out.stderr)
    );
    history.deleted.push(first);
    history
}

const SHARED: &str = "shared";

/// Applies deployment `name` with no replicas and the given image, on node `index`.
fn apply_image(bed: &Bed, index: usize, name: &str, image: &str) {
    let manifest = demo_deployment(name, 0).replace("weeble-demo:v1", image);
    let out = bed.weeble_in(index, &["apply", "-f", "-"], &manifest);
    assert!(out.status.success(), "apply {name}: {}", text(&out.stderr));
}

/// Jepsen's set check, and more: on every node, every acknowledged create is present, every
/// acknowledged delete stays deleted, each writer's own deployment holds its last update,
/// and the deployment all of them updated holds the same image everywhere, one that some
/// writer wrote.
fn check_histories(bed: &Bed, histories: &[History]) {
    let image = |d: &Value| d["spec"]["template"]["spec"]["containers"][0]["image"].clone();
    let written: BTreeSet<&str> = histories
        .iter()
        .flat_map(|h| h.shared.iter().map(String::as_str))
        .collect();
    let mut shared_images = BTreeSet::new();
    for i in 0..bed.nodes.len() {
        let found = deployments(bed, i);
        for h in histories {
            let lost: Vec<&String> = h
                .created
                .iter()
                .filter(|n| !found.contains_key(*n))
                .collect();
            assert!(
                lost.is_empty(),
                "node {i} lost acknowledged writes {lost:?}"
            );
            let back: Vec<&String> = h
                .deleted
                .iter()
                .filter(|n| found.contains_key(*n))
                .collect();
            assert!(back.is_empty(), "node {i} brought back deleted {back:?}");
            let (own, updates) = &h.own;
            assert_eq!(
                image(&found[own]),
                updates.last().unwrap().as_str(),
                "node {i}: {own} lacks its last update"
            );
        }
        let shared = image(&found[SHARED]);
        assert!(
            shared.as_str().is_some_and(|s| written.contains(s)),
            "node {i}: {SHARED} holds {shared}, which no writer wrote"
        );
        shared_images.insert(shared.to_string());
    }
    assert_eq!(
        shared_images.len(),
        1,
        "the nodes disagree: {shared_images:?}"
    );
}
