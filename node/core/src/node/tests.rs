//! Three and more `NodeCore`s over an in-test network with a virtual clock: every datagram,
//! status message and document sync goes through the cores' own effects, and every persist
//! lands 1 ms after it is asked for, so these tests show the router joining the sub-cores as a
//! node's driver would.

use super::*;
use crate::due::Due;
use crate::keys::NodeKey;
use crate::runtime::{ContainerState, Observed};
use std::collections::{BTreeMap, BTreeSet};
use weeble_crdt::Admission;
use weeble_crdt::{ActorId, DesiredState, parse_manifests};

/// One node of the test cluster: its core and its containers.
struct Node {
    core: NodeCore,
    containers: Vec<Observed>,
    stopped: bool,
}

/// Nodes `n0..` on 127.0.0.1:7000.., each knowing n0's address; peer ids `p0..`.
struct Cluster {
    nodes: BTreeMap<String, Node>,
    due: Due<Input>,
    now: u64,
    /// Every effect each node returned, for the assertions.
    log: Vec<(String, Effect)>,
    /// Containers whose probes fail.
    failing: BTreeSet<String>,
    /// Sync requests waiting for their answer: (node, request id) → the node that sent it.
    requests: BTreeMap<(String, u64), String>,
    next_request: u64,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16))
}

fn deployment(name: &str, replicas: u32) -> weeble_crdt::Object {
    with_container(name, replicas, "{name: web, image: img:1}")
}

/// Deployment `name` of `replicas` pods of one container, given in YAML's flow style.
fn with_container(name: &str, replicas: u32, container: &str) -> weeble_crdt::Object {
    let text = format!(
        "kind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  \
         template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers:\n      \
         - {container}\n"
    );
    parse_manifests(&text).unwrap().objects.remove(0)
}

impl Cluster {
    fn new(n: usize, replicate_to: usize) -> Self {
        let mut cluster = Cluster {
            nodes: BTreeMap::new(),
            due: Due::default(),
            now: 0,
            log: Vec::new(),
            failing: BTreeSet::new(),
            requests: BTreeMap::new(),
            next_request: 0,
        };
        for i in 0..n {
            let name = format!("n{i}");
            let me = MemberId::test(i);
            let config = Config {
                me,
                key: NodeKey::numbered(i),
                detection: Detection::default(),
                fanout: 3,
                replicate_to,
                epoch: 1,
                seed: i as u64,
                known: [addr(0)].into(),
                reconcile: Settings {
                    node: name.clone(),
                    host_ip: addr(i).ip(),
                    service_ip: addr(i).ip(),
                    resync_ms: 10_000,
                    join_grace_ms: 3_000,
                },
                shared: Shared::default(),
            };
            let stored = Stored {
                state: DesiredState::new(ActorId::from([i as u8 + 1; 16])),
                len: 0,
                failing: None,
            };
            let core = NodeCore::new(config, stored, Duration::ZERO);
            let node = Node {
                core,
                containers: Vec::new(),
                stopped: false,
            };
            cluster.nodes.insert(name.clone(), node);
            cluster.push(0, &name, Input::Timer(Timer::Announce));
        }
        cluster
    }

    fn push(&mut self, at: u64, to: &str, input: Input) {
        self.due.push(at, to, input);
    }

    fn name_of(&self, to: &MemberId) -> String {
        let node = self.nodes.iter().find(|(_, n)| n.core.me().p2p == to.p2p);
        node.map(|(name, _)| name.clone())
            .expect("a node at that address")
    }

    /// Runs every input due until `until` ms.
    fn run_until(&mut self, until: u64) {
        while let Some((at, to, input)) = self.due.next(until) {
            self.now = at;
            self.step(&to, input);
        }
        self.now = until;
    }

