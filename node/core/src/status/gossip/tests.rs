//! A whole cluster's status gossip in one thread, deterministic: every node's change reaches
//! every node, by pushes and then by digest exchanges, at a cost per node that does not grow
//! with the cluster; news leaves together; exchanges keep out of the pushes' way.

use super::*;
use crate::gossip::{push_width, starts_exchange};
use crate::status::{NodeName, running_pod};
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
    peers: Vec<Peers>,
    in_flight: VecDeque<(usize, Send)>,
    /// Messages each node sent (answers included).
    sent: Vec<usize>,
    now: Duration,
}

impl Cluster {
    fn new(n: usize) -> Self {
        let all: Vec<MemberId> = (0..n).map(member).collect();
        Cluster {
            nodes: (0..n)
                .map(|i| {
                    StatusGossip::new(all[i].name.clone(), NodeKey::numbered(i), 1, 3, i as u64)
                })
                .collect(),
            peers: (0..n)
                .map(|i| {
                    let others = all.iter().filter(|m| m.name != all[i].name);
                    Peers::of(others.cloned())
                })
                .collect(),
            in_flight: VecDeque::new(),
            sent: vec![0; n],
            now: Duration::ZERO,
        }
    }

    fn index(to: &MemberId) -> usize {
        to.name[1..].parse().unwrap()
    }

    fn send(&mut self, from: usize, sends: impl IntoIterator<Item = Send>) {
        self.in_flight.extend(sends.into_iter().map(|s| (from, s)));
    }

    /// Delivers every message, and what they cause, then the pushes due [`PUSH_AFTER`]
    /// later, until nothing is left to send. Returns how many pushes were made.
    fn run(&mut self) -> usize {
        let mut pushes = 0;
        loop {
            while let Some((from, Send { to, message })) = self.in_flight.pop_front() {
                self.sent[from] += 1;
                let to = Self::index(&to);
                if let Some(answer) = self.nodes[to].receive(message, self.now) {
                    self.sent[to] += 1;
                    let back = self.nodes[from].answered(&member(to), Some(answer), self.now);
                    self.send(from, back);
                }
            }
            self.now += PUSH_AFTER;
            let due: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| self.nodes[i].push_due())
                .collect();
            if due.is_empty() {
                return pushes;
            }
            for i in due {
                pushes += 1;
                let sends = self.nodes[i].push(&self.peers[i], self.now);
                self.send(i, sends);
            }
        }
    }

    /// One probe period of anti-entropy: each node and the node `step` places after it hear
    /// each other's digests; the smaller id of a differing pair begins an exchange. Returns
    /// how many pairs differed.
    fn round(&mut self, step: usize) -> usize {
        let n = self.nodes.len();
        self.now += EXCHANGE_GAP;
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
            let versions = self.nodes[a].exchange(&member(b), self.now);
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
        let node = member(i).name.clone();
        cluster.nodes[i].set_pods(vec![running_pod(&node)]);
    }
    let pushes = cluster.run();
    let pushed = cluster.sent.clone();
    let missing: usize = cluster.nodes.iter().map(|g| n - g.table().len()).sum();
    // The rumours alone reach nearly everything: each change misses about e^-4 (2 %) of the
    // nodes, passed on to RELAY_WIDTH peers.
    assert!(
        missing < n * n / 25,
        "{missing} of {} reports missing after the pushes",
        n * n
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
        assert_eq!(g.table().len(), n);
        assert_eq!(g.table().fingerprint(), fingerprint);
    }
    // Every node changed at once: each pushed a few times in all (its own report, then what
    // it heard first in each round of the rumour), push_width messages a push, not a push
    // per change it heard of.
    let width = push_width(3, n - 1);
    eprintln!(
        "DBG pushes {pushes} most {most_dbg} total {total_dbg} width {width}",
        most_dbg = pushed.iter().max().unwrap(),
        total_dbg = pushed.iter().sum::<usize>()
    );
    let most = *pushed.iter().max().unwrap();
    assert!(pushes <= n * 8, "{pushes} pushes for {n} changes");
    // What a node passes on goes to RELAY_WIDTH peers, not `width` (45 messages a node then).
    let total: usize = pushed.iter().sum();
    assert!(total <= n * 35, "{total} messages for {n} changes");
    assert!(
        most <= width * 8,
        "a node sent {most} messages for {n} changes"
    );
    assert!(
        *cluster.sent.iter().max().unwrap() <= most + 30,
        "the exchanges cost a node a few messages more"
    );
}

