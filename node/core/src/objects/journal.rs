//! `resourceVersion` with no master, and the changes a watch is sent.
//!
//! In Kubernetes one store (etcd) numbers every write, so a version names one state of the
//! whole cluster. Weeble has no such number: each node merges the desired state and the
//! gossiped status in its own order. So each node keeps its own journal of what it serves:
//! it looks at its objects whenever its view changes, and every object that appeared,
//! changed or went since the last look is a change, numbered by the node's hybrid logical
//! clock (the wall clock in microseconds, or one more than the last number if that is not
//! greater). An object's `resourceVersion` is the number of its last change at this node; a
//! list's is the journal's last number.
//!
//! The numbers only ever grow at a node, and across nodes they follow the wall clock. A watch
//! from version `v` is sent this node's changes after `v`, replayed from the journal; if the
//! journal no longer reaches back to `v` (it keeps a bounded number of changes, and a node
//! that has just started keeps none from before), the watch is refused with 410 Expired and
//! the client lists again, as Kubernetes' informers do. A client that moves to another peer
//! with a version from the first is served that peer's changes after the same moment, by
//! clocks that agree to NTP's precision; what a skewed clock could hide is sent again at the
//! next change of the object, and the client's next list puts it right.

use serde_json::Value;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use weeble_crdt::ObjectKey;

/// What became of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    Added,
    Modified,
    Deleted,
}

impl ChangeType {
    /// The watch event's `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::Added => "ADDED",
            ChangeType::Modified => "MODIFIED",
            ChangeType::Deleted => "DELETED",
        }
    }
}

/// One change to one object, numbered.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub version: u64,
    /// The resource's plural (`pods`).
    pub resource: &'static str,
    /// The namespace is empty for an object of no namespace (a node).
    pub key: ObjectKey,
    pub type_: ChangeType,
    /// The object as served, as JSON text without its version; for a deletion, as it was
    /// last served. Kept as text: a change waits in the log as the bytes it is sent as.
    pub text: Arc<str>,
    /// For a MODIFIED change, the object as it was before: a watch with a selector is told
    /// DELETED when the object leaves what it selects, and ADDED when it comes in.
    pub previous: Option<Arc<str>>,
}

impl Change {
    /// The object, its `metadata.resourceVersion` set to this change's number.
    pub fn object(&self) -> Value {
        versioned(&self.text, self.version)
    }

    /// The object as it was before a MODIFIED change, with this change's number.
    pub fn previous_object(&self) -> Option<Value> {
        self.previous
            .as_deref()
            .map(|text| versioned(text, self.version))
    }

    /// The bytes it holds in the log.
    fn bytes(&self) -> usize {
        self.text.len() + self.previous.as_deref().map_or(0, str::len)
    }
}

/// An object's JSON text, read, with `metadata.resourceVersion` set to `version`.
fn versioned(text: &str, version: u64) -> Value {
    let mut object: Value = serde_json::from_str(text).expect("the journal holds JSON it wrote");
    set_version(&mut object, version);
    object
}

/// `object` with its `metadata.resourceVersion` set to `version`.
pub fn set_version(object: &mut Value, version: u64) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(version.to_string()));
    }
}

/// Why a watch cannot start where it asked: the journal does not reach back so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// The oldest version a watch may start from.
    pub oldest: u64,
}

/// What the journal remembers of an object it serves: its last change, and how it was
/// served then (to see that it changed, and to say what went when it goes).
#[derive(Debug, Clone)]
struct Seen {
    version: u64,
    uid: String,
    text: Arc<str>,
}

/// How much of the past a journal keeps.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub changes: usize,
    pub bytes: usize,
}

impl Default for Limits {
    /// 10,000 changes or 32 MiB: minutes of a busy cluster, for a client that reconnects.
    fn default() -> Self {
        Limits {
            changes: 10_000,
            bytes: 32 << 20,
        }
    }
}

