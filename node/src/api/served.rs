//! The resources the API lists and watches, each a [`Served`]: what a list of it reads from
//! the node (taken at one moment), how it walks its objects in order from a continue token,
//! and which fields a field selector may name. Lists, tables, watches and the journal that
//! versions them ([`super::watch`]) all read objects through it, so they agree.

use super::list::{self, BadToken};
use crate::agent::Agent;
use crate::clock;
use crate::membership::{Liveness, MemberId};
use crate::placement::ReplicaKey;
use crate::services::Endpoints as AllEndpoints;
use crate::status::{PodStatus, StatusTable};
use crate::view::View;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::ops::Bound;
use std::sync::Arc;
use weeble_core::objects::event::Event;
use weeble_core::objects::replicaset::ReplicaSet;
use weeble_core::objects::table::Tabled;
use weeble_core::objects::{self, Object};
use weeble_core::rollout;
use weeble_crdt::{self as crdt, ObjectKey};

/// Pushes one object and its continue token; false when the walk must stop.
pub type Push<'a, T> = dyn FnMut(String, T) -> bool + 'a;

/// A resource the API lists ([module docs](self)).
pub trait Served: Sized + Send + 'static {
    type Object: Object + Tabled + Send + 'static;
    /// Where a list resumes, read from a continue token.
    type After: Send + 'static;
    /// Its plural, as paths name it (`pods`).
    const RESOURCE: &'static str;
    /// The fields a field selector may name besides `metadata.name` and `metadata.namespace`.
    const FIELDS: &'static [&'static str] = &[];
    /// Whether its objects live in namespaces (a node, a namespace, a peer do not).
    const NAMESPACED: bool = true;

    /// The place after the item whose continue token is `token`.
    fn after(token: &str) -> Result<Self::After, BadToken>;

    /// What a list reads, as the node holds it now.
    fn source(agent: &Agent) -> Self;

    /// Every object (of namespace `ns`) after `after`, in the order of their tokens, until
    /// `push` says stop.
    fn each(&self, ns: Option<&str>, after: Option<Self::After>, push: &mut Push<Self::Object>);

    /// The object `key` (an empty namespace for an object of none), found directly: no list
    /// of every object is made.
    fn one(agent: &Agent, key: &ObjectKey) -> Option<Self::Object>;
}

/// An object's key in the journal: its namespace (empty for a node) and name.
pub fn key_of(object: &impl Object) -> ObjectKey {
    let meta = object.metadata();
    ObjectKey::new(meta.namespace.clone().unwrap_or_default(), &meta.name)
}

/// Walks a map keyed by [`ObjectKey`] from a continue token on.
fn each_keyed<V, T>(
    map: &BTreeMap<ObjectKey, V>,
    ns: Option<&str>,
    after: Option<ObjectKey>,
    push: &mut Push<T>,
    read: impl Fn(&ObjectKey, &V) -> T,
) {
    for (key, value) in list::objects_after(map, ns, after) {
        if !push(list::object_token(key), read(key, value)) {
            return;
        }
    }
}

/// Reads a name from a continue token (objects of no namespace).
fn named_after(token: &str) -> Result<String, BadToken> {
    list::parse_token(token, 1).map(|p| p[0].to_string())
}

/// Deployments: the view, each one's ready replicas, and its rollout as this node sees it.
pub struct Deployments {
    view: Arc<View>,
    ready: BTreeMap<ObjectKey, usize>,
    rollouts: BTreeMap<ObjectKey, rollout::Report>,
}

impl Served for Deployments {
    type Object = objects::Deployment;
    type After = ObjectKey;
    const RESOURCE: &'static str = "deployments";

    fn after(token: &str) -> Result<ObjectKey, BadToken> {
        list::object_token_key(token)
    }

    fn source(agent: &Agent) -> Self {
        let (view, table) = (agent.view.borrow().clone(), agent.table.borrow().clone());
        let ready = ready_replicas(&view, &table, None);
        let now_ms = clock::now_ms();
        let deployments = view.snapshot.deployments.values().map(|d| &**d);
        let mut seen = rollout::seen_of(deployments, &table, &view.members, now_ms);
        let rollouts = view
            .snapshot
            .deployments
            .iter()
            .map(|(key, d)| {
                let slots = seen.remove(&(key.namespace.as_str(), key.name.as_str()));
                let report = rollout::report(d, &slots.unwrap_or_default(), now_ms);
                (key.clone(), report)
            })
            .collect();
        Deployments {
            view,
            ready,
            rollouts,
        }
    }

