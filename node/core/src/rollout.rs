//! Rollouts with no leader: which template each replica of a deployment runs while its
//! template changes, decided alike by every node from the document and the gossiped status.
//!
//! A deployment's replicas keep their slots (`<deployment>-<index>`, placed as ever); a
//! rollout changes them in place, lowest index first. [`pace`] is pure: the deployment, what
//! the node sees of each slot ([`Seen`], from the status table of its live peers) in, the
//! template each slot runs and how many surge replicas run beside them ([`Pace`]) out. Each
//! node acts on the slots placement gives it; a node that sees the same table decides the
//! same, and one that sees an older table decides as the cluster stood then (the bounds hold
//! as each node sees the cluster, as Kubernetes' controller holds them as its cache does).
//!
//! `RollingUpdate` (the default, 25 % / 25 %): surge replicas (`maxSurge`, on the nodes of
//! slots 0, 1, …: [`surge_slot`]) run the new template while any slot still runs an old
//! one; a slot changes when the available replicas, surge included, stay at least `replicas -
//! maxUnavailable` without it. A slot whose replica is gone or not available changes at
//! once: that costs no availability. `Recreate`: every old replica stops before any slot
//! starts the new template. `paused`: no slot starts changing.

use crate::membership::{Liveness, MemberList};
use crate::reconcile::{DesiredPod, replica_of};
use crate::runtime::{ContainerState, LABEL_TEMPLATE_HASH, Observed};
use crate::status::{Phase, PodStatus, StatusTable};
use std::collections::BTreeMap;
use weeble_crdt::{Deployment, ObjectKey, Snapshot, Strategy};

/// What a node sees of one replica slot: the template of a pod reported for it, and whether
/// that pod is available (ready for `minReadySeconds`). Borrowed from the table, not copied:
/// a node in a rollout reads every report of its peers at each pass (at 1,000 simulated
/// nodes, copying each pod's template hash was a tenth of a rolling update's wall time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen<'a> {
    pub template_hash: &'a str,
    pub available: bool,
    /// When it became available (Unix ms, its node's clock; 0 if it is not).
    pub available_ms: i64,
    /// Why it is not running, in Kubernetes' words (`ErrImageNeverPull`), and the runtime's
    /// message.
    pub reason: Option<&'a str>,
    pub message: Option<&'a str>,
}

/// The template a slot runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// The deployment's current template.
    Current,
    /// The old template with this hash, kept for now.
    Old(String),
    /// No pod for now (`Recreate`, while old pods still run).
    Nothing,
}

/// What a deployment's slots run, as this node sees the rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pace {
    /// Slot by slot, below `replicas`.
    pub slots: Vec<Choice>,
    /// How many surge replicas run the current template, in slots `replicas..`.
    pub surge: u32,
    pub progress: Progress,
}

/// How far a rollout has come, as this node sees it (Kubernetes' deployment status).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Slots below `replicas` whose pod runs the current template (`UP-TO-DATE`).
    pub updated: u32,
    /// Of those, the available ones.
    pub updated_available: u32,
    /// Surge pods seen (past `replicas`, on the current template).
    pub surge: u32,
    /// Available pods, surge included (`AVAILABLE`).
    pub available: u32,
    /// Slots past `replicas` with a pod seen: surge replicas, or old ones left from a larger
    /// count.
    pub beyond: u32,
}

impl Progress {
    /// Every slot runs the current template, available, and nothing else runs.
    pub fn complete(&self, replicas: u32) -> bool {
        self.updated_available == replicas && self.beyond == 0
    }
}

/// How a slot stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stand<'a> {
    /// No pod seen.
    Missing,
    Current {
        available: bool,
    },
    Old {
        hash: &'a str,
        available: bool,
    },
}

/// A slot's standing from the pods seen for it (two, while it is handed over): the current
/// template if any runs it, else the first old one available, else the first.
fn stand<'a>(seen: &[Seen<'a>], current: &str) -> Stand<'a> {
    let available = |s: &&Seen| s.available;
    if seen.iter().any(|s| s.template_hash == current) {
        let available = seen
            .iter()
            .any(|s| s.template_hash == current && s.available);
        return Stand::Current { available };
    }
    match seen.iter().find(available).or(seen.first()) {
        None => Stand::Missing,
        Some(s) => Stand::Old {
            hash: s.template_hash,
            available: s.available,
        },
    }
}

