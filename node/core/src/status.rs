//! Observed status, gossiped outside the automerge document (it churns, and the document's
//! history only grows): each node's pods, last-writer-wins per node by (epoch, version).
//!
//! [`StatusTable`] holds the latest report of every node; [`StatusGossip`] keeps it.

use crate::keys::{NodeKey, Signature};
use hashbrown::hash_table::{Entry, HashTable};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use weeble_crdt::{Labels, Protocol};

mod gossip;
pub use gossip::{EXCHANGE_GAP, EXCHANGE_QUIET, PUSH_AFTER, Send, StatusGossip};

/// Kubernetes' pod phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

/// Kubernetes' reason for a pod whose containers are being created.
pub const CONTAINER_CREATING: &str = "ContainerCreating";

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
    /// Shared by the pods of one deployment on the node that reports them.
    pub labels: Arc<Labels>,
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

/// An image a node holds, as its report says: what its containers or a pull named it, and
/// the engine's id for it (the sha256 of its config, the same on every engine): where a node
/// that lacks the image can fetch it, and what the copy must be.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HeldImage {
    pub image: String,
    pub id: String,
}

/// The most images a node's report lists.
pub const MAX_HELD_IMAGES: usize = 256;

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
    /// The node is leaving the cluster (it was told to stop): it takes no pods, and hands
    /// over those it runs.
    pub leaving: bool,
    /// The images its engine holds that its pods name (sorted, at most [`MAX_HELD_IMAGES`]).
    pub images: Vec<HeldImage>,
    /// The node's signature of the rest ([`Self::signed`]), by its key: whoever passes a
    /// report on cannot change it, nor make one for another node. Checked against the peer
    /// id of the member of that name ([`Self::is_signed_by`]).
    pub signature: Signature,
}

impl NodeStatus {
    /// This report signed by `key` (its node's).
    pub fn signed(mut self, key: &NodeKey) -> Self {
        self.signature = key.sign(&self.signed_bytes());
        self
    }

    /// Whether the key of `peer_id` signed this report.
    pub fn is_signed_by(&self, peer_id: &str) -> bool {
        self.signature.is_by(peer_id, || self.signed_bytes())
    }

    /// What the signature covers: every field but itself, as they travel.
    fn signed_bytes(&self) -> Vec<u8> {
        let NodeStatus {
            node,
            epoch,
            version,
            pods,
            not_ready,
            leaving,
            images,
            signature: _,
        } = self;
        let fields = (node, epoch, version, pods, not_ready, leaving, images);
        bincode::serde::encode_to_vec(fields, crate::wire::BINCODE).unwrap_or_default()
    }

    /// `(epoch, version)`: what orders a node's reports.
    pub fn at(&self) -> (u64, u64) {
        (self.epoch, self.version)
    }
}

/// Where one node's report stands: `(epoch, version)` orders its reports. On the wire, the
/// node's name, the epoch and the version; in memory, the report they were read from, shared
/// with the table that holds it. An exchange's answer names every node in the buckets that
/// differ, and once 30 of 3,000 simulated nodes crashed, most buckets of most tables differed
/// for a while: the answers' copies of those names were the largest thing the simulator
/// held at its peak.
#[derive(Debug, Clone)]
pub struct Version(Arc<NodeStatus>);

/// A node's name, as a [`StatusMessage::Delta`] asks for its report: on the wire, the name;
/// in memory, a report of that node, shared, as in a [`Version`] (the asker names the nodes
/// whose versions the answer held newer).
#[derive(Debug, Clone)]
pub struct NodeName(Arc<NodeStatus>);

/// A version as it travels.
#[derive(Serialize, Deserialize)]
#[serde(rename = "Version")]
struct VersionOnWire<N> {
    node: N,
    epoch: u64,
    version: u64,
}

/// A report of nothing but where it stands: what a version or a name read off the wire is.
fn bare(node: String, epoch: u64, version: u64) -> Arc<NodeStatus> {
    Arc::new(NodeStatus {
        node,
        epoch,
        version,
        pods: Vec::new(),
        not_ready: None,
        leaving: false,
        images: Vec::new(),
        signature: Signature::default(),
    })
}

impl Version {
    /// Where `report` stands.
    pub fn of(report: &Arc<NodeStatus>) -> Self {
        Version(report.clone())
    }

