//! Placement: which member owns each replica, by weighted rendezvous hashing. Pure.
//!
//! Every replica key (namespace/deployment, index) scores every eligible member; the highest
//! score owns it. Scores depend only on the key and the member's name, so every node computes
//! the same owners from the same view, removing a member moves only its replicas, and adding
//! one moves about 1/(n+1) of them. Weighted: a member of weight w scores `w / -ln(u)` with
//! `u` its hash in (0, 1), so it wins a share proportional to w.
//!
//! Eligibility is the pod template's nodeSelector against member labels. Capacity: when a
//! replica's top member has too little left of what it requests, or already has its
//! `max_pods` replicas, it spills to the next-ranked member that fits. Replicas are taken in
//! key order, so spills are deterministic.
//! Replicas are placed independently: two replicas of a deployment may share a member.
//!
//! When members leave and nothing spilled, [`place_after`] derives the new placement from the
//! last one, ranking only the replicas of the members gone; it gives what [`place`] would.

use crate::hash::{fnv1a, mix};
use crate::membership::{Liveness, MemberId, MemberList};
use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use weeble_crdt::{Deployment, Labels, ObjectKey, ResourceAmounts, Snapshot};

/// A member that may run replicas, as the membership view describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub name: String,
    pub labels: Labels,
    pub allocatable: ResourceAmounts,
    /// The most replicas it takes (the kubelet's `--max-pods`).
    pub max_pods: u32,
    /// Relative share of replicas; must be positive and finite.
    pub weight: f64,
}

impl Candidate {
    /// A live member as a candidate: weighted by its CPUs (a thousandth at least).
    pub fn from_member(m: &MemberId) -> Self {
        Candidate {
            name: m.name.clone(),
            labels: m.labels.clone(),
            allocatable: m.capacity,
            max_pods: m.max_pods,
            weight: (m.capacity.cpu_millis as f64 / 1000.0).max(0.001),
        }
    }
}

/// The members that take replicas: those not down, and of those, the ones that take pods (a
/// node that cannot persist the desired state reports itself not Ready; one that is leaving
/// says so). If none takes pods, every live member stays a candidate: a lone node with a full
/// disk keeps running what it can. Members, not [`Candidate`]s: shared, where candidates are
/// copies (a view keeps these with its placement).
pub fn candidates<'a>(
    members: &'a MemberList,
    unschedulable: &BTreeSet<String>,
) -> Vec<&'a MemberId> {
    let live: Vec<&MemberId> = members
        .iter()
        .filter(|(_, l)| *l != Liveness::Down)
        .map(|(m, _)| m)
        .collect();
    if unschedulable.is_empty() {
        return live;
    }
    let open: Vec<&MemberId> = live
        .iter()
        .copied()
        .filter(|m| !unschedulable.contains(&m.name))
        .collect();
    if open.is_empty() { live } else { open }
}

/// The names of the members of `had` that `now` no longer holds, when `now` is `had` less
/// those members and each of the rest makes the same candidate (the same name, labels,
/// capacity and pod limit) in the same order: what [`place_after`] is told. `None`
/// otherwise (a member is new, changed or moved, or one gone shares its name with one that
/// stays: placement takes one member per name, so that name is not gone). Both are in name
/// order, as membership lists members. The members of one process's lists are shared, so
/// most are found the same by their pointers alone: each view of a 10,000-node cluster
/// compares two lists.
pub fn left<'a>(
    had: &'a [impl Borrow<MemberId>],
    now: &[impl Borrow<MemberId>],
) -> Option<Vec<&'a str>> {
    fn key(m: &MemberId) -> (&String, &Labels, ResourceAmounts, u32) {
        (&m.name, &m.labels, m.capacity, m.max_pods)
    }
    let mut gone = Vec::new();
    let mut rest = now.iter().map(Borrow::borrow).peekable();
    for m in had.iter().map(Borrow::borrow) {
        if rest.next_if(|n| m.is(n) || key(m) == key(n)).is_none() {
            gone.push(m.name.as_str());
        }
    }
    // Found by halves, not by a walk of `now` for each one gone (once 100 of 10,000
    // simulated nodes crashed, each view compared names with thousands of members so).
    let stays = |name: &str| {
        now.binary_search_by(|n| n.borrow().name.as_str().cmp(name))
            .is_ok()
    };
    let whole = rest.peek().is_none() && !gone.iter().any(|&name| stays(name));
    whole.then_some(gone)
}

/// Whether two lists of members make the same candidates, in the same order, whatever else
/// of them differs ([`left`], with none gone).
pub fn same_candidates(a: &[impl Borrow<MemberId>], b: &[impl Borrow<MemberId>]) -> bool {
    a.len() == b.len() && left(a, b).is_some()
}

