//! Pulling members (memberlist's push-pull): what SWIM's rumours missed, mended by comparing
//! member lists with a peer.
//!
//! A rumour is passed on a bounded number of times, so a node can miss one (the odds grow
//! with the cluster: a forming cluster of N has N² arrivals to hear). Every membership
//! datagram carries the sender's digest, which holds its [`Buckets::fingerprint`] of the live
//! members; two nodes whose fingerprints differ know different members, and the one that
//! begins (`gossip::starts_exchange`) pulls:
//!
//! 1. [`Message::Summary`], a request: the asker's sums of the identity hashes of its live
//!    members, in each of [`BUCKETS`] buckets (a member's bucket is a hash of its address, so
//!    that every identity that has held an address, a restarted node's old and new, is in
//!    one bucket);
//! 2. [`Message::Entries`], its answer: an [`Entry`] for every member the peer holds, in any
//!    state, in the buckets that differ (whole buckets, up to [`MAX_ENTRIES`]), and which
//!    buckets those are;
//! 3. [`Message::Exchange`], a request: the asker's members the peer lacks or holds at
//!    another incarnation or state ([`compare`]), and the hashes of those it wants;
//! 4. [`Message::Members`], its answer: the members wanted.
//!
//! Only the buckets that differ travel, and of them only the members that differ: one arrival
//! missed at 10,000 nodes costs about 150 entries of 11 bytes and one member each way. While the
//! cluster forms, most buckets differ and most of their members are known to both sides: at 2,000
//! simulated nodes, pulls that carried whole buckets of members carried 4.6 members for each one a
//! node learned, and at 10,000 encoding, decoding and applying them was nearly a third of the
//! forming's time. Both sides apply what they get as SWIM would apply a rumour (the newer
//! incarnation wins, down beats alive at the same one), without passing it on: every node that
//! still differs pulls for itself. Pulls are paced as status exchanges are ([`Pacing`]): one at a
//! time, none while rumours still bring news, and after one that brought nothing, none for a while.
//!
//! On the wire each message is a kind byte and the encodings of its parts: members are
//! encoded one by one as SWIM encodes its updates, so that they are decoded through the same
//! [`super::Updates`].

use super::{MemberId, MemberInfo};
use crate::hash::{fnv1a, mix};
use crate::wire::BINCODE;
use std::collections::HashMap;
use std::time::Duration;

/// Buckets the members are summed into: 64 fingerprints, 576 bytes at most, per summary.
pub const BUCKETS: usize = 64;

/// Entries one answer carries at most, in whole buckets (but for a first bucket larger than
/// this, cut short): the other buckets that differ go in the next pull, which follows soon
/// when this one brought news. About 180 KB.
pub const MAX_ENTRIES: usize = 16_384;

/// Members one message carries at most: those past it go in the next pull.
pub const MAX_MEMBERS: usize = 4096;

/// How long after news from a rumour no pull begins: the rumour is still spreading, and what
/// a pull would carry, the next rumours bring anyway.
pub const PULL_QUIET: Duration = Duration::from_millis(500);

/// How long after a pull that brought nothing the next may begin.
pub const PULL_GAP: Duration = Duration::from_secs(1);

/// How long after a pull that brought news the next may begin: long enough for the peer to
/// have applied the members sent back, which the digest of the answer does not show yet.
pub const PULL_AGAIN: Duration = Duration::from_millis(100);

/// How long a pull may wait for its answer before another may begin (the answer was lost, or
/// the peer is gone).
pub const PULL_TIMEOUT: Duration = Duration::from_secs(5);

/// The hash of a member's identity: its name, peer id, address and bump (not its state, so
/// that a suspicion or a refutation changes no fingerprint). [`MemberId::hash`] keeps it.
pub fn identity_hash(id: &MemberInfo) -> u64 {
    let names = fnv1a(&[id.name.as_bytes(), b"\0", id.peer_id.as_bytes()]);
    mix(names ^ addr_hash(id.p2p, id.bump))
}

/// A member's bucket: a hash of its address.
pub fn bucket(id: &MemberInfo) -> usize {
    (addr_hash(id.p2p, 0) >> 58) as usize
}

