//! The HTTP API, shaped like Kubernetes' (paths, objects, lists, `Status` errors), so that
//! kubectl compatibility can grow from it. Every node serves it; any node accepts writes.
//!
//! Reads come from this node's view: deployments and services from the desired state, pods
//! from placement joined with the status their nodes gossip, nodes from membership.
//!
//! Every request passes the browser checks of [`guard`], then, if the node has tokens, the
//! token check of [`auth`]; the connections are bounded by [`listen`]; every error, including
//! the framework's own (unknown path, wrong method, body too large), is a `Status` object.

pub mod auth;
pub mod guard;
pub mod list;
pub mod listen;
mod push;
pub mod served;
pub mod tls;
pub mod watch;
mod write;

use crate::agent::Agent;
use crate::clock;
use crate::join::JoinToken;
use crate::membership::Liveness;
use crate::membership::MemberId;
use crate::pods;
use crate::rate;
use crate::runtime::ContainerRuntime;
use crate::view::View;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures::StreamExt;
use list::ListQuery;
use listen::Activity;
use serde::Deserialize;
use serde_json::{Value, json};
use served::{
    Deployments, Endpoints, Events, Images, Namespaces, Nodes, Peers, Pods, ReplicaSets, Served,
    Services,
};
use std::net::SocketAddr;
use std::sync::Arc;
use weeble_core::document::{Op, WriteError};
use weeble_core::objects::table::Tabled;
use weeble_core::objects::{self, Object, Resource, StatusCause, discovery, openapi};
use weeble_core::time;
use weeble_core::wire::{PodAnswer, PodLog, PodRef, PodRequest};
use weeble_crdt::echo::{clip_to, echo};
use weeble_crdt::{Admission, ObjectKey, parse_manifests};

/// Weeble's version, as `/version` and the OpenAPI documents say it.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The API's shared state: the agent's handles, this node's runtime (for logs), and the
/// journal that versions what it serves.
#[derive(Clone)]
struct Api<R> {
    agent: Agent,
    runtime: R,
    versions: Arc<watch::Versions>,
}

/// How the API is served, beyond its address: connection limits and who may call it.
#[derive(Debug, Clone, Default)]
pub struct ApiOptions {
    pub limits: listen::Limits,
    /// Host names accepted besides IP literals, `localhost` and the node's name.
    pub allow_hosts: Vec<String>,
    /// Origins whose pages may call the API besides the node's own.
    pub allow_origins: Vec<String>,
    /// The bearer tokens it accepts; `None`: it asks for none.
    pub tokens: Option<auth::Tokens>,
    /// Requests a second each caller may make (twice that in a burst); `None`: no limit.
    pub rate_limit: Option<u32>,
    /// TLS ([`tls::server_config`]); `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Serves the API on `addr` until the process ends.
pub async fn serve<R: ContainerRuntime>(
    addr: SocketAddr,
    options: ApiOptions,
    agent: Agent,
    runtime: R,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let tls = options.tls.clone();
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, scheme, limits = ?options.limits, "API listening");
    let limits = options.limits;
    let refusal = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "the node serves {} connections at once; try again",
            limits.max_connections
        ),
    )
    .http_answer();
    listen::serve(listener, limits, app(options, agent, runtime), refusal, tls).await;
    Ok(())
}

/// The API without its listener: what [`serve`] answers with, and what a caller in the same
/// process (a node run in a test, say) can call as a `tower` service, with no socket.
pub fn app<R: ContainerRuntime>(options: ApiOptions, agent: Agent, runtime: R) -> Router {
    let policy = guard::Policy {
        node_name: agent.config.name.clone(),
        allow_hosts: options.allow_hosts,
        allow_origins: options.allow_origins,
    };
    let limiter = options.rate_limit.map(rate::Limiter::new);
    let shared = Api {
        versions: watch::Versions::watching(&agent),
        agent,
        runtime,
    };
    router(shared, policy, options.tokens, limiter)
}

