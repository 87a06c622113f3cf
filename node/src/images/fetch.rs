//! The fetcher's side of a transfer: an image the node lacks, from the peers that hold it
//! (`weeble_core::images::holders`, in the order given). The tar comes a part at a time
//! into a file in the node's `images/` directory (one part in memory at once); the part's
//! size follows the link (doubled while a part comes within [`FAST`], halved past [`SLOW`]).
//! A holder that fails or refuses is followed by the next one, which goes on from where the
//! tar stopped if its tar is the same (size and sha256), or starts it over. A holder sends to
//! a few peers at once (`shelf::MAX_FETCHERS`) and tells the others it is busy: they ask the
//! next holder, and while all are busy, they ask again a moment later, when more nodes hold
//! the image: an image pushed to one node reaches N nodes in about log N transfer times. The whole tar
//! must hash to what its holder said, then pass [`tarball::check`] (it is the image asked
//! for, and names nothing) before the engine loads it; the image is then named as asked.

use super::tarball;
use crate::runtime::ContainerRuntime;
use crate::transport::Transport;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio::time::Instant;
use tracing::{debug, info, warn};
use weeble_core::images::Holder;
use weeble_core::reconcile::pulls::ImagePull;
use weeble_core::wire::{ImagePart, MAX_IMAGE_PART};

/// The first part asked for.
const FIRST_PART: u32 = 256 * 1024;
/// The smallest part asked for (a slow link's: a part must come within the request's 5 s).
const SMALLEST_PART: u32 = 64 * 1024;
/// A fetch that has not ended after this long fails (within `reconcile::pulls::PULL_LOST_MS`).
const FETCH_DEADLINE: Duration = Duration::from_secs(3600);
/// A part that came faster than this: the next is twice as large.
const FAST: Duration = Duration::from_millis(500);
/// A part that came slower than this: the next is half as large.
const SLOW: Duration = Duration::from_secs(2);
/// How long a holder may be writing the image out before it is given up.
const PREPARE_WAIT: Duration = Duration::from_secs(300);
/// How often a holder that is writing the image out is asked again.
const PREPARE_POLL: Duration = Duration::from_millis(500);
/// Requests to one holder that may fail in a row before the next holder is asked.
const MISSES: u32 = 3;
/// Rounds in which every holder failed (none was busy) before a fetch fails.
const ROUNDS: usize = 2;
/// How soon a round in which some holder was busy is tried again.
const BUSY_RETRY: Duration = Duration::from_secs(1);
/// How long a fetch waits for busy holders at most.
const BUSY_WAIT: Duration = Duration::from_secs(600);
/// The largest image tar fetched.
pub const MAX_IMAGE_BYTES: u64 = 64 * 1024 * 1024 * 1024;

/// Fetches the image of `pull` from `holders` into the engine, through a file in `dir`, and
/// names it; what went wrong with each holder, if none could serve it. An engine that holds
/// the id already (a pushed image, on the node that took the push) only names it.
pub async fn fetch<T: Transport, R: ContainerRuntime>(
    transport: &T,
    runtime: &R,
    dir: &Path,
    pull: &ImagePull,
    holders: &(dyn Fn() -> Vec<Holder> + Send + Sync),
) -> Result<(), String> {
    let image = pull.image.as_str();
    let reference = weeble_crdt::image::Reference::parse(image)?;
    if reference.digest.is_some() {
        return Err(
            "an image named by its digest comes from its registry only: the \
                    engine keeps no digest for an image it loads"
                .into(),
        );
    }
    let id = pull
        .pushed
        .clone()
        .or_else(|| holders().first().map(|h| h.id.clone()));
    let Some(id) = id else {
        return Err("no peer holds it".into());
    };
    if !weeble_crdt::image::is_id(&id) {
        return Err(format!("{id:?} is not an image id"));
    }
    let engine = |e: crate::runtime::RuntimeError| e.to_string();
    if runtime.image_id(&id).await.map_err(engine)?.is_none() {
        // A file of its own: two pulls may fetch one id at once (under two names).
        let hexid = id.strip_prefix("sha256:").unwrap_or(&id);
        let path = dir.join(format!("{hexid}-{:016x}.fetch", rand::random::<u64>()));
        let waits = pull.pushed.is_some();
        let loaded = download(transport, holders, waits, &id, &path).await;
        let loaded = match loaded {
            Ok(()) => super::load(runtime, &path, &id).await,
            Err(e) => Err(e),
        };
        let _ = tokio::fs::remove_file(&path).await;
        loaded?;
        info!(%image, %id, "image fetched from peers");
    }
    runtime.tag(&id, image).await.map_err(engine)
}

