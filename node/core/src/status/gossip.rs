//! How one node spreads status (see [`crate::gossip`] for the why): this node's report, the
//! table of everyone's, and what to send to whom. Pure: `NodeCore` routes to it and hands it
//! the time, the driver carries the messages, and a test runs thousands of these in one
//! thread.
//!
//! - News (this node's report changed, or a push brought reports newer than ours) waits
//!   [`PUSH_AFTER`], then leaves in one message to a few random live peers: a burst of
//!   reports (a deployment starting everywhere) costs each node a few messages per wait, not
//!   a few per report, and a report that changed twice meanwhile goes once. This node's own
//!   report goes to [`push_width`] peers, what it passes on to [`RELAY_WIDTH`]; while some of
//!   its pods are being created, its own report waits for them, [`START_HOLD`] at most.
//! - A peer's digest differs → our sums of versions by bucket to it; its versions in the buckets
//!   that differ back; our delta (our newer reports, and what we want) to it; what we wanted back.
//!   One exchange at a time, none while pushes still bring news ([`EXCHANGE_QUIET`]), and after one
//!   that brought nothing, none for [`EXCHANGE_GAP`]: exchanges mend what the pushes missed, they
//!   do not race them. Without these limits, a deployment of 15,000 replicas starting on 500
//!   simulated nodes cost 5.8 million status messages and 14 GB in a second.

use super::{
    CONTAINER_CREATING, HeldImage, NodeStatus, Phase, PodStatus, StatusMessage, StatusTable,
    bounded, name_hash,
};
use crate::gossip::{Fanout, push_width};
use crate::hash::name_prefix;
use crate::keys::NodeKey;
use crate::membership::{MemberId, Peers};
use hashbrown::hash_table::{Entry, HashTable};
use std::sync::Arc;
use std::time::Duration;

/// How long news waits before it is pushed, gathering what else arrives meanwhile (Serf and
/// memberlist send their queued broadcasts every 200 ms; each hop here costs at most this).
pub const PUSH_AFTER: Duration = Duration::from_millis(50);

/// How long a report of this node whose pods are still being created (`ContainerCreating`)
/// is held back before it is pushed anyway: a deployment starting then sends one report per
/// node (its pods running), not one while they are created and another once they run. At
/// 1,000 simulated nodes each node pushed 2.3 versions of its report while its pods started,
/// and every node took in each about five times. What a node holds of its own report is never
/// held back (its table and the API show it at once), a report none of whose pods is being
/// created is pushed as soon as it is made, and reports passed on are never held.
pub const START_HOLD: Duration = Duration::from_secs(1);

/// How many peers a node passes others' news on to. Every node that learns a report passes
/// it on, so each node hears each report about this many times; ⌈ln N⌉ + 3, as for a node's
/// own report, would miss almost no node, but at 2,000 simulated nodes hearing reports
/// again was half of a deployment's start. With 4, about e^-4 (2 %) of the nodes miss a
/// report that starts at every node together; their digests then differ, and an exchange
/// brings them all they missed at once.
pub const RELAY_WIDTH: usize = 4;

/// How long after a push brought news this node begins no exchange: the rumour is still
/// spreading, and what an exchange would carry the next pushes bring anyway.
pub const EXCHANGE_QUIET: Duration = Duration::from_millis(500);

/// How long after an exchange that brought nothing the next may begin.
pub const EXCHANGE_GAP: Duration = Duration::from_secs(1);

/// A message for the driver to carry. One that asks ([`StatusMessage::asks`]) expects an
/// answer, to be handed to [`StatusGossip::answered`]; the others expect none.
#[derive(Debug, Clone, PartialEq)]
pub struct Send {
    pub to: MemberId,
    pub message: StatusMessage,
}

