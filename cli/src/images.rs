//! `weeble image push IMAGE [--nodes A,B]`: an image from the local engine (`DOCKER_HOST`, or
//! the default socket) into the cluster through the node of `--server`, as a tar (`docker
//! save`) that streams from the engine to the node as the engine writes it. The node loads
//! it and records the push in the desired state; every node it is for then fetches it from
//! the nodes that hold it (see `weeble_node::images`).

use crate::client::{Client, query_encode};
use anyhow::{Context, anyhow};
use futures::StreamExt;
use serde_json::Value;
use std::io::Read;
use std::time::Duration;
use tokio::sync::mpsc;
use weeble_node::runtime::ContainerRuntime;
use weeble_node::runtime::docker::Docker;

/// The longest a push may take, from the first byte to the node's answer.
const PUSH_TIMEOUT: Duration = Duration::from_secs(3600);
/// Chunks of the tar on their way from the engine to the node at once.
const CHUNKS_IN_FLIGHT: usize = 8;

pub fn push(client: &Client, image: &str, nodes: &[String]) -> anyhow::Result<()> {
    let reference = weeble_crdt::image::Reference::parse(image)
        .map_err(|why| anyhow!("image {image}: {why}"))?;
    if reference.digest.is_some() {
        return Err(anyhow!(
            "image {image}: give a tag, not a digest (an engine keeps no digest for an image it \
             loads)"
        ));
    }
    let runtime = crate::agent::runtime()?;
    let (docker, id) = runtime.block_on(async {
        let docker = Docker::connect().await?;
        let id = docker.image_id(image).await?;
        anyhow::Ok((docker, id))
    })?;
    let id = id.ok_or_else(|| {
        anyhow!("no image {image} in the local engine (`docker images` lists what it has)")
    })?;
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let mut chunks = docker.save(&id);
    runtime.spawn(async move {
        while let Some(chunk) = chunks.next().await {
            let failed = chunk.is_err();
            if tx.send(chunk).await.is_err() || failed {
                return;
            }
        }
    });
    let mut path = format!(
        "/apis/weeble.io/v1/images?name={}&id={}",
        query_encode(image),
        query_encode(&id)
    );
    if !nodes.is_empty() {
        path.push_str(&format!("&nodes={}", query_encode(&nodes.join(","))));
    }
    let tar = Chunks {
        rx,
        chunk: bytes::Bytes::new(),
    };
    let answer: Value = client
        .upload(&path, tar, PUSH_TIMEOUT)
        .with_context(|| format!("pushing {image}"))?;
    let to = match nodes {
        [] => "every node".to_string(),
        nodes => nodes.join(", "),
    };
    println!(
        "image/{image} pushed ({id}, {} bytes) to {}; it spreads to {to}",
        answer["bytes"],
        answer["node"].as_str().unwrap_or("the node")
    );
    Ok(())
}

/// The tar as the engine writes it, read on this thread.
struct Chunks {
    rx: mpsc::Receiver<Result<bytes::Bytes, weeble_node::runtime::RuntimeError>>,
    chunk: bytes::Bytes,
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => return Err(std::io::Error::other(e.to_string())),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}