/// What placement needs to know about a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub deployment: ObjectKey,
    pub replicas: u32,
    pub node_selector: Labels,
    /// Per replica: the sum of its containers' requests.
    pub requests: ResourceAmounts,
}

impl From<&Deployment> for Workload {
    fn from(d: &Deployment) -> Self {
        Workload {
            deployment: d.meta.key(),
            replicas: d.spec.replicas,
            node_selector: d.spec.template.node_selector.clone(),
            requests: d.spec.template.requests(),
        }
    }
}

/// The workloads of a snapshot's deployments, kept from one snapshot to the next: a
/// deployment that is the same object as before (a refreshed snapshot shares every object a
/// write did not touch) is not read again, so a write costs a walk of the keys, not a
/// rebuild of every workload.
#[derive(Debug, Default)]
pub struct Workloads(Vec<(Arc<Deployment>, Workload)>);

impl Workloads {
    /// Brings the workloads up to date with `snapshot`. True if any changed: a deployment
    /// came or went, or its replicas, nodeSelector or requests differ (a new image does not).
    /// Both are in key order, so this is one walk of the two side by side.
    pub fn update(&mut self, snapshot: &Snapshot) -> bool {
        let mut changed = false;
        let mut old = std::mem::take(&mut self.0).into_iter().peekable();
        for (key, d) in &snapshot.deployments {
            while old.next_if(|(_, w)| w.deployment < *key).is_some() {
                changed = true;
            }
            let workload = match old.next_if(|(_, w)| w.deployment == *key) {
                Some((seen, workload)) if Arc::ptr_eq(&seen, d) => workload,
                Some((_, workload)) => {
                    let now = Workload::from(&**d);
                    changed |= now != workload;
                    now
                }
                None => {
                    changed = true;
                    Workload::from(&**d)
                }
            };
            self.0.push((d.clone(), workload));
        }
        changed | old.next().is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Workload> {
        self.0.iter().map(|(_, w)| w)
    }
}

/// One replica of one deployment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaKey {
    pub deployment: ObjectKey,
    pub index: u32,
}

impl ReplicaKey {
    /// The pod's name, which is also its container's hostname: `<deployment>-<index>`.
    pub fn pod_name(&self) -> String {
        format!("{}-{}", self.deployment.name, self.index)
    }
}

/// Why a replica has no owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unplaced {
    /// No live member matches the nodeSelector.
    NoEligibleNode,
    /// Every eligible member is too full for the replica's requests.
    InsufficientCapacity,
    /// Every eligible member with room already runs its `max_pods` replicas.
    TooManyPods,
}

/// One replica's owner (an index into [`Placement::nodes`]), or why it has none, in four
/// bytes: a placement holds one per replica, and while a crash is heard, the cores of one
/// simulated process hold hundreds of placements at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(u32);

impl Slot {
    /// The highest owner a slot holds: the values above are the [`Unplaced`] reasons.
    const MAX_OWNER: u32 = u32::MAX - 3;

    pub fn new(owner: Result<usize, Unplaced>) -> Self {
        match owner {
            Ok(i) => {
                let i = u32::try_from(i).expect("fewer members than u32::MAX - 2");
                debug_assert!(i <= Self::MAX_OWNER);
                Slot(i)
            }
            Err(Unplaced::NoEligibleNode) => Slot(u32::MAX),
            Err(Unplaced::InsufficientCapacity) => Slot(u32::MAX - 1),
            Err(Unplaced::TooManyPods) => Slot(u32::MAX - 2),
        }
    }

    pub fn owner(self) -> Result<usize, Unplaced> {
        match self.0 {
            u32::MAX => Err(Unplaced::NoEligibleNode),
            n if n == u32::MAX - 1 => Err(Unplaced::InsufficientCapacity),
            n if n == u32::MAX - 2 => Err(Unplaced::TooManyPods),
            owner => Ok(owner as usize),
        }
    }
}

/// The owner of every replica, or why it has none.
///
/// A placement derived from another ([`place_after`]) shares that one's members and its
/// first slots, and holds only which members are gone and the replicas that moved since:
/// while a crash is heard, nearly every node holds a placement of its own (each hears the
/// deaths in its own order), and a whole one of 300,000 replicas on 10,000 members is 1.7 MB.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// The members first placed on; a slot's owner is an index into them. A derived
    /// placement shares its base's: the members gone since stay in it, owning nothing.
    nodes: Arc<Nodes>,
    /// The owners as first placed.
    first: Arc<First>,
    /// Which of `nodes` are gone since the first slots (their places, ascending).
    gone: Vec<u32>,
    /// The replicas whose owner is no longer `first`'s: exactly those `first` gave to a
    /// member in `gone`.
    moved: Moved,
    /// Whether some replica is not on its top-ranked member (it spilled, or has no owner).
    pub spilled: bool,
    /// The rankings of the replicas that moved since the first slots, shared by every
    /// placement derived from them.
    ranks: Arc<Mutex<Ranks>>,
}

