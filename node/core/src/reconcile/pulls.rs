//! Image pulls, as the kubelet makes them. Whether a container's image must be pulled
//! before the container is made follows its pull policy: `Always` pulls first (a pull that
//! succeeded in the last [`FRESH_PULL_MS`] serves every container made meanwhile: the
//! replicas of a deployment that start together pull once), `IfNotPresent` pulls once the
//! engine has said it lacks the image, `Never` never pulls (`ErrImageNeverPull`). One pull of
//! an image runs at a time however many pods wait for it, [`MAX_PULLS_IN_FLIGHT`] images at
//! once; a failed pull is `ErrImagePull` in the report that follows it, then
//! `ImagePullBackOff` until it is tried again, after a back-off that doubles from 10 s to
//! 5 min (the kubelet's). An image that cannot be read is `InvalidImageName`, never pulled.
//!
//! An image pushed into the cluster (`weeble image push`) for this node is pulled too, as
//! soon as the node does not hold it: from the peers that hold its id, never from a registry
//! (whose copy of the name may be another image). Once pulled it is held
//! ([`Pulls::pushed_to_pull`]) and listed in the node's report, whether a pod runs it or not.
//!
//! Pure: the reconciler asks [`Pulls::gate`] for each container to make, starts the pulls
//! it says, and tells the outcomes back.

use crate::status::HeldImage;
use std::collections::BTreeMap;
use weeble_crdt::image::Reference;
use weeble_crdt::{PullPolicy, Snapshot};

/// Pulls that run at once on one node, of different images.
pub const MAX_PULLS_IN_FLIGHT: usize = 2;
/// A pull that has not ended after this long is taken for lost (its task never answered):
/// it fails, and the image may be pulled again. Longer than any pull takes: a fetch from
/// peers ends within an hour (`weeble_node::images::fetch`), over a slow link too.
pub const PULL_LOST_MS: i64 = 2 * 3_600_000;
/// A pull that succeeded this recently counts as done for an `Always` container.
pub const FRESH_PULL_MS: i64 = 10_000;
/// The wait after the first failed pull of an image; it doubles with each failure after.
pub const PULL_BACKOFF_FIRST_MS: i64 = 10_000;
/// The longest wait between two pulls of an image that keeps failing.
pub const PULL_BACKOFF_MAX_MS: i64 = 300_000;

/// How soon after a report said `ErrImagePull` a pass reports `ImagePullBackOff`.
pub const BACKOFF_SHOWN_AFTER_MS: i64 = 2_000;

/// Kubernetes' reasons for a container that waits on its image.
pub const ERR_IMAGE_PULL: &str = "ErrImagePull";
pub const IMAGE_PULL_BACKOFF: &str = "ImagePullBackOff";
pub const INVALID_IMAGE_NAME: &str = "InvalidImageName";

/// What a container's image allows now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Make the container.
    Go,
    /// Pull the image first: no pull of it runs.
    Pull,
    /// A pull of the image runs.
    Pulling,
    /// Its last pull failed: the reason to show (`ErrImagePull`, then `ImagePullBackOff`)
    /// and the message.
    Failed {
        reason: &'static str,
        message: String,
    },
    /// The image cannot be read (`InvalidImageName`): why.
    Invalid(String),
}

/// One image's pulls.
#[derive(Debug, Clone, Default, PartialEq)]
struct Image {
    /// The engine said it lacks the image (a create failed); a pull that succeeds clears it.
    missing: bool,
    /// When the pull that runs began.
    pulling_since: Option<i64>,
    /// When the last pull that succeeded ended.
    pulled_ms: Option<i64>,
    /// Failed pulls in a row.
    failures: u32,
    /// The last pull failed: why, and no new pull before `not_before_ms`.
    failure: Option<Failure>,
}

#[derive(Debug, Clone, PartialEq)]
struct Failure {
    message: String,
    not_before_ms: i64,
    /// A report said `ErrImagePull` already: the next ones say `ImagePullBackOff`.
    told: bool,
}

/// A pull to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePull {
    pub image: String,
    /// The image was pushed into the cluster as this id: it comes from the peers that hold
    /// that id, never from a registry.
    pub pushed: Option<String>,
}

/// The images pushed into the cluster for node `me`, by name: their ids.
pub fn pushed_for<'a>(snapshot: &'a Snapshot, me: &str) -> BTreeMap<&'a str, &'a str> {
    let images = snapshot.images.iter().filter(|(_, p)| p.is_for(me));
    images
        .map(|(name, p)| (name.as_str(), p.id.as_str()))
        .collect()
}

/// The pulls of one node's images (see the [module](self)).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pulls {
    images: BTreeMap<String, Image>,
    /// The pushed images pulled here, by name: their ids.
    pushed: BTreeMap<String, String>,
}

