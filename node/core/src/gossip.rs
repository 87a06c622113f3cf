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
use crate::membership::{MemberId, Peers};
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

    /// Up to `n` of `peers`, distinct, at random, in the order picked.
    pub fn pick(&mut self, peers: &Peers, n: usize) -> Vec<MemberId> {
        let (members, live) = peers.drawn_from();
        let entry = |i| members.get(i).expect("a place in the list");
        let picked = self.pick_where(members.len(), entry, n, |entry| live(entry));
        picked.into_iter().map(|(m, _)| m.clone()).collect()
    }

    /// The peers a change goes to: [`push_width`]`(extra, peers.len())` of `peers`, at
    /// random.
    pub fn push(&mut self, peers: &Peers, extra: usize) -> Vec<MemberId> {
        self.pick(peers, push_width(extra, peers.len()))
    }

    /// Up to `n` of the `len` items of a pool (`item(i)` is the one at place `i`) that
    /// `takes`, distinct, at random, in the order picked: a partial Fisher–Yates shuffle that
    /// keeps only the positions it swapped and passes over the items refused, so that
    /// picking a few of thousands costs a few steps, not thousands.
    fn pick_where<T>(
        &mut self,
        len: usize,
        item: impl Fn(usize) -> T,
        n: usize,
        takes: impl Fn(&T) -> bool,
    ) -> Vec<T> {
        let mut swapped: BTreeMap<usize, usize> = BTreeMap::new();
        let mut picked = Vec::new();
        for i in 0..len {
            if picked.len() >= n {
                break;
            }
            let j = self.rng.random_range(i..len);
            let at_i = swapped.get(&i).copied().unwrap_or(i);
            let at_j = swapped.insert(j, at_i).unwrap_or(j);
            let item = item(at_j);
            if takes(&item) {
                picked.push(item);
            }
        }
        picked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::{Liveness, MemberList};
    use std::collections::BTreeSet;
    use std::sync::Arc;

    /// Up to `n` of `pool` that `takes`, picked by `fanout`.
    fn pick(fanout: &mut Fanout, pool: &[u32], n: usize, takes: impl Fn(&u32) -> bool) -> Vec<u32> {
        fanout.pick_where(pool.len(), |i| pool[i], n, takes)
    }

    #[test]
    fn a_pick_is_distinct_bounded_seeded_and_covers_every_peer_over_time() {
        let peers: Vec<u32> = (0..50).collect();
        let all = |_: &u32| true;
        let mut fanout = Fanout::new(7);
        let mut seen = BTreeSet::new();
        for _ in 0..100 {
            let picked = pick(&mut fanout, &peers, 3, all);
            assert_eq!(picked.len(), 3);
            assert_eq!(picked.iter().collect::<BTreeSet<_>>().len(), 3, "distinct");
            seen.extend(picked);
        }
        assert_eq!(seen.len(), 50, "every peer gets picked sooner or later");
        assert_eq!(
            pick(&mut Fanout::new(1), &[1, 2], 5, all).len(),
            2,
            "no more than there are"
        );
        assert!(pick(&mut Fanout::new(1), &[], 3, all).is_empty());
        let again = |seed| {
            (0..5)
                .map(|_| pick(&mut Fanout::new(seed), &peers, 3, all))
                .collect::<Vec<_>>()
        };
        assert_eq!(again(3), again(3), "the same seed picks the same peers");
    }

    #[test]
    fn a_pick_takes_only_what_it_may_and_every_one_of_those_over_time() {
        let pool: Vec<u32> = (0..50).collect();
        let even = |n: &u32| n.is_multiple_of(2);
        let mut fanout = Fanout::new(5);
        let mut seen = BTreeSet::new();
        for _ in 0..100 {
            let picked = pick(&mut fanout, &pool, 3, even);
            assert_eq!(picked.len(), 3, "{picked:?}");
            assert!(picked.iter().all(even), "{picked:?}");
            seen.extend(picked);
        }
        assert_eq!(seen.len(), 25, "every even one gets picked sooner or later");
        let all_even = pick(&mut fanout, &pool, 50, even);
        assert_eq!(all_even.iter().collect::<BTreeSet<_>>().len(), 25);
    }

    #[test]
    fn the_peers_picked_are_live_and_not_this_node() {
        let named = |name: &str| {
            let mut m = MemberId::seed("127.0.0.1:1".parse().unwrap());
            m.name = name.into();
            m.peer_id = format!("p-{name}");
            m
        };
        let list = Arc::new(MemberList::from_iter([
            (named("a"), Liveness::Alive),
            (named("b"), Liveness::Down),
            (named("c"), Liveness::Suspect),
            (named("me"), Liveness::Alive),
            (
                MemberId::seed("127.0.0.1:2".parse().unwrap()),
                Liveness::Alive,
            ),
        ]));
        let peers = Peers::new(list, "me");
        assert_eq!(peers.len(), 2);
        let names = |picked: Vec<MemberId>| -> BTreeSet<String> {
            picked.into_iter().map(|m| m.name.clone()).collect()
        };
        let mut fanout = Fanout::new(3);
        for _ in 0..20 {
            assert_eq!(
                names(fanout.pick(&peers, 5)),
                BTreeSet::from(["a".into(), "c".into()])
            );
        }
        assert_eq!(peers.find("p-c").map(|m| m.name.as_str()), Some("c"));
        assert!(peers.find("p-b").is_none(), "down");
        assert!(peers.find("p-me").is_none(), "this node");
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