fn router<R: ContainerRuntime>(
    shared: Api<R>,
    policy: guard::Policy,
    tokens: Option<auth::Tokens>,
    limiter: Option<rate::Limiter>,
) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/version", get(version))
        .route("/api", get(core_versions))
        .route("/apis", get(|| async { Json(discovery::groups()) }))
        .route("/api/v1", get(|| async { resources("v1") }))
        .route("/openapi/v2", get(openapi_v2))
        .route(
            "/openapi/v3",
            get(|| async { Json(openapi::root(VERSION)) }),
        )
        .route("/openapi/v3/{*group_version}", get(openapi_document))
        .route("/apis/{group}/{version}", get(group_resources))
        .route("/apis/weeble.io/v1/apply", post(apply::<R>))
        .route("/apis/weeble.io/v1/state", get(state::<R>))
        .route(
            "/apis/weeble.io/v1/namespaces/{ns}/deployments/{name}/rollout/{action}",
            get(rollout_history::<R>).post(rollout_action::<R>),
        )
        .route("/apis/apps/v1/deployments", get(list::<Deployments, R>))
        .route(
            "/apis/apps/v1/namespaces/{ns}/deployments",
            get(list_in::<Deployments, R>).post(write::create::<Deployments, R>),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/deployments/{name}",
            get(get_in::<Deployments, R>)
                .put(write::replace::<Deployments, R>)
                .patch(write::patch::<Deployments, R>)
                .delete(write::delete::<Deployments, R>),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/deployments/{name}/scale",
            get(get_scale::<R>)
                .put(put_scale::<R>)
                .patch(put_scale::<R>),
        )
        .route("/apis/apps/v1/replicasets", get(list::<ReplicaSets, R>))
        .route(
            "/apis/apps/v1/namespaces/{ns}/replicasets",
            get(list_in::<ReplicaSets, R>),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/replicasets/{name}",
            get(get_in::<ReplicaSets, R>),
        )
        .route("/api/v1/services", get(list::<Services, R>))
        .route(
            "/api/v1/namespaces/{ns}/services",
            get(list_in::<Services, R>).post(write::create::<Services, R>),
        )
        .route(
            "/api/v1/namespaces/{ns}/services/{name}",
            get(get_in::<Services, R>)
                .put(write::replace::<Services, R>)
                .patch(write::patch::<Services, R>)
                .delete(write::delete::<Services, R>),
        )
        .route("/api/v1/endpoints", get(list::<Endpoints, R>))
        .route(
            "/api/v1/namespaces/{ns}/endpoints",
            get(list_in::<Endpoints, R>),
        )
        .route(
            "/api/v1/namespaces/{ns}/endpoints/{name}",
            get(get_in::<Endpoints, R>),
        )
        .route("/api/v1/events", get(list::<Events, R>))
        .route("/api/v1/namespaces/{ns}/events", get(list_in::<Events, R>))
        .route(
            "/api/v1/namespaces/{ns}/events/{name}",
            get(get_in::<Events, R>),
        )
        .route("/api/v1/pods", get(list::<Pods, R>))
        .route(
            "/api/v1/namespaces/{ns}/pods",
            get(list_in::<Pods, R>).post(pod_not_written),
        )
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}",
            get(get_in::<Pods, R>)
                .delete(delete_pod::<R>)
                .put(pod_not_written)
                .patch(pod_not_written),
        )
        .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(pod_log::<R>))
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}/{action}",
            get(not_streamed).post(not_streamed),
        )
        .route("/apis/weeble.io/v1/peers", get(list::<Peers, R>))
        .route(
            "/apis/weeble.io/v1/peers/{peer}",
            get(get_named::<Peers, R>),
        )
        .route(
            "/apis/weeble.io/v1/peers/{peer}/{action}",
            post(admit_peer::<R>),
        )
        .route(
            "/apis/weeble.io/v1/images",
            get(list::<Images, R>).post(push::push::<R>),
        )
        .route(
            "/apis/weeble.io/v1/images/{image}",
            get(get_named::<Images, R>),
        )
        .route("/apis/weeble.io/v1/jointokens", post(join_token::<R>))
        .route("/api/v1/nodes", get(list::<Nodes, R>))
        .route(
            "/api/v1/namespaces",
            get(list::<Namespaces, R>).post(write::create_named::<Namespaces, R>),
        )
        .route(
            "/api/v1/namespaces/{name}",
            get(get_named::<Namespaces, R>)
                .put(write::replace_named::<Namespaces, R>)
                .patch(write::patch_named::<Namespaces, R>)
                .delete(write::delete_named::<Namespaces, R>),
        )
        .route("/api/v1/nodes/{name}", get(get_named::<Nodes, R>))
        .fallback(|request: Request| async move {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "the server could not find the requested resource ({})",
                    what(&request)
                ),
            )
        })
        .with_state(shared)
        .layer(middleware::from_fn_with_state(
            Arc::new(std::sync::Mutex::new(limiter)),
            limit_rate,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::new(tokens),
            authenticate,
        ))
        .layer(middleware::from_fn_with_state(Arc::new(policy), check))
        .layer(middleware::from_fn(errors_as_status))
}

/// Why a server-side dry run is refused (in a write's query, or a delete's body).
const DRY_RUN_REFUSED: &str = "server-side dry run (dryRun=All: kubectl diff, --dry-run=server) \
                               is not supported; nothing was changed (kubectl's \
                               --dry-run=client works)";