/// Which of the buckets `buckets` names (each below [`BUCKETS`], as [`decode`] checks).
pub fn mask(buckets: &[u8]) -> [bool; BUCKETS] {
    let mut of = [false; BUCKETS];
    for &b in buckets {
        of[usize::from(b) % BUCKETS] = true;
    }
    of
}

/// A hash of an address and `salt`.
fn addr_hash(addr: std::net::SocketAddr, salt: u64) -> u64 {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(a) => u64::from(a.to_bits()),
        std::net::IpAddr::V6(a) => {
            let bits = a.to_bits();
            bits as u64 ^ (bits >> 64) as u64
        }
    };
    mix(ip ^ mix(u64::from(addr.port()) ^ mix(salt)))
}

/// The live members' identities, summed by bucket: equal sums, equal members (as far as a
/// 64-bit hash tells).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buckets(pub Vec<u64>);

impl Buckets {
    /// The sums of these members' identity hashes, by bucket.
    pub fn of<'a>(members: impl Iterator<Item = &'a MemberId>) -> Self {
        let mut sums = vec![0u64; BUCKETS];
        for m in members {
            let b = bucket(m);
            sums[b] = sums[b].wrapping_add(m.hash());
        }
        Buckets(sums)
    }

    /// One fingerprint of every bucket: what the digest carries.
    pub fn fingerprint(&self) -> u64 {
        self.0.iter().fold(0, |a, b| a.wrapping_add(*b))
    }

    /// The buckets whose sums differ from `theirs`, from `from` on, round (a peer that
    /// answers many pulls begins each after the last buckets it sent, so that no bucket
    /// waits behind others that never agree).
    pub fn differing(&self, theirs: &Buckets, from: usize) -> Vec<u8> {
        (0..BUCKETS)
            .map(|i| (from + i) % BUCKETS)
            .filter(|&b| self.0[b] != theirs.0[b])
            .map(|b| b as u8)
            .collect()
    }
}

/// One member as an answer to a summary names it: its identity's hash, and where it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// [`MemberId::hash`].
    pub hash: u64,
    pub incarnation: foca::Incarnation,
    /// 0 alive, 1 suspect, 2 down.
    pub state: u8,
}

impl Entry {
    pub fn of(member: &foca::Member<MemberId>) -> Self {
        Entry {
            hash: member.id().hash(),
            incarnation: member.incarnation(),
            state: match member.state() {
                foca::State::Alive => 0,
                foca::State::Suspect => 1,
                foca::State::Down => 2,
            },
        }
    }
}

/// What an asker makes of the `entries` a peer answered with, against its own members in
/// the same buckets (`ours`, each with its entry): the hashes of the members it wants (those
/// it lacks, or holds at another incarnation or state), and its own members the peer lacks or
/// holds otherwise. Where both hold a member differently, each sends its own and the
/// receiving side keeps the newer, as SWIM would. Both come in the order given: nothing here
/// depends on a hash map's order.
pub fn compare<M>(ours: Vec<(Entry, M)>, entries: &[Entry]) -> (Vec<u64>, Vec<M>) {
    let mut by_hash: HashMap<u64, usize> = HashMap::with_capacity(ours.len());
    for (i, (entry, _)) in ours.iter().enumerate() {
        by_hash.insert(entry.hash, i);
    }
    let mut send = vec![true; ours.len()];
    let mut want = Vec::new();
    for theirs in entries {
        match by_hash.get(&theirs.hash) {
            Some(&i) if ours[i].0 == *theirs => send[i] = false,
            Some(_) => want.push(theirs.hash),
            None => want.push(theirs.hash),
        }
    }
    let sent = ours.into_iter().zip(send).filter(|(_, send)| *send);
    (want, sent.map(|((_, member), _)| member).collect())
}

