//! This node's reconcile loop as a state machine: when to look at its containers, what to do
//! about them, and what to report. The driver lists the containers, runs the actions and
//! hands back what came of them; [`Reconciler`] decides, with the pure functions of
//! [`crate::reconcile`].
//!
//! A pass: list the containers → kill those whose liveness probe failed, and list again →
//! plan a bounded batch of actions ([`batch`]) and run it → list again → report the pods'
//! status, the probes to run and the number of containers → wait until woken (the view, a
//! container that stopped, the probes' findings, a report while pods are handed over, a pull
//! that ended) or until the next retry, handover deadline or resync is due. Pulls run beside
//! the passes, as long as they take: a pass starts them, and their end wakes one. A wake during a pass is kept: the
//! next pass follows at once, which sees the newest view.

use super::{
    Action, Book, DesiredPod, Grace, JoinGrace, Plan, already_running, batch, desired_pods,
    failed_liveness, handovers, held_images, next_handover_deadline, next_pass_in_ms, plan,
    pod_statuses, probe_checks, pulls, pulls::ImagePull, record,
};
use crate::document::Op;
use crate::membership::Liveness;
use crate::placement::{Placement, ReplicaKey};
use crate::probe::{Check, Health, Kind};
use crate::rollout;
use crate::runtime::{Observed, RuntimeError};
use crate::status::{HeldImage, PodStatus, StatusTable};
use crate::view::View;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Weak};
use tracing::{info, warn};
use weeble_crdt::ROLLBACK_ON_FAILURE;
use weeble_crdt::image::Reference;

/// How often a pass runs while a rollout this node takes part in goes on: how soon it sees
/// the replicas it waits for become available.
const ROLLING_PASS_MS: i64 = 250;

/// How a node reconciles, from its configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub node: String,
    /// Where containers' ports are published.
    pub host_ip: IpAddr,
    /// Where the node serves services: what its containers' service variables point to.
    pub service_ip: IpAddr,
    /// How often a pass runs even if nothing woke it.
    pub resync_ms: i64,
    /// How long a starting node that has heard from no peer keeps to what it already runs.
    pub join_grace_ms: i64,
}

/// What the reconciler hears.
#[derive(Debug)]
pub enum Event {
    /// Something it reads changed: a pass is due.
    Wake,
    /// The wait asked for with this token ([`Work::WakeIn`]) is over: a pass is due, unless
    /// a newer wait was asked for since.
    Due(u64),
    /// The containers of this node, as the runtime lists them.
    Listed(Result<Vec<Observed>, RuntimeError>),
    /// The containers of [`Work::Terminate`] were killed (or could not be).
    Terminated,
    /// The outcomes of [`Work::Act`], in the order of its actions.
    Acted(Vec<Result<(), RuntimeError>>),
    /// The pull of [`Work::Pull`] ended.
    Pulled {
        pull: ImagePull,
        outcome: Result<(), RuntimeError>,
    },
}

/// What the driver must do for the reconciler.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// List this node's containers; hand them back as [`Event::Listed`].
    List,
    /// Kill these running containers (their liveness probe failed); then [`Event::Terminated`].
    Terminate(Vec<String>),
    /// Run these actions, the removals first, a few engine calls at once
    /// ([`super::ENGINE_CALLS_IN_FLIGHT`]); then [`Event::Acted`].
    Act(Vec<Action>),
    /// The probes to run now (changed since the last ones).
    Checks(Vec<Check>),
    /// How many containers this node runs (a leaving node waits for none).
    Containers(usize),
    /// This node's pods, to spread as its status.
    Pods(Vec<PodStatus>),
    /// Wake the reconciler in this many ms, handing back `token` (only the newest counts).
    WakeIn { ms: i64, token: u64 },
    /// Write this to the desired state (a rollout that failed goes back: [`rollout`]).
    Write(Op),
    /// Pull this image, beside the passes; then [`Event::Pulled`].
    Pull(ImagePull),
    /// The images this node holds now, for its report (which changes only if they did).
    Images(Vec<HeldImage>),
}

/// Where a pass stands.
#[derive(Debug)]
enum Stage {
    /// Between passes.
    Idle,
    /// The first listing of a pass (`killed`: after liveness failures were killed).
    Listing {
        killed: bool,
    },
    Killing,
    /// A batch runs; `observed` is what the pass planned it from.
    Acting {
        plan: Planned,
        batch: Vec<Action>,
        observed: Vec<Observed>,
    },
    /// Listing again after a batch.
    Relisting {
        plan: Planned,
    },
}

/// What a pass planned from, kept until it reports.
#[derive(Debug)]
struct Planned {
    desired: Vec<DesiredPod>,
    handovers: BTreeMap<String, super::Handover>,
    more: bool,
    holding_until: Option<i64>,
}

