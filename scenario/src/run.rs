//! The runner: checks that a backend can do every action of a scenario, starts the cluster,
//! applies the manifests, then carries out the timeline in time order while it samples what
//! runs, and turns what it saw into a [`Report`].
//!
//! What it measures, from its samples (every `sample_ms`):
//! - detection: from a node killed, rebooted offline or disconnected until every other node
//!   that is up holds it dead;
//! - restore: from a disruptive step (a node or container killed, a node paused, rebooted or
//!   cut off, a partition) until every desired replica runs again, if the samples saw any
//!   missing before the next such step (0 otherwise);
//! - duplicates: pods running more than once, and the longest spell with any;
//! - convergence: from the timeline's last moment until every node that is up holds the same
//!   desired state and status;
//! - writes: each acknowledged write must explain what every node holds at the end, or be
//!   superseded by a write made after it or on the other side of the same split.

use crate::backend::{Backend, BackendError, Holdings, NodeState, Observation};
use crate::report::{Figures, Kept, Met, Report, Sample, Separation, StepLog, WriteLog};
use crate::spec::{Action, Expect, Scenario, seconds};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use weeble_sim::percentile;

/// How long the manifests may take to be acknowledged and their replicas to run.
const MANIFESTS_MAX_MS: u64 = 30_000;

/// The most samples a run keeps: a longer run samples less often.
const MAX_SAMPLES: u64 = 20_000;

/// Why a scenario did not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the {backend} backend cannot run this scenario:\n{}", .reasons.join("\n"))]
    Cannot {
        backend: &'static str,
        reasons: Vec<String>,
    },
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("interrupted at {0} of the timeline")]
    Interrupted(String),
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub name: String,
    pub seed: u64,
    /// How often the runner looks, at least (a long run looks less often).
    pub sample_ms: u64,
    /// Set (by a Ctrl-C) to end the run early; the backend is dropped, and cleans up.
    pub stop: Arc<AtomicBool>,
}

/// Something the timeline makes happen at a moment.
#[derive(Debug, Clone)]
enum Event {
    /// `id`: unique in the plan (a client started by it is known by it).
    Do {
        step: usize,
        action: Action,
        id: usize,
    },
    StopClient(usize),
}

/// The steps whose action `cannot` refuses (a backend's [`Backend::cannot`]), each with its
/// path and why.
pub fn unsupported(scenario: &Scenario, cannot: impl Fn(&Action) -> Option<String>) -> Vec<String> {
    scenario
        .timeline
        .iter()
        .filter_map(|s| {
            let why = cannot(&s.action)?;
            Some(format!("{}.{}: {why}", s.path, s.action.name()))
        })
        .collect()
}

