//! The status actor: keeps the [`StatusTable`] and spreads it (see `weeble_core::gossip`).
//!
//! - This node's report changes → pushed to a few random peers, who pass on what is new to
//!   them the same way.
//! - A peer's digest differs from ours → an exchange of versions, then of the reports each
//!   side lacks (`StatusMessage::Versions`, `Delta`, `Reports`).
//! - Nothing changes → nothing is sent: the digests on membership datagrams stay equal.

use crate::membership::{Liveness, MemberId, live_peers};
use crate::network::{LocalDigest, Network, Response};
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::debug;
use weeble_core::gossip::{Fanout, push_width};
pub use weeble_core::status::*;

enum Command {
    Local(Vec<PodStatus>),
    NotReady(Option<String>),
    /// This node is leaving the cluster: it takes no pods any more.
    Leaving,
    /// Peers had declared this node dead and forgot its report: a new version wins it back.
    Renew,
    /// A peer's status message; the answer goes on `reply`.
    Request {
        from: String,
        message: StatusMessage,
        reply: oneshot::Sender<Response>,
    },
    /// Our digests differ: exchange versions with this peer (libp2p id).
    Exchange(String),
    /// An exchange's answer came back (`None`: it failed).
    Answered(MemberId, Option<StatusMessage>),
    Forget(String),
}

/// Cheap handle to the status actor.
#[derive(Clone)]
pub struct Status {
    tx: mpsc::Sender<Command>,
    table: watch::Receiver<Arc<StatusTable>>,
}

/// What the status actor needs from the rest of the node.
pub struct StatusConfig {
    pub node: String,
    pub epoch: u64,
    pub network: Network,
    pub members: watch::Receiver<Vec<(MemberId, Liveness)>>,
    /// Where the table's fingerprint goes, for the membership datagrams to carry.
    pub digest: Arc<LocalDigest>,
    /// How many peers beyond ⌈ln N⌉ a change is pushed to (`gossip::push_width`).
    pub fanout: usize,
}

impl Status {
    pub fn start(config: StatusConfig) -> Status {
        let (tx, rx) = mpsc::channel(1024);
        let mine = NodeStatus {
            node: config.node,
            epoch: config.epoch,
            version: 0,
            pods: Vec::new(),
            not_ready: None,
            leaving: false,
        };
        let mut table = StatusTable::default();
        table.merge(mine.clone());
        config.digest.set_status(table.fingerprint());
        let (table_tx, table_rx) = watch::channel(Arc::new(table.clone()));
        let actor = StatusActor {
            fanout: Fanout::new(config.epoch),
            mine,
            table,
            published: table_tx,
            network: config.network,
            members: config.members,
            digest: config.digest,
            width: config.fanout,
            exchanging: BTreeSet::new(),
            inbox: tx.clone(),
        };
        tokio::spawn(actor.run(rx));
        Status {
            tx,
            table: table_rx,
        }
    }

    pub fn watch(&self) -> watch::Receiver<Arc<StatusTable>> {
        self.table.clone()
    }

    /// This node's pods changed: record and spread them.
    pub async fn set_local(&self, pods: Vec<PodStatus>) {
        let _ = self.tx.send(Command::Local(pods)).await;
    }

    /// Why this node is not Ready now (`None`: it is).
    pub async fn set_not_ready(&self, why: Option<String>) {
        let _ = self.tx.send(Command::NotReady(why)).await;
    }

    /// This node is leaving: it tells the cluster to place nothing on it any more.
    pub async fn set_leaving(&self) {
        let _ = self.tx.send(Command::Leaving).await;
    }

    /// Peers had forgotten this node: spread its report again, under a new version.
    pub async fn renew(&self) {
        let _ = self.tx.send(Command::Renew).await;
    }

    /// A peer's status message: its answer comes on `reply`.
    pub async fn receive(
        &self,
        from: String,
        message: StatusMessage,
        reply: oneshot::Sender<Response>,
    ) {
        let _ = self
            .tx
            .send(Command::Request {
                from,
                message,
                reply,
            })
            .await;
    }

    /// The digest of peer `peer` (libp2p id) showed a different table: exchange with it.
    /// Dropped if the actor is busy (the next differing digest asks again).
    pub fn exchange(&self, peer: String) {
        let _ = self.tx.try_send(Command::Exchange(peer));
    }

    /// A node was declared down: its report no longer describes anything running.
    pub async fn forget(&self, node: String) {
        let _ = self.tx.send(Command::Forget(node)).await;
    }
}

struct StatusActor {
    mine: NodeStatus,
    table: StatusTable,
    published: watch::Sender<Arc<StatusTable>>,
    network: Network,
    members: watch::Receiver<Vec<(MemberId, Liveness)>>,
    digest: Arc<LocalDigest>,
    fanout: Fanout,
    /// How many peers beyond ⌈ln N⌉ a change is pushed to (`gossip::push_width`).
    width: usize,
    /// Peers (libp2p ids) an exchange is running with: one at a time each.
    exchanging: BTreeSet<String>,
    inbox: mpsc::Sender<Command>,
}