    fn each(&self, ns: Option<&str>, after: Option<ObjectKey>, push: &mut Push<Self::Object>) {
        each_keyed(
            &self.view.snapshot.deployments,
            ns,
            after,
            push,
            |key, d| {
                let ready = self.ready.get(key).copied().unwrap_or(0);
                objects::Deployment::new(d, &self.rollouts[key], ready)
            },
        );
    }

    fn one(agent: &Agent, key: &ObjectKey) -> Option<Self::Object> {
        let (d, report, ready) = Deployments::one_source(agent, key)?;
        Some(objects::Deployment::new(&d, &report, ready))
    }
}

impl Deployments {
    /// Deployment `key`, its rollout as this node sees it, and its replicas running ready.
    fn one_source(
        agent: &Agent,
        key: &ObjectKey,
    ) -> Option<(Arc<crdt::Deployment>, rollout::Report, usize)> {
        let (view, table) = (agent.view.borrow().clone(), agent.table.borrow().clone());
        let d = view.snapshot.deployments.get(key)?;
        let ready = ready_replicas(&view, &table, Some(key)).remove(key);
        let now_ms = clock::now_ms();
        let seen = rollout::seen(d, &table, &view.members, now_ms);
        let report = rollout::report(d, &seen, now_ms);
        Some((d.clone(), report, ready.unwrap_or(0)))
    }
}

/// The revisions of every deployment as ReplicaSets
/// ([`weeble_core::objects::replicaset`]), in the order of their deployments.
pub struct ReplicaSets(Deployments);

impl Served for ReplicaSets {
    type Object = ReplicaSet;
    /// A deployment and the index of a revision among its own.
    type After = (ObjectKey, u32);
    const RESOURCE: &'static str = "replicasets";

    fn after(token: &str) -> Result<(ObjectKey, u32), BadToken> {
        Pods::after(token)
    }

    fn source(agent: &Agent) -> Self {
        ReplicaSets(Deployments::source(agent))
    }

    fn each(
        &self,
        ns: Option<&str>,
        after: Option<(ObjectKey, u32)>,
        push: &mut Push<Self::Object>,
    ) {
        let deployments = &self.0.view.snapshot.deployments;
        let (start, skip) = match after {
            Some((key, index)) => (Bound::Included(key.clone()), Some((key, index))),
            None => (Bound::Unbounded, None),
        };
        for (key, d) in list::objects_from(deployments, ns, start) {
            let first = match &skip {
                Some((after, index)) if after == key => *index as usize + 1,
                _ => 0,
            };
            let revisions = ReplicaSet::of(d, &self.0.rollouts[key]);
            for (index, rs) in revisions.into_iter().enumerate().skip(first) {
                let token = format!("{}/{}/{index}", key.namespace, key.name);
                if !push(token, rs) {
                    return;
                }
            }
        }
    }

    fn one(agent: &Agent, key: &ObjectKey) -> Option<Self::Object> {
        let (deployment, _) = key.name.rsplit_once('-')?;
        let d = Deployments::one_source(agent, &ObjectKey::new(&key.namespace, deployment))?;
        let revisions = ReplicaSet::of(&d.0, &d.1);
        revisions
            .into_iter()
            .find(|rs| rs.metadata.meta.name == key.name)
    }
}

/// Per deployment (or for `only` one), how many of its replicas run ready on the node
/// placement gives them to (a copy still running on an old owner does not count twice).
/// Reads only what nodes report, never the list of every replica.
fn ready_replicas(
    view: &View,
    table: &StatusTable,
    only: Option<&ObjectKey>,
) -> BTreeMap<ObjectKey, usize> {
    let mut ready = BTreeMap::new();
    for status in table.nodes() {
        let node = &status.node;
        for p in status.pods.iter().filter(|p| p.ready) {
            if only.is_some_and(|k| k.namespace != p.namespace || k.name != p.deployment) {
                continue;
            }
            let Some(index) = p
                .name
                .strip_prefix(p.deployment.as_str())
                .and_then(|rest| rest.strip_prefix('-'))
                .and_then(|i| i.parse().ok())
            else {
                continue;
            };
            let replica = ReplicaKey {
                deployment: ObjectKey::new(&p.namespace, &p.deployment),
                index,
            };
            if view.placement.owner(&replica) == Some(node.as_str()) {
                *ready.entry(replica.deployment).or_default() += 1;
            }
        }
    }
    ready
}

/// Services, each at this node's service address.
pub struct Services {
    view: Arc<View>,
    ip: IpAddr,
}

