//! `POST /apis/weeble.io/v1/images?name=NAME&id=ID[&nodes=A,B]`: an image pushed into the
//! cluster through this node (`weeble image push`), its tar (`docker save`) as the body.
//! The tar is written to the node's `images/` directory (bounded by
//! [`fetch::MAX_IMAGE_BYTES`], two pushes at once, removed however the request ends),
//! checked to be image `ID` and to name nothing, and loaded into this node's engine; then the
//! desired state records the push (`Op::Push`) and the image is named `NAME` (`NAME:latest`
//! for a name with no tag): every node it is for fetches it from the nodes that hold it.
//! Bad input is a 4xx that changes nothing: the engine loads nothing, the document is not
//! written.

use super::{Api, ApiError};
use crate::images::{self, fetch};
use crate::runtime::ContainerRuntime;
use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::Path;
use tokio::io::AsyncWriteExt;
use weeble_core::document::Op;
use weeble_crdt::doc::images::{MAX_PUSH_NODES, MAX_PUSHED_IMAGES};
use weeble_crdt::echo::echo;
use weeble_crdt::{Outcome, PushedImage};

#[derive(Deserialize)]
pub(super) struct PushQuery {
    name: String,
    id: String,
    /// The nodes it is for, separated by commas; none: every node.
    #[serde(default)]
    nodes: Option<String>,
}

/// Pushes taken in at once; past them, 429.
const MAX_PUSHES: usize = 2;
static PUSHES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_PUSHES);

pub(super) async fn push<R: ContainerRuntime>(
    State(api): State<Api<R>>,
    Query(query): Query<PushQuery>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let nodes = check(&api, &query)?;
    let Ok(_taking) = PUSHES.try_acquire() else {
        let why = format!("the node takes {MAX_PUSHES} pushes at once; try again");
        return Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, why));
    };
    // `web` is `web:latest`, as the engine names it and pods find it.
    let name = weeble_crdt::image::Reference::tagged(&query.name);
    let id = query.id;
    let dir = api.agent.config.data_dir.join("images");
    let tar = Removed(dir.join(format!("push-{:016x}.tar", rand::random::<u64>())));
    let bytes = receive(body, &tar.0).await?;
    images::load(&api.runtime, &tar.0, &id)
        .await
        .map_err(|why| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, why))?;
    drop(tar);
    let seed = api.agent.config.name.clone();
    let pushed = PushedImage {
        id: id.clone(),
        nodes: nodes.clone(),
        seed: seed.clone(),
    };
    let outcomes = api.agent.write(Op::Push(name.clone(), pushed)).await?;
    // Named now; if the engine fails to, this node's next pass names it (it holds the id).
    if let Err(e) = api.runtime.tag(&id, &name).await {
        tracing::warn!(image = %name, %id, error = %e, "cannot name a pushed image yet");
    }
    let outcome = outcomes.first().copied().unwrap_or(Outcome::Unchanged);
    tracing::info!(image = %name, %id, bytes, ?nodes, "image pushed into the cluster");
    let code = match outcome {
        Outcome::Created => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    let answer = json!({
        "name": name,
        "id": id,
        "nodes": nodes,
        "node": seed,
        "bytes": bytes,
        "outcome": outcome.to_string(),
    });
    Ok((code, Json(answer)))
}

/// The nodes the push is for, once its query is found sound; a 400 or 422 saying what is
/// wrong where it is not.
fn check<R>(api: &Api<R>, query: &PushQuery) -> Result<Vec<String>, ApiError> {
    let bad = |why: String| ApiError::bad_request(why);
    let reference = weeble_crdt::image::Reference::parse(&query.name)
        .map_err(|why| bad(format!("name {}: {why}", echo(&query.name))))?;
    if reference.digest.is_some() {
        return Err(bad(format!(
            "name {}: give a tag, not a digest (the engine keeps no digest for an image it loads)",
            echo(&query.name)
        )));
    }
    if !weeble_crdt::image::is_id(&query.id) {
        return Err(bad(format!(
            "id {}: not an image id (sha256: and 64 hexadecimal digits)",
            echo(&query.id)
        )));
    }
    let nodes: Vec<String> = match &query.nodes {
        None => Vec::new(),
        Some(list) => list.split(',').map(|n| n.trim().to_string()).collect(),
    };
    if nodes.iter().any(String::is_empty) {
        return Err(bad("nodes: an empty node name".into()));
    }
    if nodes.len() > MAX_PUSH_NODES {
        return Err(bad(format!("nodes: more than {MAX_PUSH_NODES}")));
    }
    let snapshot = api.agent.snapshot.borrow().clone();
    let name = weeble_crdt::image::Reference::tagged(&query.name);
    if snapshot.images.len() >= MAX_PUSHED_IMAGES && !snapshot.images.contains_key(&name) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{MAX_PUSHED_IMAGES} images are pushed already: push under one of their names"),
        ));
    }
    Ok(nodes)
}

/// A file removed when this is dropped: a push whose client goes away mid-way (its handler
/// dropped) leaves no tar behind.
struct Removed(std::path::PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Writes the request's body to `path`; its size. Past [`fetch::MAX_IMAGE_BYTES`], 413.
async fn receive(body: Body, path: &Path) -> Result<u64, ApiError> {
    let failed = |e: std::io::Error| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("writing the image's tar: {e}"),
        )
    };
    let mut file = tokio::fs::File::create(path).await.map_err(failed)?;
    let mut stream = body.into_data_stream();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        size += chunk.len() as u64;
        if size > fetch::MAX_IMAGE_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("an image tar over {} bytes", fetch::MAX_IMAGE_BYTES),
            ));
        }
        file.write_all(&chunk).await.map_err(failed)?;
    }
    file.sync_all().await.map_err(failed)?;
    Ok(size)
}
