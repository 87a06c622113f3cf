//! Events, as `kubectl get events` and `kubectl describe` show them: what a node noticed
//! happen to pods (placed, pulling an image, started, failing, restarted, unready, stopped), deployments (scaled,
//! a new revision) and nodes (not ready, ready again). A [`Recorder`] compares what the node
//! knows now with what it knew at its last look and records an event for each difference.
//!
//! Each node records what it sees: every node hears every report, so every node tells much
//! the same story, each at the times it heard it. Events are kept in memory, the newest
//! [`Recorder`]'s limit of them, and are not written to the desired state (Kubernetes keeps
//! them an hour; a restarted node starts a new story).

use super::{ObjectMeta, Resource, known_time, pod_uid};
use crate::membership::{Liveness, MemberList};
use crate::status::{Phase, StatusTable};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use weeble_crdt::{self as crdt, Snapshot};

/// A Kubernetes `Event` (core/v1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub involved_object: InvolvedObject,
    pub reason: String,
    pub message: String,
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub type_: String,
    pub first_timestamp: String,
    pub last_timestamp: String,
    pub count: u32,
    pub source: EventSource,
}

resource!(Event, "v1");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvolvedObject {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSource {
    pub component: String,
    pub host: String,
}

/// What the recorder knew of a pod at its last look.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PodSeen {
    phase: Phase,
    reason: Option<String>,
    message: Option<String>,
    ready: bool,
    restarts: u32,
}

/// Records events from the differences between two looks ([module docs](self)).
#[derive(Debug)]
pub struct Recorder {
    /// The node that records (the events' source host).
    node: String,
    limit: usize,
    /// Numbers the events' names.
    counter: u64,
    events: VecDeque<Event>,
    /// At the last look: pods by (namespace, name, node, uid); deployments' replicas and
    /// templates; nodes' liveness. `None` before the first look, which records nothing.
    pods: Option<BTreeMap<(String, String, String, String), PodSeen>>,
    deployments: BTreeMap<crdt::ObjectKey, (u32, String)>,
    nodes: BTreeMap<String, Liveness>,
}

impl Recorder {
    /// A recorder for `node` keeping its newest `limit` events.
    pub fn new(node: &str, limit: usize) -> Self {
        Recorder {
            node: node.into(),
            limit,
            counter: 0,
            events: VecDeque::new(),
            pods: None,
            deployments: BTreeMap::new(),
            nodes: BTreeMap::new(),
        }
    }

    /// The events kept, oldest first.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }

    /// Looks at what the node knows now (at `now_ms`) and records what changed.
    pub fn look(
        &mut self,
        now_ms: i64,
        snapshot: &Snapshot,
        table: &StatusTable,
        members: &MemberList,
    ) {
        let first = self.pods.is_none();
        self.look_at_pods(now_ms, snapshot, table, first);
        self.look_at_deployments(now_ms, snapshot, first);
        self.look_at_nodes(now_ms, members, first);
    }

    fn look_at_pods(&mut self, now_ms: i64, snapshot: &Snapshot, table: &StatusTable, first: bool) {
        let mut now = BTreeMap::new();
        for p in table.pods() {
            let key = crdt::ObjectKey::new(&p.namespace, &p.deployment);
            let Some(d) = snapshot.deployments.get(&key) else {
                continue;
            };
            // A pod whose containers are being made is not one yet (its uid comes with them),
            // unless its image is being pulled.
            let creating = p.reason.as_deref() == Some(crate::status::CONTAINER_CREATING);
            let container = p.container_ids.first().map(String::as_str);
            if creating && container.is_none() && p.message.is_none() {
                continue;
            }
            let uid = container
                .map(|c| pod_uid(&d.meta, &p.name, &p.node, c))
                .unwrap_or_default();
            let seen = PodSeen {
                phase: p.phase,
                reason: p.reason.clone(),
                message: p.message.clone(),
                ready: p.ready,
                restarts: p.restarts,
            };
            now.insert(
                (p.namespace.clone(), p.name.clone(), p.node.clone(), uid),
                seen,
            );
        }
        let before = self.pods.take().unwrap_or_default();
        if !first {
            for ((ns, name, node, uid), seen) in &now {
                let pod = |reason: &str, message: String, warning: bool| {
                    (
                        ns.as_str(),
                        name.as_str(),
                        uid.as_str(),
                        reason.to_string(),
                        message,
                        warning,
                    )
                };
                let mut happened = vec![];
                let old = before.get(&(ns.clone(), name.clone(), node.clone(), uid.clone()));
                // A pod with no container yet (its image missing, say) has no uid: getting its
                // first container, it is the same pod, placed already.
                let unmade = (ns.clone(), name.clone(), node.clone(), String::new());
                if old.is_none() && !before.contains_key(&unmade) {
                    happened.push(pod(
                        "Scheduled",
                        format!("Successfully assigned {ns}/{name} to {node}"),
                        false,
                    ));
                }
                let was = |f: fn(&PodSeen) -> bool| old.is_some_and(f);
                if seen.phase == Phase::Running && !was(|o| o.phase == Phase::Running) {
                    happened.push(pod("Started", "Started the pod's containers".into(), false));
                }
                let creating = seen.reason.as_deref() == Some(crate::status::CONTAINER_CREATING);
                if let Some(reason) = &seen.reason
                    && old.is_none_or(|o| o.reason.as_ref() != Some(reason))
                    && !creating
                {
                    let message = seen.message.clone().unwrap_or_else(|| reason.clone());
                    happened.push(pod(reason, message, true));
                }
                if let Some(pulling) = seen.message.as_ref().filter(|_| creating)
                    && old.is_none_or(|o| o.message.as_ref() != Some(pulling))
                {
                    happened.push(pod("Pulling", pulling.clone(), false));
                }
                if let Some(o) = old.filter(|o| seen.restarts > o.restarts) {
                    let message = format!(
                        "Restarted the pod's containers ({} restarts, {} before)",
                        seen.restarts, o.restarts
                    );
                    happened.push(pod("BackOff", message, true));
                }
                if !seen.ready && seen.phase == Phase::Running && was(|o| o.ready) {
                    happened.push(pod(
                        "Unhealthy",
                        "The pod is no longer ready (a readiness probe failed)".into(),
                        true,
                    ));
                }
                for (ns, name, uid, reason, message, warning) in happened {
                    self.record(
                        now_ms,
                        ("Pod", "v1", ns, name, uid),
                        &reason,
                        message,
                        warning,
                    );
                }
            }
            for (ns, name, node, uid) in before.keys().filter(|k| !k.3.is_empty()) {
                if !now.contains_key(&(ns.clone(), name.clone(), node.clone(), uid.clone())) {
                    let message = format!("Stopping the pod's containers on {node}");
                    self.record(
                        now_ms,
                        ("Pod", "v1", ns, name, uid),
                        "Killing",
                        message,
                        false,
                    );
                }
            }
        }
        self.pods = Some(now);
    }

