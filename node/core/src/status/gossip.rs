//! How one node spreads status (see [`crate::gossip`] for the why): this node's report, the
//! table of everyone's, and what to send to whom. Pure: `NodeCore` routes to it, the driver
//! carries the messages, and a test runs thousands of these in one thread.
//!
//! - This node's report changes → pushed to `push_width` random live peers.
//! - Reports pushed to us that were news → passed on the same way (not back to the sender).
//! - A peer's digest differs → our versions to it; its delta back; what it wants, to it.

use super::{NodeStatus, PodStatus, StatusMessage, StatusTable};
use crate::gossip::Fanout;
use crate::membership::MemberId;
use std::collections::BTreeSet;
use std::sync::Arc;

/// A message for the driver to carry. `Versions` expects an answer, to be handed to
/// [`StatusGossip::answered`]; the others expect none.
#[derive(Debug, Clone, PartialEq)]
pub struct Send {
    pub to: MemberId,
    pub message: StatusMessage,
}

/// One node's status: its report, everyone's, and the exchanges it runs.
pub struct StatusGossip {
    mine: NodeStatus,
    /// Shared with whoever the core published it to, and copied on a change only if they
    /// still hold it (`Arc::make_mut`): the agent's watch always does, so it copies at each
    /// change as before; the simulator's cores, whose tables nobody else holds, never do.
    table: Arc<StatusTable>,
    fanout: Fanout,
    /// How many peers beyond ⌈ln N⌉ a change is pushed to.
    extra: usize,
    /// Peers (libp2p ids) an exchange runs with: one at a time each.
    exchanging: BTreeSet<String>,
}

impl StatusGossip {
    /// A node's status as it starts (`epoch`: its start, so that its reports win over its
    /// previous life's), pushing each change to ⌈ln N⌉ + `extra` peers picked with `seed`.
    pub fn new(node: String, epoch: u64, extra: usize, seed: u64) -> Self {
        let mine = NodeStatus {
            node,
            epoch,
            version: 0,
            pods: Vec::new(),
            not_ready: None,
            leaving: false,
        };
        let mut table = StatusTable::default();
        table.merge(Arc::new(mine.clone()));
        StatusGossip {
            mine,
            table: Arc::new(table),
            fanout: Fanout::new(seed),
            extra,
            exchanging: BTreeSet::new(),
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
    pub fn set_pods(&mut self, pods: Vec<PodStatus>, peers: &[MemberId]) -> Vec<Send> {
        self.change(peers, |mine| {
            let changed = mine.pods != pods;
            mine.pods = pods;
            changed
        })
    }

    /// Why this node is not Ready now (`None`: it is); pushed if that changed.
    pub fn set_not_ready(&mut self, why: Option<String>, peers: &[MemberId]) -> Vec<Send> {
        self.change(peers, |mine| {
            let changed = mine.not_ready != why;
            mine.not_ready = why;
            changed
        })
    }

    /// This node is leaving: it takes no pods any more.
    pub fn set_leaving(&mut self, peers: &[MemberId]) -> Vec<Send> {
        self.change(peers, |mine| !std::mem::replace(&mut mine.leaving, true))
    }

    /// Peers had declared this node dead and forgot its report: a new version wins it back.
    pub fn renew(&mut self, peers: &[MemberId]) -> Vec<Send> {
        self.change(peers, |_| true)
    }

    /// A new version of this node's report, if `edit` changed it, pushed to a few peers.
    fn change(
        &mut self,
        peers: &[MemberId],
        edit: impl FnOnce(&mut NodeStatus) -> bool,
    ) -> Vec<Send> {
        if !edit(&mut self.mine) {
            return Vec::new();
        }
        self.mine.version += 1;
        let mine = Arc::new(self.mine.clone());
        Arc::make_mut(&mut self.table).merge(mine.clone());
        let report = StatusMessage::Reports(vec![mine]);
        self.push(peers, "", report)
    }

    /// A message from peer `from` (libp2p id): the answer it expects (`None`: a bare ack),
    /// and what to pass on.
    pub fn receive(
        &mut self,
        from: &str,
        message: StatusMessage,
        peers: &[MemberId],
    ) -> (Option<StatusMessage>, Vec<Send>) {
        match message {
            StatusMessage::Reports(reports) => {
                let news = self.merge(reports);
                let passed_on = match news.is_empty() {
                    true => Vec::new(),
                    false => self.push(peers, from, StatusMessage::Reports(news)),
                };
                (None, passed_on)
            }
            StatusMessage::Versions(theirs) => (Some(self.table.delta(&theirs)), Vec::new()),
            StatusMessage::Delta { .. } => (None, Vec::new()),
        }
    }

    /// The digest of `peer` showed another table: our versions to it, unless an exchange
    /// with it runs already. Its answer goes to [`Self::answered`].
    pub fn exchange(&mut self, peer: &MemberId) -> Option<Send> {
        self.exchanging.insert(peer.peer_id.clone()).then(|| Send {
            to: peer.clone(),
            message: StatusMessage::Versions(self.table.versions()),
        })
    }

    /// The answer to our versions came back from `peer` (`None`: the exchange failed): keep
    /// what is newer, and send back what it wants.
    pub fn answered(&mut self, peer: &MemberId, answer: Option<StatusMessage>) -> Option<Send> {
        self.exchanging.remove(&peer.peer_id);
        let Some(StatusMessage::Delta { reports, want }) = answer else {
            return None;
        };
        self.merge(reports);
        let wanted = self.table.reports(&want);
        (!wanted.is_empty()).then(|| Send {
            to: peer.clone(),
            message: StatusMessage::Reports(wanted),
        })
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
        node != self.mine.node && Arc::make_mut(&mut self.table).forget(node)
    }

    /// Keeps the reports newer than ours (never one about this node); returns those kept.
    fn merge(&mut self, reports: Vec<Arc<NodeStatus>>) -> Vec<Arc<NodeStatus>> {
        reports
            .into_iter()
            .filter(|r| r.node != self.mine.node && self.merge_one(r))
            .collect()
    }

    /// Keeps `report` if it is newer than the table's, copying the table first only then.
    fn merge_one(&mut self, report: &Arc<NodeStatus>) -> bool {
        self.table.is_newer(report) && Arc::make_mut(&mut self.table).merge(report.clone())
    }

    /// `message` to ⌈ln N⌉ + `extra` random `peers`, leaving out `except` (a libp2p id).
    fn push(&mut self, peers: &[MemberId], except: &str, message: StatusMessage) -> Vec<Send> {
        self.fanout
            .push(peers, self.extra, |m| m.peer_id == except)
            .into_iter()
            .map(|to| Send {
                to: to.clone(),
                message: message.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