impl Pulls {
    /// Whether a container of `image`, pulled by `policy`, may be made at `now_ms`.
    pub fn gate(&self, image: &str, policy: PullPolicy, now_ms: i64) -> Gate {
        if let Err(why) = Reference::parse(image) {
            return Gate::Invalid(format!("cannot read image name {image:?}: {why}"));
        }
        if policy == PullPolicy::Never {
            return Gate::Go;
        }
        let Some(i) = self.images.get(image) else {
            return match policy {
                PullPolicy::Always => Gate::Pull,
                _ => Gate::Go,
            };
        };
        if i.pulling_since.is_some() {
            return Gate::Pulling;
        }
        if let Some(f) = i.failure.as_ref().filter(|f| now_ms < f.not_before_ms) {
            let reason = if f.told {
                IMAGE_PULL_BACKOFF
            } else {
                ERR_IMAGE_PULL
            };
            let message = match f.told {
                true => format!("Back-off pulling image {image:?}: {}", f.message),
                false => f.message.clone(),
            };
            return Gate::Failed { reason, message };
        }
        // After a failed pull's back-off, `IfNotPresent` makes the container first (the
        // image may have been loaded meanwhile), `Always` pulls again.
        let fresh = i.pulled_ms.is_some_and(|at| now_ms - at < FRESH_PULL_MS);
        match policy {
            _ if i.missing => Gate::Pull,
            PullPolicy::Always if !fresh => Gate::Pull,
            _ => Gate::Go,
        }
    }

    /// How many pulls run.
    pub fn in_flight(&self) -> usize {
        self.images
            .values()
            .filter(|i| i.pulling_since.is_some())
            .count()
    }

    /// A pull of `image` began.
    pub fn started(&mut self, image: &str, now_ms: i64) {
        self.images
            .entry(image.to_string())
            .or_default()
            .pulling_since = Some(now_ms);
    }

    /// The pull of `image` ended: done, or failed with this message.
    pub fn finished(&mut self, image: &str, outcome: Result<(), String>, now_ms: i64) {
        let i = self.images.entry(image.to_string()).or_default();
        i.pulling_since = None;
        match outcome {
            Ok(()) => {
                i.missing = false;
                i.pulled_ms = Some(now_ms);
                i.failures = 0;
                i.failure = None;
            }
            Err(message) => fail(i, message, now_ms),
        }
    }

    /// A container of `image` was made: the engine has it.
    pub fn present(&mut self, image: &str) {
        if let Some(i) = self.images.get_mut(image) {
            (i.missing, i.failure, i.failures) = (false, None, 0);
        }
    }

    /// The pulls that began [`PULL_LOST_MS`] ago or more and never ended fail.
    pub fn expire(&mut self, now_ms: i64) {
        for i in self.images.values_mut() {
            if i.pulling_since
                .is_some_and(|since| now_ms - since >= PULL_LOST_MS)
            {
                i.pulling_since = None;
                let minutes = PULL_LOST_MS / 60_000;
                fail(
                    i,
                    format!("the pull did not end within {minutes} min"),
                    now_ms,
                );
            }
        }
    }

    /// The engine said it lacks `image` when a container of it was made. Just after a pull
    /// of it succeeded, that pull failed after all (it did not bring the name the container
    /// asks for): backed off like any failed pull, not pulled again at once.
    pub fn missing(&mut self, image: &str, now_ms: i64) {
        let i = self.images.entry(image.to_string()).or_default();
        i.missing = true;
        if i.pulled_ms.is_some_and(|at| now_ms - at < FRESH_PULL_MS) {
            let message = "the pull succeeded but the engine does not have the image".into();
            i.pulled_ms = None;
            fail(i, message, now_ms);
        }
    }

    /// The failed pulls were reported (as `ErrImagePull`): from now on, `ImagePullBackOff`.
    /// Whether one had not been told before (a pass should then say `ImagePullBackOff`
    /// [`BACKOFF_SHOWN_AFTER_MS`] later, as the kubelet's next sync does, not only when the
    /// back-off ends).
    pub fn told(&mut self) -> bool {
        let failures = self.images.values_mut().filter_map(|i| i.failure.as_mut());
        failures.fold(false, |new, f| new | !std::mem::replace(&mut f.told, true))
    }

    /// When the earliest back-off ends (Unix ms), if one runs.
    pub fn next_retry_ms(&self) -> Option<i64> {
        self.images
            .values()
            .filter(|i| i.pulling_since.is_none())
            .filter_map(|i| i.failure.as_ref().map(|f| f.not_before_ms))
            .min()
    }

    /// Forgets the images no container or push wants (`wanted`) and no pull runs for: what
    /// is kept is bounded by the desired pods and the pushed images.
    pub fn keep_only(&mut self, wanted: impl Fn(&str) -> bool) {
        self.images
            .retain(|image, i| i.pulling_since.is_some() || wanted(image));
        self.pushed.retain(|image, _| wanted(image));
    }

