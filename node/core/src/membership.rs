//! Membership: who is in the cluster and whether they are alive, by SWIM with suspicion and
//! incarnation numbers (the `foca` crate).
//!
//! A pure core: it takes datagrams and timer events and returns effects (what to send to whom,
//! what to schedule, who came up or went down). It knows no network, no clock and no tokio:
//! the agent carries its datagrams over libp2p and runs its timers, and the simulator can
//! run the very same code with a virtual clock.
//!
//! Two protocols share the membership channel, each datagram beginning with its own byte:
//! SWIM's (foca's datagrams, as they are), and the member pull ([`pull`]) that mends what
//! SWIM's rumours missed.

pub mod addresses;
pub mod pull;

use crate::hash::{ByHash, mix};
use crate::memo;
use crate::wire::BINCODE;
use bytes::{Buf, BufMut};
use foca::{AccumulatingRuntime, Foca, Identity, OwnedNotification, State, Timer};
use pull::{Buckets, Pacing};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weeble_crdt::{Labels, ResourceAmounts};

/// A member as the cluster knows it: everything another node needs to reach it and place
/// work on it. Sent in every membership message, so kept small; shared, not copied: SWIM's
/// list, the core's, the live peers and the view each hold every member, and foca clones an
/// update twice to apply it. Reads and writes its fields through [`MemberInfo`]; a write
/// copies it first if it is shared. Encoded as its [`MemberInfo`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberId(Arc<Held>);

/// A member's fields, and the hash of its identity once asked for ([`MemberId::hash`]):
/// membership sums every member's hash after each change it hears of, and the member is
/// shared by every list that holds it, so the hash is worked out once per identity.
#[derive(Clone)]
struct Held {
    info: MemberInfo,
    hash: std::sync::OnceLock<u64>,
}

/// Equal fields, equal members: the hash is derived from them.
impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        self.info == other.info
    }
}

impl Eq for Held {}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.info.fmt(f)
    }
}

impl Serialize for MemberId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.info.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for MemberId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        MemberInfo::deserialize(deserializer).map(MemberId::from)
    }
}

/// What a [`MemberId`] holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub name: String,
    /// The libp2p peer id, base58; empty for a join address whose peer is not known yet.
    pub peer_id: String,
    pub p2p: SocketAddr,
    pub api: SocketAddr,
    pub labels: Labels,
    pub capacity: ResourceAmounts,
    /// The most pods it runs at once (`--max-pods`); placement gives it no more.
    pub max_pods: u32,
    /// Grows on every restart and every rejoin, so the newest identity of a name wins.
    pub bump: u64,
}

impl std::ops::Deref for MemberId {
    type Target = MemberInfo;

    fn deref(&self) -> &MemberInfo {
        &self.0.info
    }
}

/// A write forgets the hash: the fields it was worked out from may change.
impl std::ops::DerefMut for MemberId {
    fn deref_mut(&mut self) -> &mut MemberInfo {
        let held = Arc::make_mut(&mut self.0);
        held.hash = std::sync::OnceLock::new();
        &mut held.info
    }
}

impl From<MemberInfo> for MemberId {
    fn from(info: MemberInfo) -> Self {
        MemberId(Arc::new(Held {
            info,
            hash: std::sync::OnceLock::new(),
        }))
    }
}

impl MemberId {
    /// Whether `other` is this very identity, shared: equal without reading either.
    pub fn is(&self, other: &MemberId) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// [`pull::identity_hash`] of this member, worked out once.
    pub fn hash(&self) -> u64 {
        *self
            .0
            .hash
            .get_or_init(|| pull::identity_hash(&self.0.info))
    }

    /// A stand-in for a peer known only by its address (`--join`): enough to send it an
    /// announce, which SWIM accepts for any identity with the receiver's address.
    pub fn seed(p2p: SocketAddr) -> Self {
        MemberId::from(MemberInfo {
            name: String::new(),
            peer_id: String::new(),
            p2p,
            api: p2p,
            labels: Labels::new(),
            capacity: ResourceAmounts::default(),
            max_pods: 0,
            bump: 0,
        })
    }

    /// Node `n{i}` (the peer id of [`crate::keys::NodeKey::numbered`]`(i)`) at `p2p`, with one core, 1 GiB and the kubelet's 110 pods:
    /// the node the tests and the simulator run.
    pub fn numbered(i: usize, p2p: SocketAddr) -> Self {
        let mut member = MemberId::seed(p2p);
        member.name = format!("n{i}");
        member.peer_id = crate::keys::NodeKey::numbered(i).peer_id();
        member.capacity = ResourceAmounts {
            cpu_millis: 1000,
            memory_bytes: 1 << 30,
        };
        member.max_pods = 110;
        member.bump = 1;
        member
    }

    /// Test node `i`, at 127.0.0.1:7000+i.
    #[cfg(test)]
    pub fn test(i: usize) -> Self {
        MemberId::numbered(i, SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16)))
    }
}

/// SWIM addresses members by their peer address: a restarted node (same address, higher
/// bump) replaces its old identity, and an announce to a bare `--join` address is accepted.
impl Identity for MemberId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        let mut renewed = self.clone();
        renewed.bump += 1;
        Some(renewed)
    }

    fn addr(&self) -> SocketAddr {
        self.p2p
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.bump > adversary.bump
    }
}

/// Liveness as SWIM sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Liveness {
    Alive,
    /// Missed a probe; still a member (and still placed on) until the suspicion times out.
    Suspect,
    Down,
}

/// What the shell must do after a membership step.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Send {
        to: MemberId,
        data: Vec<u8>,
    },
    Schedule {
        after: Duration,
        timer: Timer<MemberId>,
    },
    Up(MemberId),
    Down(MemberId),
    /// This node became part of a cluster (at least one peer knows it).
    Active,
    /// Every known peer is gone.
    Idle,
    /// Peers had declared this node dead (it was paused or cut off too long): it now runs
    /// under a renewed identity and rejoins.
    Rejoined(MemberId),
}

#[derive(Debug, thiserror::Error)]
#[error("membership: {0}")]
pub struct MembershipError(String);

/// Timing knobs for failure detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detection {
    /// How often each member probes another.
    pub probe_period: Duration,
    /// How long a probe may take before indirect probes start.
    pub probe_rtt: Duration,
    /// How long a suspect has to refute before it is declared down.
    pub suspect_to_down: Duration,
}

/// One probe a second keeps an idle agent near 0.3% of a core (probes are most of its idle
/// work); a crash is still noticed within seconds, and a node paused for a second is only
/// suspected and refutes.
impl Default for Detection {
    fn default() -> Self {
        Detection {
            probe_period: Duration::from_secs(1),
            probe_rtt: Duration::from_millis(500),
            suspect_to_down: Duration::from_millis(2000),
        }
    }
}

/// The liveness of `member` (the same identity) in `list`, sorted by name.
fn liveness(list: &[(MemberId, Liveness)], member: &MemberId) -> Option<Liveness> {
    let from = list.partition_point(|(m, _)| m.name < member.name);
    list[from..]
        .iter()
        .take_while(|(m, _)| m.name == member.name)
        .find(|(m, _)| m.peer_id == member.peer_id && m.bump == member.bump)
        .map(|(_, l)| *l)
}