/// Runs `scenario` on `backend`; `progress` hears (ms done, ms in all).
pub fn run(
    scenario: &Scenario,
    backend: &mut dyn Backend,
    options: &RunOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Report, RunError> {
    let reasons = unsupported(scenario, |a| backend.cannot(a));
    if !reasons.is_empty() {
        return Err(RunError::Cannot {
            backend: backend.name(),
            reasons,
        });
    }
    backend.start(&scenario.cluster, scenario.total_nodes())?;
    let mut run = Runner::new(scenario, options);
    run.apply_manifests(backend)?;
    let t0 = backend.now_ms();
    let plan = plan(scenario);
    let end = scenario.duration_ms;
    let sample_ms = options.sample_ms.max(end / MAX_SAMPLES).max(1);
    let (mut next_sample, mut next_event) = (0, 0);
    loop {
        let event_at = plan.get(next_event).map_or(u64::MAX, |(at, _)| *at);
        let target = next_sample.min(event_at).min(end);
        backend.advance(t0 + target);
        // On a real backend, time goes on while the runner acts and looks: what it records
        // is when it did (on the simulator, the target itself).
        let now = |backend: &dyn Backend| backend.now_ms().saturating_sub(t0).max(target);
        while plan.get(next_event).is_some_and(|(at, _)| *at <= target) {
            let event = &plan[next_event].1;
            let at = now(backend);
            run.event(backend, at, event);
            next_event += 1;
        }
        if target == next_sample || target == end {
            let at = now(backend);
            let seen = backend.observe();
            run.sample(backend, at, seen);
            next_sample += sample_ms;
        }
        progress(target, end);
        if target >= end {
            break;
        }
        if options.stop.load(Ordering::Relaxed) {
            return Err(RunError::Interrupted(seconds(target)));
        }
    }
    Ok(run.report(backend))
}

/// The timeline as events in time order: each step at its times, its undo after its `for`,
/// a client's stop.
fn plan(scenario: &Scenario) -> Vec<(u64, Event)> {
    let mut events = Vec::new();
    for (index, step) in scenario.timeline.iter().enumerate() {
        for at in step.times() {
            let id = events.len();
            events.push((
                at,
                Event::Do {
                    step: index,
                    action: step.action.clone(),
                    id,
                },
            ));
            let Some(for_ms) = step.for_ms else { continue };
            let undo = match step.action.undo() {
                Some(action) => Event::Do {
                    step: index,
                    action,
                    id: events.len(),
                },
                None => Event::StopClient(id),
            };
            events.push((at + for_ms, undo));
        }
    }
    // Stable: at one moment, in file order.
    events.sort_by_key(|(at, _)| *at);
    events
}

/// A node's death, waiting for every other node to declare it.
#[derive(Debug)]
struct Detection {
    from_ms: u64,
    node: usize,
}

/// A disruption, waiting for every desired replica to run again.
#[derive(Debug)]
struct Restore {
    from_ms: u64,
    /// Whether a sample since saw a desired replica missing.
    dipped: bool,
}

/// What the network is split by now.
#[derive(Debug, Default)]
struct Apart {
    partition: Option<Vec<Vec<usize>>>,
    cuts: BTreeSet<(usize, usize)>,
    offline: BTreeSet<usize>,
}

impl Apart {
    fn any(&self) -> bool {
        self.partition.is_some() || !self.cuts.is_empty() || !self.offline.is_empty()
    }

    /// The groups that cannot reach each other, as the first split of an episode draws them.
    fn sides(&self, nodes: usize) -> Vec<Vec<usize>> {
        if let Some(groups) = &self.partition {
            let named: BTreeSet<usize> = groups.iter().flatten().copied().collect();
            let mut sides = groups.clone();
            sides[0].extend((0..nodes).filter(|i| !named.contains(i)));
            sides[0].sort_unstable();
            return sides;
        }
        let alone: BTreeSet<usize> = self
            .offline
            .iter()
            .copied()
            .chain(self.cuts.iter().map(|c| c.1))
            .collect();
        let rest = (0..nodes).filter(|i| !alone.contains(i)).collect();
        std::iter::once(rest)
            .chain(alone.into_iter().map(|i| vec![i]))
            .collect()
    }
}

struct Runner<'a> {
    scenario: &'a Scenario,
    options: &'a RunOptions,
    rng: StdRng,
    samples: Vec<Sample>,
    steps: Vec<StepLog>,
    writes: Vec<WriteLog>,
    next_write: u64,
    detections: Vec<Detection>,
    detected: Vec<f64>,
    restores: Vec<Restore>,
    restored: Vec<f64>,
    clients: Vec<usize>,
    apart: Apart,
    separations: Vec<Separation>,
    last: Observation,
    kills: Vec<u64>,
    false_deaths: usize,
}

impl<'a> Runner<'a> {
    fn new(scenario: &'a Scenario, options: &'a RunOptions) -> Self {
        Runner {
            scenario,
            options,
            rng: StdRng::seed_from_u64(options.seed ^ 0x5ce2_a210),
            samples: Vec::new(),
            steps: Vec::new(),
            writes: Vec::new(),
            next_write: 1,
            detections: Vec::new(),
            detected: Vec::new(),
            restores: Vec::new(),
            restored: Vec::new(),
            clients: Vec::new(),
            apart: Apart::default(),
            separations: Vec::new(),
            last: Observation::default(),
            kills: Vec::new(),
            false_deaths: 0,
        }
    }

