//! The read models built from the core's data: their wire shape, and that the CLI reads back
//! what the API writes.

use super::*;
use crate::membership::MemberInfo;
use crate::services::{Endpoint, NotReady};
use crate::status::PortStatus;
use serde_json::json;
use std::fmt::Debug;
use std::net::SocketAddr;
use weeble_crdt::{Object, ResourceAmounts, parse_manifests, uid_of};

const MANIFEST: &str = "
kind: Deployment
metadata: {name: web, labels: {team: a}}
spec:
  replicas: 2
  template:
    metadata: {labels: {app: web}}
    spec:
      nodeSelector: {disk: ssd}
      containers:
      - name: web
        image: weeble-demo
        env: [{name: MODE, value: fast}]
        ports: [{containerPort: 80, name: http}]
        readinessProbe: {httpGet: {path: /ready, port: http}, periodSeconds: 2}
        livenessProbe: {tcpSocket: {port: 80}}
---
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 8080, targetPort: http}]
";

fn objects() -> (crdt::Deployment, crdt::Service) {
    let mut objects = parse_manifests(MANIFEST).unwrap().objects.into_iter();
    match (objects.next(), objects.next()) {
        (Some(Object::Deployment(d)), Some(Object::Service(s))) => (d, s),
        other => panic!("the manifest holds a deployment and a service, got {other:?}"),
    }
}

/// Replica 0 of `web`, running on `n1` with the given containers.
fn reported(container_ids: &[&str], ready: bool) -> status::PodStatus {
    status::PodStatus {
        ready,
        ..reported_on("n1", container_ids)
    }
}

/// Replica 0 of `web`, running ready on `node` with the given containers.
fn reported_on(node: &str, container_ids: &[&str]) -> status::PodStatus {
    status::PodStatus {
        name: "web-0".into(),
        namespace: "default".into(),
        deployment: "web".into(),
        node: node.into(),
        labels: std::sync::Arc::new(Labels::from([("app".into(), "web".into())])),
        container_ids: container_ids.iter().map(|id| id.to_string()).collect(),
        phase: Phase::Running,
        ready: true,
        restarts: 3,
        reason: None,
        message: None,
        host_ip: IpAddr::from([127, 0, 0, 11]),
        ports: vec![PortStatus {
            container_port: 80,
            protocol: Protocol::Tcp,
            host_port: 30080,
        }],
        started_at_ms: 1_700_000_000_000,
        template_hash: "abc".into(),
    }
}

fn member() -> MemberId {
    MemberId::from(MemberInfo {
        name: "n1".into(),
        peer_id: "peer1".into(),
        p2p: "127.0.0.11:7946".parse().unwrap(),
        api: "127.0.0.11:7070".parse().unwrap(),
        labels: Labels::from([("zone".into(), "a".into())]),
        capacity: ResourceAmounts {
            cpu_millis: 2000,
            memory_bytes: 1 << 30,
        },
        max_pods: 110,
        bump: 1,
    })
}

fn node_report(not_ready: Option<&str>, leaving: bool) -> status::NodeStatus {
    status::NodeStatus {
        node: "n1".into(),
        epoch: 1,
        version: 1,
        pods: vec![],
        not_ready: not_ready.map(String::from),
        leaving,
        images: Vec::new(),
        signature: Default::default(),
    }
}

/// `view` written as JSON and read back is the same value.
fn round_trips<T: Serialize + DeserializeOwned + PartialEq + Debug>(view: &T) {
    let text = serde_json::to_string(view).unwrap();
    let back: T = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(&back, view, "{text}");
}

fn to_json<T: Serialize>(view: &T) -> serde_json::Value {
    serde_json::to_value(view).unwrap()
}

