//! What a node knows of the cluster at one moment (members, desired state) and the placement
//! it implies. Placement is computed again only when what it reads changes: the workloads
//! (not a new image or new labels) or the candidates (the members that take pods).

use crate::membership::{Liveness, MemberId};
use crate::placement::{Candidate, Placement, Workloads, candidates, place};
use std::collections::BTreeSet;
use std::sync::Arc;
use weeble_crdt::Snapshot;

/// What the node knows of the cluster at one moment, and the placement it implies.
#[derive(Debug, Clone)]
pub struct View {
    pub members: Vec<(MemberId, Liveness)>,
    pub snapshot: Arc<Snapshot>,
    pub placement: Arc<Placement>,
}

/// Placement memoized by its inputs.
#[derive(Default)]
pub struct Planner {
    workloads: Workloads,
    last: Option<(Vec<Candidate>, Arc<Placement>)>,
}

impl Planner {
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
            _ => Arc::new(place(&candidates, self.workloads.iter())),
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
        let mut planner = Planner::default();
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