    /// Steps node `to` and carries out its effects; returns its answer to a request, if any.
    fn step(&mut self, to: &str, input: Input) -> Option<Answer> {
        let node = self.nodes.get_mut(to).unwrap();
        if node.stopped {
            return None;
        }
        let effects = node.core.step(Duration::from_millis(self.now), input);
        let mut answer = None;
        for effect in effects {
            self.log.push((to.to_string(), effect.clone()));
            match effect {
                Effect::Answer(a) => answer = Some(a),
                other => self.carry(to, other),
            }
        }
        answer
    }

    /// What a driver does with one effect of node `from`. A request is answered at once (its
    /// answer, and any other message, arrives 1 ms later).
    fn carry(&mut self, from: &str, effect: Effect) {
        let at = self.now + 1;
        let from_member = self.nodes[from].core.me().clone();
        match effect {
            Effect::Membership { to, data } => {
                let target = self.name_of(&to);
                let digest = self.nodes[from].core.digest();
                let input = Input::Datagram {
                    from: from_member.peer_id.clone(),
                    data,
                    digest,
                    request: true,
                };
                if let Some(Answer::Membership(Some(data))) = self.step(&target, input) {
                    let digest = self.nodes[&target].core.digest();
                    let from_target = self.nodes[&target].core.me().peer_id.clone();
                    let back = Input::Datagram {
                        from: from_target,
                        data,
                        digest,
                        request: false,
                    };
                    self.push(at, from, back);
                }
            }
            Effect::Status(Send { to, message }) => {
                let target = self.name_of(&to);
                let asks = message.asks();
                let input = Input::Status {
                    from: from_member.peer_id.clone(),
                    message,
                };
                let answer = self.step(&target, input);
                if asks {
                    let answer = match answer {
                        Some(Answer::Status(a)) => a,
                        _ => None,
                    };
                    self.push(at, from, Input::StatusAnswer { peer: to, answer });
                }
            }
            Effect::Sync { to, message } => {
                let target = self.name_of(&to);
                if self.nodes[&target].stopped {
                    let reply = Err("unreachable".into());
                    let peer = to.peer_id.clone();
                    self.push(at, from, Input::SyncReply { peer, reply });
                    return;
                }
                let id = self.next_request;
                self.next_request += 1;
                self.requests.insert((target.clone(), id), from.to_string());
                let from = from_member.peer_id.clone();
                self.push(at, &target, Input::SyncRequest { id, from, message });
            }
            Effect::SyncAnswer { id, answer } => {
                let asked = self.requests.remove(&(from.to_string(), id));
                let asked = asked.expect("an answer to a request");
                let peer = from_member.peer_id.clone();
                self.push(
                    at,
                    &asked,
                    Input::SyncReply {
                        peer,
                        reply: answer,
                    },
                );
            }
            Effect::Persist(_) => self.push(at, from, Input::Persisted(Ok(()))),
            Effect::Schedule { after, timer } => {
                let at = self.now + after.as_millis() as u64;
                self.push(at, from, Input::Timer(timer));
            }
            Effect::ListContainers => {
                let listed = Ok(self.nodes[from].containers.clone());
                self.push(at, from, Input::Reconcile(Event::Listed(listed)));
            }
            Effect::Act(actions) => {
                let outcomes = actions.iter().map(|a| self.act(from, a)).collect();
                self.push(at, from, Input::Reconcile(Event::Acted(outcomes)));
            }
            Effect::Probe(check) => {
                let passed = !self.failing.contains(&check.container_id);
                self.push(at, from, Input::Probed { check, passed });
            }
            Effect::Terminate(ids) => {
                let node = self.nodes.get_mut(from).unwrap();
                for c in node.containers.iter_mut().filter(|c| ids.contains(&c.id)) {
                    c.state = ContainerState::Exited { code: 137 };
                }
                self.push(at, from, Input::Reconcile(Event::Terminated));
            }
            Effect::Check(member) => {
                let target = self.name_of(&member);
                if self.nodes[&target].stopped {
                    self.push(at, from, Input::Gone(member.peer_id.clone()));
                }
            }
            _ => {}
        }
    }

