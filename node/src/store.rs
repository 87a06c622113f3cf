//! The state store actor: owns the desired-state document and its file, answers writes only
//! once they are on disk (fsync), and speaks automerge sync with each peer.
//!
//! The file (format in [`journal`]) is a full save followed by incremental saves appended
//! after every change, each in a checksummed frame fsynced before the write is acknowledged.
//! On start the file is loaded whole, dropping a torn last frame (a crash or a full disk
//! during an append); when it has grown well past its compacted size it is rewritten (to a
//! temporary file, fsynced, then renamed over the old one).
//!
//! A change that cannot be persisted leaves no trace: the document is rolled back to what the
//! file holds, the file is cut back to its last whole frame, and the caller hears why. The
//! store then reports that it cannot persist (`persist_error`) until a write, or the rewrite it
//! tries every few seconds, succeeds again: the agent takes the node out of placement
//! meanwhile.
//!
//! The file is reached through [`disk::Disk`]: a real file, or an in-memory twin.

pub mod disk;
use weeble_core::document::journal;

use disk::{Disk, FileDisk};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};
use weeble_crdt::{
    ActorId, ChangeHash, DesiredState, Kind, Object, ObjectKey, Outcome, PeerSync, Snapshot,
    StateError,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("writing the state file {path}: {source}")]
    Disk {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the state file {path} ends with a torn frame that cannot be cut off ({source}); \
         free space or fix the file's permissions and start again"
    )]
    Torn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the state store has stopped")]
    Stopped,
}

/// How often a store that cannot persist tries to rewrite its file, to learn that it can again.
const RETRY_PERSIST: Duration = Duration::from_secs(5);

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Command {
    Apply(Vec<Object>, Reply<Vec<Outcome>>),
    Scale(ObjectKey, u32, Reply<Outcome>),
    Delete(Kind, ObjectKey, Reply<Outcome>),
    /// The next sync message for a peer, if there is anything to say.
    SyncOut(String, oneshot::Sender<Option<Vec<u8>>>),
    /// A peer's sync message; the answer is our reply to it, if any.
    SyncIn(String, Vec<u8>, Reply<Option<Vec<u8>>>),
    /// The link to a peer failed: start its sync over.
    Reset(String),
}

/// Cheap handle to the store actor.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Command>,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    failing: watch::Receiver<Option<String>>,
}

