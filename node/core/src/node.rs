//! One node as a state machine, in the shape of raft-rs's `RawNode` and foca: the driver hands
//! [`NodeCore::step`] the time and one [`Input`] at a time, and carries out the [`Effect`]s it
//! returns, in order. `NodeCore` is a router: each input goes to the sub-core it is for —
//! [`Membership`] (SWIM), [`StatusGossip`], [`DocSync`], the [`Planner`] — and what one of them
//! decides that another must hear is joined here:
//!
//! - a peer's digest differs from ours → a status exchange, a document sync and/or a member
//!   pull with it (the smaller peer id begins, so that two nodes do not both start one);
//! - a member joined → its address is remembered; one died → its report is forgotten (unless
//!   it is back under a renewed identity) and its connections closed;
//! - peers declared this node dead and it rejoined → its report spreads again, and it
//!   announces itself at once;
//! - the members, the document or the set of nodes taking no pods changed → a new view (for
//!   a change of members, [`VIEW_AFTER`] later, with the changes that come meanwhile, which
//!   membership lists only then unless one is a death), with
//!   placement computed again only if what it reads changed, and a reconcile pass
//!   ([`Reconciler`]), as after a container stopped, the probes found something, or (while
//!   pods are handed over) the status table changed;
//! - the reconciler's pods → this node's status report, spread by [`StatusGossip`] with the
//!   rest of its news a moment later ([`Timer::Push`]); its probes
//!   → the [`Prober`], whose findings wake it again;
//! - the status table, the document or the live members changed → a new digest, carried by
//!   every datagram;
//! - the document cannot be persisted → the node reports itself not Ready, and takes no pods.
//!
//! The document ([`Document`]) is put on disk before anything that shows a change leaves the
//! node: a step that changes it ends with [`Effect::Persist`], and what follows the change (the
//! write's answer, sync messages, the new snapshot) waits for [`Input::Persisted`].

use crate::document::{
    DocEffect, Document, Op, Persist, PersistFailure, Stored, SyncAnswer, WriteError,
};
use crate::gossip::{Digest, doc_fingerprint, starts_exchange};
use crate::images::{self, Holder};
use crate::keys::NodeKey;
use crate::membership::addresses::Addresses;
use crate::membership::{
    self, ANNOUNCES_PER_TICK, Detection, Liveness, MemberId, Membership, Peers, announce_targets,
    gone_for_good, live_peers, take_answer, unreached,
};
use crate::probe::{Check, Health, Prober};
use crate::reconcile::pass::{Context, Event, Reconciler, Settings, Work};
use crate::reconcile::pulls::ImagePull;
use crate::reconcile::{Action, wakes};
use crate::runtime::RuntimeEvent;

use crate::status::{
    MAX_HELD_IMAGES, NodeStatus, PUSH_AFTER, Send, StatusGossip, StatusMessage, StatusTable,
};
use crate::view::{Placements, Planner, View};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};
use weeble_crdt::{Outcome, Snapshot};

/// How often a node announces itself to known addresses with no live member: that is how a
/// new node joins, and how the sides of a healed partition find each other again.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);

/// How long a change of members waits before the view is built again, gathering the changes
/// that come meanwhile: a thousand nodes joining are a few views at each node, not a thousand
/// (each lists every member and asks for their placement); and nodes that die together (a
/// rack, a switch, a partition) are one move of their replicas, not one per death heard, each
/// moving again the replicas the last one placed on a node whose death was still on its way.
/// A death's replicas start elsewhere this much later: 10 of 1,000 simulated nodes crashing at
/// once had made each survivor place everything again about 4 times, in 3,700 distinct views.
pub const VIEW_AFTER: Duration = Duration::from_millis(100);

/// The ids of the writes a node makes itself ([`Work::Write`]) have this bit set: never
/// one a driver gave a write it was asked for.
pub const OWN_WRITE: u64 = 1 << 63;

/// Everything a node's core is told at start.
#[derive(Debug, Clone)]
pub struct Config {
    pub me: MemberId,
    /// The node's key, whose peer id is `me`'s: it signs this node's status reports.
    pub key: NodeKey,
    pub detection: Detection,
    /// Peers beyond ⌈ln N⌉ a change is pushed to (`gossip::push_width`).
    pub fanout: usize,
    /// Other nodes that must hold a write before it is acknowledged (all live peers if fewer).
    pub replicate_to: usize,
    /// This life's start (Unix ms): its status reports win over the previous life's.
    pub epoch: u64,
    /// Seeds every random choice (probe order, the peers a change is pushed to).
    pub seed: u64,
    /// Peer addresses given (`--join`) or saved by an earlier run.
    pub known: BTreeSet<SocketAddr>,
    pub reconcile: Settings,
    /// What this process's cores share.
    pub shared: Shared,
}