/// One node's status: its report, everyone's, and the exchanges it runs.
pub struct StatusGossip {
    /// This node's report, the very one its table and news hold: each change makes a new
    /// one (held in one copy, not in one more of its own: a node's pods were a copy too many).
    mine: Arc<NodeStatus>,
    /// What signs this node's reports.
    key: NodeKey,
    /// Shared with whoever the core published it to, and copied on a change only if they
    /// still hold it (`Arc::make_mut`): the agent's watch always does, so it copies at each
    /// change as before; the simulator's cores, whose tables nobody else holds, never do.
    table: Arc<StatusTable>,
    fanout: Fanout,
    /// How many peers beyond ⌈ln N⌉ a change is pushed to.
    extra: usize,
    /// The news to push next, the newest report of each node.
    news: News,
    /// Whether the push of `news` is scheduled already.
    push_scheduled: bool,
    /// Since when this node's report, its pods still being created, has been held back
    /// ([`START_HOLD`]); `None` once it is pushed.
    held_since: Option<Duration>,
    /// The peer (libp2p id) the exchange running is with, if one is.
    exchanging: Option<String>,
    /// No exchange begins before this time.
    next_exchange: Duration,
}

impl StatusGossip {
    /// A node's status as it starts (`epoch`: its start, so that its reports win over its
    /// previous life's), each report signed with `key`, pushing each change to ⌈ln N⌉ +
    /// `extra` peers picked with `seed`.
    pub fn new(node: String, key: NodeKey, epoch: u64, extra: usize, seed: u64) -> Self {
        let mine = NodeStatus {
            node,
            epoch,
            version: 0,
            pods: Vec::new(),
            not_ready: None,
            leaving: false,
            images: Vec::new(),
            signature: Default::default(),
        };
        let mine = Arc::new(mine.signed(&key));
        let mut table = StatusTable::default();
        table.merge(mine.clone());
        StatusGossip {
            mine,
            key,
            table: Arc::new(table),
            fanout: Fanout::new(seed),
            extra,
            news: News::default(),
            push_scheduled: false,
            held_since: None,
            exchanging: None,
            next_exchange: Duration::ZERO,
        }
    }

    pub fn table(&self) -> &Arc<StatusTable> {
        &self.table
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.mine.node
    }

    /// This node's pods now; pushed if they changed.
    pub fn set_pods(&mut self, pods: Vec<PodStatus>) {
        let mine = &self.mine;
        if mine.pods != pods {
            self.change(NodeStatus {
                node: mine.node.clone(),
                epoch: mine.epoch,
                version: mine.version,
                pods,
                not_ready: mine.not_ready.clone(),
                leaving: mine.leaving,
                images: mine.images.clone(),
                signature: Default::default(),
            })
        }
    }

    /// The images this node holds now; pushed if they changed.
    pub fn set_images(&mut self, images: Vec<HeldImage>) {
        if self.mine.images != images {
            self.change(NodeStatus {
                images,
                ..NodeStatus::clone(&self.mine)
            })
        }
    }

    /// Why this node is not Ready now (`None`: it is); pushed if that changed.
    pub fn set_not_ready(&mut self, why: Option<String>) {
        if self.mine.not_ready != why {
            self.change(NodeStatus {
                not_ready: why,
                ..NodeStatus::clone(&self.mine)
            })
        }
    }

    /// This node is leaving: it takes no pods any more.
    pub fn set_leaving(&mut self) {
        if !self.mine.leaving {
            self.change(NodeStatus {
                leaving: true,
                ..NodeStatus::clone(&self.mine)
            })
        }
    }

    /// Peers had declared this node dead and forgot its report: a new version wins it back.
    pub fn renew(&mut self) {
        self.change(NodeStatus::clone(&self.mine))
    }

    /// `next` as the next version of this node's report, signed, to push.
    fn change(&mut self, mut next: NodeStatus) {
        next.version = self.mine.version + 1;
        self.mine = Arc::new(next.signed(&self.key));
        Arc::make_mut(&mut self.table).merge(self.mine.clone());
        self.news.put(self.mine.clone());
    }

    /// Whether a push must be scheduled, in [`PUSH_AFTER`], for the news there is: true once
    /// per push (the core asks after each step).
    pub fn push_due(&mut self) -> bool {
        let due = !self.news.is_empty() && !self.push_scheduled;
        self.push_scheduled |= due;
        due
    }

