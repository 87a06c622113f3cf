//! The HTTP API, shaped like Kubernetes' (paths, objects, lists, `Status` errors), so that
//! kubectl compatibility can grow from it. Every node serves it; any node accepts writes.
//!
//! Reads come from this node's view: deployments and services from the desired state, pods
//! from placement joined with the status their nodes gossip, nodes from membership.

use crate::agent::{Agent, View};
use crate::membership::Liveness;
use crate::placement::Unplaced;
use crate::runtime::{ContainerRuntime, LABEL_POD, RuntimeError};
use crate::services::PortEndpoints;
use crate::status::{Phase, PodStatus, StatusTable};
use crate::store::StoreError;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use weeble_crdt::{
    Deployment, Kind, ObjectKey, Probe, ProbeAction, Service, StateError, TargetPort,
    parse_manifests,
};

/// The API's shared state: the agent's handles and this node's runtime (for logs).
#[derive(Clone)]
struct Api<R> {
    agent: Agent,
    runtime: R,
}

/// Serves the API on `addr` until the process ends.
pub async fn serve<R: ContainerRuntime>(
    addr: SocketAddr,
    agent: Agent,
    runtime: R,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "API listening");
    axum::serve(listener, router(agent, runtime)).await
}

fn router<R: ContainerRuntime>(agent: Agent, runtime: R) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/apis/weeble.io/v1/apply", post(apply::<R>))
        .route("/apis/weeble.io/v1/state", get(state::<R>))
        .route("/apis/apps/v1/deployments", get(list_deployments::<R>))
        .route(
            "/apis/apps/v1/namespaces/{ns}/deployments",
            get(list_deployments_in::<R>),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/deployments/{name}",
            get(get_deployment::<R>).delete(delete_deployment::<R>),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/deployments/{name}/scale",
            get(get_scale::<R>)
                .put(put_scale::<R>)
                .patch(put_scale::<R>),
        )
        .route("/api/v1/services", get(list_services::<R>))
        .route(
            "/api/v1/namespaces/{ns}/services",
            get(list_services_in::<R>),
        )
        .route(
            "/api/v1/namespaces/{ns}/services/{name}",
            get(get_service::<R>).delete(delete_service::<R>),
        )
        .route("/api/v1/endpoints", get(list_endpoints::<R>))
        .route(
            "/api/v1/namespaces/{ns}/endpoints",
            get(list_endpoints_in::<R>),
        )
        .route(
            "/api/v1/namespaces/{ns}/endpoints/{name}",
            get(get_endpoints::<R>),
        )
        .route("/api/v1/pods", get(list_pods::<R>))
        .route("/api/v1/namespaces/{ns}/pods", get(list_pods_in::<R>))
        .route("/api/v1/namespaces/{ns}/pods/{name}", get(get_pod::<R>))
        .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(pod_log::<R>))
        .route("/api/v1/nodes", get(list_nodes::<R>))
        .route("/api/v1/nodes/{name}", get(get_node::<R>))
        .with_state(Api { agent, runtime })
}

/// A Kubernetes `Status` error: what went wrong, in a form kubectl understands.
pub struct ApiError {
    code: StatusCode,
    reason: &'static str,
    message: String,
    causes: Vec<Value>,
}

impl ApiError {
    fn not_found(what: impl std::fmt::Display) -> Self {
        ApiError {
            code: StatusCode::NOT_FOUND,
            reason: "NotFound",
            message: format!("{what} not found"),
            causes: vec![],
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            code: StatusCode::BAD_REQUEST,
            reason: "BadRequest",
            message: message.into(),
            causes: vec![],
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::State(StateError::NotFound { kind, key }) => {
                ApiError::not_found(format!("{kind} {key}"))
            }
            other => ApiError {
                code: StatusCode::INTERNAL_SERVER_ERROR,
                reason: "InternalError",
                message: other.to_string(),
                causes: vec![],
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "apiVersion": "v1", "kind": "Status", "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code.as_u16(),
            "details": {"causes": self.causes},
        });
        (self.code, Json(body)).into_response()
    }
}

