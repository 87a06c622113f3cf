//! The desired-state document: an automerge CRDT that every node holds whole and merges.
//!
//! Layout: each object lives under a root key `deployments/<ns>/<name>` or
//! `services/<ns>/<name>` as a map of fields; the peers admitted (`peers/<id>`, [`peers`])
//! and the images pushed (`images/<name>`, [`images`]) are one value each. The root map is the one object every document
//! shares, so objects created independently on different nodes never conflict as containers;
//! a fixed genesis change still gives every node a common first change and a schema marker.
//!
//! Fields are stored separately so that concurrent changes to different fields all survive
//! (a `scale` on one node and an image change on another). Each field is last-writer-wins on
//! its own; `replicas` is an integer, `generation` an automerge counter (concurrent spec
//! changes each count), and the structured fields are JSON strings.
//!
//! Delete wins over concurrent changes to an object that the deleting node had seen: the
//! root key is removed and edits to the orphaned map are invisible. An object re-applied after
//! the delete (causally) is a new object with generation 1.

use crate::model::*;
use automerge::sync::{self, SyncDoc};
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{
    ActorId, AutoCommit, ChangeHash, ObjId, ObjType, PatchLog, Prop, ROOT, ReadDoc, ScalarValue,
    Value, legacy,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The schema marker written by the genesis change.
const SCHEMA_KEY: &str = "weeble.schema";
const SCHEMA_VERSION: i64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{kind} {key} not found")]
    NotFound { kind: Kind, key: ObjectKey },
    #[error("not a Weeble state document: {0}")]
    NotWeeble(String),
    #[error("document store failed: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    #[error("sync message could not be decoded: {0}")]
    BadSyncMessage(String),
    #[error("the stored object cannot be read: {0}")]
    Unreadable(String),
    #[error("{}", no_revision(key, *revision))]
    NoRevision {
        key: ObjectKey,
        revision: Option<u64>,
    },
}

fn no_revision(key: &ObjectKey, revision: Option<u64>) -> String {
    match revision {
        None => format!("Deployment {key} has no previous revision to roll back to"),
        Some(n) => format!(
            "Deployment {key} has no revision {n} to roll back to (`weeble rollout history` lists them)"
        ),
    }
}

/// What an `apply`, `scale`, `delete` or `rollout` command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Configured,
    Unchanged,
    Scaled,
    Deleted,
    #[serde(rename = "rolled back")]
    RolledBack,
    Paused,
    Resumed,
    Restarted,
    Allowed,
    Denied,
}

/// The outcome as kubectl prints it (`deployment.apps/web created`): its serde text.
impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
            Outcome::Scaled => "scaled",
            Outcome::Deleted => "deleted",
            Outcome::RolledBack => "rolled back",
            Outcome::Paused => "paused",
            Outcome::Resumed => "resumed",
            Outcome::Restarted => "restarted",
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
        })
    }
}

/// Everything the document says, hydrated into model types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Shared, so that the snapshot published after each write is a cheap copy of the last
    /// one with only the changed objects read again.
    pub deployments: BTreeMap<ObjectKey, Arc<Deployment>>,
    pub services: BTreeMap<ObjectKey, Arc<Service>>,
    /// The namespaces operators made, keyed with an empty namespace.
    pub namespaces: BTreeMap<ObjectKey, Arc<Namespace>>,
    /// The peers the cluster allows or denies ([`peers`]).
    pub peers: Admissions,
    /// The images pushed into the cluster, by name ([`images`]).
    pub images: BTreeMap<String, PushedImage>,
    /// Entries that could not be read (written by a newer or broken peer), with the reason.
    pub unreadable: Vec<String>,
    /// The document's heads (hex change hashes, sorted): two nodes with the same heads hold
    /// the same document.
    pub heads: Vec<String>,
}

/// Per-peer sync progress for the automerge sync protocol. Reset it when the link to the
/// peer is lost or a message may have been dropped: the protocol then starts over safely.
#[derive(Debug, Default)]
pub struct PeerSync(sync::State);