/// Refuses a request that [`guard::Policy`] does not allow.
async fn check(State(policy): State<Arc<guard::Policy>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let text = |name| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("(not text)"))
    };
    // A server-side dry run (kubectl diff, --dry-run=server) must change nothing: refused,
    // rather than carried out for real.
    let dry_run = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p.starts_with("dryRun=")));
    if dry_run && request.method() != axum::http::Method::GET {
        return ApiError::bad_request(DRY_RUN_REFUSED).into_response();
    }
    // A pod's exec, attach and portforward carry no body the API reads (their answer says
    // they are not served).
    let parts: Vec<&str> = request.uri().path().split('/').collect();
    let stream = matches!(
        parts.as_slice(),
        [
            "",
            "api",
            "v1",
            "namespaces",
            _,
            "pods",
            _,
            "exec" | "attach" | "portforward"
        ]
    ) && [axum::http::Method::GET, axum::http::Method::POST]
        .contains(request.method());
    let verdict = policy.check(
        request.method(),
        text(header::HOST),
        text(header::ORIGIN),
        (!stream).then(|| text(header::CONTENT_TYPE)),
    );
    let message = match verdict {
        Ok(()) => return next.run(request).await,
        Err(guard::Refusal::Host(host)) => format!(
            "Host {} is not this node: use its IP address, localhost or its name, \
             or start the node with --api-allow-host NAME",
            echo(&host)
        ),
        Err(guard::Refusal::Origin(origin)) => format!(
            "requests from pages of origin {} are not allowed; start the node with \
             --api-allow-origin ORIGIN to allow them",
            echo(&origin)
        ),
        Err(guard::Refusal::ContentType(given)) => {
            // kubectl create deployment|service (1.32) sends its object as protobuf.
            let protobuf = given.as_deref().is_some_and(|g| g.contains("protobuf"));
            let given = given.map_or("none".into(), |g| echo(&g));
            let hint = match protobuf {
                true => {
                    ": Weeble reads no protobuf; write the object as a manifest and use \
                         kubectl apply -f (kubectl create KIND NAME --dry-run=client -o yaml \
                         makes one)"
                }
                false => "",
            };
            return ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "a write needs Content-Type application/yaml or application/json \
                     (or a patch type kubectl sends), got {given}{hint}"
                ),
            )
            .into_response();
        }
    };
    ApiError::new(StatusCode::FORBIDDEN, message).into_response()
}

/// Refuses a request without a token the node accepts (401), or a write with a read-only one
/// (403); `/healthz` is open, as a load balancer's check needs. A write names its token in the
/// log.
async fn authenticate(
    State(tokens): State<Arc<Option<auth::Tokens>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(tokens) = tokens.as_ref().as_ref() else {
        return next.run(request).await;
    };
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let (status, message) = match tokens.check(request.method(), given) {
        Ok(token) => {
            if request.method() != axum::http::Method::GET {
                tracing::info!(token = %token.name, request = %what(&request), "write");
            }
            let caller = Caller(token.name.clone());
            let mut request = request;
            request.extensions_mut().insert(caller);
            return next.run(request).await;
        }
        Err(auth::Denied::Missing) => (
            StatusCode::UNAUTHORIZED,
            "this node's API needs a token (Authorization: Bearer TOKEN; the CLI's --token or \
             WEEBLE_TOKEN)"
                .to_string(),
        ),
        Err(auth::Denied::Unknown) => (
            StatusCode::UNAUTHORIZED,
            "the token is not one this node accepts".to_string(),
        ),
        Err(auth::Denied::ReadOnly(name)) => (
            StatusCode::FORBIDDEN,
            format!("token {name:?} is read-only: it cannot {}", what(&request)),
        ),
    };
    tracing::debug!(%status, request = %what(&request), "refused: {message}");
    let mut response = ApiError::new(status, message).into_response();
    if status == StatusCode::UNAUTHORIZED {
        let challenge = header::HeaderValue::from_static("Bearer");
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
    }
    response
}

/// Who sends a request: its token's name (set by [`authenticate`]).
#[derive(Clone)]
struct Caller(String);

/// Refuses a request past its caller's rate (429, with `Retry-After`); the caller is its
/// token's name, or `anonymous` on a node that asks for no token. `/healthz` is not counted.
async fn limit_rate(
    State(limiter): State<Arc<std::sync::Mutex<Option<rate::Limiter>>>>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let caller = request
        .extensions()
        .get::<Caller>()
        .map_or("anonymous", |c| c.0.as_str());
    let verdict = match limiter.lock().expect("the limiter's lock").as_mut() {
        Some(limiter) => limiter.allow(caller, clock::now_ms()),
        None => rate::Verdict::Allowed,
    };
    let rate::Verdict::Limited { retry_after_s, log } = verdict else {
        return next.run(request).await;
    };
    if log {
        tracing::warn!(
            caller,
            "over the API's rate limit: refusing its requests (429) for now; logged once every 10 s"
        );
    }
    let message = format!(
        "{caller} asks faster than --api-rate-limit allows; try again in {retry_after_s} s"
    );
    let mut response = ApiError::new(StatusCode::TOO_MANY_REQUESTS, message).into_response();
    response.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from(retry_after_s),
    );
    response
}

