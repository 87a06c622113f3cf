//! The status actor: publishes this node's report on every change and as a heartbeat (so
//! late joiners learn it), and merges what peers publish into the [`StatusTable`].

use crate::network::Network;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::debug;
pub use weeble_core::status::*;

const BINCODE: bincode::config::Configuration = bincode::config::standard();

enum Command {
    Local(Vec<PodStatus>),
    NotReady(Option<String>),
    Remote(Vec<u8>),
    Forget(String),
}

/// Cheap handle to the status actor.
#[derive(Clone)]
pub struct Status {
    tx: mpsc::Sender<Command>,
    table: watch::Receiver<Arc<StatusTable>>,
}

impl Status {
    pub fn start(node: String, epoch: u64, network: Network, heartbeat: Duration) -> Status {
        let (tx, rx) = mpsc::channel(256);
        let mine = NodeStatus {
            node,
            epoch,
            version: 0,
            pods: Vec::new(),
            not_ready: None,
        };
        let mut table = StatusTable::default();
        table.merge(mine.clone());
        let (table_tx, table_rx) = watch::channel(Arc::new(table.clone()));
        let actor = StatusActor {
            mine,
            table,
            published: table_tx,
            network,
            heartbeat,
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

    /// This node's pods changed: record and broadcast them.
    pub async fn set_local(&self, pods: Vec<PodStatus>) {
        let _ = self.tx.send(Command::Local(pods)).await;
    }

    /// Why this node is not Ready now (`None`: it is).
    pub async fn set_not_ready(&self, why: Option<String>) {
        let _ = self.tx.send(Command::NotReady(why)).await;
    }

    /// A peer's report arrived.
    pub async fn receive(&self, data: Vec<u8>) {
        let _ = self.tx.send(Command::Remote(data)).await;
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
    heartbeat: Duration,
}

impl StatusActor {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut beat = tokio::time::interval(self.heartbeat);
        loop {
            tokio::select! {
                command = rx.recv() => match command {
                    None => return,
                    Some(Command::Local(pods)) => {
                        if pods != self.mine.pods {
                            self.mine.pods = pods;
                            self.changed().await;
                        }
                    }
                    Some(Command::NotReady(why)) => {
                        if why != self.mine.not_ready {
                            self.mine.not_ready = why;
                            self.changed().await;
                        }
                    }
                    Some(Command::Remote(data)) => match bincode::serde::decode_from_slice::<NodeStatus, _>(&data, BINCODE) {
                        Ok((report, _)) if report.node != self.mine.node => {
                            if self.table.merge(report) {
                                self.publish_table();
                            }
                        }
                        Ok(_) => {}
                        Err(e) => debug!(error = %e, "undecodable status report ignored"),
                    },
                    Some(Command::Forget(node)) => {
                        if node != self.mine.node && self.table.nodes.remove(&node).is_some() {
                            self.publish_table();
                        }
                    }
                },
                _ = beat.tick() => self.broadcast().await,
            }
        }
    }

    /// This node's report changed: a new version, published and broadcast.
    async fn changed(&mut self) {
        self.mine.version += 1;
        self.table.merge(self.mine.clone());
        self.publish_table();
        self.broadcast().await;
    }

    fn publish_table(&self) {
        self.published.send_replace(Arc::new(self.table.clone()));
    }

    async fn broadcast(&self) {
        if let Ok(bytes) = bincode::serde::encode_to_vec(&self.mine, BINCODE) {
            self.network.publish_status(bytes).await;
        }
    }
}