/// A node's numbered changes to what it serves ([module docs](self)).
#[derive(Debug)]
pub struct Journal {
    last: u64,
    seen: HashMap<(&'static str, ObjectKey), Seen>,
    /// The resources looked at since they were last forgotten, each with the journal's last
    /// number after its first look: a watch of it may start from there on.
    followed: HashMap<&'static str, u64>,
    log: VecDeque<Arc<Change>>,
    log_bytes: usize,
    /// Every change after this version is in the log.
    complete_after: u64,
    limits: Limits,
}

impl Journal {
    /// A journal that starts at `now_us` (Unix µs): it holds no change from before.
    pub fn new(now_us: u64, limits: Limits) -> Self {
        Journal {
            last: now_us,
            seen: HashMap::new(),
            followed: HashMap::new(),
            log: VecDeque::new(),
            log_bytes: 0,
            complete_after: now_us,
            limits,
        }
    }

    /// The last number given: a list's `resourceVersion`.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// The version of an object: its last change's number, or `None` if the journal has
    /// not seen it yet.
    pub fn version(&self, resource: &'static str, key: &ObjectKey) -> Option<u64> {
        self.seen.get(&(resource, key.clone())).map(|s| s.version)
    }

    /// Looks at every object of `resource` as served now (each with its key, its uid and
    /// its JSON text without a version) and records what appeared, changed or went since the
    /// last look; returns those changes, numbered from `now_us` on. An object whose uid
    /// changed is another object: the old one is DELETED and the new one ADDED (a pod whose
    /// containers were made again; what `kubectl delete` waits for); one that had none (a pod
    /// before its first container) is only MODIFIED when it gets one. The first look at a
    /// resource only numbers its objects: no watch can have started from before it.
    pub fn observe(
        &mut self,
        now_us: u64,
        resource: &'static str,
        objects: impl IntoIterator<Item = (ObjectKey, String, String)>,
    ) -> Vec<Arc<Change>> {
        let first = !self.followed.contains_key(resource);
        let mut changes = vec![];
        let mut present = HashSet::new();
        for (key, uid, text) in objects {
            let id = (resource, key);
            let type_ = match self.seen.get(&id) {
                Some(seen) if *seen.text == *text => {
                    present.insert(id.1);
                    continue;
                }
                Some(seen) if !seen.uid.is_empty() && seen.uid != uid => {
                    let (old, version) = (seen.text.clone(), self.tick(now_us));
                    let type_ = ChangeType::Deleted;
                    let key = id.1.clone();
                    changes.push(Change {
                        version,
                        resource,
                        key,
                        type_,
                        text: old,
                        previous: None,
                    });
                    (ChangeType::Added, None)
                }
                Some(seen) => (ChangeType::Modified, Some(seen.text.clone())),
                None => (ChangeType::Added, None),
            };
            let (type_, previous) = type_;
            let version = self.tick(now_us);
            let text: Arc<str> = text.into();
            present.insert(id.1.clone());
            let seen = Seen {
                version,
                uid,
                text: text.clone(),
            };
            self.seen.insert(id.clone(), seen);
            changes.push(Change {
                version,
                resource,
                key: id.1,
                type_,
                text,
                previous,
            });
        }
        let gone: Vec<ObjectKey> = self
            .seen
            .keys()
            .filter(|(r, key)| *r == resource && !present.contains(key))
            .map(|(_, key)| key.clone())
            .collect();
        for key in gone {
            let seen = self
                .seen
                .remove(&(resource, key.clone()))
                .expect("listed just above");
            let version = self.tick(now_us);
            let type_ = ChangeType::Deleted;
            changes.push(Change {
                version,
                resource,
                key,
                type_,
                text: seen.text,
                previous: None,
            });
        }
        if first {
            self.followed.insert(resource, self.last);
            return vec![];
        }
        changes.into_iter().map(|c| self.record(c)).collect()
    }

    /// Stops following `resource`: forgets its objects and its changes; a watch of it must
    /// start again from a list.
    pub fn forget(&mut self, resource: &'static str) {
        self.followed.remove(resource);
        self.seen.retain(|(r, _), _| *r != resource);
        self.log.retain(|c| c.resource != resource);
        self.log_bytes = self.log.iter().map(|c| c.bytes()).sum();
    }