    pub fn new(node: impl Into<String>, epoch: u64, version: u64) -> Self {
        Version(bare(node.into(), epoch, version))
    }

    pub fn node(&self) -> &str {
        &self.0.node
    }

    /// `(epoch, version)`.
    pub fn at(&self) -> (u64, u64) {
        self.0.at()
    }

    /// Its node's name.
    pub fn name(&self) -> NodeName {
        NodeName(self.0.clone())
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.node() == other.node() && self.at() == other.at()
    }
}

impl Eq for Version {}

impl Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (epoch, version) = self.at();
        VersionOnWire {
            node: self.node(),
            epoch,
            version,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let v = VersionOnWire::<String>::deserialize(deserializer)?;
        Ok(Version(bare(v.node, v.epoch, v.version)))
    }
}

impl NodeName {
    pub fn new(node: impl Into<String>) -> Self {
        NodeName(bare(node.into(), 0, 0))
    }

    pub fn as_str(&self) -> &str {
        &self.0.node
    }
}

impl PartialEq for NodeName {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for NodeName {}

impl PartialEq<&str> for NodeName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for NodeName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.as_str().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for NodeName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(NodeName::new)
    }
}

/// What peers send each other about status (see [`crate::gossip`] for when). `Sums` and
/// `Delta` ask for an answer ([`Self::asks`]); the others do not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StatusMessage {
    /// Reports pushed (a node's own change, or one passed on) or asked for: the receiver
    /// keeps what is newer. Shared: a report passed on, or kept, is never copied (on the wire
    /// an `Arc` is the report itself).
    Reports(Vec<Arc<NodeStatus>>),
    /// An exchange begins (the digests differed): the sender's [`StatusTable::sums`]. Answered
    /// with `Versions`.
    Sums(Vec<u64>),
    /// The answer to `Sums`: the buckets whose sums differ, and the answerer's versions in
    /// them.
    Versions {
        buckets: Vec<u8>,
        versions: Vec<Version>,
    },
    /// What the asker makes of the answer's versions: its reports in those buckets that the
    /// answerer lacks or holds older, and the nodes whose reports the answerer holds newer.
    /// Answered with those reports, as `Reports`.
    Delta {
        reports: Vec<Arc<NodeStatus>>,
        want: Vec<NodeName>,
    },
}

impl StatusMessage {
    /// The reports it carries, if it carries any.
    pub fn reports_mut(&mut self) -> Option<&mut Vec<Arc<NodeStatus>>> {
        match self {
            StatusMessage::Reports(reports) | StatusMessage::Delta { reports, .. } => Some(reports),
            StatusMessage::Sums(_) | StatusMessage::Versions { .. } => None,
        }
    }

    /// Whether the sender waits for an answer (the driver hands it back, or its failure).
    pub fn asks(&self) -> bool {
        matches!(self, StatusMessage::Sums(_) | StatusMessage::Delta { .. })
    }
}

/// The buckets a status table is summed in ([`StatusTable::sums`]): an exchange carries the
/// versions of the buckets that differ only, where it had carried the whole table's (10,000
/// entries at 10,000 nodes) each time. This saves bytes on the wire; the simulator's wall
/// time stayed the same (at 5,000 nodes, reports passed on cost far more than exchanges).
pub const BUCKETS: usize = 64;

/// The most pods the reports of one message carry (a report's size is mostly its pods); the
/// rest follow in the next exchange, which the digests still differing will bring.
pub const MAX_PODS_PER_MESSAGE: usize = 4096;

/// A node forgotten (declared down) at this version: a peer offering the same report again,
/// or an older one, is refused, or the dead node would come back from a slower peer's table.
/// Only a newer report (a new life, or the node answering it is alive after all) is kept.
pub const MAX_FORGOTTEN: usize = 4096;

/// The latest report of every node heard from.
#[derive(Debug, Clone)]
pub struct StatusTable {
    /// Every node's latest report, in the bucket of its node's name ([`name_hash`],
    /// [`bucket`]), found by that hash and compared by the name it holds: one pointer a
    /// report, no copy of its name. Each report received is looked up (one message brings
    /// many, and each comes several times); nothing is read in this table's own order
    /// ([`Self::nodes`] sorts). At 1,000 simulated nodes a B-tree by name beside a hash index
    /// held 48 bytes a report, and kept a fifth of a deployment's start in replacing entries.
    reports: [HashTable<Arc<NodeStatus>>; BUCKETS],
    /// Nodes declared down, with the version of their report then (at most [`MAX_FORGOTTEN`]).
    forgotten: BTreeMap<String, (u64, u64)>,
    /// Per bucket, the XOR of its reports' version hashes: equal buckets, equal sums. Kept up
    /// to date at each change, so reading them costs nothing.
    sums: [u64; BUCKETS],
    /// The nodes whose report says they take no pods, kept with each change.
    unschedulable: BTreeSet<String>,
}