impl PeerSync {
    /// Starts over, asking the peer to send again what it sent before: for a node that
    /// dropped changes the peer believes delivered (they could not be persisted). This is
    /// automerge's own reset (as when a read-only peer turns read-write): the next message
    /// carries the `SYNC_RESET` flag, which clears what the peer remembers having sent.
    pub fn ask_for_resend(&mut self) {
        let their_capabilities = self.0.their_capabilities.take();
        self.0 = sync::State {
            their_capabilities,
            needs_reset: true,
            ..Default::default()
        };
    }
}

/// The desired state of the cluster as one automerge document.
pub struct DesiredState {
    doc: AutoCommit,
    /// What the next writes record as their time ([`Self::set_time`]).
    now_ms: i64,
}

impl std::fmt::Debug for DesiredState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DesiredState")
            .field("actor", self.doc.get_actor())
            .finish()
    }
}

fn root_key(kind: Kind, key: &ObjectKey) -> String {
    format!("{}/{}/{}", kind_prefix(kind), key.namespace, key.name)
}

/// The kind prefix and the key of an object's root key; `None` for other root keys (the
/// schema marker).
fn parse_root(root: &str) -> Option<(&str, ObjectKey)> {
    let (prefix, rest) = root.split_once('/')?;
    let (namespace, name) = rest.split_once('/')?;
    Some((prefix, ObjectKey::new(namespace, name)))
}

fn kind_prefix(kind: Kind) -> &'static str {
    match kind {
        Kind::Deployment => "deployments",
        Kind::Service => "services",
        Kind::Namespace => "namespaces",
    }
}