/// A request's method and path, for a message (a very long path is cut).
fn what(request: &Request) -> String {
    clip_to(
        &format!("{} {}", request.method(), request.uri().path()),
        200,
    )
}

/// Turns an error answer that is not JSON (the framework's own: unknown path, wrong method,
/// body too large or not UTF-8) into a `Status` carrying its text.
async fn errors_as_status(request: Request, next: Next) -> Response {
    let what = what(&request);
    let response = next.run(request).await;
    let is_json = |h: &HeaderMap| {
        h.get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
    };
    if response.status().as_u16() < 400 || is_json(response.headers()) {
        return response;
    }
    let code = response.status();
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let message = match text.trim() {
        "" => format!(
            "{} ({})",
            code.canonical_reason().unwrap_or("error").to_lowercase(),
            what
        ),
        text => text.to_string(),
    };
    ApiError::new(code, message).into_response()
}

/// An error answered as a Kubernetes `Status` ([`objects::Status`]): what went wrong, in a form
/// kubectl understands.
pub struct ApiError {
    code: StatusCode,
    message: String,
    causes: Vec<StatusCause>,
    /// Kubernetes' reason where it is not the one of the code (`AlreadyExists` for a 409).
    reason: Option<&'static str>,
}

impl ApiError {
    fn new(code: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            causes: vec![],
            reason: None,
        }
    }

    /// `what` exists already: 409 AlreadyExists.
    fn already_exists(what: impl std::fmt::Display) -> Self {
        let what = clip_to(&what.to_string(), 160);
        ApiError {
            reason: Some("AlreadyExists"),
            ..ApiError::new(StatusCode::CONFLICT, format!("{what} already exists"))
        }
    }

    /// `what` (such as `Pod default/web-0`) not found; `what` is cut if a client sent a
    /// very long name.
    fn not_found(what: impl std::fmt::Display) -> Self {
        let what = clip_to(&what.to_string(), 160);
        ApiError::new(StatusCode::NOT_FOUND, format!("{what} not found"))
    }

    fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    fn body(self) -> objects::Status {
        let mut status = objects::Status::failure(self.code.as_u16(), self.message, self.causes);
        if let Some(reason) = self.reason {
            status.reason = Some(reason.into());
        }
        status
    }

    /// The whole HTTP/1.1 answer, for a connection that is closed without being served.
    fn http_answer(self) -> Vec<u8> {
        let code = self.code;
        let body = serde_json::to_string(&self.body()).expect("a Status serializes");
        format!(
            "HTTP/1.1 {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            code,
            body.len()
        )
        .into_bytes()
    }
}

/// A refusal of a pod's node: its code if it is an error's (a peer's answer is not taken at
/// its word for anything else: 502).
impl From<pods::Refusal> for ApiError {
    fn from(r: pods::Refusal) -> Self {
        let code = StatusCode::from_u16(r.status)
            .ok()
            .filter(|c| c.is_client_error() || c.is_server_error())
            .unwrap_or(StatusCode::BAD_GATEWAY);
        ApiError::new(code, r.message)
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        let code = match &e {
            WriteError::NotFound { kind, key } => {
                return ApiError::not_found(format!("{kind} {key}"));
            }
            WriteError::Invalid(_) => StatusCode::BAD_REQUEST,
            WriteError::Busy => StatusCode::TOO_MANY_REQUESTS,
            WriteError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            WriteError::Rejected(_) | WriteError::NotPersisted(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.code, Json(self.body())).into_response()
    }
}

type Reply<T> = Result<Json<T>, ApiError>;

fn view<R>(api: &Api<R>) -> std::sync::Arc<View> {
    api.agent.view.borrow().clone()
}

/// `/version`: the Kubernetes minor the API speaks, and Weeble's version.
async fn version() -> Json<discovery::Version> {
    Json(discovery::version(VERSION))
}

/// `/api`, naming the address the request came to (its `Host`).
async fn core_versions(headers: HeaderMap) -> Json<discovery::ApiVersions> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    Json(discovery::core_versions(host.unwrap_or_default()))
}

/// `/apis/{group}/{version}`.
async fn group_resources(Path((group, version)): Path<(String, String)>) -> Reply<Value> {
    resources(&format!("{group}/{version}"))
}

/// `/openapi/v2`, as protobuf for a client that asks for it (kubectl before 1.27 asks for
/// nothing else), as JSON otherwise.
async fn openapi_v2(headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|a| a.to_str().ok());
    let document = openapi::v2::document(VERSION);
    if accept.is_some_and(|a| a.contains("protobuf")) {
        let content_type = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
        let bytes = openapi::v2::protobuf(&document);
        return ([(header::CONTENT_TYPE, content_type)], bytes).into_response();
    }
    Json(document).into_response()
}

