//! `weeble scenario run` for real: library scenarios on real `weeble node` processes
//! (`--backend process`, loopback 127.0.5.x and 127.0.6.x) and on nodes in containers
//! (`--backend docker`, a private network the run makes), each passing and leaving nothing
//! behind; a step a backend cannot do refused before anything starts; an expectation that
//! cannot hold failing by name; a run interrupted (SIGINT) removing what it started.
//!
//! Needs Docker: skipped with a message when it is missing, except under CI=true. The
//! library's scenarios on the simulator are `weeble-scenario`'s unit tests.

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// `weeble scenario run NAME --backend BACKEND ...` into `out`.
fn run(name: &str, backend: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["scenario", "run", name, "--backend", backend, "--out"];
    args.push(out.to_str().unwrap());
    args.extend(extra);
    weeble(&args)
}

/// The run's `report.json`.
fn report(out: &Path) -> Value {
    let text = std::fs::read_to_string(out.join("report.json")).expect("a report was written");
    serde_json::from_str(&text).unwrap()
}

/// Containers, networks and processes a scenario run could have left.
fn leftovers() -> Vec<String> {
    let mut left = Vec::new();
    let lines = |args: &[&str]| {
        let out = Command::new("docker").args(args).output().unwrap();
        text(&out.stdout)
            .lines()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let nodes = lines(&[
        "ps",
        "-a",
        "--filter",
        "label=weeble.scenario",
        "--format",
        "{{.Names}}",
    ]);
    let pods = lines(&[
        "ps",
        "-a",
        "--filter",
        "label=weeble.node",
        "--format",
        "{{.Label \"weeble.node\"}}",
    ]);
    left.extend(nodes);
    left.extend(pods.into_iter().filter(|n| n.starts_with("sc")));
    left.extend(lines(&[
        "network",
        "ls",
        "--filter",
        "name=weeble-scenario",
        "--format",
        "{{.Name}}",
    ]));
    let agents = Command::new("pgrep")
        .args(["-f", "node --name sc[0-9]+-"])
        .output()
        .unwrap();
    left.extend(
        text(&agents.stdout)
            .lines()
            .map(|pid| format!("process {pid}")),
    );
    left
}

/// Runs library scenario `name` on `backend`; it must pass, say so in its report and leave
/// nothing behind.
fn passes(name: &str, backend: &str, extra: &[&str]) -> Value {
    let out = std::env::temp_dir().join(format!(
        "weeble-scenario-test-{}-{name}-{backend}",
        std::process::id()
    ));
    let done = run(name, backend, &out, extra);
    assert!(
        done.status.success(),
        "{name} on {backend}:\n{}\n{}",
        text(&done.stdout),
        text(&done.stderr)
    );
    let report = report(&out);
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["backend"], backend);
    let svg = std::fs::read_to_string(out.join("timeline.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("node 0"),
        "a timeline with its nodes"
    );
    assert!(
        std::fs::read_to_string(out.join("report.md"))
            .unwrap()
            .contains("# Scenario")
    );
    assert_eq!(
        leftovers(),
        Vec::<String>::new(),
        "{name} on {backend} left these behind"
    );
    let _ = std::fs::remove_dir_all(&out);
    report
}

#[test]
fn library_scenarios_pass_on_real_processes_and_leave_nothing() {
    let _serial = serial();
    if !docker_available() {
        return;
    }
    let killed = passes("kill-container", "process", &["--subnet", "127.0.5"]);
    let f = &killed["figures"];
    assert!(f["client_requests"].as_u64().unwrap() > 100, "{f}");
    assert!(
        f["restore_max_s"].as_f64().unwrap() > 0.0,
        "a container was killed and restarted: {f}"
    );
    let node = passes("kill-node", "process", &["--subnet", "127.0.5"]);
    let f = &node["figures"];
    assert!(f["detect_max_s"].as_f64().unwrap() > 0.0, "{f}");
    assert_eq!(f["undetected"], 0);
}

#[test]
fn library_scenarios_pass_on_nodes_in_containers_and_leave_nothing() {
    let _serial = serial();
    if !docker_available() {
        return;
    }
    passes("kill-container", "docker", &[]);
    passes("kill-node", "docker", &[]);
    let split = passes("split-brain", "docker", &[]);
    let sides: Vec<Value> = split["writes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["separation"] == 0)
        .map(|w| w["side"].clone())
        .collect();
    assert_eq!(sides, [0, 0, 1, 1], "both sides wrote while apart");
    assert_eq!(
        split["separations"][0]["kept"].as_array().unwrap().len(),
        3,
        "{split}"
    );
    assert_eq!(split["figures"]["writes_lost"], 0);
}

#[test]
fn a_step_a_backend_cannot_do_is_named_before_anything_starts() {
    let _serial = serial();
    if !docker_available() {
        return;
    }
    let out = std::env::temp_dir().join(format!(
        "weeble-scenario-test-{}-refused",
        std::process::id()
    ));
    let started = Instant::now();
    let done = run("split-brain", "process", &out, &["--subnet", "127.0.5"]);
    assert!(!done.status.success());
    let said = text(&done.stderr);
    assert!(
        said.contains("timeline[0].partition: processes on loopback cannot be cut apart"),
        "{said}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refused at once"
    );
    assert!(!out.exists(), "nothing written");
    assert_eq!(leftovers(), Vec::<String>::new());
}

#[test]
fn an_expectation_that_cannot_hold_fails_the_run_by_name() {
    let dir = std::env::temp_dir().join(format!(
        "weeble-scenario-test-{}-impossible",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("impossible.yaml");
    let library = Path::new(ROOT).join("scenarios/kill-node.yaml");
    let text_of = std::fs::read_to_string(library).unwrap();
    std::fs::write(&file, text_of.replace("atMost: 6s", "atMost: 1ms")).unwrap();
    let done = run(file.to_str().unwrap(), "sim", &dir.join("out"), &[]);
    assert!(!done.status.success());
    let said = text(&done.stdout);
    assert!(
        said.contains("NOT MET detect_max_s at most 0.001"),
        "{said}"
    );
    assert!(text(&done.stderr).contains("1 of 4 expectations not met"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_interrupted_run_removes_what_it_started() {
    let _serial = serial();
    if !docker_available() {
        return;
    }
    let out = std::env::temp_dir().join(format!(
        "weeble-scenario-test-{}-interrupted",
        std::process::id()
    ));
    let mut child = Command::new(WEEBLE)
        .args([
            "scenario",
            "run",
            "kill-node",
            "--backend",
            "process",
            "--subnet",
            "127.0.6",
            "--out",
        ])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tag = format!("sc{}-0", child.id());
    wait_for("the run's first node up", Duration::from_secs(60), || {
        let agents = Command::new("pgrep")
            .args(["-f", &format!("node --name {tag}")])
            .output()
            .unwrap();
        agents.status.success().then_some(())
    });
    std::thread::sleep(Duration::from_secs(5));
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the run did not stop within 60 s of SIGINT"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(!status.success(), "an interrupted run fails");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(leftovers(), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&out);
}
