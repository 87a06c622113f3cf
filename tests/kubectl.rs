//! The real kubectl on this machine's PATH against a cluster of real `weeble` processes
//! (127.0.0.141-143), each command at another peer, through the kubeconfig that `weeble
//! config view` prints: discovery (`version`, `api-resources`), reads, `scale`, `describe`
//! and `delete`. Issue 18 grows this to the whole compatibility table.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use support::*;

/// A kubeconfig for node `index`, written by `weeble config view`.
fn kubeconfig(cluster: &Cluster, index: usize) -> PathBuf {
    let out = weeble(&["--server", &cluster.server(index), "config", "view"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let path = cluster.dir.join(format!("kubeconfig-{index}"));
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

fn kubectl(config: &Path, args: &[&str]) -> Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(config)
        .args(args)
        .output()
        .expect("kubectl runs")
}

/// kubectl's standard output; it must succeed.
fn kubectl_ok(config: &Path, args: &[&str]) -> String {
    let out = kubectl(config, args);
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn kubectl_discovers_reads_scales_describes_and_deletes_at_any_peer() {
    let Some(cluster) =
        Cluster::three_with_demo("kc", ["127.0.0.141", "127.0.0.142", "127.0.0.143"])
    else {
        return;
    };
    let configs: Vec<PathBuf> = (0..3).map(|i| kubeconfig(&cluster, i)).collect();
    let version = kubectl_ok(&configs[0], &["version"]);
    assert!(
        version.contains("Server Version: v1.32.0+weeble-"),
        "{version}"
    );
    let resources = kubectl_ok(&configs[1], &["api-resources"]);
    for (name, short) in [
        ("pods", "po"),
        ("deployments", "deploy"),
        ("services", "svc"),
    ] {
        let line = resources
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or("");
        assert!(line.contains(short), "{name}: {resources}");
    }
    let applied = apply_demo(&cluster, &cluster.server(0), "web", 3);
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    let nodes = kubectl_ok(&configs[2], &["get", "nodes", "-o", "name"]);
    assert_eq!(nodes.lines().count(), 3, "{nodes}");
    wait_for(
        "three pods running, as kubectl reads them",
        Duration::from_secs(60),
        || {
            let phases = kubectl_ok(
                &configs[1],
                &["get", "pods", "-o", "jsonpath={.items[*].status.phase}"],
            );
            (phases
                .split_whitespace()
                .filter(|p| *p == "Running")
                .count()
                == 3)
                .then_some(())
        },
    );
    // A typed read of a pod: its start time is an RFC 3339 time, as Kubernetes writes it.
    let started = kubectl_ok(
        &configs[2],
        &["get", "pod", "web-0", "-o", "jsonpath={.status.startTime}"],
    );
    assert!(
        started.len() == 20 && started.ends_with('Z') && started.as_bytes()[10] == b'T',
        "{started}"
    );
    let described = kubectl_ok(&configs[0], &["describe", "pod", "web-1"]);
    assert!(
        described.contains("Node:") && described.contains("app=web"),
        "{described}"
    );
    kubectl_ok(
        &configs[1],
        &["scale", "deployment", "web", "--replicas", "1"],
    );
    wait_for(
        "the scale seen at another peer",
        Duration::from_secs(20),
        || {
            let replicas = kubectl_ok(
                &configs[2],
                &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"],
            );
            (replicas == "1").then_some(())
        },
    );
    kubectl_ok(&configs[2], &["delete", "deployment", "web"]);
    wait_for(
        "the deployment gone at every peer",
        Duration::from_secs(20),
        || {
            configs
                .iter()
                .all(|c| {
                    kubectl_ok(c, &["get", "deployments", "-o", "name"])
                        .trim()
                        .is_empty()
                })
                .then_some(())
        },
    );
    let missing = kubectl(&configs[0], &["get", "deployment", "web"]);
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("NotFound") || text(&missing.stderr).contains("not found")
    );
}