#[test]
fn a_pods_container_statuses_follow_its_container_ids() {
    let (d, _) = objects();
    let p = reported(&["c1"], true);
    let pod = Pod::desired(&d, "web-0", Ok("n1"), Some(&p));
    let statuses = pod.status.container_statuses.as_ref().unwrap();
    assert_eq!(
        to_json(statuses),
        json!([{"name": "web", "image": "weeble-demo", "imageID": "",
                "containerID": "docker://c1", "ready": true, "started": true,
                "restartCount": 3, "state": {"running": {"startedAt": "2023-11-14T22:13:20Z"}}}])
    );
    assert_eq!(pod.status.pod_ip, Some(IpAddr::from([127, 0, 0, 11])));
    assert_eq!(
        pod.metadata.creation_timestamp.as_deref(),
        Some("2023-11-14T22:13:20Z")
    );
    let elsewhere = Pod::desired(&d, "web-0", Ok("n2"), Some(&reported_on("n2", &["c1"])));
    assert_ne!(
        elsewhere.metadata.uid, pod.metadata.uid,
        "another node, another pod"
    );
    let again = Pod::desired(&d, "web-0", Ok("n1"), Some(&p));
    assert_eq!(again.metadata.uid, pod.metadata.uid);
    assert!(pod.status.ready());
    assert_eq!(pod.spec.node_name.as_deref(), Some("n1"));
    assert_eq!(
        pod.metadata.annotation(ANNOTATION_DEPLOYMENT),
        Some("default/web")
    );
    assert_eq!(
        pod.metadata.annotation(ANNOTATION_TEMPLATE_HASH),
        Some("abc")
    );
    let mut waiting = reported(&[], false);
    (waiting.phase, waiting.reason) = (Phase::Pending, Some("ErrImageNeverPull".into()));
    let none = Pod::desired(&d, "web-0", Ok("n1"), Some(&waiting));
    let statuses = none.status.container_statuses.as_ref().unwrap();
    assert_eq!(
        (statuses[0].container_id.as_ref(), statuses[0].started),
        (None, false)
    );
    assert_eq!(
        to_json(&statuses[0].state),
        json!({"waiting": {"reason": "ErrImageNeverPull"}})
    );
    assert!(!none.status.ready());
    round_trips(&pod);
}

#[test]
fn a_reported_pod_is_written_as_the_api_always_wrote_it() {
    let (d, _) = objects();
    let pod = to_json(&Pod::desired(
        &d,
        "web-0",
        Ok("n2"),
        Some(&reported(&["c1"], true)),
    ));
    assert_eq!(
        pod["status"],
        json!({
            "phase": "Running", "reason": null, "message": null, "hostIP": "127.0.0.11",
            "podIP": "127.0.0.11", "startTime": "2023-11-14T22:13:20Z",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "web", "image": "weeble-demo", "imageID": "",
                "containerID": "docker://c1", "ready": true, "started": true, "restartCount": 3,
                "state": {"running": {"startedAt": "2023-11-14T22:13:20Z"}}}],
            "restartCount": 3,
            "ports": [{"containerPort": 80, "protocol": "TCP", "hostPort": 30080, "hostIP": "127.0.0.11"}],
        })
    );
    assert_eq!(
        pod["spec"]["nodeName"], "n1",
        "the report's node, not placement's"
    );
    assert_eq!(
        pod["spec"]["containers"][0],
        json!({
            "name": "web", "image": "weeble-demo", "command": [], "args": [],
            "imagePullPolicy": "Always",
            "env": [{"name": "MODE", "value": "fast"}],
            "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
            "livenessProbe": {"initialDelaySeconds": 0, "periodSeconds": 10, "timeoutSeconds": 1,
                              "successThreshold": 1, "failureThreshold": 3, "tcpSocket": {"port": 80}},
            "readinessProbe": {"initialDelaySeconds": 0, "periodSeconds": 2, "timeoutSeconds": 1,
                               "successThreshold": 1, "failureThreshold": 3,
                               "httpGet": {"path": "/ready", "port": "http", "scheme": "HTTP"}},
        })
    );
}