    /// A container action on node `node`, as a runtime that never fails would take it.
    fn act(&mut self, node: &str, action: &Action) -> Result<(), crate::runtime::RuntimeError> {
        let now = self.now as i64;
        let containers = &mut self.nodes.get_mut(node).unwrap().containers;
        match action {
            Action::Create { spec, .. } => {
                let id = format!("{}-{now}-{}", spec.name, containers.len());
                containers.push(Observed::created(id, spec, now));
            }
            Action::Start { id, .. } => {
                for c in containers.iter_mut().filter(|c| &c.id == id) {
                    c.state = ContainerState::Running;
                    c.started_at_ms = now;
                }
            }
            Action::Remove { id, .. } => containers.retain(|c| &c.id != id),
        }
        Ok(())
    }

    /// Running containers on each node, n0 first.
    fn running(&self) -> Vec<usize> {
        let running = |n: &Node| {
            let up = n
                .containers
                .iter()
                .filter(|c| c.state == ContainerState::Running);
            up.count()
        };
        self.nodes.values().map(running).collect()
    }

    /// A write at node `at`, as the API hands it over.
    fn write(&mut self, at: &str, object: weeble_crdt::Object, id: u64) {
        let op = Op::Apply(vec![object]);
        self.push(self.now, at, Input::Write { id, op });
    }

    fn view(&self, of: &str) -> Arc<View> {
        self.nodes[of].core.view().clone()
    }

    /// The report of node `of` that node `at` holds.
    fn report(&self, at: &str, of: &str) -> Arc<NodeStatus> {
        self.nodes[at].core.table().report(of).unwrap().clone()
    }

    fn alive(&self, of: &str) -> Vec<String> {
        let view = self.view(of);
        let alive = view.members.iter().filter(|(_, l)| *l == Liveness::Alive);
        alive.map(|(m, _)| m.name.clone()).collect()
    }

    fn effects_of(&self, node: &str) -> impl Iterator<Item = &Effect> {
        self.log
            .iter()
            .filter(move |(n, _)| n == node)
            .map(|(_, e)| e)
    }
}

#[test]
fn three_cores_join_through_one_address_run_a_deployment_and_share_its_pods() {
    let mut cluster = Cluster::new(3, 4);
    cluster.run_until(5_000);
    for node in ["n0", "n1", "n2"] {
        assert_eq!(cluster.alive(node), ["n0", "n1", "n2"], "{node}'s members");
    }
    cluster.write("n1", deployment("web", 6), 1);
    cluster.run_until(7_000);
    let running = cluster.running();
    assert_eq!(
        running.iter().sum::<usize>(),
        6,
        "six replicas run: {running:?}"
    );
    assert!(running.iter().all(|&n| n > 0), "on every node: {running:?}");
    for node in ["n0", "n1", "n2"] {
        let table = cluster.nodes[node].core.table();
        let pods = table.pods();
        assert_eq!(pods.len(), 6, "{node}'s table");
        assert!(
            pods.iter()
                .all(|p| p.phase == crate::status::Phase::Running)
        );
    }
    let known = cluster.effects_of("n0").filter_map(|e| match e {
        Effect::Known(addrs) => Some(addrs.len()),
        _ => None,
    });
    assert_eq!(known.last(), Some(2), "n0 remembers both peers' addresses");
}

#[test]
fn a_write_is_acknowledged_once_enough_peers_hold_it_and_reaches_every_node() {
    let mut cluster = Cluster::new(5, 2);
    cluster.run_until(5_000);
    cluster.write("n3", deployment("web", 4), 7);
    cluster.run_until(5_010);
    let acks = cluster
        .effects_of("n3")
        .filter(|e| matches!(e, Effect::Replicated(7)))
        .count();
    assert_eq!(acks, 1, "the write is acknowledged once");
    let heads = cluster.view("n3").snapshot.heads.clone();
    let holders = cluster
        .nodes
        .values()
        .filter(|n| n.core.view().snapshot.heads == heads)
        .count();
    assert!(holders >= 3, "n3 and at least two peers hold it: {holders}");
    cluster.run_until(8_000);
    for node in ["n0", "n1", "n2", "n4"] {
        let view = cluster.view(node);
        assert_eq!(view.snapshot.heads, heads, "{node} holds the write");
        assert_eq!(view.placement.replicas().count(), 4, "{node} places it");
    }
}

