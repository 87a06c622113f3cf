//! `resourceVersion` and `?watch=true`: the node's [`Journal`] of what it serves, kept by a
//! task that looks at every served resource whenever the view, the reports or the endpoints
//! change (at most every [`OBSERVE_EVERY`]), and the watches that stream its changes.
//!
//! A watch is Kubernetes' stream of JSON lines, `{"type": "ADDED"|"MODIFIED"|"DELETED"|
//! "BOOKMARK"|"ERROR", "object": …}`. Without a `resourceVersion` (or with `0`) it starts
//! with every object as ADDED; from a version it replays the journal's changes after it, or
//! sends one ERROR with a 410 Expired `Status` if the journal does not reach back so far.
//! It ends at `timeoutSeconds` (at most [`MAX_WATCH`]), when it falls more than
//! [`CHANGES_AHEAD`] changes behind (an ERROR 410: the client lists again), or when the client
//! goes. While nothing changes it tells the connection it is alive, as long as the client
//! reads what it is sent ([`listen::Activity`]).

use super::list::{self, Form};
use super::listen::Activity;
use super::served::{Served, key_of};
use crate::agent::Agent;
use crate::clock;
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};
use weeble_core::objects::journal::{Change, Journal, Limits};
use weeble_core::objects::select::Selector;
use weeble_core::objects::{self, Object, Resource};
use weeble_crdt::ObjectKey;

/// The shortest time between two looks at what the node serves: changes that come closer
/// together are seen together.
pub const OBSERVE_EVERY: Duration = Duration::from_millis(200);

/// How many changes a watch may fall behind before it is ended with 410.
pub const CHANGES_AHEAD: usize = 4096;

/// The longest a watch lasts (Kubernetes ends them after 30 to 60 minutes).
pub const MAX_WATCH: Duration = Duration::from_secs(30 * 60);

/// How often a watch with nothing to send says it is alive, to the connection and, if it
/// asked for bookmarks, to the client.
const ALIVE_EVERY: Duration = Duration::from_secs(15);

/// How many event lines may wait for a slow client.
const LINES_AHEAD: usize = 64;

/// How long a resource stays in the journal after its last list, get or watch: a node no
/// client asks about pays nothing for versions.
pub const KEPT_UNUSED: Duration = Duration::from_secs(10 * 60);

/// The journal and the feed of its changes, shared by the API's handlers.
pub struct Versions {
    journal: Mutex<Journal>,
    changes: broadcast::Sender<Arc<Change>>,

    /// The resources the journal follows, and when a client last asked for each.
    used: Mutex<HashMap<&'static str, Instant>>,
    /// Per resource, held through a whole look at it ([`Versions::observe`]).
    observing: Mutex<HashMap<&'static str, Arc<Mutex<()>>>>,
}

impl Versions {
    /// A journal kept up to date with what `agent`'s node serves, until the node stops.
    pub fn watching(agent: &Agent) -> Arc<Self> {
        let versions = Versions::new();
        spawn_observer(agent.clone(), versions.clone());
        versions
    }

    /// A journal that starts now, empty.
    pub fn new() -> Arc<Self> {
        let now_us = clock::now().as_micros() as u64;
        Arc::new(Versions {
            journal: Mutex::new(Journal::new(now_us, Limits::default())),
            changes: broadcast::channel(CHANGES_AHEAD).0,

            used: Mutex::new(HashMap::new()),
            observing: Mutex::new(HashMap::new()),
        })
    }

    /// Notes that a client asks for `S`; if the journal did not follow it, it looks at it
    /// first, so the versions the client is given stay those of its objects.
    pub async fn use_resource<S: Served>(self: &Arc<Self>, agent: &Agent) {
        let followed = self.used().insert(S::RESOURCE, Instant::now()).is_some();
        if !followed {
            self.look_at::<S>(agent).await;
        }
    }

    /// Notes that a client asks for `S` and looks at it now, whether the journal followed it
    /// or not: a write answers with the version of what it wrote.
    pub async fn look_now<S: Served>(self: &Arc<Self>, agent: &Agent) {
        self.used().insert(S::RESOURCE, Instant::now());
        self.look_at::<S>(agent).await;
    }