/// What the cores of one process share: memos of pure functions (the same inputs give the
/// same result), so that cores that compute the same thing, as the simulator's thousands do,
/// compute and hold it once. `weeble node` runs one core, for which they are its own.
#[derive(Debug, Clone, Default)]
pub struct Shared {
    pub placements: Placements,
    pub membership: membership::Shared,
}

/// A life's epoch (Unix ms), which orders its status reports and identity (`bump`) after the
/// last life's (`last`): now, or one past the last if the clock reads earlier (a device that
/// boots with no clock until NTP answers, or a clock stepped back). Without this, a node
/// restarted behind its last life had its reports refused by every peer, and its identity
/// lost to the old one.
pub fn next_epoch(last: Option<u64>, now_ms: u64) -> u64 {
    last.map_or(now_ms, |last| now_ms.max(last + 1))
}

/// A timer the core asked for ([`Effect::Schedule`]), handed back as [`Input::Timer`].
#[derive(Debug, Clone, PartialEq)]
pub enum Timer {
    Membership(foca::Timer<MemberId>),
    /// Announce to known addresses with no live member (every [`ANNOUNCE_EVERY`]).
    Announce,
    /// The reconciler's wait is over (only the newest token counts).
    Reconcile(u64),
    /// Probes may be due.
    Probe,
    /// Try to persist again ([`crate::document::RETRY_PERSIST`]).
    Persist,
    /// Push the status news gathered since [`PUSH_AFTER`] ago (this node's own report may
    /// wait longer: [`crate::status::START_HOLD`]).
    Push,
    /// Build the view for the members that changed since [`VIEW_AFTER`] ago.
    View,
}

/// What happens to a node. Peers are named by their libp2p id.
#[derive(Debug)]
pub enum Input {
    /// A membership datagram from `from`, and what its sender holds. `request`: the sender
    /// waits for the datagram this one calls for at once, which is among the effects as
    /// [`Effect::Answer`].
    Datagram {
        from: String,
        data: Vec<u8>,
        digest: Digest,
        request: bool,
    },
    /// A status message from peer `from`; its answer is among the effects as
    /// [`Effect::Answer`].
    Status {
        from: String,
        message: StatusMessage,
    },
    /// The answer to the versions this node sent `peer` (`None`: the exchange failed).
    StatusAnswer {
        peer: MemberId,
        answer: Option<StatusMessage>,
    },
    Timer(Timer),
    /// The transport lost its last connection to this peer.
    Disconnected(String),
    /// Nothing listens at this peer's address any more: its process is gone.
    Gone(String),
    /// A write (`id` unique among those not answered): [`Effect::Written`] answers it once it
    /// is on disk, and [`Effect::Replicated`] once `replicate_to` peers hold it.
    Write {
        id: u64,
        op: Op,
    },
    /// A peer's document sync message (`id` unique among those not answered):
    /// [`Effect::SyncAnswer`] answers it.
    SyncRequest {
        id: u64,
        from: String,
        message: Vec<u8>,
    },
    /// The reply to the sync message this node sent `peer` ([`Effect::Sync`]); `Err`: it was
    /// not delivered, or refused.
    SyncReply {
        peer: String,
        reply: SyncAnswer,
    },
    /// What came of the [`Effect::Persist`] out.
    Persisted(Result<(), PersistFailure>),
    /// What came of the runtime work the reconciler asked for.
    Reconcile(Event),
    /// A container event: one that stopped or went away calls for a reconcile pass.
    Container(RuntimeEvent),
    /// A probe's outcome (`passed`: it succeeded within its timeout).
    Probed {
        check: Check,
        passed: bool,
    },
    /// This node is leaving: it takes no pods any more, so that its replicas move.
    Leaving,
    /// Leave the membership now: the effects are the datagrams that say so, to deliver
    /// before stopping. Feed the core nothing more afterwards.
    Leave,
}

/// The answer to a request input.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The datagram a membership request calls for, if any.
    Membership(Option<Vec<u8>>),
    /// The answer to a status message (`None`: a bare acknowledgement).
    Status(Option<StatusMessage>),
}