#[test]
fn a_pod_no_node_reports_is_pending_with_the_reason() {
    let (d, _) = objects();
    let waiting = Pod::desired(&d, "web-1", Ok("n2"), None);
    assert_eq!(waiting.status.phase, Phase::Pending);
    assert_eq!(waiting.status.reason.as_deref(), Some("ContainerCreating"));
    assert_eq!(waiting.spec.node_name.as_deref(), Some("n2"));
    assert_eq!(
        waiting.metadata.labels,
        Some(d.spec.template.labels.clone())
    );
    assert_eq!(waiting.metadata.annotation(ANNOTATION_TEMPLATE_HASH), None);
    round_trips(&waiting);
    for (why, words) in [
        (Unplaced::NoEligibleNode, "nodeSelector"),
        (Unplaced::InsufficientCapacity, "room"),
        (Unplaced::TooManyPods, "--max-pods"),
    ] {
        let pod = Pod::desired(&d, "web-1", Err(why), None);
        assert_eq!(pod.status.reason.as_deref(), Some("Unschedulable"));
        assert!(
            pod.status.message.as_ref().unwrap().contains(words),
            "{why:?}"
        );
        let json = to_json(&pod);
        assert_eq!(
            json["spec"].get("nodeName"),
            Some(&json!(null)),
            "written as null"
        );
        for absent in ["hostIP", "startTime", "containerStatuses"] {
            assert_eq!(json["status"].get(absent), None, "{absent}");
        }
        round_trips(&pod);
    }
}

#[test]
fn a_deployment_counts_its_pods_and_says_how_its_rollout_stands() {
    let (d, _) = objects();
    let progress = crate::rollout::Progress {
        updated: 1,
        updated_available: 1,
        surge: 1,
        available: 1,
        beyond: 1,
    };
    let report = crate::rollout::Report {
        progress,
        stalled: None,
    };
    let view = Deployment::new(&d, &report, 1);
    let json = to_json(&view);
    let conditions = json["status"]["conditions"].clone();
    assert_eq!(
        json["status"],
        json!({"observedGeneration": 0, "replicas": 3, "readyReplicas": 1,
               "availableReplicas": 1, "updatedReplicas": 2, "unavailableReplicas": 1,
               "conditions": conditions})
    );
    let reasons = |json: &serde_json::Value| {
        let conditions = json["status"]["conditions"].as_array().unwrap().iter();
        conditions
            .map(|c| format!("{}={}:{}", c["type"], c["status"], c["reason"]))
            .collect::<Vec<_>>()
    };
    // 2 replicas, 25 % unavailable: none may be missing, one is.
    assert_eq!(
        reasons(&json),
        [
            r#""Available"="False":"MinimumReplicasUnavailable""#,
            r#""Progressing"="True":"ReplicaSetUpdated""#
        ]
    );
    let stalled = crate::rollout::Report {
        stalled: Some("revision 1 made no progress in 600 s: ErrImageNeverPull".into()),
        ..report.clone()
    };
    let failed = to_json(&Deployment::new(&d, &stalled, 1));
    assert_eq!(
        failed["status"]["conditions"][1]["reason"],
        PROGRESS_DEADLINE_EXCEEDED
    );
    assert!(
        failed["status"]["conditions"][1]["message"]
            .as_str()
            .unwrap()
            .contains("ErrImageNeverPull")
    );
    let mut reverted = d.clone();
    reverted.history.reverted = Some(weeble_crdt::Reverted {
        from: 2,
        to: 1,
        reason: "revision 2 made no progress".into(),
    });
    let json = to_json(&Deployment::new(&reverted, &report, 1));
    assert_eq!(json["status"]["conditions"][1]["reason"], ROLLED_BACK);
    assert_eq!(
        json["spec"]["selector"],
        json!({"matchLabels": {"app": "web"}})
    );
    assert_eq!(
        json["spec"]["template"]["spec"]["nodeSelector"],
        json!({"disk": "ssd"})
    );
    assert_eq!(json["spec"]["template"]["spec"].get("nodeName"), None);
    assert_eq!(json["metadata"]["labels"], json!({"team": "a"}));
    assert_eq!(
        json["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
    );
    round_trips(&view);
    let scale = Scale::new(
        &d.meta.key(),
        view.spec.replicas,
        view.status.ready_replicas,
    );
    assert_eq!(
        to_json(&scale),
        json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
               "metadata": {"name": "web", "namespace": "default"},
               "spec": {"replicas": 2}, "status": {"replicas": 1}})
    );
    round_trips(&scale);
}