    /// Applies the manifests at node 0 and waits for the acknowledgement and for every replica
    /// they ask for to run: time 0 of the timeline.
    fn apply_manifests(&mut self, backend: &mut dyn Backend) -> Result<(), RunError> {
        if self.scenario.manifests.objects.is_empty() {
            return Ok(());
        }
        let id = self.next_write;
        self.next_write += 1;
        let action = Action::Apply(self.scenario.manifests.clone());
        backend.act(&action, 0, id).map_err(BackendError)?;
        let start = backend.now_ms();
        loop {
            match backend.acknowledged(id) {
                Some(true) => break,
                Some(false) => {
                    return Err(BackendError("the manifests were refused".into()).into());
                }
                None if self.options.stop.load(Ordering::Relaxed) => {
                    return Err(RunError::Interrupted("the start".into()));
                }
                None if backend.now_ms() - start > MANIFESTS_MAX_MS => {
                    let why = format!(
                        "the manifests were not acknowledged within {}",
                        seconds(MANIFESTS_MAX_MS)
                    );
                    return Err(BackendError(why).into());
                }
                None => {
                    let now = backend.now_ms();
                    backend.advance(now + 50);
                }
            }
        }
        let wanted: BTreeMap<String, u32> = self
            .scenario
            .manifests
            .objects
            .iter()
            .filter_map(|o| match o {
                weeble_crdt::Object::Deployment(d) => Some((d.meta.name.clone(), d.spec.replicas)),
                weeble_crdt::Object::Service(_) | weeble_crdt::Object::Namespace(_) => None,
            })
            .collect();
        loop {
            let counted = count(&backend.observe());
            if wanted
                .iter()
                .all(|(d, r)| counted.serving_of.get(d) == Some(r))
            {
                break;
            }
            if self.options.stop.load(Ordering::Relaxed) {
                return Err(RunError::Interrupted("the start".into()));
            }
            if backend.now_ms() - start > MANIFESTS_MAX_MS {
                let why = format!(
                    "the manifests' replicas did not all run within {} ({} of {})",
                    seconds(MANIFESTS_MAX_MS),
                    counted.serving,
                    counted.desired
                );
                return Err(BackendError(why).into());
            }
            let now = backend.now_ms();
            backend.advance(now + 100);
        }
        self.writes.push(WriteLog {
            id,
            at_s: 0.0,
            path: "manifests".into(),
            on: 0,
            what: describe(&action),
            acknowledged: Some(true),
            separation: None,
            side: None,
            found: None,
            action,
        });
        Ok(())
    }

    fn event(&mut self, backend: &mut dyn Backend, at: u64, event: &Event) {
        let (step, action, id) = match event {
            Event::StopClient(client) => {
                backend.stop_client(*client);
                return;
            }
            Event::Do { step, action, id } => (*step, action.clone(), *id),
        };
        let path = self.scenario.timeline[step].path.clone();
        let on = self.scenario.timeline[step].on;
        let action = match self.resolve(action) {
            Ok(a) => a,
            Err(why) => {
                self.steps
                    .push(StepLog::new(at, &path, why.clone(), Some(why)));
                return;
            }
        };
        let what = describe(&action);
        let outcome = match &action {
            Action::Client(client) => {
                backend.start_client(id, client);
                self.clients.push(id);
                Ok(())
            }
            a if a.is_write() => {
                let id = self.next_write;
                self.next_write += 1;
                let result = backend.act(a, on, id);
                let sides = self.apart.sides(self.present());
                let separation = self.apart.any().then(|| self.separations.len() - 1);
                self.writes.push(WriteLog {
                    id,
                    at_s: at as f64 / 1000.0,
                    path: path.clone(),
                    on,
                    what: what.clone(),
                    acknowledged: None,
                    separation,
                    side: separation.and_then(|_| sides.iter().position(|s| s.contains(&on))),
                    found: None,
                    action: a.clone(),
                });
                result
            }
            a => backend.act(a, on, 0),
        };
        if outcome.is_ok() {
            self.follow(at, &action);
        }
        self.steps
            .push(StepLog::new(at, &path, what, outcome.err()));
    }