#[test]
fn a_leaving_node_hands_its_pods_over_and_a_stopped_one_is_forgotten() {
    let mut cluster = Cluster::new(3, 4);
    cluster.run_until(5_000);
    cluster.write("n0", deployment("web", 6), 1);
    cluster.run_until(6_000);
    let on_n2 = cluster.running()[2];
    assert!(on_n2 > 0, "n2 runs replicas");
    cluster.push(cluster.now, "n2", Input::Leaving);
    // The news waits PUSH_AFTER before it leaves n2.
    cluster.run_until(6_060);
    for node in ["n0", "n1", "n2"] {
        let view = cluster.view(node);
        let mut owners = view.placement.replicas().filter_map(|(_, o)| o.ok());
        assert!(owners.all(|o| o != "n2"), "{node} places nothing on n2");
    }
    let running = cluster.running();
    assert!(
        running.iter().sum::<usize>() >= 6 && running[2] > 0,
        "n2 keeps its pods until the new owners run them: {running:?}"
    );
    cluster.run_until(8_000);
    let running = cluster.running();
    assert_eq!(running, [3, 3, 0], "n2's pods were handed over");
    // n2 stops without a word; its connections close, the check finds nothing there.
    cluster.nodes.get_mut("n2").unwrap().stopped = true;
    let p2 = cluster.nodes["n2"].core.me().peer_id.clone();
    cluster.push(cluster.now, "n0", Input::Disconnected(p2.clone()));
    // The death is listed with the next view.
    cluster.run_until(8_010 + VIEW_AFTER.as_millis() as u64);
    assert_eq!(cluster.alive("n0"), ["n0", "n1"]);
    assert!(
        cluster
            .effects_of("n0")
            .any(|e| matches!(e, Effect::Disconnect(p) if *p == p2)),
        "n0 closes n2's connections"
    );
    let table = cluster.nodes["n0"].core.table();
    assert!(table.report("n2").is_none(), "n2's report is forgotten");
    cluster.run_until(12_000);
    assert_eq!(cluster.alive("n1"), ["n0", "n1"], "n1 hears of it");
    assert_eq!(cluster.running(), [3, 3, 0], "nothing moved");
}

#[test]
fn a_peer_that_holds_something_else_is_synced_by_the_node_with_the_smaller_id() {
    let mut cluster = Cluster::new(2, 4);
    cluster.run_until(3_000);
    // `low` has the smaller peer id, `high` the larger.
    let peer = |n: &str| cluster.nodes[n].core.me().peer_id.clone();
    let (low, high) = match peer("n0") < peer("n1") {
        true => ("n0", "n1"),
        false => ("n1", "n0"),
    };
    let (p_low, p_high) = (peer(low), peer(high));
    let differs = Digest {
        status: 1,
        doc: 2,
        members: 3,
    };
    let datagram = |from: &str| Input::Datagram {
        from: from.into(),
        data: Vec::new(),
        digest: differs,
        request: false,
    };
    let first = &mut cluster.nodes.get_mut(low).unwrap().core;
    let effects = first.step(Duration::from_secs(3), datagram(&p_high));
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Sync { to, .. } if to.peer_id == p_high))
    );
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::Status(Send {
            message: StatusMessage::Sums(_),
            ..
        })
    )));
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Membership { to, .. } if to.peer_id == p_high)),
        "a member pull: {effects:?}"
    );
    let second = &mut cluster.nodes.get_mut(high).unwrap().core;
    let effects = second.step(Duration::from_secs(3), datagram(&p_low));
    assert!(
        !effects.iter().any(|e| matches!(
            e,
            Effect::Sync { .. } | Effect::Status(_) | Effect::Membership { .. }
        )),
        "the larger id waits for the smaller to begin: {effects:?}"
    );
}

