//! The desired state as one node holds it: the automerge document, its file, and the syncs
//! with peers, as a state machine. Pure: the node's driver carries out what it asks for — it
//! appends to or replaces the file ([`Persist`]), sends sync messages, answers requests — and
//! hands back what came of it.
//!
//! **Persist before you send** (raft-rs's rule for its `Ready`). A change — a write, or a peer's
//! sync message that brought something new — is put on disk ([`Persist`]) before anything
//! that shows it leaves the node: the write's answer, the sync answer, the next sync message,
//! the published snapshot. While a persist is out, whatever reads or changes the document
//! (writes, sync requests and replies, exchanges to begin) waits in a bounded queue; the
//! membership, status and reconcile loops go on.
//!
//! **A change that cannot be persisted leaves no trace**: the document goes back to what the
//! file holds (under a fresh actor id, drawn from the seeded generator), every peer is asked
//! to send again what it sent, and the write or sync is refused with the reason. The node then
//! reports that it cannot persist ([`Document::failing`]) — its core takes it out of
//! placement — until a change, or the rewrite of the whole file it tries every
//! [`RETRY_PERSIST`], goes through again.
//!
//! **The file** ([`journal`]'s format) is a full save followed by one frame per change. When it
//! has grown well past its last full save it is rewritten whole; an append that failed and
//! could not be cut off makes the next change rewrite it whole as well.
//!
//! **Syncs**: [`DocSync`] decides with whom an exchange runs and when a write is held by
//! enough peers; this module runs each exchange, [`MAX_ROUNDS`] messages at most.

pub mod journal;

use crate::doc_sync::{DocSync, SyncEffect};
use crate::membership::{MemberId, Peers};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};
use weeble_crdt::{
    ActorId, Admission, ChangeHash, DesiredState, Kind, Object, ObjectKey, Outcome, PeerSync,
    PushedImage, Snapshot, StateError,
};

/// How often a node that cannot persist tries to rewrite its file, to learn that it can again.
pub const RETRY_PERSIST: Duration = Duration::from_secs(5);

/// Messages this node sends in one exchange it began, at most.
pub const MAX_ROUNDS: u32 = 16;

/// Writes, sync messages and exchanges waiting behind a persist, at most: past it they are
/// refused (the peer or writer tries again).
pub const MAX_WAITING: usize = 1024;

/// Peers whose sync progress a node keeps, at most ([`Syncs`]): those it synced with last.
pub const MAX_SYNC_PEERS: usize = 16;

/// A change to the desired state, as the API asks for it (or the node itself: a revert).
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Create or update objects, in order, all or nothing.
    Apply(Vec<Object>),
    Scale(ObjectKey, u32),
    Delete(Kind, ObjectKey),
    /// `rollout undo`: an old revision's template again (the newest old one if `None`).
    Undo(ObjectKey, Option<u64>),
    /// `rollout restart`: the same template, restarted at the write's time.
    Restart(ObjectKey),
    /// `rollout pause` (true) and `resume`.
    Pause(ObjectKey, bool),
    /// A rollout that could not progress goes back to old revision `to`, if its template is
    /// still `from_hash` (the cluster's own revert: [`crate::rollout`]).
    Revert {
        key: ObjectKey,
        from_hash: String,
        to: u64,
        reason: String,
    },
    /// Allow or deny these peers (libp2p peer ids): `weeble node allow|deny`.
    Admit(Vec<String>, Admission),
    /// Image `name` was pushed into the cluster, as this says: `weeble image push`.
    Push(String, PushedImage),
}

/// Why a write was refused; the document is as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("{kind} {key} not found")]
    NotFound { kind: Kind, key: ObjectKey },
    /// The write asks for what is not there (a revision to roll back to).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Rejected(String),
    #[error("the change could not be persisted: {0}")]
    NotPersisted(String),
    #[error("{MAX_WAITING} changes are waiting for the disk already; try again")]
    Busy,
    /// The driver's: the node stopped before the write was answered.
    #[error("the node is stopping")]
    Stopped,
}

