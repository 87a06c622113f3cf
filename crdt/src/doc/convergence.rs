//! Property test: 3 to 5 replicas make random writes and exchange sync messages in random
//! order, with duplicates and drops (a drop resets the link, as a reconnect does), and then
//! converge to identical heads and identical state, which is the union of every write. Each
//! peer also keeps a snapshot brought up to date by `refresh` after every change, which must
//! end equal to a snapshot read whole.

use super::tests::talk_deployment;
use super::{ActorId, DesiredState, Kind, Object, ObjectKey, PeerSync, Snapshot};
use proptest::prelude::*;
use std::collections::VecDeque;

#[derive(Debug, Clone)]
enum Write {
    Apply { name: u8, image: u8, replicas: u32 },
    Scale { name: u8, replicas: u32 },
    Delete { name: u8 },
}

#[derive(Debug, Clone)]
enum Step {
    Write(usize, Write),
    /// `from` generates its next message for `to` and puts it on the wire.
    Send {
        from: usize,
        to: usize,
    },
    /// The wire delivers one of its messages (any of them: out of order).
    Deliver {
        from: usize,
        to: usize,
        pick: usize,
    },
    /// The wire delivers a copy of one of its messages and keeps the original.
    Duplicate {
        from: usize,
        to: usize,
        pick: usize,
    },
    /// The link drops: messages on it are lost and both ends reset their sync state.
    Drop {
        from: usize,
        to: usize,
    },
}

fn write() -> impl Strategy<Value = Write> {
    prop_oneof![
        3 => (0u8..3, 0u8..4, 0u32..6).prop_map(|(name, image, replicas)| Write::Apply { name, image, replicas }),
        2 => (0u8..3, 0u32..9).prop_map(|(name, replicas)| Write::Scale { name, replicas }),
        1 => (0u8..3).prop_map(|name| Write::Delete { name }),
    ]
}

fn steps(peers: usize) -> impl Strategy<Value = Vec<Step>> {
    // Two distinct peers, drawn without rejects (a filter's rejects are capped per run).
    let pair = (0..peers, 1..peers).prop_map(move |(a, offset)| (a, (a + offset) % peers));
    let step = prop_oneof![
        3 => (0..peers, write()).prop_map(|(p, w)| Step::Write(p, w)),
        4 => pair.clone().prop_map(|(from, to)| Step::Send { from, to }),
        4 => (pair.clone(), any::<usize>()).prop_map(|((from, to), pick)| Step::Deliver { from, to, pick }),
        1 => (pair.clone(), any::<usize>()).prop_map(|((from, to), pick)| Step::Duplicate { from, to, pick }),
        1 => pair.prop_map(|(from, to)| Step::Drop { from, to }),
    ];
    prop::collection::vec(step, 0..120)
}

struct Cluster {
    docs: Vec<DesiredState>,
    /// `links[i][j]`: what peer i knows of its sync with peer j.
    links: Vec<Vec<PeerSync>>,
    /// `wire[i][j]`: messages from i to j not yet delivered.
    wire: Vec<Vec<VecDeque<Vec<u8>>>>,
    /// Per peer: its snapshot kept up to date by `refresh`.
    views: Vec<Snapshot>,
}

impl Cluster {
    fn new(n: usize) -> Self {
        Cluster {
            docs: (0..n)
                .map(|i| DesiredState::new(ActorId::from([i as u8 + 1; 16])))
                .collect(),
            links: (0..n)
                .map(|_| (0..n).map(|_| PeerSync::default()).collect())
                .collect(),
            wire: (0..n)
                .map(|_| (0..n).map(|_| VecDeque::new()).collect())
                .collect(),
            views: (0..n).map(|_| Default::default()).collect(),
        }
    }

    /// Brings peer `peer`'s kept snapshot up to date with its document.
    fn refresh(&mut self, peer: usize) {
        self.docs[peer].refresh(&mut self.views[peer]);
    }

