//! Membership on a simulated network with a virtual clock: the same pure core the agent runs.

use super::*;
use crate::due::Due;
use rand::RngExt;
use std::collections::{BTreeMap, BTreeSet};

fn member(i: u8) -> MemberId {
    let p2p: SocketAddr = format!("127.0.0.{}:7000", 10 + i).parse().unwrap();
    MemberId::from(MemberInfo {
        name: format!("n{i}"),
        peer_id: format!("peer{i}"),
        p2p,
        api: p2p,
        labels: Labels::new(),
        capacity: ResourceAmounts::default(),
        max_pods: 110,
        bump: 1,
    })
}

enum Input {
    Data(Vec<u8>),
    Timer(Timer<MemberId>),
}

/// Nodes indexed by name; events ordered by virtual time (ms) then insertion order.
struct Sim {
    nodes: BTreeMap<String, Membership>,
    due: Due<Input>,
    now: u64,
    /// Nodes that neither receive nor send (crashed or paused).
    silent: BTreeSet<String>,
    /// Every Down notification: (observer, who went down).
    downs: Vec<(String, String)>,
    /// Nodes whose link loses this share of its packets. The transport is TCP: a lost packet
    /// is sent again after the retransmission timeout (200 ms, doubling), and what follows on
    /// the same connection waits for it.
    lossy: BTreeMap<String, f64>,
    /// Spells (node, from, until) when a node's connections carry nothing: what it sends or
    /// is sent meanwhile arrives when the spell ends (a transport riding out a bad patch).
    stalls: Vec<(String, u64, u64)>,
    /// Each datagram from a member the receiver held suspect: (receiver, sender, the sender's
    /// liveness at the receiver once it was handled).
    suspects_heard: Vec<(String, String, Liveness)>,
    /// When the last message on each (from, to) connection arrives.
    link_busy_until: BTreeMap<(String, String), u64>,
    rng: StdRng,
}