    /// The changes to `resource` after `version`, oldest first; `Expired` if some may be
    /// missing: the log no longer reaches back so far, or the journal did not follow the
    /// resource then.
    pub fn since(
        &self,
        resource: &'static str,
        version: u64,
    ) -> Result<impl Iterator<Item = &Arc<Change>>, Expired> {
        let followed = self.followed.get(resource).copied().unwrap_or(self.last);
        let oldest = self.complete_after.max(followed);
        if version < oldest {
            return Err(Expired { oldest });
        }
        let start = self.log.partition_point(|c| c.version <= version);
        Ok(self
            .log
            .range(start..)
            .filter(move |c| c.resource == resource))
    }

    fn tick(&mut self, now_us: u64) -> u64 {
        self.last = now_us.max(self.last + 1);
        self.last
    }

    /// Keeps `change` in the log, forgetting the oldest past the limits.
    fn record(&mut self, change: Change) -> Arc<Change> {
        let change = Arc::new(change);
        self.log.push_back(change.clone());
        self.log_bytes += change.bytes();
        while self.log.len() > self.limits.changes || self.log_bytes > self.limits.bytes {
            let Some(old) = self.log.pop_front() else {
                break;
            };
            self.log_bytes -= old.bytes();
            self.complete_after = old.version;
        }
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, phase: &str) -> (ObjectKey, String, String) {
        let object = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"}, "status": {"phase": phase}});
        (
            ObjectKey::new("default", name),
            format!("uid-{name}"),
            object.to_string(),
        )
    }

    fn summary(changes: &[Arc<Change>]) -> Vec<(u64, &str, &'static str)> {
        changes
            .iter()
            .map(|c| (c.version, c.key.name.as_str(), c.type_.as_str()))
            .collect()
    }

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("default", name)
    }

    #[test]
    fn changes_are_numbered_by_a_clock_that_only_grows() {
        let mut journal = Journal::new(1_000, Limits::default());
        let first = journal.observe(2_000, "pods", [pod("a", "Pending"), pod("b", "Pending")]);
        assert!(first.is_empty(), "the first look only numbers the objects");
        assert_eq!(journal.version("pods", &key("a")), Some(2_000));
        assert_eq!(journal.version("pods", &key("b")), Some(2_001));
        let same = [pod("a", "Pending"), pod("b", "Pending")];
        assert!(
            journal.observe(3_000, "pods", same).is_empty(),
            "nothing changed"
        );
        // The wall clock went back: the numbers still grow.
        let next = journal.observe(1_500, "pods", [pod("a", "Running"), pod("c", "Pending")]);
        assert_eq!(
            summary(&next),
            [
                (2_002, "a", "MODIFIED"),
                (2_003, "c", "ADDED"),
                (2_004, "b", "DELETED")
            ]
        );
        assert_eq!(next[0].object()["metadata"]["resourceVersion"], "2002");
        assert_eq!(next[0].object()["status"]["phase"], "Running");
        let before = next[0]
            .previous_object()
            .expect("a modified change keeps the object before");
        assert_eq!(
            (
                &before["status"]["phase"],
                &before["metadata"]["resourceVersion"]
            ),
            (&json!("Pending"), &json!("2002"))
        );
        assert_eq!(next[1].previous, None, "an added one has none");
        let deleted = next[2].object();
        assert_eq!(
            (
                &deleted["status"]["phase"],
                &deleted["metadata"]["resourceVersion"]
            ),
            (&json!("Pending"), &json!("2004")),
            "a deletion is the object as it was last served"
        );
        assert_eq!(journal.version("pods", &key("a")), Some(2_002));
        assert_eq!(journal.version("pods", &key("b")), None);
        let (k, _, text) = pod("c", "Running");
        let remade = journal.observe(
            1_600,
            "pods",
            [pod("a", "Running"), (k, "uid-c2".into(), text)],
        );
        assert_eq!(
            summary(&remade),
            [(2_005, "c", "DELETED"), (2_006, "c", "ADDED")],
            "another uid, another object"
        );
        assert_eq!(
            remade[0].object()["status"]["phase"],
            "Pending",
            "the one that went"
        );
        let (k, _, text) = pod("d", "Pending");
        journal.observe(
            1_700,
            "pods",
            [pod("a", "Running"), (k, String::new(), text)],
        );
        let (k, _, text) = pod("d", "Running");
        let made = journal.observe(
            1_800,
            "pods",
            [pod("a", "Running"), (k, "uid-d".into(), text)],
        );
        assert_eq!(
            summary(&made),
            [(2_009, "d", "MODIFIED")],
            "a uid given, not changed"
        );
        assert_eq!(journal.version("deployments", &key("a")), None);
        assert_eq!(journal.last(), 2_009);
        assert!(
            journal
                .observe(4_000, "services", [pod("a", "x")])
                .is_empty()
        );
        let other = journal.observe(5_000, "services", [pod("a", "y")]);
        assert_eq!(
            summary(&other),
            [(5_000, "a", "MODIFIED")],
            "resources apart"
        );
        assert_eq!(journal.version("pods", &key("a")), Some(2_002));
    }