/// The replicas moved since the first slots and their owners, by (their deployment's place
/// among the keys, their index), in that order. A sorted slice, not a tree: while a crash is
/// heard, each placement derived holds its own, made from the last one's and a few more, and
/// a tree held about twice the bytes a replica and was copied node by node.
#[derive(Debug, Clone, Default)]
struct Moved(Box<[((u32, u32), Slot)]>);

impl Moved {
    /// `moves`, in any order, each replica once.
    fn of_moves(mut moves: Vec<((u32, u32), Slot)>) -> Moved {
        moves.sort_unstable_by_key(|(r, _)| *r);
        Moved(moves.into_boxed_slice())
    }

    fn get(&self, replica: (u32, u32)) -> Option<Slot> {
        let at = self.0.binary_search_by_key(&replica, |(r, _)| *r).ok()?;
        Some(self.0[at].1)
    }

    fn iter(&self) -> impl Iterator<Item = &((u32, u32), Slot)> {
        self.0.iter()
    }

    /// Those of the deployment at place `d`, in index order.
    fn of(&self, d: u32) -> &[((u32, u32), Slot)] {
        let from = self.0.partition_point(|((e, _), _)| *e < d);
        let to = self.0.partition_point(|((e, _), _)| *e <= d);
        &self.0[from..to]
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// How many members each replica's ranking keeps ([`Ranks`]).
const RANKED: usize = 4;

/// No member: a ranking of fewer than [`RANKED`] eligible members ends with these.
const NO_MEMBER: u32 = u32::MAX;

/// Replicas' [`RANKED`] best members on the members first placed on, best first, by
/// (their deployment's place among the keys, their index): ranked the first time a
/// placement derived from the first slots moves the replica ([`place_after`]), and read by
/// every later one, which moves it to the first of them not gone, without ranking every
/// member again (only a replica whose ranked members are all gone is). While 30 crashes of
/// 3,000 simulated nodes were heard, the nodes derived 6,535 placements, which ranked 1.6
/// million replicas on every member: the replicas of 30 members, each ranked again and
/// again. Ranked when first moved, not when first placed: ranking every replica that
/// deeply made a whole placement 2.6 times as long.
type Ranks = BTreeMap<(u32, u32), [u32; RANKED]>;

/// The candidates a placement was first made on, in name order (one per name), with their
/// names' hashes: what ranks a replica, kept so that a placement derived after deaths ranks
/// the replicas that move without reading, copying or sorting the members again.
#[derive(Debug, Default)]
struct Nodes {
    candidates: Vec<Candidate>,
    hashes: Vec<u32>,
}

impl Nodes {
    fn new(candidates: &[Candidate]) -> Self {
        let mut candidates = candidates.to_vec();
        candidates.sort_by(|a, b| a.name.cmp(&b.name));
        candidates.dedup_by(|a, b| a.name == b.name);
        let hashes = candidates
            .iter()
            .map(|c| mix(fnv1a(&[c.name.as_bytes()])) as u32)
            .collect();
        Nodes { candidates, hashes }
    }

    fn len(&self) -> usize {
        self.candidates.len()
    }

    /// The place of the member named `name`.
    fn find(&self, name: &str) -> Option<usize> {
        let by_name = self
            .candidates
            .binary_search_by(|c| c.name.as_str().cmp(name));
        by_name.ok()
    }
}

/// The owners as first placed, and each member's replicas among them: a member's own
/// replicas, and those of the members gone, are found without a walk of every replica.
/// While 100 crashes of 10,000 simulated nodes were heard, each node walked 300,000
/// replicas for each set of members it saw, twice (to derive the placement, and for its
/// own share).
#[derive(Debug, Default)]
struct First {
    /// Per deployment, per replica index: the owner, or why there is none.
    deployments: BTreeMap<ObjectKey, Replicas>,
    /// The deployments' keys in key order: `owned` names a deployment by its place here.
    keys: Vec<ObjectKey>,
    /// Member `i`'s replicas are `owned[starts[i]..starts[i + 1]]`, in key order.
    starts: Vec<u32>,
    /// Every owned replica as (its deployment's place in `keys`, its index), by owner.
    owned: Vec<(u32, u32)>,
}

impl First {
    /// The slots of `deployments`, whose owners are indexes into `members` names.
    fn new(deployments: BTreeMap<ObjectKey, Replicas>, members: usize) -> Self {
        let mut starts = vec![0u32; members + 1];
        let owners = || {
            deployments.values().enumerate().flat_map(|(d, replicas)| {
                let owned = replicas.0.iter().enumerate();
                owned.filter_map(move |(index, slot)| Some((slot.owner().ok()?, d, index)))
            })
        };
        for (owner, _, _) in owners() {
            starts[owner + 1] += 1;
        }
        for i in 0..members {
            starts[i + 1] += starts[i];
        }
        let mut next = starts.clone();
        let mut owned = vec![(0, 0); starts[members] as usize];
        for (owner, d, index) in owners() {
            owned[next[owner] as usize] = (d as u32, index as u32);
            next[owner] += 1;
        }
        First {
            keys: deployments.keys().cloned().collect(),
            deployments,
            starts,
            owned,
        }
    }

    /// The replicas member `i` owns here, as (deployment's place in `keys`, index).
    fn owned_by(&self, i: usize) -> &[(u32, u32)] {
        &self.owned[self.starts[i] as usize..self.starts[i + 1] as usize]
    }

    /// The place of `deployment` among the keys.
    fn place_of(&self, deployment: &ObjectKey) -> Option<usize> {
        self.keys.binary_search(deployment).ok()
    }
}

/// A deployment's replicas as first placed; how many there are is all that shows of them
/// (their owners: [`Placement::owners`]).
#[derive(Debug, Clone, Default)]
pub struct Replicas(Vec<Slot>);

impl Replicas {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Equal placements give every replica the same owner (or the same reason for none),
/// however each holds them.
impl PartialEq for Placement {
    fn eq(&self, other: &Self) -> bool {
        self.spilled == other.spilled
            && self.first.keys.eq(&other.first.keys)
            && self.replicas().eq(other.replicas())
    }
}

impl Placement {
    /// A placement of these slots on members of these names, for tests.
    #[cfg(test)]
    pub fn of(names: Vec<String>, deployments: BTreeMap<ObjectKey, Vec<Slot>>) -> Self {
        let deployments = deployments
            .into_iter()
            .map(|(k, s)| (k, Replicas(s)))
            .collect();
        let named = |name| Candidate {
            name,
            labels: Labels::new(),
            allocatable: ResourceAmounts::default(),
            max_pods: 0,
            weight: 1.0,
        };
        let nodes = Nodes::new(&names.into_iter().map(named).collect::<Vec<_>>());
        Placement {
            first: Arc::new(First::new(deployments, nodes.len())),
            nodes: Arc::new(nodes),
            ..Placement::default()
        }
    }

    /// Every name an owner may have, in name order (a derived placement's include members
    /// gone since, which own nothing).
    #[cfg(test)]
    pub fn nodes(&self) -> Vec<String> {
        self.nodes
            .candidates
            .iter()
            .map(|c| c.name.clone())
            .collect()
    }

    /// The deployments placed, in key order, with their replicas.
    pub fn deployments(&self) -> &BTreeMap<ObjectKey, Replicas> {
        &self.first.deployments
    }

    /// The owners of a deployment's replicas in index order: a name, or why there is none.
    pub fn owners<'a>(
        &'a self,
        deployment: &ObjectKey,
    ) -> impl Iterator<Item = Result<&'a str, Unplaced>> + 'a {
        let d = self.first.place_of(deployment);
        d.into_iter()
            .flat_map(|d| self.slots(d))
            .map(|slot| self.name(slot))
    }

    pub fn owner(&self, replica: &ReplicaKey) -> Option<&str> {
        let d = self.first.place_of(&replica.deployment)?;
        let first = &self.first.deployments[&replica.deployment].0;
        let first = *first.get(replica.index as usize)?;
        let moved = self.moved.get((d as u32, replica.index));
        self.name(moved.unwrap_or(first)).ok()
    }

    /// Every replica in key order, with its owner's name or why it has none.
    pub fn replicas(&self) -> impl Iterator<Item = (ReplicaKey, Result<&str, Unplaced>)> + '_ {
        let keys = self.first.keys.iter().enumerate();
        keys.flat_map(move |(d, deployment)| {
            self.slots(d).enumerate().map(move |(index, slot)| {
                let key = ReplicaKey {
                    deployment: deployment.clone(),
                    index: index as u32,
                };
                (key, self.name(slot))
            })
        })
    }

    /// The replicas a member owns, in key order: those it was first given and still owns,
    /// and those moved to it.
    pub fn owned_by(&self, node: &str) -> impl Iterator<Item = ReplicaKey> + use<> {
        let mut mine = Vec::new();
        if let Some(me) = self.nodes.find(node) {
            let to_me = self.moved.iter().filter(|(_, slot)| slot.owner() == Ok(me));
            let to_me = to_me.map(|&(replica, _)| replica);
            let key = |(d, index): (u32, u32)| ReplicaKey {
                deployment: self.first.keys[d as usize].clone(),
                index,
            };
            mine.extend(self.stayed(me).iter().copied().chain(to_me).map(key));
            mine.sort_unstable();
        }
        mine.into_iter()
    }

    /// The replicas member `i` (of `nodes`) was first given and still owns, as (its
    /// deployment's place among the keys, its index): all of them, unless it is gone
    /// (`moved` holds exactly the replicas first given to the members gone). Looking each
    /// up in `moved` was about a fifth of the first second after 100 crashes of 10,000
    /// simulated nodes.
    fn stayed(&self, i: usize) -> &[(u32, u32)] {
        if self.gone.binary_search(&(i as u32)).is_ok() {
            return &[];
        }
        self.first.owned_by(i)
    }

    /// The replicas no member can take, and why.
    pub fn unplaced(&self) -> impl Iterator<Item = (ReplicaKey, Unplaced)> + '_ {
        self.replicas()
            .filter_map(|(key, owner)| owner.err().map(|why| (key, why)))
    }