#[test]
fn a_join_is_in_the_view_view_after_later_with_those_that_came_meanwhile() {
    let mut cluster = Cluster::new(3, 4);
    cluster.run_until(50);
    assert!(
        cluster.effects_of("n0").any(|e| matches!(
            e,
            Effect::Schedule {
                timer: Timer::View,
                ..
            }
        )),
        "n0 heard of a join"
    );
    assert_eq!(cluster.alive("n0"), ["n0"], "its view waits");
    let views = |c: &Cluster| {
        c.effects_of("n0")
            .filter(|e| matches!(e, Effect::View(_)))
            .count()
    };
    let before = views(&cluster);
    cluster.run_until(50 + VIEW_AFTER.as_millis() as u64 + 10);
    assert_eq!(cluster.alive("n0"), ["n0", "n1", "n2"]);
    assert_eq!(views(&cluster), before + 1, "both joins in one view");
}

#[test]
fn deaths_heard_within_view_after_of_each_other_are_one_view() {
    let mut cluster = Cluster::new(4, 4);
    cluster.run_until(10_000);
    assert_eq!(cluster.alive("n0"), ["n0", "n1", "n2", "n3"]);
    let before = cluster.log.len();
    for (name, at) in [("n2", 10_000), ("n3", 10_050)] {
        let peer = cluster.nodes[name].core.me().peer_id.clone();
        cluster.nodes.get_mut(name).unwrap().stopped = true;
        cluster.push(at, "n0", Input::Disconnected(peer));
    }
    cluster.run_until(10_050 + VIEW_AFTER.as_millis() as u64 + 10);
    assert_eq!(cluster.alive("n0"), ["n0", "n1"]);
    let views: Vec<Vec<String>> = cluster.log[before..]
        .iter()
        .filter_map(|(n, e)| match e {
            Effect::View(view) if n == "n0" => Some(
                view.members
                    .iter()
                    .filter(|(_, l)| *l != Liveness::Down)
                    .map(|(m, _)| m.name.clone())
                    .collect(),
            ),
            _ => None,
        })
        .collect();
    assert_eq!(views, [["n0", "n1"]], "one view, without both");
}

#[test]
fn an_unchanged_member_list_publishes_no_new_view() {
    let mut cluster = Cluster::new(3, 4);
    cluster.run_until(10_000);
    let views = |c: &Cluster| {
        c.effects_of("n0")
            .filter(|e| matches!(e, Effect::View(_)))
            .count()
    };
    let before = views(&cluster);
    cluster.run_until(20_000);
    assert_eq!(views(&cluster), before, "ten idle seconds change no view");
}

#[test]
fn a_container_whose_liveness_probe_fails_is_killed_and_started_again() {
    let mut cluster = Cluster::new(2, 4);
    cluster.run_until(5_000);
    let probe = "livenessProbe: {exec: {command: [check]}, periodSeconds: 1, failureThreshold: 2}";
    let container = format!("{{name: web, image: img:1, {probe}}}");
    cluster.write("n0", with_container("web", 1, &container), 1);
    cluster.run_until(6_000);
    let (node, id) = cluster
        .nodes
        .iter()
        .find_map(|(name, n)| Some((name.clone(), n.containers.first()?.id.clone())))
        .expect("the pod runs");
    let probed = cluster
        .effects_of(&node)
        .filter(|e| matches!(e, Effect::Probe(_)))
        .count();
    assert!(probed >= 1, "its probe runs");
    assert!(
        !cluster
            .effects_of(&node)
            .any(|e| matches!(e, Effect::Terminate(_))),
        "a passing probe kills nothing"
    );
    cluster.failing.insert(id.clone());
    cluster.run_until(10_000);
    let killed = cluster
        .effects_of(&node)
        .any(|e| matches!(e, Effect::Terminate(ids) if ids.contains(&id)));
    assert!(killed, "two failures in a row kill it");
    let restarted = cluster.effects_of(&node).any(|e| {
        matches!(e, Effect::Act(actions) if actions.iter().any(|a| matches!(a, Action::Start { id: started, .. } if *started == id)))
    });
    assert!(restarted, "its restart policy starts it again");
    let table = cluster.nodes["n0"].core.table();
    assert!(
        table.pods().iter().any(|p| p.restarts >= 1),
        "every node sees the restart"
    );
}