/// The members whose suspicion began or ended between two member lists: (member, before,
/// after) where one of the two is `Suspect`. Deaths and joins have their own effects.
pub fn suspicions<'a>(
    before: &MemberList,
    after: &'a MemberList,
) -> Vec<(&'a MemberId, Liveness, Liveness)> {
    // Most changes are joins and deaths with no suspect on either side: no map to build.
    let suspect = |list: &MemberList| list.iter().any(|(_, l)| *l == Liveness::Suspect);
    if !suspect(before) && !suspect(after) {
        return Vec::new();
    }
    let was: std::collections::HashMap<(&str, u64), Liveness> = before
        .iter()
        .map(|(m, l)| ((m.name.as_str(), m.bump), *l))
        .collect();
    after
        .iter()
        .filter_map(|(m, now)| {
            let was = *was.get(&(m.name.as_str(), m.bump))?;
            (was != *now && (was == Liveness::Suspect || *now == Liveness::Suspect))
                .then_some((m, was, *now))
        })
        .collect()
}

/// A node's live peers ([`live_peers`]), read from its membership list, which membership and
/// the views share: not a list of their own (each simulated node holding one was 8 bytes a
/// pair of nodes at 3,000 nodes, and listing them copied every member at each change).
#[derive(Debug, Clone, Default)]
pub struct Peers {
    members: Arc<MemberList>,
    /// This node's name.
    me: String,
    /// How many of `members` are live peers.
    len: usize,
}

impl Peers {
    /// The live peers among `members`, the list of the node named `me`.
    pub fn new(members: Arc<MemberList>, me: &str) -> Self {
        let len = live_peers(&members, me).count();
        Peers {
            members,
            me: me.to_string(),
            len,
        }
    }

    /// `members`, each alive, as the peers of a node that is none of them.
    #[cfg(test)]
    pub fn of(members: impl IntoIterator<Item = MemberId>) -> Self {
        let list = Arc::new(members.into_iter().map(|m| (m, Liveness::Alive)).collect());
        Peers::new(list, "")
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every live peer, by name.
    pub fn iter(&self) -> impl Iterator<Item = &MemberId> {
        live_peers(&self.members, &self.me)
    }

    /// The live peer of libp2p id `peer_id`, if one is. The ids are compared first, and
    /// only the member found is asked whether it is a live peer: at 5,000 simulated nodes
    /// forming a cluster, comparing each member's name with this node's too was half of
    /// this walk's time.
    pub fn find(&self, peer_id: &str) -> Option<&MemberId> {
        let found = self.members.iter().filter(|(m, _)| m.peer_id == peer_id);
        let mut live = found.filter(|(m, l)| is_live_peer(m, *l, &self.me));
        live.next().map(|(m, _)| m)
    }

    /// The membership list, and whether one of its entries is a live peer: what a random
    /// pick draws from ([`crate::gossip::Fanout::pick`]).
    pub(crate) fn drawn_from(&self) -> (&MemberList, impl Fn(&(MemberId, Liveness)) -> bool) {
        (&self.members, |(m, l): &(MemberId, Liveness)| {
            is_live_peer(m, *l, &self.me)
        })
    }
}

/// Whether `member`, in state `liveness`, is a live peer of the node named `me`.
fn is_live_peer(member: &MemberId, liveness: Liveness, me: &str) -> bool {
    liveness != Liveness::Down && member.name != me && !member.peer_id.is_empty()
}

/// The members other than `me` (by name) that are not down and can be reached by their
/// libp2p id: where a change can go.
pub fn live_peers<'a>(
    members: &'a MemberList,
    me: &'a str,
) -> impl Iterator<Item = &'a MemberId> + 'a {
    members
        .iter()
        .filter(move |(m, l)| is_live_peer(m, *l, me))
        .map(|(m, _)| m)
}

/// The effects one foca call drains beyond which its runtime's queues are made anew.
const RUNTIME_KEPT: usize = 64;

/// Announces per tick at most: a long list of unreachable addresses costs little.
pub const ANNOUNCES_PER_TICK: usize = 3;

/// The known peer addresses at which no member is alive: a new node's `--join` seeds, the
/// far side of a healed partition, a peer met before a restart.
pub fn unreached(known: &addresses::Addresses, members: &MemberList) -> Vec<SocketAddr> {
    let active: addresses::Addresses = members
        .iter()
        .filter(|(_, l)| *l != Liveness::Down)
        .map(|(m, _)| m.p2p)
        .collect();
    known.iter().filter(|a| !active.contains(a)).collect()
}

/// The addresses to announce to this tick: [`ANNOUNCES_PER_TICK`] of the `unreached` at
/// most, taken in turn from `turn` on, so that each gets its turn however many there are.
pub fn announce_targets(unreached: &[SocketAddr], turn: usize) -> Vec<SocketAddr> {
    (0..unreached.len().min(ANNOUNCES_PER_TICK))
        .map(|i| unreached[(turn + i) % unreached.len()])
        .collect()
}

/// Whether `down`, just declared dead, is gone: not if the same node is back already under a
/// renewed identity (it was wrongly declared dead and rejoined), whose reports still count.
/// `members` are sorted by name ([`Membership::members`]): only those of its name are read.
pub fn gone_for_good(members: &MemberList, down: &MemberId) -> bool {
    !members
        .named(&down.name)
        .any(|(m, l)| m.bump != down.bump && *l != Liveness::Down)
}

/// Takes out of `effects` the first datagram for peer `to` (libp2p id), if any: it goes back
/// as the answer to the request that called for it.
pub fn take_answer(effects: &mut Vec<Effect>, to: &str) -> Option<Vec<u8>> {
    let at = effects
        .iter()
        .position(|e| matches!(e, Effect::Send { to: m, .. } if m.peer_id == to))?;
    match effects.remove(at) {
        Effect::Send { data, .. } => Some(data),
        _ => None,
    }
}

/// How often a member announces itself to a random member, whose answer is a feed of members.
pub const PERIODIC_ANNOUNCE: Duration = Duration::from_secs(300);

/// A suspect may stay silent this many suspicion windows at most before it is declared down,
/// however irregular its messages have been.
pub const MAX_TOLERANCE: u32 = 5;

/// How much a node doubts its own links at most ([`Doubt`]).
pub const MAX_DOUBT: u32 = MAX_TOLERANCE - 1;

/// A point of doubt is forgotten after this many suspicion windows with no suspicion proved
/// false (a minute at the default window): a lossy link's suspicions come tens of seconds
/// apart.
pub const DOUBT_FADES_AFTER: u32 = 30;

/// How much this node doubts its links: Lifeguard's local health, in short. A suspicion that
/// proves false says that messages between two nodes came late: this node had to refute a
/// suspicion of itself, or a member it suspected (its own probe failed) turned out alive (it
/// refuted, or someone heard from it and vouched for it). Suspicions only heard of count for
/// nothing: one lossy link does not slow every node of a large cluster. Each is a point, one
/// forgotten every [`DOUBT_FADES_AFTER`] suspicion windows with none, [`MAX_DOUBT`] at most.
/// The silence this node allows a suspect is multiplied by one more than its points, still at
/// most [`MAX_TOLERANCE`] windows.
///
/// On a lossy link the node behind it and its peers suspect each other and are proved wrong
/// again and again: each of them then waits longer before declaring the other dead, as TCP's
/// retransmissions, each waiting twice as long as the one before, make the silences on such
/// a link long-tailed. The suspicion of a node that crashed, froze or was cut off ends in its
/// death, not alive: its peers doubt nothing and it goes down on time.
#[derive(Debug, Clone, Copy, Default)]
struct Doubt {
    points: u32,
    /// When the last point was added.
    since: Duration,
}

