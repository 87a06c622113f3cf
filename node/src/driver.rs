//! The driver: one task that feeds a node's [`NodeCore`] with what happens — network events,
//! writes, container events, the probes' outcomes, timers, the results of the work it runs —
//! and carries out the effects the core returns through the node's adapters: the
//! [`Transport`], the [`ContainerRuntime`], the state file's [`Disk`], a [`Checker`] for the
//! probes, the registry credentials file, the images shelf (`crate::images`), the log
//! sessions of peers' clients (`crate::pods`), the peers file, and the watches the API, the
//! proxy and DNS read. Requests that the
//! core answers later (a write, a peer's sync message) wait here, by id, for their answer.
//! Time comes from one clock ([`crate::clock`]); the driver ends when the node's [`Shutdown`]
//! fires.

use crate::clock;
use crate::images::pull::Puller;
use crate::images::shelf::Shelf;
use crate::membership::MemberId;
use crate::pods;
use crate::probe::Checker;
use crate::reconcile::{Action, ENGINE_CALLS_IN_FLIGHT, pass::Event};
use crate::runtime::credentials::CredentialsFile;
use crate::runtime::{ContainerRuntime, RuntimeError, RuntimeEvent};
use crate::shutdown::Shutdown;
use crate::status::StatusTable;
use crate::store::{self, disk::Disk};
use crate::transport::{
    ImagePart, Inbound, LocalDigest, NetError, NetEvent, PodAnswer, PodRequest, Response, Transport,
};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tracing::{Instrument, debug, info, info_span, warn};
use weeble_core::document::{Op, Persist, PersistFailure, WriteError};
use weeble_core::images;
use weeble_core::membership::Peers;
use weeble_core::node::{Answer, Effect, Input, NodeCore, Timer};
use weeble_core::reconcile::pulls::ImagePull;
use weeble_core::status::Send;
use weeble_core::view::View;
use weeble_crdt::{Outcome, Snapshot};

/// What the rest of the node asks of the driver.
pub enum Command {
    /// A write: `written` hears once it is on disk (or refused), `replicated` once enough
    /// peers hold it (see `NodeConfig::replicate_to`).
    Write {
        op: Op,
        written: oneshot::Sender<Result<Vec<Outcome>, WriteError>>,
        replicated: oneshot::Sender<()>,
    },
    /// Take no pods any more: the node is leaving.
    Leaving,
    /// Leave the membership and stop; `done` once the datagrams saying so are answered (or
    /// failed).
    Leave(oneshot::Sender<()>),
    /// Ask a pod's node for its logs or removal (for this node's API).
    AskPod {
        to: MemberId,
        request: PodRequest,
        answer: oneshot::Sender<Result<PodAnswer, NetError>>,
    },
}

/// Status messages in flight at most, versions aside (one per peer at most, by the core):
/// past it a push is dropped, and the digests mend what it would have carried.
pub const MAX_STATUS_SENDS: usize = 256;

/// How long a leaving node waits for its leave datagrams to be answered.
const LEAVE_WAIT: Duration = Duration::from_secs(1);

/// The driver's inboxes.
pub struct Inboxes {
    pub events: mpsc::Receiver<NetEvent>,
    pub commands: mpsc::Receiver<Command>,
    /// What the driver's own tasks hand back: timers fired, answers, ends of syncs, the
    /// results of runtime work.
    pub feedback: mpsc::Receiver<Input>,
    /// This node's container events.
    pub containers: mpsc::Receiver<RuntimeEvent>,
}