/// What the `datagram` and `sync` fuzz targets found (`fuzz/corpus/*/regression-*`): a
/// datagram whose lengths claim 2⁶⁰ bytes, and a sync message whose bloom filter claims
/// entries with no bits, are refused; the node goes on and still joins its peer.
#[test]
fn what_the_fuzz_targets_found_is_refused_and_the_node_goes_on() {
    let mut cluster = Cluster::new(2, 0);
    let data = include_bytes!("../../../../fuzz/corpus/datagram/regression-length-2e60").to_vec();
    // The datagram names peer "p1" as its sender: from "p1", it is read (and refused).
    let input = Input::Datagram {
        from: "p1".into(),
        data,
        digest: Digest::default(),
        request: true,
    };
    assert_eq!(cluster.step("n0", input), Some(Answer::Membership(None)));
    let message =
        include_bytes!("../../../../fuzz/corpus/sync/regression-bloom-without-bits").to_vec();
    let id = cluster.next_request;
    cluster.next_request += 1;
    cluster.requests.insert(("n0".into(), id), "n1".into());
    let from = cluster.nodes["n1"].core.me().peer_id.clone();
    cluster.step("n0", Input::SyncRequest { id, from, message });
    let refused = cluster.effects_of("n0").any(
        |e| matches!(e, Effect::SyncAnswer { id: i, answer: Err(why) } if *i == id && why.contains("bloom")),
    );
    assert!(refused, "the sync message is refused with its reason");
    cluster.run_until(3_000);
    assert_eq!(cluster.alive("n0"), ["n0", "n1"], "n0 still joins n1");
}

/// A status report is taken only if its node's key signed it: n2 cannot report pods for n1,
/// whether it signs the report itself or passes it on unsigned; n1's own report is taken.
#[test]
fn a_status_report_is_taken_only_if_its_node_signed_it() {
    let mut cluster = Cluster::new(3, 0);
    cluster.run_until(3_000);
    let n1 = cluster.report("n1", "n1");
    let forged = |key: Option<usize>| {
        let mut report = NodeStatus::clone(&n1);
        report.version += 10;
        report.pods = vec![crate::status::running_pod("n1")];
        let report = match key {
            Some(i) => report.signed(&NodeKey::numbered(i)),
            None => report,
        };
        Input::Status {
            from: NodeKey::numbered(2).peer_id(),
            message: StatusMessage::Reports(vec![Arc::new(report)]),
        }
    };
    for key in [Some(2), None] {
        cluster.step("n0", forged(key));
        let held = cluster.report("n0", "n1");
        assert_eq!(held.at(), n1.at(), "the forged report is refused");
        assert!(held.pods.is_empty());
    }
    cluster.step("n0", forged(Some(1)));
    let held = cluster.report("n0", "n1");
    assert_eq!(held.version, n1.version + 10, "n1's own signature is taken");
    // Signed by n1, but listing more images than any node lists: not kept.
    let mut crowded = NodeStatus::clone(&held);
    crowded.version += 1;
    crowded.images = (0..=crate::status::MAX_HELD_IMAGES)
        .map(|i| crate::status::HeldImage {
            image: format!("web:{i}"),
            id: format!("sha256:{i}"),
        })
        .collect();
    let message = StatusMessage::Reports(vec![Arc::new(crowded.signed(&NodeKey::numbered(1)))]);
    let from = NodeKey::numbered(2).peer_id();
    cluster.step("n0", Input::Status { from, message });
    assert_eq!(
        cluster.report("n0", "n1").version,
        held.version,
        "too many images"
    );
}