#[test]
fn a_report_once_forgotten_is_not_brought_back_by_a_slower_peer() {
    let mut cluster = Cluster::new(3);
    cluster.nodes[2].set_pods(vec![running_pod("n0002")]);
    cluster.run();
    // n0002 dies; n0000 hears of it, n0001 not yet.
    assert!(cluster.nodes[0].forget("n0002"));
    cluster.now += EXCHANGE_QUIET;
    let versions = cluster.nodes[0].exchange(&member(1), cluster.now);
    cluster.send(0, versions);
    cluster.run();
    assert!(cluster.nodes[0].table().report("n0002").is_none());
    assert!(cluster.nodes[1].table().report("n0002").is_some());
    assert!(
        !cluster.nodes[0].forget("n0000"),
        "a node never forgets itself"
    );
}

#[test]
fn news_waits_for_the_push_and_leaves_in_one_message_per_peer() {
    let mut g = StatusGossip::new("n0000".into(), NodeKey::numbered(0), 1, 3, 0);
    let peers = Peers::of((1..4).map(member));
    assert!(!g.push_due(), "no news, no push");
    g.set_pods(vec![]);
    assert!(!g.push_due(), "no change, no news");
    g.set_pods(vec![running_pod("n0000")]);
    let mut other = StatusGossip::new("n0001".into(), NodeKey::numbered(1), 1, 3, 1);
    other.set_not_ready(Some("disk full".into()));
    other.set_not_ready(None);
    let reports = other
        .push(&Peers::of([member(0)]), Duration::ZERO)
        .remove(0)
        .message;
    assert_eq!(g.receive(reports, Duration::ZERO), None);
    g.set_leaving();
    assert!(g.push_due(), "a push is asked for");
    assert!(!g.push_due(), "once");
    let sends = g.push(&peers, Duration::ZERO);
    assert_eq!(sends.len(), 3, "every peer of a 4-node cluster");
    for send in &sends {
        let StatusMessage::Reports(reports) = &send.message else {
            panic!("{send:?}");
        };
        let versions: Vec<(&str, u64)> = reports
            .iter()
            .map(|r| (r.node.as_str(), r.version))
            .collect();
        assert_eq!(
            versions,
            [("n0000", 2), ("n0001", 2)],
            "the news of both nodes, each at its newest version only"
        );
    }
    assert!(!g.push_due(), "nothing left to push");
    assert!(g.push(&peers, Duration::ZERO).is_empty());
}

