//! Stopping a node inside a process, after mini-redis: the agent holds the [`Stop`], every
//! long-running task of the node a [`Shutdown`], and each task returns once it fires: at
//! [`Stop::stop`], or when the `Stop` is dropped.

use tokio::sync::watch;

/// Tells every task of a node to end.
pub struct Stop(watch::Sender<bool>);

/// Fires when the node stops.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Stop {
    pub fn new() -> (Stop, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (Stop(tx), Shutdown(rx))
    }

    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// Returns once the node stops (at once if it has).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stopped| *stopped).await;
    }
}