impl StatusActor {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(command) = rx.recv().await {
            match command {
                Command::Local(pods) if pods != self.mine.pods => {
                    self.mine.pods = pods;
                    self.changed();
                }
                Command::NotReady(why) if why != self.mine.not_ready => {
                    self.mine.not_ready = why;
                    self.changed();
                }
                Command::Leaving if !self.mine.leaving => {
                    self.mine.leaving = true;
                    self.changed();
                }
                Command::Local(_) | Command::NotReady(_) | Command::Leaving => {}
                Command::Renew => self.changed(),
                Command::Request {
                    from,
                    message,
                    reply,
                } => {
                    let answer = self.answer(&from, message);
                    let _ = reply.send(answer);
                }
                Command::Exchange(peer) => self.exchange(peer),
                Command::Answered(peer, answer) => {
                    self.exchanging.remove(&peer.peer_id);
                    if let Some(StatusMessage::Delta { reports, want }) = answer {
                        self.merge(reports);
                        let wanted = self.table.reports(&want);
                        if !wanted.is_empty() {
                            self.send(peer, StatusMessage::Reports(wanted));
                        }
                    }
                }
                Command::Forget(node) => {
                    if node != self.mine.node && self.table.forget(&node) {
                        self.publish_table();
                    }
                }
            }
        }
    }

    /// The answer to a peer's message, after taking in what it brought.
    fn answer(&mut self, from: &str, message: StatusMessage) -> Response {
        match message {
            StatusMessage::Reports(reports) => {
                let new = self.merge(reports);
                // A rumour: pass on what was news here (not back to where it came from).
                if !new.is_empty() {
                    let peers = self.pick(|m| m.peer_id != from);
                    for peer in peers {
                        self.send(peer, StatusMessage::Reports(new.clone()));
                    }
                }
                Response::Ack
            }
            StatusMessage::Versions(theirs) => Response::Status(self.table.delta(&theirs)),
            StatusMessage::Delta { .. } => Response::Ack,
        }
    }

    /// Keeps the reports newer than ours (never one about this node); returns those kept.
    fn merge(&mut self, reports: Vec<NodeStatus>) -> Vec<NodeStatus> {
        let mut kept = Vec::new();
        for report in reports {
            if report.node != self.mine.node && self.table.merge(report.clone()) {
                kept.push(report);
            }
        }
        if !kept.is_empty() {
            self.publish_table();
        }
        kept
    }

    /// Begins an exchange of versions with `peer`, unless one is running.
    fn exchange(&mut self, peer: String) {
        let member = self
            .members
            .borrow()
            .iter()
            .find(|(m, l)| m.peer_id == peer && *l != Liveness::Down)
            .map(|(m, _)| m.clone());
        let Some(member) = member else { return };
        if !self.exchanging.insert(peer) {
            return;
        }
        let (network, inbox) = (self.network.clone(), self.inbox.clone());
        let versions = StatusMessage::Versions(self.table.versions());
        tokio::spawn(async move {
            let answer = match network.status(member.clone(), versions).await {
                Ok(answer) => answer,
                Err(e) => {
                    debug!(peer = %member.name, error = %e, "status exchange failed");
                    None
                }
            };
            let _ = inbox.send(Command::Answered(member, answer)).await;
        });
    }

    /// This node's report changed: a new version, published and pushed.
    fn changed(&mut self) {
        self.mine.version += 1;
        self.table.merge(self.mine.clone());
        self.publish_table();
        for peer in self.pick(|_| true) {
            self.send(peer, StatusMessage::Reports(vec![self.mine.clone()]));
        }
    }

    /// A few random live peers that `keep` accepts.
    fn pick(&mut self, keep: impl Fn(&MemberId) -> bool) -> Vec<MemberId> {
        let peers: Vec<MemberId> = live_peers(&self.members.borrow(), &self.mine.node)
            .filter(|m| keep(m))
            .cloned()
            .collect();
        let width = push_width(self.width, peers.len());
        self.fanout.pick(&peers, width)
    }

    /// Sends `message` to `peer` without waiting (best effort: anti-entropy mends a loss).
    fn send(&self, peer: MemberId, message: StatusMessage) {
        let network = self.network.clone();
        tokio::spawn(async move {
            if let Err(e) = network.status(peer.clone(), message).await {
                debug!(peer = %peer.name, error = %e, "status not delivered");
            }
        });
    }

    fn publish_table(&self) {
        self.digest.set_status(self.table.fingerprint());
        self.published.send_replace(Arc::new(self.table.clone()));
    }
}