impl Default for StatusTable {
    fn default() -> Self {
        StatusTable {
            reports: std::array::from_fn(|_| HashTable::new()),
            forgotten: BTreeMap::new(),
            sums: [0; BUCKETS],
            unschedulable: BTreeSet::new(),
        }
    }
}

/// Equal tables hold the same reports and remember the same forgotten nodes; the rest follows.
impl PartialEq for StatusTable {
    fn eq(&self, other: &Self) -> bool {
        self.nodes().eq(other.nodes()) && self.forgotten == other.forgotten
    }
}

impl Eq for StatusTable {}

/// Whether a report of `node` at `at` is newer than `held` (the table's report of that node,
/// if any) and than the version `node` was forgotten at (in `forgotten`).
fn takes(
    forgotten: &BTreeMap<String, (u64, u64)>,
    held: Option<&Arc<NodeStatus>>,
    node: &str,
    at: (u64, u64),
) -> bool {
    // Most reports received are held already: the forgotten, a tree of names, are read only
    // for a newer one (after 100 crashes of 10,000 simulated nodes, reading it for every
    // report was a part of the third of the time spent in this check).
    let newer = held.is_none_or(|old| at > old.at());
    newer && forgotten.get(node).is_none_or(|&f| at > f)
}

/// The hash a node's report is found by in [`StatusTable::reports`].
fn name_hash(node: &str) -> u64 {
    crate::hash::mix(crate::hash::fnv1a(&[node.as_bytes()]))
}

/// The bucket of a report whose node's name hashes to `name_hash`.
fn bucket(name_hash: u64) -> usize {
    (name_hash >> 58) as usize
}

/// The hash of one report's version, XORed into its bucket's sum.
fn version_hash(node: &str, epoch: u64, version: u64) -> u64 {
    crate::hash::mix(crate::hash::fnv1a(&[
        node.as_bytes(),
        b"\0",
        &epoch.to_le_bytes(),
        &version.to_le_bytes(),
    ]))
}

impl StatusTable {
    /// Every node's latest report, in node name order (sorted at each call).
    pub fn nodes(&self) -> impl ExactSizeIterator<Item = &Arc<NodeStatus>> {
        let mut all: Vec<&Arc<NodeStatus>> = self.reports.iter().flatten().collect();
        all.sort_unstable_by(|a, b| a.node.cmp(&b.node));
        all.into_iter()
    }

    /// How many reports are held.
    pub fn len(&self) -> usize {
        self.reports.iter().map(HashTable::len).sum()
    }

    /// Whether no report is held.
    pub fn is_empty(&self) -> bool {
        self.reports.iter().all(HashTable::is_empty)
    }

    /// The latest report of `node`, if one is held.
    pub fn report(&self, node: &str) -> Option<&Arc<NodeStatus>> {
        let hash = name_hash(node);
        self.reports[bucket(hash)].find(hash, |r| r.node == node)
    }

    /// A fingerprint of every report's version: two tables with the same fingerprint hold the
    /// same reports.
    pub fn fingerprint(&self) -> u64 {
        self.sums.iter().fold(0, |a, s| a ^ s)
    }

    /// The sums of the reports' versions, by bucket: what an exchange begins with.
    pub fn sums(&self) -> Vec<u64> {
        self.sums.to_vec()
    }

    /// The buckets whose sums differ from a peer's `theirs` (all of those it sent none for).
    pub fn differing(&self, theirs: &[u64]) -> Vec<u8> {
        let differs = |b: usize| theirs.get(b) != Some(&self.sums[b]);
        (0..BUCKETS)
            .filter(|&b| differs(b))
            .map(|b| b as u8)
            .collect()
    }

