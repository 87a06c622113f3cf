//! Which automerge syncs a node runs, with whom, and when a write is held by enough peers.
//! Pure: the node's driver runs each exchange this core starts and reports its end.
//!
//! - A change (a write here, or one received) → a sync with `gossip::push_width` random
//!   peers, who pass it on the same way when it changes their document.
//! - A write to acknowledge → syncs with peers in random order, `count` at once, until
//!   `count` of them completed one (they hold the write on disk) or every one was tried.
//! - A peer whose digest differs → a sync with it (the anti-entropy).
//!
//! One exchange at a time per peer: one asked for while another runs follows it, so an
//! exchange that must begin after a write does. A write counts an exchange already running
//! with a peer if it began after the last change: [`DocSync::changed`] must have been told of
//! the write's document before [`DocSync::replicate`] is (the node's core and driver see to
//! it), so such an exchange carries the write.

use crate::gossip::Fanout;
use crate::membership::{MemberId, Peers};
use std::collections::BTreeMap;

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncEffect {
    /// Run an exchange with `peer`, and report its end to [`DocSync::ended`]. `differs`: the
    /// peer's digest showed another document, so if this node's sync state says there is
    /// nothing to send, that state is stale and must start over.
    Start { peer: MemberId, differs: bool },
    /// The write of [`DocSync::replicate`] call `id` is held by enough peers, or by all that
    /// could be reached: answer it.
    Replicated { id: u64 },
}

/// An exchange asked for while one with the same peer runs.
#[derive(Debug)]
struct Next {
    peer: MemberId,
    /// The replications waiting for it.
    waiters: Vec<u64>,
    differs: bool,
}

/// A write waiting for `count` peers to hold it.
#[derive(Debug)]
struct Replication {
    /// The peers not tried yet, in the order to try them.
    untried: Vec<MemberId>,
    count: usize,
    held: usize,
    running: usize,
}

/// An exchange running with a peer.
#[derive(Debug)]
struct Running {
    /// The replications waiting for its end.
    waiters: Vec<u64>,
    /// The document's generation when it began.
    began: u64,
}

/// One node's document syncs in flight.
pub struct DocSync {
    fanout: Fanout,
    /// How many peers beyond ⌈ln N⌉ a change is pushed to.
    extra: usize,
    /// Grows with every change of the document ([`Self::changed`]).
    generation: u64,
    /// Peers (libp2p ids) an exchange runs with.
    running: BTreeMap<String, Running>,
    again: BTreeMap<String, Next>,
    replications: BTreeMap<u64, Replication>,
}

impl DocSync {
    pub fn new(extra: usize, seed: u64) -> Self {
        DocSync {
            fanout: Fanout::new(seed),
            extra,
            generation: 0,
            running: BTreeMap::new(),
            again: BTreeMap::new(),
            replications: BTreeMap::new(),
        }
    }

    /// The document changed: a sync with a few random `peers`.
    pub fn changed(&mut self, peers: &Peers) -> Vec<SyncEffect> {
        self.generation += 1;
        let picked = self.fanout.push(peers, self.extra);
        picked
            .into_iter()
            .filter_map(|peer| self.exchange(peer, None, false))
            .collect()
    }

    /// `peer`'s digest shows another document: a sync with it.
    pub fn differs(&mut self, peer: &MemberId) -> Vec<SyncEffect> {
        self.exchange(peer.clone(), None, true)
            .into_iter()
            .collect()
    }

    /// A write to acknowledge (call `id`, chosen by the caller, unique among those running):
    /// answered with [`SyncEffect::Replicated`] once `count` of `peers` hold it, or every one
    /// was tried.
    pub fn replicate(&mut self, id: u64, peers: &Peers, count: usize) -> Vec<SyncEffect> {
        let untried = self.fanout.pick(peers, peers.len());
        self.replications.insert(
            id,
            Replication {
                untried,
                count,
                held: 0,
                running: 0,
            },
        );
        self.advance(id)
    }

    /// The exchange with `peer` (libp2p id) ended; `completed`: it got to the end, and the
    /// peer then holds what this node held when it began.
    pub fn ended(&mut self, peer: &str, completed: bool) -> Vec<SyncEffect> {
        let mut effects = Vec::new();
        let waiters = self.running.remove(peer).map(|r| r.waiters);
        for id in waiters.unwrap_or_default() {
            if let Some(r) = self.replications.get_mut(&id) {
                r.running -= 1;
                r.held += usize::from(completed);
            }
            effects.extend(self.advance(id));
        }
        if let Some(next) = self.again.remove(peer) {
            effects.push(self.start(next.peer, next.waiters, next.differs));
        }
        effects
    }

    /// Starts exchanges for replication `id` until enough run or are done; answers it once
    /// enough peers hold the write, or none is left to try.
    fn advance(&mut self, id: u64) -> Vec<SyncEffect> {
        let mut effects = Vec::new();
        while let Some(r) = self.replications.get_mut(&id) {
            if r.held >= r.count || (r.untried.is_empty() && r.running == 0) {
                self.replications.remove(&id);
                effects.push(SyncEffect::Replicated { id });
                break;
            }
            if r.running + r.held >= r.count || r.untried.is_empty() {
                break;
            }
            let peer = r.untried.remove(0);
            r.running += 1;
            effects.extend(self.exchange(peer, Some(id), false));
        }
        effects
    }