    /// The nodes started so far (the file's, and those added since), as the last sample saw
    /// them; the file's before the first.
    fn present(&self) -> usize {
        let started = self
            .last
            .nodes
            .iter()
            .filter(|s| **s != NodeState::Absent)
            .count();
        started.max(self.scenario.cluster.nodes)
    }

    /// A container kill with no pod named: one running pod (of the deployment, if named),
    /// chosen by the run's seed.
    fn resolve(&mut self, action: Action) -> Result<Action, String> {
        let Action::KillContainer {
            deployment,
            pod: None,
        } = &action
        else {
            return Ok(action);
        };
        let mut pods: Vec<&str> = self
            .last
            .running
            .iter()
            .filter(|p| deployment.as_ref().is_none_or(|d| &p.deployment == d))
            .map(|p| p.pod.as_str())
            .collect();
        pods.sort_unstable();
        pods.dedup();
        if pods.is_empty() {
            return Err("killContainer: no container runs to kill".into());
        }
        let pod = pods[self.rng.random_range(0..pods.len())].to_string();
        Ok(Action::KillContainer {
            deployment: deployment.clone(),
            pod: Some(pod),
        })
    }

    /// What a step done starts waiting for, and how it splits the network.
    fn follow(&mut self, at: u64, action: &Action) {
        if let Action::KillNode(i) | Action::RebootOffline(i) | Action::Disconnect(i) = action {
            self.detections.push(Detection {
                from_ms: at,
                node: *i,
            });
        }
        if matches!(
            action,
            Action::KillNode(_)
                | Action::KillContainer { .. }
                | Action::PauseNode(_)
                | Action::RebootOffline(_)
                | Action::Disconnect(_)
                | Action::Partition(_)
                | Action::Cut { .. }
        ) {
            self.restores.push(Restore {
                from_ms: at,
                dipped: false,
            });
        }
        if matches!(action, Action::KillContainer { .. }) {
            self.kills.push(at);
        }
        let was = self.apart.any();
        match action {
            Action::Partition(groups) => self.apart.partition = Some(groups.clone()),
            Action::Cut { from, to } => {
                self.apart.cuts.insert((*from, *to));
            }
            Action::Disconnect(i) | Action::RebootOffline(i) => {
                self.apart.offline.insert(*i);
            }
            Action::Connect(i) => {
                self.apart.offline.remove(i);
            }
            Action::Heal => self.apart = Apart::default(),
            _ => {}
        }
        let nodes = self.present();
        match (was, self.apart.any()) {
            (false, true) => self.separations.push(Separation {
                from_s: at as f64 / 1000.0,
                to_s: None,
                what: describe(action),
                sides: self.apart.sides(nodes),
                kept: Vec::new(),
            }),
            (true, false) => {
                if let Some(s) = self.separations.last_mut() {
                    s.to_s = Some(at as f64 / 1000.0);
                }
            }
            _ => {}
        }
    }