type Reply = Result<Json<Value>, ApiError>;

fn view<R>(api: &Api<R>) -> std::sync::Arc<View> {
    api.agent.view.borrow().clone()
}

fn table<R>(api: &Api<R>) -> std::sync::Arc<StatusTable> {
    api.agent.status.watch().borrow().clone()
}

/// `POST /apis/weeble.io/v1/apply`: a manifest file (YAML, many documents), all or nothing.
async fn apply<R: ContainerRuntime>(State(api): State<Api<R>>, body: String) -> Reply {
    let parsed = parse_manifests(&body).map_err(|e| ApiError {
        code: StatusCode::UNPROCESSABLE_ENTITY,
        reason: "Invalid",
        message: format!("manifest rejected, nothing applied:\n{e}"),
        causes: e
            .errors
            .iter()
            .map(|l| json!({"field": l.path, "message": l.to_string()}))
            .collect(),
    })?;
    let outcomes = api.agent.store.apply(parsed.objects.clone()).await?;
    api.agent.replicate().await;
    let items: Vec<Value> = parsed
        .objects
        .iter()
        .zip(outcomes)
        .map(|(o, outcome)| json!({"kind": o.kind().to_string(), "namespace": o.meta().namespace, "name": o.meta().name, "outcome": outcome}))
        .collect();
    let warnings: Vec<String> = parsed.warnings.iter().map(|w| w.to_string()).collect();
    Ok(Json(json!({"items": items, "warnings": warnings})))
}

fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Json<Value> {
    Json(
        json!({"apiVersion": api_version, "kind": format!("{kind}List"), "metadata": {}, "items": items}),
    )
}

/// The object called `name` among `items` (one namespace's), or a 404 naming it.
fn named(items: Vec<Value>, kind: Kind, ns: &str, name: &str) -> Reply {
    items
        .into_iter()
        .find(|o| o["metadata"]["name"] == name)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("{kind} {ns}/{name}")))
}

/// Deletes an object; answers with a Kubernetes `Status` of success.
async fn delete<R>(api: &Api<R>, kind: Kind, ns: String, name: String) -> Reply {
    api.agent
        .store
        .delete(kind, ObjectKey::new(&ns, &name))
        .await?;
    api.agent.replicate().await;
    let plural = format!("{}s", kind.to_string().to_lowercase());
    Ok(Json(
        json!({"apiVersion": "v1", "kind": "Status", "status": "Success",
                   "details": {"name": name, "kind": plural}}),
    ))
}

fn deployments<R>(api: &Api<R>, ns: Option<&str>) -> Vec<Value> {
    let (view, table) = (view(api), table(api));
    let pods = pods(&view, &table);
    view.snapshot
        .deployments
        .values()
        .filter(|d| ns.is_none_or(|ns| d.meta.namespace == ns))
        .map(|d| deployment_json(d, &pods))
        .collect()
}

async fn list_deployments<R>(State(api): State<Api<R>>) -> Json<Value> {
    list("Deployment", "apps/v1", deployments(&api, None))
}

async fn list_deployments_in<R>(State(api): State<Api<R>>, Path(ns): Path<String>) -> Json<Value> {
    list("Deployment", "apps/v1", deployments(&api, Some(&ns)))
}

async fn get_deployment<R>(
    State(api): State<Api<R>>,
    Path((ns, name)): Path<(String, String)>,
) -> Reply {
    named(deployments(&api, Some(&ns)), Kind::Deployment, &ns, &name)
}

async fn delete_deployment<R>(
    State(api): State<Api<R>>,
    Path((ns, name)): Path<(String, String)>,
) -> Reply {
    delete(&api, Kind::Deployment, ns, name).await
}

fn scale_json(ns: &str, name: &str, replicas: u32, ready: usize) -> Value {
    json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": name, "namespace": ns},
           "spec": {"replicas": replicas}, "status": {"replicas": ready}})
}

