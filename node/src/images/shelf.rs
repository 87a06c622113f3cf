//! The holder's side of a transfer: image tars written out (by the engine's `save`) into the
//! node's `images/` directory for peers that fetch them, served a part at a time. A tar is
//! written once for every fetcher, kept while it is asked for, and deleted
//! [`TAR_KEPT`] after its last part was served; [`MAX_TARS`] are kept at most, one is written
//! at a time, and [`MAX_SERVING`] parts are read at once, for [`MAX_FETCHERS`] peers at once
//! (past them, a fetcher is told the node is busy: it asks another holder). What the node
//! serves in all may be paced (`--image-serve-rate`).

use super::tarball::hex;
use crate::runtime::ContainerRuntime;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::{info, warn};
use weeble_core::wire::{ImagePart, MAX_IMAGE_PART};

/// Tars kept at once; past it, the one asked for least recently is deleted.
pub const MAX_TARS: usize = 4;
/// A tar not asked for this long is deleted.
pub const TAR_KEPT: Duration = Duration::from_secs(600);
/// A save that failed is told to fetchers this long before it is tried again.
const FAILED_KEPT: Duration = Duration::from_secs(30);
/// Parts read and sent at once.
pub const MAX_SERVING: usize = 4;
/// Peers a node sends images to at once; the others are told it is busy, and ask a node
/// that got the image meanwhile: what makes an image spread as a tree.
pub const MAX_FETCHERS: usize = 2;
/// A peer that has asked for nothing this long is no longer sending to.
const FETCHER_GONE: Duration = Duration::from_secs(5);

/// The tars of one node (see the [module](self)); clones share them.
#[derive(Clone)]
pub struct Shelf<R> {
    runtime: R,
    dir: PathBuf,
    tars: Arc<Mutex<BTreeMap<String, Tar>>>,
    serving: Arc<Semaphore>,
    fetchers: Arc<Fetchers>,
    pace: Option<Arc<Pace>>,
}

enum Tar {
    Saving,
    Ready {
        path: PathBuf,
        size: u64,
        sha256: String,
        used: Instant,
    },
    Failed {
        why: String,
        at: Instant,
    },
}

impl<R: ContainerRuntime> Shelf<R> {
    /// A shelf in `dir`, emptied of what an earlier run left; `rate`: the bytes a second it
    /// serves at most, if it is paced.
    pub fn new(runtime: R, dir: PathBuf, rate: Option<u64>) -> std::io::Result<Self> {
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(Shelf {
            runtime,
            dir,
            tars: Arc::default(),
            serving: Arc::new(Semaphore::new(MAX_SERVING)),
            fetchers: Arc::default(),
            pace: rate.map(|rate| Arc::new(Pace::new(rate))),
        })
    }

    /// Where fetched tars are written while they arrive.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The answer to peer `from` that asks for `len` bytes from `offset` of image `id`,
    /// which this node holds: they, `Preparing` while the tar is written, or `Busy` while it
    /// sends to [`MAX_FETCHERS`] other peers.
    pub async fn part(&self, from: &str, id: &str, offset: u64, len: u32) -> ImagePart {
        if let Err(busy) = self.fetchers.admit(from) {
            return busy;
        }
        let (path, size, sha256) = match self.ready(id) {
            Ok(ready) => ready,
            Err(answer) => return answer,
        };
        let Ok(_permit) = self.serving.try_acquire() else {
            return ImagePart::Busy(format!("serving {MAX_SERVING} parts already"));
        };
        let len = u64::from(len.min(MAX_IMAGE_PART)).min(size.saturating_sub(offset));
        let read = tokio::task::spawn_blocking(move || read_at(&path, offset, len)).await;
        let read = read.map_err(std::io::Error::other).and_then(|read| read);
        let bytes = match read {
            Ok(bytes) => bytes,
            Err(e) => return ImagePart::Refused(format!("reading the image's tar: {e}")),
        };
        if let Some(pace) = &self.pace {
            pace.wait(bytes.len() as u64).await;
        }
        if offset + bytes.len() as u64 >= size {
            self.fetchers.done(from);
            info!(peer = %from, image = %id, size, "image sent to a peer");
        }
        ImagePart::Bytes {
            size,
            sha256,
            bytes,
        }
    }

    /// The tar of `id` if it is written (marked used now), or the answer to give meanwhile:
    /// a save begins if none runs.
    fn ready(&self, id: &str) -> Result<(PathBuf, u64, String), ImagePart> {
        let now = Instant::now();
        let mut tars = self.tars.lock().expect("never poisoned");
        sweep(&mut tars, now);
        match tars.get_mut(id) {
            Some(Tar::Ready {
                path,
                size,
                sha256,
                used,
            }) => {
                *used = now;
                return Ok((path.clone(), *size, sha256.clone()));
            }
            Some(Tar::Saving) => return Err(ImagePart::Preparing),
            Some(Tar::Failed { why, .. }) => return Err(ImagePart::Refused(why.clone())),
            None => {}
        }
        if tars.values().any(|t| matches!(t, Tar::Saving)) {
            return Err(ImagePart::Busy("writing out another image".into()));
        }
        if tars.len() >= MAX_TARS {
            let oldest = tars.iter().filter_map(|(id, t)| match t {
                Tar::Ready { used, .. } => Some((*used, id.clone())),
                _ => None,
            });
            if let Some((_, oldest)) = oldest.min() {
                remove(&mut tars, &oldest);
            } else {
                return Err(ImagePart::Busy(format!("{MAX_TARS} images kept already")));
            }
        }
        tars.insert(id.to_string(), Tar::Saving);
        let (shelf, id) = (self.clone(), id.to_string());
        let tars = self.tars.clone();
        let save = tokio::spawn(shelf.save(id.clone()));
        // A save that panicked says so, rather than leave the tar Saving for good.
        tokio::spawn(async move {
            if let Err(e) = save.await {
                let why = format!("writing out image {id} failed: {e}");
                let at = Instant::now();
                let mut tars = tars.lock().expect("never poisoned");
                tars.insert(id, Tar::Failed { why, at });
            }
        });
        Err(ImagePart::Preparing)
    }