/// A pull message, decoded. The members `Exchange` and `Members` carry are decoded by the
/// caller, from where [`decode`] says they begin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// The asker's identity, and its buckets.
    Summary { asker: MemberId, buckets: Buckets },
    /// The answerer's libp2p id, the buckets whose members it names, and their entries.
    Entries {
        from: String,
        buckets: Vec<u8>,
        entries: Vec<Entry>,
    },
    /// The asker's identity and the hashes of the members it wants; its members that the
    /// answerer lacks or holds otherwise follow.
    Exchange { asker: MemberId, want: Vec<u64> },
    /// The answerer's libp2p id; the members the asker wanted follow.
    Members { from: String },
}

const SUMMARY: u8 = 0;
const ENTRIES: u8 = 1;
const EXCHANGE: u8 = 2;
const MEMBERS: u8 = 3;

/// A pull message that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("member pull: {0}")]
pub struct PullError(String);

/// The encoding of a message of `kind` with `parts`.
fn encode(kind: u8, parts: impl serde::Serialize) -> Vec<u8> {
    let mut out = vec![kind];
    bincode::serde::encode_into_std_write(parts, &mut out, BINCODE)
        .expect("a vector takes every write");
    out
}

/// The encoding of a summary.
pub fn summary(asker: &MemberId, buckets: &Buckets) -> Vec<u8> {
    encode(SUMMARY, (asker, &buckets.0))
}

/// The encoding of an answer to a summary from `from`.
pub fn entries(from: &str, buckets: &[u8], entries: &[Entry]) -> Vec<u8> {
    encode(ENTRIES, (from, buckets, entries))
}

/// The beginning of an exchange (the encoded members are appended to it).
pub fn exchange(asker: &MemberId, want: &[u64]) -> Vec<u8> {
    encode(EXCHANGE, (asker, want))
}

/// The beginning of the answer to an exchange (the encoded members are appended to it).
pub fn members(from: &str) -> Vec<u8> {
    encode(MEMBERS, from)
}

/// The peer id a pull message says it comes from (the asker's, or the answerer's it names),
/// read in place.
pub fn sender(data: &[u8]) -> Option<&str> {
    let (&kind, rest) = data.split_first()?;
    match kind {
        SUMMARY | EXCHANGE => {
            let ((_name, peer_id), _): ((&str, &str), usize) =
                bincode::serde::borrow_decode_from_slice(rest, BINCODE).ok()?;
            Some(peer_id)
        }
        ENTRIES | MEMBERS => {
            let (from, _): (&str, usize) =
                bincode::serde::borrow_decode_from_slice(rest, BINCODE).ok()?;
            Some(from)
        }
        _ => None,
    }
}

/// The message `data` holds, and where its members begin.
pub fn decode(data: &[u8]) -> Result<(Message, usize), PullError> {
    let bad = |e: bincode::error::DecodeError| PullError(e.to_string());
    let too_many = |what: &str, n: usize| PullError(format!("{n} {what}, more than {MAX_ENTRIES}"));
    let (&kind, rest) = data
        .split_first()
        .ok_or_else(|| PullError("empty message".into()))?;
    let (message, used) = match kind {
        SUMMARY => {
            let ((asker, sums), used): ((MemberId, Vec<u64>), usize) =
                bincode::serde::decode_from_slice(rest, BINCODE).map_err(bad)?;
            if sums.len() != BUCKETS {
                return Err(PullError(format!(
                    "a summary of {} buckets, not {BUCKETS}",
                    sums.len()
                )));
            }
            let buckets = Buckets(sums);
            (Message::Summary { asker, buckets }, used)
        }
        ENTRIES => {
            let ((from, buckets, entries), used): ((String, Vec<u8>, Vec<Entry>), usize) =
                bincode::serde::decode_from_slice(rest, BINCODE).map_err(bad)?;
            if let Some(b) = buckets.iter().find(|b| usize::from(**b) >= BUCKETS) {
                return Err(PullError(format!("bucket {b} of {BUCKETS}")));
            }
            if entries.len() > MAX_ENTRIES {
                return Err(too_many("entries", entries.len()));
            }
            let message = Message::Entries {
                from,
                buckets,
                entries,
            };
            (message, used)
        }
        EXCHANGE => {
            let ((asker, want), used): ((MemberId, Vec<u64>), usize) =
                bincode::serde::decode_from_slice(rest, BINCODE).map_err(bad)?;
            if want.len() > MAX_ENTRIES {
                return Err(too_many("members wanted", want.len()));
            }
            (Message::Exchange { asker, want }, used)
        }
        MEMBERS => {
            let (from, used): (String, usize) =
                bincode::serde::decode_from_slice(rest, BINCODE).map_err(bad)?;
            (Message::Members { from }, used)
        }
        other => return Err(PullError(format!("unknown kind {other}"))),
    };
    Ok((message, 1 + used))
}