impl Served for Services {
    type Object = objects::Service;
    type After = ObjectKey;
    const RESOURCE: &'static str = "services";

    fn after(token: &str) -> Result<ObjectKey, BadToken> {
        list::object_token_key(token)
    }

    fn source(agent: &Agent) -> Self {
        Services {
            view: agent.view.borrow().clone(),
            ip: agent.config.service_ip(),
        }
    }

    fn each(&self, ns: Option<&str>, after: Option<ObjectKey>, push: &mut Push<Self::Object>) {
        each_keyed(&self.view.snapshot.services, ns, after, push, |_, s| {
            objects::Service::new(s, self.ip)
        });
    }

    fn one(agent: &Agent, key: &ObjectKey) -> Option<Self::Object> {
        let s = Services::source(agent);
        let service = s.view.snapshot.services.get(key)?;
        Some(objects::Service::new(service, s.ip))
    }
}

/// Every service's endpoints, as this node resolves them.
pub struct Endpoints {
    endpoints: Arc<AllEndpoints>,
    /// For the services they are of.
    view: Arc<View>,
}

impl Endpoints {
    /// The endpoints of service `key`, with `ports`.
    fn of(&self, key: &ObjectKey, ports: &[crate::services::PortEndpoints]) -> objects::Endpoints {
        let service = self.view.snapshot.services.get(key).map(|s| &s.meta);
        objects::Endpoints::new(key, ports, service)
    }
}

impl Served for Endpoints {
    type Object = objects::Endpoints;
    type After = ObjectKey;
    const RESOURCE: &'static str = "endpoints";

    fn after(token: &str) -> Result<ObjectKey, BadToken> {
        list::object_token_key(token)
    }

    fn source(agent: &Agent) -> Self {
        Endpoints {
            endpoints: agent.endpoints.borrow().clone(),
            view: agent.view.borrow().clone(),
        }
    }

    fn each(&self, ns: Option<&str>, after: Option<ObjectKey>, push: &mut Push<Self::Object>) {
        each_keyed(&self.endpoints, ns, after, push, |key, ports| {
            self.of(key, ports)
        });
    }

    fn one(agent: &Agent, key: &ObjectKey) -> Option<Self::Object> {
        let source = Endpoints::source(agent);
        let ports = source.endpoints.get(key)?;
        Some(source.of(key, ports))
    }
}

/// Pods: placement joined with what their nodes report.
pub struct Pods {
    view: Arc<View>,
    table: Arc<StatusTable>,
}

impl Served for Pods {
    type Object = objects::Pod;
    /// A deployment and a replica index.
    type After = (ObjectKey, u32);
    const RESOURCE: &'static str = "pods";
    const FIELDS: &'static [&'static str] =
        &["spec.nodeName", "spec.restartPolicy", "status.phase"];

    fn after(token: &str) -> Result<(ObjectKey, u32), BadToken> {
        let parts = list::parse_token(token, 3)?;
        let index: u32 = parts[2].parse().map_err(|_| BadToken)?;
        Ok((ObjectKey::new(parts[0], parts[1]), index))
    }

    fn source(agent: &Agent) -> Self {
        Pods {
            view: agent.view.borrow().clone(),
            table: agent.table.borrow().clone(),
        }
    }

    fn each(
        &self,
        ns: Option<&str>,
        after: Option<(ObjectKey, u32)>,
        push: &mut Push<Self::Object>,
    ) {
        let (view, table) = (&self.view, &self.table);
        // What each node reports, by (node, namespace, pod): made once per list, and only
        // as large as the pods that run.
        let reports: HashMap<(&str, &str, &str), &PodStatus> = table
            .nodes()
            .flat_map(|s| {
                s.pods
                    .iter()
                    .map(move |p| ((s.node.as_str(), p.namespace.as_str(), p.name.as_str()), p))
            })
            .collect();
        let (start, skip) = match after {
            Some((key, index)) => (Bound::Included(key.clone()), Some((key, index))),
            None => (Bound::Unbounded, None),
        };
        for (key, _) in list::objects_from(view.placement.deployments(), ns, start) {
            let Some(d) = view.snapshot.deployments.get(key) else {
                continue;
            };
            let first = match &skip {
                Some((after, index)) if after == key => *index as usize + 1,
                _ => 0,
            };
            for (index, owner) in view.placement.owners(key).enumerate().skip(first) {
                let name = format!("{}-{index}", key.name);
                let reported = owner
                    .ok()
                    .and_then(|node| reports.get(&(node, key.namespace.as_str(), name.as_str())));
                let token = format!("{}/{}/{index}", key.namespace, key.name);
                let pod = objects::Pod::desired(d, &name, owner, reported.copied());
                if !push(token, pod) {
                    return;
                }
            }
        }
    }

    fn one(agent: &Agent, key: &ObjectKey) -> Option<Self::Object> {
        let s = Pods::source(agent);
        find_pod(&s.view, &s.table, &key.namespace, &key.name)
    }
}