/// One node's driver (see the module's documentation).
pub struct Driver<T, R, C> {
    pub core: NodeCore,
    pub transport: T,
    pub runtime: R,
    pub checker: C,
    /// This node's name: the runtime lists its containers by it.
    pub node: String,
    /// The state file; one persist at a time runs on it, off the driver's task.
    pub disk: Arc<Mutex<Box<dyn Disk>>>,
    /// What this node holds, read by the transport on every membership send.
    pub digest: Arc<LocalDigest>,
    pub view: watch::Sender<Arc<View>>,
    /// The desired state, as last persisted.
    pub snapshot: watch::Sender<Arc<Snapshot>>,
    pub table: watch::Sender<Arc<StatusTable>>,
    /// How many containers this node ran at the reconciler's last look.
    pub containers: watch::Sender<usize>,
    /// Where the known peer addresses are kept, for the next start.
    pub peers_file: PathBuf,
    /// Where the registries' credentials are read at each pull (`--registry-auth`), if anywhere.
    pub credentials: Option<CredentialsFile>,
    /// The images this node writes out for peers; its directory also takes those fetched.
    pub shelf: Shelf<R>,
    /// The logs this node streams to peers' API clients, and what it answers their requests.
    pub pods: pods::Sessions<R>,
    /// Pulls try the peers that hold an image before its registry (`--peers-first`).
    pub peers_first: bool,
    pub feedback: mpsc::Sender<Input>,
    /// Permits for status pushes in flight ([`MAX_STATUS_SENDS`]).
    pub status_sends: Arc<Semaphore>,
    pub shutdown: Shutdown,
}

/// A write the core has not answered in full yet.
struct Writer {
    /// `None` once it was told the write is on disk.
    written: Option<oneshot::Sender<Result<Vec<Outcome>, WriteError>>>,
    replicated: oneshot::Sender<()>,
}

/// Requests the core answers later, by the id the driver gave them.
#[derive(Default)]
struct Waiting {
    writes: BTreeMap<u64, Writer>,
    syncs: BTreeMap<u64, oneshot::Sender<Response>>,
    next: u64,
}

impl Waiting {
    fn id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }
}

impl<T: Transport, R: ContainerRuntime, C: Checker> Driver<T, R, C> {
    pub async fn run(mut self, mut inboxes: Inboxes) {
        let mut waiting = Waiting::default();
        let mut shutdown = self.shutdown.clone();
        self.digest.set(self.core.digest());
        self.step(Input::Timer(Timer::Announce), &mut waiting).await;
        loop {
            let input = tokio::select! {
                _ = shutdown.wait() => return,
                Some(event) = inboxes.events.recv() => self.net_event(event, &mut waiting).await,
                Some(fed) = inboxes.feedback.recv() => Some(fed),
                Some(event) = inboxes.containers.recv() => Some(Input::Container(event)),
                command = inboxes.commands.recv() => match command {
                    None => return,
                    Some(Command::Write { op, written, replicated }) => {
                        let id = waiting.id();
                        let writer = Writer { written: Some(written), replicated };
                        waiting.writes.insert(id, writer);
                        Some(Input::Write { id, op })
                    }
                    Some(Command::Leaving) => Some(Input::Leaving),
                    Some(Command::Leave(done)) => {
                        self.leave().await;
                        let _ = done.send(());
                        return;
                    }
                    Some(Command::AskPod { to, request, answer }) => {
                        let transport = self.transport.clone();
                        tokio::spawn(async move {
                            let _ = answer.send(transport.pod(to, request).await);
                        });
                        None
                    }
                },
            };
            if let Some(input) = input {
                self.step(input, &mut waiting).await;
            }
        }
    }

    /// Steps the core and carries out its effects; returns its answer to a request, if any.
    async fn step(&mut self, input: Input, waiting: &mut Waiting) -> Option<Answer> {
        let effects = self.core.step(clock::now(), input);
        let mut answer = None;
        for effect in effects {
            match effect {
                Effect::Answer(a) => answer = Some(a),
                Effect::Written { id, result } => {
                    let refused = result.is_err();
                    let writer = waiting.writes.get_mut(&id);
                    if let Some(written) = writer.and_then(|w| w.written.take()) {
                        let _ = written.send(result);
                    }
                    if refused {
                        waiting.writes.remove(&id);
                    }
                }
                Effect::Replicated(id) => {
                    if let Some(writer) = waiting.writes.remove(&id) {
                        let _ = writer.replicated.send(());
                    }
                }
                Effect::SyncAnswer { id, answer } => {
                    if let Some(reply) = waiting.syncs.remove(&id) {
                        let _ = reply.send(match answer {
                            Ok(message) => Response::Sync(message),
                            Err(why) => Response::SyncRefused(why),
                        });
                    }
                }
                other => self.carry(other).await,
            }
        }
        answer
    }

