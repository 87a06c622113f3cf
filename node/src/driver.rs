//! The driver: one task that feeds a node's [`NodeCore`] with what happens — network events,
//! the store's snapshots and whether it can persist, container events, the probes' outcomes,
//! timers, writes to acknowledge, the results of the work it runs — and carries out the
//! effects the core returns through the node's adapters: the [`Transport`], the
//! [`ContainerRuntime`], the [`Store`] (the document and its file), the peers file, and the
//! watches the API, the proxy and DNS read, and a [`Checker`] for the probes. Time comes from one clock
//! ([`crate::clock`]); the driver ends when the node's [`Shutdown`] fires.

use crate::clock;
use crate::membership::MemberId;
use crate::probe::Checker;
use crate::reconcile::{Action, ENGINE_CALLS_IN_FLIGHT, pass::Event};
use crate::runtime::{ContainerRuntime, RuntimeError, RuntimeEvent};
use crate::shutdown::Shutdown;
use crate::status::StatusTable;
use crate::store::Store;
use crate::transport::{Inbound, LocalDigest, NetEvent, Response, Transport};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tracing::{Instrument, debug, info, info_span, warn};
use weeble_core::node::{Answer, Effect, Input, NodeCore, Timer};
use weeble_core::status::{Send, StatusMessage};
use weeble_core::view::View;

/// What the rest of the node asks of the driver.
pub enum Command {
    /// A write to acknowledge once enough peers hold it (see `NodeConfig::replicate_to`).
    Write(oneshot::Sender<()>),
    /// Take no pods any more: the node is leaving.
    Leaving,
    /// Leave the membership and stop; `done` once the datagrams saying so are answered (or
    /// failed).
    Leave(oneshot::Sender<()>),
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
    pub store: Store,
    /// What this node holds, read by the transport on every membership send.
    pub digest: Arc<LocalDigest>,
    pub view: watch::Sender<Arc<View>>,
    pub table: watch::Sender<Arc<StatusTable>>,
    /// How many containers this node ran at the reconciler's last look.
    pub containers: watch::Sender<usize>,
    /// Where the known peer addresses are kept, for the next start.
    pub peers_file: PathBuf,
    pub feedback: mpsc::Sender<Input>,
    /// Permits for status pushes in flight ([`MAX_STATUS_SENDS`]).
    pub status_sends: Arc<Semaphore>,
    pub shutdown: Shutdown,
}

impl<T: Transport, R: ContainerRuntime, C: Checker> Driver<T, R, C> {
    pub async fn run(mut self, mut inboxes: Inboxes) {
        let mut writes: BTreeMap<u64, oneshot::Sender<()>> = BTreeMap::new();
        let mut next_write = 0;
        let mut snapshots = self.store.watch();
        let mut failing = self.store.persist_error();
        let mut shutdown = self.shutdown.clone();
        self.digest.set(self.core.digest());
        self.step(Input::Timer(Timer::Announce), &mut writes).await;
        let persisting = not_persisting(failing.borrow_and_update().clone());
        self.step(persisting, &mut writes).await;
        loop {
            let input = tokio::select! {
                _ = shutdown.wait() => return,
                Some(event) = inboxes.events.recv() => self.net_event(event, &mut writes).await,
                Some(fed) = inboxes.feedback.recv() => Some(fed),
                Some(event) = inboxes.containers.recv() => Some(Input::Container(event)),
                command = inboxes.commands.recv() => match command {
                    None => return,
                    Some(Command::Write(done)) => {
                        // The write's snapshot first (the store published it before it
                        // answered the write): the core then counts the syncs it starts.
                        if snapshots.has_changed().unwrap_or(false) {
                            let snapshot = snapshots.borrow_and_update().clone();
                            self.step(Input::Document(snapshot), &mut writes).await;
                        }
                        writes.insert(next_write, done);
                        next_write += 1;
                        Some(Input::Write(next_write - 1))
                    }
                    Some(Command::Leaving) => Some(Input::Leaving),
                    Some(Command::Leave(done)) => {
                        self.leave().await;
                        let _ = done.send(());
                        return;
                    }
                },
                r = snapshots.changed() => match r {
                    Ok(()) => Some(Input::Document(snapshots.borrow_and_update().clone())),
                    Err(_) => return,
                },
                r = failing.changed() => match r {
                    Ok(()) => Some(not_persisting(failing.borrow_and_update().clone())),
                    Err(_) => return,
                },
            };
            if let Some(input) = input {
                self.step(input, &mut writes).await;
            }
        }
    }