/// What the driver must do.
#[derive(Debug, Clone)]
pub enum Effect {
    /// A membership datagram, best effort; a datagram the peer answers with comes back as
    /// [`Input::Datagram`].
    Membership { to: MemberId, data: Vec<u8> },
    /// Answer the request this step was given.
    Answer(Answer),
    /// A status message; if it is `Versions`, hand the answer back as [`Input::StatusAnswer`].
    Status(Send),
    /// Put this on disk, then hand back [`Input::Persisted`]: one is out at a time.
    Persist(Persist),
    /// A document sync message; hand its reply back as [`Input::SyncReply`].
    Sync { to: MemberId, message: Vec<u8> },
    /// The answer to [`Input::SyncRequest`] `id`.
    SyncAnswer { id: u64, answer: SyncAnswer },
    /// [`Input::Write`] `id` is on disk, or was refused.
    Written {
        id: u64,
        result: Result<Vec<Outcome>, WriteError>,
    },
    /// [`Input::Write`] `id` is held by enough peers (or every one that could be reached):
    /// acknowledge it.
    Replicated(u64),
    /// The desired state changed (and is on disk).
    Snapshot(Arc<Snapshot>),
    /// Hand `timer` back after `after`.
    Schedule { after: Duration, timer: Timer },
    /// List this node's containers; hand them back as `Input::Reconcile(Event::Listed)`.
    ListContainers,
    /// Kill these running containers (their liveness probe failed); then
    /// `Input::Reconcile(Event::Terminated)`.
    Terminate(Vec<String>),
    /// Run these container actions, the removals first, a few engine calls at once
    /// (`reconcile::ENGINE_CALLS_IN_FLIGHT`); then `Input::Reconcile(Event::Acted)`.
    Act(Vec<Action>),
    /// Pull this image into the engine, beside everything else (a pull may take minutes),
    /// from its registry or else from these peers that hold it (a pushed image: from them
    /// only); then `Input::Reconcile(Event::Pulled)`.
    Pull {
        pull: ImagePull,
        holders: Vec<Holder>,
    },
    /// Run this probe (within its timeout) and hand back whether it passed, as
    /// [`Input::Probed`].
    Probe(Check),
    /// How many containers this node runs.
    Containers(usize),
    /// The connection to this member closed: dial it to learn whether its process is gone
    /// ([`Input::Gone`]).
    Check(MemberId),
    /// Close every connection to this peer (declared dead).
    Disconnect(String),
    /// Every peer address this node knows, after it met new ones (at most once an announce
    /// tick): keep them, for the next start.
    Known(Vec<SocketAddr>),
    /// What this node holds now, for every membership datagram to carry.
    Digest(Digest),
    /// The view changed.
    View(Arc<View>),
    /// The status table changed.
    Table(Arc<StatusTable>),
}

/// One node's decisions.
pub struct NodeCore {
    /// The writes this node made itself ([`Work::Write`]), counted for their ids.
    own_writes: u64,
    membership: Membership,
    status: StatusGossip,
    document: Document,
    /// Why the document could not be persisted, as the status report says.
    not_persisting: Option<String>,
    planner: Planner,
    reconciler: Reconciler,
    prober: Prober,
    /// What the probes say now, as the reconciler reads it.
    health: Arc<Health>,
    /// When the probe timer asked for is due (Unix ms), if one is.
    probe_at: Option<i64>,
    /// The peer addresses this node was given or has met, but for those of live members,
    /// which membership holds: a member's address is kept here once it is declared down.
    /// Every node holding every member's address twice was 15 bytes a pair of nodes at
    /// 2,000 simulated nodes.
    known: Addresses,
    /// Whether the addresses changed since they were last handed out ([`Effect::Known`], at
    /// most once an announce tick: a thousand joins are one write of the peers file, not a
    /// thousand).
    known_changed: bool,
    /// The known addresses with no live member, and the members' generation and the number
    /// of known addresses they were listed at.
    unreached: ((u64, usize), Vec<SocketAddr>),
    /// Where the next round of announces starts among the addresses with no live member.
    turn: usize,
    /// Members declared down, whose reports are forgotten once the members are listed again
    /// (with the view) unless they are back under a renewed identity by then.
    downs: Vec<MemberId>,
    /// The live peers, listed again when the members change.
    peers: Peers,
    /// The members' generation `peers` were listed at.
    peers_generation: u64,
    unschedulable: BTreeSet<String>,
    digest: Digest,
    view: Arc<View>,
    /// The members' generation `view` was built at.
    view_generation: u64,
    /// Whether [`Timer::View`] is scheduled.
    view_due: bool,
    /// Whether the view must be built at the end of this step ([`Timer::View`] came).
    view_now: bool,
    /// What peers sent that this node refused, told in the log now and then.
    refused: Refused,
}

/// Why a peer's message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Refusal {
    NotAdmitted,
    Unsigned,
    AnothersName,
    TooManyImages,
}