    /// A network event: into the core, with its answer back to the peer (a sync message's
    /// answer may come in a later step, once a change it brought is on disk).
    async fn net_event(&mut self, event: NetEvent, waiting: &mut Waiting) -> Option<Input> {
        match event {
            NetEvent::Membership {
                from,
                data,
                digest,
                reply,
            } => {
                let request = reply.is_some();
                let input = Input::Datagram {
                    from,
                    data,
                    digest,
                    request,
                };
                let answer = self.step(input, waiting).await;
                if let (Some(reply), Some(Answer::Membership(data))) = (reply, answer) {
                    let _ = reply.send(data);
                }
                None
            }
            NetEvent::Request {
                from,
                request: Inbound::Status(message),
                reply,
            } => {
                let answer = self.step(Input::Status { from, message }, waiting).await;
                let response = match answer {
                    Some(Answer::Status(Some(message))) => Response::Status(message),
                    _ => Response::Ack,
                };
                let _ = reply.send(response);
                None
            }
            NetEvent::Request {
                from,
                request: Inbound::Sync(message),
                reply,
            } => {
                let id = waiting.id();
                waiting.syncs.insert(id, reply);
                Some(Input::SyncRequest { id, from, message })
            }
            NetEvent::Request {
                from,
                request: request @ (Inbound::Image { .. } | Inbound::Pod(_)),
                reply,
            } if !self.core.admits(&from) => {
                let why = format!("this node's cluster does not admit peer {from}");
                debug!(peer = %from, "a request from a peer not admitted is refused");
                let _ = reply.send(match request {
                    Inbound::Pod(_) => Response::Pod(PodAnswer::Refused {
                        status: 403,
                        message: why,
                    }),
                    _ => Response::Image(ImagePart::Refused(why)),
                });
                self.transport.disconnect(from).await;
                None
            }
            NetEvent::Request {
                from,
                request: Inbound::Image { id, offset, len },
                reply,
            } => {
                self.serve_image(from, id, offset, len, reply);
                None
            }
            NetEvent::Request {
                from,
                request: Inbound::Pod(request),
                reply,
            } => {
                let pods = self.pods.clone();
                tokio::spawn(async move {
                    let _ = reply.send(Response::Pod(pods.answer(&from, request).await));
                });
                None
            }
            NetEvent::Disconnected(peer) => Some(Input::Disconnected(peer)),
            NetEvent::Gone(peer) => Some(Input::Gone(peer)),
        }
    }