async fn get_scale<R>(
    State(api): State<Api<R>>,
    Path((ns, name)): Path<(String, String)>,
) -> Reply {
    let d = get_deployment(State(api), Path((ns.clone(), name.clone()))).await?;
    let ready = d["status"]["readyReplicas"].as_u64().unwrap_or(0) as usize;
    Ok(Json(scale_json(
        &ns,
        &name,
        d["spec"]["replicas"].as_u64().unwrap_or(0) as u32,
        ready,
    )))
}

#[derive(Deserialize)]
struct ScaleBody {
    spec: ScaleSpec,
}

#[derive(Deserialize)]
struct ScaleSpec {
    replicas: i64,
}

async fn put_scale<R>(
    State(api): State<Api<R>>,
    Path((ns, name)): Path<(String, String)>,
    body: String,
) -> Reply {
    let body: ScaleBody = serde_json::from_str(&body).map_err(|e| {
        ApiError::bad_request(format!("expected {{\"spec\": {{\"replicas\": N}}}}: {e}"))
    })?;
    let max = i64::from(u32::try_from(weeble_crdt::validate::MAX_REPLICAS).unwrap_or(u32::MAX));
    let replicas = u32::try_from(body.spec.replicas)
        .ok()
        .filter(|&n| i64::from(n) <= max)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "spec.replicas: must be between 0 and {max}, got {}",
                body.spec.replicas
            ))
        })?;
    api.agent
        .store
        .scale(ObjectKey::new(&ns, &name), replicas)
        .await?;
    api.agent.replicate().await;
    Ok(Json(scale_json(&ns, &name, replicas, 0)))
}

fn services<R>(api: &Api<R>, ns: Option<&str>) -> Vec<Value> {
    let ip = api.agent.config.service_ip();
    view(api)
        .snapshot
        .services
        .values()
        .filter(|s| ns.is_none_or(|ns| s.meta.namespace == ns))
        .map(|s| service_json(s, ip))
        .collect()
}

fn endpoints<R>(api: &Api<R>, ns: Option<&str>) -> Vec<Value> {
    api.agent
        .endpoints
        .borrow()
        .iter()
        .filter(|(key, _)| ns.is_none_or(|ns| key.namespace == ns))
        .map(|(key, ports)| endpoints_json(key, ports))
        .collect()
}

async fn list_endpoints<R>(State(api): State<Api<R>>) -> Json<Value> {
    list("Endpoints", "v1", endpoints(&api, None))
}

async fn list_endpoints_in<R>(State(api): State<Api<R>>, Path(ns): Path<String>) -> Json<Value> {
    list("Endpoints", "v1", endpoints(&api, Some(&ns)))
}

async fn get_endpoints<R>(
    State(api): State<Api<R>>,
    Path((ns, name)): Path<(String, String)>,
) -> Reply {
    named(endpoints(&api, Some(&ns)), Kind::Service, &ns, &name)
}

async fn list_services<R>(State(api): State<Api<R>>) -> Json<Value> {
    list("Service", "v1", services(&api, None))
}

async fn list_services_in<R>(State(api): State<Api<R>>, Path(ns): Path<String>) -> Json<Value> {
    list("Service", "v1", services(&api, Some(&ns)))
}

async fn get_service<R>(
    State(api): State<Api<R>>,
    Path((ns, name)): Path<(String, String)>,
) -> Reply {
    named(services(&api, Some(&ns)), Kind::Service, &ns, &name)
}

async fn delete_service<R>(
    State(api): State<Api<R>>,
    Path((ns, name)): Path<(String, String)>,
) -> Reply {
    delete(&api, Kind::Service, ns, name).await
}

async fn list_pods<R>(State(api): State<Api<R>>) -> Json<Value> {
    list(
        "Pod",
        "v1",
        pods(&view(&api), &table(&api)).into_values().collect(),
    )
}

async fn list_pods_in<R>(State(api): State<Api<R>>, Path(ns): Path<String>) -> Json<Value> {
    let pods = pods(&view(&api), &table(&api));
    list(
        "Pod",
        "v1",
        pods.into_values()
            .filter(|p| p["metadata"]["namespace"] == ns)
            .collect(),
    )
}