/// Messages refused, told in the log once every [`Refused::EVERY`] at most for each reason,
/// with how many came since: a flood of them is a line, not one a message.
#[derive(Default)]
struct Refused(BTreeMap<Refusal, (Option<Duration>, u64)>);

impl Refused {
    const EVERY: Duration = Duration::from_secs(10);

    fn note(&mut self, now: Duration, why: Refusal, what: impl FnOnce() -> String) {
        let (told_at, since) = self.0.entry(why).or_insert((None, 0));
        *since += 1;
        if told_at.is_none_or(|at| now >= at + Self::EVERY) {
            warn!(refused_since_last_told = *since, "refused {}", what());
            *told_at = Some(now);
            *since = 0;
        }
    }
}

impl NodeCore {
    /// A node as it starts at `now`, holding the document read from its file. Its first input
    /// should be `Input::Timer(Timer::Announce)`, which starts the announces and the first
    /// reconcile pass.
    pub fn new(config: Config, stored: Stored, now: Duration) -> Self {
        let name = config.me.name.clone();
        let membership = Membership::new(
            config.me,
            config.detection,
            config.seed,
            config.shared.membership,
        );
        let status = StatusGossip::new(
            name,
            config.key,
            config.epoch,
            config.fanout,
            config.seed ^ 1,
        );
        let document = Document::new(stored, config.fanout, config.replicate_to, config.seed ^ 2);
        let mut planner = Planner::new(config.shared.placements);
        let unschedulable = status.table().unschedulable().clone();
        let snapshot = document.snapshot();
        let view = Arc::new(planner.view(membership.members(), &unschedulable, snapshot));
        let digest = Digest {
            status: status.table().fingerprint(),
            doc: doc_fingerprint(&snapshot.heads),
            members: membership.fingerprint(),
        };
        let mut known: Addresses = config.known.into_iter().collect();
        known.remove(&membership.me().p2p);
        NodeCore {
            own_writes: 0,
            membership,
            status,
            document,
            not_persisting: None,
            planner,
            reconciler: Reconciler::new(config.reconcile, now.as_millis() as i64),
            prober: Prober::default(),
            health: Arc::default(),
            probe_at: None,
            known,
            known_changed: false,
            unreached: ((u64::MAX, 0), Vec::new()),
            turn: 0,
            downs: Vec::new(),
            peers: Peers::default(),
            peers_generation: 0,
            unschedulable,
            digest,
            view,
            view_generation: 0,
            view_due: false,
            view_now: false,
            refused: Refused::default(),
        }
    }

    pub fn me(&self) -> &MemberId {
        self.membership.me()
    }

    /// What a peer the cluster does not admit gets for `input`, if it came from one: its
    /// requests refused, its connections closed, nothing it sent taken in.
    fn turned_away(&mut self, now: Duration, input: &Input) -> Option<Vec<Effect>> {
        let peers = &self.document.snapshot().peers;
        let (from, answer) = match input {
            Input::Datagram { from, request, .. } if !peers.admits(from) => (
                from,
                request.then_some(Effect::Answer(Answer::Membership(None))),
            ),
            Input::Status { from, .. } if !peers.admits(from) => {
                (from, Some(Effect::Answer(Answer::Status(None))))
            }
            Input::SyncRequest { id, from, .. } if !peers.admits(from) => {
                let answer = Err(format!("peer {from} is not admitted to the cluster"));
                (from, Some(Effect::SyncAnswer { id: *id, answer }))
            }
            _ => return None,
        };
        self.refused.note(now, Refusal::NotAdmitted, || {
            format!("a message from {from}, which is not admitted")
        });
        Some(
            answer
                .into_iter()
                .chain([Effect::Disconnect(from.clone())])
                .collect(),
        )
    }

    /// Declares down every live member the cluster does not admit (allowed no more, or
    /// denied): its connections close with its death, and nothing it sends is taken in
    /// ([`Self::turned_away`]). A no-op while no peer is allowed or denied.
    fn turn_away_members(&mut self, effects: &mut Vec<Effect>) {
        let peers = &self.document.snapshot().peers;
        if peers.iter().next().is_none() {
            return;
        }
        let me = self.me().name.clone();
        let out: Vec<String> = self
            .membership
            .members()
            .iter()
            .filter(|(m, l)| *l != Liveness::Down && m.name != me && !m.peer_id.is_empty())
            .filter(|(m, _)| !peers.admits(&m.peer_id))
            .map(|(m, _)| m.peer_id.clone())
            .collect();
        if out.is_empty() {
            return;
        }
        for peer in out {
            info!(%peer, "peer not admitted: declared down");
            let swim = self.membership.declare_down(&peer);
            self.swim(swim, effects);
            effects.push(Effect::Disconnect(peer));
        }
        // The view about to be built leaves them out.
        self.membership.list();
    }

