//! What a node knows of the cluster at one moment (members, desired state) and the placement
//! it implies, kept up to date as watches: placement is computed again only when what it
//! reads changes; the services' endpoints follow the view and the pods' status.

use crate::membership::{Liveness, MemberId};
use crate::placement::{Candidate, Placement, Workloads, candidates, place};
use crate::services::{self, Endpoints};
use crate::status::StatusTable;
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::watch;
use weeble_crdt::Snapshot;

/// What the node knows of the cluster at one moment, and the placement it implies.
#[derive(Debug, Clone)]
pub struct View {
    pub members: Vec<(MemberId, Liveness)>,
    pub snapshot: Arc<Snapshot>,
    pub placement: Arc<Placement>,
}

/// The nodes that take no pods (not Ready, or leaving), changing only when that set does
/// (the status table changes all the time; placement need not follow it).
pub(crate) fn spawn_unschedulable(
    mut table: watch::Receiver<Arc<StatusTable>>,
) -> watch::Receiver<BTreeSet<String>> {
    let (tx, rx) = watch::channel(table.borrow_and_update().unschedulable());
    tokio::spawn(async move {
        while table.changed().await.is_ok() {
            let now = table.borrow_and_update().unschedulable();
            tx.send_if_modified(|old| {
                let changed = *old != now;
                if changed {
                    *old = now;
                }
                changed
            });
        }
    });
    rx
}

/// Recomputes placement whenever the desired state, the membership or the set of nodes
/// that take no pods changes, unless what placement reads is unchanged (a new image, new
/// labels): then the last placement is kept.
pub(crate) fn spawn_view(
    store: watch::Receiver<Arc<Snapshot>>,
    members: watch::Receiver<Vec<(MemberId, Liveness)>>,
    unschedulable: watch::Receiver<BTreeSet<String>>,
) -> watch::Receiver<Arc<View>> {
    let cluster = combine(members, unschedulable, |members, unschedulable| {
        (members.clone(), unschedulable.clone())
    });
    let mut workloads = Workloads::default();
    let mut last: Option<(Vec<Candidate>, Arc<Placement>)> = None;
    combine(store, cluster, move |snapshot, (members, unschedulable)| {
        let candidates = candidates(members, unschedulable);
        let changed = workloads.update(snapshot);
        let placement = match &last {
            Some((same, placement)) if !changed && *same == candidates => placement.clone(),
            _ => Arc::new(place(&candidates, workloads.iter())),
        };
        last = Some((candidates, placement.clone()));
        Arc::new(View {
            members: members.clone(),
            snapshot: snapshot.clone(),
            placement,
        })
    })
}

/// The endpoints of every service, recomputed whenever the view or the pods' status changes.
pub(crate) fn spawn_endpoints(
    view: watch::Receiver<Arc<View>>,
    table: watch::Receiver<Arc<StatusTable>>,
) -> watch::Receiver<Arc<Endpoints>> {
    combine(view, table, |view, table| {
        Arc::new(services::endpoints(&view.snapshot, table))
    })
}

/// A watch of `f(a, b)`, computed now and again whenever `a` or `b` changes, until either
/// sender or every receiver of the result is gone.
pub(crate) fn combine<A, B, T>(
    mut a: watch::Receiver<A>,
    mut b: watch::Receiver<B>,
    mut f: impl FnMut(&A, &B) -> T + Send + 'static,
) -> watch::Receiver<T>
where
    A: Send + Sync + 'static,
    B: Send + Sync + 'static,
    T: Send + Sync + 'static,
{
    let first = f(&a.borrow(), &b.borrow());
    let (tx, rx) = watch::channel(first);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = a.changed() => if r.is_err() { return },
                r = b.changed() => if r.is_err() { return },
            }
            let value = f(&a.borrow_and_update(), &b.borrow_and_update());
            if tx.send(value).is_err() {
                return;
            }
        }
    });
    rx
}