/// When this node may pull, and from whom it waits for an answer.
#[derive(Debug, Default)]
pub struct Pacing {
    /// The peer asked last, until its answer comes.
    asked: Option<MemberId>,
    /// No pull begins before this time.
    next: Duration,
}

impl Pacing {
    /// Whether a pull from `peer` may begin at `now`; if so, it has.
    pub fn begin(&mut self, peer: &MemberId, now: Duration) -> bool {
        // A wait never lasts longer than the longest from now: a clock stepped back would
        // otherwise hold every pull off by as much as the step.
        self.next = self.next.min(now + PULL_TIMEOUT);
        if now < self.next {
            return false;
        }
        self.asked = Some(peer.clone());
        self.next = now + PULL_TIMEOUT;
        true
    }

    /// The pull from `from` (libp2p id) ended at `now` (`news`: it changed this node's
    /// members); false if no pull from it was out (a late answer, after its timeout, leaves
    /// the pull out as it is).
    pub fn answered(&mut self, from: &str, news: bool, now: Duration) -> bool {
        if self.awaits(from).is_none() {
            return false;
        }
        self.next = match news {
            true => now + PULL_AGAIN,
            false => now + PULL_GAP,
        };
        self.asked = None;
        true
    }

    /// Whether the pull out is one from `from` (libp2p id): the peer, to go on with it.
    pub fn awaits(&self, from: &str) -> Option<&MemberId> {
        self.asked.as_ref().filter(|m| m.peer_id == from)
    }

