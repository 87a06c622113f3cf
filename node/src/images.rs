//! Images passed between peers, over the cluster's own connections: a pull tries an image's
//! registry and the peers that hold it, in an order [`pull`] gives; a node fetches an image
//! from peers that hold it ([`fetch`]), and serves the images its report lists to peers that
//! ask ([`shelf`]). What is sent is the
//! engine's own tar of the image (`docker save`), checked before it is loaded
//! ([`tarball`]). Both sides work in the node's `images/` directory.

pub mod fetch;
pub mod pull;
pub mod shelf;
pub mod tarball;

use crate::runtime::{ContainerRuntime, ImageStream};
use std::path::{Path, PathBuf};
use tokio::io::AsyncReadExt;

/// The bytes read at once from a tar as it is loaded.
const LOAD_CHUNK: usize = 1024 * 1024;

/// Checks the tar at `path` (a fetched or pushed image) and has the engine load it; the
/// engine must then hold `id`.
pub async fn load<R: ContainerRuntime>(runtime: &R, path: &Path, id: &str) -> Result<(), String> {
    let (file, wanted) = (path.to_path_buf(), id.to_string());
    let checked = tokio::task::spawn_blocking(move || {
        let tar = std::fs::File::open(&file).map_err(|e| e.to_string())?;
        tarball::check(std::io::BufReader::new(tar), &wanted)
    });
    checked
        .await
        .map_err(|e| e.to_string())?
        .map_err(|why| format!("the image's tar is refused: {why}"))?;
    runtime
        .load(file_stream(path.to_path_buf()))
        .await
        .map_err(|e| e.to_string())?;
    match runtime.image_id(id).await.map_err(|e| e.to_string())? {
        Some(loaded) if loaded == id => Ok(()),
        _ => Err(format!("the engine loaded the tar but holds no image {id}")),
    }
}

/// The file at `path`, [`LOAD_CHUNK`] bytes at a time.
fn file_stream(path: PathBuf) -> ImageStream {
    use futures::StreamExt;
    let open = async move { tokio::fs::File::open(path).await };
    futures::stream::once(open)
        .flat_map(|file| {
            futures::stream::unfold(Some(file), |file| async move {
                let mut file = match file? {
                    Ok(file) => file,
                    Err(e) => return Some((Err(e), None)),
                };
                let mut chunk = vec![0; LOAD_CHUNK];
                match file.read(&mut chunk).await {
                    Ok(0) => None,
                    Ok(n) => {
                        chunk.truncate(n);
                        Some((Ok(bytes::Bytes::from(chunk)), Some(Ok(file))))
                    }
                    Err(e) => Some((Err(e), None)),
                }
            })
        })
        .map(|chunk| chunk.map_err(|e| crate::runtime::RuntimeError::Failed(e.to_string())))
        .boxed()
}

#[cfg(test)]
mod tests;