impl Store {
    /// Opens (or creates) the state file in `data_dir` and starts the actor. A torn last
    /// frame is dropped with a warning. If a framed file cannot be rewritten at start (a full
    /// disk), the store starts anyway on what it could read, reporting that it cannot persist;
    /// a file that is missing or from before frames must be written, and the start fails.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Store::open_on(FileDisk::new(data_dir.join("state.automerge")))
    }

    /// Opens the state file on `disk` (see [`Store::open`]).
    pub fn open_on(mut disk: impl Disk) -> Result<Self, StoreError> {
        let path = disk.path().to_path_buf();
        let failed = |source| StoreError::Disk {
            path: path.clone(),
            source,
        };
        let bytes = disk.read().map_err(failed)?;
        let (mut state, good_len) = match bytes.as_deref().map(journal::read) {
            None => (DesiredState::new(ActorId::random()), None),
            Some(journal::Contents::Unframed(bytes)) => {
                (DesiredState::load(bytes, ActorId::random())?, None)
            }
            Some(journal::Contents::Framed {
                payloads,
                good_len,
                torn,
            }) => {
                if torn > 0 {
                    warn!(file = %path.display(), offset = good_len, bytes = torn,
                        "the state file ends with a torn frame (a crash or a full disk during a write that was never acknowledged): dropping it");
                }
                (
                    DesiredState::load(&payloads.concat(), ActorId::random())?,
                    Some(good_len),
                )
            }
        };
        let compacted = journal::file(&state.save());
        let (len, failing) = match disk.replace(&compacted) {
            Ok(()) => (compacted.len() as u64, None),
            Err(e) => {
                // Carry on with the file as it is, its torn tail (if any) cut off; a file
                // from before frames existed cannot take framed appends.
                let Some(good_len) = good_len else {
                    return Err(failed(e));
                };
                disk.cut(good_len as u64)
                    .map_err(|source| StoreError::Torn {
                        path: path.clone(),
                        source,
                    })?;
                warn!(file = %path.display(), error = %e, "cannot rewrite the state file: this node cannot persist changes and takes no pods until it can");
                (good_len as u64, Some(failed(e).to_string()))
            }
        };
        let snapshot = Arc::new(state.snapshot());
        info!(objects = snapshot.deployments.len() + snapshot.services.len(), file = %path.display(), "desired state loaded");
        let (snapshot_tx, snapshot_rx) = watch::channel(snapshot);
        let (failing_tx, failing_rx) = watch::channel(failing);
        let (tx, rx) = mpsc::channel(256);
        let actor = StoreActor {
            state,
            disk,
            len,
            rewrite: false,
            compacted_len: compacted.len(),
            appended: 0,
            peers: BTreeMap::new(),
            snapshot: snapshot_tx,
            failing: failing_tx,
        };
        tokio::spawn(actor.run(rx));
        Ok(Store {
            tx,
            snapshot: snapshot_rx,
            failing: failing_rx,
        })
    }

    /// Why this node cannot persist changes now, if it cannot.
    pub fn persist_error(&self) -> watch::Receiver<Option<String>> {
        self.failing.clone()
    }

    /// The current desired state; `changed()` on the receiver wakes on every change.
    pub fn watch(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshot.clone()
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Applies objects in order; returns once the change is on disk.
    pub async fn apply(&self, objects: Vec<Object>) -> Result<Vec<Outcome>, StoreError> {
        self.ask(|r| Command::Apply(objects, r)).await
    }

    pub async fn scale(&self, key: ObjectKey, replicas: u32) -> Result<Outcome, StoreError> {
        self.ask(|r| Command::Scale(key, replicas, r)).await
    }

    pub async fn delete(&self, kind: Kind, key: ObjectKey) -> Result<Outcome, StoreError> {
        self.ask(|r| Command::Delete(kind, key, r)).await
    }

    pub async fn sync_out(&self, peer: &str) -> Option<Vec<u8>> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::SyncOut(peer.to_string(), reply))
            .await
            .ok()?;
        rx.await.ok().flatten()
    }

    pub async fn sync_in(
        &self,
        peer: &str,
        message: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.ask(|r| Command::SyncIn(peer.to_string(), message, r))
            .await
    }

    pub async fn reset_peer(&self, peer: &str) {
        let _ = self.tx.send(Command::Reset(peer.to_string())).await;
    }
}

struct StoreActor<D> {
    state: DesiredState,
    disk: D,
    /// The file's length up to its last whole frame.
    len: u64,
    /// A failed append could not be cut off: the next change rewrites the whole file.
    rewrite: bool,
    compacted_len: usize,
    appended: usize,
    peers: BTreeMap<String, PeerSync>,
    snapshot: watch::Sender<Arc<Snapshot>>,
    /// Why the last change could not be persisted; `None` while changes persist.
    failing: watch::Sender<Option<String>>,
}

