//! Which pods a service port resolves to.

use super::*;
use crate::status::{NodeStatus, PortStatus};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use weeble_crdt::{Labels, Object, parse_manifests};

const MANIFEST: &str = "
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  template:
    metadata: {labels: {app: web, tier: front}}
    spec:
      containers:
      - {name: web, image: weeble-demo, ports: [{containerPort: 80, name: http}, {containerPort: 81}]}
---
kind: Service
metadata: {name: by-number}
spec:
  selector: {app: web}
  ports: [{port: 8080, targetPort: 80}]
---
kind: Service
metadata: {name: by-name}
spec:
  selector: {app: web}
  ports: [{name: web, port: 80, targetPort: http}, {name: other, port: 81, targetPort: 81}]
---
kind: Service
metadata: {name: selects-nothing}
spec:
  selector: {app: other}
  ports: [{port: 80, targetPort: 80}]
";

fn snapshot() -> Snapshot {
    let mut snapshot = Snapshot::default();
    for object in parse_manifests(MANIFEST).unwrap().objects {
        match object {
            Object::Deployment(d) => snapshot
                .deployments
                .insert(d.meta.key(), d.into())
                .map(drop),
            Object::Service(s) => snapshot.services.insert(s.meta.key(), s.into()).map(drop),
            Object::Namespace(n) => panic!("the manifest holds no namespace: {n:?}"),
        };
    }
    snapshot
}

fn pod(name: &str, node: u8, ready: bool, labels: &[(&str, &str)]) -> PodStatus {
    PodStatus {
        name: name.into(),
        namespace: "default".into(),
        deployment: "web".into(),
        node: format!("node-{node}"),
        labels: std::sync::Arc::new(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Labels>(),
        ),
        container_ids: vec![format!("c-{name}")],
        phase: Phase::Running,
        ready,
        restarts: 0,
        reason: None,
        message: None,
        host_ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, node)),
        ports: vec![
            PortStatus {
                container_port: 80,
                protocol: Protocol::Tcp,
                host_port: 30000 + u16::from(node),
            },
            PortStatus {
                container_port: 81,
                protocol: Protocol::Tcp,
                host_port: 31000 + u16::from(node),
            },
        ],
        started_at_ms: 1,
        template_hash: "h".into(),
    }
}

fn table(pods: Vec<PodStatus>) -> StatusTable {
    let mut nodes: BTreeMap<String, NodeStatus> = BTreeMap::new();
    for p in pods {
        let entry = nodes.entry(p.node.clone()).or_insert_with(|| NodeStatus {
            node: p.node.clone(),
            epoch: 1,
            version: 1,
            pods: vec![],
            not_ready: None,
            leaving: false,
            images: Vec::new(),
            signature: Default::default(),
        });
        entry.pods.push(p);
    }
    let mut table = StatusTable::default();
    for report in nodes.into_values() {
        table.merge(report);
    }
    table
}

fn addrs(ports: &PortEndpoints) -> Vec<String> {
    ports.ready.iter().map(|e| e.addr.to_string()).collect()
}

const WEB: &[(&str, &str)] = &[("app", "web"), ("tier", "front")];

#[test]
fn a_service_forwards_to_where_each_ready_pod_publishes_its_target_port() {
    let all = endpoints(
        &snapshot(),
        &table(vec![pod("web-0", 1, true, WEB), pod("web-1", 2, true, WEB)]),
    );
    let by_number = &all[&ObjectKey::new("default", "by-number")];
    assert_eq!(addrs(&by_number[0]), ["127.0.0.1:30001", "127.0.0.2:30002"]);
    assert_eq!(by_number[0].port, 8080);
}

#[test]
fn a_named_target_port_is_looked_up_among_the_pod_s_container_ports() {
    let all = endpoints(&snapshot(), &table(vec![pod("web-0", 1, true, WEB)]));
    let by_name = &all[&ObjectKey::new("default", "by-name")];
    assert_eq!(addrs(&by_name[0]), ["127.0.0.1:30001"], "http is port 80");
    assert_eq!(addrs(&by_name[1]), ["127.0.0.1:31001"]);
}

#[test]
fn pods_that_are_not_ready_or_not_selected_get_no_traffic() {
    let elsewhere = PodStatus {
        namespace: "other".into(),
        ..pod("web-9", 9, true, WEB)
    };
    let all = endpoints(
        &snapshot(),
        &table(vec![
            pod("web-0", 1, true, WEB),
            pod("web-1", 2, false, WEB),
            pod("stranger", 3, true, &[("app", "stranger")]),
            elsewhere,
        ]),
    );
    let by_number = &all[&ObjectKey::new("default", "by-number")][0];
    assert_eq!(addrs(by_number), ["127.0.0.1:30001"]);
    assert_eq!(not_ready(by_number), ["web-1"]);
    let nothing = &all[&ObjectKey::new("default", "selects-nothing")][0];
    assert!(nothing.ready.is_empty() && nothing.not_ready.is_empty());
}

/// The names of the pods of `port` that get no traffic.
fn not_ready(port: &PortEndpoints) -> Vec<&str> {
    port.not_ready.iter().map(|n| n.pod.as_str()).collect()
}

#[test]
fn a_pod_that_does_not_publish_the_target_port_is_not_an_endpoint() {
    let mut bare = pod("web-0", 1, true, WEB);
    bare.ports.clear();
    let all = endpoints(&snapshot(), &table(vec![bare]));
    let by_number = &all[&ObjectKey::new("default", "by-number")][0];
    assert!(by_number.ready.is_empty());
    assert_eq!(not_ready(by_number), ["web-0"]);
}

#[test]
fn containers_get_kubernetes_service_variables_for_their_namespace() {
    let mut snapshot = snapshot();
    let mut elsewhere = Service::clone(&snapshot.services[&ObjectKey::new("default", "by-number")]);
    elsewhere.meta.namespace = "other".into();
    snapshot
        .services
        .insert(elsewhere.meta.key(), elsewhere.into());
    let host = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7));
    let env: BTreeMap<String, String> = environment(&snapshot, "default", host)
        .into_iter()
        .collect();
    let want = [
        ("BY_NAME_SERVICE_HOST", "10.0.0.7"),
        ("BY_NAME_SERVICE_PORT", "80"),
        ("BY_NAME_SERVICE_PORT_WEB", "80"),
        ("BY_NAME_SERVICE_PORT_OTHER", "81"),
        ("BY_NAME_PORT", "tcp://10.0.0.7:80"),
        ("BY_NAME_PORT_81_TCP", "tcp://10.0.0.7:81"),
        ("BY_NAME_PORT_81_TCP_PROTO", "tcp"),
        ("BY_NAME_PORT_81_TCP_PORT", "81"),
        ("BY_NAME_PORT_81_TCP_ADDR", "10.0.0.7"),
        ("BY_NUMBER_SERVICE_HOST", "10.0.0.7"),
        ("BY_NUMBER_SERVICE_PORT", "8080"),
        ("SELECTS_NOTHING_SERVICE_PORT", "80"),
    ];
    for (name, value) in want {
        assert_eq!(env.get(name).map(String::as_str), Some(value), "{name}");
    }
    // One service of the other namespace was added: it adds nothing here.
    assert_eq!(
        env.len(),
        environment(&self::snapshot(), "default", host).len()
    );
}