/// The tar so far: what its holders said it is, and what came of it.
struct Tar {
    size: u64,
    sha256: String,
    have: u64,
    hasher: Sha256,
}

/// Where a download stands.
struct Download<'a, T> {
    transport: &'a T,
    id: &'a str,
    file: tokio::fs::File,
    tar: Option<Tar>,
    /// The size of the next part asked for.
    part: u32,
    /// When the fetch fails if it has not ended ([`FETCH_DEADLINE`]).
    deadline: Instant,
}

/// What came of a part.
enum Took {
    More,
    Whole,
    StartedOver,
}

/// Why a holder did not send the rest of the tar.
enum Miss {
    /// It sends to enough peers now: ask again soon.
    Busy(String),
    Failed(String),
}

impl From<String> for Miss {
    fn from(why: String) -> Self {
        Miss::Failed(why)
    }
}

/// The tar of image `id` into `path`, whole and as its holder said, from the holders of `id`
/// that `holders` gives (asked again each round: the holders grow as an image spreads; a
/// fetch that `waits`, of a pushed image, waits for a first one as for a busy one).
/// While some holder is busy, the round is tried again after [`BUSY_RETRY`], for
/// [`BUSY_WAIT`] at most; [`ROUNDS`] rounds in which every holder failed end it.
async fn download<T: Transport>(
    transport: &T,
    holders: &(dyn Fn() -> Vec<Holder> + Send + Sync),
    waits: bool,
    id: &str,
    path: &Path,
) -> Result<(), String> {
    let file = tokio::fs::File::create(path)
        .await
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let mut download = Download {
        transport,
        id,
        file,
        tar: None,
        part: FIRST_PART,
        deadline: Instant::now() + FETCH_DEADLINE,
    };
    let (began, mut failed_rounds) = (Instant::now(), 0);
    let mut failures: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let round: Vec<Holder> = holders().into_iter().filter(|h| h.id == id).collect();
        // No holder yet (a pushed image whose first holder's report is on its way): as busy.
        let mut busy = waits && round.is_empty();
        for holder in &round {
            let peer = &holder.member.name;
            match download.rest_from(holder).await {
                Ok(()) => return Ok(()),
                Err(Miss::Busy(why)) => {
                    debug!(image = %id, %peer, %why, "a peer is busy");
                    busy = true;
                }
                Err(Miss::Failed(why)) => {
                    let have = download.tar.as_ref().map_or(0, |t| t.have);
                    warn!(image = %id, %peer, have, error = %why, "fetching from a peer failed");
                    failures.insert(peer.clone(), why);
                }
            }
        }
        failed_rounds += usize::from(!busy);
        let said = || {
            let said: Vec<String> = failures
                .iter()
                .map(|(p, why)| format!("{p}: {why}"))
                .collect();
            said.join("; ")
        };
        if round.is_empty() && !waits {
            return Err("no peer holds it".into());
        }
        if failed_rounds >= ROUNDS {
            return Err(format!("no peer could send it ({})", said()));
        }
        if began.elapsed() >= BUSY_WAIT {
            let wait = BUSY_WAIT.as_secs();
            return Err(format!(
                "every peer that holds it was busy for {wait} s ({})",
                said()
            ));
        }
        tokio::time::sleep(BUSY_RETRY).await;
    }
}