impl Doubt {
    /// The points left at `now`, one forgotten per `window` × [`DOUBT_FADES_AFTER`] since the
    /// last was added.
    fn at(&self, now: Duration, window: Duration) -> u32 {
        let fade = (window * DOUBT_FADES_AFTER).as_nanos().max(1);
        let passed = now.saturating_sub(self.since).as_nanos() / fade;
        self.points
            .saturating_sub(u32::try_from(passed).unwrap_or(u32::MAX))
    }

    /// A suspicion proved false at `now`.
    fn add(&mut self, now: Duration, window: Duration) {
        self.points = (self.at(now, window) + 1).min(MAX_DOUBT);
        self.since = now;
    }
}

/// When a member was last heard from, and the longest recent gap between its messages
/// (fading by a thirty-second per message, so one bad spell is forgotten within a minute).
struct Heard {
    at: Duration,
    gap: Duration,
}

impl Heard {
    fn again(&mut self, now: Duration) {
        let gap = now.saturating_sub(self.at);
        self.gap = gap.max(self.gap * 31 / 32);
        self.at = now;
    }
}

/// SWIM membership of one node.
pub struct Membership {
    foca: Foca<MemberId, BincodeCodec, StdRng, foca::NoCustomBroadcast>,
    runtime: AccumulatingRuntime<MemberId>,
    suspect_to_down: Duration,
    /// When each member (by peer id) was last heard from, and how long its silences last.
    heard: HashMap<String, Heard>,
    /// When any member was last heard from.
    last_heard: Duration,
    /// How much this node doubts its links.
    doubt: Doubt,
    /// The members this node itself suspects (its probe of them failed, and foca scheduled
    /// their suspicion's end): each that is listed alive again is a point of [`Doubt`].
    suspected: Vec<MemberId>,
    /// The time of the last datagram or timer, for what is done between them (listing).
    clock: Duration,
    /// Every member with its liveness, sorted by name: listed again from foca only after a
    /// step that may have changed it (see [`Self::drain`]), not on every datagram. Shared
    /// with the views made of it, which hold it, not copies.
    members: Arc<MemberList>,
    /// How many of `members` are suspect.
    suspects: usize,
    /// Grows each time `members` changes.
    generation: u64,
    /// The fingerprint of foca's states `members` was listed at ([`Self::states`]).
    states: u64,
    /// Whether foca's members may have changed since `members` was listed: arrivals,
    /// suspicions and deaths wait for [`Self::list`], renames and rejoins are listed at once.
    unlisted: bool,
    /// Whether the last foca call told of a death, rejoin or rename: news that holds member
    /// pulls off for a while ([`Pacing::news`]).
    told: bool,
    /// How many member updates the codec has encoded, shared with it.
    changes: Arc<AtomicUsize>,
    /// The codec's, for the members a pull brings.
    updates: Updates,
    /// Where `members` is shared with other cores that list the same.
    lists: Lists,
    /// The live members' identities, summed ([`pull::Buckets::fingerprint`]).
    fingerprint: u64,
    /// When this node may pull members, and from whom it awaits an answer.
    pacing: Pacing,
    /// The bucket the next answer to a pull begins at ([`pull::Buckets::differing`]).
    next_bucket: usize,
}

/// When the members a foca call may have changed are listed ([`Membership::drain_after`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listing {
    /// With the view, if foca told of a change (or a member is suspect).
    Told,
    /// With the view: foca tells nothing of what this call changes.
    Untold,
}

/// How many times each node passes on the news of a member's arrival.
const JOIN_TRANSMISSIONS: std::num::NonZeroU8 = match std::num::NonZeroU8::new(4) {
    Some(n) => n,
    None => unreachable!(),
};

/// How many updates a node holds queued before it stops queueing the news of arrivals: a
/// forming cluster of N queued N² of them at once (at 1,000 simulated nodes, 48 bytes per
/// pair of nodes, the largest part of the forming's peak), and a pull mends what a node
/// misses. At 2,000 simulated nodes forming at once, 64 formed the cluster in the same
/// virtual time, at two thirds of the wall time and memory; 16 took a virtual second longer.
const MAX_QUEUED_ARRIVALS: std::num::NonZeroUsize = match std::num::NonZeroUsize::new(64) {
    Some(n) => n,
    None => unreachable!(),
};

/// The first byte of a SWIM datagram on the membership channel.
const SWIM: u8 = 0;

/// The first byte of a member pull message on the membership channel.
const PULL: u8 = 1;

impl Membership {
    /// Membership of `me`, with what the process's cores share.
    pub fn new(me: MemberId, detection: Detection, seed: u64, shared: Shared) -> Self {
        let Shared { updates, lists } = shared;
        let mut config = foca::Config::new_lan(std::num::NonZeroU32::new(16).expect("non-zero"));
        config.probe_period = detection.probe_period;
        config.probe_rtt = detection.probe_rtt;
        config.suspect_to_down_after = detection.suspect_to_down;
        // Keep piggybacking each update long enough for a member that was paused or cut off
        // for a second to hear of its own suspicion and refute it (Lifeguard's concern).
        config.max_transmissions = std::num::NonZeroU8::new(32).expect("non-zero");
        // The news of an arrival need only reach each member once, and what it misses a pull
        // mends (`pull`). A forming cluster of N receives N² × this many updates.
        config.max_join_transmissions = Some(JOIN_TRANSMISSIONS);
        config.max_queued_arrivals = Some(MAX_QUEUED_ARRIVALS);
        // Datagrams travel over libp2p streams, not UDP: a larger packet carries more updates.
        config.max_packet_size = std::num::NonZeroUsize::new(16 * 1024).expect("non-zero");
        // foca announces itself to a random member every 30 s by default, and the answer is a
        // feed of as many members as fit in a packet: at 50 nodes most of an idle node's
        // traffic that grows with the cluster. Every few minutes is enough to mend a view
        // that missed a join; partitions heal through the agent's own announces to known
        // addresses with no live member, every second.
        config.periodic_announce = Some(foca::PeriodicParams {
            frequency: PERIODIC_ANNOUNCE,
            num_members: std::num::NonZeroUsize::new(1).expect("non-zero"),
        });
        let codec = BincodeCodec::new(updates.clone());
        let changes = codec.changes.clone();
        let fingerprint = me.hash();
        let foca = Foca::new(me.clone(), config, StdRng::seed_from_u64(seed), codec);
        Membership {
            foca,
            runtime: AccumulatingRuntime::new(),
            suspect_to_down: detection.suspect_to_down,
            heard: HashMap::new(),
            last_heard: Duration::ZERO,
            doubt: Doubt::default(),
            suspected: Vec::new(),
            clock: Duration::ZERO,
            members: Arc::new(MemberList::from_iter([(me, Liveness::Alive)])),
            suspects: 0,
            generation: 0,
            states: 0,
            unlisted: false,
            told: false,
            changes,
            updates,
            lists,
            fingerprint,
            pacing: Pacing::default(),
            next_bucket: 0,
        }
    }