/// One node's reconciler (see the module's documentation).
pub struct Reconciler {
    settings: Settings,
    grace: JoinGrace,
    /// Restarts and failures per container.
    book: Book,
    /// When each handover in progress began (see [`super::handovers`]).
    handover_since: BTreeMap<String, i64>,
    /// The pods placed here at the last pass, for the log.
    placed: BTreeSet<String>,
    stage: Stage,
    /// A wake came during a pass: the next pass follows at once.
    again: bool,
    /// Pods are being handed over: a change of the status table wakes the reconciler.
    handing_over: bool,
    /// A rollout this node takes part in is not complete: so does a change of the table.
    rolling: bool,
    /// Until when (Unix ms) this pass holds back from starting containers: the node has
    /// just started, heard from no peer yet, and its join grace is not over.
    holding_until: Option<i64>,
    /// The newest wake-up asked for; older ones are ignored.
    token: u64,
    checks: Vec<Check>,
    /// The replicas placed on this node, and the placement they were read from: read again
    /// only from a new placement, as reading them walks every replica's owner (each pass
    /// read them anew: at 2,000 simulated nodes, 7 % of the run).
    owned: (Weak<Placement>, Vec<ReplicaKey>),
}

impl Reconciler {
    pub fn new(settings: Settings, now_ms: i64) -> Self {
        Reconciler {
            grace: JoinGrace::new(now_ms, settings.join_grace_ms),
            settings,
            book: Book::new(),
            handover_since: BTreeMap::new(),
            placed: BTreeSet::new(),
            stage: Stage::Idle,
            again: false,
            handing_over: false,
            rolling: false,
            holding_until: None,
            token: 0,
            checks: Vec::new(),
            owned: (Weak::new(), Vec::new()),
        }
    }

    /// Whether a change of the status table calls for a pass: pods are being handed over. (A
    /// rollout this node takes part in reads the table at a pass every [`ROLLING_PASS_MS`]
    /// instead: at 1,000 simulated nodes, a pass at each change of the table, each reading
    /// the whole table, did not end.)
    pub fn watches_status(&self) -> bool {
        self.handing_over
    }

    /// Takes one event; `ctx` is what the node knows now.
    pub fn step(&mut self, event: Event, ctx: Context<'_>) -> Vec<Work> {
        let event = match event {
            Event::Due(token) if token != self.token => return Vec::new(),
            Event::Due(_) => Event::Wake,
            Event::Pulled { pull, outcome } => {
                let image = pull.image;
                match &outcome {
                    Ok(()) => info!(%image, "image pulled"),
                    Err(e) => warn!(%image, error = %e, "cannot pull image"),
                }
                // Held as the id it was pulled as: pushed again meanwhile as another, it is
                // pulled again.
                if let (Ok(()), Some(id)) = (&outcome, &pull.pushed) {
                    self.book.pulls.holds(&image, id);
                }
                let outcome = outcome.map_err(|e| e.to_string());
                self.book.pulls.finished(&image, outcome, ctx.now_ms);
                Event::Wake
            }
            event => event,
        };
        let stage = std::mem::replace(&mut self.stage, Stage::Idle);
        match (stage, event) {
            (Stage::Idle, Event::Wake) => self.begin(ctx),
            (stage, Event::Wake) => {
                self.stage = stage;
                self.again = true;
                Vec::new()
            }
            (Stage::Listing { .. } | Stage::Relisting { .. }, Event::Listed(Err(e))) => {
                warn!(error = %e, "cannot observe containers; retrying");
                self.wait(1000)
            }
            (Stage::Listing { killed }, Event::Listed(Ok(observed))) => {
                let doomed = failed_liveness(&observed, &ctx.health.failing);
                if !killed && !doomed.is_empty() {
                    self.stage = Stage::Killing;
                    return vec![Work::Terminate(
                        doomed.into_iter().map(str::to_string).collect(),
                    )];
                }
                self.plan(observed, ctx)
            }
            (Stage::Killing, Event::Terminated) => {
                self.stage = Stage::Listing { killed: true };
                vec![Work::List]
            }
            (
                Stage::Acting {
                    plan,
                    batch,
                    observed,
                },
                Event::Acted(outcomes),
            ) => {
                for (action, outcome) in batch.iter().zip(&outcomes) {
                    record(&mut self.book, action, outcome, &observed, ctx.now_ms);
                }
                // An image found missing is pulled by the next pass, at once.
                self.again |= outcomes
                    .iter()
                    .any(|o| matches!(o, Err(RuntimeError::ImageMissing(_))));
                self.stage = Stage::Relisting { plan };
                vec![Work::List]
            }
            (Stage::Relisting { plan }, Event::Listed(Ok(observed))) => {
                self.report(plan, &observed, ctx)
            }
            (stage, event) => {
                // An answer to a request of an earlier pass: the stage stays as it was.
                warn!(?event, "the reconciler got an answer it did not wait for");
                self.stage = stage;
                Vec::new()
            }
        }
    }