impl<D: Disk> StoreActor<D> {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut retry = tokio::time::interval(RETRY_PERSIST);
        loop {
            let failing = self.failing.borrow().is_some();
            let command = tokio::select! {
                command = rx.recv() => match command {
                    Some(command) => command,
                    None => return,
                },
                _ = retry.tick(), if failing => {
                    self.retry_persist();
                    continue;
                }
            };
            self.handle(command);
        }
    }

    fn handle(&mut self, command: Command) {
        let before = self.state.heads();
        match command {
            Command::Apply(objects, reply) => {
                let result = objects
                    .iter()
                    .map(|o| self.state.apply(o))
                    .collect::<Result<Vec<_>, _>>();
                self.answer_write(reply, result, &before);
            }
            Command::Scale(key, n, reply) => {
                let result = self.state.scale(&key, n);
                self.answer_write(reply, result, &before);
            }
            Command::Delete(kind, key, reply) => {
                let result = self.state.delete(kind, &key);
                self.answer_write(reply, result, &before);
            }
            Command::SyncOut(peer, reply) => {
                let sync = self.peers.entry(peer).or_default();
                let _ = reply.send(self.state.sync_message(sync));
            }
            Command::SyncIn(peer, message, reply) => {
                let sync = self.peers.entry(peer.clone()).or_default();
                let received = self.state.receive_sync(sync, &message);
                if let Err(e) = &received {
                    warn!(%peer, error = %e, "bad sync message; resetting sync with the peer");
                    self.peers.remove(&peer);
                }
                let result = self.persisted(received, &before).map(|_| {
                    let sync = self.peers.entry(peer).or_default();
                    self.state.sync_message(sync)
                });
                let _ = reply.send(result);
                // After the answer, which the peer waits for: the snapshot is for this node.
                self.publish(&before);
            }
            Command::Reset(peer) => {
                self.peers.remove(&peer);
            }
        }
    }

    /// Answers a write once it is on disk and in the published snapshot, so that what the
    /// writer reads next (the API's reads, after its acknowledgement) shows it.
    fn answer_write<T>(
        &mut self,
        reply: Reply<T>,
        result: Result<T, StateError>,
        before: &[ChangeHash],
    ) {
        let answer = self.persisted(result, before);
        self.publish(before);
        let _ = reply.send(answer);
    }

    /// Publishes the new snapshot if the document changed since `before`: only the objects
    /// that changed are read again.
    fn publish(&mut self, before: &[ChangeHash]) {
        if self.state.heads() != before {
            let mut next = Snapshot::clone(&self.snapshot.borrow());
            self.state.refresh(&mut next);
            self.snapshot.send_replace(Arc::new(next));
        }
    }

    /// Puts whatever changed on disk before the caller's answer goes out. If the change
    /// failed, or cannot be persisted, the document goes back to `before` (what the file
    /// holds): a refused write leaves no trace.
    fn persisted<T>(
        &mut self,
        result: Result<T, StateError>,
        before: &[ChangeHash],
    ) -> Result<T, StoreError> {
        let mut wrote = false;
        let saved = result.map_err(StoreError::from).and_then(|value| {
            let chunk = self.state.save_incremental();
            if !chunk.is_empty() {
                self.write(&chunk).map_err(|source| StoreError::Disk {
                    path: self.disk.path().to_path_buf(),
                    source,
                })?;
                wrote = true;
            }
            Ok(value)
        });
        match &saved {
            // Only a write that reached the disk says the disk takes writes again.
            Ok(_) if wrote => {
                self.failing
                    .send_if_modified(|failing| failing.take().is_some());
            }
            Ok(_) => {}
            Err(e) => {
                if let StoreError::Disk { .. } = e {
                    warn!(error = %e, "a change could not be persisted: refused, and undone");
                    self.failing.send_replace(Some(e.to_string()));
                }
                self.undo(before);
            }
        }
        saved
    }

    /// Forgets whatever changed since `before`, and every peer's sync progress (which may
    /// count on the forgotten changes): each peer is asked to send again what it sent.
    fn undo(&mut self, before: &[ChangeHash]) {
        if self.state.heads() == before {
            return;
        }
        for sync in self.peers.values_mut() {
            sync.ask_for_resend();
        }
        if let Err(e) = self.state.rollback(before, ActorId::random()) {
            // The heads are the document's own: forking at them cannot fail.
            warn!(error = %e, "rolling back a change that was not persisted failed");
        }
    }

    /// Appends `chunk` (fsynced), or rewrites the whole file if an earlier append left a
    /// torn frame behind; now and then the file is compacted.
    fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        if self.rewrite {
            return self.compact();
        }
        let frame = journal::frame(chunk);
        if let Err(e) = self.disk.append(&frame) {
            // Cut the file back to its last whole frame, so that the next append follows it.
            if let Err(cut) = self.disk.cut(self.len) {
                warn!(error = %cut, "cannot cut a failed append off the state file: the next change rewrites it");
                self.rewrite = true;
            }
            return Err(e);
        }
        self.len += frame.len() as u64;
        self.appended += chunk.len();
        if self.appended > 4 * self.compacted_len.max(64 * 1024)
            && let Err(e) = self.compact()
        {
            // The change is on disk already; the file is merely longer than it need be.
            warn!(error = %e, "cannot compact the state file; appending on");
        }
        Ok(())
    }

    /// Rewrites the file as one full save.
    fn compact(&mut self) -> std::io::Result<()> {
        let full = journal::file(&self.state.save());
        self.disk.replace(&full)?;
        self.len = full.len() as u64;
        self.rewrite = false;
        self.compacted_len = full.len();
        self.appended = 0;
        Ok(())
    }

    /// While changes cannot be persisted: tries to rewrite the file, and reports success.
    fn retry_persist(&mut self) {
        match self.compact() {
            Ok(()) => {
                info!(file = %self.disk.path().display(), "the state file can be written again");
                self.failing.send_replace(None);
            }
            Err(e) => {
                let error = StoreError::Disk {
                    path: self.disk.path().to_path_buf(),
                    source: e,
                };
                self.failing.send_replace(Some(error.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::disk::MemoryDisk;
    use super::*;
    use std::fs;

    fn deployment(name: &str) -> Object {
        let text = format!(
            "kind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: 1\n  template:\n    \
             metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers:\n      - \
             {{name: c, image: img}}\n"
        );
        weeble_crdt::parse_manifests(&text)
            .expect("valid")
            .objects
            .remove(0)
    }

    fn apply<D: Disk>(actor: &mut StoreActor<D>, name: &str) -> Result<Vec<Outcome>, StoreError> {
        let (reply, mut rx) = oneshot::channel();
        actor.handle(Command::Apply(vec![deployment(name)], reply));
        rx.try_recv().expect("answered at once")
    }

    fn names(snapshot: &Snapshot) -> Vec<String> {
        snapshot
            .deployments
            .keys()
            .map(|k| k.name.clone())
            .collect()
    }

    /// A store on `disk`, holding an empty document.
    fn actor<D: Disk>(mut disk: D) -> StoreActor<D> {
        let mut state = DesiredState::new(ActorId::random());
        let compacted = journal::file(&state.save());
        disk.replace(&compacted).unwrap();
        StoreActor {
            snapshot: watch::channel(Arc::new(state.snapshot())).0,
            state,
            disk,
            len: compacted.len() as u64,
            rewrite: false,
            compacted_len: compacted.len(),
            appended: 0,
            peers: BTreeMap::new(),
            failing: watch::channel(None).0,
        }
    }

    /// What the file on `disk` loads as, checking that it ends with no torn frame.
    fn loaded(disk: &mut impl Disk) -> Vec<String> {
        let bytes = disk.read().unwrap().expect("a file");
        let journal::Contents::Framed { payloads, torn, .. } = journal::read(&bytes) else {
            panic!("framed");
        };
        assert_eq!(torn, 0, "no torn frame");
        let mut state = DesiredState::load(&payloads.concat(), ActorId::random()).unwrap();
        names(&state.snapshot())
    }

    fn current_thread() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_write_that_cannot_be_persisted_is_refused_undone_and_reported() {
        let disk = MemoryDisk::default();
        let mut actor = actor(disk.clone());
        apply(&mut actor, "kept").expect("persisted");
        let (before, file_before) = (actor.state.heads(), disk.bytes());
        // Full: the append of the next frame tears, and is cut off.
        disk.set_capacity(file_before.as_ref().unwrap().len() + 10);
        let refused = apply(&mut actor, "refused");
        assert!(
            matches!(refused, Err(StoreError::Disk { .. })),
            "{refused:?}"
        );
        assert_eq!(actor.state.heads(), before, "no trace in the document");
        assert_eq!(names(&actor.state.snapshot()), ["kept"]);
        assert_eq!(
            names(&actor.snapshot.borrow()),
            ["kept"],
            "nothing published"
        );
        assert_eq!(
            disk.bytes(),
            file_before,
            "the torn append is cut off the file"
        );
        let why = actor.failing.borrow().clone().expect("reported");
        assert!(why.contains("No space left"), "{why}");

        // Space again: the next write goes through and clears the report.
        disk.set_capacity(usize::MAX);
        apply(&mut actor, "accepted").expect("persisted");
        assert_eq!(*actor.failing.borrow(), None);
        assert_eq!(names(&actor.snapshot.borrow()), ["accepted", "kept"]);
        assert_eq!(
            loaded(&mut disk.clone()),
            ["accepted", "kept"],
            "the refused write is not on disk"
        );
    }

    #[test]
    fn a_failed_append_that_cannot_be_cut_off_makes_the_next_write_rewrite_the_file() {
        let dir = temp_dir("full");
        // Every append to /dev/full fails with ENOSPC, and the device cannot be cut back.
        let path = dir.join("state.automerge");
        let mut actor = actor(FileDisk::new(path.clone()));
        actor.disk = FileDisk::new(PathBuf::from("/dev/full"));
        assert!(apply(&mut actor, "refused").is_err());
        assert!(
            actor.rewrite,
            "the torn append could not be cut: rewrite next"
        );
        actor.disk = FileDisk::new(path.clone());
        apply(&mut actor, "accepted").expect("persisted");
        assert!(!actor.rewrite);
        assert_eq!(loaded(&mut FileDisk::new(path)), ["accepted"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A file whose last frame lost 7 bytes loads without it, on `disk` (made again by
    /// `open`, as a restarted node opens its file).
    fn a_torn_last_frame_is_dropped<D: Disk>(mut open: impl FnMut() -> D) {
        {
            let mut actor = actor(open());
            apply(&mut actor, "kept").unwrap();
            apply(&mut actor, "torn").unwrap();
            let len = actor.disk.read().unwrap().unwrap().len() as u64;
            actor.disk.cut(len - 7).unwrap();
        }
        current_thread().block_on(async {
            let store = Store::open_on(open()).expect("a torn tail does not stop the node");
            assert_eq!(names(&store.watch().borrow()), ["kept"]);
            assert_eq!(*store.persist_error().borrow(), None);
            store.apply(vec![deployment("after")]).await.unwrap();
        });
        assert_eq!(
            loaded(&mut open()),
            ["after", "kept"],
            "rewritten whole at start"
        );
    }

    #[test]
    fn a_torn_last_frame_is_dropped_at_start_and_the_rest_loads() {
        let disk = MemoryDisk::default();
        a_torn_last_frame_is_dropped(|| disk.clone());
        let dir = temp_dir("torn");
        a_torn_last_frame_is_dropped(|| FileDisk::new(dir.join("state.automerge")));
        fs::remove_dir_all(&dir).unwrap();
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("weeble-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_write_s_snapshot_is_published_once_the_store_says_so() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let store = Store::open_on(MemoryDisk::default()).unwrap();
            for i in 0..50 {
                let name = format!("d{i}");
                store.apply(vec![deployment(&name)]).await.unwrap();
                assert!(
                    names(&store.watch().borrow()).contains(&name),
                    "write {i} answered and published, yet not in the snapshot"
                );
            }
        });
    }
}