#[test]
fn a_service_is_served_at_the_nodes_address_and_its_endpoints_by_pod() {
    let (_, s) = objects();
    let service = Service::new(&s, IpAddr::from([127, 0, 0, 11]));
    assert_eq!(
        to_json(&service)["spec"],
        json!({"type": "ClusterIP", "clusterIP": "127.0.0.11", "selector": {"app": "web"},
               "ports": [{"name": "http", "port": 8080, "protocol": "TCP", "targetPort": "http"}]})
    );
    round_trips(&service);
    let addr: SocketAddr = "127.0.0.11:30080".parse().unwrap();
    let ports = [PortEndpoints {
        name: Some("http".into()),
        port: 8080,
        protocol: Protocol::Tcp,
        target_port: "http".into(),
        ready: vec![Endpoint {
            pod: "web-0".into(),
            node: "n1".into(),
            addr,
        }],
        not_ready: vec![NotReady {
            pod: "web-1".into(),
            node: "n2".into(),
            ip: IpAddr::from([127, 0, 0, 12]),
        }],
    }];
    let endpoints = Endpoints::new(&s.meta.key(), &ports, Some(&s.meta));
    let pod = |name| json!({"kind": "Pod", "namespace": "default", "name": name});
    assert_eq!(
        to_json(&endpoints),
        json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "web", "namespace": "default", "uid": uid_of("endpoints/default/web/")},
            "subsets": [
                {"addresses": [{"ip": "127.0.0.11", "nodeName": "n1", "targetRef": pod("web-0")}],
                 "ports": [{"name": "http", "port": 30080, "protocol": "TCP"}]},
                {"notReadyAddresses": [{"ip": "127.0.0.12", "nodeName": "n2", "targetRef": pod("web-1")}],
                 "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]},
            ],
        })
    );
    round_trips(&endpoints);
    let mut made = s.meta.clone();
    (made.uid, made.created_ms) = ("svc-uid".into(), 1_700_000_000_000);
    let stored = Endpoints::new(&s.meta.key(), &ports, Some(&made));
    assert_eq!(
        stored.metadata.creation_timestamp.as_deref(),
        Some("2023-11-14T22:13:20Z"),
        "the service's"
    );
    assert_ne!(
        stored.metadata.uid, endpoints.metadata.uid,
        "a service made again, new endpoints"
    );
}

#[test]
fn a_nodes_ready_condition_follows_its_liveness_and_its_report() {
    let m = member();
    let ready = |liveness, report: Option<&status::NodeStatus>| {
        let node = Node::new(&m, liveness, report);
        let condition = node.status.conditions[0].clone();
        assert_eq!(node.status.readiness(), condition.status);
        (condition.status, condition.reason.unwrap())
    };
    let full_disk = node_report(Some("no space left on device"), false);
    assert_eq!(
        ready(Liveness::Alive, None),
        (ConditionStatus::True, "KubeletReady".into())
    );
    assert_eq!(
        ready(Liveness::Suspect, None),
        (ConditionStatus::Unknown, "NodeStatusUnknown".into())
    );
    assert_eq!(
        ready(Liveness::Suspect, Some(&full_disk)),
        (ConditionStatus::Unknown, "NodeStatusUnknown".into()),
        "suspicion says more than an old report"
    );
    assert_eq!(
        ready(Liveness::Down, None),
        (ConditionStatus::False, "NodeDown".into())
    );
    assert_eq!(
        ready(Liveness::Alive, Some(&full_disk)),
        (ConditionStatus::False, "StateNotPersisted".into())
    );
    let why = Node::new(&m, Liveness::Alive, Some(&full_disk))
        .status
        .conditions[0]
        .message
        .clone();
    assert_eq!(why.as_deref(), Some("no space left on device"));
}