    /// The push is due at `now`: the news (as much as one message holds; the rest goes at
    /// the next push, which [`Self::push_due`] then asks for) to random `peers`: ⌈ln N⌉ +
    /// `extra` of them if it holds this node's own report, [`RELAY_WIDTH`] if not. This
    /// node's report waits while its pods are being created, for [`START_HOLD`] at most.
    pub fn push(&mut self, peers: &Peers, now: Duration) -> Vec<Send> {
        self.push_scheduled = false;
        let held = self.hold_own(now);
        let news = self.news.in_name_order();
        let reports = bounded(news.filter(|r| !(held && r.node == self.mine.node)));
        let mut own = false;
        for report in &reports {
            self.news.remove(&report.node);
            own |= report.node == self.mine.node;
        }
        self.news.free_when_empty();
        if own {
            self.held_since = None;
        }
        if reports.is_empty() {
            return Vec::new();
        }
        let message = StatusMessage::Reports(reports);
        let width = match own {
            true => push_width(self.extra, peers.len()),
            false => RELAY_WIDTH,
        };
        self.fanout
            .pick(peers, width)
            .into_iter()
            .map(|to| Send {
                to,
                message: message.clone(),
            })
            .collect()
    }

    /// Whether this node's report, news to push, waits at `now`: some of its pods are still
    /// being created, it says nothing else that others must act on (leaving, not Ready), and
    /// it has waited less than [`START_HOLD`] (from the earliest time read since: a clock
    /// stepped back does not make it wait longer).
    fn hold_own(&mut self, now: Duration) -> bool {
        let creating = |pod: &PodStatus| {
            pod.phase == Phase::Pending && pod.reason.as_deref() == Some(CONTAINER_CREATING)
        };
        let mine = &self.mine;
        let urgent = mine.leaving || mine.not_ready.is_some();
        let news = self.news.contains(&mine.node);
        if !news || urgent || !mine.pods.iter().any(creating) {
            return false;
        }
        let since = self.held_since.get_or_insert(now);
        *since = (*since).min(now);
        now < *since + START_HOLD
    }

    /// A message from a peer at `now`: the answer it expects (`None`: a bare ack). Reports
    /// newer than ours are kept and become news.
    pub fn receive(&mut self, message: StatusMessage, now: Duration) -> Option<StatusMessage> {
        match message {
            StatusMessage::Reports(reports) => {
                self.news(reports, now);
                None
            }
            StatusMessage::Sums(theirs) => {
                let buckets = self.table.differing(&theirs);
                let versions = self.table.versions(&buckets);
                Some(StatusMessage::Versions { buckets, versions })
            }
            StatusMessage::Delta { reports, want } => {
                self.news(reports, now);
                Some(StatusMessage::Reports(self.table.reports(&want)))
            }
            StatusMessage::Versions { .. } => None,
        }
    }

    /// Keeps the `reports` newer than ours, as news to pass on.
    fn news(&mut self, reports: Vec<Arc<NodeStatus>>, now: Duration) {
        let news = self.merge(reports);
        if !news.is_empty() {
            self.next_exchange = self.next_exchange.max(now + EXCHANGE_QUIET);
        }
        for report in news {
            self.news.put(report);
        }
    }

    /// The digest of `peer` showed another table at `now`: our sums to it, unless an
    /// exchange runs already or may not begin yet. Its answer goes to [`Self::answered`].
    pub fn exchange(&mut self, peer: &MemberId, now: Duration) -> Option<Send> {
        // A wait never lasts longer than the longest pause from now: a clock stepped back
        // would otherwise hold every exchange off by as much as the step.
        let longest = now + EXCHANGE_QUIET.max(EXCHANGE_GAP);
        self.next_exchange = self.next_exchange.min(longest);
        if self.exchanging.is_some() || now < self.next_exchange {
            return None;
        }
        self.exchanging = Some(peer.peer_id.clone());
        Some(Send {
            to: peer.clone(),
            message: StatusMessage::Sums(self.table.sums()),
        })
    }

