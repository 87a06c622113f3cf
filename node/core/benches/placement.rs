//! Placement benchmark: 100,000 replicas (10,000 deployments of 10) over 1,000 equal nodes,
//! and the same over two weight classes. Target: under 200 ms on one core.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use weeble_core::placement::{Candidate, Workload, place};
use weeble_crdt::{Labels, ObjectKey, ResourceAmounts};

fn members(n: usize, heavy_every: usize) -> Vec<Candidate> {
    (0..n)
        .map(|i| Candidate {
            name: format!("node-{i:04}"),
            labels: Labels::new(),
            allocatable: ResourceAmounts {
                cpu_millis: 8000,
                memory_bytes: 32 << 30,
            },
            max_pods: u32::MAX,
            weight: if i % heavy_every == 0 { 2.0 } else { 1.0 },
        })
        .collect()
}

fn workloads() -> Vec<Workload> {
    (0..10_000)
        .map(|i| Workload {
            deployment: ObjectKey::new("default", format!("app-{i}")),
            replicas: 10,
            node_selector: Labels::new(),
            requests: ResourceAmounts::default(),
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let ws = workloads();
    let mut group = c.benchmark_group("place 100k replicas on 1000 nodes");
    group.sample_size(10);
    let equal = members(1000, usize::MAX);
    group.bench_function("equal weights", |b| {
        b.iter(|| place(black_box(&equal), black_box(&ws)))
    });
    let mixed = members(1000, 4);
    group.bench_function("two weight classes", |b| {
        b.iter(|| place(black_box(&mixed), black_box(&ws)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