#[test]
fn a_leaving_node_is_unschedulable() {
    let m = member();
    let leaving = Node::new(&m, Liveness::Alive, Some(&node_report(None, true)));
    assert!(leaving.spec.unschedulable);
    assert_eq!(to_json(&leaving)["spec"], json!({"unschedulable": true}));
    assert_eq!(leaving.status.readiness(), ConditionStatus::True);
    round_trips(&leaving);
    let staying = Node::new(&m, Liveness::Alive, Some(&node_report(None, false)));
    assert!(!staying.spec.unschedulable);
    assert_eq!(to_json(&staying)["spec"], json!({}));
    round_trips(&staying);
}

#[test]
fn a_node_shows_its_addresses_capacity_and_liveness() {
    let node = to_json(&Node::new(&member(), Liveness::Suspect, None));
    assert_eq!(
        node["metadata"],
        json!({"name": "n1", "labels": {"zone": "a"}, "uid": uid_of("node/peer1"),
               "creationTimestamp": "1970-01-01T00:00:00Z",
               "annotations": {"weeble.io/api": "127.0.0.11:7070", "weeble.io/peer-id": "peer1",
                               "weeble.io/liveness": "Suspect"}})
    );
    let capacity = json!({"cpu": "2000m", "memory": "1073741824", "pods": "110"});
    assert_eq!(node["status"]["capacity"], capacity);
    assert_eq!(node["status"]["allocatable"], capacity);
    assert_eq!(
        node["status"]["addresses"],
        json!([{"type": "InternalIP", "address": "127.0.0.11"}])
    );
}

#[test]
fn names_are_written_as_their_serde_form() {
    for phase in [
        Phase::Pending,
        Phase::Running,
        Phase::Succeeded,
        Phase::Failed,
    ] {
        assert_eq!(to_json(&phase), json!(phase.to_string()));
    }
    for liveness in [Liveness::Alive, Liveness::Suspect, Liveness::Down] {
        assert_eq!(to_json(&liveness), json!(liveness.to_string()));
    }
    for outcome in [
        Outcome::Created,
        Outcome::Configured,
        Outcome::Unchanged,
        Outcome::Scaled,
        Outcome::Deleted,
    ] {
        assert_eq!(to_json(&outcome), json!(outcome.to_string()));
    }
}

#[test]
fn errors_and_deletes_are_kubernetes_statuses() {
    let cause = StatusCause {
        field: "spec.replicas".into(),
        message: "must not be negative".into(),
    };
    let invalid = Status::failure(422, "manifest rejected".into(), vec![cause]);
    assert_eq!(
        to_json(&invalid),
        json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
               "message": "manifest rejected", "reason": "Invalid", "code": 422,
               "details": {"causes": [{"field": "spec.replicas", "message": "must not be negative"}]}})
    );
    round_trips(&invalid);
    assert_eq!(
        Status::failure(418, "teapot".into(), vec![])
            .reason
            .as_deref(),
        Some("Unknown")
    );
    let deleted = Status::deleted(Kind::Deployment, "web");
    assert_eq!(
        to_json(&deleted),
        json!({"apiVersion": "v1", "kind": "Status", "status": "Success",
               "details": {"name": "web", "kind": "deployments"}})
    );
    round_trips(&deleted);
}

#[test]
fn a_list_and_an_apply_answer_round_trip() {
    let (d, _) = objects();
    let list = List {
        api_version: Pod::API_VERSION.into(),
        kind: format!("{}List", Pod::KIND),
        metadata: ListMeta {
            continue_: Some("default/web/0".into()),
            resource_version: Some("17".into()),
        },
        items: vec![Pod::desired(&d, "web-0", Err(Unplaced::TooManyPods), None)],
    };
    assert_eq!(
        to_json(&list)["metadata"],
        json!({"continue": "default/web/0", "resourceVersion": "17"})
    );
    round_trips(&list);
    let last: List<u8> = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "PodList", "items": [], "metadata": {}}),
    )
    .unwrap();
    assert_eq!(last.metadata.continue_, None);
    let parsed = parse_manifests(MANIFEST).unwrap();
    let applied = Applied::new(&parsed, vec![Outcome::Created, Outcome::Unchanged]);
    assert_eq!(
        to_json(&applied)["items"],
        json!([
            {"kind": "Deployment", "namespace": "default", "name": "web", "outcome": "created"},
            {"kind": "Service", "namespace": "default", "name": "web", "outcome": "unchanged"},
        ])
    );
    round_trips(&applied);
}