/// n2 passes on a datagram n1 sent (its leave) as its own: n0 refuses it, and n1 stays
/// alive at n0; the same datagram from n1 itself is taken.
#[test]
fn a_membership_datagram_in_another_nodes_name_is_refused() {
    let mut cluster = Cluster::new(3, 0);
    cluster.run_until(3_000);
    assert_eq!(cluster.alive("n0"), ["n0", "n1", "n2"]);
    let n0 = cluster.nodes["n0"].core.me().p2p;
    let now = Duration::from_millis(cluster.now);
    let leave = cluster
        .nodes
        .get_mut("n1")
        .unwrap()
        .core
        .step(now, Input::Leave);
    let to_n0 = leave.into_iter().find_map(|e| match e {
        Effect::Membership { to, data } if to.p2p == n0 => Some(data),
        _ => None,
    });
    let data = to_n0.expect("n1's leave goes to n0");
    let (p1, p2) = (
        NodeKey::numbered(1).peer_id(),
        NodeKey::numbered(2).peer_id(),
    );
    let datagram = |from: String| Input::Datagram {
        from,
        data: data.clone(),
        digest: Digest::default(),
        request: true,
    };
    let answer = cluster.step("n0", datagram(p2));
    assert_eq!(answer, Some(Answer::Membership(None)));
    cluster.run_until(cluster.now + 200);
    assert_eq!(cluster.alive("n0"), ["n0", "n1", "n2"], "n1 did not leave");
    cluster.step("n0", datagram(p1));
    cluster.run_until(cluster.now + 200);
    assert!(
        !cluster.alive("n0").contains(&"n1".to_string()),
        "n1's own leave is taken"
    );
}

/// n0 takes a write that denies n2: every node declares n2 down and closes its connections
/// within a round; n2's datagrams, status and syncs are refused, and what it writes reaches
/// no one. Allowing n0 and n1 alone (closing the cluster) keeps n2 out as well.
#[test]
fn a_denied_peer_is_cut_off_and_changes_nothing() {
    for admission in [Admission::Denied, Admission::Allowed] {
        let mut cluster = Cluster::new(3, 0);
        cluster.run_until(3_000);
        assert_eq!(cluster.alive("n1"), ["n0", "n1", "n2"]);
        let peer = |i: usize| NodeKey::numbered(i).peer_id();
        let peers = match admission {
            Admission::Denied => vec![peer(2)],
            Admission::Allowed => vec![peer(0), peer(1)],
        };
        let op = Op::Admit(peers, admission);
        cluster.push(cluster.now, "n0", Input::Write { id: 1, op });
        let before = cluster.log.len();
        cluster.run_until(cluster.now + 1_000);
        for n in ["n0", "n1"] {
            assert_eq!(cluster.alive(n), ["n0", "n1"], "{n} declared n2 down");
            let closed = cluster.log[before..]
                .iter()
                .any(|(at, e)| at == n && matches!(e, Effect::Disconnect(p) if *p == peer(2)));
            assert!(closed, "{n} closed n2's connections");
        }
        // What n2 sends now is refused, and its write stays its own.
        cluster.requests.insert(("n1".into(), 99), "n2".into());
        let sync = Input::SyncRequest {
            id: 99,
            from: peer(2),
            message: Vec::new(),
        };
        cluster.step("n1", sync);
        let refused = cluster.effects_of("n1").any(|e| {
            matches!(e, Effect::SyncAnswer { id: 99, answer: Err(why) } if why.contains("not admitted"))
        });
        assert!(refused);
        cluster.write("n2", deployment("intruder", 2), 2);
        cluster.run_until(cluster.now + 5_000);
        for n in ["n0", "n1"] {
            let snapshot = cluster.view(n).snapshot.clone();
            assert!(snapshot.deployments.is_empty(), "{n} took nothing from n2");
            assert!(cluster.nodes[n].core.table().report("n2").is_none());
            assert_eq!(cluster.alive(n), ["n0", "n1"], "n2 stays out");
        }
    }
}