    /// The slots of the deployment at place `d` among the keys, in index order: the first
    /// ones, and the moved where they moved.
    fn slots(&self, d: usize) -> impl Iterator<Item = Slot> + '_ {
        let first = &self.first.deployments[&self.first.keys[d]].0;
        let d = d as u32;
        let mut moved = self.moved.of(d).iter().peekable();
        first.iter().enumerate().map(move |(index, slot)| {
            match moved.next_if(|((_, at), _)| *at as usize == index) {
                Some((_, moved)) => *moved,
                None => *slot,
            }
        })
    }

    fn name(&self, slot: Slot) -> Result<&str, Unplaced> {
        slot.owner().map(|i| self.nodes.candidates[i].name.as_str())
    }

    /// How many replicas moved since the first slots.
    #[cfg(test)]
    fn moves(&self) -> usize {
        self.moved.len()
    }
}

/// Members of one weight, so the logarithm is taken once per class, not once per member.
/// Two parallel arrays, so that the hot loop in `best_in` streams plain integers.
struct WeightClass {
    weight: f64,
    /// Hashes of the members' names.
    hashes: Vec<u32>,
    /// Indexes into the sorted candidates.
    members: Vec<usize>,
}

/// Places every replica of every workload on the candidates. Input order does not matter.
pub fn place<'a>(
    candidates: &[Candidate],
    workloads: impl IntoIterator<Item = &'a Workload>,
) -> Placement {
    let nodes = Arc::new(Nodes::new(candidates));
    let mut ranker = Ranker::new(&nodes, &[]);
    let sorted = &nodes.candidates;
    let mut remaining: Vec<ResourceAmounts> = sorted.iter().map(|c| c.allocatable).collect();
    let mut pods_left: Vec<u32> = sorted.iter().map(|c| c.max_pods).collect();
    // Members that can take another pod: once there are none, the rest go unranked.
    let mut open = pods_left.iter().filter(|&&n| n > 0).count();
    let mut workloads: Vec<&Workload> = workloads.into_iter().collect();
    workloads.sort_by(|a, b| a.deployment.cmp(&b.deployment));

    let mut first = BTreeMap::new();
    let mut spilled = false;
    for w in workloads {
        let (classes, scratch) = ranker.classes(&w.node_selector);
        let base = deployment_hash(w);
        let mut slots = Vec::with_capacity(w.replicas as usize);
        for index in 0..w.replicas {
            let replica = replica_hash(base, index);
            let has_room = |i: usize| fits(&remaining[i], &w.requests);
            let takes = |i: usize| pods_left[i] > 0 && has_room(i);
            let best = top(classes, replica, scratch);
            let owner = match best {
                None => Err(Unplaced::NoEligibleNode),
                Some(best) if takes(best) => Ok(best),
                Some(_) if open == 0 => Err(Unplaced::TooManyPods),
                Some(_) => {
                    let ranking = ranked(classes, replica);
                    ranking.iter().copied().find(|&i| takes(i)).ok_or(
                        if ranking.iter().any(|&i| has_room(i)) {
                            Unplaced::TooManyPods
                        } else {
                            Unplaced::InsufficientCapacity
                        },
                    )
                }
            };
            spilled |= owner.is_err() || owner.ok() != best;
            if let Ok(i) = owner {
                let r = &mut remaining[i];
                r.cpu_millis -= w.requests.cpu_millis;
                r.memory_bytes -= w.requests.memory_bytes;
                pods_left[i] -= 1;
                if pods_left[i] == 0 {
                    open -= 1;
                }
            }
            slots.push(Slot::new(owner));
        }
        first.insert(w.deployment.clone(), Replicas(slots));
    }
    Placement {
        first: Arc::new(First::new(first, nodes.len())),
        nodes,
        spilled,
        ..Placement::default()
    }
}