#[test]
fn no_exchange_while_pushes_bring_news_nor_soon_after_one_that_brought_nothing() {
    let ms = Duration::from_millis;
    let mut g = StatusGossip::new("n0000".into(), NodeKey::numbered(0), 1, 3, 0);
    let peer = member(1);
    let mut other = StatusGossip::new("n0001".into(), NodeKey::numbered(1), 1, 3, 1);
    other.set_pods(vec![running_pod("n0001")]);
    let news = other
        .push(&Peers::of([member(0)]), Duration::ZERO)
        .remove(0)
        .message;
    g.receive(news.clone(), ms(1000));
    assert!(
        g.exchange(&peer, ms(1400)).is_none(),
        "the pushes still spread"
    );
    g.receive(news, ms(1450));
    assert!(
        g.exchange(&peer, ms(1600)).is_some(),
        "a push that brought nothing new keeps nobody waiting"
    );
    let nothing = StatusMessage::Versions {
        buckets: vec![],
        versions: vec![],
    };
    assert!(g.answered(&peer, Some(nothing), ms(1700)).is_none());
    assert!(g.exchange(&peer, ms(2600)).is_none(), "it brought nothing");
    assert!(g.exchange(&peer, ms(2700)).is_some());
    // The peer holds its own report newer, and lacks ours: its versions where the sums
    // differ, then our delta, then what we wanted.
    other.set_pods(vec![]);
    let sums = StatusMessage::Sums(g.table().sums());
    let versions = other.receive(sums, ms(2750));
    let delta = g
        .answered(&peer, versions, ms(2750))
        .expect("our delta to it");
    let StatusMessage::Delta { reports, want } = &delta.message else {
        panic!("{delta:?}")
    };
    assert_eq!(
        (reports[0].node.as_str(), &want[..]),
        ("n0000", &[NodeName::new("n0001")][..])
    );
    assert!(
        g.exchange(&member(2), ms(2800)).is_none(),
        "the exchange goes on until the delta is answered"
    );
    let wanted = other.receive(delta.message, ms(2800));
    assert!(other.table().report("n0000").is_some(), "it took ours");
    assert!(g.answered(&peer, wanted, ms(2800)).is_none());
    assert_eq!(other.table(), g.table(), "and we took its own");
    assert!(
        g.exchange(&peer, ms(2800)).is_some(),
        "one that brought news may be followed at once: a node catching up"
    );
    // The clock steps back an hour just after a push brought news: the wait is no longer
    // than it would have been.
    other.set_pods(vec![running_pod("n0001")]);
    let hour = Duration::from_secs(3600);
    g.answered(&peer, None, ms(2800));
    g.receive(
        other
            .push(&Peers::of([member(0)]), Duration::ZERO)
            .remove(0)
            .message,
        hour,
    );
    assert!(
        g.exchange(&peer, ms(3000)).is_none(),
        "the pushes still spread"
    );
    assert!(
        g.exchange(&peer, ms(3000) + EXCHANGE_GAP).is_some(),
        "a clock stepped back holds exchanges off no longer than a wait"
    );
}

#[test]
fn one_exchange_at_a_time_and_a_report_forgotten_is_not_pushed() {
    let mut g = StatusGossip::new("n0000".into(), NodeKey::numbered(0), 1, 3, 0);
    let peer = member(1);
    let now = Duration::ZERO;
    assert!(g.exchange(&peer, now).is_some());
    assert!(g.exchange(&member(2), now).is_none(), "one is running");
    assert!(g.answered(&peer, None, now).is_none());
    let later = now + EXCHANGE_GAP;
    assert!(
        g.exchange(&member(2), later).is_some(),
        "over once answered"
    );
    let mut other = StatusGossip::new("n0001".into(), NodeKey::numbered(1), 1, 3, 1);
    other.set_pods(vec![running_pod("n0001")]);
    g.receive(
        other
            .push(&Peers::of([member(0)]), Duration::ZERO)
            .remove(0)
            .message,
        later,
    );
    assert!(g.forget("n0001"));
    assert!(
        g.push(&Peers::of([peer]), Duration::ZERO).is_empty(),
        "the dead node's report is not news"
    );
}