/// `/openapi/v3/{group_version}`: the document of a group version, or 404.
async fn openapi_document(Path(group_version): Path<String>) -> Reply<Value> {
    openapi::document(&group_version).map(Json).ok_or_else(|| {
        ApiError::not_found(format!(
            "no OpenAPI document for {} (api/v1 and apis/apps/v1 have one)",
            echo(&group_version)
        ))
    })
}

/// A group version's resources, or 404 if Weeble serves no such group version.
fn resources(group_version: &str) -> Reply<Value> {
    match discovery::resources(group_version) {
        Some(list) => Ok(Json(serde_json::to_value(list).expect("a list serializes"))),
        None => Err(ApiError::not_found(format!(
            "the server could not find the requested resource: no group version {}",
            echo(group_version)
        ))),
    }
}

/// `POST /apis/weeble.io/v1/apply`: a manifest file (YAML, many documents), all or nothing.
async fn apply<R: ContainerRuntime>(
    State(api): State<Api<R>>,
    body: String,
) -> Reply<objects::Applied> {
    let parsed = parse_manifests(&body).map_err(invalid)?;
    let outcomes = api.agent.write(Op::Apply(parsed.objects.clone())).await?;
    Ok(Json(objects::Applied::new(&parsed, outcomes)))
}

/// A manifest that does not validate: 422 Invalid, a cause per field.
fn invalid(e: weeble_crdt::ManifestError) -> ApiError {
    ApiError {
        causes: e
            .errors
            .iter()
            .map(|l| StatusCause {
                field: l.path.clone(),
                message: l.to_string(),
            })
            .collect(),
        ..ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("manifest rejected, nothing applied:\n{e}"),
        )
    }
}

/// A 400 for a continue token this API did not write.
fn bad_token(_: list::BadToken) -> ApiError {
    ApiError::bad_request(
        "invalid continue token: pass back the metadata.continue of the previous page, \
         or list again without it",
    )
}

/// `GET` a list of every object of `S` (`?watch=true`: a watch of them).
async fn list<S: Served, R>(
    State(api): State<Api<R>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
    activity: Option<Extension<Activity>>,
) -> ListReply {
    listed::<S, R>(&api, None, &headers, query, activity).await
}

/// `GET` a list of the objects of `S` in one namespace (or a watch of them).
async fn list_in<S: Served, R>(
    State(api): State<Api<R>>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
    activity: Option<Extension<Activity>>,
) -> ListReply {
    listed::<S, R>(&api, Some(ns), &headers, query, activity).await
}

type ListReply = Result<Response, ApiError>;

/// A list, a table ([`ListQuery::form`]) or a watch of the objects of `S` (of `ns`), as
/// `query` selects them.
async fn listed<S: Served, R>(
    api: &Api<R>,
    ns: Option<String>,
    headers: &HeaderMap,
    query: ListQuery,
    activity: Option<Extension<Activity>>,
) -> ListReply {
    let selector = query.selector(S::FIELDS).map_err(ApiError::bad_request)?;
    api.versions.use_resource::<S>(&api.agent).await;
    let accept = headers.get(header::ACCEPT).and_then(|a| a.to_str().ok());
    let form = query.form(accept);
    if query.watching() {
        let (request, activity) = (query.watch_request(), activity.map(|a| a.0));
        let what = (ns, selector, form);
        return watch::serve::<S>(&api.agent, api.versions.clone(), what, request, activity)
            .map_err(|watch::BadVersion(v)| {
                ApiError::bad_request(format!(
                    "resourceVersion {}: not a version this API wrote (a list's \
                     metadata.resourceVersion, or 0)",
                    echo(&v)
                ))
            });
    }
    let after = query
        .token
        .as_deref()
        .map(S::after)
        .transpose()
        .map_err(bad_token)?;
    let listing = list::Listing {
        resource: S::RESOURCE,
        limit: query.limit,
        form,
        selector,
        versions: api.versions.clone(),
    };
    let source = S::source(&api.agent);
    Ok(list::respond(listing, move |sink| {
        source.each(ns.as_deref(), after, &mut |token, object| {
            sink.push(token, object)
        });
    }))
}

/// `GET` one object of `S` in a namespace.
async fn get_in<S: Served, R>(
    State(api): State<Api<R>>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let Json(object) = one::<S, R>(&api, ObjectKey::new(ns, name)).await?;
    Ok(as_asked(object, &headers, &query))
}

/// `GET` one object of `S`, a kind of no namespace.
async fn get_named<S: Served, R>(
    State(api): State<Api<R>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let Json(object) = one::<S, R>(&api, ObjectKey::new("", name)).await?;
    Ok(as_asked(object, &headers, &query))
}