    /// An exchange with `peer` that begins now (its effect), or right after the one running
    /// with it (none yet); a replication waits for the one running if that began after the
    /// last change.
    fn exchange(
        &mut self,
        peer: MemberId,
        waiter: Option<u64>,
        differs: bool,
    ) -> Option<SyncEffect> {
        if let Some(running) = self.running.get_mut(&peer.peer_id) {
            if let Some(id) = waiter
                && running.began == self.generation
            {
                running.waiters.push(id);
                return None;
            }
            let next = self
                .again
                .entry(peer.peer_id.clone())
                .or_insert_with(|| Next {
                    peer,
                    waiters: Vec::new(),
                    differs: false,
                });
            next.waiters.extend(waiter);
            next.differs |= differs;
            return None;
        }
        Some(self.start(peer, waiter.into_iter().collect(), differs))
    }

    fn start(&mut self, peer: MemberId, waiters: Vec<u64>, differs: bool) -> SyncEffect {
        let began = self.generation;
        self.running
            .insert(peer.peer_id.clone(), Running { waiters, began });
        SyncEffect::Start { peer, differs }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::push_width;

    fn peer(i: u8) -> MemberId {
        let mut m = MemberId::seed(format!("127.0.0.{i}:7946").parse().unwrap());
        m.name = format!("n{i}");
        m.peer_id = format!("p{i}");
        m
    }

    fn started(effects: &[SyncEffect]) -> Vec<String> {
        effects
            .iter()
            .filter_map(|e| match e {
                SyncEffect::Start { peer, .. } => Some(peer.peer_id.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn one_exchange_per_peer_and_one_asked_meanwhile_follows_it() {
        let mut sync = DocSync::new(3, 1);
        let p1 = peer(1);
        assert_eq!(started(&sync.differs(&p1)), ["p1"]);
        assert!(sync.differs(&p1).is_empty(), "one runs: the next waits");
        assert!(sync.differs(&p1).is_empty(), "and is asked for once");
        let next = sync.ended("p1", true);
        assert_eq!(
            next,
            [SyncEffect::Start {
                peer: p1,
                differs: true
            }]
        );
        assert!(sync.ended("p1", true).is_empty(), "nothing more");
    }

    #[test]
    fn a_change_goes_to_a_few_random_peers() {
        let peers = Peers::of((1..=50).map(peer));
        let mut sync = DocSync::new(3, 1);
        let effects = sync.changed(&peers);
        assert_eq!(effects.len(), push_width(3, 50));
        assert!(
            effects
                .iter()
                .all(|e| matches!(e, SyncEffect::Start { differs: false, .. }))
        );
    }

    #[test]
    fn a_write_is_answered_once_enough_peers_completed_a_sync_trying_others_on_failure() {
        let peers = Peers::of((1..=6).map(peer));
        let mut sync = DocSync::new(3, 7);
        let first = started(&sync.replicate(9, &peers, 2));
        assert_eq!(first.len(), 2, "two at once");
        // One fails: another peer is tried in its place.
        let retry = started(&sync.ended(&first[0], false));
        assert_eq!(retry.len(), 1);
        assert!(!first.contains(&retry[0]));
        assert!(
            sync.ended(&first[1], true).is_empty(),
            "one of two holds it"
        );
        assert_eq!(
            sync.ended(&retry[0], true),
            [SyncEffect::Replicated { id: 9 }]
        );
    }

    #[test]
    fn a_write_no_peer_can_take_is_answered_once_every_one_was_tried() {
        let mut sync = DocSync::new(3, 7);
        assert_eq!(
            sync.replicate(1, &Peers::default(), 4),
            [SyncEffect::Replicated { id: 1 }]
        );
        let effects = sync.replicate(2, &Peers::of([peer(1), peer(2)]), 4);
        assert_eq!(
            started(&effects).len(),
            2,
            "all live peers when fewer than the count"
        );
        assert!(sync.ended("p1", false).is_empty());
        assert_eq!(sync.ended("p2", true), [SyncEffect::Replicated { id: 2 }]);
    }

    #[test]
    fn a_write_waits_for_a_sync_that_begins_after_it() {
        let mut sync = DocSync::new(3, 7);
        let p1 = peer(1);
        assert_eq!(started(&sync.differs(&p1)), ["p1"]);
        // The write's document: pushed to nobody (no peers given), but later than that sync.
        assert!(sync.changed(&Peers::default()).is_empty());
        assert!(sync.replicate(5, &Peers::of([p1.clone()]), 1).is_empty());
        // The sync that ran before the write does not count for it...
        let next = sync.ended("p1", true);
        assert_eq!(started(&next), ["p1"]);
        // ...the one after it does.
        assert_eq!(sync.ended("p1", true), [SyncEffect::Replicated { id: 5 }]);
    }

    #[test]
    fn a_write_counts_a_sync_that_began_after_its_change() {
        let mut sync = DocSync::new(3, 7);
        let p1 = peer(1);
        assert_eq!(started(&sync.changed(&Peers::of([p1.clone()]))), ["p1"]);
        assert!(
            sync.replicate(5, &Peers::of([p1.clone()]), 1).is_empty(),
            "the push already running carries the write: nothing new starts"
        );
        assert_eq!(sync.ended("p1", true), [SyncEffect::Replicated { id: 5 }]);
    }
}