    /// Whether `report` is newer than what we have for its node (and than the version its
    /// node was forgotten at): whether [`Self::merge`] would keep it.
    pub fn is_newer(&self, report: &NodeStatus) -> bool {
        // The very report held, come again (passed on in the same process), is found by a
        // pointer compared, not a name.
        let hash = name_hash(&report.node);
        let held = self.reports[bucket(hash)].find(hash, |r| {
            std::ptr::eq(&**r, report) || r.node == report.node
        });
        takes(&self.forgotten, held, &report.node, report.at())
    }

    /// Keeps `report` if it is newer ([`Self::is_newer`]). Returns true if kept. The report
    /// is looked up once, for the check and the change: a report heard newer was looked up
    /// twice here, and once more by the gossip's check before (each a miss in the cache at
    /// thousands of simulated nodes).
    pub fn merge(&mut self, report: impl Into<Arc<NodeStatus>>) -> bool {
        let report = report.into();
        let hash = name_hash(&report.node);
        let entry = self.reports[bucket(hash)].entry(
            hash,
            |r| Arc::ptr_eq(r, &report) || r.node == report.node,
            |r| name_hash(&r.node),
        );
        let held = match &entry {
            Entry::Occupied(held) => Some(held.get()),
            Entry::Vacant(_) => None,
        };
        if !takes(&self.forgotten, held, &report.node, report.at()) {
            return false;
        }
        self.forgotten.remove(&report.node);
        let sum = &mut self.sums[bucket(hash)];
        *sum ^= version_hash(&report.node, report.epoch, report.version);
        if report.not_ready.is_some() || report.leaving {
            self.unschedulable.insert(report.node.clone());
        } else if !self.unschedulable.is_empty() {
            self.unschedulable.remove(&report.node);
        }
        match entry {
            Entry::Occupied(mut held) => {
                let old = std::mem::replace(held.get_mut(), report);
                *sum ^= version_hash(&old.node, old.epoch, old.version);
            }
            Entry::Vacant(vacant) => drop(vacant.insert(report)),
        }
        true
    }

    /// Whether `node` was forgotten (declared down) and not heard from since.
    pub fn is_forgotten(&self, node: &str) -> bool {
        self.forgotten.contains_key(node)
    }

    /// Takes `node`'s reports again, whatever their version: it is a member again.
    pub fn remember(&mut self, node: &str) {
        self.forgotten.remove(node);
    }

    /// Drops `node`'s report (it was declared down: nothing it reported runs any more). True
    /// if there was one.
    pub fn forget(&mut self, node: &str) -> bool {
        let hash = name_hash(node);
        let Ok(held) = self.reports[bucket(hash)].find_entry(hash, |r| r.node == node) else {
            return false;
        };
        let (old, _) = held.remove();
        self.unschedulable.remove(node);
        self.sums[bucket(hash)] ^= version_hash(&old.node, old.epoch, old.version);
        if self.forgotten.len() >= MAX_FORGOTTEN {
            self.forgotten.pop_first();
        }
        self.forgotten
            .insert(old.node.clone(), (old.epoch, old.version));
        true
    }

    /// The version of every report held in `buckets` (those past [`BUCKETS`] hold none), in
    /// no particular order.
    pub fn versions(&self, buckets: &[u8]) -> Vec<Version> {
        self.in_buckets(buckets).map(Version::of).collect()
    }

    /// What a peer's `theirs`, its versions in `buckets`, lacks: our reports in those buckets
    /// that it lacks or holds older (up to [`MAX_PODS_PER_MESSAGE`] pods), and the nodes
    /// whose reports it holds newer (the [`StatusMessage::Delta`] to send it). Both sides are
    /// read through their hashes, not in name order: sorting them was most of an exchange's
    /// cost at 3,000 simulated nodes.
    pub fn delta(&self, buckets: &[u8], theirs: &[Version]) -> StatusMessage {
        let mut by_name: HashTable<&Version> = HashTable::with_capacity(theirs.len());
        for v in theirs {
            let hash = name_hash(v.node());
            if by_name.find(hash, |held| held.node() == v.node()).is_none() {
                by_name.insert_unique(hash, v, |held| name_hash(held.node()));
            }
        }
        let want = by_name
            .iter()
            .filter(|v| takes(&self.forgotten, self.report(v.node()), v.node(), v.at()))
            .map(|v| v.name())
            .collect();
        let newer = self.in_buckets(buckets).filter(|n| {
            let theirs = by_name.find(name_hash(&n.node), |v| v.node() == n.node);
            theirs.is_none_or(|v| (n.epoch, n.version) > v.at())
        });
        StatusMessage::Delta {
            reports: bounded(newer),
            want,
        }
    }

