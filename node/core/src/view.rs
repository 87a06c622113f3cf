//! What a node knows of the cluster at one moment (members, desired state) and the placement
//! it implies. Placement is computed again only when what it reads changes: the workloads
//! (not a new image or new labels) or the candidates (the members that take pods); and the
//! cores of one process share the placements they compute ([`Placements`]).

use crate::hash::mix;
use crate::membership::{MemberId, MemberList};
use crate::memo;
use crate::placement::{
    Candidate, Placement, Workload, Workloads, candidates, left, place, place_after,
    same_candidates,
};
use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use weeble_crdt::Snapshot;

/// What the node knows of the cluster at one moment, and the placement it implies.
#[derive(Debug, Clone)]
pub struct View {
    /// Membership's list, shared.
    pub members: Arc<MemberList>,
    pub snapshot: Arc<Snapshot>,
    pub placement: Arc<Placement>,
}

/// The placements the cores of one process hold, by their inputs (placement is a pure
/// function of the candidates and the workloads). `weeble node` runs one core, for which this
/// is its last few placements; the simulator runs thousands, and the nodes that see the same
/// members and workloads compute that placement once and share it, in time and in memory:
/// every placement some core still holds is found by any other that needs it (while a
/// crash is heard, a thousand nodes pass through many sets of members; keeping only the last
/// few, 1,000 simulated nodes held 400 MB of copies at the peak).
#[derive(Debug, Clone, Default)]
pub struct Placements(Arc<Mutex<Memo>>);

/// One placement and what it was computed from; a planner holds the one of its view.
#[derive(Debug)]
struct Placed {
    /// The membership list its candidates were chosen from ([`candidates`]): the list of the
    /// view that holds it, shared with membership, not a list of its own (while a crash was
    /// heard, each node's own list of its candidates was 8 bytes a pair of nodes).
    members: Arc<MemberList>,
    /// The nodes that took no pods then.
    unschedulable: BTreeSet<String>,
    /// Its candidates' [`identities_hash`], under which the memo keeps it (a copy,
    /// [`Placed::listed`], is never kept there: it holds the hash of the placement it copies).
    hash: u64,
    /// Shared by its copies.
    workloads: Arc<[Workload]>,
    placement: Arc<Placement>,
}

impl Placed {
    /// The members it was computed on.
    fn candidates(&self) -> Vec<&MemberId> {
        candidates(&self.members, &self.unschedulable)
    }

    /// Whether it was chosen from the very list `members` with the same nodes taking no
    /// pods: the same candidates, known without comparing them.
    fn is_listed_in(&self, members: &Arc<MemberList>, unschedulable: &BTreeSet<String>) -> bool {
        Arc::ptr_eq(&self.members, members) && self.unschedulable == *unschedulable
    }

    /// Whether `members` less `unschedulable` are known to make its candidates, without
    /// listing them ([`MemberList::same_up_and_down`]).
    fn same_candidates_known(
        &self,
        members: &MemberList,
        unschedulable: &BTreeSet<String>,
    ) -> bool {
        self.unschedulable == *unschedulable && self.members.same_up_and_down(members)
    }

    /// The same placement, of the same candidates, chosen from `members` (another list:
    /// another node's, or one where only what placement does not read changed), so that it
    /// holds the list of the view that holds it. A copy is this node's own: it is not kept in
    /// the memo by its candidates' hash (one per node under one hash, each looked at by every
    /// keep of that hash), where the placement it copies stays while it is held or among the
    /// last computed; it is kept by its list's address (`Memo::by_list`).
    fn listed(
        self: &Arc<Self>,
        members: &Arc<MemberList>,
        unschedulable: &BTreeSet<String>,
    ) -> Arc<Placed> {
        if self.is_listed_in(members, unschedulable) {
            return self.clone();
        }
        Arc::new(Placed {
            members: members.clone(),
            unschedulable: unschedulable.clone(),
            hash: self.hash,
            workloads: self.workloads.clone(),
            placement: self.placement.clone(),
        })
    }
}

#[derive(Debug, Default)]
struct Memo {
    /// The placements held anywhere, by [`identities_hash`].
    held: memo::Held<Placed>,
    /// The placements held anywhere, copies too, by the address of the member list they
    /// hold ([`list_hash`]): the cores of one process share their lists
    /// (`membership::Lists`), so a view of a list some core has placed already finds that
    /// placement without listing its candidates, hashing them and comparing them with the
    /// ones found (while 100 crashes of 10,000 simulated nodes were heard, those three walks
    /// of 10,000 members were a quarter of the time of each view).
    by_list: memo::Held<Placed>,
    /// The last few computed, held here as well: a view passing back to a set of members
    /// no core holds any more (a suspicion, then its refutation) finds it.
    recent: VecDeque<Arc<Placed>>,
}

/// Placements kept by the memo itself (beyond those the cores hold).
const PLACEMENTS_KEPT: usize = 8;