async fn get_pod<R>(State(api): State<Api<R>>, Path((ns, name)): Path<(String, String)>) -> Reply {
    pods(&view(&api), &table(&api))
        .remove(&(ns.clone(), name.clone()))
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("Pod {ns}/{name}")))
}

#[derive(Deserialize)]
struct LogQuery {
    #[serde(rename = "tailLines")]
    tail_lines: Option<usize>,
}

/// Logs are on the pod's node: served here if it is this node, else redirected there.
async fn pod_log<R: ContainerRuntime>(
    State(api): State<Api<R>>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let pod = get_pod(State(api.clone()), Path((ns.clone(), name.clone())))
        .await?
        .0;
    let node = pod["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if node != api.agent.config.name {
        let view = view(&api);
        let owner = view
            .members
            .iter()
            .find(|(m, _)| m.name == node)
            .ok_or_else(|| ApiError {
                code: StatusCode::SERVICE_UNAVAILABLE,
                reason: "ServiceUnavailable",
                message: format!(
                    "pod {ns}/{name} is on node {node:?}, which this node cannot reach"
                ),
                causes: vec![],
            })?;
        let location = format!(
            "http://{}/api/v1/namespaces/{ns}/pods/{name}/log?tailLines={}",
            owner.0.api,
            q.tail_lines.unwrap_or(100)
        );
        return Ok((
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response());
    }
    let containers = api.runtime.list(&node).await.map_err(runtime_error)?;
    let mut text = String::new();
    for c in containers
        .iter()
        .filter(|c| c.labels.get(LABEL_POD) == Some(&name))
    {
        text.push_str(
            &api.runtime
                .logs(&c.id, q.tail_lines.unwrap_or(100))
                .await
                .map_err(runtime_error)?,
        );
    }
    Ok(text.into_response())
}

fn runtime_error(e: RuntimeError) -> ApiError {
    ApiError {
        code: StatusCode::INTERNAL_SERVER_ERROR,
        reason: "InternalError",
        message: e.to_string(),
        causes: vec![],
    }
}

fn nodes<R>(api: &Api<R>) -> Vec<Value> {
    let table = table(api);
    view(api)
        .members
        .iter()
        .map(|(m, liveness)| {
            let not_ready = table.nodes.get(&m.name).and_then(|n| n.not_ready.as_ref());
            let ready = match (liveness, not_ready) {
                (Liveness::Alive, None) => json!({"type": "Ready", "status": "True", "reason": "KubeletReady"}),
                (Liveness::Suspect, _) => json!({"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown", "message": "the node is suspected: it has not answered lately"}),
                (Liveness::Down, _) => json!({"type": "Ready", "status": "False", "reason": "NodeDown", "message": "the node was declared dead"}),
                (Liveness::Alive, Some(why)) => json!({"type": "Ready", "status": "False", "reason": "StateNotPersisted", "message": why}),
            };
            let capacity = json!({"cpu": format!("{}m", m.capacity.cpu_millis), "memory": m.capacity.memory_bytes.to_string(), "pods": m.max_pods.to_string()});
            json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": m.name, "labels": m.labels, "annotations": {"weeble.io/api": m.api.to_string(), "weeble.io/peer-id": m.peer_id, "weeble.io/liveness": liveness}},
                "spec": {},
                "status": {
                    "conditions": [ready],
                    "addresses": [{"type": "InternalIP", "address": m.p2p.ip().to_string()}],
                    "capacity": capacity, "allocatable": capacity,
                },
            })
        })
        .collect()
}

/// This node's copy of the desired state in brief: its heads (equal heads, equal documents)
/// and how many objects it holds.
async fn state<R>(State(api): State<Api<R>>) -> Json<Value> {
    let snapshot = api.agent.store.watch().borrow().clone();
    Json(json!({
        "heads": snapshot.heads,
        "deployments": snapshot.deployments.len(),
        "services": snapshot.services.len(),
    }))
}

async fn list_nodes<R>(State(api): State<Api<R>>) -> Json<Value> {
    list("Node", "v1", nodes(&api))
}