    /// Keeps of `message`'s reports those signed by their node: by the key of a member of
    /// that name, one the cluster admits. A report of a node not listed yet is refused too;
    /// once it is, the status digests differ and an exchange brings the report again. A
    /// report that lists more than [`MAX_HELD_IMAGES`] images is refused as well.
    fn signed_only(&mut self, now: Duration, message: &mut StatusMessage) {
        let Some(reports) = message.reports_mut() else {
            return;
        };
        let members = self.membership.members();
        let peers = &self.document.snapshot().peers;
        let signed = |report: &NodeStatus| {
            members
                .named(&report.node)
                .any(|(m, _)| peers.admits(&m.peer_id) && report.is_signed_by(&m.peer_id))
        };
        let before = reports.len();
        reports.retain(|report| signed(report));
        if reports.len() < before {
            let refused = before - reports.len();
            self.refused.note(now, Refusal::Unsigned, || {
                format!("{refused} status reports not signed by their node's key")
            });
        }
        // No node lists more: one that does is not kept, whoever signed it.
        let before = reports.len();
        reports.retain(|report| report.images.len() <= MAX_HELD_IMAGES);
        if reports.len() < before {
            let refused = before - reports.len();
            self.refused.note(now, Refusal::TooManyImages, || {
                format!("{refused} status reports listing more than {MAX_HELD_IMAGES} images")
            });
        }
    }

    pub fn view(&self) -> &Arc<View> {
        &self.view
    }

    /// Whether the cluster admits `peer_id`: what the driver asks before it serves a peer's
    /// request for a part of an image or a pod's log or removal (the others come through
    /// [`Self::step`], which turns such a peer away itself).
    pub fn admits(&self, peer_id: &str) -> bool {
        self.document.snapshot().peers.admits(peer_id)
    }

    pub fn table(&self) -> &Arc<StatusTable> {
        self.status.table()
    }

    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// Takes one input at time `now` (since the Unix epoch; the driver's one clock) and
    /// returns what to do.
    pub fn step(&mut self, now: Duration, input: Input) -> Vec<Effect> {
        if let Some(refusal) = self.turned_away(now, &input) {
            return refusal;
        }
        let table_before = self.status.table().fingerprint();
        let mut effects = Vec::new();
        match input {
            Input::Datagram {
                from,
                data,
                request,
                ..
            } if membership::sender(&data).is_some_and(|sender| sender != from) => {
                // Another's name on a datagram: the transport authenticated `from`, and a
                // node speaks for itself only (it cannot refute, ack or leave for another).
                self.refused.note(now, Refusal::AnothersName, || {
                    format!("a membership datagram from {from} in another's name")
                });
                if request {
                    effects.push(Effect::Answer(Answer::Membership(None)));
                }
            }
            Input::Datagram {
                from,
                data,
                digest,
                request,
            } => {
                let mut swim = self.membership.receive(&data, now);
                if request {
                    let answer = swim.as_mut().ok().and_then(|e| take_answer(e, &from));
                    effects.push(Effect::Answer(Answer::Membership(answer)));
                }
                self.swim(swim, &mut effects);
                self.refresh_peers();
                self.compare(now, &from, digest, &mut effects);
            }
            Input::Status { mut message, .. } => {
                self.signed_only(now, &mut message);
                let answer = self.status.receive(message, now);
                effects.push(Effect::Answer(Answer::Status(answer)));
            }
            Input::StatusAnswer { peer, mut answer } => {
                if let Some(answer) = &mut answer {
                    self.signed_only(now, answer);
                }
                let sends = self.status.answered(&peer, answer, now);
                effects.extend(sends.into_iter().map(Effect::Status));
            }
            Input::Timer(Timer::Membership(timer)) => {
                let swim = self.membership.timer(timer, now);
                self.swim(swim, &mut effects);
            }
            Input::Timer(Timer::Announce) => {
                if std::mem::take(&mut self.known_changed) {
                    effects.push(Effect::Known(self.addresses()));
                }
                let first = self.turn == 0;
                let swim = Ok(self.announce());
                self.swim(swim, &mut effects);
                effects.push(Effect::Schedule {
                    after: ANNOUNCE_EVERY,
                    timer: Timer::Announce,
                });
                if first {
                    let mut doc = Vec::new();
                    self.document.start(&mut doc);
                    self.document_effects(doc, &mut effects);
                    self.reconcile(now, Event::Wake, &mut effects);
                }
            }
            Input::Timer(Timer::Reconcile(token)) => {
                self.reconcile(now, Event::Due(token), &mut effects)
            }
            Input::Disconnected(peer) => {
                let member = self
                    .membership
                    .members()
                    .iter()
                    .find(|(m, l)| m.peer_id == peer && *l != Liveness::Down);
                effects.extend(member.map(|(m, _)| Effect::Check(m.clone())));
            }
            Input::Gone(peer) => {
                let swim = self.membership.declare_down(&peer);
                self.swim(swim, &mut effects);
            }
            Input::Write { id, op } => {
                let mut doc = Vec::new();
                let at_ms = now.as_millis() as i64;
                self.document.write(id, op, at_ms, &self.peers, &mut doc);
                self.document_effects(doc, &mut effects);
            }
            Input::SyncRequest { id, from, message } => {
                let mut doc = Vec::new();
                self.document
                    .request(id, from, message, &self.peers, &mut doc);
                self.document_effects(doc, &mut effects);
            }
            Input::SyncReply { peer, reply } => {
                let mut doc = Vec::new();
                self.document.reply(peer, reply, &self.peers, &mut doc);
                self.document_effects(doc, &mut effects);
            }
            Input::Persisted(result) => {
                let mut doc = Vec::new();
                self.document.persisted(result, &self.peers, &mut doc);
                self.document_effects(doc, &mut effects);
            }
            Input::Timer(Timer::View) => {
                self.membership.list();
                self.view_due = false;
                self.view_now = true;
            }
            Input::Timer(Timer::Push) => {
                let sends = self.status.push(&self.peers, now);
                effects.extend(sends.into_iter().map(Effect::Status));
            }
            Input::Timer(Timer::Persist) => {
                let mut doc = Vec::new();
                self.document.retry(&mut doc);
                self.document_effects(doc, &mut effects);
            }
            Input::Reconcile(event) => self.reconcile(now, event, &mut effects),
            Input::Container(event) => {
                if wakes(&event.action) {
                    self.reconcile(now, Event::Wake, &mut effects);
                }
            }
            Input::Probed { check, passed } => {
                self.prober.record(&check, passed, now.as_millis() as i64);
                self.probed(now, &mut effects);
            }
            Input::Timer(Timer::Probe) => {
                self.probe_at = None;
                self.probe(now, &mut effects);
            }
            Input::Leaving => {
                self.status.set_leaving();
            }
            Input::Leave => {
                info!("leaving the cluster");
                let swim = Ok(self.membership.leave());
                self.swim(swim, &mut effects);
            }
        }
        self.refresh_peers();
        self.publish(now, table_before, &mut effects);
        effects
    }