    fn sample(&mut self, backend: &mut dyn Backend, at: u64, seen: Observation) {
        for w in self.writes.iter_mut().filter(|w| w.acknowledged.is_none()) {
            w.acknowledged = backend.acknowledged(w.id);
        }
        let Counted {
            serving_of,
            serving,
            desired,
            duplicates,
            running_on,
        } = count(&seen);
        let full = serving == desired;
        let clients = self.clients.iter().map(|c| backend.client_count(*c));
        let (requests, answered) =
            clients.fold((0, 0), |(r, a), c| (r + c.requests, a + c.answered));
        self.false_deaths += self.new_false_deaths(&seen);
        let (detected, restored) = (&mut self.detected, &mut self.restored);
        self.detections.retain(|d| {
            let others_up = seen
                .nodes
                .iter()
                .enumerate()
                .filter(|(i, s)| *i != d.node && **s == NodeState::Up);
            let mut views = others_up.map(|(i, _)| seen.alive_seen[i].as_ref());
            let all_see_it_dead = views.all(|v| v.is_some_and(|alive| !alive.contains(&d.node)));
            if all_see_it_dead {
                detected.push((at - d.from_ms) as f64 / 1000.0);
            }
            !all_see_it_dead
        });
        let last_disruption = self.restores.last().map(|r| r.from_ms);
        self.restores.retain_mut(|r| {
            if !full {
                r.dipped = true;
                return true;
            }
            if r.dipped {
                restored.push((at - r.from_ms) as f64 / 1000.0);
                return false;
            }
            // Not seen missing anything before the next disruption: nothing to restore.
            if last_disruption != Some(r.from_ms) {
                restored.push(0.0);
                return false;
            }
            true
        });
        self.samples.push(Sample {
            at_ms: at,
            desired,
            serving,
            serving_of,
            duplicates,
            running_on,
            nodes: seen.nodes.clone(),
            agreed: seen.agreed,
            requests,
            answered,
        });
        self.last = seen;
    }

    /// Peers newly declared dead by a node that is up, while they ran (paused counts) and the
    /// network was whole.
    fn new_false_deaths(&self, seen: &Observation) -> usize {
        if self.apart.any() {
            return 0;
        }
        let running =
            |v: usize| matches!(seen.nodes.get(v), Some(NodeState::Up | NodeState::Paused));
        let mut count = 0;
        for (o, now) in seen.alive_seen.iter().enumerate() {
            let (Some(now), Some(Some(before))) = (now, self.last.alive_seen.get(o)) else {
                continue;
            };
            if seen.nodes[o] == NodeState::Up {
                count += before
                    .iter()
                    .filter(|&&v| running(v) && !now.contains(&v))
                    .count();
            }
        }
        count
    }

    fn report(mut self, backend: &mut dyn Backend) -> Report {
        // A restore still waited for that never saw anything missing restored nothing.
        self.restored
            .extend(self.restores.iter().filter(|r| !r.dipped).map(|_| 0.0));
        let unrestored = self.restores.iter().filter(|r| r.dipped).count();
        for w in self.writes.iter_mut().filter(|w| w.acknowledged.is_none()) {
            w.acknowledged = Some(backend.acknowledged(w.id).unwrap_or(false));
        }
        let holdings: Vec<(usize, Holdings)> = (0..self.last.nodes.len())
            .filter(|&i| self.last.nodes[i] == NodeState::Up)
            .filter_map(|i| Some((i, backend.holdings(i)?)))
            .collect();
        self.check_writes(&holdings);
        let held_at_end = self.keep(&holdings);
        let figures = self.figures(unrestored);
        let expectations: Vec<Met> = self
            .scenario
            .expect
            .iter()
            .map(|e| self.judge(e, &figures))
            .collect();
        Report {
            scenario: self.options.name.clone(),
            description: self.scenario.description.clone(),
            backend: backend.name(),
            seed: self.options.seed,
            nodes: self.scenario.total_nodes(),
            duration_s: self.scenario.duration_ms as f64 / 1000.0,
            passed: expectations.iter().all(|e| e.met),
            expectations,
            figures,
            steps: self.steps,
            writes: self.writes,
            separations: self.separations,
            held_at_end,
            trace: backend.trace().map(|t| format!("{t:016x}")),
            samples: self.samples,
            kills: self.kills,
        }
    }