/// An object as the request asks: itself, or a table of one row (`kubectl get KIND NAME`).
fn as_asked<T: Object + Tabled>(object: T, headers: &HeaderMap, query: &ListQuery) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|a| a.to_str().ok());
    match query.form(accept) {
        list::Form::List => Json(object).into_response(),
        form => {
            let value = serde_json::to_value(&object).expect("a read model serializes");
            Json(list::table_of(&object, value, form, true)).into_response()
        }
    }
}

/// The object `key` of `S` with its version, or 404.
async fn one<S: Served, R>(api: &Api<R>, key: ObjectKey) -> Reply<S::Object> {
    let object = S::one(&api.agent, &key).ok_or_else(|| {
        let kind = <S::Object as Resource>::KIND;
        ApiError::not_found(format!("{kind} {}", echo(&key.to_string())))
    })?;
    api.versions.use_resource::<S>(&api.agent).await;
    Ok(Json(api.versions.stamp(S::RESOURCE, object)))
}

async fn get_scale<R>(
    State(api): State<Api<R>>,
    Path((ns, name)): Path<(String, String)>,
) -> Reply<objects::Scale> {
    let key = ObjectKey::new(&ns, &name);
    let Json(d) = one::<Deployments, R>(&api, key.clone()).await?;
    Ok(Json(objects::Scale::new(
        &key,
        d.spec.replicas,
        d.status.ready_replicas,
    )))
}

async fn put_scale<R>(
    State(api): State<Api<R>>,
    Path((ns, name)): Path<(String, String)>,
    body: String,
) -> Reply<objects::Scale> {
    let replicas = objects::scale_replicas(&body).map_err(ApiError::bad_request)?;
    let key = ObjectKey::new(&ns, &name);
    api.agent.write(Op::Scale(key.clone(), replicas)).await?;
    Ok(Json(objects::Scale::new(&key, replicas, 0)))
}

/// `rollout undo|restart|pause|resume` of a deployment: a write of the document; answers
/// `{"outcome": ...}` as kubectl prints it (`rolled back`, `restarted`, `paused`, `resumed`,
/// `unchanged`).
async fn rollout_action<R>(
    State(api): State<Api<R>>,
    Path((ns, name, action)): Path<(String, String, String)>,
    body: String,
) -> Reply<Value> {
    let key = ObjectKey::new(&ns, &name);
    let op = match action.as_str() {
        "undo" => Op::Undo(
            key,
            objects::undo_revision(&body).map_err(ApiError::bad_request)?,
        ),
        "restart" => Op::Restart(key),
        "pause" => Op::Pause(key, true),
        "resume" => Op::Pause(key, false),
        other => {
            return Err(ApiError::not_found(format!(
                "rollout action {}: use undo, restart, pause or resume",
                echo(other)
            )));
        }
    };
    let outcomes = api.agent.write(op).await?;
    let outcome = outcomes
        .first()
        .map_or("unchanged".into(), ToString::to_string);
    Ok(Json(json!({ "outcome": outcome })))
}

/// A deployment's revisions, oldest first, the current one last: `GET rollout/history`.
async fn rollout_history<R>(
    State(api): State<Api<R>>,
    Path((ns, name, what)): Path<(String, String, String)>,
) -> Reply<Vec<objects::Revision>> {
    if what != "history" {
        return Err(ApiError::not_found(format!(
            "rollout {}: GET rollout/history, or POST undo, restart, pause or resume",
            echo(&what)
        )));
    }
    let view = view(&api);
    let d = deployment_of(&view, &ObjectKey::new(&ns, &name))?;
    Ok(Json(objects::Revision::history(d)))
}

/// The deployment `key` of the view, or 404.
fn deployment_of<'a>(
    view: &'a View,
    key: &ObjectKey,
) -> Result<&'a Arc<weeble_crdt::Deployment>, ApiError> {
    view.snapshot
        .deployments
        .get(key)
        .ok_or_else(|| ApiError::not_found(format!("Deployment {key}")))
}

/// `pods/NAME/log`'s parameters, as Kubernetes names them.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogQuery {
    container: Option<String>,
    follow: Option<String>,
    tail_lines: Option<usize>,
    since_seconds: Option<i64>,
    since_time: Option<String>,
    timestamps: Option<String>,
    limit_bytes: Option<u64>,
    previous: Option<String>,
}