    /// Hands the reconciler `event`, with what it reads now, and carries out its work.
    fn reconcile(&mut self, now: Duration, event: Event, effects: &mut Vec<Effect>) {
        let ctx = Context {
            now_ms: now.as_millis() as i64,
            view: &self.view,
            table: self.status.table(),
            health: &self.health,
        };
        let work = self.reconciler.step(event, ctx);
        self.work(now, work, effects);
    }

    /// The prober's findings or checks changed: a pass if the containers' health did; the
    /// probes that are due now.
    fn probed(&mut self, now: Duration, effects: &mut Vec<Effect>) {
        let health = self.prober.health();
        if *self.health != health {
            self.health = Arc::new(health);
            self.reconcile(now, Event::Wake, effects);
        }
        self.probe(now, effects);
    }

    /// Runs the probes that are due, and asks to be woken when the next one is.
    fn probe(&mut self, now: Duration, effects: &mut Vec<Effect>) {
        let now_ms = now.as_millis() as i64;
        effects.extend(self.prober.take_due(now_ms).into_iter().map(Effect::Probe));
        let Some(due) = self.prober.next_due_ms() else {
            return;
        };
        if self.probe_at.is_none_or(|at| due < at) {
            self.probe_at = Some(due);
            effects.push(Effect::Schedule {
                after: Duration::from_millis((due - now_ms).max(0) as u64),
                timer: Timer::Probe,
            });
        }
    }