impl From<StateError> for WriteError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::NotFound { kind, key } => WriteError::NotFound { kind, key },
            e @ StateError::NoRevision { .. } => WriteError::Invalid(e.to_string()),
            other => WriteError::Rejected(other.to_string()),
        }
    }
}

/// What to put on disk. Only one is out at a time; hand its result back to
/// [`Document::persisted`] before anything that reads the file again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Persist {
    /// Append `frame` durably (fsync). If that fails, cut the file back to `whole` bytes (its
    /// last whole frame), and say whether that failed too.
    Append { frame: Vec<u8>, whole: u64 },
    /// Replace the file with these bytes, so that a crash leaves the old file or the new one.
    Replace(Vec<u8>),
}

/// Why a [`Persist`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistFailure {
    /// What the disk said, with the file's path.
    pub why: String,
    /// A failed append could not be cut off: the file ends with a torn frame.
    pub torn: bool,
}

/// The answer to a peer's sync message: ours (`None`: nothing more to say), or why it was
/// refused.
pub type SyncAnswer = Result<Option<Vec<u8>>, String>;

/// What the driver must do.
#[derive(Debug, Clone)]
pub enum DocEffect {
    Persist(Persist),
    /// A sync message to `peer`, in an exchange this node began; its reply comes back to
    /// [`Document::reply`].
    Send {
        peer: MemberId,
        message: Vec<u8>,
    },
    /// The answer to sync request `id`.
    Answer {
        id: u64,
        answer: SyncAnswer,
    },
    /// Write `id` is on disk (or refused): answer the writer. On success,
    /// [`DocEffect::Replicated`] follows once enough peers hold it.
    Written {
        id: u64,
        result: Result<Vec<Outcome>, WriteError>,
    },
    /// Write `id` is held by enough peers, or by every one that could be reached.
    Replicated(u64),
    /// The document changed (and is on disk): this is what it says now.
    Changed(Arc<Snapshot>),
    /// Hand [`Document::retry`] back after this long.
    RetryIn(Duration),
}

/// A document as it was read from its file at start.
pub struct Stored {
    pub state: DesiredState,
    /// The file's length up to its last whole frame.
    pub len: u64,
    /// Why the file could not be rewritten at start, if it could not.
    pub failing: Option<String>,
}

/// What a state file holds, read.
pub struct Loaded {
    pub state: DesiredState,
    /// How much of the file holds whole frames (`None`: the file was missing, or written
    /// before frames existed).
    pub good_len: Option<usize>,
    /// Bytes after them: a torn or damaged last frame, never acknowledged.
    pub torn: usize,
}

/// Reads a state file's bytes (`None`: there is no file) into a document under `actor`.
pub fn load(bytes: Option<&[u8]>, actor: ActorId) -> Result<Loaded, StateError> {
    let (state, good_len, torn) = match bytes.map(journal::read) {
        None => (DesiredState::new(actor), None, 0),
        Some(journal::Contents::Unframed(bytes)) => (DesiredState::load(bytes, actor)?, None, 0),
        Some(journal::Contents::Framed {
            payloads,
            good_len,
            torn,
        }) => (
            DesiredState::load(&payloads.concat(), actor)?,
            Some(good_len),
            torn,
        ),
    };
    Ok(Loaded {
        state,
        good_len,
        torn,
    })
}

/// Something that reads or changes the document, run at once or after the persist out.
#[derive(Debug)]
enum Job {
    Write {
        id: u64,
        op: Op,
        /// When it was asked for (Unix ms): the time a template change records.
        at_ms: i64,
    },
    Request {
        id: u64,
        from: String,
        message: Vec<u8>,
    },
    Reply {
        peer: String,
        reply: SyncAnswer,
    },
    Begin {
        peer: MemberId,
        differs: bool,
    },
}