    /// The reports held in `buckets`.
    fn in_buckets<'a>(&'a self, buckets: &'a [u8]) -> impl Iterator<Item = &'a Arc<NodeStatus>> {
        let tables = buckets
            .iter()
            .filter_map(|&b| self.reports.get(usize::from(b)));
        tables.flatten()
    }

    /// The reports of `nodes` (those held), up to [`MAX_PODS_PER_MESSAGE`] pods.
    pub fn reports(&self, nodes: &[NodeName]) -> Vec<Arc<NodeStatus>> {
        bounded(nodes.iter().filter_map(|n| self.report(n.as_str())))
    }

    /// The nodes that take no pods: those that report themselves not Ready, or leaving.
    pub fn unschedulable(&self) -> &BTreeSet<String> {
        &self.unschedulable
    }

    /// Every pod of every node, in (namespace, name) order.
    pub fn pods(&self) -> Vec<&PodStatus> {
        let mut pods: Vec<&PodStatus> = self.nodes().flat_map(|n| &n.pods).collect();
        pods.sort_by(|a, b| {
            (&a.namespace, &a.name, &a.node).cmp(&(&b.namespace, &b.name, &b.node))
        });
        pods
    }
}

/// Takes reports until the next would carry the message past [`MAX_PODS_PER_MESSAGE`] pods
/// (the first is always taken, so a message always moves things on).
fn bounded<'a>(reports: impl Iterator<Item = &'a Arc<NodeStatus>>) -> Vec<Arc<NodeStatus>> {
    let mut pods = 0;
    let mut out = Vec::new();
    for r in reports {
        pods += r.pods.len();
        if pods > MAX_PODS_PER_MESSAGE && !out.is_empty() {
            break;
        }
        out.push(r.clone());
    }
    out
}