async fn get_node<R>(State(api): State<Api<R>>, Path(name): Path<String>) -> Reply {
    nodes(&api)
        .into_iter()
        .find(|n| n["metadata"]["name"] == name)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("Node {name}")))
}

/// Every desired pod, keyed by (namespace, name): its owner's report if there is one, else
/// Pending with the reason.
fn pods(view: &View, table: &StatusTable) -> BTreeMap<(String, String), Value> {
    let mut out = BTreeMap::new();
    for (key, owner) in view.placement.replicas() {
        let Some(d) = view.snapshot.deployments.get(&key.deployment) else {
            continue;
        };
        let (ns, name) = (key.deployment.namespace.clone(), key.pod_name());
        let reported = owner.ok().and_then(|node| {
            table
                .nodes
                .get(node)?
                .pods
                .iter()
                .find(|p| p.namespace == ns && p.name == name)
        });
        let value = match (reported, owner) {
            (Some(p), _) => pod_json(d, p),
            (None, Ok(node)) => pending_pod_json(
                d,
                &name,
                Some(node),
                "ContainerCreating",
                "waiting for the node to report",
            ),
            (None, Err(why)) => {
                let message = match why {
                    Unplaced::NoEligibleNode => "no live node matches the nodeSelector",
                    Unplaced::InsufficientCapacity => {
                        "no live node has room for the pod's requests"
                    }
                    Unplaced::TooManyPods => {
                        "every live node that fits the pod already runs its --max-pods pods"
                    }
                };
                pending_pod_json(d, &name, None, "Unschedulable", message)
            }
        };
        out.insert((ns, name), value);
    }
    out
}

fn containers_json(d: &Deployment) -> Vec<Value> {
    d.spec
        .template
        .containers
        .iter()
        .map(|c| {
            json!({
                "name": c.name, "image": c.image, "command": c.command, "args": c.args,
                "env": c.env.iter().map(|e| json!({"name": e.name, "value": e.value})).collect::<Vec<_>>(),
                "ports": c.ports.iter().map(|p| json!({"name": p.name, "containerPort": p.container_port, "protocol": p.protocol})).collect::<Vec<_>>(),
                "livenessProbe": c.liveness_probe.as_ref().map(probe_json),
                "readinessProbe": c.readiness_probe.as_ref().map(probe_json),
            })
        })
        .collect()
}

/// A port by number or by name, as Kubernetes writes it (an IntOrString).
fn port_json(port: &TargetPort) -> Value {
    match port {
        TargetPort::Number(n) => json!(n),
        TargetPort::Name(name) => json!(name),
    }
}

/// A probe as Kubernetes writes it.
fn probe_json(p: &Probe) -> Value {
    let mut probe = json!({
        "initialDelaySeconds": p.initial_delay_seconds, "periodSeconds": p.period_seconds,
        "timeoutSeconds": p.timeout_seconds, "successThreshold": p.success_threshold,
        "failureThreshold": p.failure_threshold,
    });
    let (field, action) = match &p.action {
        ProbeAction::HttpGet { path, port: to } => (
            "httpGet",
            json!({"path": path, "port": port_json(to), "scheme": "HTTP"}),
        ),
        ProbeAction::TcpSocket { port: to } => ("tcpSocket", json!({"port": port_json(to)})),
        ProbeAction::Exec { command } => ("exec", json!({"command": command})),
    };
    probe[field] = action;
    probe
}

fn pod_json(d: &Deployment, p: &PodStatus) -> Value {
    let phase = match p.phase {
        Phase::Pending => "Pending",
        Phase::Running => "Running",
        Phase::Succeeded => "Succeeded",
        Phase::Failed => "Failed",
    };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": p.name, "namespace": p.namespace, "labels": p.labels,
                     "annotations": {"weeble.io/deployment": d.meta.key().to_string(), "weeble.io/template-hash": p.template_hash}},
        "spec": {"nodeName": p.node, "containers": containers_json(d), "restartPolicy": d.spec.template.restart_policy},
        "status": {
            "phase": phase, "reason": p.reason, "message": p.message, "hostIP": p.host_ip.to_string(),
            "startTime": p.started_at_ms,
            "conditions": [{"type": "Ready", "status": if p.ready { "True" } else { "False" }}],
            "containerStatuses": p.container_ids.iter().map(|id| json!({"containerID": format!("docker://{id}"), "ready": p.ready, "restartCount": p.restarts})).collect::<Vec<_>>(),
            "restartCount": p.restarts,
            "ports": p.ports.iter().map(|port| json!({"containerPort": port.container_port, "protocol": port.protocol, "hostPort": port.host_port, "hostIP": p.host_ip.to_string()})).collect::<Vec<_>>(),
        },
    })
}