    pub fn me(&self) -> &MemberId {
        self.foca.identity()
    }

    /// Announces this node to a peer known by its address.
    pub fn join(&mut self, p2p: SocketAddr) -> Result<Vec<Effect>, MembershipError> {
        let result = self.foca.announce(MemberId::seed(p2p), &mut self.runtime);
        self.drain(result)
    }

    /// A datagram arrived, `now` being the time since any fixed instant.
    pub fn receive(&mut self, data: &[u8], now: Duration) -> Result<Vec<Effect>, MembershipError> {
        self.clock = now;
        match data.split_first() {
            Some((&SWIM, data)) => self.receive_swim(data, now),
            Some((&PULL, data)) => self.receive_pull(data, now),
            _ => Err(MembershipError("a datagram of no known protocol".into())),
        }
    }

    /// A SWIM datagram: news it brings holds pulls off for a while. A suspicion of this node
    /// it makes it refute is a point of [`Doubt`]; a suspect that sent it is vouched for
    /// ([`Self::vouch_for_sender`]).
    fn receive_swim(&mut self, data: &[u8], now: Duration) -> Result<Vec<Effect>, MembershipError> {
        let sender = sender_identity(data);
        if let Some(Sender { peer_id, .. }) = sender {
            self.last_heard = self.last_heard.max(now);
            match self.heard.get_mut(peer_id) {
                Some(heard) => heard.again(now),
                None => drop(self.heard.insert(
                    peer_id.to_string(),
                    Heard {
                        at: now,
                        gap: Duration::ZERO,
                    },
                )),
            }
        }
        let incarnation = self.foca.incarnation();
        let result = self.foca.handle_data(data, &mut self.runtime);
        if self.foca.incarnation() > incarnation {
            self.doubt.add(now, self.suspect_to_down);
        }
        let effects = self.drain(result);
        if self.told {
            self.pacing.news(now);
        }
        let mut effects = effects?;
        if let Some(sender) = sender {
            match self.vouch_for_sender(sender) {
                Ok(more) => effects.extend(more),
                Err(e) => tracing::debug!(error = %e, "vouching for a suspect failed"),
            }
        }
        Ok(effects)
    }

    /// A suspect whose own datagram just arrived is alive, whatever anyone suspected: this
    /// node vouches for it at once, as alive under the next incarnation, which ends the
    /// suspicion wherever the news goes ([`Self::timer`] vouches so too, for a suspect heard
    /// from within the window). On a lossy link a suspect's messages may reach one peer and
    /// not another for seconds: the peer that hears it tells the others before their windows
    /// run out. The suspects listed are looked up by the sender's name, and only the identity
    /// at its address is vouched for: a node restarted at another address keeps its name and
    /// peer id, and the identity it left behind is rightly suspected. A suspicion not listed
    /// yet (the core lists with its view, within 100 ms) waits for the sender's next datagram.
    fn vouch_for_sender(&mut self, sender: Sender) -> Result<Vec<Effect>, MembershipError> {
        if self.suspects == 0 {
            return Ok(Vec::new());
        }
        let is_sender = |m: &MemberId| m.peer_id == sender.peer_id && m.p2p == sender.p2p;
        let suspect = self
            .members
            .named(sender.name)
            .any(|(m, l)| is_sender(m) && *l == Liveness::Suspect);
        let found = suspect.then(|| {
            self.foca
                .iter_membership_state()
                .find(|m| m.state() == State::Suspect && is_sender(m.id()))
                .map(|m| (m.id().clone(), m.incarnation()))
        });
        match found.flatten() {
            Some((member, incarnation)) => self.vouch(member, incarnation),
            None => Ok(Vec::new()),
        }
    }

    /// Declares `member`, suspected at `incarnation`, alive under the next one.
    fn vouch(
        &mut self,
        member: MemberId,
        incarnation: foca::Incarnation,
    ) -> Result<Vec<Effect>, MembershipError> {
        let alive = foca::Member::new(member, incarnation.saturating_add(1), State::Alive);
        let result = self
            .foca
            .apply_many(std::iter::once(alive), true, &mut self.runtime);
        self.drain_after(result, Listing::Untold)
    }

    /// The fingerprint of the live members (alive or suspect, this node included), for the
    /// digest: two nodes with different ones know different members, and pull.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// `peer`'s digest showed other members at `now`: this node's summary to it, unless a
    /// pull runs already or may not begin yet.
    pub fn pull(&mut self, peer: &MemberId, now: Duration) -> Vec<Effect> {
        if !self.pacing.begin(peer, now) {
            return Vec::new();
        }
        let mut data = vec![PULL];
        data.extend(pull::summary(self.me(), &self.buckets()));
        vec![Effect::Send {
            to: peer.clone(),
            data,
        }]
    }

    /// A member pull message (see [`pull`] for the four): each is answered, applied, or
    /// both.
    fn receive_pull(&mut self, data: &[u8], now: Duration) -> Result<Vec<Effect>, MembershipError> {
        let bad = |e: pull::PullError| MembershipError(e.to_string());
        let (message, at) = pull::decode(data).map_err(bad)?;
        let mut effects = Vec::new();
        match message {
            pull::Message::Summary { asker, buckets } => {
                let asker = self.updates.intern(asker);
                let differ = self.buckets().differing(&buckets, self.next_bucket);
                let (entries, sent) = self.entries(&differ);
                if let Some(last) = sent.last() {
                    self.next_bucket = (usize::from(*last) + 1) % pull::BUCKETS;
                }
                let data = pull::entries(&self.me().peer_id, &sent, &entries);
                effects.push(self.pull_send(asker, data, &[])?);
            }
            pull::Message::Entries {
                from,
                buckets,
                entries,
            } => {
                let Some(peer) = self.pacing.awaits(&from).cloned() else {
                    return Ok(effects);
                };
                let me = self.me_member();
                let of = pull::mask(&buckets);
                let ours = self
                    .members_and(&me)
                    .filter(|m| of[pull::bucket(m.id())])
                    .map(|m| (pull::Entry::of(m), m))
                    .collect();
                let (want, mut ours) = pull::compare(ours, &entries);
                // The rest goes in the next pull: the fingerprints still differ.
                ours.truncate(pull::MAX_MEMBERS);
                if want.is_empty() && ours.is_empty() {
                    self.pacing.answered(&from, false, now);
                } else {
                    let data = pull::exchange(self.me(), &want);
                    effects.push(self.pull_send(peer, data, &ours)?);
                }
            }
            pull::Message::Exchange { asker, want } => {
                let asker = self.updates.intern(asker);
                effects = self.apply_pulled(&data[at..])?;
                let want: std::collections::HashSet<u64> = want.into_iter().collect();
                let me = self.me_member();
                let wanted: Vec<&foca::Member<MemberId>> = self
                    .members_and(&me)
                    .filter(|m| want.contains(&m.id().hash()))
                    .take(pull::MAX_MEMBERS)
                    .collect();
                let data = pull::members(&self.me().peer_id);
                effects.push(self.pull_send(asker, data, &wanted)?);
            }
            pull::Message::Members { from } => {
                let news = data.len() > at;
                effects = self.apply_pulled(&data[at..])?;
                self.pacing.answered(&from, news, now);
            }
        }
        Ok(effects)
    }

