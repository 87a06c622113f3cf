//! The core does no I/O: none of its dependencies, direct or not, is an async runtime, a
//! network stack, a container engine client or a server, and its code reads no clock, no
//! file and no unseeded randomness.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Crates that would let the core touch the world.
const FORBIDDEN_CRATES: &[&str] = &[
    "tokio",
    "mio",
    "libp2p",
    "bollard",
    "axum",
    "hyper",
    "hickory-proto",
    "socket2",
];

/// Calls that read the world from inside: the clock, the disk, the thread's RNG.
const FORBIDDEN_CALLS: &[&str] = &[
    "std::fs",
    "SystemTime",
    "Instant::now",
    "thread_rng",
    "rand::rng()",
    "rand::random",
    "std::net::TcpStream",
    "std::net::UdpSocket",
    "std::thread",
];

/// Every package in `Cargo.lock` with the names of its dependencies.
fn lock_graph(lock: &str) -> BTreeMap<String, Vec<String>> {
    let mut graph = BTreeMap::new();
    for package in lock.split("[[package]]").skip(1) {
        let name = package
            .lines()
            .find_map(|l| l.strip_prefix("name = "))
            .map(|n| n.trim_matches('"').to_owned())
            .expect("every package has a name");
        let deps = match package.split_once("dependencies = [") {
            Some((_, rest)) => rest.split(']').next().unwrap_or_default(),
            None => "",
        };
        let deps = deps
            .split(',')
            .filter_map(|d| d.trim().trim_matches('"').split(' ').next())
            .filter(|d| !d.is_empty())
            .map(str::to_owned);
        graph.entry(name).or_insert_with(Vec::new).extend(deps);
    }
    graph
}

#[test]
fn the_core_depends_on_nothing_that_does_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).expect("Cargo.lock");
    let graph = lock_graph(&lock);
    let mut seen = BTreeSet::new();
    let mut todo = vec!["weeble-core".to_owned()];
    while let Some(name) = todo.pop() {
        if seen.insert(name.clone()) {
            todo.extend(graph.get(&name).into_iter().flatten().cloned());
        }
    }
    assert!(
        seen.len() > 5,
        "the walk found the core's dependencies: {seen:?}"
    );
    let bad: Vec<_> = FORBIDDEN_CRATES
        .iter()
        .filter(|c| seen.contains(**c) || seen.iter().any(|s| s.starts_with(&format!("{c}-"))))
        .collect();
    assert!(bad.is_empty(), "the core depends on {bad:?}");
}

#[test]
fn the_core_reads_no_clock_file_or_unseeded_randomness() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src];
    let mut checked = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("readable") {
                files.push(entry.expect("entry").path());
            }
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        checked += 1;
        for call in FORBIDDEN_CALLS {
            assert!(!text.contains(call), "{} uses {call}", path.display());
        }
    }
    assert!(checked > 10, "only {checked} source files found");
}
