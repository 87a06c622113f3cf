//! A run's report: each expectation met or not, the figures, the steps as they were carried
//! out, the writes and what became of them, and what each side of a split changed and what the
//! merge kept. Written as JSON (`report.json`, the same bytes for the same simulated run) and
//! markdown (`report.md`); the samples behind it draw the timeline ([`crate::svg`]).

use crate::backend::NodeState;
use crate::spec::{Action, seconds};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// What one sample saw.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub at_ms: u64,
    /// Replicas desired in all.
    pub desired: u32,
    /// Desired pods running (at least once).
    pub serving: u32,
    pub serving_of: BTreeMap<String, u32>,
    /// Running copies beyond one per pod.
    pub duplicates: u32,
    /// Containers running on each node.
    pub running_on: Vec<u32>,
    pub nodes: Vec<NodeState>,
    pub agreed: bool,
    /// The clients' requests and answers so far.
    pub requests: u64,
    pub answered: u64,
}

/// The figures, in seconds for times; `None` where nothing was measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    pub detect_p50_s: Option<f64>,
    pub detect_max_s: Option<f64>,
    /// Nodes lost whose death not every other node declared by the end.
    pub undetected: usize,
    /// Peers declared dead while they ran (paused counts) and the network was whole.
    pub false_deaths: usize,
    pub restore_p50_s: Option<f64>,
    pub restore_max_s: Option<f64>,
    /// Disruptions after which not every desired replica ran again by the end.
    pub unrestored: usize,
    pub duplicates_max: u32,
    pub duplicate_window_s: f64,
    pub converged_s: Option<f64>,
    pub writes_acknowledged: usize,
    pub writes_found: usize,
    pub writes_lost: usize,
    pub client_requests: u64,
    pub client_failures: u64,
    pub client_success: Option<f64>,
}

impl Figures {
    /// A figure by its name in [`crate::spec::FIGURES`].
    pub fn get(&self, name: &str) -> Option<f64> {
        match name {
            "detect_p50_s" => self.detect_p50_s,
            "detect_max_s" => self.detect_max_s,
            "restore_p50_s" => self.restore_p50_s,
            "restore_max_s" => self.restore_max_s,
            "duplicates_max" => Some(f64::from(self.duplicates_max)),
            "duplicate_window_s" => Some(self.duplicate_window_s),
            "converged_s" => self.converged_s,
            "false_deaths" => Some(self.false_deaths as f64),
            "writes_lost" => Some(self.writes_lost as f64),
            "client_failures" => Some(self.client_failures as f64),
            _ => None,
        }
    }
}

/// One expectation, judged.
#[derive(Debug, Clone, Serialize)]
pub struct Met {
    pub expect: String,
    pub met: bool,
    pub detail: String,
}

/// One step as it was carried out.
#[derive(Debug, Clone, Serialize)]
pub struct StepLog {
    pub at_s: f64,
    pub path: String,
    pub what: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl StepLog {
    pub fn new(at_ms: u64, path: &str, what: String, error: Option<String>) -> Self {
        StepLog {
            at_s: at_ms as f64 / 1000.0,
            path: path.to_string(),
            what,
            error,
        }
    }
}

/// One write and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct WriteLog {
    #[serde(skip)]
    pub id: u64,
    pub at_s: f64,
    pub path: String,
    pub on: usize,
    pub what: String,
    pub acknowledged: Option<bool>,
    /// The split it was made during (its index among the report's `separations`).
    pub separation: Option<usize>,
    /// Its node's side of that split.
    pub side: Option<usize>,
    /// Whether every node holds it (or a write that may supersede it) at the end.
    pub found: Option<bool>,
    #[serde(skip)]
    pub action: Action,
}

/// A spell during which the network was split.
#[derive(Debug, Clone, Serialize)]
pub struct Separation {
    pub from_s: f64,
    /// `None`: not healed by the end.
    pub to_s: Option<f64>,
    /// The step that split it.
    pub what: String,
    /// The groups of nodes that could not reach each other.
    pub sides: Vec<Vec<usize>>,
    /// What the writes made during it left at the end.
    pub kept: Vec<Kept>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Kept {
    pub object: String,
    pub state: String,
    /// The node it was read from.
    pub node: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub description: String,
    pub backend: &'static str,
    pub seed: u64,
    pub nodes: usize,
    pub duration_s: f64,
    pub passed: bool,
    pub expectations: Vec<Met>,
    pub figures: Figures,
    pub steps: Vec<StepLog>,
    pub writes: Vec<WriteLog>,
    pub separations: Vec<Separation>,
    /// Every object as the first node that is up holds it at the end.
    pub held_at_end: Vec<Kept>,
    /// The simulator's trace (the same for the same run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    #[serde(skip)]
    pub samples: Vec<Sample>,
    /// When containers were killed, ms.
    #[serde(skip)]
    pub kills: Vec<u64>,
}

impl Report {
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serializes") + "\n"
    }

