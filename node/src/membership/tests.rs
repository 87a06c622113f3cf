//! Membership on a simulated network with a virtual clock: the same pure core the agent runs.

use super::*;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

fn member(i: u8) -> MemberId {
    let p2p: SocketAddr = format!("127.0.0.{}:7000", 10 + i).parse().unwrap();
    MemberId {
        name: format!("n{i}"),
        peer_id: format!("peer{i}"),
        p2p,
        api: p2p,
        labels: Labels::new(),
        capacity: ResourceAmounts::default(),
        bump: 1,
    }
}

enum Input {
    Data(Vec<u8>),
    Timer(Timer<MemberId>),
}

/// Nodes indexed by name; events ordered by virtual time (ms) then insertion order.
struct Sim {
    nodes: BTreeMap<String, Membership>,
    queue: BinaryHeap<Reverse<(u64, u64, String)>>,
    inputs: BTreeMap<u64, Input>,
    seq: u64,
    now: u64,
    /// Nodes that neither receive nor send (crashed or paused).
    silent: BTreeSet<String>,
    /// Every Down notification: (observer, who went down).
    downs: Vec<(String, String)>,
}

impl Sim {
    fn new(n: u8) -> Self {
        let mut sim = Sim {
            nodes: BTreeMap::new(),
            queue: BinaryHeap::new(),
            inputs: BTreeMap::new(),
            seq: 0,
            now: 0,
            silent: BTreeSet::new(),
            downs: vec![],
        };
        for i in 0..n {
            let m = member(i);
            sim.nodes.insert(
                m.name.clone(),
                Membership::new(m, Detection::default(), u64::from(i)),
            );
        }
        for i in 1..n {
            let effects = sim
                .nodes
                .get_mut(&format!("n{i}"))
                .unwrap()
                .join(member(0).p2p)
                .unwrap();
            sim.apply(&format!("n{i}"), effects);
        }
        sim
    }

    fn push(&mut self, at: u64, to: String, input: Input) {
        self.seq += 1;
        self.inputs.insert(self.seq, input);
        self.queue.push(Reverse((at, self.seq, to)));
    }

    fn apply(&mut self, from: &str, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Send { to, data } => {
                    let target = if to.name.is_empty() {
                        self.nodes
                            .values()
                            .find(|m| m.me().p2p == to.p2p)
                            .unwrap()
                            .me()
                            .name
                            .clone()
                    } else {
                        to.name
                    };
                    self.push(self.now + 1, target, Input::Data(data));
                }
                Effect::Schedule { after, timer } => self.push(
                    self.now + after.as_millis() as u64,
                    from.to_string(),
                    Input::Timer(timer),
                ),
                Effect::Down(id) => self.downs.push((from.to_string(), id.name)),
                _ => {}
            }
        }
    }

    fn run_until(&mut self, t: u64) {
        while let Some(Reverse((at, seq, to))) = self.queue.peek().cloned() {
            if at > t {
                break;
            }
            self.queue.pop();
            self.now = at;
            let input = self.inputs.remove(&seq).unwrap();
            let paused = self.silent.contains(&to);
            let effects = match input {
                Input::Data(_) if paused => continue,
                // A paused node's timers fire late, when it resumes: keep them queued.
                Input::Timer(timer) if paused => {
                    self.push(at + 10, to, Input::Timer(timer));
                    continue;
                }
                Input::Data(d) => self.nodes.get_mut(&to).unwrap().receive(&d),
                Input::Timer(timer) => self.nodes.get_mut(&to).unwrap().timer(timer),
            };
            match effects {
                Ok(effects) => self.apply(&to, effects),
                Err(e) => eprintln!("{to}: {e}"),
            }
        }
        self.now = t;
    }

    /// `by` learns from its transport that the member with `peer_id` is gone.
    fn declare_down(&mut self, by: &str, peer_id: &str) {
        let effects = self
            .nodes
            .get_mut(by)
            .unwrap()
            .declare_down(peer_id)
            .unwrap();
        self.apply(by, effects);
    }

    fn view(&self, of: &str) -> BTreeMap<String, Liveness> {
        self.nodes[of]
            .members()
            .into_iter()
            .map(|(m, l)| (m.name, l))
            .collect()
    }
}