    /// Marks each acknowledged write found if it, or a write that may supersede it, explains
    /// what every node that is up holds of its objects.
    fn check_writes(&mut self, holdings: &[(usize, Holdings)]) {
        let writes = self.writes.clone();
        for w in self
            .writes
            .iter_mut()
            .filter(|w| w.acknowledged == Some(true))
        {
            let found = holdings.iter().all(|(_, held)| {
                objects_of(&w.action).iter().all(|key| {
                    let now = held.get(key);
                    let explained = |b: &WriteLog| explains(&b.action, key, now);
                    explained(w)
                        || writes
                            .iter()
                            .filter(|b| b.id != w.id && may_supersede(b, w))
                            .any(explained)
                })
            });
            w.found = Some(found);
        }
    }

    /// What each separation's writes left at the end, as the first node that is up holds it;
    /// returns every object it holds.
    fn keep(&mut self, holdings: &[(usize, Holdings)]) -> Vec<Kept> {
        let Some((node, held)) = holdings.first() else {
            return Vec::new();
        };
        let kept = |key: String| Kept {
            state: describe_held(held.get(&key)),
            node: *node,
            object: key,
        };
        for (index, s) in self.separations.iter_mut().enumerate() {
            let touched: BTreeSet<String> = self
                .writes
                .iter()
                .filter(|w| w.separation == Some(index))
                .flat_map(|w| objects_of(&w.action))
                .collect();
            s.kept = touched.into_iter().map(kept).collect();
        }
        held.keys().cloned().map(kept).collect()
    }

    fn figures(&self, unrestored: usize) -> Figures {
        let mut f = Figures::default();
        let mut detected = self.detected.clone();
        let mut restored = self.restored.clone();
        f.detect_p50_s = percentile(&mut detected, 50.0);
        f.detect_max_s = detected.last().copied();
        f.undetected = self.detections.len();
        f.restore_p50_s = percentile(&mut restored, 50.0);
        f.restore_max_s = restored.last().copied();
        f.unrestored = unrestored;
        f.false_deaths = self.false_deaths;
        f.duplicates_max = self.samples.iter().map(|s| s.duplicates).max().unwrap_or(0);
        f.duplicate_window_s = longest(&self.samples, |s| s.duplicates > 0) as f64 / 1000.0;
        let last_step = self
            .scenario
            .timeline
            .iter()
            .map(|s| s.end_ms())
            .max()
            .unwrap_or(0);
        f.converged_s = self
            .samples
            .iter()
            .find(|s| s.at_ms >= last_step && s.agreed)
            .map(|s| (s.at_ms - last_step) as f64 / 1000.0);
        let acked = self.writes.iter().filter(|w| w.acknowledged == Some(true));
        f.writes_acknowledged = acked.clone().count();
        f.writes_found = acked.clone().filter(|w| w.found == Some(true)).count();
        f.writes_lost = f.writes_acknowledged - f.writes_found;
        if let Some(last) = self.samples.last() {
            f.client_requests = last.requests;
            f.client_failures = last.requests - last.answered;
            f.client_success =
                (last.requests > 0).then(|| last.answered as f64 / last.requests as f64);
        }
        f
    }

    fn judge(&self, expect: &Expect, figures: &Figures) -> Met {
        let (met, detail) = match expect {
            Expect::Running {
                deployment,
                replicas,
                within_ms,
                after_ms,
            } => {
                let window = self
                    .samples
                    .iter()
                    .filter(|s| s.at_ms >= *after_ms && s.at_ms <= after_ms + within_ms);
                let reached = window
                    .clone()
                    .find(|s| self.running_of(s, deployment.as_deref()) == *replicas);
                match reached {
                    Some(s) => (true, format!("{replicas} running at {}", seconds(s.at_ms))),
                    None => {
                        let most = window
                            .map(|s| self.running_of(s, deployment.as_deref()))
                            .max();
                        (
                            false,
                            format!(
                                "never {replicas} in the window (at most {})",
                                most.unwrap_or(0)
                            ),
                        )
                    }
                }
            }
            Expect::NoLostWrites => (
                figures.writes_lost == 0,
                format!(
                    "{} acknowledged, {} found on every node, {} lost",
                    figures.writes_acknowledged, figures.writes_found, figures.writes_lost
                ),
            ),
            Expect::Duplicates {
                at_most,
                for_at_most_ms,
            } => {
                let count_ok = at_most.is_none_or(|k| figures.duplicates_max <= k);
                let window_ok =
                    for_at_most_ms.is_none_or(|t| figures.duplicate_window_s * 1000.0 <= t as f64);
                (
                    count_ok && window_ok,
                    format!(
                        "at most {} at once, the longest spell {:.1} s",
                        figures.duplicates_max, figures.duplicate_window_s
                    ),
                )
            }
            Expect::Client { success_at_least } => match figures.client_success {
                Some(rate) => (
                    rate >= *success_at_least,
                    format!(
                        "{:.2} % of {} requests answered",
                        rate * 100.0,
                        figures.client_requests
                    ),
                ),
                None => (false, "no request was made".into()),
            },
            Expect::Figure { name, at_most } => match figures.get(name) {
                Some(value) => (value <= *at_most, format!("{name} = {value}")),
                None => (false, format!("{name} was not measured")),
            },
        };
        Met {
            expect: expect.describe(),
            met,
            detail,
        }
    }