    /// The report for people.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let verdict = if self.passed { "passed" } else { "FAILED" };
        let _ = writeln!(md, "# Scenario `{}`: {verdict}\n", self.scenario);
        let _ = writeln!(md, "{}\n", self.description);
        let _ = writeln!(
            md,
            "Backend `{}`, seed {}, {} nodes, {}.\n",
            self.backend,
            self.seed,
            self.nodes,
            seconds((self.duration_s * 1000.0) as u64)
        );
        let _ = writeln!(md, "## Expectations\n");
        if self.expectations.is_empty() {
            let _ = writeln!(md, "None: this run only measures.\n");
        }
        for e in &self.expectations {
            let mark = if e.met { "met" } else { "**NOT met**" };
            let _ = writeln!(md, "- {mark}: {} ({})", e.expect, e.detail);
        }
        let f = &self.figures;
        let _ = writeln!(md, "\n## Figures\n\n| figure | value |\n|---|---:|");
        let s = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.2} s"));
        let rows = [
            (
                "detection p50 / max",
                format!("{} / {}", s(f.detect_p50_s), s(f.detect_max_s)),
            ),
            (
                "nodes lost, not declared dead by the end",
                f.undetected.to_string(),
            ),
            (
                "peers declared dead while running and reachable",
                f.false_deaths.to_string(),
            ),
            (
                "time to restore p50 / max",
                format!("{} / {}", s(f.restore_p50_s), s(f.restore_max_s)),
            ),
            (
                "disruptions not restored by the end",
                f.unrestored.to_string(),
            ),
            (
                "pods running twice, most at once",
                f.duplicates_max.to_string(),
            ),
            (
                "longest spell with a pod running twice",
                format!("{:.2} s", f.duplicate_window_s),
            ),
            ("convergence after the last step", s(f.converged_s)),
            (
                "writes acknowledged / found / lost",
                format!(
                    "{} / {} / {}",
                    f.writes_acknowledged, f.writes_found, f.writes_lost
                ),
            ),
            (
                "client requests / failed / success",
                format!(
                    "{} / {} / {}",
                    f.client_requests,
                    f.client_failures,
                    f.client_success
                        .map_or("—".into(), |r| format!("{:.2} %", r * 100.0))
                ),
            ),
        ];
        for (name, value) in rows {
            let _ = writeln!(md, "| {name} | {value} |");
        }
        if !self.separations.is_empty() {
            let _ = writeln!(md, "\n## While the network was split\n");
        }
        for (i, sep) in self.separations.iter().enumerate() {
            let until = sep
                .to_s
                .map_or("the end (never healed)".into(), |t| format!("{t:.1} s"));
            let _ = writeln!(md, "From {:.1} s to {until}: {}.\n", sep.from_s, sep.what);
            for (side, nodes) in sep.sides.iter().enumerate() {
                let writes: Vec<String> = self
                    .writes
                    .iter()
                    .filter(|w| w.separation == Some(i) && w.side == Some(side))
                    .map(|w| {
                        let ack = if w.acknowledged == Some(true) {
                            "acknowledged"
                        } else {
                            "not acknowledged"
                        };
                        format!("{} at {:.1} s on node {} ({ack})", w.what, w.at_s, w.on)
                    })
                    .collect();
                let changed = if writes.is_empty() {
                    "no change".into()
                } else {
                    writes.join("; ")
                };
                let _ = writeln!(md, "- side {} (nodes {nodes:?}): {changed}", side + 1);
            }
            if !sep.kept.is_empty() {
                let _ = writeln!(
                    md,
                    "\nThe merge kept (as node {} holds it at the end):\n",
                    sep.kept[0].node
                );
                for k in &sep.kept {
                    let _ = writeln!(md, "- {}: {}", k.object, k.state);
                }
            }
            let _ = writeln!(md);
        }
        if let Some(first) = self.held_at_end.first() {
            let _ = writeln!(md, "\n## Held at the end (node {})\n", first.node);
            for k in &self.held_at_end {
                let _ = writeln!(md, "- {}: {}", k.object, k.state);
            }
        }
        let _ = writeln!(md, "\n## Steps\n");
        for step in &self.steps {
            let error = step
                .error
                .as_ref()
                .map_or(String::new(), |e| format!(" — not done: {e}"));
            let _ = writeln!(
                md,
                "- {:.1} s `{}`: {}{error}",
                step.at_s, step.path, step.what
            );
        }
        if let Some(trace) = &self.trace {
            let _ = writeln!(md, "\nTrace {trace}: the same seed gives the same run.");
        }
        md
    }
}