    /// A pull message to `to`: `data`, then `members` encoded as SWIM encodes an update.
    fn pull_send(
        &self,
        to: MemberId,
        mut data: Vec<u8>,
        members: &[&foca::Member<MemberId>],
    ) -> Result<Effect, MembershipError> {
        let mut out = vec![PULL];
        out.append(&mut data);
        for member in members {
            bincode::serde::encode_into_std_write(member, &mut out, BINCODE)
                .map_err(|e| MembershipError(e.to_string()))?;
        }
        Ok(Effect::Send { to, data: out })
    }

    /// This node as a member: alive, at its incarnation.
    fn me_member(&self) -> foca::Member<MemberId> {
        foca::Member::new(self.me().clone(), self.foca.incarnation(), State::Alive)
    }

    /// Every member foca holds, in any state, after `me` ([`Self::me_member`]).
    fn members_and<'a>(
        &'a self,
        me: &'a foca::Member<MemberId>,
    ) -> impl Iterator<Item = &'a foca::Member<MemberId>> {
        std::iter::once(me).chain(self.foca.iter_membership_state())
    }

    /// The live members' identities (this node's included), summed by bucket.
    fn buckets(&self) -> Buckets {
        let live = self
            .foca
            .iter_membership_state()
            .filter(|m| m.state() != State::Down)
            .map(|m| m.id());
        Buckets::of(std::iter::once(self.me()).chain(live))
    }

    /// The entries of every member, this node's included, in the buckets `want`: whole
    /// buckets, in `want`'s order, while they fit in [`pull::MAX_ENTRIES`] (the first one cut
    /// short if it alone does not); and the buckets named.
    fn entries(&self, want: &[u8]) -> (Vec<pull::Entry>, Vec<u8>) {
        let mut by_bucket: Vec<Vec<pull::Entry>> = vec![Vec::new(); pull::BUCKETS];
        let wanted = pull::mask(want);
        let me = self.me_member();
        for member in self.members_and(&me) {
            let b = pull::bucket(member.id());
            if wanted[b] {
                by_bucket[b].push(pull::Entry::of(member));
            }
        }
        let (mut entries, mut sent) = (Vec::new(), Vec::new());
        for &b in want {
            let bucket = &by_bucket[usize::from(b)];
            if !sent.is_empty() && entries.len() + bucket.len() > pull::MAX_ENTRIES {
                break;
            }
            entries.extend(bucket.iter().take(pull::MAX_ENTRIES));
            sent.push(b);
        }
        (entries, sent)
    }

    /// Applies the members `data` holds (at most [`pull::MAX_MEMBERS`]) as rumours are
    /// applied, without passing them on; listed with the view, as arrivals are.
    fn apply_pulled(&mut self, mut data: &[u8]) -> Result<Vec<Effect>, MembershipError> {
        let mut members = Vec::new();
        while !data.is_empty() {
            if members.len() == pull::MAX_MEMBERS {
                return Err(MembershipError(format!(
                    "a pull of more than {} members",
                    pull::MAX_MEMBERS
                )));
            }
            let (member, used) = self
                .updates
                .decode(data)
                .map_err(|e| MembershipError(e.to_string()))?;
            members.push(member);
            data = &data[used..];
        }
        let result = self
            .foca
            .apply_many(members.into_iter(), false, &mut self.runtime);
        self.drain(result)
    }

    /// A timer fired, `now` being the time since the same instant as for [`Self::receive`].
    ///
    /// A suspect is declared down only once it has been silent for longer than its silences
    /// usually last: twice its longest recent gap between messages, at least the suspicion
    /// window, times one more than this node's [`Doubt`], and at most [`MAX_TOLERANCE`]
    /// windows (an accrual detector, after Lifeguard's caution). On a lossy link the transport resends, so messages come late, not never;
    /// evicting such a member would move its replicas for nothing. A member that crashed, is
    /// paused or cut off sends nothing and goes down on time. A node that has heard from no
    /// member for a whole suspicion window, though it knows others, cannot tell a suspect's
    /// silence from its own (its network stalled, its process was paused): it waits for
    /// anyone to be heard, a window at a time, up to the longest tolerance (Lifeguard's local
    /// health, in short). Without this, a node whose network stalled for 3.5 s declared the
    /// members it had not heard from dead (a test found it once foca no longer told members
    /// that had refuted a suspicion they were down, which had made it rejoin first).
    ///
    /// A suspect heard from within the last suspicion window, which is after its suspicion
    /// began, is alive but may never learn that it is suspected (the news of it can run out of
    /// transmissions while a partition keeps it away): this node vouches for it, as alive
    /// under the next incarnation, which ends the suspicion everywhere the news goes. Without
    /// this, such a suspicion lingered until a silence of the suspect's happened to be long
    /// enough, and a live member was declared dead (the simulator's fault schedules found it,
    /// 36 s after a partition healed).
    pub fn timer(
        &mut self,
        timer: Timer<MemberId>,
        now: Duration,
    ) -> Result<Vec<Effect>, MembershipError> {
        self.clock = now;
        if let Timer::ChangeSuspectToDown {
            member_id,
            incarnation,
            ..
        } = &timer
            && let Some(heard) = self.heard.get_mut(&member_id.peer_id)
        {
            // A clock stepped back puts the last message in the future: nothing then says
            // when it came. It counts as heard now, for the silence, but vouches for nothing.
            let in_the_past = heard.at <= now;
            heard.at = heard.at.min(now);
            self.last_heard = self.last_heard.min(now);
            let silence = now - heard.at;
            let gap = heard.gap;
            let still_suspect = self.foca.iter_membership_state().any(|m| {
                m.id() == member_id
                    && m.incarnation() == *incarnation
                    && m.state() == State::Suspect
            });
            if still_suspect && in_the_past && silence < self.suspect_to_down {
                return self.vouch(member_id.clone(), *incarnation);
            }
            let longest = self.suspect_to_down * MAX_TOLERANCE;
            let alone =
                self.heard.len() > 1 && now.saturating_sub(self.last_heard) >= self.suspect_to_down;
            let wait = match alone {
                true => self.suspect_to_down.min(longest.saturating_sub(silence)),
                false => ((gap * 2).max(self.suspect_to_down)
                    * (1 + self.doubt.at(now, self.suspect_to_down)))
                .min(longest)
                .saturating_sub(silence),
            };
            if !wait.is_zero() {
                return Ok(vec![Effect::Schedule { after: wait, timer }]);
            }
        }
        // foca tells of no suspicion refuted or down member removed: these timers may do
        // either.
        let listing = match timer {
            Timer::ChangeSuspectToDown { .. } | Timer::RemoveDown(_) => Listing::Untold,
            _ => Listing::Told,
        };
        let result = self.foca.handle_timer(timer, &mut self.runtime);
        self.drain_after(result, listing)
    }

    /// Declares the active member with libp2p id `peer_id` down at once, and tells the
    /// cluster: the transport found nothing listening at its address, so its process is gone
    /// (no suspicion is needed for that). A member that is in fact alive hears of it and
    /// rejoins under a renewed identity.
    pub fn declare_down(&mut self, peer_id: &str) -> Result<Vec<Effect>, MembershipError> {
        let Some(member) = self
            .foca
            .iter_membership_state()
            .find(|m| m.id().peer_id == peer_id && m.state() != State::Down)
            .map(|m| foca::Member::new(m.id().clone(), m.incarnation(), State::Down))
        else {
            return Ok(Vec::new());
        };
        let result = self
            .foca
            .apply_many(std::iter::once(member), true, &mut self.runtime);
        self.drain(result)
    }

    /// Leaves the cluster on purpose: the datagrams that tell a few members this node is
    /// down, which they spread. Feed this core nothing more afterwards.
    pub fn leave(&mut self) -> Vec<Effect> {
        let result = self.foca.leave_cluster(&mut self.runtime);
        self.drain(result).unwrap_or_default()
    }

    /// Every member this node knows of, itself included, with its liveness, sorted by name.
    pub fn members(&self) -> &Arc<MemberList> {
        &self.members
    }

    /// Grows each time the member list changes: whoever keeps something derived from it
    /// compares generations, not lists.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether members may have changed that [`Self::members`] does not list yet.
    pub fn unlisted(&self) -> bool {
        self.unlisted
    }

    /// Lists the members that changed since they were last listed, if any did: the core
    /// calls this when it builds its view, which waits for changes anyway (`VIEW_AFTER`).
    /// At a thousand nodes forming a cluster, each arrival heard listed every member again
    /// (a sort of them by name): a fifth of the forming's time.
    pub fn list(&mut self) {
        if self.unlisted {
            self.list_members();
        }
    }

    /// Lists the members from foca again, if their states differ from the last listing's. A
    /// member this node suspected that is alive now is a point of [`Doubt`].
    fn list_members(&mut self) {
        self.unlisted = false;
        let states = self.states();
        if states == self.states {
            return;
        }
        self.states = states;
        let members = self.listing();
        if !self.members.iter().eq(&members) {
            if !self.suspected.is_empty() {
                let mut wrongly = false;
                self.suspected.retain(|m| match liveness(&members, m) {
                    Some(Liveness::Suspect) => true,
                    Some(Liveness::Alive) => {
                        wrongly = true;
                        false
                    }
                    _ => false,
                });
                if wrongly {
                    self.doubt.add(self.clock, self.suspect_to_down);
                }
            }
            self.suspects = members
                .iter()
                .filter(|(_, l)| *l == Liveness::Suspect)
                .count();
            let live = members.iter().filter(|(_, l)| *l != Liveness::Down);
            self.fingerprint = Buckets::of(live.map(|(m, _)| m)).fingerprint();
            self.members = self.lists.share(&self.members, members);
            self.generation += 1;
        }
    }

    /// A fingerprint of what [`Self::listing`] reads: every member's name, peer id, address,
    /// bump and state, and this node's, combined in any order and read without copying
    /// anything (a rename at the same address and bump changes it too): a call that may have
    /// changed a member but did not costs a walk of the members, not a sorted copy of them
    /// (at 500 nodes, the listing was a fifth of the simulator's time).
    fn states(&self) -> u64 {
        let member = |id: &MemberId, state: u64| mix(id.hash() ^ mix(state));
        self.foca
            .iter_membership_state()
            .map(|m| member(m.id(), m.state() as u64 + 1))
            .fold(member(self.me(), 0), u64::wrapping_add)
    }

    /// Every member as foca holds it now, itself included, sorted by name: by the names'
    /// first 16 bytes, read once per member, and by the whole names only where those are
    /// equal. Compared as strings, each comparison read two names through two pointers each:
    /// at 3,000 simulated nodes the sort was most of the listing's time.
    fn listing(&self) -> Vec<(MemberId, Liveness)> {
        let me = (self.me().clone(), Liveness::Alive);
        let foca = self.foca.iter_membership_state().map(|m| {
            let liveness = match m.state() {
                State::Alive => Liveness::Alive,
                State::Suspect => Liveness::Suspect,
                State::Down => Liveness::Down,
            };
            (m.id().clone(), liveness)
        });
        let mut all: Vec<(u128, (MemberId, Liveness))> = std::iter::once(me)
            .chain(foca)
            .map(|member| (crate::hash::name_prefix(&member.0.name), member))
            .collect();
        all.sort_unstable_by(|(a, m), (b, n)| a.cmp(b).then_with(|| m.0.name.cmp(&n.0.name)));
        all.into_iter().map(|(_, member)| member).collect()
    }

    fn drain(&mut self, result: Result<(), foca::Error>) -> Result<Vec<Effect>, MembershipError> {
        self.drain_after(result, Listing::Told)
    }

    /// The effects of a foca call, noting that the members may have changed: on a join,
    /// death, rename or rejoin, on this node's own suspicion (foca schedules its end), when
    /// foca encoded a member update (it does for each update that changed its list, to
    /// spread it: a suspicion heard of comes untold), while any member is suspect (its
    /// refutation comes untold too), or always after a call foca may not tell of
    /// (`listing`). Renames and rejoins, which the core acts on with the list, are listed at
    /// once; arrivals, suspicions, deaths and what pulls bring wait for [`Self::list`].
    /// Deaths did not wait: while the crash of 100 of 10,000 simulated nodes was heard, each
    /// node sorted every member once for each death, the largest cost of that second; nor
    /// did pulls, a ninth of the forming's time at 10,000 nodes.
    fn drain_after(
        &mut self,
        result: Result<(), foca::Error>,
        listing: Listing,
    ) -> Result<Vec<Effect>, MembershipError> {
        let mut changed = self.changes.swap(0, Ordering::Relaxed) > 0
            || self.suspects > 0
            || listing == Listing::Untold;
        let mut at_once = false;
        self.told = false;
        let mut effects = Vec::new();
        while let Some(n) = self.runtime.to_notify() {
            match n {
                OwnedNotification::MemberUp(id) => {
                    changed = true;
                    effects.push(Effect::Up(id));
                }
                OwnedNotification::MemberDown(id) => {
                    changed = true;
                    self.told = true;
                    self.heard.remove(&id.peer_id);
                    effects.push(Effect::Down(id));
                }
                OwnedNotification::Active => effects.push(Effect::Active),
                OwnedNotification::Idle => effects.push(Effect::Idle),
                OwnedNotification::Rejoin(id) => {
                    at_once = true;
                    self.told = true;
                    effects.push(Effect::Rejoined(id));
                }
                OwnedNotification::Rename(..) => {
                    at_once = true;
                    self.told = true;
                }
                _ => {}
            }
        }
        while let Some((to, data)) = self.runtime.to_send() {
            let mut datagram = Vec::with_capacity(1 + data.len());
            datagram.push(SWIM);
            datagram.extend_from_slice(&data);
            effects.push(Effect::Send { to, data: datagram });
        }
        while let Some((after, timer)) = self.runtime.to_schedule() {
            // This node's own suspicion: its end is scheduled.
            if let Timer::ChangeSuspectToDown { member_id, .. } = &timer {
                changed = true;
                if !self.suspected.contains(member_id) {
                    self.suspected.push(member_id.clone());
                }
            }
            effects.push(Effect::Schedule { after, timer });
        }
        if effects.len() > RUNTIME_KEPT {
            // Drained: the queues, which never shrink, give back the room a burst made them
            // hold (a pull that brings 10,000 members queues 10,000 notifications).
            self.runtime = AccumulatingRuntime::new();
        }
        self.unlisted |= changed || at_once;
        if at_once {
            self.list();
        }
        // Errors from a bad datagram are reported after the effects it still caused.
        result.map_err(|e| MembershipError(e.to_string()))?;
        Ok(effects)
    }
}