    /// The pull of pushed image `image` (as `id`) succeeded: the engine holds it.
    pub fn holds(&mut self, image: &str, id: &str) {
        self.pushed.insert(image.to_string(), id.to_string());
    }

    /// The pulls to start (started now) of the images pushed for this node (`pushed`:
    /// [`pushed_for`]) that it does not hold, as many as there is room for.
    pub fn pushed_to_pull(&mut self, pushed: &BTreeMap<&str, &str>, now_ms: i64) -> Vec<ImagePull> {
        let room = MAX_PULLS_IN_FLIGHT.saturating_sub(self.in_flight());
        let missing = pushed
            .iter()
            .filter(|(image, id)| self.pushed.get(**image).map(String::as_str) != Some(**id))
            .filter(|(image, _)| self.gate(image, PullPolicy::Always, now_ms) == Gate::Pull);
        let pulls: Vec<ImagePull> = missing
            .take(room)
            .map(|(image, id)| ImagePull {
                image: image.to_string(),
                pushed: Some(id.to_string()),
            })
            .collect();
        for pull in &pulls {
            self.started(&pull.image, now_ms);
        }
        pulls
    }

    /// The pushed images this node holds, for its report.
    pub fn held_pushed(&self) -> impl Iterator<Item = HeldImage> + '_ {
        self.pushed.iter().map(|(image, id)| HeldImage {
            image: image.clone(),
            id: id.clone(),
        })
    }
}