    #[test]
    fn a_watch_replays_what_followed_its_version_or_is_expired() {
        let limits = Limits {
            changes: 3,
            bytes: 1 << 20,
        };
        let mut journal = Journal::new(100, limits);
        let expired = |j: &Journal, r, v| j.since(r, v).err().map(|e| e.oldest);
        assert_eq!(expired(&journal, "pods", 99), Some(100));
        journal.observe(150, "pods", [pod("a", "Pending")]);
        assert_eq!(
            expired(&journal, "pods", 100),
            Some(150),
            "from before the journal followed pods"
        );
        journal.observe(200, "pods", [pod("a", "Running")]);
        journal.observe(300, "pods", [pod("a", "Failed")]);
        let after = |j: &Journal, v| -> Vec<u64> {
            j.since("pods", v).unwrap().map(|c| c.version).collect()
        };
        assert_eq!(after(&journal, 150), [200, 300]);
        assert_eq!(after(&journal, 200), [300]);
        assert_eq!(
            after(&journal, 250),
            [300],
            "a version from another node's clock"
        );
        assert!(after(&journal, 300).is_empty());
        assert!(after(&journal, 999).is_empty(), "ahead of this node");
        journal.observe(400, "pods", [pod("a", "Running")]);
        journal.observe(500, "pods", [pod("a", "Failed")]);
        assert_eq!(
            expired(&journal, "pods", 199),
            Some(200),
            "the log keeps three"
        );
        assert_eq!(after(&journal, 200), [300, 400, 500]);
        journal.observe(600, "services", [pod("s", "x")]);
        journal.observe(700, "services", [pod("s", "y")]);
        assert_eq!(
            expired(&journal, "pods", 200),
            Some(300),
            "one log for all: another resource's change pushed the oldest out"
        );
        assert_eq!(
            after(&journal, 300),
            [400, 500],
            "the services' change is not the pods'"
        );
        journal.forget("services");
        assert_eq!(after(&journal, 300), [400, 500], "pods kept");
        assert!(journal.since("services", 700).unwrap().next().is_none());
        assert_eq!(expired(&journal, "services", 650), Some(700));
        journal.forget("pods");
        assert_eq!(journal.version("pods", &key("a")), None);
        assert_eq!(expired(&journal, "pods", 500), Some(700));
        let tiny = Limits {
            changes: 100,
            bytes: 10,
        };
        let mut small = Journal::new(0, tiny);
        small.observe(1, "pods", [pod("a", "Pending")]);
        small.observe(2, "pods", [pod("a", "Running")]);
        assert!(
            small.since("pods", 1).is_err(),
            "a change over the byte bound is not kept"
        );
        assert_eq!(small.since("pods", 2).unwrap().count(), 0);
    }
}
