//! Writes as Kubernetes' clients send them, for the kinds the desired state stores
//! (deployments, services, namespaces): `POST` creates (409 if the object exists), `PUT` replaces (404
//! if it does not; 409 if the body's `resourceVersion` is not the object's at this node),
//! `PATCH` applies one of the four kinds of patch ([`weeble_core::objects::patch`]) to the
//! object as served (server-side apply creates it if it is missing). Each result is validated
//! as a manifest, as `weeble apply` validates one, and written whole: a write that does not
//! validate is 422 with its field causes, and changes nothing. `DELETE` removes the object (a
//! namespace with everything in it).

use super::served::Served;
use super::{Api, ApiError, DRY_RUN_REFUSED, invalid};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use weeble_core::document::Op;
use weeble_core::objects::patch::{self, PatchType};
use weeble_core::objects::{self, Object, Resource};
use weeble_crdt::echo::echo;
use weeble_crdt::{DEFAULT_NAMESPACE, Kind, ObjectKey, parse_manifests};

/// A resource the desired state stores: one that is written.
pub trait Stored: Served {
    const KIND: Kind;
}

impl Stored for super::served::Deployments {
    const KIND: Kind = Kind::Deployment;
}

impl Stored for super::served::Services {
    const KIND: Kind = Kind::Service;
}

impl Stored for super::served::Namespaces {
    const KIND: Kind = Kind::Namespace;
}

/// How long a write waits for the node's view to show what it wrote.
const VIEW_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// `POST` an object of `S` into namespace `ns`.
pub(super) async fn create<S: Stored, R>(
    State(api): State<Api<R>>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    created::<S, R>(&api, &ns, &headers, &body).await
}

/// `POST` an object of `S`, a kind of no namespace.
pub(super) async fn create_named<S: Stored, R>(
    State(api): State<Api<R>>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    created::<S, R>(&api, "", &headers, &body).await
}

async fn created<S: Stored, R>(
    api: &Api<R>,
    ns: &str,
    headers: &HeaderMap,
    body: &str,
) -> Result<Response, ApiError> {
    let value = body_value(headers, body)?;
    let object = manifest::<S>(ns, None, value)?;
    let key = object.meta().key();
    if S::one(&api.agent, &key).is_some() {
        return Err(ApiError::already_exists(format!(
            "{} {}",
            S::KIND,
            echo(&key.to_string())
        )));
    }
    written::<S, R>(api, object, StatusCode::CREATED).await
}

/// `PUT` an object of `S` in place of `ns/name`.
pub(super) async fn replace<S: Stored, R>(
    State(api): State<Api<R>>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    replaced::<S, R>(&api, ObjectKey::new(ns, name), &headers, &body).await
}

/// `PUT` an object of `S`, a kind of no namespace, in place of `name`.
pub(super) async fn replace_named<S: Stored, R>(
    State(api): State<Api<R>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    replaced::<S, R>(&api, ObjectKey::new("", name), &headers, &body).await
}

async fn replaced<S: Stored, R>(
    api: &Api<R>,
    key: ObjectKey,
    headers: &HeaderMap,
    body: &str,
) -> Result<Response, ApiError> {
    let value = body_value(headers, body)?;
    if S::one(&api.agent, &key).is_none() {
        return Err(not_found::<S>(&key));
    }
    if let Some(given) = value
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
    {
        let current = api.versions.of(S::RESOURCE, &key).to_string();
        if given != current {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "Operation cannot be fulfilled on {} {}: the object has been modified \
                     (resourceVersion {} here, {} given); read it again and apply your changes \
                     to the latest version",
                    S::RESOURCE,
                    echo(&key.to_string()),
                    current,
                    echo(given)
                ),
            ));
        }
    }
    let object = manifest::<S>(&key.namespace, Some(&key.name), value)?;
    written::<S, R>(api, object, StatusCode::OK).await
}

/// `PATCH` the object `ns/name` of `S`.
pub(super) async fn patch<S: Stored, R>(
    State(api): State<Api<R>>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    patched::<S, R>(&api, ObjectKey::new(ns, name), &headers, &body).await
}

