//! Where a node finds an image its engine lacks, besides its registry: the live peers whose
//! signed status reports list it ([`crate::status::HeldImage`]). Every holder of one copy is
//! asked in an order of the fetcher's own (rendezvous hashing of fetcher, holder and image),
//! so that nodes fetching the same image at once start at different holders, and a holder
//! that cannot serve is followed by the next one.

use crate::hash::{fnv1a, mix};
use crate::membership::{MemberId, Peers};
use crate::reconcile::pulls::ImagePull;
use crate::status::{HeldImage, StatusTable};
use std::collections::BTreeMap;

/// Holders named to one fetch at most.
pub const MAX_HOLDERS: usize = 8;

/// A peer that holds an image: who, and the engine's id of its copy (the sha256 of the
/// image's config: what the fetched copy must be).
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    pub member: MemberId,
    pub id: String,
}

/// The live peers whose reports list the image of `pull`, in the order node `me` should ask
/// them, at most [`MAX_HOLDERS`]. A pushed image's holders are those of its id; elsewhere,
/// where holders' copies differ (a tag that moved between their pulls), only the copy most of
/// them hold is fetched (the smaller id on a tie): one id to verify.
pub fn holders(table: &StatusTable, peers: &Peers, me: &str, pull: &ImagePull) -> Vec<Holder> {
    let image = pull.image.as_str();
    // A pushed image is its id, whatever a holder calls it; ids that are not ones are never
    // fetched (a fetch names files and engine calls by them).
    let held = |h: &&HeldImage| match &pull.pushed {
        Some(id) => h.id == *id,
        None => h.image == image && weeble_crdt::image::is_id(&h.id),
    };
    let mut all: Vec<Holder> = peers
        .iter()
        .filter_map(|member| {
            let report = table.report(&member.name)?;
            let found = report.images.iter().find(held)?;
            Some(Holder {
                member: member.clone(),
                id: found.id.clone(),
            })
        })
        .collect();
    let mut copies: BTreeMap<&str, usize> = BTreeMap::new();
    for h in &all {
        *copies.entry(&h.id).or_default() += 1;
    }
    let most = copies.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)));
    let Some(id) = pull.pushed.clone().or(most.map(|(id, _)| id.to_string())) else {
        return Vec::new();
    };
    all.retain(|h| h.id == id);
    let rank = |h: &Holder| {
        let parts: [&[u8]; 5] = [
            me.as_bytes(),
            b"\0",
            h.member.name.as_bytes(),
            b"\0",
            image.as_bytes(),
        ];
        std::cmp::Reverse(mix(fnv1a(&parts)))
    };
    all.sort_by_cached_key(rank);
    all.truncate(MAX_HOLDERS);
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::MemberInfo;
    use crate::status::{HeldImage, NodeStatus};

    fn member(i: u8) -> MemberId {
        let addr: std::net::SocketAddr = format!("127.0.0.{i}:7946").parse().unwrap();
        MemberId::from(MemberInfo {
            name: format!("n{i}"),
            peer_id: format!("peer{i}"),
            p2p: addr,
            api: addr,
            labels: Default::default(),
            capacity: Default::default(),
            max_pods: 0,
            bump: 0,
        })
    }

    fn report(i: u8, images: &[(&str, &str)]) -> NodeStatus {
        NodeStatus {
            node: format!("n{i}"),
            epoch: 1,
            version: 1,
            pods: vec![],
            not_ready: None,
            leaving: false,
            images: images
                .iter()
                .map(|(image, id)| HeldImage {
                    image: image.to_string(),
                    id: id.to_string(),
                })
                .collect(),
            signature: Default::default(),
        }
    }

    fn table(reports: impl IntoIterator<Item = NodeStatus>) -> StatusTable {
        let mut table = StatusTable::default();
        for r in reports {
            table.merge(r);
        }
        table
    }

    /// An image id of 64 `digit`s.
    fn id(digit: &str) -> String {
        format!("sha256:{}", digit.repeat(64))
    }

    fn pull(image: &str) -> ImagePull {
        ImagePull {
            image: image.into(),
            pushed: None,
        }
    }

    fn names(holders: &[Holder]) -> Vec<String> {
        holders.iter().map(|h| h.member.name.clone()).collect()
    }

    #[test]
    fn only_live_peers_that_list_the_image_hold_it() {
        let table = table([
            report(1, &[("app:v1", &id("a"))]),
            report(2, &[("other:v1", &id("b"))]),
            report(3, &[("app:v1", &id("a"))]),
            report(4, &[("app:v1", &id("a"))]),
        ]);
        // n4 is not a live peer (no member of that name).
        let peers = Peers::of([member(1), member(2), member(3)]);
        let mut found = names(&holders(&table, &peers, "n9", &pull("app:v1")));
        found.sort();
        assert_eq!(found, ["n1", "n3"]);
        assert!(holders(&table, &peers, "n9", &pull("missing:v1")).is_empty());
    }

    #[test]
    fn an_id_that_is_not_one_is_never_fetched_and_a_pushed_one_is_found_by_any_name() {
        let table = table([
            report(1, &[("app:v1", "postgres:15")]),
            report(2, &[("app:v1", "sha256:short")]),
            report(3, &[("renamed:v9", &id("c"))]),
        ]);
        let peers = Peers::of([member(1), member(2), member(3)]);
        assert!(holders(&table, &peers, "n9", &pull("app:v1")).is_empty());
        let pushed = ImagePull {
            pushed: Some(id("c")),
            ..pull("app:v1")
        };
        assert_eq!(names(&holders(&table, &peers, "n9", &pushed)), ["n3"]);
    }

    #[test]
    fn the_copy_most_hold_is_the_one_fetched() {
        let table = table([
            report(1, &[("app:latest", &id("0"))]),
            report(2, &[("app:latest", &id("1"))]),
            report(3, &[("app:latest", &id("1"))]),
        ]);
        let peers = Peers::of([member(1), member(2), member(3)]);
        let found = holders(&table, &peers, "n9", &pull("app:latest"));
        assert_eq!(found.len(), 2);
        assert!(found.iter().all(|h| h.id == id("1")));
        // A pushed image is the id its push names, however few hold it.
        let pushed = ImagePull {
            pushed: Some(id("0")),
            ..pull("app:latest")
        };
        let found = holders(&table, &peers, "n9", &pushed);
        assert_eq!(names(&found), ["n1"]);
        assert_eq!(found[0].id, id("0"));
    }

    #[test]
    fn fetchers_start_at_different_holders() {
        let reports = (1..=4).map(|i| report(i, &[("app:v1", &id("a"))]));
        let table = table(reports);
        let peers = Peers::of((1..=4).map(member));
        let firsts: std::collections::BTreeSet<String> = (0..40)
            .map(|f| names(&holders(&table, &peers, &format!("f{f}"), &pull("app:v1")))[0].clone())
            .collect();
        assert!(firsts.len() >= 3, "40 fetchers began at only {firsts:?}");
        // One fetcher's order is the same each time it asks.
        let once = names(&holders(&table, &peers, "f1", &pull("app:v1")));
        assert_eq!(once, names(&holders(&table, &peers, "f1", &pull("app:v1"))));
        assert_eq!(once.len(), 4);
    }
}