/// A hash of the candidates' identities, each worked out once by membership
/// ([`MemberId::hash`]): the lists of one cluster's nodes that differ hold different
/// identities. What placement reads of them (and the workloads) is compared where the
/// hashes match.
fn identities_hash(members: &[&MemberId]) -> u64 {
    members.iter().fold(0, |h, m| mix(h ^ m.hash()))
}

/// A hash of the address of a member list: a list's address stays its own while a
/// placement holds it.
fn list_hash(members: &Arc<MemberList>) -> u64 {
    mix(Arc::as_ptr(members) as usize as u64)
}

impl Placements {
    fn memo(&self) -> std::sync::MutexGuard<'_, Memo> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The placement of `workloads` on the candidates of `members`, less those in
    /// `unschedulable` ([`candidates`]): the one some core holds with this very list (found
    /// by its address, without listing the candidates); `last`'s, if it has the same
    /// candidates (known from the lists alone, or compared); or one held or computed
    /// ([`Self::place`]). Kept by the list's address for the cores that view the same list.
    fn placed(
        &self,
        members: &Arc<MemberList>,
        unschedulable: &BTreeSet<String>,
        workloads: &Workloads,
        last: Option<&Arc<Placed>>,
    ) -> Arc<Placed> {
        let same = |p: &Placed| {
            p.is_listed_in(members, unschedulable) && p.workloads.iter().eq(workloads.iter())
        };
        if let Some(found) = self.memo().by_list.find(list_hash(members), same) {
            return found;
        }
        let placed = match last {
            Some(last) if last.same_candidates_known(members, unschedulable) => {
                last.listed(members, unschedulable)
            }
            last => {
                // Chosen once, for the comparison with the last and for placement.
                let chosen = candidates(members, unschedulable);
                match last {
                    Some(last) if same_candidates(&last.candidates(), &chosen) => {
                        last.listed(members, unschedulable)
                    }
                    last => self.place(
                        members,
                        unschedulable,
                        &chosen,
                        workloads,
                        last.map(|l| &**l),
                    ),
                }
            }
        };
        if !placed.workloads.is_empty() {
            self.memo()
                .by_list
                .keep(list_hash(&placed.members), &placed);
        }
        placed
    }

    /// The placement of `workloads` on the candidates `chosen` from `members`, less those in
    /// `unschedulable` ([`candidates`]): one held, or computed and kept; computed from
    /// `last` (the placement of the same workloads on other candidates) if it can be
    /// ([`place_after`]).
    fn place(
        &self,
        members: &Arc<MemberList>,
        unschedulable: &BTreeSet<String>,
        chosen: &[&MemberId],
        workloads: &Workloads,
        last: Option<&Placed>,
    ) -> Arc<Placed> {
        if workloads.iter().next().is_none() {
            // Nothing to place: no placement to keep per set of members (a cluster of 1,000
            // forming with no deployment yet held 17 MB of them, its members' names).
            return Arc::new(Placed {
                members: Arc::default(),
                unschedulable: BTreeSet::new(),
                hash: 0,
                workloads: Arc::new([]),
                placement: Arc::default(),
            });
        }
        let mut memo = self.memo();
        let hash = identities_hash(chosen);
        let same = |p: &Placed| {
            p.workloads.iter().eq(workloads.iter()) && same_candidates(&p.candidates(), chosen)
        };
        if let Some(found) = memo.held.find(hash, same) {
            return found.listed(members, unschedulable);
        }
        let derived = last.and_then(|had| {
            let had_chosen = had.candidates();
            let gone = left(&had_chosen, chosen)?;
            place_after(&had.placement, &gone, workloads.iter())
        });
        let placement = derived.unwrap_or_else(|| {
            let candidates: Vec<Candidate> =
                chosen.iter().map(|m| Candidate::from_member(m)).collect();
            place(&candidates, workloads.iter())
        });
        let placed = Arc::new(Placed {
            members: members.clone(),
            unschedulable: unschedulable.clone(),
            hash,
            workloads: workloads.iter().cloned().collect(),
            placement: Arc::new(placement),
        });
        memo.keep(&placed);
        placed
    }
}

impl Memo {
    /// Keeps `placed` for others to find.
    fn keep(&mut self, placed: &Arc<Placed>) {
        if self.recent.len() == PLACEMENTS_KEPT {
            self.recent.pop_front();
        }
        self.recent.push_back(placed.clone());
        self.held.keep(placed.hash, placed);
    }
}

/// Placement memoized by its inputs.
pub struct Planner {
    workloads: Workloads,
    last: Option<Arc<Placed>>,
    shared: Placements,
}

impl Planner {
    /// A planner that shares its placements through `shared`.
    pub fn new(shared: Placements) -> Self {
        Planner {
            workloads: Workloads::default(),
            last: None,
            shared,
        }
    }