#[test]
fn a_strategy_is_written_as_kubernetes_writes_it() {
    let rolling = Strategy::RollingUpdate {
        max_surge: IntOrPercent::Percent(25),
        max_unavailable: IntOrPercent::Count(1),
    };
    assert_eq!(
        serde_json::to_value(DeploymentStrategy::from(&rolling)).unwrap(),
        serde_json::json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}})
    );
    assert_eq!(
        serde_json::to_value(DeploymentStrategy::from(&Strategy::Recreate)).unwrap(),
        serde_json::json!({"type": "Recreate"})
    );
}

#[test]
fn images_are_listed_by_id_with_every_name_and_node_that_holds_them() {
    use crate::status::{HeldImage, StatusTable};
    let held = |image: &str, id: &str| HeldImage {
        image: image.into(),
        id: id.into(),
    };
    let mut table = StatusTable::default();
    for (node, images) in [
        (
            "n1",
            vec![held("web:1", "sha256:aa"), held("db:2", "sha256:bb")],
        ),
        ("n2", vec![held("registry:5000/web:1", "sha256:aa")]),
    ] {
        let mut report = node_report(None, false);
        (report.node, report.images) = (node.into(), images);
        table.merge(report);
    }
    let images = Image::all(&table);
    let listed: Vec<(&str, Vec<String>, Vec<String>)> = images
        .iter()
        .map(|i| {
            (
                i.metadata.name.as_str(),
                i.status.names.clone(),
                i.status.nodes.clone(),
            )
        })
        .collect();
    let strings = |all: &[&str]| all.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        listed,
        [
            (
                "aa",
                strings(&["registry:5000/web:1", "web:1"]),
                strings(&["n1", "n2"])
            ),
            ("bb", strings(&["db:2"]), strings(&["n1"])),
        ]
    );
    round_trips(&images[0]);
}