    /// Begins a pass: checks the join grace, logs placement changes, lists.
    fn begin(&mut self, ctx: Context<'_>) -> Vec<Work> {
        self.again = false;
        let me = &self.settings.node;
        let peer = ctx
            .view
            .members
            .iter()
            .any(|(m, l)| &m.name != me && *l != Liveness::Down);
        self.holding_until = None;
        match self.grace.check(ctx.now_ms, peer) {
            Grace::Holding { until_ms } => self.holding_until = Some(until_ms),
            Grace::PeerAnswered => info!("a peer answered: running this node's share"),
            Grace::RanOut => {
                info!("no peer answered within the join grace: running the desired state alone")
            }
            Grace::Over => {}
        }
        self.stage = Stage::Listing { killed: false };
        vec![Work::List]
    }

    /// Plans a batch from what the runtime shows.
    fn plan(&mut self, observed: Vec<Observed>, ctx: Context<'_>) -> Vec<Work> {
        let placement = &ctx.view.placement;
        if self.owned.0.as_ptr() != Arc::as_ptr(placement) {
            let owned = placement.owned_by(&self.settings.node).collect();
            self.owned = (Arc::downgrade(placement), owned);
        }
        let (desired, writes) = self.desired(&observed, ctx);
        let holding_until = self.holding_until;
        let desired = match holding_until {
            Some(_) => already_running(desired, &observed),
            None => {
                self.log_placement_changes(&desired);
                desired
            }
        };
        let s = &self.settings;
        let handovers = handovers(
            &s.node,
            &ctx.view.placement,
            &observed,
            ctx.table,
            &mut self.handover_since,
            ctx.now_ms,
        );
        let pushed = pulls::pushed_for(&ctx.view.snapshot, &s.node);
        let mut wanted: BTreeSet<&str> = desired
            .iter()
            .flat_map(|p| p.template.containers.iter().map(|c| c.image.as_str()))
            .collect();
        wanted.extend(pushed.keys());
        self.book.pulls.keep_only(|image| wanted.contains(image));
        self.book.pulls.expire(ctx.now_ms);
        let Plan { actions, pulls } = plan(
            &s.node, s.host_ip, &desired, &observed, &handovers, &self.book, ctx.now_ms,
        );
        // A pod's image that was pushed (for this node or not) comes from the peers, as the
        // push made it.
        let all_pushed = &ctx.view.snapshot.images;
        let mut pulls: Vec<ImagePull> = pulls
            .into_iter()
            .map(|image| ImagePull {
                pushed: all_pushed
                    .get(&Reference::tagged(&image))
                    .map(|p| p.id.clone()),
                image,
            })
            .collect();
        for pull in &pulls {
            self.book.pulls.started(&pull.image, ctx.now_ms);
        }
        let more_pulls = self.book.pulls.pushed_to_pull(&pushed, ctx.now_ms);
        pulls.extend(more_pulls);
        for pull in &pulls {
            info!(image = %pull.image, pushed = pull.pushed.is_some(), "pulling image");
        }
        let (batch, more) = batch(actions);
        let plan = Planned {
            desired,
            handovers,
            more,
            holding_until,
        };
        let mut work: Vec<Work> = writes.into_iter().map(Work::Write).collect();
        work.extend(pulls.into_iter().map(Work::Pull));
        if batch.is_empty() {
            work.extend(self.report(plan, &observed, ctx));
            return work;
        }
        self.stage = Stage::Acting {
            plan,
            batch: batch.clone(),
            observed,
        };
        work.push(Work::Act(batch));
        work
    }

