//! Spreading what a node holds at a cost per node that does not grow with the cluster.
//!
//! - Every membership datagram carries the sender's [`Digest`]: one fingerprint of its status
//!   table, one of the document's heads and one of its live members, 24 bytes. SWIM already
//!   sends one to a random member every probe period, so two nodes that hold the same thing
//!   learn it for free, and two that differ find out within a few periods. Only then do they
//!   exchange anything more (status versions, an automerge sync, or a member pull,
//!   `membership::pull`); [`Digest::differs`] says what, and
//!   [`starts_exchange`] which of the two begins it, so a pair exchanges once, not twice.
//! - A change is pushed to a few random peers ([`Fanout`], [`push_width`]), and each peer
//!   that learns something new from a push passes it on: a rumour reaches every node in
//!   about log(N) hops, and costs each node ⌈ln N⌉ + c messages (memberlist retransmits each
//!   broadcast about as often). Status news waits a moment first, to leave with whatever
//!   else is news then, and is passed on to fewer peers (`status::gossip`'s `RELAY_WIDTH`):
//!   every node's report changes at once when a deployment starts, and what the narrower
//!   rumour misses, one exchange brings.

use crate::hash::fnv1a;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a node holds, in 24 bytes: equal digests mean equal status tables, documents and
/// live members.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// [`crate::status::StatusTable::fingerprint`].
    pub status: u64,
    /// [`doc_fingerprint`] of the document's heads.
    pub doc: u64,
    /// [`crate::membership::Membership::fingerprint`].
    pub members: u64,
}

/// What differs between our digest and a peer's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Differs {
    pub status: bool,
    pub doc: bool,
    pub members: bool,
}

impl Differs {
    pub fn any(&self) -> bool {
        self.status || self.doc || self.members
    }
}

impl Digest {
    pub fn differs(&self, theirs: &Digest) -> Differs {
        Differs {
            status: self.status != theirs.status,
            doc: self.doc != theirs.doc,
            members: self.members != theirs.members,
        }
    }
}

/// The fingerprint of a document's heads (hex change hashes of one length, sorted, as
/// [`weeble_crdt::Snapshot::heads`] holds them): equal heads, equal documents.
pub fn doc_fingerprint(heads: &[String]) -> u64 {
    let parts: Vec<&[u8]> = heads.iter().map(|h| h.as_bytes()).collect();
    fnv1a(&parts)
}

/// Whether this node (libp2p id `me`) begins the exchange with `peer` when their digests
/// differ. Both hear each other's digests (a probe and its answer); the smaller id begins,
/// so a differing pair exchanges once.
pub fn starts_exchange(me: &str, peer: &str) -> bool {
    me < peer
}

/// How many random peers a node pushes a change to, in a cluster of `peers` other live
/// nodes: ⌈ln N⌉ + `extra`. If every node pushes to that many, a given node is missed by
/// all of them with odds of about e^-(ln N + extra) = e^-extra / N, so the whole cluster
/// misses about e^-extra nodes per change whatever its size (5 % for 3): those learn it from
/// the digests within a second or so.
pub fn push_width(extra: usize, peers: usize) -> usize {
    let log = ((peers + 1) as f64).ln().ceil() as usize;
    (log + extra).min(peers)
}

/// Picks the peers a change goes to first: seeded, so a simulated run repeats.
pub struct Fanout {
    rng: StdRng,
}

impl Fanout {
    pub fn new(seed: u64) -> Self {
        Fanout {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Up to `n` of `peers`, distinct, at random, in the order picked: a partial
    /// Fisher–Yates shuffle that keeps only the positions it swapped, so that picking a few
    /// of thousands of peers costs a few steps, not thousands.
    pub fn pick<T: Clone>(&mut self, peers: &[T], n: usize) -> Vec<T> {
        let mut swapped: BTreeMap<usize, usize> = BTreeMap::new();
        (0..n.min(peers.len()))
            .map(|i| {
                let j = self.rng.random_range(i..peers.len());
                let at_i = swapped.get(&i).copied().unwrap_or(i);
                let at_j = swapped.insert(j, at_i).unwrap_or(j);
                peers[at_j].clone()
            })
            .collect()
    }

    /// The peers a change goes to: [`push_width`]`(extra, peers.len())` of `peers`, at
    /// random.
    pub fn push<T: Clone>(&mut self, peers: &[T], extra: usize) -> Vec<T> {
        self.pick(peers, push_width(extra, peers.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn a_pick_is_distinct_bounded_seeded_and_covers_every_peer_over_time() {
        let peers: Vec<u32> = (0..50).collect();
        let mut fanout = Fanout::new(7);
        let mut seen = BTreeSet::new();
        for _ in 0..100 {
            let picked = fanout.pick(&peers, 3);
            assert_eq!(picked.len(), 3);
            assert_eq!(picked.iter().collect::<BTreeSet<_>>().len(), 3, "distinct");
            seen.extend(picked);
        }
        assert_eq!(seen.len(), 50, "every peer gets picked sooner or later");
        assert_eq!(
            Fanout::new(1).pick(&[1, 2], 5).len(),
            2,
            "no more than there are"
        );
        assert!(Fanout::new(1).pick::<u32>(&[], 3).is_empty());
        let again = |seed| {
            (0..5)
                .map(|_| Fanout::new(seed).pick(&peers, 3))
                .collect::<Vec<_>>()
        };
        assert_eq!(again(3), again(3), "the same seed picks the same peers");
    }

    #[test]
    fn the_doc_fingerprint_tells_documents_apart() {
        let heads = |hs: &[&str]| hs.iter().map(|h| h.to_string()).collect::<Vec<_>>();
        assert_eq!(
            doc_fingerprint(&heads(&["aa", "bb"])),
            doc_fingerprint(&heads(&["aa", "bb"]))
        );
        assert_ne!(
            doc_fingerprint(&heads(&["aa"])),
            doc_fingerprint(&heads(&["aa", "bb"]))
        );
        assert_ne!(
            doc_fingerprint(&heads(&["aa"])),
            doc_fingerprint(&heads(&["ab"]))
        );
        let a = Digest {
            status: 1,
            doc: 2,
            members: 3,
        };
        assert_eq!(a.differs(&a), Differs::default());
        assert!(!a.differs(&a).any());
        let other = Digest { doc: 3, ..a };
        let differs = a.differs(&other);
        assert_eq!(
            differs,
            Differs {
                status: false,
                doc: true,
                members: false,
            }
        );
        assert!(differs.any());
        assert!(a.differs(&Digest { members: 4, ..a }).members);
    }

    #[test]
    fn the_push_width_grows_with_the_log_of_the_cluster_and_never_past_it() {
        assert_eq!(push_width(3, 2), 2, "a 3-node cluster: both peers");
        assert_eq!(push_width(3, 9), 6);
        assert_eq!(push_width(3, 49), 7);
        assert_eq!(push_width(3, 999), 10);
        assert_eq!(push_width(3, 0), 0);
    }

    #[test]
    fn exactly_one_of_a_pair_begins_an_exchange() {
        assert!(starts_exchange("12D3a", "12D3b"));
        assert!(!starts_exchange("12D3b", "12D3a"));
        assert!(!starts_exchange("12D3a", "12D3a"));
    }
}
