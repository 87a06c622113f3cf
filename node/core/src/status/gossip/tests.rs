//! A whole cluster's status gossip in one thread, deterministic: every node's change reaches
//! every node, by pushes and then by digest exchanges, at a cost per node and change that
//! does not grow with the cluster.

use super::*;
use crate::gossip::{push_width, starts_exchange};
use crate::status::running_pod;
use std::collections::VecDeque;

fn member(i: usize) -> MemberId {
    let addr = format!("127.0.{}.{}:7946", i / 250, i % 250 + 1);
    let mut m = MemberId::seed(addr.parse().unwrap());
    m.name = format!("n{i:04}");
    m.peer_id = format!("p{i:04}");
    m
}

/// N nodes that all know each other, and the messages in flight.
struct Cluster {
    nodes: Vec<StatusGossip>,
    /// Each node's live peers: everyone else.
    peers: Vec<Vec<MemberId>>,
    in_flight: VecDeque<(usize, Send)>,
    /// Messages each node sent (answers included).
    sent: Vec<usize>,
}

impl Cluster {
    fn new(n: usize) -> Self {
        let all: Vec<MemberId> = (0..n).map(member).collect();
        Cluster {
            nodes: (0..n)
                .map(|i| StatusGossip::new(all[i].name.clone(), 1, 3, i as u64))
                .collect(),
            peers: (0..n)
                .map(|i| {
                    let others = all.iter().filter(|m| m.name != all[i].name);
                    others.cloned().collect()
                })
                .collect(),
            in_flight: VecDeque::new(),
            sent: vec![0; n],
        }
    }

    fn index(to: &MemberId) -> usize {
        to.name[1..].parse().unwrap()
    }

    fn send(&mut self, from: usize, sends: impl IntoIterator<Item = Send>) {
        self.in_flight.extend(sends.into_iter().map(|s| (from, s)));
    }

    /// Delivers every message, and what they cause, until none is left.
    fn run(&mut self) {
        while let Some((from, Send { to, message })) = self.in_flight.pop_front() {
            self.sent[from] += 1;
            let to = Self::index(&to);
            let sender = member(from);
            let (answer, more) = self.nodes[to].receive(&sender.peer_id, message, &self.peers[to]);
            self.send(to, more);
            if let Some(answer) = answer {
                self.sent[to] += 1;
                let back = self.nodes[from].answered(&member(to), Some(answer));
                self.send(from, back);
            }
        }
    }

    /// One probe period of anti-entropy: each node and the node `step` places after it hear
    /// each other's digests; the smaller id of a differing pair begins an exchange. Returns
    /// how many pairs differed.
    fn round(&mut self, step: usize) -> usize {
        let n = self.nodes.len();
        let mut differing = 0;
        for i in 0..n {
            let j = (i + step) % n;
            if self.nodes[i].table().fingerprint() == self.nodes[j].table().fingerprint() {
                continue;
            }
            differing += 1;
            let (a, b) = match starts_exchange(&member(i).peer_id, &member(j).peer_id) {
                true => (i, j),
                false => (j, i),
            };
            let versions = self.nodes[a].exchange(&member(b));
            self.send(a, versions);
            self.run();
        }
        differing
    }
}

#[test]
fn every_change_reaches_every_node_at_a_flat_cost_per_node() {
    let n = 300;
    let mut cluster = Cluster::new(n);
    for i in 0..n {
        let node = member(i).name;
        let peers = cluster.peers[i].clone();
        let pushes = cluster.nodes[i].set_pods(vec![running_pod(&node)], &peers);
        assert_eq!(pushes.len(), push_width(3, n - 1), "⌈ln N⌉ + 3 peers");
        cluster.send(i, pushes);
    }
    cluster.run();
    let pushed = cluster.sent.clone();
    let missing: usize = cluster
        .nodes
        .iter()
        .map(|g| n - g.table().nodes().len())
        .sum();
    // The rumours alone reach nearly everything: about e^-3 of a node missed per change.
    assert!(
        missing < n / 5,
        "{missing} reports missing after the pushes"
    );

    let mut rounds = 0;
    while cluster.round(rounds * 7 + 1) > 0 {
        rounds += 1;
        assert!(
            rounds < 10,
            "the digests did not converge in 10 probe periods"
        );
    }
    let fingerprint = cluster.nodes[0].table().fingerprint();
    for g in &cluster.nodes {
        assert_eq!(g.table().nodes().len(), n);
        assert_eq!(g.table().fingerprint(), fingerprint);
    }
    // Each node sent about push_width messages per change: it pushed its own report, and
    // passed on each other one the first time it heard it.
    let per_change = |sent: &[usize]| *sent.iter().max().unwrap() as f64 / n as f64;
    let width = push_width(3, n - 1) as f64;
    assert!(
        per_change(&pushed) <= width * 1.2,
        "{} messages a change",
        per_change(&pushed)
    );
    assert!(
        per_change(&cluster.sent) <= width * 1.5,
        "{} messages a change with the exchanges",
        per_change(&cluster.sent)
    );
}

#[test]
fn a_report_once_forgotten_is_not_brought_back_by_a_slower_peer() {
    let mut cluster = Cluster::new(3);
    let peers = cluster.peers[2].clone();
    let pushes = cluster.nodes[2].set_pods(vec![running_pod("n0002")], &peers);
    cluster.send(2, pushes);
    cluster.run();
    // n0002 dies; n0000 hears of it, n0001 not yet.
    assert!(cluster.nodes[0].forget("n0002"));
    let versions = cluster.nodes[0].exchange(&member(1));
    cluster.send(0, versions);
    cluster.run();
    assert!(!cluster.nodes[0].table().nodes().contains_key("n0002"));
    assert!(cluster.nodes[1].table().nodes().contains_key("n0002"));
    assert!(
        !cluster.nodes[0].forget("n0000"),
        "a node never forgets itself"
    );
}

#[test]
fn one_exchange_at_a_time_with_a_peer_and_no_change_no_push() {
    let mut g = StatusGossip::new("n0000".into(), 1, 3, 0);
    let peer = member(1);
    assert!(g.exchange(&peer).is_some());
    assert!(g.exchange(&peer).is_none(), "one is running");
    assert!(g.answered(&peer, None).is_none());
    assert!(g.exchange(&peer).is_some(), "over once answered");
    let peers = vec![peer];
    assert!(
        g.set_pods(vec![], &peers).is_empty(),
        "no change, nothing sent"
    );
    assert_eq!(g.set_leaving(&peers).len(), 1);
    assert!(g.set_leaving(&peers).is_empty());
}