    /// The pods this node should run: those placement gives it, each with the template its
    /// deployment's rollout gives it (paced from the status table, for the deployments in a
    /// rollout here: [`rollout::rolling`]), and the surge pods beside them. With them, the
    /// reverts this node asks for: of the failed rollouts of deployments annotated
    /// [`ROLLBACK_ON_FAILURE`] whose replica 0 it runs (one node a side asks, not all).
    fn desired(&mut self, observed: &[Observed], ctx: Context<'_>) -> (Vec<DesiredPod>, Vec<Op>) {
        let (snapshot, ip) = (&ctx.view.snapshot, self.settings.service_ip);
        let desired = desired_pods(snapshot, &self.owned.1, ip, &BTreeMap::new());
        let rolling = rollout::rolling(snapshot, &desired, observed);
        let deployments = rolling.keys().map(|key| &*snapshot.deployments[key]);
        let mut seen = rollout::seen_of(deployments, ctx.table, &ctx.view.members, ctx.now_ms);
        let mut paces = BTreeMap::new();
        let mut writes = Vec::new();
        for (key, current) in rolling {
            let d = &snapshot.deployments[&key];
            let named = (d.meta.namespace.as_str(), d.meta.name.as_str());
            let seen = seen.remove(&named).unwrap_or_default();
            let pace = rollout::pace(d, &seen, &current);
            let first = ReplicaKey {
                deployment: key.clone(),
                index: 0,
            };
            let annotated = d.meta.annotations.get(ROLLBACK_ON_FAILURE);
            let reverts = annotated.is_some_and(|v| v == "true")
                && self.owned.1.binary_search(&first).is_ok();
            let stalled = || rollout::stalled(d, &seen, &current, &pace, ctx.now_ms);
            if let Some(reason) = reverts.then(stalled).flatten()
                && let Some(to) = rollout::last_good(d, &seen, &current)
            {
                warn!(deployment = %key, %reason, to, "the rollout failed: reverting");
                writes.push(Op::Revert {
                    key: key.clone(),
                    from_hash: current,
                    to,
                    reason,
                });
            }
            paces.insert(key, pace);
        }
        self.rolling = paces.iter().any(|(key, pace)| {
            !pace
                .progress
                .complete(snapshot.deployments[key].spec.replicas)
        });
        let desired = match paces.is_empty() {
            true => desired,
            false => desired_pods(snapshot, &self.owned.1, ip, &paces),
        };
        (desired, writes)
    }

    /// Ends a pass: the pods' status, the probes, the count; when to look again.
    fn report(&mut self, plan: Planned, observed: &[Observed], ctx: Context<'_>) -> Vec<Work> {
        let mut work = vec![Work::Containers(observed.len())];
        let checks = probe_checks(&plan.desired, observed);
        // A readiness probe the prober does not run yet has not passed: its container is
        // not ready in this report (the health read here is from before the probe was
        // known, and said nothing of it: a rollout counted the new pod available a second
        // early and changed the next replica, 3 of 5 available where 4 were the bound).
        let mut unready = ctx.health.unready.clone();
        let new = checks.iter().filter(|c| !self.checks.contains(c));
        let new_readiness = new.filter(|c| c.kind == Kind::Readiness);
        unready.extend(new_readiness.map(|c| c.container_id.clone()));
        if checks != self.checks {
            self.checks = checks.clone();
            work.push(Work::Checks(checks));
        }
        let s = &self.settings;
        work.push(Work::Pods(pod_statuses(
            &s.node,
            s.host_ip,
            &plan.desired,
            observed,
            &self.book,
            &unready,
            ctx.now_ms,
        )));
        let newly_failed = self.book.pulls.told();
        work.push(Work::Images(held_images(observed, &self.book.pulls)));
        let now = ctx.now_ms;
        let next = next_pass_in_ms(&self.book, &plan.handovers, plan.more, s.resync_ms, now);
        // Rolling, it looks again soon: the table tells how far the rollout came (and a pod
        // becomes available once ready for `minReadySeconds`, which no report announces).
        let next = match self.rolling {
            true => next.min(ROLLING_PASS_MS),
            false => next,
        };
        // A pull just failed: the report after this one says it backs off.
        let next = match newly_failed {
            true => next.min(pulls::BACKOFF_SHOWN_AFTER_MS),
            false => next,
        };
        // Holding, it also looks again when the grace runs out.
        let next = plan
            .holding_until
            .map_or(next, |until| next.min((until - now).max(0)));
        self.handing_over = next_handover_deadline(&plan.handovers, now).is_some();
        match self.again {
            true => work.extend(self.begin(ctx)),
            false => work.extend(self.wait(next)),
        }
        work
    }

    /// Idle until woken, or for `ms` at most (at once if a wake came during the pass).
    fn wait(&mut self, ms: i64) -> Vec<Work> {
        self.stage = Stage::Idle;
        self.token += 1;
        let ms = if self.again { 0 } else { ms };
        vec![Work::WakeIn {
            ms,
            token: self.token,
        }]
    }

    fn log_placement_changes(&mut self, desired: &[DesiredPod]) {
        let now: BTreeSet<String> = desired
            .iter()
            .map(|p| format!("{}/{}", p.key.deployment.namespace, p.name()))
            .collect();
        for pod in now.difference(&self.placed) {
            info!(%pod, "pod placed on this node");
        }
        for pod in self.placed.difference(&now) {
            info!(%pod, "pod no longer placed on this node");
        }
        self.placed = now;
    }
}

/// What the node knows when the reconciler takes an event.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub now_ms: i64,
    pub view: &'a Arc<View>,
    pub table: &'a StatusTable,
    pub health: &'a Health,
}