    /// One look at `S` ([`Versions::observe`]), on a blocking thread.
    async fn look_at<S: Served>(self: &Arc<Self>, agent: &Agent) {
        let (versions, agent) = (self.clone(), agent.clone());
        let looked = tokio::task::spawn_blocking(move || versions.observe::<S>(&agent));
        if looked.await.is_err() {
            tracing::error!(resource = S::RESOURCE, "the API's journal failed to look");
        }
    }

    fn used(&self) -> std::sync::MutexGuard<'_, HashMap<&'static str, Instant>> {
        self.used.lock().expect("the lock of the resources used")
    }

    /// Whether the journal follows `resource`; one unused for [`KEPT_UNUSED`] is forgotten.
    fn follows(&self, resource: &'static str) -> bool {
        let mut used = self.used();
        match used.get(resource) {
            Some(at) if at.elapsed() < KEPT_UNUSED => true,
            Some(_) => {
                used.remove(resource);
                self.journal().forget(resource);
                false
            }
            None => false,
        }
    }

    fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.journal.lock().expect("the journal's lock")
    }

    /// The journal's last number: a list's `resourceVersion`.
    pub fn last(&self) -> u64 {
        self.journal().last()
    }

    /// The version of `object` of `resource`: its last change's, or the journal's last if
    /// the journal has not seen it yet (it is newer than the journal's last look).
    pub fn of(&self, resource: &'static str, key: &ObjectKey) -> u64 {
        let journal = self.journal();
        journal.version(resource, key).unwrap_or(journal.last())
    }

    /// `object` with its `resourceVersion` set.
    pub fn stamp<T: Object>(&self, resource: &'static str, mut object: T) -> T {
        let version = self.of(resource, &key_of(&object));
        object.metadata_mut().resource_version = Some(version.to_string());
        object
    }

    /// Records what `S` serves now, and sends the changes to the watches. One look at a
    /// resource at a time, from reading its objects to sending their changes, so its changes
    /// come in version order and no older look is recorded after a newer one; looks at other
    /// resources go on meanwhile (a look at 30,000 pods holds up no read of a deployment).
    fn observe<S: Served>(&self, agent: &Agent) {
        let lock = {
            let mut locks = self.observing.lock().expect("the observing locks");
            locks.entry(S::RESOURCE).or_default().clone()
        };
        let _one_at_a_time = lock.lock().expect("a resource's observing lock");
        let mut objects = vec![];
        S::source(agent).each(None, None, &mut |_, object| {
            let text = serde_json::to_string(&object).expect("a read model serializes");
            let uid = object.metadata().uid.clone().unwrap_or_default();
            objects.push((key_of(&object), uid, text));
            true
        });
        let now_us = clock::now().as_micros() as u64;
        let changes = self.journal().observe(now_us, S::RESOURCE, objects);
        for change in changes {
            // No watch listening is fine.
            let _ = self.changes.send(change);
        }
    }

    /// Looks at `S` if the journal follows it.
    fn observe_followed<S: Served>(&self, agent: &Agent) {
        if self.follows(S::RESOURCE) {
            self.observe::<S>(agent);
        }
    }

    /// Looks at every served resource the journal follows.
    fn observe_all(&self, agent: &Agent) {
        use super::served::{
            Deployments, Endpoints, Events, Images, Namespaces, Nodes, Peers, Pods, ReplicaSets,
            Services,
        };
        self.observe_followed::<Deployments>(agent);
        self.observe_followed::<ReplicaSets>(agent);
        self.observe_followed::<Services>(agent);
        self.observe_followed::<Endpoints>(agent);
        self.observe_followed::<Pods>(agent);
        self.observe_followed::<Nodes>(agent);
        self.observe_followed::<Peers>(agent);
        self.observe_followed::<Images>(agent);
        self.observe_followed::<Namespaces>(agent);
        self.observe_followed::<Events>(agent);
    }
}

/// Keeps `versions` up to date with what `agent`'s node serves, until the node stops.
fn spawn_observer(agent: Agent, versions: Arc<Versions>) {
    let (mut view, mut table, mut endpoints) = (
        agent.view.clone(),
        agent.table.clone(),
        agent.endpoints.clone(),
    );
    tokio::spawn(async move {
        loop {
            let (agent, versions) = (agent.clone(), versions.clone());
            let started = Instant::now();
            let looked = tokio::task::spawn_blocking(move || versions.observe_all(&agent));
            if looked.await.is_err() {
                tracing::error!("the API's journal failed to look at the node's objects");
            }
            // A look that takes long (many pods) is made less often: a third of a core at most.
            tokio::time::sleep(OBSERVE_EVERY.max(started.elapsed() * 2)).await;
            let changed = tokio::select! {
                r = view.changed() => r,
                r = table.changed() => r,
                r = endpoints.changed() => r,
            };
            if changed.is_err() {
                return;
            }
            view.borrow_and_update();
            table.borrow_and_update();
            endpoints.borrow_and_update();
        }
    });
}