    /// Carries out one effect (answers and acknowledgements are the step's own).
    async fn carry(&mut self, effect: Effect) {
        match effect {
            Effect::Membership { to, data } => self.transport.send_membership(to, data).await,
            Effect::Status(send) => self.send_status(send),
            Effect::Sync { to, message } => {
                let (transport, feedback) = (self.transport.clone(), self.feedback.clone());
                tokio::spawn(async move {
                    let reply = transport.sync(to.clone(), message).await;
                    let reply = reply.map_err(|e| e.to_string());
                    let peer = to.peer_id.clone();
                    let _ = feedback.send(Input::SyncReply { peer, reply }).await;
                });
            }
            Effect::Persist(persist) => self.persist(persist),
            Effect::Snapshot(snapshot) => {
                self.snapshot.send_replace(snapshot);
            }
            Effect::Schedule { after, timer } => {
                let (feedback, mut shutdown) = (self.feedback.clone(), self.shutdown.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = tokio::time::sleep(after) => {
                            let _ = feedback.send(Input::Timer(timer)).await;
                        }
                        _ = shutdown.wait() => {}
                    }
                });
            }
            Effect::ListContainers => {
                let (runtime, node) = (self.runtime.clone(), self.node.clone());
                self.spawn_work(async move { Event::Listed(runtime.list(&node).await) });
            }
            Effect::Terminate(ids) => {
                let runtime = self.runtime.clone();
                self.spawn_work(terminate(runtime, ids));
            }
            Effect::Act(actions) => {
                let runtime = self.runtime.clone();
                self.spawn_work(act(runtime, actions));
            }
            Effect::Pull { pull, holders } => {
                let (table, view) = (self.table.subscribe(), self.view.subscribe());
                let me = self.node.clone();
                let holders_now = move |pull: &ImagePull| {
                    let (table, view) = (table.borrow().clone(), view.borrow().clone());
                    let peers = Peers::new(view.members.clone(), &me);
                    images::holders(&table, &peers, &me, pull)
                };
                let puller = Puller {
                    runtime: self.runtime.clone(),
                    transport: self.transport.clone(),
                    credentials: self.credentials.clone(),
                    dir: self.shelf.dir().to_path_buf(),
                    holders: Arc::new(holders_now),
                    peers_first: self.peers_first,
                };
                self.spawn_work(async move {
                    let outcome = puller.pull(&pull, &holders).await;
                    Event::Pulled { pull, outcome }
                });
            }
            Effect::Probe(check) => {
                let (checker, feedback) = (self.checker.clone(), self.feedback.clone());
                tokio::spawn(async move {
                    let passed = checker.run(check.clone()).await;
                    let _ = feedback.send(Input::Probed { check, passed }).await;
                });
            }
            Effect::Containers(count) => {
                self.containers.send_replace(count);
            }
            Effect::Check(member) => self.transport.check(member).await,
            Effect::Disconnect(peer) => self.transport.disconnect(peer).await,
            Effect::Known(addrs) => self.save_peers(&addrs),
            Effect::Digest(digest) => self.digest.set(digest),
            Effect::View(view) => {
                self.view.send_replace(view);
            }
            Effect::Table(table) => {
                self.table.send_replace(table);
            }
            Effect::Answer(_)
            | Effect::Written { .. }
            | Effect::Replicated(_)
            | Effect::SyncAnswer { .. } => {}
        }
    }

    /// Writes to the state file off the driver's task (an fsync may take a while), and hands
    /// what came of it back to the core.
    fn persist(&self, persist: Persist) {
        let (disk, feedback) = (self.disk.clone(), self.feedback.clone());
        let write = move || {
            let mut disk = disk.lock().unwrap_or_else(|e| e.into_inner());
            store::persist(disk.as_mut(), &persist)
        };
        tokio::spawn(async move {
            let result = tokio::task::spawn_blocking(write).await;
            let result = result.unwrap_or_else(|e| {
                Err(PersistFailure {
                    why: format!("the write to the state file failed: {e}"),
                    torn: true,
                })
            });
            let _ = feedback.send(Input::Persisted(result)).await;
        });
    }

    /// Runs runtime work in a task of its own (the reconciler's span) and hands what came of
    /// it back to the core.
    fn spawn_work(
        &self,
        work: impl std::future::Future<Output = Event> + std::marker::Send + 'static,
    ) {
        let feedback = self.feedback.clone();
        let work = async move {
            let event = work.await;
            let _ = feedback.send(Input::Reconcile(event)).await;
        };
        tokio::spawn(work.instrument(info_span!("reconciler")));
    }

    /// Carries a status message without waiting (best effort: anti-entropy mends a loss),
    /// [`MAX_STATUS_SENDS`] at once at most; the answer to one that asks goes back to the core.
    fn send_status(&self, Send { to, message }: Send) {
        let (transport, feedback) = (self.transport.clone(), self.feedback.clone());
        let asks = message.asks();
        let permit = match self.status_sends.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            // The core waits for the answer to one that asks.
            Err(_) if asks => None,
            Err(_) => {
                warn!(peer = %to.name, "status push dropped: {MAX_STATUS_SENDS} in flight already");
                return;
            }
        };
        tokio::spawn(async move {
            let _permit = permit;
            let answer = match transport.status(to.clone(), message).await {
                Ok(answer) => answer,
                Err(e) => {
                    debug!(peer = %to.name, error = %e, "status not delivered");
                    None
                }
            };
            if asks {
                let input = Input::StatusAnswer { peer: to, answer };
                let _ = feedback.send(input).await;
            }
        });
    }

    /// Answers a peer's request for part of an image, off the driver's task: the image must be
    /// one this node's report lists.
    fn serve_image(
        &self,
        from: String,
        id: String,
        offset: u64,
        len: u32,
        reply: oneshot::Sender<Response>,
    ) {
        let own = self.core.table().report(&self.node).cloned();
        let held = own.is_some_and(|report| report.images.iter().any(|h| h.id == id));
        let shelf = self.shelf.clone();
        tokio::spawn(async move {
            let part = match held {
                true => shelf.part(&from, &id, offset, len).await,
                false => ImagePart::Refused(format!("this node does not hold image {id}")),
            };
            if let ImagePart::Refused(why) | ImagePart::Busy(why) = &part {
                debug!(peer = %from, image = %id, %why, "a part of an image refused");
            }
            let _ = reply.send(Response::Image(part));
        });
    }

    /// Leaves the membership: delivers the datagrams that say so before returning.
    async fn leave(&mut self) {
        let effects = self.core.step(clock::now(), Input::Leave);
        let sends = effects.into_iter().filter_map(|e| match e {
            Effect::Membership { to, data } => Some(self.transport.deliver_membership(to, data)),
            _ => None,
        });
        let all = futures::future::join_all(sends.collect::<Vec<_>>());
        let _ = tokio::time::timeout(LEAVE_WAIT, all).await;
    }

    fn save_peers(&self, addrs: &[SocketAddr]) {
        let text: String = addrs.iter().map(|a| format!("{a}\n")).collect();
        if let Err(e) = std::fs::write(&self.peers_file, text) {
            warn!(file = %self.peers_file.display(), error = %e, "cannot save the known peers");
        }
    }
}