/// The placement [`place`] gives for `workloads` on the candidates of `before` (its
/// placement of the same workloads) less the members named in `gone`, each of the rest
/// unchanged ([`left`] finds them): only the replicas of the members gone are ranked again,
/// a few hashes per member each, instead of every replica (at 1,000 simulated nodes and
/// 30,000 replicas, a few crashes heard in different orders made every node place
/// everything many times over), and the members are not read again (at 10,000 nodes,
/// reading them was most of the work). It shares `before`'s members and first slots, and
/// holds which are gone and the replicas moved (until they are a quarter of all: then it
/// holds its own slots again).
///
/// `None` when that is not sure to equal [`place`]: a member gone is not one of `before`'s,
/// some replica of `before` spilled, or the replicas moved would overfill a member.
/// Otherwise it does: with no member over its capacity once every replica is on its
/// top-ranked member, `place`, taking them in key order, finds room on that member for each.
pub fn place_after<'a>(
    before: &Placement,
    gone: &[&str],
    workloads: impl IntoIterator<Item = &'a Workload>,
) -> Option<Placement> {
    if before.spilled {
        return None;
    }
    let nodes = &before.nodes;
    // The places of the members gone now, each one of `before`'s that was still there.
    let mut leaving = Vec::with_capacity(gone.len());
    for name in gone {
        let n = nodes.find(name)? as u32;
        if before.gone.binary_search(&n).is_ok() {
            return None;
        }
        leaving.push(n);
    }
    leaving.sort_unstable();
    leaving.dedup();
    // The same deployments with as many replicas each, in key order.
    let mut workloads: Vec<&Workload> = workloads.into_iter().collect();
    workloads.sort_by(|a, b| a.deployment.cmp(&b.deployment));
    let first = &before.first;
    let same = first.deployments.iter().zip(&workloads);
    if workloads.len() != first.keys.len()
        || same
            .into_iter()
            .any(|((key, r), w)| *key != w.deployment || r.len() != w.replicas as usize)
    {
        return None;
    }
    // The replicas on the members leaving (`moving`): those first given to them and not
    // moved since, and those moved to them; the other moves stay (`moves`), with those made
    // below.
    let leaves = |n: usize| leaving.binary_search(&(n as u32)).is_ok();
    let mut moving: Vec<(u32, u32)> = Vec::new();
    for &n in &leaving {
        moving.extend(before.stayed(n as usize));
    }
    let mut moves = Vec::with_capacity(before.moved.len() + moving.len());
    for &(replica, slot) in before.moved.iter() {
        match leaves(slot.owner().ok()?) {
            true => moving.push(replica),
            false => moves.push((replica, slot)),
        }
    }
    let mut all_gone = before.gone.clone();
    all_gone.extend(&leaving);
    all_gone.sort_unstable();
    let mut ranker = Ranker::new(nodes, &all_gone);
    let mut first_ranker = Ranker::new(nodes, &[]);
    let mut ranks = before.ranks.lock().unwrap_or_else(|p| p.into_inner());
    let mut gained = BTreeSet::new();
    let stays = |n: &u32| *n != NO_MEMBER && all_gone.binary_search(n).is_err();
    for (d, index) in moving {
        let w = workloads[d as usize];
        let replica = replica_hash(deployment_hash(w), index);
        let ranking = ranks.entry((d, index)).or_insert_with(|| {
            let (classes, scratch) = first_ranker.classes(&w.node_selector);
            top_ranked(classes, replica, scratch)
        });
        let top = match ranking.iter().copied().find(stays) {
            Some(next) => next as usize,
            None => {
                let (classes, scratch) = ranker.classes(&w.node_selector);
                top(classes, replica, scratch)?
            }
        };
        gained.insert(top);
        moves.push(((d, index), Slot::new(Ok(top))));
    }
    drop(ranks);
    let moved = Moved::of_moves(moves);
    let mut placement = Placement {
        nodes: nodes.clone(),
        first: first.clone(),
        gone: all_gone,
        moved,
        spilled: false,
        ranks: before.ranks.clone(),
    };
    // Only the members that gained replicas may be over their capacity now (`before` fits):
    // their pods and requests, from what stayed on them and what moved to them.
    let mut load: BTreeMap<usize, (u64, u128, u128)> =
        gained.iter().map(|&n| (n, (0, 0, 0))).collect();
    let mut add = |n: usize, d: u32| {
        if let Some((pods, cpu, memory)) = load.get_mut(&n) {
            let requests = &workloads[d as usize].requests;
            *pods += 1;
            *cpu += u128::from(requests.cpu_millis);
            *memory += u128::from(requests.memory_bytes);
        }
    };
    for &n in &gained {
        for &(d, _) in placement.stayed(n) {
            add(n, d);
        }
    }
    for &((d, _), slot) in placement.moved.iter() {
        add(slot.owner().ok()?, d);
    }
    let fits = load.iter().all(|(&n, &(pods, cpu, memory))| {
        let c = &nodes.candidates[n];
        pods <= u64::from(c.max_pods)
            && cpu <= u128::from(c.allocatable.cpu_millis)
            && memory <= u128::from(c.allocatable.memory_bytes)
    });
    if !fits {
        return None;
    }
    let all: usize = first.deployments.values().map(Replicas::len).sum();
    if placement.moved.len() * 4 > all {
        let slots = (0..first.keys.len()).map(|d| Replicas(placement.slots(d).collect()));
        let slots = first.keys.iter().cloned().zip(slots).collect();
        placement.first = Arc::new(First::new(slots, nodes.len()));
        placement.moved = Moved::default();
    }
    Some(placement)
}