/// `maxSurge` and `maxUnavailable` for `replicas`, as Kubernetes resolves them: the surge
/// rounded up, the unavailable down, and 1 unavailable if both come to 0.
pub fn bounds(strategy: &Strategy, replicas: u32) -> (u32, u32) {
    let Strategy::RollingUpdate {
        max_surge,
        max_unavailable,
    } = strategy
    else {
        return (0, replicas);
    };
    let surge = max_surge.of(replicas, true);
    let unavailable = max_unavailable.of(replicas, false).min(replicas);
    match (surge, unavailable) {
        (0, 0) => (0, 1.min(replicas)),
        bounds => bounds,
    }
}

/// The rollout of `d` as `seen` shows it: the pods seen, by slot index (slots at and past
/// `replicas` are surge, or left from a larger count).
pub fn pace(d: &Deployment, seen: &Slots, current: &str) -> Pace {
    let replicas = d.spec.replicas;
    let stands: Vec<Stand> = (0..replicas)
        .map(|i| seen.get(&i).map_or(Stand::Missing, |s| stand(s, current)))
        .collect();
    let beyond: Vec<(u32, Stand)> = seen
        .range(replicas..)
        .map(|(&i, s)| (i, stand(s, current)))
        .collect();
    let mut progress = Progress {
        beyond: beyond.len() as u32,
        ..Progress::default()
    };
    let mut old = false;
    for stand in &stands {
        match *stand {
            Stand::Current { available } => {
                progress.updated += 1;
                progress.updated_available += u32::from(available);
                progress.available += u32::from(available);
            }
            Stand::Old { available, .. } => {
                old = true;
                progress.available += u32::from(available);
            }
            Stand::Missing => {}
        }
    }
    // Past `replicas`: surge replicas, or old ones left from a larger count (going, as placed
    // nowhere; `Recreate` waits for them too).
    let (mut surge_running, mut old_beyond) = (false, false);
    for (_, stand) in &beyond {
        match *stand {
            Stand::Current { available } => {
                surge_running = true;
                progress.surge += 1;
                progress.available += u32::from(available);
            }
            Stand::Old { .. } => old_beyond = true,
            Stand::Missing => {}
        }
    }
    let (slots, surge) = match d.spec.strategy {
        Strategy::Recreate if old || old_beyond => (vec![Choice::Nothing; replicas as usize], 0),
        Strategy::Recreate => (vec![Choice::Current; replicas as usize], 0),
        Strategy::RollingUpdate { .. } => {
            let (max_surge, max_unavailable) = bounds(&d.spec.strategy, replicas);
            let rolling = old || (surge_running && progress.updated_available < replicas);
            // Paused, no surge replica starts (those running stay, as a paused Kubernetes
            // deployment keeps its ReplicaSets' counts).
            let surge = match (rolling, d.spec.is_paused()) {
                (false, _) => 0,
                (true, false) => max_surge.min(replicas - progress.updated_available),
                (true, true) => progress.surge.min(max_surge),
            };
            // The surge replicas that stop now (the slots left to change are fewer) are
            // not counted on.
            let stopping = beyond.iter().filter(|(i, stand)| {
                *i >= replicas + surge && *stand == Stand::Current { available: true }
            });
            let staying = progress.available - stopping.count() as u32;
            let floor = replicas - max_unavailable;
            let mut budget = match d.spec.is_paused() {
                true => 0,
                false => staying.saturating_sub(floor),
            };
            let slots = stands
                .iter()
                .map(|stand| match *stand {
                    Stand::Old {
                        hash,
                        available: true,
                    } if budget == 0 => Choice::Old(hash.to_string()),
                    Stand::Old {
                        available: true, ..
                    } => {
                        budget -= 1;
                        Choice::Current
                    }
                    Stand::Old { hash, .. } if d.spec.is_paused() => Choice::Old(hash.to_string()),
                    _ => Choice::Current,
                })
                .collect();
            (slots, surge)
        }
    };
    Pace {
        slots,
        surge,
        progress,
    }
}