/// Encodes membership messages with bincode (the project's one binary encoding), counting
/// the member updates it encodes: foca encodes an update when it changed its member list
/// (and when it sends a feed of members), so a call that made it encode none changed no
/// member's state.
///
/// Updates are decoded through [`Updates`], which the codecs of one process share.
#[derive(Default, Clone)]
pub struct BincodeCodec {
    changes: Arc<AtomicUsize>,
    updates: Updates,
}

/// What the membership cores of one process share: `weeble node` runs one, the simulator
/// thousands.
#[derive(Debug, Default, Clone)]
pub struct Shared {
    pub updates: Updates,
    pub lists: Lists,
}

/// The member lists the cores of one process hold ([`crate::memo`]): a core that lists the
/// same members in the same states as another shares its list. At 2,000 simulated nodes,
/// each core's own copy (and its view's, until the next view) was 29 bytes a member at the
/// peak, the largest share of it.
#[derive(Debug, Default, Clone)]
pub struct Lists(Arc<Mutex<memo::Held<MemberList>>>);

/// Every member with its liveness, sorted by name ([`Membership::members`]), shared by the
/// views made of it: a base list, and the entries where this list's differs from it. A list
/// of the same members as the one before, most in the same states, shares that one's base
/// and holds only the entries that changed ([`MemberList::after`]): while 100 crashes of
/// 10,000 simulated nodes were heard, each node held a list of its own (each heard the
/// suspicions and deaths in its own order), 16 bytes a pair of nodes, a ninth of the peak.
/// Its entries are held apart from the `Arc` that shares it: a weak reference (the one
/// [`Lists`] keeps) holds on to an `Arc`'s own allocation until it is swept, and with the
/// entries in that allocation, each simulated node held half a list more than it used.
#[derive(Debug, Default)]
pub struct MemberList {
    base: Arc<[(MemberId, Liveness)]>,
    /// The entries that differ from `base`'s, by their place in it, ascending.
    changed: Box<[(u32, (MemberId, Liveness))]>,
}