/// A pull of `i` failed: backed off, and whether the engine has it is asked again (by a
/// create) once the back-off ends.
fn fail(i: &mut Image, message: String, now_ms: i64) {
    i.missing = false;
    i.failures += 1;
    let wait = (PULL_BACKOFF_FIRST_MS << (i.failures - 1).min(8)).min(PULL_BACKOFF_MAX_MS);
    i.failure = Some(Failure {
        message,
        not_before_ms: now_ms + wait,
        told: false,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use PullPolicy::*;

    #[test]
    fn the_policy_says_when_to_pull_and_one_pull_serves_every_container_of_its_image() {
        let mut pulls = Pulls::default();
        assert_eq!(pulls.gate("web:1", IfNotPresent, 0), Gate::Go);
        assert_eq!(pulls.gate("web:1", Never, 0), Gate::Go);
        assert_eq!(pulls.gate("web", Always, 0), Gate::Pull);
        pulls.started("web", 0);
        assert_eq!(pulls.gate("web", Always, 100), Gate::Pulling);
        assert_eq!(pulls.in_flight(), 1);
        pulls.finished("web", Ok(()), 2_000);
        assert_eq!(pulls.gate("web", Always, 2_000), Gate::Go, "fresh");
        assert_eq!(
            pulls.gate("web", Always, 2_000 + FRESH_PULL_MS),
            Gate::Pull,
            "a container made later pulls again"
        );
        // IfNotPresent pulls once the engine said it lacks the image.
        pulls.missing("web:1", 3_000);
        assert_eq!(pulls.gate("web:1", IfNotPresent, 3_000), Gate::Pull);
        assert_eq!(pulls.gate("web:1", Never, 3_000), Gate::Go);
        pulls.started("web:1", 3_000);
        pulls.finished("web:1", Ok(()), 4_000);
        assert_eq!(pulls.gate("web:1", IfNotPresent, 4_000), Gate::Go);
        assert_eq!(pulls.in_flight(), 0);
    }

    #[test]
    fn a_failed_pull_says_err_image_pull_once_then_backs_off_doubling_to_five_minutes() {
        let mut pulls = Pulls::default();
        pulls.started("web", 0);
        pulls.finished("web", Err("unauthorized".into()), 1_000);
        let failed = |reason: &'static str, message: &str| Gate::Failed {
            reason,
            message: message.into(),
        };
        assert_eq!(
            pulls.gate("web", Always, 1_000),
            failed(ERR_IMAGE_PULL, "unauthorized")
        );
        assert!(pulls.told(), "a failure told for the first time");
        assert!(!pulls.told(), "and not again");
        assert_eq!(
            pulls.gate("web", Always, 1_000),
            failed(
                IMAGE_PULL_BACKOFF,
                "Back-off pulling image \"web\": unauthorized"
            )
        );
        assert_eq!(pulls.next_retry_ms(), Some(1_000 + PULL_BACKOFF_FIRST_MS));
        assert_eq!(
            pulls.gate("web", Always, 11_000),
            Gate::Pull,
            "the back-off is over"
        );
        let mut at = 11_000;
        let mut waits = Vec::new();
        for _ in 0..7 {
            pulls.started("web", at);
            pulls.finished("web", Err("unauthorized".into()), at);
            let next = pulls.next_retry_ms().unwrap();
            waits.push((next - at) / 1_000);
            at = next;
        }
        assert_eq!(waits, [20, 40, 80, 160, 300, 300, 300]);
        pulls.started("web", at);
        pulls.finished("web", Ok(()), at);
        assert_eq!(
            pulls.gate("web", Always, at),
            Gate::Go,
            "fixed, it recovers"
        );
        assert_eq!(pulls.next_retry_ms(), None);
    }

    #[test]
    fn after_a_back_off_if_not_present_makes_the_container_first_and_a_lost_pull_fails() {
        let mut pulls = Pulls::default();
        pulls.missing("web:1", 0);
        pulls.started("web:1", 0);
        pulls.finished("web:1", Err("registry unreachable".into()), 0);
        let over = PULL_BACKOFF_FIRST_MS;
        assert_eq!(
            pulls.gate("web:1", IfNotPresent, over),
            Gate::Go,
            "loaded meanwhile?"
        );
        pulls.missing("web:1", over);
        assert_eq!(
            pulls.gate("web:1", IfNotPresent, over),
            Gate::Pull,
            "no: pulled"
        );
        pulls.present("web:1");
        assert_eq!(
            pulls.next_retry_ms(),
            None,
            "a made container ends the failure"
        );
        pulls.started("web", 0);
        pulls.expire(PULL_LOST_MS - 1);
        assert_eq!(pulls.gate("web", Always, PULL_LOST_MS - 1), Gate::Pulling);
        pulls.expire(PULL_LOST_MS);
        let Gate::Failed { message, .. } = pulls.gate("web", Always, PULL_LOST_MS) else {
            panic!("a lost pull fails")
        };
        assert!(message.contains("did not end within 120 min"), "{message}");
        assert_eq!(pulls.in_flight(), 0);
    }

    #[test]
    fn a_pull_that_did_not_bring_the_image_backs_off_instead_of_pulling_again_at_once() {
        let mut pulls = Pulls::default();
        pulls.started("web:1", 0);
        pulls.finished("web:1", Ok(()), 0);
        pulls.missing("web:1", 500);
        assert!(matches!(
            pulls.gate("web:1", IfNotPresent, 500),
            Gate::Failed {
                reason: ERR_IMAGE_PULL,
                ..
            }
        ));
    }

    #[test]
    fn an_unreadable_image_is_never_pulled_and_forgotten_images_go() {
        let mut pulls = Pulls::default();
        let Gate::Invalid(why) = pulls.gate("Web:1", Always, 0) else {
            panic!("an invalid name")
        };
        assert!(why.contains("\"Web:1\""), "{why}");
        pulls.missing("a:1", 0);
        pulls.started("b:1", 0);
        pulls.keep_only(|_| false);
        assert_eq!(
            pulls.gate("a:1", IfNotPresent, 0),
            Gate::Go,
            "a is forgotten"
        );
        assert_eq!(
            pulls.gate("b:1", IfNotPresent, 0),
            Gate::Pulling,
            "b's pull runs"
        );
    }

    #[test]
    fn a_pushed_image_is_pulled_until_held_two_at_once() {
        let mut pulls = Pulls::default();
        let pushed: BTreeMap<&str, &str> = [
            ("a:1", "sha256:a"),
            ("b:1", "sha256:b"),
            ("c:1", "sha256:c"),
        ]
        .into();
        let first = pulls.pushed_to_pull(&pushed, 0);
        let names: Vec<&str> = first.iter().map(|p| p.image.as_str()).collect();
        assert_eq!(names, ["a:1", "b:1"], "two at once");
        assert_eq!(first[0].pushed.as_deref(), Some("sha256:a"));
        assert!(pulls.pushed_to_pull(&pushed, 10).is_empty(), "no room");
        pulls.holds("a:1", "sha256:a");
        pulls.finished("a:1", Ok(()), 20);
        pulls.finished("b:1", Err("no peer holds it".into()), 20);
        let next = pulls.pushed_to_pull(&pushed, 30);
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].image, "c:1", "a:1 is held, b:1 backs off");
        let held: Vec<HeldImage> = pulls.held_pushed().collect();
        assert_eq!(held.len(), 1);
        assert_eq!(
            (held[0].image.as_str(), held[0].id.as_str()),
            ("a:1", "sha256:a")
        );
        // Pushed again as another id: pulled again.
        let moved: BTreeMap<&str, &str> = [("a:1", "sha256:a2")].into();
        pulls.finished("c:1", Ok(()), 40);
        let again = pulls.pushed_to_pull(&moved, 20_000);
        assert_eq!(again[0].pushed.as_deref(), Some("sha256:a2"));
    }
}