/// The pod `ns/name`, if `name` is `<deployment>-<index>` of a replica placement has: found
/// through placement.
fn find_pod(view: &View, table: &StatusTable, ns: &str, name: &str) -> Option<objects::Pod> {
    let (deployment, index) = name.rsplit_once('-')?;
    let index: usize = index
        .parse()
        .ok()
        .filter(|i: &usize| i.to_string() == index)?;
    let key = ObjectKey::new(ns, deployment);
    let d = view.snapshot.deployments.get(&key)?;
    let owner = view.placement.owners(&key).nth(index)?;
    let reported = owner.ok().and_then(|node| {
        table
            .report(node)?
            .pods
            .iter()
            .find(|p| p.namespace == ns && p.name == name)
    });
    Some(objects::Pod::desired(d, name, owner, reported))
}

/// Members as nodes, with the status each gossips.
pub struct Nodes {
    view: Arc<View>,
    table: Arc<StatusTable>,
}

impl Served for Nodes {
    type Object = objects::Node;
    type After = String;
    const RESOURCE: &'static str = "nodes";
    const FIELDS: &'static [&'static str] = &["spec.unschedulable"];
    const NAMESPACED: bool = false;

    fn after(token: &str) -> Result<String, BadToken> {
        named_after(token)
    }

    fn source(agent: &Agent) -> Self {
        Nodes {
            view: agent.view.borrow().clone(),
            table: agent.table.borrow().clone(),
        }
    }

    fn each(&self, _: Option<&str>, after: Option<String>, push: &mut Push<Self::Object>) {
        let mut members: Vec<&(MemberId, Liveness)> = self
            .view
            .members
            .iter()
            .filter(|(m, _)| after.as_ref().is_none_or(|a| m.name > *a))
            .collect();
        members.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        for member in members {
            if !push(member.0.name.clone(), node_view(member, &self.table)) {
                return;
            }
        }
    }

    fn one(agent: &Agent, key: &ObjectKey) -> Option<Self::Object> {
        let s = Nodes::source(agent);
        let member = s.view.members.iter().find(|(m, _)| m.name == key.name)?;
        Some(node_view(member, &s.table))
    }
}

/// A member as a Kubernetes Node, with the status it gossips.
fn node_view((m, liveness): &(MemberId, Liveness), table: &StatusTable) -> objects::Node {
    objects::Node::new(m, *liveness, table.report(&m.name).map(|n| &**n))
}

/// Every peer the members or the admission list name.
pub struct Peers(Arc<View>);

impl Served for Peers {
    type Object = objects::Peer;
    type After = String;
    const RESOURCE: &'static str = "peers";
    const NAMESPACED: bool = false;

    fn after(token: &str) -> Result<String, BadToken> {
        // Peer ids are base58: upper case is theirs.
        let fine = !token.is_empty() && token.len() <= 128;
        let fine = fine && token.bytes().all(|b| b.is_ascii_alphanumeric());
        fine.then(|| token.to_string()).ok_or(BadToken)
    }

    fn source(agent: &Agent) -> Self {
        Peers(agent.view.borrow().clone())
    }

    fn each(&self, _: Option<&str>, after: Option<String>, push: &mut Push<Self::Object>) {
        let peers = objects::Peer::all(&self.0.members, &self.0.snapshot.peers);
        let after = |p: &objects::Peer| after.as_ref().is_none_or(|a| p.metadata.name > *a);
        for peer in peers.into_iter().filter(after) {
            if !push(peer.metadata.name.clone(), peer) {
                return;
            }
        }
    }

    fn one(agent: &Agent, key: &ObjectKey) -> Option<Self::Object> {
        let view = agent.view.borrow().clone();
        let peers = objects::Peer::all(&view.members, &view.snapshot.peers);
        peers.into_iter().find(|p| p.metadata.name == key.name)
    }
}

/// The images the nodes' reports say they hold.
pub struct Images(Arc<StatusTable>);

impl Served for Images {
    type Object = objects::Image;
    type After = String;
    const RESOURCE: &'static str = "images";
    const NAMESPACED: bool = false;