/// What follows a persist.
#[derive(Debug)]
enum Then {
    /// Answer write `id`.
    Write { id: u64, outcomes: Vec<Outcome> },
    /// Answer sync request `id` from `peer`.
    Answer { id: u64, peer: String },
    /// Go on with the exchange this node runs with `peer`.
    Continue { peer: String },
    /// The whole file rewritten while changes could not be persisted.
    Retry,
    /// The whole file rewritten because it grew long.
    Compact,
}

/// The persist that is out.
#[derive(Debug)]
struct Pending {
    /// The document's heads before the change: what the file holds.
    before: Vec<ChangeHash>,
    then: Then,
    /// What the file will be once it lands.
    lands: Lands,
}

/// What a persist does to the file.
#[derive(Debug, Clone, Copy)]
enum Lands {
    /// One more frame, of `frame` bytes, holding a change of `chunk` bytes.
    Append { frame: u64, chunk: u64 },
    /// A new file of `len` bytes, a full save.
    Replace { len: u64 },
}

/// The file's bookkeeping.
#[derive(Debug)]
struct File {
    /// Its length up to its last whole frame.
    len: u64,
    /// An append failed and could not be cut off: the next change rewrites the file.
    rewrite: bool,
    /// The size of its last full save, and what was appended since.
    compacted: u64,
    appended: u64,
}

impl File {
    /// It has grown well past its last full save: time to rewrite it.
    fn long(&self) -> bool {
        self.appended > 4 * self.compacted.max(64 * 1024)
    }
}

/// One node's document (see the module's documentation).
pub struct Document {
    state: DesiredState,
    snapshot: Arc<Snapshot>,
    /// Sync progress with the peers synced with last (by libp2p id), both ways.
    peers: Syncs,
    /// The exchanges this node began: the peer, and how many messages it sent.
    exchanges: BTreeMap<String, (MemberId, u32)>,
    sync: DocSync,
    replicate_to: usize,
    file: File,
    failing: Option<String>,
    pending: Option<Pending>,
    waiting: VecDeque<Job>,
    /// Draws the actor ids the document goes on under after a rollback.
    actors: StdRng,
}

impl Document {
    /// `fanout`: peers beyond ⌈ln N⌉ a change is pushed to; `replicate_to`: peers that must
    /// hold a write before it is acknowledged.
    pub fn new(stored: Stored, fanout: usize, replicate_to: usize, seed: u64) -> Self {
        let Stored {
            mut state,
            len,
            failing,
        } = stored;
        Document {
            snapshot: Arc::new(state.snapshot()),
            state,
            peers: Syncs::default(),
            exchanges: BTreeMap::new(),
            sync: DocSync::new(fanout, seed),
            replicate_to,
            file: File {
                len,
                rewrite: false,
                compacted: len,
                appended: 0,
            },
            failing,
            pending: None,
            waiting: VecDeque::new(),
            actors: StdRng::seed_from_u64(seed ^ 0x5eed),
        }
    }

    /// What the document says, as last persisted.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// Why this node cannot persist changes now, if it cannot.
    pub fn failing(&self) -> Option<&str> {
        self.failing.as_deref()
    }

    /// At the node's start: if the file could not be rewritten, try again in a while.
    pub fn start(&self, out: &mut Vec<DocEffect>) {
        if self.failing.is_some() {
            out.push(DocEffect::RetryIn(RETRY_PERSIST));
        }
    }

    /// A write (`id` unique among those not answered yet), asked for at `at_ms`.
    pub fn write(&mut self, id: u64, op: Op, at_ms: i64, peers: &Peers, out: &mut Vec<DocEffect>) {
        self.submit(Job::Write { id, op, at_ms }, peers, out);
    }

    /// A peer's sync message, request `id`: [`DocEffect::Answer`] answers it.
    pub fn request(
        &mut self,
        id: u64,
        from: String,
        message: Vec<u8>,
        peers: &Peers,
        out: &mut Vec<DocEffect>,
    ) {
        self.submit(Job::Request { id, from, message }, peers, out);
    }

