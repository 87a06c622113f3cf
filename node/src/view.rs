//! What a node knows of the cluster at one moment (`weeble_core::view`: members, desired
//! state, placement), published by the driver; the services' endpoints follow it and the
//! pods' status, as a watch, and the node's events are recorded from both.

use crate::clock;
use crate::services::{self, Endpoints};
use crate::status::StatusTable;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use weeble_core::objects::event::Recorder;
pub use weeble_core::view::View;

/// The endpoints of every service, recomputed whenever the view or the pods' status changes.
pub(crate) fn spawn_endpoints(
    view: watch::Receiver<Arc<View>>,
    table: watch::Receiver<Arc<StatusTable>>,
) -> watch::Receiver<Arc<Endpoints>> {
    combine(view, table, |view, table| {
        Arc::new(services::endpoints(&view.snapshot, table))
    })
}

/// Records the node's events ([`Recorder`]) whenever the view or the pods' status changes,
/// until either sender is gone.
pub(crate) fn spawn_recorder(
    mut view: watch::Receiver<Arc<View>>,
    mut table: watch::Receiver<Arc<StatusTable>>,
    recorder: Arc<Mutex<Recorder>>,
) {
    tokio::spawn(async move {
        loop {
            {
                let (v, t) = (
                    view.borrow_and_update().clone(),
                    table.borrow_and_update().clone(),
                );
                let mut recorder = recorder.lock().expect("the recorder's lock");
                recorder.look(clock::now_ms(), &v.snapshot, &t, &v.members);
            }
            tokio::select! {
                r = view.changed() => if r.is_err() { return },
                r = table.changed() => if r.is_err() { return },
            }
        }
    });
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