    fn after(token: &str) -> Result<String, BadToken> {
        // Image ids are hex.
        let fine = !token.is_empty() && token.len() <= 128;
        let fine = fine && token.bytes().all(|b| b.is_ascii_hexdigit());
        fine.then(|| token.to_string()).ok_or(BadToken)
    }

    fn source(agent: &Agent) -> Self {
        Images(agent.table.borrow().clone())
    }

    fn each(&self, _: Option<&str>, after: Option<String>, push: &mut Push<Self::Object>) {
        let after = |i: &objects::Image| after.as_ref().is_none_or(|a| i.metadata.name > *a);
        for image in objects::Image::all(&self.0).into_iter().filter(after) {
            if !push(image.metadata.name.clone(), image) {
                return;
            }
        }
    }

    fn one(agent: &Agent, key: &ObjectKey) -> Option<Self::Object> {
        let table = agent.table.borrow().clone();
        let images = objects::Image::all(&table);
        images.into_iter().find(|i| i.metadata.name == key.name)
    }
}

/// Namespaces: `default`, those operators made, and those objects name.
pub struct Namespaces(Arc<View>);

impl Namespaces {
    /// Every namespace's name, and what an operator made of it.
    fn all(&self) -> BTreeMap<String, Option<&Arc<crdt::Namespace>>> {
        let snapshot = &self.0.snapshot;
        let named = snapshot.deployments.keys().chain(snapshot.services.keys());
        let mut all: BTreeMap<String, Option<&Arc<crdt::Namespace>>> = named
            .map(|key| (key.namespace.clone(), None))
            .chain([(crdt::DEFAULT_NAMESPACE.to_string(), None)])
            .collect();
        for (key, made) in &snapshot.namespaces {
            all.insert(key.name.clone(), Some(made));
        }
        all
    }
}

impl Served for Namespaces {
    type Object = objects::Namespace;
    type After = String;
    const RESOURCE: &'static str = "namespaces";
    const FIELDS: &'static [&'static str] = &["status.phase"];
    const NAMESPACED: bool = false;

    fn after(token: &str) -> Result<String, BadToken> {
        named_after(token)
    }

    fn source(agent: &Agent) -> Self {
        Namespaces(agent.view.borrow().clone())
    }

    fn each(&self, _: Option<&str>, after: Option<String>, push: &mut Push<Self::Object>) {
        let all = self.all();
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        for (name, made) in all.range((start, Bound::Unbounded)) {
            if !push(
                name.clone(),
                objects::Namespace::new(name, made.map(|m| &**m)),
            ) {
                return;
            }
        }
    }

    fn one(agent: &Agent, key: &ObjectKey) -> Option<Self::Object> {
        let namespaces = Namespaces::source(agent);
        let all = namespaces.all();
        let made = all.get(&key.name)?;
        Some(objects::Namespace::new(&key.name, made.map(|m| &**m)))
    }
}

/// The events this node recorded ([`weeble_core::objects::event`]), newest last.
pub struct Events(Vec<Event>);

impl Served for Events {
    type Object = Event;
    type After = ObjectKey;
    const RESOURCE: &'static str = "events";
    const FIELDS: &'static [&'static str] = &[
        "involvedObject.apiVersion",
        "involvedObject.kind",
        "involvedObject.name",
        "involvedObject.namespace",
        "involvedObject.uid",
        "reason",
        "type",
        "source.host",
    ];

    fn after(token: &str) -> Result<ObjectKey, BadToken> {
        list::object_token_key(token)
    }

    fn source(agent: &Agent) -> Self {
        Events(agent_events(agent))
    }

    fn each(&self, ns: Option<&str>, after: Option<ObjectKey>, push: &mut Push<Self::Object>) {
        let in_ns = |e: &&Event| ns.is_none_or(|ns| e.metadata.namespace.as_deref() == Some(ns));
        let mut started = after.is_none();
        for event in self.0.iter().filter(in_ns) {
            let key = key_of(event);
            if !started {
                started = after.as_ref() == Some(&key);
                continue;
            }
            if !push(list::object_token(&key), event.clone()) {
                return;
            }
        }
    }

    fn one(agent: &Agent, key: &ObjectKey) -> Option<Self::Object> {
        agent_events(agent).into_iter().find(|e| key_of(e) == *key)
    }
}

/// The events `agent`'s node recorded, oldest first.
fn agent_events(agent: &Agent) -> Vec<Event> {
    let recorder = agent.events.lock().expect("the recorder's lock");
    recorder.events().cloned().collect()
}