/// A list holds the entries that changed from its base up to this share of its members;
/// past it, a base of its own.
const CHANGED_AT_MOST: usize = 16;

impl MemberList {
    pub fn len(&self) -> usize {
        self.base.len()
    }

    pub fn is_empty(&self) -> bool {
        self.base.is_empty()
    }

    /// Every entry, in name order.
    pub fn iter(&self) -> impl Iterator<Item = &(MemberId, Liveness)> + '_ {
        let mut changed = self.changed.iter().peekable();
        self.base.iter().enumerate().map(move |(i, entry)| {
            match changed.next_if(|(at, _)| *at as usize == i) {
                Some((_, entry)) => entry,
                None => entry,
            }
        })
    }

    /// The entry at place `i`.
    pub fn get(&self, i: usize) -> Option<&(MemberId, Liveness)> {
        match self
            .changed
            .binary_search_by_key(&i, |(at, _)| *at as usize)
        {
            Ok(k) => Some(&self.changed[k].1),
            Err(_) => self.base.get(i),
        }
    }

    /// The entries of the members named `name`, in order: one, or a node's identities of
    /// several lives (a rename, a restart at another address).
    pub fn named<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a (MemberId, Liveness)> + 'a {
        let from = self.base.partition_point(|(m, _)| m.name.as_str() < name);
        (from..)
            .map_while(|i| self.get(i))
            .take_while(move |(m, _)| m.name == name)
    }

    /// Whether `other` is known to hold the same members as this list, each down in both or
    /// in neither, without a walk of either: both lists are on one base, and where either
    /// differs from it, they hold equal identities. False says nothing (lists on different
    /// bases may hold the same). A suspicion or its refutation keeps a list on its base, and
    /// placement does not read it: while 100 crashes of 10,000 simulated nodes were
    /// suspected, each view walked and compared the candidates of two lists of 10,000.
    pub fn same_up_and_down(&self, other: &MemberList) -> bool {
        if !Arc::ptr_eq(&self.base, &other.base) {
            return false;
        }
        let down = |(_, l): &(MemberId, Liveness)| *l == Liveness::Down;
        let places = self.changed.iter().chain(other.changed.iter());
        places
            .map(|(at, _)| *at as usize)
            .all(|at| match (self.get(at), other.get(at)) {
                (Some(a), Some(b)) => (a.0.is(&b.0) || a.0 == b.0) && down(a) == down(b),
                _ => false,
            })
    }

    /// `members` as a list after `last`: on `last`'s base, holding only the entries that
    /// differ, if the members are the base's in the same order and no more than one in
    /// [`CHANGED_AT_MOST`] differs; on a base of their own otherwise.
    fn after(last: &MemberList, members: Vec<(MemberId, Liveness)>) -> Self {
        let base = &last.base;
        let same_members = base.len() == members.len()
            && base
                .iter()
                .zip(&members)
                .all(|((a, _), (b, _))| a.is(b) || a == b);
        if same_members {
            let changed = members
                .iter()
                .enumerate()
                .filter(|(i, (_, l))| base[*i].1 != *l);
            if changed.clone().count() <= members.len() / CHANGED_AT_MOST {
                let changed = changed.map(|(i, entry)| (i as u32, entry.clone()));
                return MemberList {
                    base: base.clone(),
                    changed: changed.collect(),
                };
            }
        }
        members.into_iter().collect()
    }
}

