//! The file format's checks, and scenarios run on the simulator: every library scenario
//! passes, the same seed gives the same report byte for byte, and an expectation that cannot
//! hold fails by name.

use crate::library::SCENARIOS;
use crate::report::Report;
use crate::run::{RunOptions, run};
use crate::sim::Sim;
use crate::spec::Scenario;

/// Runs library scenario `name` (or the text `text`, if given) on the simulator.
fn simulate(name: &str, text: Option<&str>, seed: u64) -> Report {
    let text = text.unwrap_or_else(|| crate::library::find(name).expect("a library scenario"));
    let scenario = Scenario::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut backend = Sim::new(seed, 2, scenario.added_labels());
    let options = RunOptions {
        name: name.into(),
        seed,
        sample_ms: 100,
        stop: Default::default(),
    };
    run(&scenario, &mut backend, &options, &mut |_, _| {}).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The problems a file is refused for.
fn problems(text: &str) -> Vec<String> {
    Scenario::parse(text).expect_err("refused").problems
}

const HEAD: &str = "description: a test\ncluster: {nodes: 3}\nmanifests:\n- kind: Deployment\n  \
    metadata: {name: web}\n  spec:\n    replicas: 2\n    template:\n      metadata: {labels: {app: web}}\n      \
    spec:\n        containers: [{name: web, image: img}]\n";

#[test]
fn every_library_scenario_passes_on_the_simulator() {
    let mut failed = Vec::new();
    for (name, _) in SCENARIOS {
        let report = simulate(name, None, 1);
        assert!(!report.expectations.is_empty(), "{name} expects something");
        for e in report.expectations.iter().filter(|e| !e.met) {
            failed.push(format!("{name}: {} ({})", e.expect, e.detail));
        }
    }
    assert!(failed.is_empty(), "not met:\n{}", failed.join("\n"));
}

#[test]
fn the_same_seed_gives_the_same_report_byte_for_byte() {
    let a = simulate("split-brain", None, 7);
    let b = simulate("split-brain", None, 7);
    assert_eq!(a.json(), b.json());
    assert_eq!(crate::svg::timeline(&a), crate::svg::timeline(&b));
    let c = simulate("split-brain", None, 8);
    assert_ne!(a.trace, c.trace, "another seed, another run");
}

#[test]
fn an_expectation_that_cannot_hold_fails_by_name() {
    let text = format!(
        "{HEAD}timeline:\n- {{at: 2s, killNode: 1}}\nexpect:\n- running: {{deployment: web, replicas: 3, within: 5s}}\n- duplicates: {{atMost: 0}}\n"
    );
    let report = simulate("impossible", Some(&text), 1);
    assert!(!report.passed);
    let unmet: Vec<&str> = report
        .expectations
        .iter()
        .filter(|e| !e.met)
        .map(|e| e.expect.as_str())
        .collect();
    assert_eq!(unmet, ["3 replicas of web running within 5 s after 2 s"]);
    assert!(report.markdown().contains("**NOT met**: 3 replicas of web"));
}

#[test]
fn a_split_brain_report_says_what_each_side_wrote_and_what_the_merge_kept() {
    let report = simulate("split-brain", None, 1);
    let split = &report.separations[0];
    assert_eq!(split.sides, vec![vec![0, 1, 2], vec![3, 4]]);
    assert_eq!(split.to_s, Some(20.0));
    let sides: Vec<(Option<usize>, &str)> = report
        .writes
        .iter()
        .filter(|w| w.separation == Some(0))
        .map(|w| (w.side, w.what.as_str()))
        .collect();
    assert_eq!(
        sides,
        [
            (Some(0), "scale web to 6"),
            (Some(0), "apply Deployment/left"),
            (Some(1), "apply Deployment/right"),
            (Some(1), "scale web to 5"),
        ]
    );
    let kept: Vec<&str> = split.kept.iter().map(|k| k.object.as_str()).collect();
    assert_eq!(
        kept,
        ["Deployment/left", "Deployment/right", "Deployment/web"]
    );
    let web = &split.kept[2].state;
    assert!(
        web.starts_with("6 replicas") || web.starts_with("5 replicas"),
        "one side's count: {web}"
    );
    assert!(
        report
            .markdown()
            .contains("side 2 (nodes [3, 4]): apply Deployment/right")
    );
}

#[test]
fn a_node_killed_is_detected_and_its_replicas_restored() {
    let report = simulate("kill-node", None, 3);
    let f = &report.figures;
    assert!(f.detect_max_s.is_some_and(|d| d > 0.0), "{f:?}");
    assert!(f.restore_max_s.is_some_and(|r| r > 0.0), "{f:?}");
    assert_eq!((f.undetected, f.unrestored, f.duplicates_max), (0, 0, 0));
    let last = report.samples.last().unwrap();
    assert_eq!(last.nodes[2], crate::backend::NodeState::Down);
    assert_eq!(last.running_on[2], 0);
    assert_eq!(last.serving, 10);
}

#[test]
fn bad_files_are_refused_with_the_field_path() {
    let cases = [
        (
            "description: x\ncluster: {nodes: 3, nodez: 1}\n",
            "cluster.nodez: unknown field `nodez`, expected one of `nodes`",
        ),
        (
            "description: x\ntimeline:\n- {at: 1s, killNode: 5}\n",
            "timeline[0].killNode: no node 5 then",
        ),
        (
            "description: x\ntimeline:\n- {at: soon, killNode: 1}\n",
            "timeline[0].at: \"soon\"",
        ),
        (
            "description: x\ntimeline:\n- {at: 1s}\n",
            "timeline[0]: say what happens",
        ),
        (
            "description: x\ntimeline:\n- {at: 1s, killNode: 1, pauseNode: 1}\n",
            "timeline[0]: one action per step, not killNode and pauseNode",
        ),
        (
            "description: x\ntimeline:\n- {at: 1s, scale: {deployment: api, replicas: 2}}\n",
            "timeline[0].scale.deployment: no deployment \"api\"",
        ),
        (
            "description: x\ntimeline:\n- {at: 1s, heal: {}, for: 2s}\n",
            "timeline[0].for: heal cannot be undone",
        ),
        (
            "description: x\ntimeline:\n- {at: 5s, killNode: 1}\n- {at: 2s, restartNode: 1}\n",
            "timeline[1].at: steps must come in time order",
        ),
        (
            "description: x\nexpect:\n- figure: {name: speed, atMost: 1}\n",
            "expect[0].figure.name: \"speed\" is not a figure",
        ),
        (
            "description: x\nexpect:\n- client: {successAtLeast: 120%}\n",
            "expect[0].client.successAtLeast",
        ),
        (
            "description: x\ntimeline:\n- {at: 10s, killNode: 1}\nduration: 5s\n",
            "duration: 5 s: give more than the timeline's last moment (10 s)",
        ),
        (
            "description: x\nmanifests:\n- kind: Deployment\n  metadata: {name: web}\n  spec: {replicas: 1}\n",
            "manifests[0].spec: missing field `template`",
        ),
        (
            "description: x\ntimeline:\n- {at: 1s, partition: [[0, 1], [1, 2]]}\n",
            "timeline[0].partition: node 1 is in two groups",
        ),
        (
            "description: x\ntimeline:\n- {at: 1s, on: 1, killNode: 2}\n",
            "timeline[0].on: only a write",
        ),
    ];
    for (text, expected) in cases {
        let found = problems(text);
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "{text}\nexpected {expected:?}, got {found:?}"
        );
    }
}

#[test]
fn a_step_repeats_and_undoes_itself_and_nodes_added_count() {
    let text = format!(
        "{HEAD}timeline:\n- {{at: 1s, pauseNode: 2, for: 500ms, every: 2s, until: 7s}}\n- {{at: 8s, addNode: {{labels: {{zone: b}}}}}}\n- {{at: 9s, killNode: 3}}\n"
    );
    let scenario = Scenario::parse(&text).unwrap();
    let pause = &scenario.timeline[0];
    assert_eq!(pause.times().collect::<Vec<_>>(), [1000, 3000, 5000, 7000]);
    assert_eq!(pause.end_ms(), 7500);
    assert_eq!(scenario.total_nodes(), 4, "node 3 exists once added");
    assert_eq!(
        scenario.duration_ms, 39_000,
        "30 s after the last step by default"
    );
}