    /// Pods of `deployment` (of every one if `None`) running, once each, in a sample.
    fn running_of(&self, sample: &Sample, deployment: Option<&str>) -> u32 {
        match deployment {
            None => sample.serving,
            Some(d) => sample.serving_of.get(d).copied().unwrap_or(0),
        }
    }
}

/// What an observation comes to.
struct Counted {
    serving_of: BTreeMap<String, u32>,
    serving: u32,
    desired: u32,
    duplicates: u32,
    running_on: Vec<u32>,
}

/// Desired pods running (each `<deployment>-<index>` below its replicas, at least once), by
/// deployment and in all; copies beyond one per pod; containers running per node.
fn count(seen: &Observation) -> Counted {
    let mut copies: BTreeMap<&str, u32> = BTreeMap::new();
    let mut running_on = vec![0u32; seen.nodes.len()];
    for p in &seen.running {
        *copies.entry(&p.pod).or_default() += 1;
        running_on[p.node] += 1;
    }
    let serving_of: BTreeMap<String, u32> = seen
        .desired
        .iter()
        .map(|(deployment, replicas)| {
            let running = (0..*replicas)
                .filter(|i| copies.contains_key(format!("default/{deployment}-{i}").as_str()));
            (deployment.clone(), running.count() as u32)
        })
        .collect();
    Counted {
        serving: serving_of.values().sum(),
        desired: seen.desired.values().sum(),
        duplicates: copies.values().map(|n| n - 1).sum(),
        serving_of,
        running_on,
    }
}

/// The keys (`Deployment/name`) a write touches.
fn objects_of(action: &Action) -> Vec<String> {
    match action {
        Action::Apply(m) => m.objects.iter().map(object_key).collect(),
        Action::Scale { deployment, .. }
        | Action::Update { deployment, .. }
        | Action::Delete { deployment } => {
            vec![format!("Deployment/{deployment}")]
        }
        _ => Vec::new(),
    }
}

/// An object as the report and [`crate::backend::Holdings`] name it: `Deployment/web`.
fn object_key(object: &weeble_crdt::Object) -> String {
    format!("{}/{}", object.kind(), object.meta().name)
}

/// Whether write `action` leaves `key` as `now` holds it.
fn explains(action: &Action, key: &str, now: Option<&crate::backend::Held>) -> bool {
    match (action, now) {
        (Action::Delete { .. }, now) => now.is_none(),
        (_, None) => false,
        (Action::Scale { replicas, .. }, Some(h)) => h.replicas == Some(*replicas),
        (Action::Update { image, env, .. }, Some(h)) => {
            let holds = image.as_ref().is_none_or(|i| h.image.as_ref() == Some(i))
                && env.iter().all(|(k, v)| h.env.get(k) == Some(v));
            holds || h.reverted.is_some()
        }
        (Action::Apply(m), Some(h)) => m.objects.iter().any(|o| {
            object_key(o) == key
                && match o {
                    weeble_crdt::Object::Deployment(d) => {
                        h.replicas == Some(d.spec.replicas)
                            && h.image.as_deref()
                                == d.spec.template.containers.first().map(|c| c.image.as_str())
                    }
                    weeble_crdt::Object::Service(_) | weeble_crdt::Object::Namespace(_) => true,
                }
        }),
        _ => false,
    }
}

