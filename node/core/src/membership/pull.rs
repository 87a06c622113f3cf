//! Pulling members (memberlist's push-pull): what SWIM's rumours missed, mended by comparing
//! member lists with a peer.
//!
//! A rumour is passed on a bounded number of times, so a node can miss one (the odds grow
//! with the cluster: a forming cluster of N has N² arrivals to hear). Every membership
//! datagram carries the sender's digest, which holds its [`Buckets::fingerprint`] of the live
//! members; two nodes whose fingerprints differ know different members, and the one that
//! begins (`gossip::starts_exchange`) pulls:
//!
//! 1. [`Message::Summary`]: the asker's sums of the identity hashes of its live members, in
//!    each of [`BUCKETS`] buckets (a member's bucket is a hash of its address, so that every
//!    identity that has held an address, a restarted node's old and new, is in one bucket);
//! 2. [`Message::Delta`], the answer: every member the peer holds, in any state, in buckets
//!    that differ (whole buckets, up to [`MAX_MEMBERS`] members), and which buckets those are;
//! 3. [`Message::Members`]: the asker's members in those buckets, back to the peer.
//!
//! Only the buckets that differ travel: one arrival missed at 10,000 nodes costs about 150
//! entries each way, not the list. Both sides apply what they get as SWIM would apply a
//! rumour (the newer incarnation wins, down beats alive at the same one), without passing it
//! on: every node that still differs pulls for itself. Pulls are paced as status exchanges
//! are ([`Pacing`]): one at a time, none while rumours still bring news, and after one that
//! brought nothing, none for a while.
//!
//! On the wire each message is a kind byte and the encodings of its parts: members are
//! encoded one by one as SWIM's updates are, so that they are decoded through the same
//! [`super::Updates`].

use super::{MemberId, MemberInfo};
use crate::hash::{fnv1a, mix};
use std::time::Duration;

/// Buckets the members are summed into: 64 fingerprints, 576 bytes at most, per summary.
pub const BUCKETS: usize = 64;

/// Members one message carries at most, in whole buckets (but for a first bucket larger than
/// this, cut short): the other buckets that differ go in the next pull, which follows soon
/// when this one brought news.
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

/// A pull message, decoded. The members it carries are decoded by the caller, from
/// `members` on (see [`decode`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// The asker's identity, and its buckets.
    Summary { asker: MemberId, buckets: Buckets },
    /// The answerer's libp2p id, the buckets sent; the answerer's members in them follow.
    Delta { from: String, want: Vec<u8> },
    /// The asker's members in the buckets it was asked for follow.
    Members,
}

const SUMMARY: u8 = 0;
const DELTA: u8 = 1;
const MEMBERS: u8 = 2;

const BINCODE: bincode::config::Configuration = bincode::config::standard();

/// A pull message that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("member pull: {0}")]
pub struct PullError(String);

/// The encoding of a summary.
pub fn summary(asker: &MemberId, buckets: &Buckets) -> Vec<u8> {
    let mut out = vec![SUMMARY];
    bincode::serde::encode_into_std_write((asker, &buckets.0), &mut out, BINCODE)
        .expect("a vector takes every write");
    out
}

/// The beginning of a delta from `from` (the encoded members are appended to it).
pub fn delta(from: &str, want: &[u8]) -> Vec<u8> {
    let mut out = vec![DELTA];
    bincode::serde::encode_into_std_write((from, want), &mut out, BINCODE)
        .expect("a vector takes every write");
    out
}

/// The beginning of a message of members (the encoded members are appended to it).
pub fn members() -> Vec<u8> {
    vec![MEMBERS]
}

/// The message `data` holds, and where its members begin.
pub fn decode(data: &[u8]) -> Result<(Message, usize), PullError> {
    let bad = |e: bincode::error::DecodeError| PullError(e.to_string());
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
        DELTA => {
            let ((from, want), used): ((String, Vec<u8>), usize) =
                bincode::serde::decode_from_slice(rest, BINCODE).map_err(bad)?;
            if let Some(b) = want.iter().find(|b| usize::from(**b) >= BUCKETS) {
                return Err(PullError(format!("bucket {b} of {BUCKETS}")));
            }
            (Message::Delta { from, want }, used)
        }
        MEMBERS => (Message::Members, 0),
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

    /// An answer from `from` (libp2p id) came at `now` (`news`: it changed this node's
    /// members): the peer asked, to send ours to, if the answer is the one awaited. Any other
    /// (a late one, after its timeout) leaves the pull out as it is.
    pub fn answered(&mut self, from: &str, news: bool, now: Duration) -> Option<MemberId> {
        if self.asked.as_ref().is_none_or(|m| m.peer_id != from) {
            return None;
        }
        self.next = match news {
            true => now + PULL_AGAIN,
            false => now + PULL_GAP,
        };
        self.asked.take()
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
        assert_eq!(message, Message::Summary { asker, buckets });
        assert_eq!(at, data.len());
        let mut data = delta("p1", &[1, 63]);
        data.push(0xAA);
        let (message, at) = decode(&data).unwrap();
        let from = "p1".to_string();
        assert_eq!(
            message,
            Message::Delta {
                from,
                want: vec![1, 63]
            }
        );
        assert_eq!(data[at], 0xAA, "the members begin after the buckets");
        assert_eq!(decode(&members()).unwrap(), (Message::Members, 1));
        for bad in [vec![], vec![9], delta("p1", &[64]), vec![SUMMARY, 1, 2]] {
            assert!(decode(&bad).is_err(), "{bad:?}");
        }
        let short = summary(&MemberId::test(1), &Buckets(vec![0; 3]));
        let err = decode(&short).unwrap_err().to_string();
        assert!(err.contains("3 buckets"), "{err}");
    }

    #[test]
    fn pulls_go_one_at_a_time_and_wait_after_news_and_after_nothing() {
        let peer = MemberId::test(1);
        let p1 = &peer.peer_id;
        let s = Duration::from_secs;
        let mut pacing = Pacing::default();
        assert!(pacing.begin(&peer, s(10)));
        assert!(!pacing.begin(&peer, s(11)), "one at a time");
        assert_eq!(
            pacing.answered("p9", true, s(11)),
            None,
            "not the peer asked"
        );
        assert!(!pacing.begin(&peer, s(11)), "still out");
        assert_eq!(pacing.answered(p1, true, s(11)), Some(peer.clone()));
        assert_eq!(pacing.answered(p1, true, s(11)), None, "answered once");
        assert!(
            !pacing.begin(&peer, s(11)),
            "news: the next after a round trip"
        );
        assert!(pacing.begin(&peer, s(11) + PULL_AGAIN));
        assert_eq!(pacing.answered(p1, false, s(12)), Some(peer.clone()));
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
