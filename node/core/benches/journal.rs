//! What following pods costs a node's API ([`weeble_core::objects::journal`]): one look at
//! N running pods as served (each built from its deployment and its node's report, written
//! as JSON, compared with the last look), with nothing changed and with 1 % changed. The
//! journal follows a resource only while clients ask for it; a look happens at most every
//! 200 ms, and no more than a third of a core (the observer waits twice a look's time).

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;
use weeble_core::objects::Pod;
use weeble_core::objects::journal::{Journal, Limits};
use weeble_core::status::{Phase, PodStatus, PortStatus};
use weeble_crdt::{Labels, Object, ObjectKey, Protocol, parse_manifests};

const MANIFEST: &str = "kind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 1\n  \
    template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - name: web\n        \
    image: weeble-demo\n        ports: [{containerPort: 80}]\n";

/// Pod `i`'s report, restarted `restarts` times.
fn report(i: usize, restarts: u32) -> PodStatus {
    PodStatus {
        name: format!("web-{i}"),
        namespace: "default".into(),
        deployment: "web".into(),
        node: format!("node-{}", i % 50),
        labels: Arc::new(Labels::from([("app".into(), "web".into())])),
        container_ids: vec![format!("{i:064x}")],
        phase: Phase::Running,
        ready: true,
        restarts,
        reason: None,
        message: None,
        host_ip: IpAddr::from([10, 0, 0, (i % 50) as u8]),
        ports: vec![PortStatus {
            container_port: 80,
            protocol: Protocol::Tcp,
            host_port: 30000,
        }],
        started_at_ms: 1_780_000_000_000,
        template_hash: "0123456789abcdef".into(),
    }
}

/// One look at `n` pods, `changed` of them restarted since the last.
fn look(journal: &mut Journal, d: &weeble_crdt::Deployment, n: usize, changed: usize, at: u64) {
    let pods = (0..n).map(|i| {
        let restarts = u32::from(i < changed) * (at as u32);
        let pod = Pod::desired(
            d,
            &format!("web-{i}"),
            Ok("node"),
            Some(&report(i, restarts)),
        );
        let text = serde_json::to_string(&pod).expect("a pod serializes");
        let uid = pod.metadata.uid.unwrap_or_default();
        (ObjectKey::new("default", format!("web-{i}")), uid, text)
    });
    black_box(journal.observe(at, "pods", pods));
}

fn bench(c: &mut Criterion) {
    let Some(Object::Deployment(d)) = parse_manifests(MANIFEST).unwrap().objects.pop() else {
        panic!("the manifest is a deployment");
    };
    let mut group = c.benchmark_group("journal: one look at the pods");
    group.sample_size(10);
    for n in [1_000, 10_000] {
        let mut journal = Journal::new(0, Limits::default());
        look(&mut journal, &d, n, 0, 1);
        group.bench_function(format!("{n} pods, none changed"), |b| {
            b.iter(|| look(&mut journal, &d, n, 0, 1))
        });
        let mut at = 2;
        group.bench_function(format!("{n} pods, 1 % changed"), |b| {
            b.iter(|| {
                at += 1;
                look(&mut journal, &d, n, n / 100, at)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