/// Equal entries, equal lists, however each holds them.
impl PartialEq for MemberList {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for MemberList {}

impl FromIterator<(MemberId, Liveness)> for MemberList {
    fn from_iter<I: IntoIterator<Item = (MemberId, Liveness)>>(members: I) -> Self {
        MemberList {
            base: members.into_iter().collect(),
            changed: Box::default(),
        }
    }
}

impl Lists {
    /// `members` as a shared list: one a core holds already, if equal, or this one (after
    /// `last`, [`MemberList::after`]), kept.
    fn share(&self, last: &MemberList, members: Vec<(MemberId, Liveness)>) -> Arc<MemberList> {
        let hash = members
            .iter()
            .map(|(m, l)| mix(m.hash() ^ *l as u64))
            .fold(0, u64::wrapping_add);
        let mut held = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(list) = held.find(hash, |list| list.iter().eq(&members)) {
            return list;
        }
        let list = Arc::new(MemberList::after(last, members));
        held.keep(hash, &list);
        list
    }
}

/// Member updates decoded lately by the membership codecs of one process, by their bytes.
/// Each update comes many times (piggybacked up to `max_transmissions` times by each node
/// that hears it: a forming cluster of 1,000 sends each node millions): the same bytes
/// again are the same update, shared, not decoded. A new update of a known identity is
/// decoded once and shares the identity already held. `weeble node` runs one codec; the
/// simulator runs thousands, which then hold one copy of each member, not one each (at
/// 1,000 nodes, a quarter of a node's memory was its own copy of every member and their
/// updates), and find it in one table that stays in the processor's cache.
#[derive(Debug, Default, Clone)]
pub struct Updates(Arc<Mutex<ByHash<Vec<Decoded>>>>);

/// One update decoded, and its bytes.
#[derive(Debug)]
struct Decoded {
    bytes: Vec<u8>,
    update: foca::Member<MemberId>,
}

/// Member names [`Updates`] keeps updates of: more than any cluster has. Past it, it starts
/// again empty.
const MAX_NAMES: usize = 1 << 16;

/// Updates kept per member name: its states (alive, suspect, down) at the incarnations
/// nodes disagree on while news spreads. A new one replaces the oldest.
const UPDATES_PER_NAME: usize = 4;

impl Updates {
    /// The update `bytes` begin with: one decoded before, or decoded now (and kept).
    fn decode(&self, bytes: &[u8]) -> Result<(foca::Member<MemberId>, usize), CodecError> {
        let key = name_key(bytes);
        let mut kept = self.kept();
        let known = key
            .and_then(|key| kept.get(&key))
            .map_or(&[][..], Vec::as_slice);
        // An encoding is self-delimiting: bytes that begin with a whole update are that update.
        if let Some(d) = known.iter().find(|d| bytes.starts_with(&d.bytes)) {
            return Ok((d.update.clone(), d.bytes.len()));
        }
        let (update, used): (foca::Member<MemberId>, usize) =
            bincode::serde::decode_from_slice(bytes, BINCODE)
                .map_err(|e| CodecError(e.to_string()))?;
        let update = match held_identity(known, update.id()) {
            Some(id) => foca::Member::new(id.clone(), update.incarnation(), update.state()),
            None => update,
        };
        if let Some(key) = key {
            if kept.len() >= MAX_NAMES && !kept.contains_key(&key) {
                kept.clear();
            }
            let variants = kept.entry(key).or_default();
            if variants.len() >= UPDATES_PER_NAME {
                variants.remove(0);
            }
            variants.push(Decoded {
                bytes: bytes[..used].to_vec(),
                update: update.clone(),
            });
        }
        Ok((update, used))
    }

    /// The identity already held that equals `id` (decoded from a header), if one is: a
    /// member's list entry compares identities with each update applied to it, and shared
    /// ones compare by pointer, not field by field.
    fn intern(&self, id: MemberId) -> MemberId {
        let kept = self.kept();
        let known = kept
            .get(&name_hash(&id.name))
            .map_or(&[][..], Vec::as_slice);
        held_identity(known, &id).cloned().unwrap_or(id)
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, ByHash<Vec<Decoded>>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The identity equal to `id` that one of `known` (the updates kept under its name) holds.
fn held_identity<'a>(known: &'a [Decoded], id: &MemberId) -> Option<&'a MemberId> {
    known.iter().map(|d| d.update.id()).find(|held| *held == id)
}

/// The hash of the name an encoded update begins with (its identity's first field), or
/// `None` if the bytes do not begin with one.
fn name_key(bytes: &[u8]) -> Option<u64> {
    let (name, _): (&str, usize) = bincode::serde::borrow_decode_from_slice(bytes, BINCODE).ok()?;
    Some(name_hash(name))
}

/// The key of a member name's updates in [`Updates`]: mixed, and hashed no further (std's
/// hasher was 2 % of a forming cluster's time at 10,000 simulated nodes).
fn name_hash(name: &str) -> u64 {
    mix(crate::hash::fnv1a(&[name.as_bytes()]))
}

/// The peer id a membership datagram says it comes from (a SWIM header's sender, or the peer
/// a pull message names), read in place; `None` if it names none. The transport
/// authenticates the peer that sent it, and the two must be one (`NodeCore`).
pub fn sender(datagram: &[u8]) -> Option<&str> {
    match datagram.split_first()? {
        (&SWIM, rest) => sender_identity(rest).map(|sender| sender.peer_id),
        (&PULL, rest) => pull::sender(rest),
        _ => None,
    }
}

/// A datagram's sender as its header names it.
#[derive(Debug, Clone, Copy)]
struct Sender<'a> {
    name: &'a str,
    peer_id: &'a str,
    p2p: SocketAddr,
}

/// A datagram's sender, read in place: a header begins with the sender's identity, whose
/// first fields are its name, peer id and address.
fn sender_identity(datagram: &[u8]) -> Option<Sender<'_>> {
    let ((name, peer_id, p2p), _): ((&str, &str, SocketAddr), usize) =
        bincode::serde::borrow_decode_from_slice(datagram, BINCODE).ok()?;
    Some(Sender { name, peer_id, p2p })
}

impl BincodeCodec {
    /// A codec decoding updates through `updates`.
    pub fn new(updates: Updates) -> Self {
        BincodeCodec {
            changes: Arc::default(),
            updates,
        }
    }

    fn encode<T: Serialize>(
        value: &T,
        mut buf: impl BufMut,
    ) -> Result<(), bincode::error::EncodeError> {
        let bytes = bincode::serde::encode_to_vec(value, BINCODE)?;
        if buf.remaining_mut() < bytes.len() {
            return Err(bincode::error::EncodeError::UnexpectedEnd);
        }
        buf.put_slice(&bytes);
        Ok(())
    }

    fn decode<T: serde::de::DeserializeOwned>(
        mut buf: impl Buf,
    ) -> Result<T, bincode::error::DecodeError> {
        let (value, used) = bincode::serde::decode_from_slice(buf.chunk(), BINCODE)?;
        buf.advance(used);
        Ok(value)
    }
}

/// A membership message that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("membership codec: {0}")]
pub struct CodecError(String);

impl foca::Codec<MemberId> for BincodeCodec {
    type Error = CodecError;

    fn encode_header(
        &mut self,
        header: &foca::Header<MemberId>,
        buf: impl BufMut,
    ) -> Result<(), CodecError> {
        Self::encode(header, buf).map_err(|e| CodecError(e.to_string()))
    }

    fn decode_header(&mut self, buf: impl Buf) -> Result<foca::Header<MemberId>, CodecError> {
        let mut header: foca::Header<MemberId> =
            Self::decode(buf).map_err(|e| CodecError(e.to_string()))?;
        header.src = self.updates.intern(header.src);
        header.dst = self.updates.intern(header.dst);
        Ok(header)
    }

    fn encode_member(
        &mut self,
        member: &foca::Member<MemberId>,
        buf: impl BufMut,
    ) -> Result<(), CodecError> {
        self.changes.fetch_add(1, Ordering::Relaxed);
        Self::encode(member, buf).map_err(|e| CodecError(e.to_string()))
    }

    fn decode_member(&mut self, mut buf: impl Buf) -> Result<foca::Member<MemberId>, CodecError> {
        let (update, used) = self.updates.decode(buf.chunk())?;
        buf.advance(used);
        Ok(update)
    }
}

#[cfg(test)]
mod tests;