    /// A rumour brought news at `now`.
    pub fn news(&mut self, now: Duration) {
        self.next = self.next.max(now + PULL_QUIET);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_sum_to_the_fingerprint_and_name_what_differs() {
        let members: Vec<MemberId> = (0..100).map(MemberId::test).collect();
        let all = Buckets::of(members.iter());
        let missing_one = Buckets::of(members[1..].iter());
        assert_eq!(
            all.fingerprint(),
            members.iter().fold(0u64, |a, m| a.wrapping_add(m.hash()))
        );
        assert_ne!(all.fingerprint(), missing_one.fingerprint());
        let first = bucket(&members[0]);
        assert_eq!(all.differing(&missing_one, 0), vec![first as u8]);
        assert_eq!(all.differing(&missing_one, first + 1), vec![first as u8]);
        assert!(all.differing(&all, 0).is_empty());
        let mut bumped = members[0].clone();
        bumped.bump += 1;
        assert_ne!(
            bumped.hash(),
            members[0].hash(),
            "a new life is a new identity"
        );
        assert_eq!(bucket(&bumped), first, "in the same bucket as the old one");
        let two = Buckets::of([&members[0], &members[1]].into_iter());
        let other = Buckets::of([&members[1], &members[0]].into_iter());
        assert_eq!(two, other, "in any order");
    }

    #[test]
    fn messages_read_back_and_bad_ones_are_refused() {
        let asker = MemberId::test(3);
        let buckets = Buckets::of([MemberId::test(1), MemberId::test(2)].iter());
        let data = summary(&asker, &buckets);
        let (message, at) = decode(&data).unwrap();
        let summary_of = |asker: &MemberId| Message::Summary {
            asker: asker.clone(),
            buckets: buckets.clone(),
        };
        assert_eq!(message, summary_of(&asker));
        assert_eq!(at, data.len());
        let entry = Entry {
            hash: 7,
            incarnation: 2,
            state: 1,
        };
        let data = entries("p1", &[1, 63], &[entry]);
        let from = "p1".to_string();
        let (message, at) = decode(&data).unwrap();
        let (buckets_sent, entries_sent) = (vec![1, 63], vec![entry]);
        assert_eq!(
            message,
            Message::Entries {
                from: from.clone(),
                buckets: buckets_sent,
                entries: entries_sent,
            }
        );
        assert_eq!(at, data.len());
        let mut data = exchange(&asker, &[7, 9]);
        data.push(0xAA);
        let (message, at) = decode(&data).unwrap();
        let want = vec![7, 9];
        assert_eq!(message, Message::Exchange { asker, want });
        assert_eq!(data[at], 0xAA, "the members begin after the hashes wanted");
        let data = members("p1");
        assert_eq!(
            decode(&data).unwrap(),
            (Message::Members { from }, data.len())
        );
        let too_many = vec![entry; MAX_ENTRIES + 1];
        for bad in [
            vec![],
            vec![9],
            entries("p1", &[64], &[]),
            entries("p1", &[0], &too_many),
            vec![SUMMARY, 1, 2],
        ] {
            assert!(decode(&bad).is_err(), "{bad:?}");
        }
        let short = summary(&MemberId::test(1), &Buckets(vec![0; 3]));
        let err = decode(&short).unwrap_err().to_string();
        assert!(err.contains("3 buckets"), "{err}");
    }

    #[test]
    fn entries_compared_name_what_each_side_lacks_or_holds_otherwise() {
        let entry = |hash, incarnation, state| Entry {
            hash,
            incarnation,
            state,
        };
        let ours = vec![
            (entry(1, 0, 0), "same"),
            (entry(2, 1, 0), "newer here"),
            (entry(3, 0, 0), "only here"),
            (entry(4, 0, 0), "down there"),
        ];
        let theirs = [
            entry(5, 0, 0),
            entry(4, 0, 2),
            entry(2, 0, 0),
            entry(1, 0, 0),
            entry(6, 3, 1),
        ];
        let (want, send) = compare(ours, &theirs);
        assert_eq!(want, [5, 4, 2, 6], "in the order they came");
        assert_eq!(send, ["newer here", "only here", "down there"]);
        let (want, send) = compare(vec![(entry(1, 0, 0), "same")], &[entry(1, 0, 0)]);
        assert!(want.is_empty() && send.is_empty());
    }

    #[test]
    fn pulls_go_one_at_a_time_and_wait_after_news_and_after_nothing() {
        let peer = MemberId::test(1);
        let p1 = &peer.peer_id;
        let s = Duration::from_secs;
        let mut pacing = Pacing::default();
        assert!(pacing.begin(&peer, s(10)));
        assert!(!pacing.begin(&peer, s(11)), "one at a time");
        assert!(!pacing.answered("p9", true, s(11)), "not the peer asked");
        assert!(!pacing.begin(&peer, s(11)), "still out");
        assert_eq!(pacing.awaits(p1), Some(&peer));
        assert!(pacing.answered(p1, true, s(11)));
        assert!(!pacing.answered(p1, true, s(11)), "answered once");
        assert_eq!(pacing.awaits(p1), None);
        assert!(
            !pacing.begin(&peer, s(11)),
            "news: the next after a round trip"
        );
        assert!(pacing.begin(&peer, s(11) + PULL_AGAIN));
        assert!(pacing.answered(p1, false, s(12)));
        assert!(!pacing.begin(&peer, s(12) + PULL_GAP / 2), "nothing: a gap");
        assert!(pacing.begin(&peer, s(12) + PULL_GAP));
        assert!(!pacing.begin(&peer, s(12) + PULL_GAP + PULL_TIMEOUT / 2));
        assert!(
            pacing.begin(&peer, s(12) + PULL_GAP + PULL_TIMEOUT),
            "a lost answer frees the next pull"
        );
        pacing.answered(p1, true, s(20));
        pacing.news(s(20));
        assert!(!pacing.begin(&peer, s(20)), "rumours still bring news");
        assert!(pacing.begin(&peer, s(20) + PULL_QUIET));
        assert!(!pacing.begin(&peer, s(1)));
        assert!(
            pacing.begin(&peer, s(1) + PULL_TIMEOUT),
            "a clock stepped back waits no longer than a timeout"
        );
    }
}