    /// An answer came back from `peer` at `now` (`None`: the exchange failed). To our sums,
    /// its versions where they differ: our delta to it, if there is one (the exchange goes on
    /// until that is answered). To our delta, the reports we wanted: kept if newer.
    pub fn answered(
        &mut self,
        peer: &MemberId,
        answer: Option<StatusMessage>,
        now: Duration,
    ) -> Option<Send> {
        let reports = match answer {
            Some(StatusMessage::Versions { buckets, versions }) => {
                let delta = self.table.delta(&buckets, &versions);
                let empty = matches!(&delta, StatusMessage::Delta { reports, want }
                    if reports.is_empty() && want.is_empty());
                if !empty {
                    // The exchange goes on until the delta is answered.
                    return Some(Send {
                        to: peer.clone(),
                        message: delta,
                    });
                }
                Vec::new()
            }
            Some(StatusMessage::Reports(reports)) => reports,
            _ => Vec::new(),
        };
        if self.exchanging.as_deref() == Some(peer.peer_id.as_str()) {
            self.exchanging = None;
        }
        // One that brought news may be followed by another at once: a node catching up
        // takes a table bigger than one message a message at a time.
        if self.merge(reports).is_empty() {
            self.next_exchange = self.next_exchange.max(now + EXCHANGE_GAP);
        }
        None
    }

    /// A node is a member again (a new life, or back under a renewed identity): its reports
    /// are taken again, even at the version it was forgotten at. The news of its old
    /// identity's death can reach a node after its newest report did, and the node may have
    /// nothing new to report for a long time; without this, that node's report stayed out
    /// of this table (the simulator's fault schedules found tables that never agreed again).
    pub fn returned(&mut self, node: &str) {
        if self.table.is_forgotten(node) {
            Arc::make_mut(&mut self.table).remember(node);
        }
    }

    /// A node was declared down: its report no longer describes anything running. True if
    /// the table changed.
    pub fn forget(&mut self, node: &str) -> bool {
        if node == self.mine.node {
            return false;
        }
        self.news.remove(node);
        Arc::make_mut(&mut self.table).forget(node)
    }

    /// Keeps the reports newer than ours (never one about this node); returns those kept.
    fn merge(&mut self, reports: Vec<Arc<NodeStatus>>) -> Vec<Arc<NodeStatus>> {
        reports.into_iter().filter(|r| self.merge_one(r)).collect()
    }

    /// Keeps `report` if it is newer than the table's and not about this node, copying the
    /// table first only then. Most reports a node hears it holds already: their names are
    /// compared with this node's only once they are found newer.
    fn merge_one(&mut self, report: &Arc<NodeStatus>) -> bool {
        self.table.is_newer(report)
            && report.node != self.mine.node
            && Arc::make_mut(&mut self.table).merge(report.clone())
    }
}

/// The news to push next: the newest report of each node, found by its name's hash, and put
/// in name order only when pushed. A tree by name compared names at each of its levels for
/// each report heard newer: a tenth of a deployment's start at 5,000 simulated nodes.
#[derive(Default)]
struct News(HashTable<Arc<NodeStatus>>);

impl News {
    /// Keeps `report`, in the place of the one of its node held.
    fn put(&mut self, report: Arc<NodeStatus>) {
        let hash = name_hash(&report.node);
        let same = |held: &Arc<NodeStatus>| held.node == report.node;
        match self.0.entry(hash, same, |held| name_hash(&held.node)) {
            Entry::Occupied(mut held) => *held.get_mut() = report,
            Entry::Vacant(place) => drop(place.insert(report)),
        }
    }

    fn contains(&self, node: &str) -> bool {
        self.0
            .find(name_hash(node), |held| held.node == node)
            .is_some()
    }

    fn remove(&mut self, node: &str) {
        if let Ok(held) = self.0.find_entry(name_hash(node), |held| held.node == node) {
            held.remove();
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Gives back the table's room once nothing is left in it: a burst's news (every
    /// node's report as a deployment starts) would otherwise keep it, at every node.
    fn free_when_empty(&mut self) {
        if self.0.is_empty() {
            self.0 = HashTable::new();
        }
    }

    /// Every report held, in its node's name order.
    fn in_name_order(&self) -> impl Iterator<Item = &Arc<NodeStatus>> {
        let mut all: Vec<(u128, &Arc<NodeStatus>)> =
            self.0.iter().map(|r| (name_prefix(&r.node), r)).collect();
        all.sort_unstable_by(|(a, ra), (b, rb)| a.cmp(b).then_with(|| ra.node.cmp(&rb.node)));
        all.into_iter().map(|(_, r)| r)
    }
}

#[cfg(test)]
mod tests;