/// A deployment's rollout as a node reports it: how far it came, and why it failed if it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub progress: Progress,
    pub stalled: Option<String>,
}

/// The rollout of `d` to its current template as `seen` shows it, at `now_ms`.
pub fn report(d: &Deployment, seen: &Slots, now_ms: i64) -> Report {
    let current = d.spec.template.hash();
    let pace = pace(d, seen, &current);
    Report {
        stalled: stalled(d, seen, &current, &pace, now_ms),
        progress: pace.progress,
    }
}

/// Why the rollout of `d` to its `current` template failed, if it did: it is not complete and
/// made no progress for `progressDeadlineSeconds`, counted from the template's change or the
/// last pod of it that became available (Kubernetes' `ProgressDeadlineExceeded`), with the
/// reason its new pods give. Every node that sees the same table and document says the same,
/// each by its own clock. None for a template written before its time was kept.
pub fn stalled(
    d: &Deployment,
    seen: &Slots,
    current: &str,
    pace: &Pace,
    now_ms: i64,
) -> Option<String> {
    let changed = d.history.changed_ms;
    if changed == 0 || pace.progress.complete(d.spec.replicas) {
        return None;
    }
    let new = seen
        .values()
        .flatten()
        .filter(|s| s.template_hash == current);
    let progressed = new.clone().map(|s| s.available_ms).fold(changed, i64::max);
    let deadline_ms = i64::from(d.spec.progress_deadline_seconds) * 1000;
    if now_ms - progressed <= deadline_ms {
        return None;
    }
    let why = match new.filter_map(|s| Some((s.reason?, s.message))).next() {
        Some((reason, Some(message))) => format!("{reason}: {message}"),
        Some((reason, None)) => reason.to_string(),
        None => "its new pods never became available".into(),
    };
    Some(format!(
        "revision {} made no progress in {} s: {why}",
        d.history.revision, d.spec.progress_deadline_seconds
    ))
}

/// The old revision a failed rollout of `d` goes back to: the one most of the replicas
/// still available run (the last that served), else the newest old one.
pub fn last_good(d: &Deployment, seen: &Slots, current: &str) -> Option<u64> {
    let mut serving: BTreeMap<&str, usize> = BTreeMap::new();
    for s in seen.values().flatten() {
        if s.available && s.template_hash != current {
            *serving.entry(s.template_hash).or_default() += 1;
        }
    }
    let most = serving
        .into_iter()
        .max_by_key(|&(hash, n)| (n, std::cmp::Reverse(hash)));
    let serving = most.and_then(|(hash, _)| d.history.by_hash(hash));
    serving.or(d.history.old.last()).map(|r| r.revision)
}

/// The slot below `replicas` whose node runs surge slot `index` (`replicas` and past): the
/// surge replicas go beside slots 0, 1, …, so that only the nodes that run the deployment's
/// replicas take part in its rollout.
pub fn surge_slot(replicas: u32, index: u32) -> Option<u32> {
    (replicas > 0 && index >= replicas).then(|| (index - replicas) % replicas)
}

/// The deployments whose rollout this node takes part in, as its own containers show, with
/// their current template's hash: it runs a replica of an older template, or a surge
/// replica (an index past the count); or it has a pod not running yet of a deployment whose
/// template changed once (its rollout may have stalled on it) or that is `Recreate` (it may
/// not start while old replicas run elsewhere). `desired` holds this node's pods, each with
/// its deployment's current template. Only these are paced: a deployment no rollout changes
/// costs no walk of the status table.
pub fn rolling(
    snapshot: &Snapshot,
    desired: &[DesiredPod],
    observed: &[Observed],
) -> BTreeMap<ObjectKey, String> {
    let current: BTreeMap<&ObjectKey, &str> = desired
        .iter()
        .map(|p| (&p.key.deployment, p.template_hash.as_str()))
        .collect();
    let mut rolling = BTreeMap::new();
    for o in observed {
        let Some(key) = replica_of(o) else { continue };
        let Some(d) = snapshot.deployments.get(&key.deployment) else {
            continue;
        };
        let Some(&hash) = current.get(&key.deployment) else {
            continue;
        };
        let older = o.labels.get(LABEL_TEMPLATE_HASH).is_none_or(|h| h != hash);
        if older || key.index >= d.spec.replicas {
            rolling.insert(key.deployment, hash.to_string());
        }
    }
    let runs = |p: &DesiredPod| {
        observed.iter().any(|o| {
            o.state == ContainerState::Running
                && o.labels.get(LABEL_TEMPLATE_HASH) == Some(&p.template_hash)
                && replica_of(o).as_ref() == Some(&p.key)
        })
    };
    for p in desired {
        let d = &snapshot.deployments[&p.key.deployment];
        let changed = d.spec.strategy == Strategy::Recreate || d.history.revision > 1;
        if changed && !runs(p) {
            rolling.insert(p.key.deployment.clone(), p.template_hash.clone());
        }
    }
    rolling
}