    /// The view of `members` and `snapshot`, the nodes in `unschedulable` taking no pods;
    /// the last placement again if neither the workloads nor the candidates changed.
    pub fn view(
        &mut self,
        members: &Arc<MemberList>,
        unschedulable: &BTreeSet<String>,
        snapshot: &Arc<Snapshot>,
    ) -> View {
        let changed = self.workloads.update(snapshot);
        let last = self.last.as_ref().filter(|_| !changed);
        let placed = match last {
            Some(last) if last.is_listed_in(members, unschedulable) => last.clone(),
            last => self
                .shared
                .placed(members, unschedulable, &self.workloads, last),
        };
        let placement = placed.placement.clone();
        self.last = Some(placed);
        View {
            members: members.clone(),
            snapshot: snapshot.clone(),
            placement,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::Liveness;
    use weeble_crdt::{ActorId, DesiredState, parse_manifests};

    fn member(name: &str, liveness: Liveness) -> (MemberId, Liveness) {
        let mut m = MemberId::seed("127.0.0.1:1".parse().unwrap());
        m.name = name.into();
        m.capacity.cpu_millis = 1000;
        m.max_pods = 110;
        (m, liveness)
    }

    /// A snapshot of one deployment of 6 replicas.
    fn web() -> Arc<Snapshot> {
        let text = "kind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 6\n  template:\n    \
                    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      \
                    - {name: web, image: img}\n";
        let mut state = DesiredState::new(ActorId::from([1; 16]));
        state
            .apply(&parse_manifests(text).unwrap().objects[0])
            .unwrap();
        Arc::new(state.snapshot())
    }

    #[test]
    fn placement_is_computed_again_only_when_what_it_reads_changes() {
        let snapshot = web();
        let none = BTreeSet::new();
        let mut planner = Planner::new(Placements::default());
        let list = |members: [(MemberId, Liveness); 2]| Arc::new(MemberList::from_iter(members));
        let alive = list([member("a", Liveness::Alive), member("b", Liveness::Alive)]);
        let first = planner.view(&alive, &none, &snapshot).placement;
        let suspect = list([member("a", Liveness::Alive), member("b", Liveness::Suspect)]);
        let after_suspicion = planner.view(&suspect, &none, &snapshot).placement;
        assert!(
            Arc::ptr_eq(&first, &after_suspicion),
            "a suspicion moves nothing"
        );
        let down = list([member("a", Liveness::Alive), member("b", Liveness::Down)]);
        let after_death = planner.view(&down, &none, &snapshot).placement;
        assert!(
            !Arc::ptr_eq(&first, &after_death),
            "a death is placed again"
        );
        assert!(after_death.replicas().all(|(_, owner)| owner == Ok("a")));
        let leaving = BTreeSet::from(["a".to_string()]);
        let alone = planner.view(&down, &leaving, &snapshot).placement;
        assert!(
            Arc::ptr_eq(&after_death, &alone),
            "no other candidate: a keeps them"
        );
    }

    #[test]
    fn a_placement_one_planner_holds_is_found_by_every_other() {
        let snapshot = web();
        let none = BTreeSet::new();
        let shared = Placements::default();
        let members = |names: &[String]| -> Arc<MemberList> {
            Arc::new(names.iter().map(|n| member(n, Liveness::Alive)).collect())
        };
        let abc = members(&["a".into(), "b".into(), "c".into()]);
        let mut holder = Planner::new(shared.clone());
        let held = holder.view(&abc, &none, &snapshot).placement;
        // More other placements than the memo keeps by itself.
        let mut busy = Planner::new(shared.clone());
        for i in 0..=PLACEMENTS_KEPT {
            busy.view(&members(&[format!("x{i}")]), &none, &snapshot);
        }
        let mut other = Planner::new(shared.clone());
        let found = other.view(&abc, &none, &snapshot).placement;
        assert!(
            Arc::ptr_eq(&held, &found),
            "held by one, found by the other"
        );
        let equal = members(&["a".into(), "b".into(), "c".into()]);
        let mut another = Planner::new(shared.clone());
        let copied = another.view(&equal, &none, &snapshot);
        assert!(
            Arc::ptr_eq(&held, &copied.placement),
            "found from an equal list of its own"
        );
        let last = another.last.as_ref().expect("a placement");
        assert!(
            Arc::ptr_eq(&last.members, &equal),
            "held with that node's own list"
        );
        let mut third = Planner::new(shared.clone());
        third.view(&equal, &none, &snapshot);
        assert!(
            Arc::ptr_eq(third.last.as_ref().expect("a placement"), last),
            "the copy another holds, found by the list they share"
        );
        drop(third);
        drop(another);
        drop((holder, other));
        let mut late = Planner::new(shared);
        let again = late.view(&abc, &none, &snapshot).placement;
        assert!(
            !Arc::ptr_eq(&held, &again),
            "held by no one: computed again"
        );
        assert_eq!(*held, *again);
    }
}