/// A Running pod of `node`: for tests.
#[cfg(test)]
pub(crate) fn running_pod(node: &str) -> PodStatus {
    PodStatus {
        name: format!("{node}-web-0"),
        namespace: "default".into(),
        deployment: "web".into(),
        node: node.into(),
        labels: Arc::default(),
        container_ids: vec!["c".into()],
        phase: Phase::Running,
        ready: true,
        restarts: 0,
        reason: None,
        message: None,
        host_ip: IpAddr::from([127, 0, 0, 1]),
        ports: vec![],
        started_at_ms: 1,
        template_hash: "h".into(),
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
            leaving: false,
            images: Vec::new(),
            signature: Signature::default(),
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
        assert_eq!(t.report("a").unwrap().epoch, 2);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn reports_are_found_by_name_through_merges_and_forgets() {
        let mut t = StatusTable::default();
        for i in 0..500 {
            t.merge(report(&format!("n{i}"), 1, 1));
        }
        for i in (0..500).step_by(2) {
            t.forget(&format!("n{i}"));
        }
        for i in (0..500).step_by(4) {
            t.merge(report(&format!("n{i}"), 2, 0));
        }
        for i in 0..500 {
            let name = format!("n{i}");
            let held = t.report(&name).map(|r| (r.epoch, r.version));
            let in_order = t.nodes().find(|r| r.node == name);
            assert_eq!(held, in_order.map(|r| (r.epoch, r.version)));
            let expected = match i % 4 {
                0 => Some((2, 0)),
                2 => None,
                _ => Some((1, 1)),
            };
            assert_eq!(held, expected, "{name}");
        }
        assert!(!t.is_newer(&report("n1", 1, 1)) && t.is_newer(&report("n1", 1, 2)));
        assert!(
            !t.is_newer(&report("n2", 1, 1)),
            "forgotten at that version"
        );
    }

    #[test]
    fn the_fingerprint_follows_the_versions_held_whatever_the_order_they_came_in() {
        let mut a = StatusTable::default();
        let mut b = StatusTable::default();
        a.merge(report("x", 1, 1));
        a.merge(report("y", 1, 3));
        b.merge(report("y", 1, 2));
        assert_ne!(a.fingerprint(), b.fingerprint());
        b.merge(report("y", 1, 3));
        b.merge(report("x", 1, 1));
        assert_eq!(
            a.fingerprint(),
            b.fingerprint(),
            "same reports, same fingerprint"
        );
        a.forget("x");
        assert_ne!(a.fingerprint(), b.fingerprint());
        b.forget("x");
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(
            StatusTable::default().fingerprint(),
            a.fingerprint() ^ a.fingerprint()
        );
    }

    #[test]
    fn versions_and_names_travel_as_the_name_epoch_and_version_they_stand_for() {
        const CONFIG: bincode::config::Configuration = bincode::config::standard();
        fn encode(value: &impl Serialize) -> Vec<u8> {
            bincode::serde::encode_to_vec(value, CONFIG).expect("encodes")
        }
        let full = Arc::new(NodeStatus {
            pods: vec![running_pod("n7")],
            ..report("n7", 3, 9)
        });
        let version = Version::of(&full);
        let bytes = encode(&version);
        assert_eq!(bytes, encode(&("n7", 3u64, 9u64)), "as the fields were");
        let (read, _): (Version, usize) =
            bincode::serde::decode_from_slice(&bytes, CONFIG).expect("decodes");
        assert_eq!(read, version);
        assert!(read.0.pods.is_empty(), "only what travels");
        let name = version.name();
        assert_eq!(encode(&name), encode(&"n7"));
        let (read, _): (NodeName, usize) =
            bincode::serde::decode_from_slice(&encode(&name), CONFIG).expect("decodes");
        assert_eq!(read, "n7");
    }

    #[test]
    fn a_forgotten_node_stays_forgotten_until_it_reports_anew() {
        let mut t = StatusTable::default();
        t.merge(report("dead", 1, 4));
        assert!(t.forget("dead"));
        assert!(!t.forget("dead"), "forgotten once");
        assert!(
            !t.merge(report("dead", 1, 4)),
            "a slower peer offers it again: refused"
        );
        assert!(!t.merge(report("dead", 1, 3)));
        let delta = t.delta(&[], &[Version::new("dead", 1, 4)]);
        assert!(
            matches!(delta, StatusMessage::Delta { want, .. } if want.is_empty()),
            "not asked for either"
        );
        assert!(
            t.merge(report("dead", 1, 5)),
            "it was alive after all, and says so"
        );
        t.forget("dead");
        assert!(t.merge(report("dead", 2, 0)), "a new life");
    }

    #[test]
    fn an_exchange_of_versions_and_deltas_leaves_both_tables_equal() {
        let mut a = StatusTable::default();
        let mut b = StatusTable::default();
        for (node, va, vb) in [("n1", 3, 1), ("n2", 1, 4), ("n3", 2, 0), ("n4", 0, 5)] {
            if va > 0 {
                a.merge(report(node, 1, va));
            }
            if vb > 0 {
                b.merge(report(node, 1, vb));
            }
        }
        b.merge(report("n3", 7, 0));
        // a asks b with its sums; b answers with its versions where they differ; a sends
        // what b lacks, and asks for the rest.
        let buckets = b.differing(&a.sums());
        assert!(buckets.len() < BUCKETS, "only the buckets that differ");
        let StatusMessage::Delta { reports, want } = a.delta(&buckets, &b.versions(&buckets))
        else {
            panic!("a delta")
        };
        assert_eq!(
            reports.iter().map(|r| r.node.as_str()).collect::<Vec<_>>(),
            ["n1"]
        );
        let mut wanted: Vec<&str> = want.iter().map(NodeName::as_str).collect();
        wanted.sort();
        assert_eq!(wanted, ["n2", "n3", "n4"]);
        for r in reports {
            b.merge(r);
        }
        for r in b.reports(&want) {
            a.merge(r);
        }
        assert_eq!(a, b);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.sums(), b.sums());
        assert!(a.differing(&b.sums()).is_empty());
        assert_eq!(a.differing(&[]).len(), BUCKETS, "none sent: all differ");
    }

    #[test]
    fn a_delta_carries_a_bounded_number_of_pods_but_always_one_report() {
        let mut t = StatusTable::default();
        for i in 0..3 {
            let node = format!("n{i}");
            let mut r = report(&node, 1, 1);
            r.pods = vec![running_pod(&node); MAX_PODS_PER_MESSAGE / 2 + 1];
            t.merge(r);
        }
        let all: Vec<u8> = (0..BUCKETS as u8).collect();
        let StatusMessage::Delta { reports, .. } = t.delta(&all, &[]) else {
            panic!("a delta")
        };
        assert_eq!(reports.len(), 1, "two would be over the bound");
    }
}