/// The slot index of a pod of deployment `name`, from its name (`<name>-<index>`).
pub fn slot_of(name: &str, pod: &str) -> Option<u32> {
    pod.strip_prefix(name)?.strip_prefix('-')?.parse().ok()
}

/// What a node sees of one deployment's replicas, by slot index.
pub type Slots<'a> = BTreeMap<u32, Vec<Seen<'a>>>;

/// What `table` shows of `d`'s slots: the pods its live members report, by slot. A pod is
/// available once Running and ready and started `minReadySeconds` before `now_ms` (its
/// node's clock against this node's).
pub fn seen<'a>(
    d: &Deployment,
    table: &'a StatusTable,
    members: &MemberList,
    now_ms: i64,
) -> Slots<'a> {
    let mut seen = seen_of([d], table, members, now_ms);
    seen.remove(&(d.meta.namespace.as_str(), d.meta.name.as_str()))
        .unwrap_or_default()
}

/// [`seen`] for each of `deployments`, by (namespace, name), in one walk of the table.
pub fn seen_of<'a, 't>(
    deployments: impl IntoIterator<Item = &'a Deployment>,
    table: &'t StatusTable,
    members: &MemberList,
    now_ms: i64,
) -> BTreeMap<(&'a str, &'a str), Slots<'t>> {
    let deployments: BTreeMap<(&str, &str), &Deployment> = deployments
        .into_iter()
        .map(|d| ((d.meta.namespace.as_str(), d.meta.name.as_str()), d))
        .collect();
    if deployments.is_empty() {
        // Nothing in a rollout: the table is not read (each pass of every node read it).
        return BTreeMap::new();
    }
    let of = |p: &PodStatus| {
        let key = (p.namespace.as_str(), p.deployment.as_str());
        deployments.get(&key).copied()
    };
    gather(table, members, now_ms, of)
}

/// The pods of `table`'s live members, by deployment (`of` finds a pod's, if it is one to
/// read) and slot.
fn gather<'a, 't>(
    table: &'t StatusTable,
    members: &MemberList,
    now_ms: i64,
    of: impl Fn(&PodStatus) -> Option<&'a Deployment>,
) -> BTreeMap<(&'a str, &'a str), Slots<'t>> {
    let mut seen: BTreeMap<(&str, &str), Slots> = BTreeMap::new();
    for report in table.nodes().filter(|r| live(members, &r.node)) {
        for p in &report.pods {
            let Some(d) = of(p) else { continue };
            let Some(index) = slot_of(&d.meta.name, &p.name) else {
                continue;
            };
            let min_ready_ms = i64::from(d.spec.min_ready_seconds) * 1000;
            let available = available(p, min_ready_ms, now_ms);
            let slots = seen.entry((&d.meta.namespace, &d.meta.name)).or_default();
            slots.entry(index).or_default().push(Seen {
                template_hash: &p.template_hash,
                available,
                available_ms: if available {
                    p.started_at_ms + min_ready_ms
                } else {
                    0
                },
                reason: p.reason.as_deref(),
                message: p.message.as_deref(),
            });
        }
    }
    seen
}

fn available(p: &PodStatus, min_ready_ms: i64, now_ms: i64) -> bool {
    p.phase == Phase::Running && p.ready && now_ms - p.started_at_ms >= min_ready_ms
}

/// Whether `node` is a member not declared down.
fn live(members: &MemberList, node: &str) -> bool {
    members
        .named(node)
        .next()
        .is_some_and(|(_, l)| *l != Liveness::Down)
}

#[cfg(test)]
mod tests;