/// Ranks members for replicas: the weight classes of the members each nodeSelector admits,
/// made the first time it is asked for, of the members not gone.
struct Ranker<'a> {
    nodes: &'a Nodes,
    /// Places in `nodes` that take no replica (gone since the first slots), ascending.
    gone: &'a [u32],
    classes: BTreeMap<&'a Labels, Vec<WeightClass>>,
    scratch: Vec<u32>,
}

impl<'a> Ranker<'a> {
    fn new(nodes: &'a Nodes, gone: &'a [u32]) -> Self {
        Ranker {
            nodes,
            gone,
            classes: BTreeMap::new(),
            scratch: Vec::with_capacity(nodes.len()),
        }
    }

    /// The weight classes of the candidates `selector` admits, and a buffer for [`top`].
    fn classes(&mut self, selector: &'a Labels) -> (&[WeightClass], &mut Vec<u32>) {
        let (nodes, gone) = (self.nodes, self.gone);
        let classes = self
            .classes
            .entry(selector)
            .or_insert_with(|| weight_classes(nodes, gone, selector));
        (classes, &mut self.scratch)
    }
}

/// A deployment's `namespace/name`, hashed in parts (no string made per deployment).
fn deployment_hash(w: &Workload) -> u64 {
    let (namespace, name) = (&w.deployment.namespace, &w.deployment.name);
    fnv1a(&[namespace.as_bytes(), b"/", name.as_bytes()])
}