/// The fields of one object as stored: JSON strings, and numbers and flags for
/// deployments; a deployment's template is written with its history (`history`).
struct Fields<'a> {
    /// Fields that belong to the spec: changing one bumps the generation.
    spec: Vec<(&'static str, ScalarValue)>,
    template: Option<(&'a PodTemplate, u32)>,
    /// Metadata: JSON strings.
    meta: [(&'static str, ScalarValue); 2],
}

/// What a field added after objects were written reads as where it is missing. Such a field
/// is not written while it holds that: a deployment with Kubernetes' defaults stores none of
/// them (written, they held 11 MB more at 1,000 simulated nodes, each holding the document).
fn unwritten(field: &str) -> Option<ScalarValue> {
    let int = |n: u32| ScalarValue::Int(i64::from(n));
    Some(match field {
        "minReadySeconds" => int(0),
        "progressDeadlineSeconds" => int(DEFAULT_PROGRESS_DEADLINE_SECONDS),
        "revisionHistoryLimit" => int(DEFAULT_REVISION_HISTORY_LIMIT),
        "paused" => ScalarValue::Boolean(false),
        "annotations" => ScalarValue::Str("{}".into()),
        _ => return None,
    })
}

/// An object's uid: [`uid_of`] its map's id (`counter@actor`), which every node holds
/// alike and a new creation changes.
fn uid(obj: &ObjId) -> String {
    uid_of(&obj.to_string())
}

/// A UUID (version 8, RFC 9562) made of the SHA-256 of `seed`: the same at every node.
pub fn uid_of(seed: &str) -> String {
    use sha2::Digest;
    let mut b: [u8; 16] = sha2::Sha256::digest(seed.as_bytes())[..16]
        .try_into()
        .expect("a SHA-256 is longer than 16 bytes");
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn json<T: Serialize>(value: &T) -> ScalarValue {
    ScalarValue::Str(
        serde_json::to_string(value)
            .expect("model types serialize to JSON")
            .into(),
    )
}

fn fields(object: &Object) -> Fields<'_> {
    let meta = object.meta();
    let meta = [
        ("labels", json(&meta.labels)),
        ("annotations", json(&meta.annotations)),
    ];
    match object {
        Object::Deployment(d) => {
            let s = &d.spec;
            let int = |n: u32| ScalarValue::Int(i64::from(n));
            let mut spec = vec![
                ("replicas", int(s.replicas)),
                ("selector", json(&s.selector)),
                ("strategy", json(&s.strategy)),
                ("minReadySeconds", int(s.min_ready_seconds)),
                ("progressDeadlineSeconds", int(s.progress_deadline_seconds)),
                ("revisionHistoryLimit", int(s.revision_history_limit)),
            ];
            spec.extend(s.paused.map(|p| ("paused", ScalarValue::Boolean(p))));
            Fields {
                spec,
                template: Some((&s.template, s.revision_history_limit)),
                meta,
            }
        }
        Object::Service(s) => Fields {
            spec: vec![("spec", json(&s.spec))],
            template: None,
            meta,
        },
        Object::Namespace(_) => Fields {
            spec: vec![],
            template: None,
            meta,
        },
    }
}

impl DesiredState {
    /// The genesis every node starts from: one deterministic change, same hash everywhere.
    fn genesis() -> AutoCommit {
        let mut doc = AutoCommit::new().with_actor(ActorId::from(b"weeble-genesis-0"));
        doc.put(ROOT, SCHEMA_KEY, SCHEMA_VERSION)
            .expect("a fresh document accepts a put");
        doc.commit_with(
            CommitOptions::default()
                .with_time(0)
                .with_message("weeble genesis"),
        );
        doc
    }

    /// The time the next writes record (Unix ms): when an object was created, when a
    /// deployment's template changed.
    pub fn set_time(&mut self, now_ms: i64) {
        self.now_ms = now_ms;
    }

    /// A new document at genesis, writing as `actor` (unique per writer and per process run).
    pub fn new(actor: ActorId) -> Self {
        let mut doc = Self::genesis();
        doc.set_actor(actor);
        DesiredState { doc, now_ms: 0 }
    }

    /// Loads a saved document (full save followed by any incremental saves).
    ///
    /// automerge 0.12 checks a saved document's columns only in part before it reads them:
    /// a crafted file made its loader panic (an `unwrap` in hexane's column reader, found by
    /// the `state_file` fuzz target). The load touches nothing but the document it makes,
    /// so such a panic is caught and told as a document that does not load.
    pub fn load(bytes: &[u8], actor: ActorId) -> Result<Self, StateError> {
        check_chunks(bytes).map_err(StateError::NotWeeble)?;
        let mut doc = std::panic::catch_unwind(|| AutoCommit::load(bytes)).map_err(|panic| {
            let why = panic
                .downcast_ref::<&str>()
                .map(ToString::to_string)
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            StateError::NotWeeble(format!("automerge could not read it ({why})"))
        })??;
        match doc.get(ROOT, SCHEMA_KEY)? {
            Some((Value::Scalar(v), _)) if v.as_i64() == Some(SCHEMA_VERSION) => {}
            other => {
                return Err(StateError::NotWeeble(format!(
                    "expected {SCHEMA_KEY} = {SCHEMA_VERSION}, found {other:?}"
                )));
            }
        }
        doc.set_actor(actor);
        Ok(DesiredState { doc, now_ms: 0 })
    }

    /// The whole document, compacted.
    pub fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    /// The changes since the last `save` or `save_incremental`, to append to a saved file.
    pub fn save_incremental(&mut self) -> Vec<u8> {
        self.doc.save_incremental()
    }

    pub fn heads(&mut self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    /// Forgets every change made since `heads`: a write that could not be persisted leaves
    /// no trace. The document goes on under a fresh `actor`, so the forgotten changes'
    /// sequence numbers are never used again. Everything up to `heads` must already be saved
    /// (the next `save_incremental` starts after it).
    pub fn rollback(&mut self, heads: &[ChangeHash], actor: ActorId) -> Result<(), StateError> {
        let mut doc = self.doc.fork_at(heads)?;
        doc.set_actor(actor);
        // Moves the fork's save cursor to its heads: what it holds is on disk already.
        doc.save_incremental();
        self.doc = doc;
        Ok(())
    }

    /// Creates or updates an object. Only fields that differ are written, so an apply never
    /// overwrites a concurrent change to a field it leaves as it was.
    pub fn apply(&mut self, object: &Object) -> Result<Outcome, StateError> {
        let kind = object.kind();
        let key = object.meta().key();
        let fields = fields(object);
        let message = format!("apply {kind} {key}");
        let outcome = match self.object_id(kind, &key)? {
            None => {
                let obj = self
                    .doc
                    .put_object(ROOT, root_key(kind, &key), ObjType::Map)?;
                for (field, value) in fields.spec.into_iter().chain(fields.meta) {
                    if unwritten(field).as_ref() != Some(&value) {
                        self.doc.put(&obj, field, value)?;
                    }
                }
                if let Some((template, limit)) = fields.template {
                    self.put_template(&obj, template, limit)?;
                }
                self.doc.put(&obj, "generation", ScalarValue::counter(1))?;
                self.doc
                    .put(&obj, "created", ScalarValue::Int(self.now_ms))?;
                Outcome::Created
            }
            Some(obj) => {
                let mut spec_changed = false;
                for (field, value) in fields.spec {
                    spec_changed |= self.put_changed(&obj, field, value)?;
                }
                if let Some((template, limit)) = fields.template {
                    spec_changed |= self.put_template(&obj, template, limit)?;
                }
                let mut meta_changed = false;
                for (field, value) in fields.meta {
                    meta_changed |= self.put_changed(&obj, field, value)?;
                }
                if spec_changed {
                    self.doc.increment(&obj, "generation", 1)?;
                }
                if spec_changed || meta_changed {
                    Outcome::Configured
                } else {
                    Outcome::Unchanged
                }
            }
        };
        self.commit(outcome, message);
        Ok(outcome)
    }

    /// Sets a deployment's replica count, leaving every other field as it is.
    pub fn scale(&mut self, key: &ObjectKey, replicas: u32) -> Result<Outcome, StateError> {
        let kind = Kind::Deployment;
        let obj = self
            .object_id(kind, key)?
            .ok_or_else(|| StateError::NotFound {
                kind,
                key: key.clone(),
            })?;
        let value = ScalarValue::Int(i64::from(replicas));
        if self.scalar(&obj, "replicas")? == Some(value.clone()) {
            return Ok(Outcome::Unchanged);
        }
        self.doc.put(&obj, "replicas", value)?;
        self.doc.increment(&obj, "generation", 1)?;
        self.commit(Outcome::Scaled, format!("scale {kind} {key} to {replicas}"));
        Ok(Outcome::Scaled)
    }

    /// Deletes an object; a namespace goes with every object in it (one that was never made
    /// but holds objects is deleted as well: its objects go).
    pub fn delete(&mut self, kind: Kind, key: &ObjectKey) -> Result<Outcome, StateError> {
        let mut roots = vec![];
        if self.object_id(kind, key)?.is_some() {
            roots.push(root_key(kind, key));
        }
        if kind == Kind::Namespace {
            let within = |k: &Kind| format!("{}/{}/", kind_prefix(*k), key.name);
            let prefixes: Vec<String> = Kind::NAMESPACED.iter().map(within).collect();
            let keys = self.doc.keys(ROOT);
            roots.extend(keys.filter(|root| prefixes.iter().any(|p| root.starts_with(p))));
        }
        if roots.is_empty() {
            return Err(StateError::NotFound {
                kind,
                key: key.clone(),
            });
        }
        for root in roots {
            self.doc.delete(ROOT, root)?;
        }
        self.commit(Outcome::Deleted, format!("delete {kind} {key}"));
        Ok(Outcome::Deleted)
    }

    fn commit(&mut self, outcome: Outcome, message: String) {
        if outcome != Outcome::Unchanged {
            self.doc
                .commit_with(CommitOptions::default().with_message(message).with_time(0));
        }
    }

    /// Writes `value` unless the field holds it already ([`Self::stored`]); whether it wrote.
    fn put_changed(
        &mut self,
        obj: &ObjId,
        field: &str,
        value: ScalarValue,
    ) -> Result<bool, StateError> {
        if self.stored(obj, field)?.as_ref() == Some(&value) {
            return Ok(false);
        }
        self.doc.put(obj, field, value)?;
        Ok(true)
    }

    fn object_id(&self, kind: Kind, key: &ObjectKey) -> Result<Option<ObjId>, StateError> {
        Ok(match self.doc.get(ROOT, root_key(kind, key))? {
            Some((Value::Object(ObjType::Map), id)) => Some(id),
            _ => None,
        })
    }

    /// What a field holds, or what it reads as where it is missing ([`unwritten`]).
    fn stored(&self, obj: &ObjId, field: &str) -> Result<Option<ScalarValue>, StateError> {
        Ok(self.scalar(obj, field)?.or_else(|| unwritten(field)))
    }

    fn scalar(&self, obj: &ObjId, field: &str) -> Result<Option<ScalarValue>, StateError> {
        Ok(match self.doc.get(obj, field)? {
            Some((Value::Scalar(v), _)) => Some(v.into_owned()),
            _ => None,
        })
    }

    /// Reads every object out of the document; the next `refresh` starts from here.
    pub fn snapshot(&mut self) -> Snapshot {
        let mut snapshot = Snapshot::default();
        for root in self.doc.keys(ROOT) {
            self.read_root(&mut snapshot, &root);
        }
        snapshot.heads = self.sorted_heads();
        snapshot
    }

    /// Brings `snapshot`, one read from this document before (by `snapshot` or `refresh`, or
    /// an empty one), up to date: only the objects that the changes since its heads touched
    /// are read again, so a write costs what it changed, not what the document holds. A
    /// snapshot whose heads the document does not hold (read before a rollback) is read whole.
    pub fn refresh(&mut self, snapshot: &mut Snapshot) {
        let since: Vec<ChangeHash> = snapshot
            .heads
            .iter()
            .filter_map(|h| h.parse().ok())
            .collect();
        let held = since.len() == snapshot.heads.len()
            && since
                .iter()
                .all(|h| self.doc.get_change_by_hash(h).is_some());
        if !held {
            *snapshot = self.snapshot();
            return;
        }
        for root in self.touched_roots(&since) {
            snapshot
                .unreadable
                .retain(|entry| !entry.starts_with(&format!("{root}: ")));
            if let Some(peer) = root.strip_prefix(peers::PREFIX) {
                snapshot.peers.set(peer, None);
            } else if let Some(name) = root.strip_prefix(images::PREFIX) {
                snapshot.images.remove(name);
            } else if let Some((kind, key)) = parse_root(&root) {
                match kind {
                    "deployments" => drop(snapshot.deployments.remove(&key)),
                    "services" => drop(snapshot.services.remove(&key)),
                    "namespaces" => drop(snapshot.namespaces.remove(&key)),
                    _ => {}
                }
            }
            if self.doc.get(ROOT, &root).ok().flatten().is_some() {
                self.read_root(snapshot, &root);
            }
        }
        snapshot.heads = self.sorted_heads();
    }

    /// The root keys that the changes made since `heads` touch: written at the root (an object
    /// created or deleted) or holding an object that had a field written. Read from the
    /// changes, not from automerge's diff: in automerge 0.12 a diff can leave out a root key
    /// whose winning value changed because a delete uncovered a concurrent one (the test
    /// `refresh_sees_an_object_uncovered_by_a_delete`).
    fn touched_roots(&mut self, heads: &[ChangeHash]) -> BTreeSet<String> {
        let mut roots = BTreeSet::new();
        let mut objects = BTreeMap::new();
        for change in self.doc.get_changes(heads) {
            for op in change.decode().operations {
                let root = match (op.obj, op.key) {
                    (legacy::ObjectId::Root, legacy::Key::Map(key)) => Some(key.to_string()),
                    (legacy::ObjectId::Id(id), _) => objects
                        .entry(id.to_string())
                        .or_insert_with_key(|id| self.root_of(id))
                        .clone(),
                    _ => None,
                };
                roots.extend(root);
            }
        }
        roots
    }

    /// The root key under which the object `id` (`counter@actor`) was created, seen or not.
    fn root_of(&self, id: &str) -> Option<String> {
        let obj = self.doc.import_obj(id).ok()?;
        match self.doc.parents(obj).ok()?.path().first() {
            Some((_, Prop::Map(root))) => Some(root.clone()),
            _ => None,
        }
    }

    /// The heads as hex strings, sorted.
    fn sorted_heads(&mut self) -> Vec<String> {
        let mut heads: Vec<String> = self.heads().iter().map(|h| h.to_string()).collect();
        heads.sort();
        heads
    }

    /// Reads the object at root key `root` into `snapshot` (or notes why it cannot).
    fn read_root(&self, snapshot: &mut Snapshot, root: &str) {
        if let Some(peer) = root.strip_prefix(peers::PREFIX) {
            let read = self.scalar(&ROOT, root).map_err(|e| e.to_string());
            match read.and_then(|v| Admission::read(&v.unwrap_or(ScalarValue::Null))) {
                Ok(admission) => snapshot.peers.set(peer, Some(admission)),
                Err(why) => snapshot.unreadable.push(format!("{root}: {why}")),
            }
            return;
        }
        if let Some(name) = root.strip_prefix(images::PREFIX) {
            let read = self.scalar(&ROOT, root).map_err(|e| e.to_string());
            match read.and_then(|v| PushedImage::read(&v.unwrap_or(ScalarValue::Null))) {
                Ok(image) => drop(snapshot.images.insert(name.to_string(), image)),
                Err(why) => snapshot.unreadable.push(format!("{root}: {why}")),
            }
            return;
        }
        let Some((prefix, key)) = parse_root(root) else {
            return;
        };
        let read = match prefix {
            "deployments" => self
                .read_deployment(root, key.clone())
                .map(|d| drop(snapshot.deployments.insert(key, Arc::new(d)))),
            "services" => self
                .read_service(root, key.clone())
                .map(|s| drop(snapshot.services.insert(key, Arc::new(s)))),
            "namespaces" => {
                let meta = self
                    .map_at(root)
                    .and_then(|obj| self.read_meta(&obj, key.clone()));
                meta.map(|meta| {
                    drop(
                        snapshot
                            .namespaces
                            .insert(key, Arc::new(Namespace { meta })),
                    )
                })
            }
            _ => Err(format!("unknown kind prefix {prefix:?}")),
        };
        if let Err(why) = read {
            snapshot.unreadable.push(format!("{root}: {why}"));
        }
    }

    fn read_deployment(&self, root: &str, key: ObjectKey) -> Result<Deployment, String> {
        let obj = self.map_at(root)?;
        let count = |field: &str| {
            let n = self.read_int(&obj, field)?;
            u32::try_from(n).map_err(|_| format!("{field} {n}"))
        };
        let paused = matches!(
            self.stored(&obj, "paused"),
            Ok(Some(ScalarValue::Boolean(true)))
        );
        let paused = Some(paused);
        Ok(Deployment {
            meta: self.read_meta(&obj, key)?,
            spec: DeploymentSpec {
                replicas: count("replicas")?,
                selector: self.read_json(&obj, "selector")?,
                template: self.read_json(&obj, "template")?,
                strategy: self.read_json(&obj, "strategy")?,
                min_ready_seconds: count("minReadySeconds")?,
                progress_deadline_seconds: count("progressDeadlineSeconds")?,
                revision_history_limit: count("revisionHistoryLimit")?,
                paused,
            },
            history: self.read_history(&obj),
        })
    }

    fn read_service(&self, root: &str, key: ObjectKey) -> Result<Service, String> {
        let obj = self.map_at(root)?;
        Ok(Service {
            meta: self.read_meta(&obj, key)?,
            spec: self.read_json(&obj, "spec")?,
        })
    }

    fn read_meta(&self, obj: &ObjId, key: ObjectKey) -> Result<Meta, String> {
        Ok(Meta {
            namespace: key.namespace,
            name: key.name,
            labels: self.read_json(obj, "labels")?,
            annotations: self.read_json(obj, "annotations")?,
            generation: self.read_int(obj, "generation")? as u64,
            uid: uid(obj),
            created_ms: self.read_int(obj, "created").unwrap_or(0),
        })
    }

    fn map_at(&self, root: &str) -> Result<ObjId, String> {
        match self.doc.get(ROOT, root) {
            Ok(Some((Value::Object(ObjType::Map), id))) => Ok(id),
            other => Err(format!("expected a map, found {other:?}")),
        }
    }

    fn read_int(&self, obj: &ObjId, field: &str) -> Result<i64, String> {
        self.stored(obj, field)
            .map_err(|e| e.to_string())?
            .and_then(|v| v.as_i64())
            .ok_or_else(|| format!("{field}: missing or not a number"))
    }

    fn read_json<T: DeserializeOwned>(&self, obj: &ObjId, field: &str) -> Result<T, String> {
        match self.stored(obj, field).map_err(|e| e.to_string())? {
            Some(ScalarValue::Str(s)) => {
                serde_json::from_str(&s).map_err(|e| format!("{field}: {e}"))
            }
            other => Err(format!("{field}: expected a JSON string, found {other:?}")),
        }
    }

    /// The next sync message for a peer, or `None` when the peer is known to be up to date.
    pub fn sync_message(&mut self, peer: &mut PeerSync) -> Option<Vec<u8>> {
        self.doc
            .sync()
            .generate_sync_message(&mut peer.0)
            .map(|m| m.encode())
    }

    /// Applies a peer's sync message. Returns true if the document changed.
    pub fn receive_sync(
        &mut self,
        peer: &mut PeerSync,
        message: &[u8],
    ) -> Result<bool, StateError> {
        let message = sync::Message::decode(message)
            .map_err(|e| StateError::BadSyncMessage(e.to_string()))?;
        for have in &message.have {
            check_bloom(&have.bloom.to_bytes()).map_err(StateError::BadSyncMessage)?;
        }
        for chunk in message.changes.iter() {
            check_chunks(chunk).map_err(StateError::BadSyncMessage)?;
        }
        // `get_heads` closes any open transaction, which `receive_sync_message` would.
        let before = self.doc.get_heads();
        // Applied with a patch log of its own, dropped at once: automerge 0.12 records the
        // patches of a received change in the document's log even while that is inactive,
        // and nothing ever empties it (at 1,000 simulated nodes, 20 KB a node, 6 % of the
        // process's peak).
        self.doc.sync().receive_sync_message_log_patches(
            &mut peer.0,
            message,
            &mut PatchLog::null(),
        )?;
        Ok(self.doc.get_heads() != before)
    }
}

/// automerge's chunks: a document, a change, a compressed change, a bundle.
const CHUNK_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const CHUNK_BUNDLE: u8 = 3;

/// Whether `bytes` are whole automerge chunks of the kinds a saved document and a sync
/// message hold (documents and changes), each header read: magic, checksum, type, length.
/// A bundle is refused: nothing Weeble runs writes one, and automerge 0.12 expands a
/// bundle's run-length columns at their word (94 bytes asked for gigabytes; the `state_file`
/// fuzz target found it, and a sync message's changes are read by the same loader).
fn check_chunks(mut bytes: &[u8]) -> Result<(), String> {
    while !bytes.is_empty() {
        let bad = |what: &str| Err(format!("not automerge chunks: {what}"));
        let Some((header, rest)) = bytes.split_first_chunk::<9>() else {
            return bad("a chunk header cut short");
        };
        if header[..4] != CHUNK_MAGIC {
            return bad("a chunk without automerge's magic bytes");
        }
        match header[8] {
            0..CHUNK_BUNDLE => {}
            CHUNK_BUNDLE => return bad("a bundle, which Weeble never writes"),
            other => return bad(&format!("a chunk of unknown type {other}")),
        }
        let mut rest = rest;
        let Some(len) = leb128(&mut rest) else {
            return bad("a chunk length that does not read");
        };
        match usize::try_from(len).ok().and_then(|len| rest.get(len..)) {
            Some(after) => bytes = after,
            None => return bad("a chunk longer than what holds it"),
        }
    }
    Ok(())
}

/// An unsigned LEB128 number of at most 64 bits, read off the front of `bytes`.
fn leb128(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// automerge's bloom filter parameters: 10 bits an entry, 7 probes.
const BLOOM_BITS_PER_ENTRY: u64 = 10;
const BLOOM_PROBES: u64 = 7;

/// Whether a peer's bloom filter (in a sync message's `have`) is one automerge writes: empty,
/// or its entries, 10 bits an entry, 7 probes, and the bits they take. automerge 0.12 trusts
/// the numbers: a filter that claims entries but holds no bits divides by zero when the node
/// answers, one that claims billions of probes allocates them (the `sync` fuzz target found
/// both).
fn check_bloom(bytes: &[u8]) -> Result<(), String> {
    if bytes.is_empty() {
        return Ok(());
    }
    let mut rest = bytes;
    let mut next = || leb128(&mut rest);
    let (entries, bits_per_entry, probes) = (next(), next(), next());
    match (entries, bits_per_entry, probes) {
        (Some(entries), Some(BLOOM_BITS_PER_ENTRY), Some(BLOOM_PROBES))
            if entries > 0 && rest.len() as u64 == (entries * BLOOM_BITS_PER_ENTRY).div_ceil(8) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "a bloom filter automerge does not write ({entries:?} entries, {bits_per_entry:?} \
             bits each, {probes:?} probes, {} bytes of bits)",
            rest.len()
        )),
    }
}

mod history;
pub mod images;
pub mod peers;
pub use images::PushedImage;
pub use peers::{Admission, Admissions};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod convergence;
