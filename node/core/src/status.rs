//! Observed status, gossiped outside the automerge document (it churns, and the document's
//! history only grows): each node's pods, last-writer-wins per node by (epoch, version).
//!
//! [`StatusTable`] holds the latest report of every node; the node's status actor feeds it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use weeble_crdt::{Labels, Protocol};

/// Kubernetes' pod phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

/// A container port published on its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStatus {
    pub container_port: u16,
    pub protocol: Protocol,
    pub host_port: u16,
}

/// One pod as its node reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodStatus {
    pub name: String,
    pub namespace: String,
    /// The deployment's name (in the same namespace).
    pub deployment: String,
    pub node: String,
    pub labels: Labels,
    pub container_ids: Vec<String>,
    pub phase: Phase,
    pub ready: bool,
    pub restarts: u32,
    /// Why the pod is not running, in Kubernetes' words (`ErrImageNeverPull`, `CrashLoopBackOff`).
    pub reason: Option<String>,
    pub message: Option<String>,
    /// The node's address, where `ports` are published.
    pub host_ip: IpAddr,
    pub ports: Vec<PortStatus>,
    /// When the pod's containers last started, Unix milliseconds (0 if not running).
    pub started_at_ms: i64,
    /// The template hash the containers were made from.
    pub template_hash: String,
}

/// Everything one node reports. `(epoch, version)` orders reports: the epoch is the agent's
/// start time, so a restarted node's reports win over its previous life's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node: String,
    pub epoch: u64,
    pub version: u64,
    pub pods: Vec<PodStatus>,
    /// Why the node is not Ready (it cannot persist the desired state); it takes no pods
    /// while it is not.
    pub not_ready: Option<String>,
}

/// The latest report of every node heard from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusTable {
    pub nodes: BTreeMap<String, NodeStatus>,
}

impl StatusTable {
    /// Keeps `report` if it is newer than what we have for its node. Returns true if kept.
    pub fn merge(&mut self, report: NodeStatus) -> bool {
        let newer = self
            .nodes
            .get(&report.node)
            .is_none_or(|old| (report.epoch, report.version) > (old.epoch, old.version));
        if newer {
            self.nodes.insert(report.node.clone(), report);
        }
        newer
    }

    /// The nodes that report themselves not Ready.
    pub fn not_ready(&self) -> std::collections::BTreeSet<String> {
        self.nodes
            .values()
            .filter(|n| n.not_ready.is_some())
            .map(|n| n.node.clone())
            .collect()
    }

    /// Every pod of every node, in (namespace, name) order.
    pub fn pods(&self) -> Vec<&PodStatus> {
        let mut pods: Vec<&PodStatus> = self.nodes.values().flat_map(|n| &n.pods).collect();
        pods.sort_by(|a, b| {
            (&a.namespace, &a.name, &a.node).cmp(&(&b.namespace, &b.name, &b.node))
        });
        pods
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(node: &str, epoch: u64, version: u64) -> NodeStatus {
        NodeStatus {
            node: node.into(),
            epoch,
            version,
            pods: vec![],
            not_ready: None,
        }
    }

    #[test]
    fn newer_reports_win_per_node_and_a_restart_beats_its_past_life() {
        let mut t = StatusTable::default();
        assert!(t.merge(report("a", 1, 5)));
        assert!(!t.merge(report("a", 1, 4)), "older version");
        assert!(!t.merge(report("a", 1, 5)), "same version");
        assert!(
            t.merge(report("a", 2, 0)),
            "a new epoch wins whatever its version"
        );
        assert!(t.merge(report("b", 1, 1)));
        assert_eq!(t.nodes["a"].epoch, 2);
        assert_eq!(t.nodes.len(), 2);
    }
}