impl<T: Transport> Download<'_, T> {
    /// The rest of the tar from `holder`.
    async fn rest_from(&mut self, holder: &Holder) -> Result<(), Miss> {
        let (mut misses, asked_first, mut told) = (0, Instant::now(), false);
        let mut started_over = false;
        loop {
            if Instant::now() >= self.deadline {
                let limit = FETCH_DEADLINE.as_secs();
                return Err(Miss::Failed(format!("not done within {limit} s")));
            }
            let offset = self.tar.as_ref().map_or(0, |t| t.have);
            let asked = Instant::now();
            let answer = self
                .transport
                .image_part(
                    holder.member.clone(),
                    self.id.to_string(),
                    offset,
                    self.part,
                )
                .await;
            let part = match answer {
                Err(e) => {
                    misses += 1;
                    if misses >= MISSES {
                        return Err(Miss::Failed(e.to_string()));
                    }
                    self.part = (self.part / 2).max(SMALLEST_PART);
                    continue;
                }
                Ok(ImagePart::Preparing) if asked_first.elapsed() < PREPARE_WAIT => {
                    tokio::time::sleep(PREPARE_POLL).await;
                    continue;
                }
                Ok(ImagePart::Preparing) => {
                    let wait = PREPARE_WAIT.as_secs();
                    let why = format!("still writing the image out after {wait} s");
                    return Err(Miss::Failed(why));
                }
                Ok(ImagePart::Refused(why)) => return Err(Miss::Failed(why)),
                Ok(ImagePart::Busy(why)) => return Err(Miss::Busy(why)),
                Ok(ImagePart::Bytes {
                    size,
                    sha256,
                    bytes,
                }) => (size, sha256, bytes),
            };
            misses = 0;
            if !std::mem::replace(&mut told, true) {
                let peer = &holder.member.name;
                info!(image = %self.id, %peer, from = offset, "fetching an image from a peer");
            }
            self.pace(asked.elapsed());
            match self.take(part).await? {
                Took::Whole => return Ok(()),
                Took::More => {}
                // Once for a holder whose tar is not the one begun; a tar that changes again
                // while it is sent is not one to have.
                Took::StartedOver if started_over => {
                    return Err(Miss::Failed("its tar changed while it was sent".into()));
                }
                Took::StartedOver => started_over = true,
            }
        }
    }

    /// Drops what came of the tar so far.
    async fn start_over(&mut self) -> std::io::Result<()> {
        self.tar = None;
        self.file.set_len(0).await?;
        self.file.seek(std::io::SeekFrom::Start(0)).await?;
        Ok(())
    }

    /// The next part's size, after one that came in `took`.
    fn pace(&mut self, took: Duration) {
        if took < FAST {
            self.part = (self.part * 2).min(MAX_IMAGE_PART);
        } else if took > SLOW {
            self.part = (self.part / 2).max(SMALLEST_PART);
        }
    }

    /// Writes a part; whether the tar is whole (and hashes as its holder said), or was
    /// started over (the part was of another tar than the one begun).
    async fn take(
        &mut self,
        (size, sha256, bytes): (u64, String, Vec<u8>),
    ) -> Result<Took, String> {
        let io = |e: std::io::Error| format!("writing the image's tar: {e}");
        if self
            .tar
            .as_ref()
            .is_some_and(|t| (t.size, &t.sha256) != (size, &sha256))
        {
            info!(image = %self.id, "this peer's tar is not the same bytes: starting over");
            self.start_over().await.map_err(io)?;
            return Ok(Took::StartedOver);
        }
        if size > MAX_IMAGE_BYTES {
            return Err(format!("{size} bytes, over the limit of {MAX_IMAGE_BYTES}"));
        }
        let tar = self.tar.get_or_insert_with(|| Tar {
            size,
            sha256,
            have: 0,
            hasher: Sha256::new(),
        });
        if bytes.is_empty() || tar.have + bytes.len() as u64 > tar.size {
            return Err(format!(
                "sent {} bytes at {} of {}",
                bytes.len(),
                tar.have,
                tar.size
            ));
        }
        // From where the tar stands: a write that failed halfway moved the file's cursor.
        let at = std::io::SeekFrom::Start(tar.have);
        self.file.seek(at).await.map_err(io)?;
        self.file.write_all(&bytes).await.map_err(io)?;
        tar.hasher.update(&bytes);
        tar.have += bytes.len() as u64;
        if tar.have < tar.size {
            return Ok(Took::More);
        }
        self.file.sync_all().await.map_err(io)?;
        let got = tarball::hex(&std::mem::take(&mut tar.hasher).finalize());
        if got != tar.sha256 {
            let said = tar.sha256.clone();
            self.start_over().await.map_err(io)?;
            return Err(format!(
                "the tar's sha256 is {got}, not {said} as its holder said"
            ));
        }
        Ok(Took::Whole)
    }
}