    /// The reply to the message this node sent `peer` ([`DocEffect::Send`]); `Err`: it was
    /// not delivered, or refused.
    pub fn reply(
        &mut self,
        peer: String,
        reply: SyncAnswer,
        peers: &Peers,
        out: &mut Vec<DocEffect>,
    ) {
        self.submit(Job::Reply { peer, reply }, peers, out);
    }

    /// `peer`'s digest shows another document: an exchange with it.
    pub fn differs(&mut self, peer: &MemberId, peers: &Peers, out: &mut Vec<DocEffect>) {
        let syncs = self.sync.differs(peer);
        self.syncs(syncs, peers, out);
    }

    /// `peer` was declared dead: its sync progress goes (a node that comes back starts over).
    pub fn forget(&mut self, peer: &str) {
        self.peers.remove(peer);
    }

    /// The retry timer ([`DocEffect::RetryIn`]): while changes cannot be persisted, rewrite
    /// the file whole, to learn whether the disk takes writes again.
    pub fn retry(&mut self, out: &mut Vec<DocEffect>) {
        if self.failing.is_some() && self.pending.is_none() {
            let heads = self.state.heads();
            self.persist(heads, Then::Retry, out);
        }
    }

    /// What came of the [`Persist`] out; then the jobs that waited for it run.
    pub fn persisted(
        &mut self,
        result: Result<(), PersistFailure>,
        peers: &Peers,
        out: &mut Vec<DocEffect>,
    ) {
        let Some(pending) = self.pending.take() else {
            warn!("a persist result with no persist out: ignored");
            return;
        };
        match result {
            Ok(()) => self.landed(pending, peers, out),
            Err(failure) => self.failed(pending, failure, peers, out),
        }
        while self.pending.is_none()
            && let Some(job) = self.waiting.pop_front()
        {
            self.run(job, peers, out);
        }
    }

    /// Runs `job` now, or after the persist that is out (if the queue has room).
    fn submit(&mut self, job: Job, peers: &Peers, out: &mut Vec<DocEffect>) {
        if self.pending.is_none() {
            self.run(job, peers, out);
        } else if self.waiting.len() < MAX_WAITING {
            self.waiting.push_back(job);
        } else {
            warn!("{MAX_WAITING} document changes wait for the disk already: one more is refused");
            self.refuse(job, peers, out);
        }
    }

    /// A job the queue has no room for.
    fn refuse(&mut self, job: Job, peers: &Peers, out: &mut Vec<DocEffect>) {
        match job {
            Job::Write { id, .. } => out.push(DocEffect::Written {
                id,
                result: Err(WriteError::Busy),
            }),
            Job::Request { id, .. } => out.push(DocEffect::Answer {
                id,
                answer: Err(WriteError::Busy.to_string()),
            }),
            Job::Reply { peer, .. } => {
                self.peers.remove(&peer);
                self.end(&peer, false, peers, out);
            }
            Job::Begin { peer, .. } => self.end(&peer.peer_id, false, peers, out),
        }
    }