/// Kills containers whose liveness probe failed; their restart policy then decides.
async fn terminate<R: ContainerRuntime>(runtime: R, ids: Vec<String>) -> Event {
    for id in &ids {
        match runtime.terminate(id).await {
            Ok(()) => info!(%id, "liveness probe failed: container killed"),
            Err(e) => warn!(%id, error = %e, "liveness probe failed; cannot kill the container"),
        }
    }
    Event::Terminated
}

/// Runs a batch of actions: the removals first (a replacement may reuse the name of what it
/// replaces), a few engine calls in flight at once. The outcomes come in the actions' order.
async fn act<R: ContainerRuntime>(runtime: R, actions: Vec<Action>) -> Event {
    let (removals, rest): (Vec<usize>, Vec<usize>) =
        (0..actions.len()).partition(|&i| matches!(actions[i], Action::Remove { .. }));
    let mut outcomes = vec![None; actions.len()];
    for group in [removals, rest] {
        // Collected first: a stream over a borrowing closure trips the Send check.
        let calls: Vec<_> = group
            .iter()
            .map(|&i| execute(&runtime, &actions[i]))
            .collect();
        let results: Vec<_> = futures::stream::iter(calls)
            .buffered(ENGINE_CALLS_IN_FLIGHT)
            .collect()
            .await;
        for (i, result) in group.into_iter().zip(results) {
            outcomes[i] = Some(result);
        }
    }
    Event::Acted(
        outcomes
            .into_iter()
            .map(|o| o.expect("every action ran"))
            .collect(),
    )
}

async fn execute<R: ContainerRuntime>(runtime: &R, action: &Action) -> Result<(), RuntimeError> {
    let result = match action {
        Action::Create { spec, .. } => runtime.create_and_start(spec).await.map(|id| {
            info!(pod = %spec.hostname, container = %spec.name, %id, "container started");
        }),
        Action::Start { id, book_key } => runtime.start(id).await.map(|()| {
            info!(container = %book_key, %id, "container restarted");
        }),
        Action::Remove { id, why } => runtime.remove(id).await.map(|()| {
            info!(%id, why, "container removed");
        }),
    };
    if let Err(e) = &result {
        warn!(error = %e, "container action failed");
    }
    result
}