/// What a watch asked for besides its resource, namespace and selector.
#[derive(Debug, Default)]
pub struct WatchRequest {
    pub resource_version: Option<String>,
    pub timeout: Option<Duration>,
    pub bookmarks: bool,
}

/// Why a watch cannot start: its `resourceVersion` is not a number.
pub struct BadVersion(pub String);

/// One event line.
fn line(type_: &str, object: &Value) -> Bytes {
    let mut text =
        serde_json::to_vec(&json!({"type": type_, "object": object})).expect("an event serializes");
    text.push(b'\n');
    Bytes::from(text)
}

/// An ERROR event carrying a 410 Expired `Status`.
fn expired(message: String) -> Bytes {
    let status = objects::Status::failure(410, message, vec![]);
    line(
        "ERROR",
        &serde_json::to_value(status).expect("a Status serializes"),
    )
}

/// The events one watch is sent: the objects of its namespace that its selector takes,
/// each as it is or as a table of one row (what `kubectl get -w` asks for: the columns
/// come with the first event only, as Kubernetes sends them).
struct Events<S> {
    ns: Option<String>,
    selector: Selector,
    form: Form,
    columns_sent: bool,
    kind: std::marker::PhantomData<fn(&S)>,
}

impl<S: Served> Events<S> {
    /// The line of `change`, or `None` if the watch does not take it. A change that takes
    /// an object out of what the selector picks is DELETED (the object as it was), one that
    /// brings it in ADDED, as Kubernetes' watch cache tells them.
    fn change(&mut self, change: &Change) -> Option<Bytes> {
        let object = change.object();
        let previous = change
            .previous_object()
            .filter(|_| !self.selector.is_empty());
        match previous.map(|p| (self.selector.matches(&p), self.selector.matches(&object), p)) {
            Some((true, false, before)) => self.line("DELETED", &change.key, before),
            Some((false, true, _)) => self.line("ADDED", &change.key, object),
            _ => self.line(change.type_.as_str(), &change.key, object),
        }
    }

    /// The line of an event of `type_` for `object` (its version set), or `None` if the
    /// watch does not take it.
    fn line(&mut self, type_: &str, key: &ObjectKey, object: Value) -> Option<Bytes> {
        let in_ns = self.ns.as_ref().is_none_or(|ns| key.namespace == *ns);
        if !in_ns || !self.selector.matches(&object) {
            return None;
        }
        if self.form == Form::List {
            return Some(line(type_, &object));
        }
        let typed: S::Object = serde_json::from_value(object.clone()).ok()?;
        let columns = !std::mem::replace(&mut self.columns_sent, true);
        Some(line(
            type_,
            &list::table_of(&typed, object, self.form, columns),
        ))
    }

    /// A BOOKMARK: the watch has seen everything up to `version`.
    fn bookmark(&self, version: u64) -> Bytes {
        let (api_version, kind) = match self.form {
            Form::List => (
                <S::Object as Resource>::API_VERSION,
                <S::Object as Resource>::KIND,
            ),
            Form::Table { .. } => ("meta.k8s.io/v1", "Table"),
        };
        let head = json!({"apiVersion": api_version, "kind": kind,
            "metadata": {"resourceVersion": version.to_string()}});
        line("BOOKMARK", &head)
    }
}

/// How far ahead of this node's clock a version may be (another node's, its clock ahead):
/// past it, a watch is refused with 410 rather than kept silent until its clock catches up.
const MAX_AHEAD_US: u64 = 60_000_000;

/// Where a watch starts.
enum Start {
    /// With every object as ADDED, then what follows this version.
    Listed(u64),
    /// With these changes (cheap copies, made into lines by the watch's own task).
    Replayed(Vec<Arc<Change>>, u64),
    /// Nowhere: one ERROR line, and the watch ends.
    Refused(Bytes),
}