    fn run(&mut self, job: Job, peers: &Peers, out: &mut Vec<DocEffect>) {
        let before = self.state.heads();
        match job {
            Job::Write { id, op, at_ms } => match self.change(op, at_ms) {
                Err(e) => {
                    self.undo(&before);
                    let result = Err(e.into());
                    out.push(DocEffect::Written { id, result });
                }
                Ok(outcomes) if self.state.heads() == before => {
                    out.push(DocEffect::Written {
                        id,
                        result: Ok(outcomes),
                    });
                    self.replicate(id, peers, out);
                }
                Ok(outcomes) => self.persist(before, Then::Write { id, outcomes }, out),
            },
            Job::Request { id, from, message } => match self.receive(&from, &message, &before) {
                Err(e) => {
                    warn!(peer = %from, error = %e, "sync from peer refused");
                    out.push(DocEffect::Answer {
                        id,
                        answer: Err(e.to_string()),
                    });
                }
                Ok(true) => self.persist(before, Then::Answer { id, peer: from }, out),
                Ok(false) => {
                    let answer = Ok(self.message(&from));
                    out.push(DocEffect::Answer { id, answer });
                }
            },
            Job::Reply { peer, reply } => match reply {
                Err(e) => {
                    debug!(%peer, error = %e, "sync failed; starting over next time");
                    self.peers.remove(&peer);
                    self.end(&peer, false, peers, out);
                }
                Ok(None) => self.end(&peer, true, peers, out),
                Ok(Some(message)) => match self.receive(&peer, &message, &before) {
                    Err(e) => {
                        warn!(%peer, error = %e, "sync reply rejected");
                        self.end(&peer, false, peers, out);
                    }
                    Ok(true) => self.persist(before, Then::Continue { peer }, out),
                    Ok(false) => self.next(&peer, peers, out),
                },
            },
            Job::Begin { peer, differs } => {
                let id = peer.peer_id.clone();
                let mut first = self.message(&id);
                if first.is_none() && differs {
                    // The peer holds something else, yet our sync state says it has all:
                    // that state is stale (the peer restarted and lost a change, say).
                    debug!(peer = %peer.name, "the peer's document differs, yet nothing to send: starting over");
                    self.peers.remove(&id);
                    first = self.message(&id);
                }
                match first {
                    None => self.end(&id, true, peers, out),
                    Some(message) => {
                        self.exchanges.insert(id, (peer.clone(), 1));
                        out.push(DocEffect::Send { peer, message });
                    }
                }
            }
        }
    }

    /// Carries out a write on the document (not yet on disk).
    fn change(&mut self, op: Op, at_ms: i64) -> Result<Vec<Outcome>, StateError> {
        self.state.set_time(at_ms);
        let state = &mut self.state;
        match op {
            Op::Apply(objects) => objects.iter().map(|o| state.apply(o)).collect(),
            Op::Scale(key, n) => state.scale(&key, n).map(|o| vec![o]),
            Op::Delete(kind, key) => state.delete(kind, &key).map(|o| vec![o]),
            Op::Undo(key, to) => state.undo(&key, to).map(|o| vec![o]),
            Op::Restart(key) => {
                let at = crate::time::rfc3339(at_ms);
                state.restart(&key, &at).map(|o| vec![o])
            }
            Op::Pause(key, paused) => state.pause(&key, paused).map(|o| vec![o]),
            Op::Revert {
                key,
                from_hash,
                to,
                reason,
            } => state.revert(&key, &from_hash, to, &reason).map(|o| vec![o]),
            Op::Admit(peers, admission) => state.admit(&peers, admission),
            Op::Push(name, image) => state.push_image(&name, &image).map(|o| vec![o]),
        }
    }

    /// A peer's sync message into the document; true if it brought a change. A bad one
    /// starts the sync with the peer over, and leaves no trace.
    fn receive(
        &mut self,
        peer: &str,
        message: &[u8],
        before: &[ChangeHash],
    ) -> Result<bool, StateError> {
        let sync = self.peers.of(peer);
        let received = self.state.receive_sync(sync, message);
        if received.is_err() {
            self.peers.remove(peer);
            self.undo(before);
        }
        received
    }

    /// The next sync message for `peer`, if there is anything to say.
    fn message(&mut self, peer: &str) -> Option<Vec<u8>> {
        let sync = self.peers.of(peer);
        self.state.sync_message(sync)
    }

    /// The next message of the exchange this node runs with `peer`, or its end.
    fn next(&mut self, peer: &str, peers: &Peers, out: &mut Vec<DocEffect>) {
        let Some((member, rounds)) = self.exchanges.get(peer).cloned() else {
            debug!(%peer, "a sync reply for no exchange: ignored");
            return;
        };
        match self.message(peer) {
            None => self.end(peer, true, peers, out),
            Some(_) if rounds >= MAX_ROUNDS => self.end(peer, false, peers, out),
            Some(message) => {
                self.exchanges
                    .insert(peer.to_string(), (member.clone(), rounds + 1));
                out.push(DocEffect::Send {
                    peer: member,
                    message,
                });
            }
        }
    }