impl LogQuery {
    /// What to read, as the pod's node is asked for it; refused as Kubernetes refuses it.
    fn pod_log(self) -> Result<PodLog, ApiError> {
        if list::flag(self.previous.as_deref()) {
            return Err(ApiError::bad_request(
                "previous is not supported: a restarted container keeps its id and its \
                 output, so the log shows every run",
            ));
        }
        if self.since_seconds.is_some() && self.since_time.is_some() {
            return Err(ApiError::bad_request(
                "at most one of sinceTime or sinceSeconds may be specified",
            ));
        }
        let since_time = match &self.since_time {
            None => None,
            Some(text) => Some(
                time::parse_rfc3339(text).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "sinceTime {} is not an RFC 3339 time such as 2026-01-02T03:04:05Z",
                        echo(text)
                    ))
                })? / 1000,
            ),
        };
        Ok(PodLog {
            container: self.container,
            follow: list::flag(self.follow.as_deref()),
            tail_lines: self.tail_lines,
            since_seconds: self.since_seconds,
            since_time,
            timestamps: list::flag(self.timestamps.as_deref()),
            limit_bytes: self.limit_bytes.filter(|&n| n > 0),
        })
    }
}

/// Logs are read on the pod's node: here, or there for this node's client, and streamed
/// through (`crate::pods`).
async fn pod_log<R: ContainerRuntime>(
    State(api): State<Api<R>>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    let log = q.pod_log()?;
    let stream = match pods_node(&api, &ns, &name).await? {
        (_, pod, None) => {
            let node = &api.agent.config.name;
            pods::log(&api.runtime, node, &pod, &log)
                .await?
                .map(|chunk| chunk.map_err(|e| std::io::Error::other(e.to_string())))
                .boxed()
        }
        (_, pod, Some(owner)) => peer_log(&api, owner, PodRequest::Log { pod, log }).await?,
    };
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

/// A log read on node `owner`, a part at a time until its last, as a stream of its bytes
/// (a refusal of the first part is the answer; of a later one, the stream's error).
async fn peer_log<R>(
    api: &Api<R>,
    owner: MemberId,
    open: PodRequest,
) -> Result<futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>, ApiError> {
    let PodAnswer::Log {
        session,
        bytes,
        end,
    } = ask_pods_node(api, &owner, open).await?
    else {
        return Err(unexpected_pod_answer(&owner));
    };
    let (agent, first) = (api.agent.clone(), bytes::Bytes::from(bytes));
    let ask = move |request| {
        let (agent, owner) = (agent.clone(), owner.clone());
        async move {
            agent
                .ask_pod(owner, request)
                .await
                .map_err(|e| e.to_string())
        }
    };
    Ok(futures::stream::once(async { Ok(first) })
        .chain(pods::rest(ask, session, end))
        .filter(|part| futures::future::ready(!matches!(part, Ok(b) if b.is_empty())))
        .boxed())
}

/// Pod `ns/name`, as its node finds it, and the node it is on if that is another (`None`: this
/// node, or placed nowhere).
async fn pods_node<R>(
    api: &Api<R>,
    ns: &str,
    name: &str,
) -> Result<(objects::Pod, PodRef, Option<MemberId>), ApiError> {
    let Json(pod) = one::<Pods, R>(api, ObjectKey::new(ns, name)).await?;
    let target = PodRef {
        name: pod.metadata.name.clone(),
        deployment: pod
            .metadata
            .annotation(objects::ANNOTATION_DEPLOYMENT)
            .map(str::to_owned),
    };
    let Some(node) = pod.spec.node_name.clone() else {
        return Ok((pod, target, None));
    };
    if node == api.agent.config.name {
        return Ok((pod, target, None));
    }
    let view = view(api);
    let owner = view.members.iter().find(|(m, _)| m.name == node);
    let owner = owner.ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("pod {ns}/{name} is on node {node:?}, which this node cannot reach"),
        )
    })?;
    let owner = owner.0.clone();
    Ok((pod, target, Some(owner)))
}

/// Asks node `owner` for a pod's logs or removal; its refusal is the client's answer.
async fn ask_pods_node<R>(
    api: &Api<R>,
    owner: &MemberId,
    request: PodRequest,
) -> Result<PodAnswer, ApiError> {
    match api.agent.ask_pod(owner.clone(), request).await {
        Ok(PodAnswer::Refused { status, message }) => Err(pods::Refusal { status, message }.into()),
        Ok(answer) => Ok(answer),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!(
                "the pod's node {} did not answer: {e} (a node of an earlier Weeble build \
                 cannot serve another node's client: ask it directly)",
                owner.name
            ),
        )),
    }
}

fn unexpected_pod_answer(owner: &MemberId) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        format!("the pod's node {} answered with something else", owner.name),
    )
}

/// `DELETE` a pod: its containers are removed on its node (asked by this one if it is
/// another) and its deployment makes them again: a new pod of the same name, with a new uid,
/// as deleting a deployment's pod gives a new one in Kubernetes. Answers with the pod deleted.
async fn delete_pod<R: ContainerRuntime>(
    State(api): State<Api<R>>,
    Path((ns, name)): Path<(String, String)>,
    body: String,
) -> Result<Response, ApiError> {
    write::check_delete::<Pods, R>(&api, &ObjectKey::new(&ns, &name), &body)?;
    let (deleted, pod, owner) = pods_node(&api, &ns, &name).await?;
    match owner {
        None => pods::delete(&api.runtime, &api.agent.config.name, &pod).await?,
        Some(owner) => match ask_pods_node(&api, &owner, PodRequest::Delete { pod }).await? {
            PodAnswer::Deleted => {}
            _ => return Err(unexpected_pod_answer(&owner)),
        },
    }
    tracing::info!(pod = %format!("{ns}/{name}"), "pod deleted: its containers are made again");
    Ok(Json(deleted).into_response())
}