    /// Steps the core and carries out its effects; returns its answer to a request, if any.
    async fn step(
        &mut self,
        input: Input,
        writes: &mut BTreeMap<u64, oneshot::Sender<()>>,
    ) -> Option<Answer> {
        let effects = self.core.step(clock::now(), input);
        let mut answer = None;
        for effect in effects {
            match effect {
                Effect::Answer(a) => answer = Some(a),
                Effect::Replicated(id) => {
                    if let Some(done) = writes.remove(&id) {
                        let _ = done.send(());
                    }
                }
                other => self.carry(other).await,
            }
        }
        answer
    }

    /// A network event: into the core, with its answer back to the peer; a sync message
    /// goes to the store (which holds the document), not through the core.
    async fn net_event(
        &mut self,
        event: NetEvent,
        writes: &mut BTreeMap<u64, oneshot::Sender<()>>,
    ) -> Option<Input> {
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
                let answer = self.step(input, writes).await;
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
                let answer = self.step(Input::Status { from, message }, writes).await;
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
                let store = self.store.clone();
                tokio::spawn(async move {
                    let answer = match store.sync_in(&from, message).await {
                        Ok(message) => Response::Sync(message),
                        Err(e) => {
                            warn!(peer = %from, error = %e, "sync from peer refused");
                            Response::SyncRefused(e.to_string())
                        }
                    };
                    let _ = reply.send(answer);
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
            Effect::Sync { peer, differs } => {
                let (store, transport) = (self.store.clone(), self.transport.clone());
                let feedback = self.feedback.clone();
                tokio::spawn(async move {
                    let completed = sync_with(&store, &transport, peer.clone(), differs).await;
                    let peer = peer.peer_id;
                    let _ = feedback.send(Input::SyncEnded { peer, completed }).await;
                });
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
            Effect::Answer(_) | Effect::Replicated(_) => {}
        }
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
    /// [`MAX_STATUS_SENDS`] at once at most; the answer to versions goes back to the core.
    fn send_status(&self, Send { to, message }: Send) {
        let (transport, feedback) = (self.transport.clone(), self.feedback.clone());
        let versions = matches!(message, StatusMessage::Versions(_));
        let permit = match self.status_sends.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            // Versions are answered to the core, which waits for that answer.
            Err(_) if versions => None,
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
            if versions {
                let input = Input::StatusAnswer { peer: to, answer };
                let _ = feedback.send(input).await;
            }
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

/// Whether the store can persist, as the core hears it: a node that cannot is not Ready and
/// leaves placement until it can.
fn not_persisting(failing: Option<String>) -> Input {
    match &failing {
        Some(why) => warn!(%why, "this node cannot persist the desired state: not Ready"),
        None => info!("this node persists the desired state: Ready"),
    }
    Input::NotPersisting(failing.map(|e| format!("cannot persist the desired state: {e}")))
}

/// A bounded exchange: our message, their reply, until one side has nothing to say. True if
/// it got there (the peer then holds what this node held when it began).
///
/// `differs`: the peer's digest showed another document. If this node's sync state with it
/// says there is nothing to send all the same, that state is stale (the peer restarted and
/// lost a change, say): it starts over, or the two would never sync.
async fn sync_with<T: Transport>(
    store: &Store,
    transport: &T,
    peer: MemberId,
    differs: bool,
) -> bool {
    let mut next = store.sync_out(&peer.peer_id).await;
    if next.is_none() && differs {
        debug!(peer = %peer.name, "the peer's document differs, yet nothing to send: starting over");
        store.reset_peer(&peer.peer_id).await;
        next = store.sync_out(&peer.peer_id).await;
    }
    for _ in 0..16 {
        let Some(message) = next.take() else {
            return true;
        };
        match transport.sync(peer.clone(), message).await {
            Ok(None) => return true,
            Ok(Some(reply)) => match store.sync_in(&peer.peer_id, reply).await {
                Ok(answer) => next = answer,
                Err(e) => {
                    warn!(peer = %peer.name, error = %e, "sync reply rejected");
                    return false;
                }
            },
            Err(e) => {
                debug!(peer = %peer.name, error = %e, "sync failed; starting over next time");
                store.reset_peer(&peer.peer_id).await;
                return false;
            }
        }
    }
    false
}