    /// The exchange with `peer` ended; `completed`: the peer holds what this node held when
    /// it began.
    fn end(&mut self, peer: &str, completed: bool, peers: &Peers, out: &mut Vec<DocEffect>) {
        self.exchanges.remove(peer);
        let syncs = self.sync.ended(peer, completed);
        self.syncs(syncs, peers, out);
    }

    fn replicate(&mut self, id: u64, peers: &Peers, out: &mut Vec<DocEffect>) {
        let syncs = self.sync.replicate(id, peers, self.replicate_to);
        self.syncs(syncs, peers, out);
    }

    /// What [`DocSync`] decided: exchanges to begin, writes to acknowledge.
    fn syncs(&mut self, syncs: Vec<SyncEffect>, peers: &Peers, out: &mut Vec<DocEffect>) {
        for effect in syncs {
            match effect {
                SyncEffect::Start { peer, differs } => {
                    self.submit(Job::Begin { peer, differs }, peers, out)
                }
                SyncEffect::Replicated { id } => out.push(DocEffect::Replicated(id)),
            }
        }
    }

    /// Puts the document on disk as it is now — one more frame, or the whole file — and
    /// holds `then` until it is there.
    fn persist(&mut self, before: Vec<ChangeHash>, then: Then, out: &mut Vec<DocEffect>) {
        let (persist, lands) = if matches!(then, Then::Retry | Then::Compact) || self.file.rewrite {
            let bytes = journal::file(&self.state.save());
            let len = bytes.len() as u64;
            (Persist::Replace(bytes), Lands::Replace { len })
        } else {
            let chunk = self.state.save_incremental();
            let frame = journal::frame(&chunk);
            let lands = Lands::Append {
                frame: frame.len() as u64,
                chunk: chunk.len() as u64,
            };
            let whole = self.file.len;
            (Persist::Append { frame, whole }, lands)
        };
        self.pending = Some(Pending {
            before,
            then,
            lands,
        });
        out.push(DocEffect::Persist(persist));
    }

    /// The change is on disk: what waited for it goes out.
    fn landed(&mut self, pending: Pending, peers: &Peers, out: &mut Vec<DocEffect>) {
        match pending.lands {
            Lands::Append { frame, chunk } => {
                self.file.len += frame;
                self.file.appended += chunk;
            }
            Lands::Replace { len } => {
                self.file = File {
                    len,
                    rewrite: false,
                    compacted: len,
                    appended: 0,
                }
            }
        }
        if let Some(why) = self.failing.take() {
            info!(was = %why, "the state file can be written again");
        }
        match pending.then {
            Then::Write { id, outcomes } => {
                self.changed(peers, out);
                out.push(DocEffect::Written {
                    id,
                    result: Ok(outcomes),
                });
                self.replicate(id, peers, out);
            }
            Then::Answer { id, peer } => {
                let answer = Ok(self.message(&peer));
                out.push(DocEffect::Answer { id, answer });
                self.changed(peers, out);
            }
            Then::Continue { peer } => {
                self.changed(peers, out);
                self.next(&peer, peers, out);
            }
            Then::Retry | Then::Compact => {}
        }
        let appended = matches!(pending.lands, Lands::Append { .. });
        if appended && self.file.long() && self.pending.is_none() {
            let heads = self.state.heads();
            self.persist(heads, Then::Compact, out);
        }
    }