/// Replica `index`'s hash, from its deployment's.
fn replica_hash(deployment: u64, index: u32) -> u32 {
    mix(deployment ^ mix(u64::from(index) + 1)) as u32
}

/// The weight classes of the members of `nodes` that `selector` admits, but those `gone`.
fn weight_classes(nodes: &Nodes, gone: &[u32], selector: &Labels) -> Vec<WeightClass> {
    let mut classes: Vec<WeightClass> = Vec::new();
    let mut gone = gone.iter().peekable();
    for (i, c) in nodes.candidates.iter().enumerate() {
        if gone.next_if(|&&g| g as usize == i).is_some() {
            continue;
        }
        let eligible = selector.iter().all(|(k, v)| c.labels.get(k) == Some(v));
        let weighed = c.weight > 0.0 && c.weight.is_finite();
        if !(eligible && weighed) {
            continue;
        }
        match classes.iter_mut().find(|class| class.weight == c.weight) {
            Some(class) => {
                class.hashes.push(nodes.hashes[i]);
                class.members.push(i);
            }
            None => classes.push(WeightClass {
                weight: c.weight,
                hashes: vec![nodes.hashes[i]],
                members: vec![i],
            }),
        }
    }
    classes
}

fn fits(room: &ResourceAmounts, need: &ResourceAmounts) -> bool {
    room.cpu_millis >= need.cpu_millis && room.memory_bytes >= need.memory_bytes
}

/// The highest-scoring member for a replica hash. Ties go to the earlier name.
fn top(classes: &[WeightClass], replica: u32, scratch: &mut Vec<u32>) -> Option<usize> {
    if let [only] = classes {
        return best_in(only, replica, scratch).map(|(_, i)| i);
    }
    let mut best: Option<(f64, usize)> = None;
    for class in classes {
        if let Some((h, i)) = best_in(class, replica, scratch) {
            let s = score(class.weight, h);
            if best.is_none_or(|(bs, bi)| s > bs || (s == bs && i < bi)) {
                best = Some((s, i));
            }
        }
    }
    best.map(|(_, i)| i)
}