/// Serves a watch of `S` (of namespace `ns`, selected by `selector`, written in `form`).
pub fn serve<S: Served>(
    agent: &Agent,
    versions: Arc<Versions>,
    (ns, selector, form): (Option<String>, Selector, Form),
    request: WatchRequest,
    activity: Option<Activity>,
) -> Result<Response, BadVersion> {
    let from = match request.resource_version.as_deref() {
        None | Some("" | "0") => None,
        Some(text) => Some(text.parse::<u64>().map_err(|_| BadVersion(text.into()))?),
    };
    let mut events = Events::<S> {
        ns,
        selector,
        form,
        columns_sent: false,
        kind: std::marker::PhantomData,
    };
    // Subscribed before the start is read, so no change falls between.
    let mut feed = versions.changes.subscribe();
    let start = match from {
        None => Start::Listed(versions.last()),
        Some(from) => {
            let journal = versions.journal();
            match journal.since(S::RESOURCE, from) {
                Ok(_) if from > journal.last().saturating_add(MAX_AHEAD_US) => {
                    Start::Refused(expired(format!(
                        "resource version {from} is ahead of this node's clock ({}); list again",
                        journal.last()
                    )))
                }
                Ok(changes) => Start::Replayed(changes.cloned().collect(), from),
                Err(e) => Start::Refused(expired(format!(
                    "too old resource version: {from} ({}): this node's journal of {} starts \
                     there; list again",
                    e.oldest,
                    S::RESOURCE
                ))),
            }
        }
    };
    let agent = agent.clone();
    let (lines, mut receiver) = mpsc::channel::<Bytes>(LINES_AHEAD);
    let timeout = request.timeout.unwrap_or(MAX_WATCH).min(MAX_WATCH);
    let bookmarks = request.bookmarks;
    tokio::spawn(async move {
        let mut cursor = match start {
            Start::Refused(line) => {
                let _ = lines.send(line).await;
                return;
            }
            Start::Replayed(changes, from) => {
                let mut cursor = from;
                for c in changes {
                    cursor = c.version;
                    let line = events.change(&c);
                    if let Some(line) = line
                        && lines.send(line).await.is_err()
                    {
                        return;
                    }
                }
                cursor
            }
            Start::Listed(cursor) => {
                // Every object, written into the channel as it is made, on a blocking thread
                // (it owns what it reads): a watch of 100,000 pods holds a few lines at once.
                let (versions, sender) = (versions.clone(), lines.clone());
                let listed = tokio::task::spawn_blocking(move || {
                    S::source(&agent).each(events.ns.clone().as_deref(), None, &mut |_, object| {
                        let object = versions.stamp(S::RESOURCE, object);
                        let value = serde_json::to_value(&object).expect("a read model serializes");
                        match events.line("ADDED", &key_of(&object), value) {
                            Some(line) => sender.blocking_send(line).is_ok(),
                            None => true,
                        }
                    });
                    events
                });
                match listed.await {
                    Ok(listed) => events = listed,
                    Err(_) => return,
                }
                cursor
            }
        };
        let end = tokio::time::sleep(timeout);
        tokio::pin!(end);
        let mut alive = tokio::time::interval(ALIVE_EVERY);
        alive.tick().await;
        loop {
            let change = tokio::select! {
                () = &mut end => return,
                _ = alive.tick() => {
                    versions.used().insert(S::RESOURCE, Instant::now());
                    // A client that reads all it is sent is alive, whatever the silence.
                    if let Some(activity) = activity.as_ref().filter(|_| lines.capacity() == LINES_AHEAD) {
                        activity.touch();
                    }
                    if bookmarks && lines.send(events.bookmark(cursor)).await.is_err() {
                        return;
                    }
                    continue;
                }
                change = feed.recv() => change,
            };
            let change = match change {
                Ok(change) => change,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let message = format!(
                        "the watch fell {missed} changes behind (it may be {CHANGES_AHEAD}); \
                         list again"
                    );
                    let _ = lines.send(expired(message)).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            // Each resource's changes come in order; other resources' are not this watch's.
            if change.resource != S::RESOURCE || change.version <= cursor {
                continue;
            }
            cursor = change.version;
            let line = events.change(&change);
            if let Some(line) = line
                && lines.send(line).await.is_err()
            {
                return;
            }
        }
    });
    let stream = futures::stream::poll_fn(move |cx| {
        receiver
            .poll_recv(cx)
            .map(|line| line.map(Ok::<_, Infallible>))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}
