//! What a node knows of the cluster at one moment (members, desired state) and the placement
//! it implies. Placement is computed again only when what it reads changes: the workloads
//! (not a new image or new labels) or the candidates (the members that take pods); and the
//! cores of one process share the placements they compute ([`Placements`]).

use crate::membership::{Liveness, MemberId};
use crate::placement::{Candidate, Placement, Workload, Workloads, candidates, place, place_after};
use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use weeble_crdt::Snapshot;

/// What the node knows of the cluster at one moment, and the placement it implies.
#[derive(Debug, Clone)]
pub struct View {
    pub members: Vec<(MemberId, Liveness)>,
    pub snapshot: Arc<Snapshot>,
    pub placement: Arc<Placement>,
}

/// Placements computed lately by the cores of one process, by their inputs (placement is a
/// pure function of the candidates and the workloads). `weeble node` runs one core, for which
/// this is its last few placements; the simulator runs thousands, and the nodes that see the
/// same members and workloads, as nearly all do most of the time, compute that placement
/// once and share it, in time and in memory.
#[derive(Debug, Clone, Default)]
pub struct Placements(Arc<Mutex<VecDeque<Placed>>>);

/// One placement and what it was computed from.
#[derive(Debug)]
struct Placed {
    candidates: Vec<Candidate>,
    workloads: Vec<Workload>,
    placement: Arc<Placement>,
}

/// Placements kept: a few views at once (a death not yet heard of everywhere, a write not yet
/// everywhere) each find theirs.
const PLACEMENTS_KEPT: usize = 8;

impl Placements {
    /// The placement of `workloads` on `candidates`: one kept, or computed and kept; computed
    /// from `last`, the placement of the same workloads on other candidates, if it can be
    /// ([`place_after`]).
    fn place(
        &self,
        candidates: &[Candidate],
        workloads: &Workloads,
        last: Option<&(Vec<Candidate>, Arc<Placement>)>,
    ) -> Arc<Placement> {
        let mut kept = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let same =
            |p: &Placed| p.candidates == candidates && p.workloads.iter().eq(workloads.iter());
        if let Some(found) = kept.iter().find(|p| same(p)) {
            return found.placement.clone();
        }
        let derived =
            last.and_then(|(had, before)| place_after(had, before, candidates, workloads.iter()));
        let placement = Arc::new(derived.unwrap_or_else(|| place(candidates, workloads.iter())));
        if kept.len() == PLACEMENTS_KEPT {
            kept.pop_front();
        }
        kept.push_back(Placed {
            candidates: candidates.to_vec(),
            workloads: workloads.iter().cloned().collect(),
            placement: placement.clone(),
        });
        placement
    }
}

/// Placement memoized by its inputs.
pub struct Planner {
    workloads: Workloads,
    last: Option<(Vec<Candidate>, Arc<Placement>)>,
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
        members: &[(MemberId, Liveness)],
        unschedulable: &BTreeSet<String>,
        snapshot: &Arc<Snapshot>,
    ) -> View {
        let candidates = candidates(members, unschedulable);
        let changed = self.workloads.update(snapshot);
        let placement = match &self.last {
            Some((same, placement)) if !changed && *same == candidates => placement.clone(),
            last => {
                let last = last.as_ref().filter(|_| !changed);
                self.shared.place(&candidates, &self.workloads, last)
            }
        };
        self.last = Some((candidates, placement.clone()));
        View {
            members: members.to_vec(),
            snapshot: snapshot.clone(),
            placement,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weeble_crdt::{ActorId, DesiredState, parse_manifests};

    fn member(name: &str, liveness: Liveness) -> (MemberId, Liveness) {
        let mut m = MemberId::seed("127.0.0.1:1".parse().unwrap());
        m.name = name.into();
        m.capacity.cpu_millis = 1000;
        m.max_pods = 110;
        (m, liveness)
    }

    #[test]
    fn placement_is_computed_again_only_when_what_it_reads_changes() {
        let text = "kind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 6\n  template:\n    \
                    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      \
                    - {name: web, image: img}\n";
        let mut state = DesiredState::new(ActorId::from([1; 16]));
        state
            .apply(&parse_manifests(text).unwrap().objects[0])
            .unwrap();
        let snapshot = Arc::new(state.snapshot());
        let none = BTreeSet::new();
        let mut planner = Planner::new(Placements::default());
        let alive = [member("a", Liveness::Alive), member("b", Liveness::Alive)];
        let first = planner.view(&alive, &none, &snapshot).placement;
        let suspect = [member("a", Liveness::Alive), member("b", Liveness::Suspect)];
        let after_suspicion = planner.view(&suspect, &none, &snapshot).placement;
        assert!(
            Arc::ptr_eq(&first, &after_suspicion),
            "a suspicion moves nothing"
        );
        let down = [member("a", Liveness::Alive), member("b", Liveness::Down)];
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
}