    /// The change could not be persisted: it is undone, and refused.
    fn failed(
        &mut self,
        pending: Pending,
        failure: PersistFailure,
        peers: &Peers,
        out: &mut Vec<DocEffect>,
    ) {
        let PersistFailure { why, torn } = failure;
        if let Then::Compact = pending.then {
            // The change is on disk already; the file is merely longer than it need be.
            warn!(error = %why, "cannot compact the state file; appending on");
            return;
        }
        if torn {
            warn!(error = %why, "cannot cut a failed append off the state file: the next change rewrites it");
            self.file.rewrite = true;
        }
        if self.failing.is_none() {
            warn!(error = %why, "a change could not be persisted: refused, and undone");
        }
        self.failing = Some(why.clone());
        out.push(DocEffect::RetryIn(RETRY_PERSIST));
        self.undo(&pending.before);
        match pending.then {
            Then::Write { id, .. } => out.push(DocEffect::Written {
                id,
                result: Err(WriteError::NotPersisted(why)),
            }),
            Then::Answer { id, .. } => out.push(DocEffect::Answer {
                id,
                answer: Err(WriteError::NotPersisted(why).to_string()),
            }),
            Then::Continue { peer } => self.end(&peer, false, peers, out),
            Then::Retry | Then::Compact => {}
        }
    }

    /// The document changed and is on disk: a new snapshot (only the objects that changed are
    /// read again), and a sync with a few random peers.
    fn changed(&mut self, peers: &Peers, out: &mut Vec<DocEffect>) {
        let mut next = Snapshot::clone(&self.snapshot);
        self.state.refresh(&mut next);
        self.snapshot = Arc::new(next);
        out.push(DocEffect::Changed(self.snapshot.clone()));
        let syncs = self.sync.changed(peers);
        self.syncs(syncs, peers, out);
    }

    /// Forgets whatever changed since `before`, and every peer's sync progress (which may
    /// count on the forgotten changes): each peer is asked to send again what it sent.
    fn undo(&mut self, before: &[ChangeHash]) {
        if self.state.heads() == before {
            return;
        }
        self.peers.ask_for_resend();
        let actor = ActorId::from(self.actors.random::<[u8; 16]>());
        if let Err(e) = self.state.rollback(before, actor) {
            // The heads are the document's own: forking at them cannot fail.
            warn!(error = %e, "rolling back a change that was not persisted failed");
        }
    }
}

/// Sync progress with the [`MAX_SYNC_PEERS`] peers synced with last: a node pushes each change
/// to a few peers and answers those that push to it, and kept the progress with every peer
/// it ever synced with (at 1,000 simulated nodes, about 30 KB a node). Once this node has
/// rolled back a change, a peer's progress begun anew (again, after it was dropped) asks the
/// peer to send again whatever it believes sent: its sent changes may include the one rolled
/// back, which it was asked to send again ([`PeerSync::ask_for_resend`]) only if its progress
/// was kept then.
#[derive(Debug, Default)]
struct Syncs {
    /// Each peer's progress, and when it was last used (a count of uses).
    by_peer: BTreeMap<String, (u64, PeerSync)>,
    uses: u64,
    /// Whether a change was ever rolled back.
    rolled_back: bool,
}

impl Syncs {
    /// `peer`'s progress, begun anew if not kept; the least used lately is dropped to make
    /// room.
    fn of(&mut self, peer: &str) -> &mut PeerSync {
        self.uses += 1;
        if !self.by_peer.contains_key(peer) && self.by_peer.len() >= MAX_SYNC_PEERS {
            let least = self.by_peer.iter().min_by_key(|(_, (used, _))| *used);
            if let Some(least) = least.map(|(peer, _)| peer.clone()) {
                self.by_peer.remove(&least);
            }
        }
        let rolled_back = self.rolled_back;
        let (used, sync) = self.by_peer.entry(peer.to_string()).or_insert_with(|| {
            let mut sync = PeerSync::default();
            if rolled_back {
                sync.ask_for_resend();
            }
            (0, sync)
        });
        *used = self.uses;
        sync
    }

    fn remove(&mut self, peer: &str) {
        self.by_peer.remove(peer);
    }

    /// A change was rolled back: asks every peer kept to send again what it sent, and every
    /// peer synced with anew from now on.
    fn ask_for_resend(&mut self) {
        self.rolled_back = true;
        for (_, sync) in self.by_peer.values_mut() {
            sync.ask_for_resend();
        }
    }
}

#[cfg(test)]
mod tests;