fn pending_pod_json(
    d: &Deployment,
    name: &str,
    node: Option<&str>,
    reason: &str,
    message: &str,
) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": d.meta.namespace, "labels": d.spec.template.labels,
                     "annotations": {"weeble.io/deployment": d.meta.key().to_string()}},
        "spec": {"nodeName": node, "containers": containers_json(d), "restartPolicy": d.spec.template.restart_policy},
        "status": {"phase": "Pending", "reason": reason, "message": message,
                   "conditions": [{"type": "Ready", "status": "False"}], "restartCount": 0, "ports": []},
    })
}

fn deployment_json(d: &Deployment, pods: &BTreeMap<(String, String), Value>) -> Value {
    let mine: Vec<&Value> = pods
        .values()
        .filter(|p| {
            p["metadata"]["annotations"]["weeble.io/deployment"] == d.meta.key().to_string()
        })
        .collect();
    let ready = mine
        .iter()
        .filter(|p| p["status"]["conditions"][0]["status"] == "True")
        .count();
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": d.meta.name, "namespace": d.meta.namespace, "labels": d.meta.labels, "generation": d.meta.generation},
        "spec": {
            "replicas": d.spec.replicas,
            "selector": {"matchLabels": d.spec.selector},
            "strategy": d.spec.strategy,
            "template": {"metadata": {"labels": d.spec.template.labels},
                         "spec": {"containers": containers_json(d), "nodeSelector": d.spec.template.node_selector, "restartPolicy": d.spec.template.restart_policy}},
        },
        "status": {"observedGeneration": d.meta.generation, "replicas": mine.len(), "readyReplicas": ready,
                   "availableReplicas": ready, "updatedReplicas": mine.len()},
    })
}

/// A service as this node serves it: its `clusterIP` is the node's own service address
/// (every node serves every service on its own address).
fn service_json(s: &Service, ip: std::net::IpAddr) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": s.meta.name, "namespace": s.meta.namespace, "labels": s.meta.labels, "generation": s.meta.generation},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ip.to_string(),
            "selector": s.spec.selector,
            "ports": s.spec.ports.iter().map(|p| json!({
                "name": p.name, "port": p.port, "protocol": p.protocol,
                "targetPort": port_json(&p.target_port),
            })).collect::<Vec<_>>(),
        },
    })
}

/// A service's endpoints as Kubernetes writes them. Each ready pod publishes the target port
/// on a port of its own node, so each address gets a subset of its own.
fn endpoints_json(key: &ObjectKey, ports: &[PortEndpoints]) -> Value {
    let subsets: Vec<Value> = ports
        .iter()
        .flat_map(|p| {
            let ready = p.ready.iter().map(move |e| json!({
                "addresses": [{"ip": e.addr.ip().to_string(), "nodeName": e.node,
                               "targetRef": {"kind": "Pod", "namespace": key.namespace, "name": e.pod}}],
                "ports": [{"name": p.name, "port": e.addr.port(), "protocol": p.protocol}],
            }));
            let waiting = (!p.not_ready.is_empty()).then(|| json!({
                "notReadyAddresses": p.not_ready.iter().map(|pod| json!({
                    "targetRef": {"kind": "Pod", "namespace": key.namespace, "name": pod}})).collect::<Vec<_>>(),
                "ports": [{"name": p.name, "port": p.port, "protocol": p.protocol}],
            }));
            ready.chain(waiting)
        })
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": key.name, "namespace": key.namespace},
        "subsets": subsets,
    })
}
