//! The scenarios that come with Weeble: the files of `scenarios/`, built into the binary so
//! that `weeble scenario list` and `run NAME` work anywhere.

/// Each scenario's name and file text.
pub const SCENARIOS: &[(&str, &str)] = &[
    ("talk-demo", include_str!("../../scenarios/talk-demo.yaml")),
    (
        "kill-container",
        include_str!("../../scenarios/kill-container.yaml"),
    ),
    ("kill-node", include_str!("../../scenarios/kill-node.yaml")),
    (
        "kill-all-but-one",
        include_str!("../../scenarios/kill-all-but-one.yaml"),
    ),
    (
        "split-brain",
        include_str!("../../scenarios/split-brain.yaml"),
    ),
    (
        "flapping-node",
        include_str!("../../scenarios/flapping-node.yaml"),
    ),
    (
        "rolling-update",
        include_str!("../../scenarios/rolling-update.yaml"),
    ),
    (
        "failed-update-reverts",
        include_str!("../../scenarios/failed-update-reverts.yaml"),
    ),
    (
        "edge-offline",
        include_str!("../../scenarios/edge-offline.yaml"),
    ),
    ("add-node", include_str!("../../scenarios/add-node.yaml")),
    (
        "lossy-link",
        include_str!("../../scenarios/lossy-link.yaml"),
    ),
    (
        "whack-a-pod",
        include_str!("../../scenarios/whack-a-pod.yaml"),
    ),
];

/// The file of the scenario called `name`, if the library has it.
pub fn find(name: &str) -> Option<&'static str> {
    SCENARIOS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}