/// `PATCH` the object `name` of `S`, a kind of no namespace.
pub(super) async fn patch_named<S: Stored, R>(
    State(api): State<Api<R>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Result<Response, ApiError> {
    patched::<S, R>(&api, ObjectKey::new("", name), &headers, &body).await
}

async fn patched<S: Stored, R>(
    api: &Api<R>,
    key: ObjectKey,
    headers: &HeaderMap,
    body: &str,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let kind = PatchType::of(content_type).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "a patch needs Content-Type application/json-patch+json, \
                 application/merge-patch+json, application/strategic-merge-patch+json or \
                 application/apply-patch+yaml, got {}",
                echo(content_type)
            ),
        )
    })?;
    let given = match kind {
        PatchType::Apply => yaml(body)?,
        _ => serde_json::from_str(body)
            .map_err(|e| ApiError::bad_request(format!("the patch is not JSON: {e}")))?,
    };
    let (mut target, code) = match (S::one(&api.agent, &key), kind) {
        (Some(current), _) => {
            let current = api.versions.stamp(S::RESOURCE, current);
            let value = serde_json::to_value(current).expect("a read model serializes");
            (value, StatusCode::OK)
        }
        (None, PatchType::Apply) => (json!({}), StatusCode::CREATED),
        (None, _) => return Err(not_found::<S>(&key)),
    };
    patch::apply(&mut target, &given, kind).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the patch does not apply: {e}"),
        )
    })?;
    let object = manifest::<S>(&key.namespace, Some(&key.name), target)?;
    written::<S, R>(api, object, code).await
}

/// `DELETE` the object `ns/name` of `S`.
pub(super) async fn delete<S: Stored, R>(
    State(api): State<Api<R>>,
    Path((ns, name)): Path<(String, String)>,
    Query(query): Query<DeleteQuery>,
    body: String,
) -> Result<Json<objects::Status>, ApiError> {
    deleted::<S, R>(&api, ObjectKey::new(ns, name), &query, &body).await
}

/// `DELETE` the object `name` of `S`, a kind of no namespace (a namespace: with everything
/// in it; `default` stays).
pub(super) async fn delete_named<S: Stored, R>(
    State(api): State<Api<R>>,
    Path(name): Path<String>,
    Query(query): Query<DeleteQuery>,
    body: String,
) -> Result<Json<objects::Status>, ApiError> {
    if S::KIND == Kind::Namespace && name == DEFAULT_NAMESPACE {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "namespace default may not be deleted (delete what is in it instead)",
        ));
    }
    deleted::<S, R>(&api, ObjectKey::new("", name), &query, &body).await
}

async fn deleted<S: Stored, R>(
    api: &Api<R>,
    key: ObjectKey,
    query: &DeleteQuery,
    body: &str,
) -> Result<Json<objects::Status>, ApiError> {
    let options = check_delete::<S, R>(api, &key, body)?;
    let owner = matches!(S::KIND, Kind::Deployment | Kind::Namespace);
    if owner && (options.orphans() || query.orphans()) {
        return Err(ApiError::bad_request(format!(
            "propagationPolicy Orphan (--cascade=orphan) is not supported: what a {} runs \
             goes with it; nothing was deleted (delete with --cascade=background or \
             foreground)",
            S::KIND
        )));
    }
    api.agent.write(Op::Delete(S::KIND, key.clone())).await?;
    Ok(Json(objects::Status::deleted(S::KIND, &key.name)))
}

/// A `DELETE`'s body: Kubernetes' `DeleteOptions`, of which Weeble reads the dry run (which
/// kubectl sends here, not in the query), the preconditions and the propagation policy:
/// `Background` and `Foreground` are the same here (what an object runs goes with it at
/// once), `Orphan` is refused. `gracePeriodSeconds` changes nothing.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeleteOptions {
    #[serde(default)]
    dry_run: Vec<String>,
    preconditions: Option<Preconditions>,
    propagation_policy: Option<String>,
    /// The older way to say `Orphan`.
    orphan_dependents: Option<bool>,
}

impl DeleteOptions {
    fn orphans(&self) -> bool {
        self.propagation_policy.as_deref() == Some("Orphan") || self.orphan_dependents == Some(true)
    }
}

/// The same options in a `DELETE`'s query, where the Python client puts them.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeleteQuery {
    propagation_policy: Option<String>,
    orphan_dependents: Option<String>,
}

impl DeleteQuery {
    fn orphans(&self) -> bool {
        self.propagation_policy.as_deref() == Some("Orphan")
            || super::list::flag(self.orphan_dependents.as_deref())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Preconditions {
    uid: Option<String>,
    resource_version: Option<String>,
}

/// The options of a delete of `key` (of `S`), refused if it is a dry run (400) or if the
/// object as served here does not meet its preconditions (409); an empty body asks nothing.
pub(super) fn check_delete<S: Served, R>(
    api: &Api<R>,
    key: &ObjectKey,
    body: &str,
) -> Result<DeleteOptions, ApiError> {
    let options: DeleteOptions = match body.trim() {
        "" => DeleteOptions::default(),
        text => serde_json::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("the body is not DeleteOptions: {e}")))?,
    };
    if !options.dry_run.is_empty() {
        return Err(ApiError::bad_request(DRY_RUN_REFUSED));
    }
    let Some(wanted) = &options.preconditions else {
        return Ok(options);
    };
    let Some(current) = S::one(&api.agent, key) else {
        return Ok(options);
    };
    let meta = current.metadata();
    let version = api.versions.of(S::RESOURCE, key).to_string();
    let unmet = |what: &str, wanted: &str, here: &str| {
        ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "precondition failed: {what} {} given, {} here",
                echo(wanted),
                echo(here)
            ),
        )
    };
    if let Some(uid) = wanted
        .uid
        .as_ref()
        .filter(|&u| Some(u) != meta.uid.as_ref())
    {
        return Err(unmet("uid", uid, meta.uid.as_deref().unwrap_or_default()));
    }
    if let Some(given) = wanted.resource_version.as_ref().filter(|&v| *v != version) {
        return Err(unmet("resourceVersion", given, &version));
    }
    Ok(options)
}

