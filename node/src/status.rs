//! The status actor: the shell around the core's [`StatusGossip`], which decides what this
//! node's status sends to whom (its own report's changes, rumours passed on, exchanges with a
//! peer whose digest differs). The actor feeds it this node's pods, peers' messages and
//! deaths, carries what it sends over the network, and publishes the [`StatusTable`] and
//! its fingerprint.

use crate::membership::{Liveness, MemberId, live_peers};
use crate::network::{LocalDigest, Network, Response};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::debug;
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
        let gossip = StatusGossip::new(config.node, config.epoch, config.fanout, config.epoch);
        config.digest.set_status(gossip.table().fingerprint());
        let (table_tx, table_rx) = watch::channel(Arc::new(gossip.table().clone()));
        let actor = StatusActor {
            gossip,
            published: table_tx,
            network: config.network,
            members: config.members,
            digest: config.digest,
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

/// The shell around [`StatusGossip`]: carries its messages, publishes its table.
struct StatusActor {
    gossip: StatusGossip,
    published: watch::Sender<Arc<StatusTable>>,
    network: Network,
    members: watch::Receiver<Vec<(MemberId, Liveness)>>,
    digest: Arc<LocalDigest>,
    inbox: mpsc::Sender<Command>,
}

impl StatusActor {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(command) = rx.recv().await {
            let before = self.gossip.table().fingerprint();
            let peers: Vec<MemberId> = live_peers(&self.members.borrow(), self.gossip.node())
                .cloned()
                .collect();
            let sends = match command {
                Command::Local(pods) => self.gossip.set_pods(pods, &peers),
                Command::NotReady(why) => self.gossip.set_not_ready(why, &peers),
                Command::Leaving => self.gossip.set_leaving(&peers),
                Command::Renew => self.gossip.renew(&peers),
                Command::Request {
                    from,
                    message,
                    reply,
                } => {
                    let (answer, sends) = self.gossip.receive(&from, message, &peers);
                    let _ = reply.send(answer.map_or(Response::Ack, Response::Status));
                    sends
                }
                Command::Exchange(peer) => {
                    let member = peers.iter().find(|m| m.peer_id == peer);
                    member
                        .and_then(|m| self.gossip.exchange(m))
                        .into_iter()
                        .collect()
                }
                Command::Answered(peer, answer) => {
                    self.gossip.answered(&peer, answer).into_iter().collect()
                }
                Command::Forget(node) => {
                    self.gossip.forget(&node);
                    Vec::new()
                }
            };
            if self.gossip.table().fingerprint() != before {
                self.digest.set_status(self.gossip.table().fingerprint());
                self.published
                    .send_replace(Arc::new(self.gossip.table().clone()));
            }
            for send in sends {
                self.send(send);
            }
        }
    }

    /// Carries `send` without waiting (best effort: anti-entropy mends a loss); the answer
    /// to our versions goes back to the gossip.
    fn send(&self, Send { to, message }: Send) {
        let (network, inbox) = (self.network.clone(), self.inbox.clone());
        let expects_answer = matches!(message, StatusMessage::Versions(_));
        tokio::spawn(async move {
            let answer = match network.status(to.clone(), message).await {
                Ok(answer) => answer,
                Err(e) => {
                    debug!(peer = %to.name, error = %e, "status not delivered");
                    None
                }
            };
            if expects_answer {
                let _ = inbox.send(Command::Answered(to, answer)).await;
            }
        });
    }
}