/// Whether write `b` may have superseded `a`: made after it, or during the same split.
fn may_supersede(b: &WriteLog, a: &WriteLog) -> bool {
    b.at_s >= a.at_s || (b.separation.is_some() && b.separation == a.separation)
}

fn describe_held(held: Option<&crate::backend::Held>) -> String {
    let Some(h) = held else {
        return "absent".into();
    };
    let mut parts = Vec::new();
    if let Some(r) = h.replicas {
        parts.push(format!("{r} replicas"));
    }
    if let Some(i) = &h.image {
        parts.push(format!("image {i}"));
    }
    for (k, v) in &h.env {
        parts.push(format!("{k}={v}"));
    }
    if let Some(why) = &h.reverted {
        parts.push(format!("reverted by the cluster ({why})"));
    }
    if parts.is_empty() {
        "present".into()
    } else {
        parts.join(", ")
    }
}

/// One line for an action, as the report lists it.
pub fn describe(action: &Action) -> String {
    match action {
        Action::Apply(m) => {
            let names: Vec<String> = m.objects.iter().map(object_key).collect();
            format!("apply {}", names.join(", "))
        }
        Action::Scale {
            deployment,
            replicas,
        } => format!("scale {deployment} to {replicas}"),
        Action::Update {
            deployment,
            image,
            env,
        } => {
            let mut what: Vec<String> = image.iter().map(|i| format!("image {i}")).collect();
            what.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
            format!("update {deployment}: {}", what.join(", "))
        }
        Action::Delete { deployment } => format!("delete {deployment}"),
        Action::KillNode(i) => format!("kill node {i}"),
        Action::RestartNode(i) => format!("restart node {i}"),
        Action::PauseNode(i) => format!("pause node {i}"),
        Action::ResumeNode(i) => format!("resume node {i}"),
        Action::KillContainer { pod, deployment } => match (pod, deployment) {
            (Some(p), _) => format!("kill the container of {p}"),
            (None, Some(d)) => format!("kill a container of {d}"),
            (None, None) => "kill a container".into(),
        },
        Action::Partition(groups) => {
            let groups: Vec<String> = groups.iter().map(|g| format!("{g:?}")).collect();
            format!("partition {}", groups.join(" | "))
        }
        Action::Cut { from, to } => format!("cut {from} → {to}"),
        Action::Link {
            between,
            loss,
            delay_ms,
        } => {
            format!(
                "link {} ↔ {}: {:.0} % loss, {delay_ms} ms delay",
                between[0],
                between[1],
                loss * 100.0
            )
        }
        Action::Heal => "heal the network".into(),
        Action::Disconnect(i) => format!("disconnect node {i}"),
        Action::Connect(i) => format!("connect node {i}"),
        Action::AddNode { .. } => "add a node".into(),
        Action::RebootOffline(i) => format!("reboot node {i} offline"),
        Action::Client(c) => format!(
            "a client asks {} through node {} every {} ms",
            c.service, c.via, c.interval_ms
        ),
    }
}

/// The longest spell (ms) in which `holds` held, sample to sample.
fn longest(samples: &[Sample], holds: impl Fn(&Sample) -> bool) -> u64 {
    let (mut best, mut since) = (0, None);
    for s in samples {
        match (holds(s), since) {
            (true, None) => since = Some(s.at_ms),
            (false, Some(from)) => {
                best = best.max(s.at_ms - from);
                since = None;
            }
            _ => {}
        }
    }
    if let (Some(from), Some(last)) = (since, samples.last()) {
        best = best.max(last.at_ms - from);
    }
    best
}
