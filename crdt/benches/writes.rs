//! One write to the desired-state document at 100, 1,000 and 10,000 objects: the change
//! itself (an image update, then a scale), its incremental save, the snapshot the store
//! publishes after it (brought up to date, or read whole), and its sync to a peer. Target (issue 12): a whole write, end to end, at most 20 ms at 2,000
//! objects; this is the document's part of it.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use weeble_crdt::{ActorId, DesiredState, Object, ObjectKey, PeerSync, parse_manifests};

fn deployment(name: &str, image: &str) -> Object {
    let text = format!(
        "kind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: 3\n  template:\n    \
         metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers:\n      - {{name: web, \
         image: {image}, ports: [{{containerPort: 80}}]}}\n"
    );
    parse_manifests(&text).expect("valid").objects.remove(0)
}

/// A document holding `n` deployments, each written by its own change.
fn document(n: usize) -> DesiredState {
    let mut state = DesiredState::new(ActorId::from([1; 16]));
    for i in 0..n {
        state
            .apply(&deployment(&format!("app-{i}"), "img:1"))
            .unwrap();
    }
    state.save();
    state
}

/// Sync messages back and forth until both sides are quiet, as a node's sync exchange does.
fn exchange(a: &mut DesiredState, sa: &mut PeerSync, b: &mut DesiredState, sb: &mut PeerSync) {
    for _ in 0..16 {
        let Some(m) = a.sync_message(sa) else {
            return;
        };
        b.receive_sync(sb, &m).unwrap();
        if let Some(reply) = b.sync_message(sb) {
            a.receive_sync(sa, &reply).unwrap();
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("one write");
    group.sample_size(20);
    for n in [100, 1_000, 10_000] {
        let mut state = document(n);
        let key = ObjectKey::new("default", "app-0");
        let mut turn = 0u32;
        group.bench_function(BenchmarkId::new("apply + save", n), |b| {
            b.iter(|| {
                turn += 1;
                let image = format!("img:{turn}");
                state
                    .apply(black_box(&deployment("app-0", &image)))
                    .unwrap();
                black_box(state.save_incremental())
            })
        });
        group.bench_function(BenchmarkId::new("scale + save", n), |b| {
            b.iter(|| {
                turn += 1;
                state.scale(black_box(&key), turn % 7).unwrap();
                black_box(state.save_incremental())
            })
        });
        let mut snapshot = state.snapshot();
        group.bench_function(BenchmarkId::new("scale + save + refresh", n), |b| {
            b.iter(|| {
                turn += 1;
                state.scale(black_box(&key), turn % 7).unwrap();
                black_box(state.save_incremental());
                state.refresh(&mut snapshot);
            })
        });
        let mut peer = document(0);
        let (mut mine, mut theirs) = (PeerSync::default(), PeerSync::default());
        exchange(&mut state, &mut mine, &mut peer, &mut theirs);
        group.bench_function(BenchmarkId::new("scale, then sync it to a peer", n), |b| {
            b.iter(|| {
                turn += 1;
                state.scale(black_box(&key), turn % 7).unwrap();
                exchange(&mut state, &mut mine, &mut peer, &mut theirs);
            })
        });
        group.bench_function(BenchmarkId::new("snapshot", n), |b| {
            b.iter(|| black_box(state.snapshot()))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
