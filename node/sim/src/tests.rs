//! The scenario on small clusters: deterministic, and it recovers from crashes.

use super::*;

fn options(nodes: usize, replicas: u32, kill: usize, seed: u64) -> Options {
    Options {
        nodes,
        replicas,
        deployments: 2,
        kill,
        seed,
        duration_s: 40,
        links: Links::default(),
        start_us: 300_000,
        failure_rate: 0.0,
    }
}

#[test]
fn the_same_seed_gives_the_same_run_and_another_seed_another() {
    let a = run(&options(5, 10, 1, 7), |_| {});
    let b = run(&options(5, 10, 1, 7), |_| {});
    assert_eq!(a, b, "same seed, same report");
    let c = run(&options(5, 10, 1, 8), |_| {});
    assert_ne!(a.trace_hash, c.trace_hash, "another seed, another trace");
}

#[test]
fn crashed_nodes_replicas_run_again_elsewhere_once_each() {
    let report = run(&options(8, 40, 2, 3), |_| {});
    assert!(report.unfinished.is_empty(), "{report:?}");
    assert_eq!(report.replicas_running, 40, "{report:?}");
    assert_eq!(report.duplicates, 0, "{report:?}");
    assert!(
        report.detect_p95_s > 0.0 && report.detect_p95_s < 10.0,
        "{report:?}"
    );
    assert!(
        report.restore_p95_s >= report.detect_p50_s.min(0.3),
        "{report:?}"
    );
    assert!(report.bytes_per_node_s > 0.0, "{report:?}");
}

#[test]
fn a_restarted_node_loads_what_it_persisted() {
    let conditions = Conditions {
        links: Links::default(),
        start_us: 1_000,
        failure_rate: 0.0,
    };
    let mut world = World::new(3, 1, conditions);
    for i in 0..3 {
        world.start(i);
    }
    world.run_until(3_000_000);
    world.write(1, 9, Op::Apply(deployments(3, 1)));
    world.run_until(4_000_000);
    assert!(world.written.contains(&9), "the write is acknowledged");
    world.crash(2);
    assert!(world.core(2).is_none());
    world.run_until(5_000_000);
    world.start(2);
    // Before any peer speaks to it: what it holds is what its file held.
    let snapshot = &world.core(2).unwrap().view().snapshot;
    assert_eq!(
        snapshot.deployments.len(),
        1,
        "n2 persisted the write before the crash"
    );
}