/// A pod's `POST`, `PUT` and `PATCH`: refused, saying what to change instead. A pod is what
/// its deployment's template and placement make it, on whichever node: a write to it would be
/// undone by the next reconcile there.
async fn pod_not_written(method: axum::http::Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{method} of a pod is not supported: a pod is made by its deployment's template; \
             change the deployment (kubectl apply, edit, patch, label or set image \
             deployment NAME), or kubectl delete pod NAME to have it made again"
        ),
    )
}

/// `exec`, `attach` and `portforward` of a pod: not served (Weeble's API streams no
/// terminal or port); the answer says so, and what to use instead.
async fn not_streamed(Path((ns, name, action)): Path<(String, String, String)>) -> ApiError {
    let what = match action.as_str() {
        "exec" | "attach" => format!(
            "{action} is not supported: Weeble's API streams no terminal; run docker {action} \
             on the pod's node (kubectl get pod {name} -n {ns} -o wide names it)"
        ),
        "portforward" => format!(
            "port-forward is not supported: Weeble publishes each container port on its node; \
             kubectl get pod {name} -n {ns} -o jsonpath='{{.status.podIP}}:{{.status.ports}}' \
             says where, and every node serves the pod's services on its own address"
        ),
        other => {
            return ApiError::not_found(format!("pod subresource {}", echo(other)));
        }
    };
    ApiError::bad_request(what)
}

/// This node's copy of the desired state in brief: its heads (equal heads, equal documents)
/// and how many objects it holds.
async fn state<R>(State(api): State<Api<R>>) -> Json<Value> {
    let snapshot = api.agent.snapshot.borrow().clone();
    Json(json!({
        "heads": snapshot.heads,
        "deployments": snapshot.deployments.len(),
        "services": snapshot.services.len(),
    }))
}

/// `POST /apis/weeble.io/v1/peers/{peer}/allow|deny`: `weeble node allow|deny PEER`. The
/// first peer allowed closes the cluster to the peers not allowed, so the live members are
/// allowed with it: turning the list on cuts no one off.
async fn admit_peer<R>(
    State(api): State<Api<R>>,
    Path((peer, action)): Path<(String, String)>,
) -> Reply<Value> {
    let admission = match action.as_str() {
        "allow" => Admission::Allowed,
        "deny" => Admission::Denied,
        other => {
            return Err(ApiError::not_found(format!(
                "peer action {}: use allow or deny",
                echo(other)
            )));
        }
    };
    if !weeble_core::keys::is_peer_id(&peer) {
        return Err(ApiError::bad_request(format!(
            "peer {}: not a peer id (`weeble get peers` lists them)",
            echo(&peer)
        )));
    }
    let peers = admitted_with_members(&api, peer, admission);
    let outcomes = api.agent.write(Op::Admit(peers.clone(), admission)).await?;
    let outcomes: Vec<Value> = peers
        .iter()
        .zip(outcomes)
        .map(|(p, o)| json!({ "peer": p, "outcome": o.to_string() }))
        .collect();
    Ok(Json(json!({ "peers": outcomes })))
}

/// `peer`, and if it is the first allowed, every live member with it.
fn admitted_with_members<R>(api: &Api<R>, peer: String, admission: Admission) -> Vec<String> {
    let view = view(api);
    let mut peers = vec![peer];
    if admission == Admission::Allowed && !view.snapshot.peers.is_closed() {
        let live = view.members.iter().filter(|(_, l)| *l != Liveness::Down);
        let ids = live
            .map(|(m, _)| m.peer_id.clone())
            .filter(|p| !p.is_empty());
        peers.extend(ids.filter(|p| view.snapshot.peers.admits(p)));
        peers.sort();
        peers.dedup();
    }
    peers
}

/// `POST /apis/weeble.io/v1/jointokens`: `weeble node join-token`. A key made for a new
/// node, allowed at once, in a token with the cluster key and this node's p2p address.
async fn join_token<R>(State(api): State<Api<R>>) -> Reply<Value> {
    let config = &api.agent.config;
    let (token, peer) = JoinToken::for_new_node(config.cluster_key, config.p2p);
    let peers = admitted_with_members(&api, peer.clone(), Admission::Allowed);
    api.agent
        .write(Op::Admit(peers, Admission::Allowed))
        .await?;
    Ok(Json(json!({ "peer": peer, "token": token.encode() })))
}