    /// The reconciler's work: its pods become this node's status report, its probes the
    /// prober's; the rest is the driver's.
    fn work(&mut self, now: Duration, work: Vec<Work>, effects: &mut Vec<Effect>) {
        for w in work {
            match w {
                Work::Pods(pods) => {
                    self.status.set_pods(pods);
                }
                Work::Images(images) => self.status.set_images(images),
                Work::WakeIn { ms, token } => effects.push(Effect::Schedule {
                    after: Duration::from_millis(ms.max(0) as u64),
                    timer: Timer::Reconcile(token),
                }),
                Work::List => effects.push(Effect::ListContainers),
                Work::Terminate(ids) => effects.push(Effect::Terminate(ids)),
                Work::Act(actions) => effects.push(Effect::Act(actions)),
                Work::Pull(pull) => {
                    let (table, me) = (self.status.table(), &self.me().name);
                    let holders = images::holders(table, &self.peers, me, &pull);
                    effects.push(Effect::Pull { pull, holders });
                }
                Work::Checks(checks) => {
                    self.prober.set(checks);
                    self.probed(now, effects);
                }
                Work::Containers(n) => effects.push(Effect::Containers(n)),
                Work::Write(op) => {
                    self.own_writes += 1;
                    let id = OWN_WRITE | self.own_writes;
                    let mut doc = Vec::new();
                    let at_ms = now.as_millis() as i64;
                    self.document.write(id, op, at_ms, &self.peers, &mut doc);
                    self.document_effects(doc, effects);
                }
            }
        }
    }

    /// Announces to a few known addresses at which no member is alive.
    fn announce(&mut self) -> Vec<membership::Effect> {
        let listed_at = (self.membership.generation(), self.known.len());
        if self.unreached.0 != listed_at {
            self.unreached = (listed_at, unreached(&self.known, self.membership.members()));
        }
        let seeds = announce_targets(&self.unreached.1, self.turn);
        self.turn = self.turn.wrapping_add(ANNOUNCES_PER_TICK);
        let mut effects = Vec::new();
        for seed in seeds {
            match self.membership.join(seed) {
                Ok(more) => effects.extend(more),
                Err(e) => debug!(%seed, error = %e, "announce failed"),
            }
        }
        effects
    }

    /// Carries out what membership decided.
    fn swim(
        &mut self,
        swim: Result<Vec<membership::Effect>, membership::MembershipError>,
        effects: &mut Vec<Effect>,
    ) {
        let swim = match swim {
            Ok(swim) => swim,
            Err(e) => {
                debug!(error = %e, "membership message rejected");
                return;
            }
        };
        for effect in swim {
            match effect {
                membership::Effect::Send { to, data } => {
                    effects.push(Effect::Membership { to, data })
                }
                membership::Effect::Schedule { after, timer } => effects.push(Effect::Schedule {
                    after,
                    timer: Timer::Membership(timer),
                }),
                membership::Effect::Up(m) => {
                    info!(peer = %m.name, addr = %m.p2p, "peer joined");
                    self.status.returned(&m.name);
                    self.known.remove(&m.p2p);
                    self.known_changed = true;
                }
                membership::Effect::Down(m) => {
                    info!(peer = %m.name, "peer declared dead");
                    if m.p2p != self.me().p2p {
                        self.known_changed |= self.known.insert(m.p2p);
                    }
                    self.document.forget(&m.peer_id);
                    self.downs.push(m.clone());
                    effects.push(Effect::Disconnect(m.peer_id.clone()));
                }
                membership::Effect::Active => info!("joined the cluster"),
                membership::Effect::Idle => info!("no live peer left: running alone"),
                membership::Effect::Rejoined(me) => {
                    info!(
                        bump = me.bump,
                        "peers had declared this node dead: rejoining under a renewed identity"
                    );
                    // Peers forgot this node's status: spread it again; and introduce the new
                    // identity now rather than at the next announce.
                    self.status.renew();
                    let more = Ok(self.announce());
                    self.swim(more, effects);
                }
            }
        }
    }

    /// A peer's digest: if what it holds differs from what this node holds, and this node
    /// begins exchanges with it, an exchange.
    fn compare(&mut self, now: Duration, from: &str, theirs: Digest, effects: &mut Vec<Effect>) {
        // The members may have changed in this very step; the digest is published after it.
        let mine = Digest {
            members: self.membership.fingerprint(),
            ..self.digest
        };
        let differs = mine.differs(&theirs);
        if !differs.any() || !starts_exchange(&self.me().peer_id, from) {
            return;
        }
        let Some(peer) = self.peers.find(from).cloned() else {
            return;
        };
        if differs.status {
            effects.extend(self.status.exchange(&peer, now).map(Effect::Status));
        }
        if differs.doc {
            let mut doc = Vec::new();
            self.document.differs(&peer, &self.peers, &mut doc);
            self.document_effects(doc, effects);
        }
        if differs.members {
            let pull = Ok(self.membership.pull(&peer, now));
            self.swim(pull, effects);
        }
    }

