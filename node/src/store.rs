//! The state store actor: owns the desired-state document and its file, answers writes only
//! once they are on disk (fsync), and speaks automerge sync with each peer.
//!
//! The file is a full save followed by incremental saves appended after every change, each
//! appended chunk fsynced before the write is acknowledged. On start the file is loaded
//! whole; when it has grown well past its compacted size it is rewritten (to a temporary
//! file, fsynced, then renamed over the old one).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};
use weeble_crdt::{
    ActorId, DesiredState, Kind, Object, ObjectKey, Outcome, PeerSync, Snapshot, StateError,
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
    #[error("the state store has stopped")]
    Stopped,
}

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
}

impl Store {
    /// Opens (or creates) the state file in `data_dir` and starts the actor.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join("state.automerge");
        let disk = |source| StoreError::Disk {
            path: path.clone(),
            source,
        };
        let mut state = match fs::read(&path) {
            Ok(bytes) => DesiredState::load(&bytes, ActorId::random())?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                DesiredState::new(ActorId::random())
            }
            Err(e) => return Err(disk(e)),
        };
        let compacted = state.save();
        write_atomically(&path, &compacted).map_err(disk)?;
        let file = OpenOptions::new().append(true).open(&path).map_err(disk)?;
        let snapshot = Arc::new(state.snapshot());
        info!(objects = snapshot.deployments.len() + snapshot.services.len(), file = %path.display(), "desired state loaded");
        let (snapshot_tx, snapshot_rx) = watch::channel(snapshot);
        let (tx, rx) = mpsc::channel(256);
        let actor = StoreActor {
            state,
            path,
            file,
            compacted_len: compacted.len(),
            appended: 0,
            peers: BTreeMap::new(),
            snapshot: snapshot_tx,
        };
        tokio::spawn(actor.run(rx));
        Ok(Store {
            tx,
            snapshot: snapshot_rx,
        })
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

struct StoreActor {
    state: DesiredState,
    path: PathBuf,
    file: File,
    compacted_len: usize,
    appended: usize,
    peers: BTreeMap<String, PeerSync>,
    snapshot: watch::Sender<Arc<Snapshot>>,
}

impl StoreActor {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(command) = rx.recv().await {
            match command {
                Command::Apply(objects, reply) => {
                    let result = objects
                        .iter()
                        .map(|o| self.state.apply(o))
                        .collect::<Result<Vec<_>, _>>();
                    let _ = reply.send(self.persisted(result));
                }
                Command::Scale(key, n, reply) => {
                    let result = self.state.scale(&key, n);
                    let _ = reply.send(self.persisted(result));
                }
                Command::Delete(kind, key, reply) => {
                    let result = self.state.delete(kind, &key);
                    let _ = reply.send(self.persisted(result));
                }
                Command::SyncOut(peer, reply) => {
                    let sync = self.peers.entry(peer).or_default();
                    let _ = reply.send(self.state.sync_message(sync));
                }
                Command::SyncIn(peer, message, reply) => {
                    let sync = self.peers.entry(peer.clone()).or_default();
                    let result = self
                        .state
                        .receive_sync(sync, &message)
                        .map_err(StoreError::from);
                    let result = match result {
                        Ok(changed) => self.persisted(Ok(changed)).map(|_| {
                            let sync = self.peers.entry(peer).or_default();
                            self.state.sync_message(sync)
                        }),
                        Err(e) => {
                            warn!(%peer, error = %e, "bad sync message; resetting sync with the peer");
                            self.peers.remove(&peer);
                            Err(e)
                        }
                    };
                    let _ = reply.send(result);
                }
                Command::Reset(peer) => {
                    self.peers.remove(&peer);
                }
            }
        }
    }

    /// Puts whatever changed on disk before the caller's answer goes out, then publishes
    /// the new snapshot.
    fn persisted<T>(&mut self, result: Result<T, StateError>) -> Result<T, StoreError> {
        let value = result?;
        let chunk = self.state.save_incremental();
        if chunk.is_empty() {
            return Ok(value);
        }
        self.append(&chunk).map_err(|source| StoreError::Disk {
            path: self.path.clone(),
            source,
        })?;
        self.snapshot.send_replace(Arc::new(self.state.snapshot()));
        Ok(value)
    }

    fn append(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.file.write_all(chunk)?;
        self.file.sync_data()?;
        self.appended += chunk.len();
        if self.appended > 4 * self.compacted_len.max(64 * 1024) {
            let full = self.state.save();
            write_atomically(&self.path, &full)?;
            self.file = OpenOptions::new().append(true).open(&self.path)?;
            self.compacted_len = full.len();
            self.appended = 0;
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}
