//! What a node knows of the cluster at one moment (`weeble_core::view`: members, desired
//! state, placement), published by the driver; the services' endpoints follow it and the
//! pods' status, as a watch.

use crate::services::{self, Endpoints};
use crate::status::StatusTable;
use std::sync::Arc;
use tokio::sync::watch;
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