#[test]
fn a_recorder_tells_what_happened_to_pods_deployments_and_nodes() {
    use super::event::Recorder;
    use crate::status::StatusTable;
    let (mut d, _) = objects();
    d.meta.uid = "d-uid".into();
    let mut snapshot = weeble_crdt::Snapshot::default();
    snapshot.deployments.insert(d.meta.key(), d.clone().into());
    let table = |pods: Vec<status::PodStatus>| {
        let mut table = StatusTable::default();
        let mut report = node_report(None, false);
        report.pods = pods;
        table.merge(report);
        table
    };
    let members = |liveness| -> MemberList { [(member(), liveness)].into_iter().collect() };
    let mut recorder = Recorder::new("n1", 100);
    let mut pending = reported(&[], false);
    (pending.phase, pending.reason) = (Phase::Pending, Some(status::CONTAINER_CREATING.into()));
    recorder.look(1_000, &snapshot, &table(vec![]), &members(Liveness::Alive));
    assert_eq!(
        recorder.events().count(),
        0,
        "the first look is the starting point"
    );
    let said = |r: &Recorder| -> Vec<String> {
        r.events()
            .map(|e| format!("{} {} {}", e.type_, e.reason, e.involved_object.name))
            .collect()
    };
    recorder.look(
        2_000,
        &snapshot,
        &table(vec![pending]),
        &members(Liveness::Alive),
    );
    assert!(
        said(&recorder).is_empty(),
        "a pod being made is not one yet"
    );
    let running = reported(&["c1"], true);
    recorder.look(
        3_000,
        &snapshot,
        &table(vec![running.clone()]),
        &members(Liveness::Alive),
    );
    let mut restarted = running.clone();
    (restarted.restarts, restarted.ready) = (4, false);
    restarted.reason = Some("CrashLoopBackOff".into());
    recorder.look(
        4_000,
        &snapshot,
        &table(vec![restarted]),
        &members(Liveness::Suspect),
    );
    let mut scaled = d.clone();
    scaled.spec.replicas = 5;
    snapshot.deployments.insert(d.meta.key(), scaled.into());
    recorder.look(5_000, &snapshot, &table(vec![]), &members(Liveness::Alive));
    assert_eq!(
        said(&recorder),
        [
            "Normal Scheduled web-0",
            "Normal Started web-0",
            "Warning CrashLoopBackOff web-0",
            "Warning BackOff web-0",
            "Warning Unhealthy web-0",
            "Warning NodeNotReady n1",
            "Normal Killing web-0",
            "Normal ScalingReplicaSet web",
            "Normal NodeReady n1",
        ]
    );
    let started = recorder.events().nth(1).unwrap();
    let pod = Pod::desired(&d, "web-0", Ok("n1"), Some(&running));
    assert_eq!(
        Some(&started.involved_object.uid),
        pod.metadata.uid.as_ref(),
        "describe finds them by uid"
    );
    assert_eq!(started.last_timestamp, "1970-01-01T00:00:03Z");
    // Its containers made again (a pod deleted): another pod, as Kubernetes tells it.
    let mut again = Recorder::new("n1", 100);
    let alive = members(Liveness::Alive);
    again.look(0, &snapshot, &table(vec![running.clone()]), &alive);
    again.look(1, &snapshot, &table(vec![running.clone()]), &alive);
    again.look(2, &snapshot, &table(vec![reported(&["c2"], true)]), &alive);
    assert_eq!(
        said(&again),
        [
            "Normal Scheduled web-0",
            "Normal Started web-0",
            "Normal Killing web-0"
        ]
    );
    let uids: Vec<&str> = again
        .events()
        .map(|e| e.involved_object.uid.as_str())
        .collect();
    assert!(uids[0] == uids[1] && uids[1] != uids[2], "{uids:?}");
    // A pod whose image was missing gets its container: the same pod, now started.
    let mut late = Recorder::new("n1", 100);
    let waiting = |reason: &str, message: Option<&str>| {
        let mut pod = reported(&[], false);
        (pod.phase, pod.reason) = (Phase::Pending, Some(reason.into()));
        pod.message = message.map(str::to_string);
        pod
    };
    late.look(0, &snapshot, &table(vec![]), &alive);
    let story = [
        waiting("ErrImageNeverPull", None),
        waiting(status::CONTAINER_CREATING, Some("Pulling image \"web\"")),
        waiting("ErrImagePull", Some("unauthorized")),
        waiting("ImagePullBackOff", Some("Back-off pulling image \"web\"")),
        waiting(status::CONTAINER_CREATING, Some("Pulling image \"web\"")),
        running.clone(),
    ];
    for (i, pod) in story.into_iter().enumerate() {
        late.look(1 + i as i64, &snapshot, &table(vec![pod]), &alive);
    }
    assert_eq!(
        said(&late),
        [
            "Normal Scheduled web-0",
            "Warning ErrImageNeverPull web-0",
            "Normal Pulling web-0",
            "Warning ErrImagePull web-0",
            "Warning ImagePullBackOff web-0",
            "Normal Pulling web-0",
            "Normal Started web-0"
        ]
    );
    let scaling = recorder.events().nth(7).unwrap();
    assert!(
        scaling.message.contains("from 2 to 5"),
        "{}",
        scaling.message
    );
    round_trips(scaling);
    let mut small = Recorder::new("n1", 2);
    small.look(0, &snapshot, &table(vec![]), &members(Liveness::Alive));
    small.look(
        1,
        &snapshot,
        &table(vec![reported(&["c1"], true)]),
        &members(Liveness::Suspect),
    );
    assert_eq!(small.events().count(), 2, "the oldest go past the limit");
}