impl Sim {
    fn new(n: u8) -> Self {
        let mut sim = Sim {
            nodes: BTreeMap::new(),
            due: Due::default(),
            now: 0,
            silent: BTreeSet::new(),
            downs: vec![],
            lossy: BTreeMap::new(),
            stalls: Vec::new(),
            suspects_heard: Vec::new(),
            link_busy_until: BTreeMap::new(),
            rng: StdRng::seed_from_u64(u64::from(n)),
        };
        // Shared, as by the nodes of one process.
        let shared = Shared::default();
        for i in 0..n {
            let m = member(i);
            sim.nodes.insert(
                m.name.clone(),
                Membership::new(m, Detection::default(), u64::from(i), shared.clone()),
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
        self.due.push(at, &to, input);
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
                        to.name.clone()
                    };
                    let at = self.delivery(from, &target);
                    self.push(at, target, Input::Data(data));
                }
                Effect::Schedule { after, timer } => self.push(
                    // Rounded up: a timer never fires before it is due.
                    self.now + after.as_micros().div_ceil(1000) as u64,
                    from.to_string(),
                    Input::Timer(timer),
                ),
                Effect::Down(id) => self.downs.push((from.to_string(), id.name.clone())),
                _ => {}
            }
        }
    }

    /// When a message sent now from `from` reaches `to`: 1 ms, plus any retransmissions on a
    /// lossy link or the rest of a stall, and never before the message sent ahead of it on
    /// the same connection.
    fn delivery(&mut self, from: &str, to: &str) -> u64 {
        let loss = [from, to]
            .iter()
            .filter_map(|n| self.lossy.get(*n))
            .fold(0.0, |kept: f64, p| 1.0 - (1.0 - kept) * (1.0 - p));
        let (mut at, mut timeout) = (self.now + 1, 200);
        while loss > 0.0 && self.rng.random_bool(loss) {
            at += timeout;
            timeout = (timeout * 2).min(120_000);
        }
        for (node, from_ms, until) in &self.stalls {
            if [from, to].contains(&node.as_str()) && (*from_ms..*until).contains(&self.now) {
                at = at.max(*until + 1);
            }
        }
        let busy = self
            .link_busy_until
            .entry((from.to_string(), to.to_string()))
            .or_default();
        *busy = at.max(*busy);
        *busy
    }

    fn run_until(&mut self, t: u64) {
        while let Some((at, to, input)) = self.due.next(t) {
            self.now = at;
            let now = Duration::from_millis(at);
            let paused = self.silent.contains(&to);
            let effects = match input {
                Input::Data(_) if paused => continue,
                // A paused node's timers fire late, when it resumes: keep them queued.
                Input::Timer(timer) if paused => {
                    self.push(at + 10, to, Input::Timer(timer));
                    continue;
                }
                Input::Data(d) => {
                    let from = sender(&d).map(str::to_string);
                    let liveness = |sim: &Self| {
                        let by = from.as_deref()?;
                        let members = sim.nodes[&to].listing();
                        let found = members.into_iter().find(|(m, _)| m.peer_id == by);
                        found.map(|(m, l)| (m.name.clone(), l))
                    };
                    let before = liveness(self);
                    let effects = self.nodes.get_mut(&to).unwrap().receive(&d, now);
                    if let (Some((name, Liveness::Suspect)), Some((_, after))) =
                        (before, liveness(self))
                    {
                        self.suspects_heard.push((to.clone(), name, after));
                    }
                    effects
                }
                Input::Timer(timer) => self.nodes.get_mut(&to).unwrap().timer(timer, now),
            };
            match effects {
                Ok(effects) => self.apply(&to, effects),
                Err(e) => eprintln!("{to}: {e}"),
            }
            // What the core does when it builds its view: the list is foca's then, and it
            // was already unless changes wait to be listed.
            let node = self.nodes.get_mut(&to).unwrap();
            let listed = node.members().iter().eq(&node.listing());
            assert!(
                listed || node.unlisted(),
                "{to}'s kept member list differs from foca's at {at} ms, unnoticed"
            );
            node.list();
            assert_eq!(
                node.members().iter().cloned().collect::<Vec<_>>(),
                node.listing(),
                "{to}'s member list, listed, differs from foca's at {at} ms"
            );
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
            .iter()
            .map(|(m, l)| (m.name.clone(), *l))
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
    let lists: Vec<_> = sim.nodes.values().map(|m| m.members().clone()).collect();
    assert!(
        lists.iter().all(|l| Arc::ptr_eq(l, &lists[0])),
        "the nodes of one process hold one list"
    );
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

fn assert_nobody_evicted(sim: &Sim) {
    assert!(sim.downs.is_empty(), "evicted: {:?}", sim.downs);
    for name in sim.nodes.keys() {
        let view = sim.view(name);
        assert!(
            view.values().all(|l| *l != Liveness::Down),
            "{name} sees {view:?}"
        );
    }
}

#[test]
fn a_member_on_a_link_losing_a_fifth_of_its_packets_is_never_evicted() {
    let mut sim = Sim::new(3);
    sim.run_until(5_000);
    sim.lossy.insert("n2".into(), 0.2);
    sim.run_until(3_605_000); // an hour
    assert_nobody_evicted(&sim);
}

#[test]
fn a_member_whose_messages_have_come_late_before_is_given_longer() {
    let mut sim = Sim::new(3);
    sim.run_until(5_000);
    // A minute of bad patches of 1.7 s every 10 s: messages late, never lost.
    for start in (10_000..70_000).step_by(10_000) {
        sim.stalls.push(("n2".into(), start, start + 1_700));
    }
    // Then one of 3.5 s: longer than the suspicion window, shorter than twice the gaps seen.
    sim.stalls.push(("n2".into(), 80_000, 83_500));
    sim.run_until(100_000);
    assert_nobody_evicted(&sim);
    // Still, a member that falls silent goes down (twice its gaps, at most 5 windows).
    sim.silent.insert("n2".into());
    sim.run_until(112_000);
    for name in ["n0", "n1"] {
        assert_eq!(sim.view(name).get("n2"), Some(&Liveness::Down), "{name}");
    }
}

#[test]
fn a_suspect_whose_datagram_arrives_is_alive_again_at_once_where_it_arrives() {
    let mut sim = Sim::new(3);
    sim.run_until(5_000);
    // Paused long enough to be suspected, not declared dead; its first datagrams after it
    // resumes come before it has heard of the suspicion, so it has refuted nothing yet.
    sim.silent.insert("n2".into());
    sim.run_until(7_500);
    assert_eq!(sim.view("n0").get("n2"), Some(&Liveness::Suspect));
    assert_eq!(sim.nodes["n2"].foca.incarnation(), 0, "n2 refuted");
    sim.silent.remove("n2");
    sim.run_until(9_000);
    assert!(
        !sim.suspects_heard.is_empty(),
        "no datagram from a suspect arrived"
    );
    for (by, from, after) in &sim.suspects_heard {
        assert_eq!(*after, Liveness::Alive, "{by} still suspects {from}");
    }
    assert_nobody_evicted(&sim);
}

/// Three members; n2's connections carry nothing for 5 s at 40 s, after (if `bad_spells`)
/// two spells of 2.5 s, at 10 and 20 s. Returns the simulation at 60 s and the members that
/// doubted their links when the stall began.
fn a_stall_after(bad_spells: bool) -> (Sim, Vec<String>) {
    let mut sim = Sim::new(3);
    sim.run_until(5_000);
    if bad_spells {
        for start in [10_000, 20_000] {
            sim.stalls.push(("n2".into(), start, start + 2_500));
        }
    }
    sim.stalls.push(("n2".into(), 40_000, 45_000));
    sim.run_until(40_000);
    let now = Duration::from_millis(sim.now);
    let doubting = sim
        .nodes
        .iter()
        .filter(|(_, m)| m.doubt.at(now, m.suspect_to_down) > 0)
        .map(|(name, _)| name.clone())
        .collect();
    sim.run_until(60_000);
    (sim, doubting)
}

#[test]
fn nodes_that_saw_suspicions_prove_false_allow_their_suspects_longer() {
    // With nothing before it, a 5 s stall is a death.
    let (sim, doubting) = a_stall_after(false);
    assert!(doubting.is_empty(), "{doubting:?}");
    assert!(
        !sim.downs.is_empty(),
        "a 5 s stall evicted nobody: the test shows nothing"
    );
    // After the spells, every node saw a suspicion prove false (n2 was suspected, and n2
    // suspected the others, and each was alive): each doubts its links and waits the stall
    // out.
    let (mut sim, doubting) = a_stall_after(true);
    assert_eq!(doubting, ["n0", "n1", "n2"]);
    assert_nobody_evicted(&sim);
    // Doubting, they still declare a member that falls silent dead: within the longest
    // tolerance (5 windows of silence) and a probe.
    sim.silent.insert("n2".into());
    sim.run_until(72_000);
    for name in ["n0", "n1"] {
        assert_eq!(sim.view(name).get("n2"), Some(&Liveness::Down), "{name}");
    }
}

#[test]
fn a_node_that_hears_no_one_doubts_itself_before_its_peers() {
    let mut sim = Sim::new(4);
    sim.run_until(5_000);
    // n3's network stalls for 6 s: what it sends and what it is sent come late, never lost.
    sim.stalls.push(("n3".into(), 10_000, 16_000));
    sim.run_until(30_000);
    let by_n3: Vec<_> = sim.downs.iter().filter(|(by, _)| by == "n3").collect();
    assert!(by_n3.is_empty(), "n3 declared its peers dead: {by_n3:?}");
    assert!(
        sim.downs.iter().any(|(by, who)| by != "n3" && who == "n3"),
        "its peers, who heard each other, declared it dead: {:?}",
        sim.downs
    );
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
    let list =
        |l1: Liveness, l2: Liveness| MemberList::from_iter([(member(1), l1), (member(2), l2)]);
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

#[test]
fn the_datagram_a_request_calls_for_is_taken_out_as_its_answer() {
    let to = |peer: &str| {
        let mut m = MemberId::seed("127.0.0.1:1".parse().unwrap());
        m.peer_id = peer.into();
        m
    };
    let send = |peer: &str, byte: u8| Effect::Send {
        to: to(peer),
        data: vec![byte],
    };
    let mut effects = vec![Effect::Active, send("b", 1), send("a", 2), send("a", 3)];
    assert_eq!(
        take_answer(&mut effects, "a"),
        Some(vec![2]),
        "the first for a"
    );
    assert_eq!(effects, vec![Effect::Active, send("b", 1), send("a", 3)]);
    assert_eq!(take_answer(&mut vec![send("b", 1)], "a"), None);
}

#[test]
fn announces_go_in_turn_to_known_addresses_where_no_member_is_alive() {
    let addr = |i: u8| -> SocketAddr { format!("127.0.0.{i}:7946").parse().unwrap() };
    let known: addresses::Addresses = (1..=6).map(addr).collect();
    let alive = |i: u8, l| {
        let mut m = MemberId::seed(addr(i));
        m.name = format!("n{i}");
        (m, l)
    };
    let members = MemberList::from_iter([
        alive(1, Liveness::Alive),
        alive(2, Liveness::Suspect),
        alive(3, Liveness::Down),
    ]);
    // 3, 4, 5, 6 have no live member: three a tick, in turn.
    let far = unreached(&known, &members);
    assert_eq!(far, [addr(3), addr(4), addr(5), addr(6)]);
    assert_eq!(announce_targets(&far, 0), [addr(3), addr(4), addr(5)]);
    assert_eq!(announce_targets(&far, 3), [addr(6), addr(3), addr(4)]);
    let everyone: MemberList = (1..=6).map(|i| alive(i, Liveness::Alive)).collect();
    assert!(unreached(&known, &everyone).is_empty());
    assert!(announce_targets(&[], 0).is_empty());
}

#[test]
fn a_dead_member_back_under_a_renewed_identity_is_not_gone() {
    let node = |bump, l| {
        let mut m = member(1);
        m.bump = bump;
        (m, l)
    };
    let (old, _) = node(1, Liveness::Down);
    let list = MemberList::from_iter;
    assert!(gone_for_good(&list([node(1, Liveness::Down)]), &old));
    assert!(!gone_for_good(
        &MemberList::from_iter([node(1, Liveness::Down), node(2, Liveness::Alive)]),
        &old
    ));
    assert!(
        gone_for_good(&list([node(2, Liveness::Down)]), &old),
        "the new one is dead too"
    );
}

#[test]
fn a_list_of_the_same_members_holds_only_the_entries_that_changed() {
    let all = |l: fn(usize) -> Liveness| -> Vec<(MemberId, Liveness)> {
        (0..40u8).map(|i| (member(i), l(usize::from(i)))).collect()
    };
    let first = MemberList::from_iter(all(|_| Liveness::Alive));
    let two_down = all(|i| {
        if i == 3 || i == 30 {
            Liveness::Down
        } else {
            Liveness::Alive
        }
    });
    let after = MemberList::after(&first, two_down.clone());
    assert!(Arc::ptr_eq(&after.base, &first.base), "the base shared");
    assert_eq!(after.changed.len(), 2, "the two entries changed, held");
    assert!(after.iter().eq(&two_down), "read as the whole list");
    assert_eq!(after.get(30), Some(&two_down[30]));
    assert_eq!(after.get(31), Some(&two_down[31]));
    assert_eq!(after.len(), 40);
    assert_eq!(
        after,
        MemberList::from_iter(two_down),
        "equal to the same held whole"
    );
    // After a list holding changes, one back in its base's state: on the same base still.
    let one_down = all(|i| {
        if i == 30 {
            Liveness::Down
        } else {
            Liveness::Alive
        }
    });
    let back = MemberList::after(&after, one_down.clone());
    assert!(Arc::ptr_eq(&back.base, &first.base) && back.changed.len() == 1);
    assert!(back.iter().eq(&one_down));
    // Past one entry in 16 changed, or other members: a base of its own.
    let many_down = all(|i| {
        if i < 5 {
            Liveness::Down
        } else {
            Liveness::Alive
        }
    });
    let own = MemberList::after(&first, many_down.clone());
    assert!(!Arc::ptr_eq(&own.base, &first.base) && own.changed.is_empty());
    assert!(own.iter().eq(&many_down));
    let fewer = all(|_| Liveness::Alive)[1..].to_vec();
    let other = MemberList::after(&first, fewer);
    assert!(!Arc::ptr_eq(&other.base, &first.base) && other.len() == 39);
}

#[test]
fn lists_on_one_base_are_known_up_and_down_alike_where_only_suspicions_differ() {
    let all = |l: fn(usize) -> Liveness| -> Vec<(MemberId, Liveness)> {
        (0..40u8).map(|i| (member(i), l(usize::from(i)))).collect()
    };
    let first = MemberList::from_iter(all(|_| Liveness::Alive));
    let suspect = |i| {
        if i == 7 {
            Liveness::Suspect
        } else {
            Liveness::Alive
        }
    };
    let one_suspect = MemberList::after(&first, all(suspect));
    assert!(first.same_up_and_down(&one_suspect) && one_suspect.same_up_and_down(&first));
    let down = |i| match i {
        7 => Liveness::Suspect,
        9 => Liveness::Down,
        _ => Liveness::Alive,
    };
    let one_down = MemberList::after(&first, all(down));
    assert!(!one_suspect.same_up_and_down(&one_down), "9 died");
    assert!(!one_down.same_up_and_down(&first));
    let whole = MemberList::from_iter(all(suspect));
    assert!(
        !whole.same_up_and_down(&one_suspect),
        "another base: not known, though equal"
    );
}

#[test]
fn codecs_share_an_update_or_identity_seen_and_read_a_changed_one_anew() {
    use foca::Codec;
    let mut codec = BincodeCodec::default();
    let mut labelled = member(1);
    labelled.labels.insert("zone".into(), "a".into());
    let encode = |codec: &mut BincodeCodec, m: &MemberId, incarnation| {
        let mut buf = Vec::new();
        let update = foca::Member::new(m.clone(), incarnation, State::Suspect);
        codec.encode_member(&update, &mut buf).unwrap();
        buf
    };
    let first = encode(&mut codec, &labelled, 3);
    let decoded = codec.decode_member(&first[..]).unwrap();
    assert_eq!(decoded.id(), &labelled);
    assert_eq!(
        (decoded.incarnation(), decoded.state()),
        (3, State::Suspect)
    );
    let again = codec.decode_member(&first[..]).unwrap();
    assert!(
        Arc::ptr_eq(&again.id().0, &decoded.id().0),
        "the same identity is shared"
    );
    let refuted = {
        let bytes = encode(&mut codec, &labelled, 5);
        codec.decode_member(&bytes[..]).unwrap()
    };
    assert_eq!(
        (refuted.incarnation(), refuted.state()),
        (5, State::Suspect)
    );
    assert!(
        Arc::ptr_eq(&refuted.id().0, &decoded.id().0),
        "a new update of a known identity shares it"
    );
    let mut relabelled = labelled.clone();
    relabelled.labels.insert("zone".into(), "b".into());
    let changed = {
        let bytes = encode(&mut codec, &relabelled, 4);
        codec.decode_member(&bytes[..])
    }
    .unwrap();
    assert_eq!(changed.id(), &relabelled, "a changed identity is read anew");
    assert_eq!(changed.incarnation(), 4);
    let mut renewed = labelled.clone();
    renewed.bump += 1;
    let renewed_back = {
        let bytes = encode(&mut codec, &renewed, 0);
        codec.decode_member(&bytes[..])
    }
    .unwrap();
    assert_eq!(renewed_back.id().bump, labelled.bump + 1);
    assert!(codec.decode_member(&first[..3]).is_err(), "a cut update");
    // Another node's codec in the same process shares what this one decoded.
    let mut other = BincodeCodec::new(codec.updates.clone());
    let theirs = other.decode_member(&first[..]).unwrap();
    assert!(Arc::ptr_eq(&theirs.id().0, &decoded.id().0));
    assert!(
        !Arc::ptr_eq(
            &BincodeCodec::default()
                .decode_member(&first[..])
                .unwrap()
                .id()
                .0,
            &decoded.id().0
        ),
        "a codec of its own decodes anew"
    );
    // A header's identities are the ones its updates brought, where they are known.
    let mut header = |src: &MemberId, dst: &MemberId| {
        let mut buf = Vec::new();
        let header = foca::Header {
            src: src.clone(),
            src_incarnation: 0,
            dst: dst.clone(),
            message: foca::Message::Ping(1),
        };
        other.encode_header(&header, &mut buf).unwrap();
        other.decode_header(&buf[..]).unwrap()
    };
    let stranger = member(9);
    let read = header(&MemberId::from((*labelled).clone()), &stranger);
    assert!(Arc::ptr_eq(&read.src.0, &decoded.id().0), "a known sender");
    assert_eq!(read.dst, stranger, "an unknown receiver, read as it came");
    let read = header(&relabelled, &stranger);
    assert!(
        Arc::ptr_eq(&read.src.0, &changed.id().0),
        "the variant the header names, of several of one name"
    );
}

/// The pull datagrams among `effects`, with the place in `nodes` of the member each is for.
fn pulls(nodes: &[&mut Membership], effects: Vec<Effect>) -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    for e in effects {
        if let Effect::Send { to, data } = e
            && data.first() == Some(&PULL)
            && let Some(at) = nodes.iter().position(|n| n.me().p2p == to.p2p)
        {
            out.push((at, data));
        }
    }
    out
}

/// Carries `effects`' pull datagrams to the members of `nodes` they are for, and those their
/// answers call for, until none is left; then lists each node's members, as its view would.
/// Returns how many messages went.
fn exchange(nodes: &mut [&mut Membership], effects: Vec<Effect>, now: Duration) -> usize {
    let mut queue = pulls(nodes, effects);
    let mut sent = 0;
    while !queue.is_empty() {
        sent += 1;
        let (to, data) = queue.remove(0);
        let effects = nodes[to].receive(&data, now).unwrap();
        queue.extend(pulls(nodes, effects));
    }
    for node in nodes.iter_mut() {
        node.list();
    }
    sent
}

#[test]
fn a_pull_brings_both_sides_the_members_the_other_holds_and_is_paced() {
    let mut sim = Sim::new(4);
    sim.run_until(5_000);
    sim.declare_down("n0", "peer3");
    let now = Duration::from_secs(5);
    let names = |m: &Membership| {
        m.members()
            .iter()
            .map(|(m, l)| format!("{}:{l:?}", m.name))
            .collect::<Vec<_>>()
    };
    let mut lone = Membership::new(member(7), Detection::default(), 7, Shared::default());
    let mut nodes = sim.nodes.values_mut();
    let (n0, n1) = (nodes.next().unwrap(), nodes.next().unwrap());
    assert_ne!(lone.fingerprint(), n0.fingerprint());
    let peer = n0.me().clone();
    let summary = lone.pull(&peer, now);
    assert_eq!(summary.len(), 1, "one summary: {summary:?}");
    let sent = exchange(&mut [&mut lone, n0], summary, now);
    assert_eq!(sent, 4, "summary, entries, exchange, members");
    assert_eq!(
        names(&lone),
        ["n0:Alive", "n1:Alive", "n2:Alive", "n7:Alive"],
        "the lone member learns every live member n0 holds"
    );
    assert!(
        names(n0).contains(&"n7:Alive".to_string()),
        "{:?}",
        names(n0)
    );
    assert_eq!(lone.fingerprint(), n0.fingerprint(), "they agree now");
    assert!(
        lone.pull(&peer, now).is_empty(),
        "it brought news: the next waits for the peer to apply ours"
    );
    let later = now + pull::PULL_AGAIN;
    assert_eq!(lone.pull(&peer, later).len(), 1);
    assert!(
        lone.pull(&peer, later).is_empty(),
        "one at a time: the next waits for this one's answer"
    );

    // n1 has not heard that n3 is dead: n3 is live to it, so their buckets differ there.
    assert!(names(n1).contains(&"n3:Alive".to_string()));
    let summary = n1.pull(&peer, later);
    exchange(&mut [n1, n0], summary, later);
    assert!(
        names(n1).contains(&"n3:Down".to_string()),
        "{:?}",
        names(n1)
    );
    assert!(
        names(n1).contains(&"n7:Alive".to_string()),
        "{:?}",
        names(n1)
    );
}

#[test]
fn a_pull_that_brings_nothing_holds_the_next_off_for_a_gap() {
    let mut sim = Sim::new(3);
    sim.run_until(5_000);
    let now = Duration::from_secs(5);
    let mut nodes = sim.nodes.values_mut();
    let (n0, n1) = (nodes.next().unwrap(), nodes.next().unwrap());
    assert_eq!(n0.fingerprint(), n1.fingerprint());
    let peer = n1.me().clone();
    let summary = n0.pull(&peer, now);
    let sent = exchange(&mut [n0, n1], summary, now);
    assert_eq!(
        sent, 2,
        "the same members: nothing to exchange after the entries"
    );
    assert!(n0.pull(&peer, now + pull::PULL_GAP / 2).is_empty());
    assert_eq!(n0.pull(&peer, now + pull::PULL_GAP).len(), 1);
}

#[test]
fn a_pull_message_that_does_not_read_is_refused() {
    let mut m = Membership::new(member(1), Detection::default(), 1, Shared::default());
    let now = Duration::from_secs(1);
    for bad in [vec![], vec![9, 0], vec![PULL, 7], vec![PULL, 2, 0xFF, 0xFF]] {
        assert!(m.receive(&bad, now).is_err(), "{bad:?}");
    }
    assert_eq!(m.members().len(), 1, "nothing changed");
}

#[test]
fn a_pull_of_more_members_than_a_message_holds_brings_the_rest_next() {
    let now = Duration::from_secs(1);
    let mut big = Membership::new(member(1), Detection::default(), 1, Shared::default());
    let many = pull::MAX_MEMBERS + 500;
    for chunk in (0..many).collect::<Vec<_>>().chunks(1000) {
        let mut data = vec![PULL];
        data.extend(pull::members("p0"));
        for &i in chunk {
            let p2p = SocketAddr::from(([10, 1, (i / 250) as u8, (i % 250) as u8], 7000));
            let update = foca::Member::new(MemberId::numbered(i + 100, p2p), 0, State::Alive);
            bincode::serde::encode_into_std_write(update, &mut data, BINCODE).unwrap();
        }
        big.receive(&data, now).unwrap();
    }
    big.list();
    assert_eq!(big.members().len(), many + 1);
    let mut lone = Membership::new(member(2), Detection::default(), 2, Shared::default());
    let peer = big.me().clone();
    let mut pulls = 0;
    let mut at = now;
    while lone.fingerprint() != big.fingerprint() {
        pulls += 1;
        assert!(pulls <= 3, "the rest comes in the next pulls");
        let before = lone.members().len();
        let summary = lone.pull(&peer, at);
        exchange(&mut [&mut lone, &mut big], summary, at);
        let learned = lone.members().len() - before;
        assert!(
            learned > 0 && learned <= pull::MAX_MEMBERS,
            "one message's worth: {learned}"
        );
        at += pull::PULL_AGAIN;
    }
    assert_eq!(pulls, 2);
    assert_eq!(lone.members().len(), many + 2);

    // The other way: the asker holds more members the peer lacks than a message holds.
    let mut other = Membership::new(member(3), Detection::default(), 3, Shared::default());
    let peer = other.me().clone();
    let mut pulls = 0;
    while big.fingerprint() != other.fingerprint() {
        pulls += 1;
        assert!(pulls <= 3, "the rest goes in the next pulls");
        let summary = big.pull(&peer, at);
        exchange(&mut [&mut big, &mut other], summary, at);
        at += pull::PULL_AGAIN;
    }
    assert_eq!(pulls, 2);
    assert_eq!(other.members().len(), many + 3);
}

#[test]
fn a_pull_states_the_answerer_s_own_entry_at_its_incarnation() {
    let now = Duration::from_secs(1);
    let mut m = Membership::new(member(1), Detection::default(), 1, Shared::default());
    // Told it is suspected, it refutes under the next incarnation.
    let mut data = vec![PULL];
    data.extend(pull::members("p9"));
    let suspect = foca::Member::new(member(1), 0, State::Suspect);
    bincode::serde::encode_into_std_write(suspect, &mut data, BINCODE).unwrap();
    m.receive(&data, now).unwrap();
    assert_eq!(m.foca.incarnation(), 1);
    let mut lone = Membership::new(member(2), Detection::default(), 2, Shared::default());
    let peer = m.me().clone();
    let summary = lone.pull(&peer, now);
    exchange(&mut [&mut lone, &mut m], summary, now);
    let held = lone.foca.iter_membership_state().find(|e| e.id() == &peer);
    assert_eq!(held.map(|e| e.incarnation()), Some(1));
}