    /// What the document decided: the driver's, but for a new snapshot, which also changes
    /// the digest.
    fn document_effects(&mut self, doc: Vec<DocEffect>, effects: &mut Vec<Effect>) {
        for effect in doc {
            let effect = match effect {
                DocEffect::Persist(persist) => Effect::Persist(persist),
                DocEffect::Send { peer, message } => Effect::Sync { to: peer, message },
                DocEffect::Answer { id, answer } => Effect::SyncAnswer { id, answer },
                DocEffect::Written { id, result } => Effect::Written { id, result },
                DocEffect::Replicated(id) => Effect::Replicated(id),
                DocEffect::Changed(snapshot) => {
                    self.digest.doc = doc_fingerprint(&snapshot.heads);
                    effects.push(Effect::Digest(self.digest));
                    Effect::Snapshot(snapshot)
                }
                DocEffect::RetryIn(after) => Effect::Schedule {
                    after,
                    timer: Timer::Persist,
                },
            };
            effects.push(effect);
        }
    }

    /// Whether this node can persist the document, as its status report says: a node that
    /// cannot is not Ready, and leaves placement until it can.
    fn report_persisting(&mut self) {
        if self.document.failing() == self.not_persisting.as_deref() {
            return;
        }
        self.not_persisting = self.document.failing().map(str::to_string);
        let why = match &self.not_persisting {
            Some(why) => {
                warn!(%why, "this node cannot persist the desired state: not Ready");
                Some(format!("cannot persist the desired state: {why}"))
            }
            None => {
                info!("this node persists the desired state again: Ready");
                None
            }
        };
        self.status.set_not_ready(why);
    }

    /// Every peer address this node knows: the live members' and the others it was given or
    /// has met.
    fn addresses(&self) -> Vec<SocketAddr> {
        let mut all = self.known.clone();
        for m in live_peers(self.membership.members(), &self.me().name) {
            all.insert(m.p2p);
        }
        all.remove(&self.me().p2p);
        all.iter().collect()
    }

    /// Lists the live peers again if the members changed since they were last listed.
    fn refresh_peers(&mut self) {
        if self.membership.generation() != self.peers_generation {
            self.peers_generation = self.membership.generation();
            let members = self.membership.members().clone();
            self.peers = Peers::new(members, &self.me().name);
        }
    }

    /// Publishes what changed in this step: the table and digest, the view; wakes the
    /// reconciler if what it reads changed.
    fn publish(&mut self, now: Duration, table_before: u64, effects: &mut Vec<Effect>) {
        self.report_persisting();
        if !self.membership.unlisted() {
            for m in std::mem::take(&mut self.downs) {
                if gone_for_good(self.membership.members(), &m) {
                    self.status.forget(&m.name);
                }
            }
        }
        let table_changed = self.status.table().fingerprint() != table_before;
        let snapshot = self.document.snapshot();
        let mut view_changed = !Arc::ptr_eq(snapshot, &self.view.snapshot);
        let members_changed =
            self.membership.generation() != self.view_generation || self.membership.unlisted();
        let at_once = std::mem::take(&mut self.view_now);
        if members_changed && !at_once {
            if !self.view_due {
                self.view_due = true;
                effects.push(Effect::Schedule {
                    after: VIEW_AFTER,
                    timer: Timer::View,
                });
            }
        } else {
            view_changed |= members_changed;
        }
        let mut wake = table_changed && self.reconciler.watches_status();
        let members = self.membership.fingerprint();
        if table_changed || members != self.digest.members {
            self.digest.status = self.status.table().fingerprint();
            self.digest.members = members;
            effects.push(Effect::Digest(self.digest));
        }
        if table_changed {
            effects.push(Effect::Table(self.status.table().clone()));
            let unschedulable = self.status.table().unschedulable();
            if *unschedulable != self.unschedulable {
                self.unschedulable = unschedulable.clone();
                view_changed = true;
            }
        }
        if view_changed {
            self.turn_away_members(effects);
            for (m, was, now) in
                membership::suspicions(&self.view.members, self.membership.members())
            {
                match now {
                    Liveness::Suspect => info!(peer = %m.name, "peer suspected"),
                    _ => info!(peer = %m.name, ?was, "peer no longer suspected"),
                }
            }
            let view = self.planner.view(
                self.membership.members(),
                &self.unschedulable,
                self.document.snapshot(),
            );
            self.view = Arc::new(view);
            self.view_generation = self.membership.generation();
            effects.push(Effect::View(self.view.clone()));
            wake = true;
        }
        if wake {
            self.reconcile(now, Event::Wake, effects);
        }
        if self.status.push_due() {
            effects.push(Effect::Schedule {
                after: PUSH_AFTER,
                timer: Timer::Push,
            });
        }
    }
}

#[cfg(test)]
mod tests;