#[test]
fn a_report_of_pods_being_created_waits_for_them_to_run_for_a_second_at_most() {
    let mut g = StatusGossip::new("n0000".into(), NodeKey::numbered(0), 1, 3, 0);
    let peers = Peers::of((1..4).map(member));
    let creating = |name: &str| PodStatus {
        name: name.into(),
        phase: Phase::Pending,
        ready: false,
        reason: Some(CONTAINER_CREATING.into()),
        container_ids: vec![],
        ..running_pod("n0000")
    };
    let pushed = |sends: &[Send]| -> Vec<u64> {
        let mut versions = Vec::new();
        for send in sends {
            let StatusMessage::Reports(reports) = &send.message else {
                panic!("{send:?}");
            };
            versions.extend(reports.iter().map(|r| r.version));
        }
        versions
    };
    g.set_pods(vec![creating("web-0")]);
    assert!(g.push_due(), "a push is asked for");
    assert!(
        g.push(&peers, Duration::ZERO).is_empty(),
        "held: its pod is being created"
    );
    let own = g.table().report("n0000").map(|r| r.version);
    assert_eq!(own, Some(1), "this node's own table holds it at once");
    g.set_pods(vec![running_pod("n0000")]);
    assert!(g.push_due(), "the news is still there to push");
    let sends = g.push(&peers, PUSH_AFTER);
    assert_eq!(
        pushed(&sends),
        [2, 2, 2],
        "one report per peer: its pod running"
    );

    // A pod that stays in creation holds the report back for START_HOLD, no longer; what
    // is passed on meanwhile goes without it, and is never held, whatever its pods.
    let at = Duration::from_secs(10);
    g.set_pods(vec![running_pod("n0000"), creating("web-1")]);
    assert!(g.push(&peers, at).is_empty());
    let mut other = StatusGossip::new("n0001".into(), NodeKey::numbered(1), 1, 3, 1);
    other.set_pods(vec![creating("web-2")]);
    let theirs = other.table().report("n0001").unwrap().clone();
    g.receive(StatusMessage::Reports(vec![theirs]), at);
    let relayed = g.push(&peers, at + PUSH_AFTER);
    assert_eq!(relayed.len(), RELAY_WIDTH.min(3));
    for send in &relayed {
        let StatusMessage::Reports(reports) = &send.message else {
            panic!("{send:?}");
        };
        let nodes: Vec<&str> = reports.iter().map(|r| r.node.as_str()).collect();
        assert_eq!(nodes, ["n0001"], "passed on at once, without ours");
    }
    assert!(g.push(&peers, at + START_HOLD - PUSH_AFTER).is_empty());
    assert_eq!(pushed(&g.push(&peers, at + START_HOLD)), [3, 3, 3]);

    // The next report of pods being created waits again, and a clock stepped back does
    // not make it wait longer than START_HOLD from the earliest time read.
    let at = Duration::from_secs(20);
    g.set_pods(vec![creating("web-1"), creating("web-3")]);
    assert!(g.push(&peers, at).is_empty(), "held again");
    let back = at - Duration::from_secs(5);
    assert!(g.push(&peers, back).is_empty());
    assert_eq!(pushed(&g.push(&peers, back + START_HOLD)), [4, 4, 4]);

    // A node leaving, or not Ready, says so at once, whatever its pods.
    g.set_pods(vec![creating("web-4")]);
    g.set_leaving();
    assert_eq!(pushed(&g.push(&peers, at)), [6, 6, 6]);
}

#[test]
fn news_keeps_the_newest_report_of_each_node_and_gives_them_in_name_order() {
    let report = |node: &str, version| {
        Arc::new(NodeStatus {
            node: node.into(),
            epoch: 1,
            version,
            pods: Vec::new(),
            not_ready: None,
            leaving: false,
            images: Vec::new(),
            signature: Default::default(),
        })
    };
    let mut news = News::default();
    // Names sharing their first 16 bytes are ordered by the rest.
    let long = "a-name-of-sixteen-bytes";
    for (node, version) in [
        ("n3", 1),
        ("n10", 1),
        (long, 1),
        ("n1", 1),
        ("n1", 2),
        ("n2", 1),
    ] {
        news.put(report(node, version));
    }
    news.put(report("a-name-of-sixteen-bytes-0", 1));
    let order: Vec<(String, u64)> = news
        .in_name_order()
        .map(|r| (r.node.clone(), r.version))
        .collect();
    let order: Vec<(&str, u64)> = order.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    assert_eq!(
        order,
        [
            (long, 1),
            ("a-name-of-sixteen-bytes-0", 1),
            ("n1", 2),
            ("n10", 1),
            ("n2", 1),
            ("n3", 1)
        ]
    );
    assert!(news.contains("n10") && !news.contains("n4"));
    for (node, _) in order {
        news.remove(node);
    }
    news.free_when_empty();
    assert!(
        news.is_empty() && news.0.capacity() == 0,
        "its room given back"
    );
}