fn not_found<S: Stored>(key: &ObjectKey) -> ApiError {
    ApiError::not_found(format!("{} {}", S::KIND, echo(&key.to_string())))
}

/// A body as JSON, or as YAML if it says it is (`kubectl create -f x.yaml` sends JSON).
fn body_value(headers: &HeaderMap, body: &str) -> Result<Value, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.contains("yaml") {
        return yaml(body);
    }
    serde_json::from_str(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))
}

fn yaml(body: &str) -> Result<Value, ApiError> {
    serde_yaml_ng::from_str(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not YAML: {e}")))
}

/// `value` checked against the request (its kind that of `S`, its namespace `ns` or none,
/// its name `name` if the path names one) and validated as a manifest.
fn manifest<S: Stored>(
    ns: &str,
    name: Option<&str>,
    mut value: Value,
) -> Result<weeble_crdt::Object, ApiError> {
    let kind = <S::Object as Resource>::KIND;
    let Some(object) = value.as_object_mut() else {
        return Err(ApiError::bad_request(format!("the body is not a {kind}")));
    };
    let given = object.entry("kind").or_insert_with(|| json!(kind));
    if given != kind {
        return Err(ApiError::bad_request(format!(
            "the body is a {}, and this path takes a {kind}",
            echo(&given.to_string())
        )));
    }
    object
        .entry("apiVersion")
        .or_insert_with(|| json!(<S::Object as Resource>::API_VERSION));
    let meta = object
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata: not an object"))?;
    if !S::NAMESPACED {
        // An object of no namespace ignores one given, as Kubernetes does.
        meta.remove("namespace");
    }
    let namespace = match S::NAMESPACED {
        true => meta.entry("namespace").or_insert_with(|| json!(ns)).clone(),
        false => json!(ns),
    };
    if namespace != ns {
        return Err(ApiError::bad_request(format!(
            "the namespace of the object ({}) does not match the namespace of the request ({ns})",
            echo(&namespace.to_string())
        )));
    }
    if let Some(name) = name {
        let given = meta.entry("name").or_insert_with(|| json!(name));
        if given != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name of the request ({name})",
                echo(&given.to_string())
            )));
        }
    }
    // The result is the whole object: a pause it leaves out is over (`rollout resume` sends
    // `paused: null`), where `weeble apply` of a file that does not say leaves it as it is.
    if S::KIND == Kind::Deployment
        && let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut)
    {
        spec.entry("paused").or_insert(json!(false));
    }
    let text = serde_json::to_string(&value).expect("a JSON value serializes");
    let mut parsed = parse_manifests(&text).map_err(invalid)?;
    match parsed.objects.len() {
        1 => Ok(parsed.objects.remove(0)),
        n => Err(ApiError::bad_request(format!(
            "expected one object, got {n}"
        ))),
    }
}

/// Writes `object` and answers with it as now served, and `code`.
async fn written<S: Stored, R>(
    api: &Api<R>,
    object: weeble_crdt::Object,
    code: StatusCode,
) -> Result<Response, ApiError> {
    let key = object.meta().key();
    api.agent.write(Op::Apply(vec![object])).await?;
    // The write is on disk; the view that shows it follows within a step of the node.
    let mut view = api.agent.view.clone();
    let deadline = tokio::time::Instant::now() + VIEW_WAIT;
    let served = loop {
        if let Some(served) = S::one(&api.agent, &key) {
            break served;
        }
        let changed = tokio::time::timeout_at(deadline, view.changed()).await;
        if !matches!(changed, Ok(Ok(()))) {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "{} {} was written, but this node's view does not show it yet (or a \
                     concurrent delete won): read it again",
                    S::KIND,
                    echo(&key.to_string())
                ),
            ));
        }
    };
    // The answer carries the version of what was written.
    api.versions.look_now::<S>(&api.agent).await;
    let served = api.versions.stamp(S::RESOURCE, served);
    Ok((code, Json(served)).into_response())
}
