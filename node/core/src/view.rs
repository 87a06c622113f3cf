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