    /// Writes image `id`'s tar, and notes it ready (or why it failed).
    async fn save(self, id: String) {
        let started = Instant::now();
        let hexid = id.strip_prefix("sha256:").unwrap_or(&id);
        let path = self.dir.join(format!("{hexid}.tar"));
        let outcome = self.write(&id, &path).await;
        let mut tars = self.tars.lock().expect("never poisoned");
        let tar = match outcome {
            Ok((size, sha256)) => {
                let secs = started.elapsed().as_secs_f64();
                info!(image = %id, size, secs, "image written out for peers");
                Tar::Ready {
                    path,
                    size,
                    sha256,
                    used: Instant::now(),
                }
            }
            Err(why) => {
                warn!(image = %id, error = %why, "cannot write out an image for peers");
                Tar::Failed {
                    why,
                    at: Instant::now(),
                }
            }
        };
        tars.insert(id, tar);
    }

    /// The engine's tar of `id` into `path` (by way of a `.part` file); its size and sha256.
    async fn write(&self, id: &str, path: &Path) -> Result<(u64, String), String> {
        let part = path.with_extension("part");
        let written = async {
            let mut file = tokio::fs::File::create(&part).await?;
            let (mut size, mut hasher) = (0u64, Sha256::new());
            let mut chunks = self.runtime.save(id);
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(std::io::Error::other)?;
                hasher.update(&chunk);
                size += chunk.len() as u64;
                file.write_all(&chunk).await?;
            }
            file.sync_all().await?;
            tokio::fs::rename(&part, path).await?;
            Ok::<_, std::io::Error>((size, hex(&hasher.finalize())))
        };
        let outcome = written.await;
        if outcome.is_err() {
            let _ = tokio::fs::remove_file(&part).await;
        }
        outcome.map_err(|e| format!("writing out image {id}: {e}"))
    }
}

/// Deletes the tars not asked for in [`TAR_KEPT`], and forgets failures older than
/// [`FAILED_KEPT`].
fn sweep(tars: &mut BTreeMap<String, Tar>, now: Instant) {
    let stale: Vec<String> = tars
        .iter()
        .filter(|(_, t)| match t {
            Tar::Ready { used, .. } => now.duration_since(*used) >= TAR_KEPT,
            Tar::Failed { at, .. } => now.duration_since(*at) >= FAILED_KEPT,
            Tar::Saving => false,
        })
        .map(|(id, _)| id.clone())
        .collect();
    for id in stale {
        remove(tars, &id);
    }
}

/// Forgets the tar of `id`, and deletes its file (a part being read from it is read still).
fn remove(tars: &mut BTreeMap<String, Tar>, id: &str) {
    if let Some(Tar::Ready { path, .. }) = tars.remove(id)
        && let Err(e) = std::fs::remove_file(&path)
    {
        warn!(file = %path.display(), error = %e, "cannot delete an image's tar");
    }
}

/// `len` bytes of the file at `path` from `offset`.
fn read_at(path: &Path, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The peers this node sends images to: each until it has the last part of its tar, or has
/// asked for nothing for [`FETCHER_GONE`].
#[derive(Default)]
struct Fetchers(Mutex<BTreeMap<String, Instant>>);

impl Fetchers {
    /// Notes that `peer` asks now; `Busy` if it is not one of the [`MAX_FETCHERS`] served.
    fn admit(&self, peer: &str) -> Result<(), ImagePart> {
        let now = Instant::now();
        let mut fetchers = self.0.lock().expect("never poisoned");
        fetchers.retain(|_, at| now.duration_since(*at) < FETCHER_GONE);
        if !fetchers.contains_key(peer) && fetchers.len() >= MAX_FETCHERS {
            return Err(ImagePart::Busy(format!(
                "sending images to {MAX_FETCHERS} peers already"
            )));
        }
        fetchers.insert(peer.to_string(), now);
        Ok(())
    }

    /// `peer` has all it asked for.
    fn done(&self, peer: &str) {
        self.0.lock().expect("never poisoned").remove(peer);
    }
}

/// What a node serves, paced to a rate: each part is answered once its bytes would have
/// gone at that rate after the ones before it.
struct Pace {
    bytes_per_s: u64,
    free_at: Mutex<Instant>,
}

impl Pace {
    fn new(bytes_per_s: u64) -> Self {
        Pace {
            bytes_per_s: bytes_per_s.max(1),
            free_at: Mutex::new(Instant::now()),
        }
    }

    async fn wait(&self, bytes: u64) {
        let done = {
            let mut free_at = self.free_at.lock().expect("never poisoned");
            let start = (*free_at).max(Instant::now());
            *free_at = start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_s as f64);
            *free_at
        };
        tokio::time::sleep_until(done).await;
    }
}