#[test]
fn members_join_through_one_seed_and_all_see_each_other_alive() {
    let mut sim = Sim::new(4);
    sim.run_until(5_000);
    for name in ["n0", "n1", "n2", "n3"] {
        let view = sim.view(name);
        assert_eq!(view.len(), 4, "{name} sees {view:?}");
        assert!(
            view.values().all(|l| *l == Liveness::Alive),
            "{name} sees {view:?}"
        );
    }
}

#[test]
fn a_silent_member_is_declared_down_by_every_other_within_the_suspicion_window() {
    let mut sim = Sim::new(4);
    sim.run_until(5_000);
    sim.silent.insert("n2".into());
    sim.run_until(9_000);
    for name in ["n0", "n1", "n3"] {
        assert_eq!(sim.view(name).get("n2"), Some(&Liveness::Down), "{name}");
    }
    let observers: BTreeSet<&str> = sim
        .downs
        .iter()
        .filter(|(_, who)| who == "n2")
        .map(|(o, _)| o.as_str())
        .collect();
    assert_eq!(observers, BTreeSet::from(["n0", "n1", "n3"]));
}

#[test]
fn a_member_paused_for_less_than_the_suspicion_window_is_not_evicted() {
    let mut sim = Sim::new(4);
    sim.run_until(5_000);
    for round in 0..3u64 {
        sim.silent.insert("n1".into());
        sim.run_until(6_000 + round * 3_000);
        sim.silent.remove("n1");
        sim.run_until(8_000 + round * 3_000);
    }
    assert!(
        sim.downs.iter().all(|(_, who)| who != "n1"),
        "n1 was declared down: {:?}",
        sim.downs
    );
    for name in ["n0", "n2", "n3"] {
        assert_eq!(sim.view(name).get("n1"), Some(&Liveness::Alive), "{name}");
    }
}

#[test]
fn a_member_whose_process_is_gone_is_down_everywhere_without_waiting_for_suspicion() {
    let mut sim = Sim::new(4);
    sim.run_until(5_000);
    sim.silent.insert("n2".into());
    sim.declare_down("n0", "peer2");
    // Well within one probe period plus the suspicion window (3 s).
    sim.run_until(5_800);
    for name in ["n0", "n1", "n3"] {
        assert_eq!(sim.view(name).get("n2"), Some(&Liveness::Down), "{name}");
    }
}

#[test]
fn a_live_member_declared_down_rejoins_under_a_renewed_identity() {
    let mut sim = Sim::new(4);
    sim.run_until(5_000);
    sim.declare_down("n0", "peer2");
    sim.run_until(10_000);
    assert!(sim.nodes["n2"].me().bump > 1, "n2 renewed its identity");
    for name in ["n0", "n1", "n3"] {
        let members = sim.nodes[name].members();
        assert!(
            members
                .iter()
                .any(|(m, l)| m.name == "n2" && m.bump > 1 && *l == Liveness::Alive),
            "{name} sees {members:?}"
        );
    }
}

#[test]
fn suspicion_starting_and_ending_is_reported_once_each() {
    let list = |l1: Liveness, l2: Liveness| vec![(member(1), l1), (member(2), l2)];
    let (calm, worried) = (
        list(Liveness::Alive, Liveness::Alive),
        list(Liveness::Suspect, Liveness::Alive),
    );
    let start = suspicions(&calm, &worried);
    assert_eq!(start, [(&member(1), Liveness::Alive, Liveness::Suspect)]);
    let before = list(Liveness::Suspect, Liveness::Alive);
    let after = list(Liveness::Alive, Liveness::Down);
    let end = suspicions(&before, &after);
    assert_eq!(end, [(&member(1), Liveness::Suspect, Liveness::Alive)]);
}