    fn write(&mut self, peer: usize, w: &Write) {
        let key = |name: u8| ObjectKey::new("default", format!("app-{name}"));
        let doc = &mut self.docs[peer];
        // NotFound is a legitimate answer to scale or delete: the write was refused.
        let _ = match *w {
            Write::Apply {
                name,
                image,
                replicas,
            } => {
                let Object::Deployment(mut d) = talk_deployment(&format!("img:{image}")) else {
                    unreachable!()
                };
                d.meta.name = key(name).name;
                d.spec.replicas = replicas;
                doc.apply(&Object::Deployment(d))
            }
            Write::Scale { name, replicas } => doc.scale(&key(name), replicas),
            Write::Delete { name } => doc.delete(Kind::Deployment, &key(name)),
        };
        self.refresh(peer);
    }

    fn receive(&mut self, from: usize, to: usize, message: &[u8]) {
        self.docs[to]
            .receive_sync(&mut self.links[to][from], message)
            .expect("valid message");
        self.refresh(to);
    }

    fn step(&mut self, step: &Step) {
        match *step {
            Step::Write(peer, ref w) => self.write(peer, w),
            Step::Send { from, to } => {
                if let Some(m) = self.docs[from].sync_message(&mut self.links[from][to]) {
                    self.wire[from][to].push_back(m);
                }
            }
            Step::Deliver { from, to, pick } => {
                let queue = &mut self.wire[from][to];
                if !queue.is_empty() {
                    let m = queue.remove(pick % queue.len()).expect("in range");
                    self.receive(from, to, &m);
                }
            }
            Step::Duplicate { from, to, pick } => {
                let queue = &self.wire[from][to];
                if !queue.is_empty() {
                    let m = queue[pick % queue.len()].clone();
                    self.receive(from, to, &m);
                }
            }
            Step::Drop { from, to } => {
                self.wire[from][to].clear();
                self.wire[to][from].clear();
                self.links[from][to] = PeerSync::default();
                self.links[to][from] = PeerSync::default();
            }
        }
    }

    /// Heals the network: in-flight messages arrive, then peers talk pairwise until quiet.
    fn settle(&mut self) {
        let n = self.docs.len();
        for from in 0..n {
            for to in 0..n {
                while let Some(m) = self.wire[from][to].pop_front() {
                    self.receive(from, to, &m);
                }
            }
        }
        for _round in 0..50 {
            let mut quiet = true;
            for from in 0..n {
                for to in (0..n).filter(|&to| to != from) {
                    if let Some(m) = self.docs[from].sync_message(&mut self.links[from][to]) {
                        quiet = false;
                        self.receive(from, to, &m);
                    }
                }
            }
            if quiet {
                return;
            }
        }
        panic!("sync did not settle within 50 rounds");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn replicas_converge_to_identical_heads_and_state(peers in 3usize..=5, seed_steps in steps(5)) {
        let mut cluster = Cluster::new(peers);
        for step in &seed_steps {
            let fits = match *step {
                Step::Write(p, _) => p < peers,
                Step::Send { from, to } | Step::Deliver { from, to, .. }
                | Step::Duplicate { from, to, .. } | Step::Drop { from, to } => from < peers && to < peers,
            };
            if fits {
                cluster.step(step);
            }
        }
        // The union of every write, merged directly: what sync must arrive at.
        let mut union = DesiredState::new(ActorId::from([99; 16]));
        for doc in &mut cluster.docs {
            union.doc.merge(&mut doc.doc).expect("merge");
        }
        cluster.settle();
        let expected_heads = union.heads();
        let expected = union.snapshot();
        prop_assert!(expected.unreadable.is_empty(), "{:?}", expected.unreadable);
        for doc in &mut cluster.docs {
            let mut heads = doc.heads();
            heads.sort();
            let mut want = expected_heads.clone();
            want.sort();
            prop_assert_eq!(heads, want);
            prop_assert_eq!(&doc.snapshot(), &expected);
        }
        for view in &cluster.views {
            prop_assert_eq!(view, &expected);
        }
    }
}