/// The class member with the highest hash for this replica (the earlier one on a tie).
/// This is the hot loop of placement: it hashes into a buffer, then takes the maximum, so
/// that both passes vectorise.
fn best_in(class: &WeightClass, replica: u32, scratch: &mut Vec<u32>) -> Option<(u32, usize)> {
    hash_class(class, replica, scratch);
    let (best, at) = highest(scratch)?;
    Some((best, class.members[at]))
}

/// Every member of the class hashed with the replica, into `scratch`.
fn hash_class(class: &WeightClass, replica: u32, scratch: &mut Vec<u32>) {
    scratch.clear();
    scratch.resize(class.hashes.len(), 0);
    hash_all(scratch, &class.hashes, replica);
}

/// The highest hash and its first place.
fn highest(hashes: &[u32]) -> Option<(u32, usize)> {
    let best = hashes.iter().copied().max()?;
    // Find the first chunk holding the maximum without an early exit per element (so the
    // test vectorises), then the element within it.
    const CHUNK: usize = 16;
    let chunk = hashes
        .chunks(CHUNK)
        .position(|c| c.iter().fold(false, |f, &h| f | (h == best)))?;
    let within = hashes[chunk * CHUNK..].iter().position(|&h| h == best)?;
    Some((best, chunk * CHUNK + within))
}

/// The [`RANKED`] highest-scoring members for a replica hash, best first, as [`top`] ranks
/// them (ties to the earlier name); [`NO_MEMBER`] past the last eligible one. Each class's
/// best are taken one at a time, each taken one's hash then set to 0, until the class has
/// none left; where the highest left after the first is 0, the class's ranking stops there, and the whole ranking ends
/// above the score of a member whose hash is 0 in that class, which may follow unranked (a
/// replica whose ranked members are all gone is ranked on every member again).
fn top_ranked(classes: &[WeightClass], replica: u32, scratch: &mut Vec<u32>) -> [u32; RANKED] {
    let mut best: Vec<(f64, usize)> = Vec::with_capacity(RANKED * classes.len());
    // The score of a member a class may have left unranked: the ranking ends above it.
    let mut unranked = f64::NEG_INFINITY;
    for class in classes {
        hash_class(class, replica, scratch);
        for taken in 0..RANKED.min(class.members.len()) {
            match highest(scratch) {
                Some((h, at)) if h > 0 || taken == 0 => {
                    best.push((score(class.weight, h), class.members[at]));
                    scratch[at] = 0;
                }
                Some(_) => {
                    unranked = unranked.max(score(class.weight, 0));
                    break;
                }
                None => break,
            }
        }
    }
    if classes.len() > 1 {
        best.sort_by(|(a, i), (b, j)| b.total_cmp(a).then(i.cmp(j)));
    }
    best.retain(|(s, _)| *s > unranked);
    let mut ranking = [NO_MEMBER; RANKED];
    for (slot, (_, i)) in ranking.iter_mut().zip(best) {
        *slot = i as u32;
    }
    ranking
}

/// `out[j] = mix32(replica ^ nodes[j])`, on AVX2 where the processor has it.
fn hash_all(out: &mut [u32], nodes: &[u32], replica: u32) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the processor supports AVX2, checked just above.
        unsafe { hash_all_avx2(out, nodes, replica) };
        return;
    }
    hash_all_portable(out, nodes, replica);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn hash_all_avx2(out: &mut [u32], nodes: &[u32], replica: u32) {
    hash_all_portable(out, nodes, replica);
}

#[inline(always)]
fn hash_all_portable(out: &mut [u32], nodes: &[u32], replica: u32) {
    for (o, &node) in out.iter_mut().zip(nodes) {
        *o = mix32(replica ^ node);
    }
}

/// Every eligible member, best first: the order a replica spills in.
fn ranked(classes: &[WeightClass], replica: u32) -> Vec<usize> {
    let mut scored: Vec<(f64, usize)> = classes
        .iter()
        .flat_map(|c| {
            let scores = c
                .hashes
                .iter()
                .map(move |&node| score(c.weight, mix32(replica ^ node)));
            scores.zip(c.members.iter().copied())
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().map(|(_, i)| i).collect()
}

/// Weighted rendezvous score: `w / -ln(u)`, with `u` the hash mapped into (0, 1).
fn score(weight: f64, hash: u32) -> f64 {
    let u = (f64::from(hash) + 0.5) / 4_294_967_296.0;
    weight / -u.ln()
}

/// MurmurHash3's 32-bit finalizer: the per-(replica, member) hash, cheap enough to vectorise.
#[inline(always)]
fn mix32(mut h: u32) -> u32 {
    h = (h ^ (h >> 16)).wrapping_mul(0x85eb_ca6b);
    h = (h ^ (h >> 13)).wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[cfg(test)]
mod tests;