    fn look_at_deployments(&mut self, now_ms: i64, snapshot: &Snapshot, first: bool) {
        let mut now = BTreeMap::new();
        for (key, d) in &snapshot.deployments {
            let (replicas, hash) = (d.spec.replicas, d.spec.template.hash());
            if !first {
                let rs = format!("{}-{hash}", key.name);
                let message = match self.deployments.get(key) {
                    None => Some(format!("Scaled up replica set {rs} to {replicas}")),
                    Some((_, old)) if *old != hash => Some(format!(
                        "Scaled up replica set {rs} to {replicas} (revision {})",
                        d.history.revision
                    )),
                    Some((old, _)) if *old != replicas => {
                        let way = if replicas > *old { "up" } else { "down" };
                        Some(format!(
                            "Scaled {way} replica set {rs} from {old} to {replicas}"
                        ))
                    }
                    Some(_) => None,
                };
                if let Some(message) = message {
                    let object = (
                        "Deployment",
                        "apps/v1",
                        key.namespace.as_str(),
                        key.name.as_str(),
                        d.meta.uid.as_str(),
                    );
                    self.record(now_ms, object, "ScalingReplicaSet", message, false);
                }
            }
            now.insert(key.clone(), (replicas, hash));
        }
        self.deployments = now;
    }

    fn look_at_nodes(&mut self, now_ms: i64, members: &MemberList, first: bool) {
        let mut now = BTreeMap::new();
        for (m, liveness) in members.iter() {
            let old = self.nodes.get(&m.name);
            if !first && old != Some(liveness) {
                let uid = crdt::uid_of(&format!("node/{}", m.peer_id));
                let object = ("Node", "v1", "", m.name.as_str(), uid.as_str());
                match liveness {
                    Liveness::Alive => self.record(
                        now_ms,
                        object,
                        "NodeReady",
                        format!("Node {} is alive", m.name),
                        false,
                    ),
                    other => {
                        let message = format!("Node {} is {other} (SWIM)", m.name);
                        self.record(now_ms, object, "NodeNotReady", message, true)
                    }
                }
            }
            now.insert(m.name.clone(), *liveness);
        }
        self.nodes = now;
    }

    /// Records one event about `(kind, api_version, namespace, name, uid)`.
    fn record(
        &mut self,
        now_ms: i64,
        (kind, api_version, ns, name, uid): (&str, &str, &str, &str, &str),
        reason: &str,
        message: String,
        warning: bool,
    ) {
        self.counter += 1;
        let at = known_time(now_ms).unwrap_or_default();
        let event_name = format!("{name}.{:x}{:04x}", now_ms, self.counter % 0x10000);
        self.events.push_back(Event {
            api_version: Event::API_VERSION.into(),
            kind: Event::KIND.into(),
            metadata: ObjectMeta {
                name: event_name.clone(),
                namespace: Some(
                    if ns.is_empty() {
                        crdt::DEFAULT_NAMESPACE
                    } else {
                        ns
                    }
                    .into(),
                ),
                uid: Some(crdt::uid_of(&format!("event/{}/{event_name}", self.node))),
                creation_timestamp: Some(at.clone()),
                ..ObjectMeta::default()
            },
            involved_object: InvolvedObject {
                api_version: api_version.into(),
                kind: kind.into(),
                namespace: ns.into(),
                name: name.into(),
                uid: uid.into(),
            },
            reason: reason.into(),
            message,
            type_: if warning { "Warning" } else { "Normal" }.into(),
            first_timestamp: at.clone(),
            last_timestamp: at,
            count: 1,
            source: EventSource {
                component: "weeble".into(),
                host: self.node.clone(),
            },
        });
        while self.events.len() > self.limit {
            self.events.pop_front();
        }
    }
}
