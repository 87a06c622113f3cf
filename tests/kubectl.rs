//! The real kubectl on this machine's PATH against a cluster of real `weeble` processes
//! (127.0.0.141-143), each command at another peer, through the kubeconfig that `weeble
//! config view` prints: discovery, reads, tables, selectors, watches (`get -w`, `rollout
//! status`, `wait`), writes (client- and server-side apply, patches, `set image`, `rollout
//! undo`), `logs` and `logs -f`, `describe`, `scale`, `delete`; Debian's kubectl 1.20 and the
//! official Python client the same way; and kubectl and the Python client with a token over
//! TLS, reading and deleting a pod at a node it is not on.

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

/// The kubectl on the PATH (1.32 here).
fn kubectl(config: &Path, args: &[&str]) -> Output {
    kubectl_as(Path::new("kubectl"), config, args)
}

/// kubectl `binary` with the kubeconfig `config`.
fn kubectl_as(binary: &Path, config: &Path, args: &[&str]) -> Output {
    Command::new(binary)
        .arg("--kubeconfig")
        .arg(config)
        .args(args)
        .output()
        .expect("kubectl runs")
}

/// kubectl's standard output; it must succeed.
fn kubectl_ok(config: &Path, args: &[&str]) -> String {
    succeeded(args, kubectl(config, args))
}

/// What kubectl `binary` (with `config`) printed while it ran a command that does not end by
/// itself (`logs -f`, `get -w`): started, given a second, then `meanwhile`, another second,
/// and stopped.
fn printed_while(binary: &Path, config: &Path, args: &[&str], meanwhile: impl FnOnce()) -> String {
    use std::io::Read;
    let mut running = Command::new(binary)
        .arg("--kubeconfig")
        .arg(config)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    std::thread::sleep(Duration::from_secs(1));
    meanwhile();
    std::thread::sleep(Duration::from_secs(1));
    running.kill().unwrap();
    let mut out = String::new();
    running
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    running.wait().unwrap();
    out
}

/// The standard output of a kubectl that must have succeeded.
fn succeeded(args: &[&str], out: Output) -> String {
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
    // The demo deployment, its port published (for the logs below).
    let manifest = demo_deployment("web", 3).replace(
        "image: weeble-demo:v1\n",
        "image: weeble-demo:v1\n        ports: [{containerPort: 80}]\n",
    );
    applied(&cluster, &cluster.server(0), "web", &manifest);
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
    // Logs at a peer the pod may not be on: read on the pod's node with every parameter.
    let published = kubectl_ok(
        &configs[2],
        &[
            "get",
            "pod",
            "web-1",
            "-o",
            "jsonpath={.status.podIP}:{.status.ports[0].hostPort}",
        ],
    );
    http_get(&published, "/hello-logs");
    let logs = kubectl_ok(&configs[0], &["logs", "web-1", "--tail=1", "--timestamps"]);
    assert!(logs.contains("GET /hello-logs"), "{logs}");
    assert!(
        logs.starts_with("20") && logs.lines().count() == 1,
        "{logs}"
    );
    let followed = printed_while(
        Path::new("kubectl"),
        &configs[1],
        &["logs", "-f", "web-1", "-c", "web"],
        || drop(http_get(&published, "/followed")),
    );
    assert!(followed.contains("GET /followed"), "{followed}");
    let wrong = kubectl(&configs[0], &["logs", "web-1", "-c", "nope"]);
    assert!(!wrong.status.success());
    // sinceSeconds reaches the pod's node: the last hour holds the request.
    let since = kubectl_ok(&configs[2], &["logs", "web-1", "--since=1h"]);
    assert!(since.contains("GET /hello-logs"), "{since}");
    // exec, attach and port-forward say they are not supported, and what to use instead.
    for (args, part) in [
        (
            &["exec", "web-1", "--", "true"][..],
            "exec is not supported",
        ),
        (&["attach", "web-1"][..], "attach is not supported"),
        (
            &["port-forward", "web-1", "18080:80"][..],
            "port-forward is not supported",
        ),
    ] {
        let out = kubectl(&configs[1], args);
        let said = text(&out.stderr);
        assert!(
            !out.status.success() && said.contains(part),
            "{args:?}: {said}"
        );
    }

    // Deleting a pod at any peer makes it again on its node: a new uid, running again.
    let uid = |i: usize| {
        let path = "jsonpath={.metadata.uid} {.status.phase}";
        kubectl_ok(&configs[i], &["get", "pod", "web-1", "-o", path])
    };
    let before = uid(0);
    let deleted = kubectl_ok(&configs[2], &["delete", "pod", "web-1", "--timeout=60s"]);
    assert!(deleted.contains("pod \"web-1\" deleted"), "{deleted}");
    wait_for("web-1 made again", Duration::from_secs(30), || {
        let after = uid(1);
        (after.ends_with("Running") && after != before).then_some(())
    });

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
    // Events: every node tells what it saw; describe finds a pod's by its uid.
    wait_for(
        "the scale in the events at node 2",
        Duration::from_secs(10),
        || {
            let events = kubectl_ok(&configs[2], &["get", "events"]);
            events
                .lines()
                .any(|l| l.contains("ScalingReplicaSet") && l.contains("from 3 to 1"))
                .then_some(())
        },
    );
    let scheduled = kubectl_ok(
        &configs[0],
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=web-0,reason=Scheduled",
            "-o",
            "name",
        ],
    );
    assert_eq!(scheduled.lines().count(), 1, "{scheduled}");
    let described = kubectl_ok(&configs[1], &["describe", "pod", "web-0"]);
    let events = described.split("Events:").nth(1).unwrap_or_default();
    assert!(
        events.contains("Scheduled") && events.contains("Started"),
        "{described}"
    );
    // kubectl events (1.26+) selects by the object's apiVersion, kind and name.
    let told = kubectl_ok(&configs[2], &["events", "--for", "deployment/web"]);
    assert!(
        told.contains("ScalingReplicaSet") && !told.contains("Pod/"),
        "{told}"
    );

    // The verbs that need nothing more of the server: expose (a service from a
    // deployment's selector), cluster-info, apply -k (kustomize on the client), proxy.
    let exposed = kubectl_ok(
        &configs[0],
        &[
            "expose",
            "deployment",
            "web",
            "--port=8080",
            "--target-port=80",
        ],
    );
    assert!(exposed.contains("service/web exposed"), "{exposed}");
    wait_for(
        "the exposed service at node 1",
        Duration::from_secs(10),
        || {
            let path = "jsonpath={.spec.selector.app} {.spec.ports[0].port}";
            let out = kubectl(&configs[1], &["get", "service", "web", "-o", path]);
            (text(&out.stdout) == "web 8080").then_some(())
        },
    );
    let info = kubectl_ok(&configs[1], &["cluster-info"]);
    assert!(
        info.contains("is running at http://127.0.0.142:17070"),
        "{info}"
    );
    let kustomized = cluster.dir.join("kustomized");
    std::fs::create_dir_all(&kustomized).unwrap();
    std::fs::write(kustomized.join("app.yaml"), demo_deployment("app", 1)).unwrap();
    std::fs::write(
        kustomized.join("kustomization.yaml"),
        "resources: [app.yaml]\nnamePrefix: k-\nlabels: [{pairs: {via: kustomize}}]\n",
    )
    .unwrap();
    let applied = kubectl_ok(&configs[2], &["apply", "-k", kustomized.to_str().unwrap()]);
    assert!(
        applied.contains("deployment.apps/k-app created"),
        "{applied}"
    );
    let mut pods = String::new();
    let proxied = printed_while(
        Path::new("kubectl"),
        &configs[0],
        &[
            "proxy",
            "--address=127.0.0.141",
            "--port=18001",
            "--accept-hosts=^127\\.0\\.0\\.141$",
        ],
        || {
            let path = "/api/v1/namespaces/default/pods";
            pods = try_http_get("127.0.0.141:18001", path).unwrap_or_default();
        },
    );
    assert!(pods.contains("\"kind\":\"PodList\""), "{pods}");
    assert!(proxied.contains("Starting to serve"), "{proxied}");
    let labelled = kubectl_ok(
        &configs[0],
        &["get", "deploy", "-l", "via=kustomize", "-o", "name"],
    );
    assert_eq!(labelled.trim(), "deployment.apps/k-app");
    kubectl_ok(&configs[0], &["delete", "-k", kustomized.to_str().unwrap()]);
    kubectl_ok(&configs[0], &["delete", "service", "web"]);

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

/// The lines a watch at `addr` (`host:port`) sends within `limit`, read over HTTP/1.0; stops
/// early once `enough` holds for the lines so far.
fn watch_lines(addr: &str, path: &str, limit: Duration, enough: impl Fn(&str) -> bool) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("the API answers");
    write!(stream, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let (start, mut got, mut buffer) = (std::time::Instant::now(), Vec::new(), [0u8; 4096]);
    while start.elapsed() < limit && !enough(&text(&got)) {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buffer[..n]),
            Err(_) => {}
        }
    }
    text(&got)
}

/// The `resourceVersion` of a list or an object as JSON.
fn version_of(value: &serde_json::Value) -> u64 {
    value["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no resourceVersion in {value}"))
}

#[test]
fn kubectl_prints_tables_selects_and_watches_at_any_peer() {
    let Some(cluster) =
        Cluster::three_with_demo("kw", ["127.0.0.144", "127.0.0.145", "127.0.0.146"])
    else {
        return;
    };
    let configs: Vec<PathBuf> = (0..3).map(|i| kubeconfig(&cluster, i)).collect();
    let applied = apply_demo(&cluster, &cluster.server(0), "web", 2);
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    // `rollout status` and `wait` watch until the deployment is there and ready.
    let rolled = kubectl_ok(
        &configs[1],
        &["rollout", "status", "deployment/web", "--timeout=90s"],
    );
    assert!(rolled.contains("successfully rolled out"), "{rolled}");
    let waited = kubectl_ok(
        &configs[2],
        &[
            "wait",
            "--for=condition=Available",
            "deployment/web",
            "--timeout=30s",
        ],
    );
    assert!(waited.contains("condition met"), "{waited}");

    // Tables with Kubernetes' columns, the wide ones with -o wide.
    let pods = kubectl_ok(&configs[1], &["get", "pods"]);
    let header: Vec<&str> = pods.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{pods}"
    );
    let rows: Vec<Vec<&str>> = pods
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{pods}");
    assert!(
        rows.iter().all(|r| r[1] == "1/1" && r[2] == "Running"),
        "{pods}"
    );
    assert!(
        rows.iter()
            .all(|r| r[4].ends_with('s') || r[4].ends_with('m')),
        "{pods}"
    );
    let wide = kubectl_ok(&configs[2], &["get", "pods", "-o", "wide"]);
    assert!(wide.lines().next().unwrap().contains("NODE"), "{wide}");
    let node_of_web0 = wide
        .lines()
        .find(|l| l.starts_with("web-0"))
        .and_then(|l| l.split_whitespace().nth(6))
        .unwrap()
        .to_string();
    assert!(node_of_web0.starts_with("kw"), "{wide}");
    let deployments = kubectl_ok(&configs[0], &["get", "deployments"]);
    assert!(
        deployments
            .lines()
            .any(|l| l.split_whitespace().take(4).eq(["web", "2/2", "2", "2"])),
        "{deployments}"
    );

    // Selectors, honoured.
    let named = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["get", "pods", "-o", "name"];
        all.extend(args);
        kubectl_ok(&configs[0], &all)
            .lines()
            .map(String::from)
            .collect()
    };
    assert_eq!(named(&["-l", "app=web"]).len(), 2);
    assert!(named(&["-l", "app=other"]).is_empty());
    assert!(named(&["-l", "app in (web, db),app!=db"]).len() == 2);
    let on_node = format!("spec.nodeName={node_of_web0}");
    assert!(
        named(&["--field-selector", &on_node]).contains(&"pod/web-0".to_string()),
        "{on_node}"
    );
    assert!(named(&["--field-selector", "status.phase=Pending"]).is_empty());
    let refused = kubectl(
        &configs[0],
        &["get", "pods", "--field-selector", "spec.image=x"],
    );
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("field label not supported"),
        "{}",
        text(&refused.stderr)
    );

    // `get -w` at one peer sees a scale made at another.
    let printed = printed_while(
        Path::new("kubectl"),
        &configs[2],
        &["get", "pods", "-w", "--output-watch-events"],
        || {
            kubectl_ok(&configs[0], &["scale", "deployment/web", "--replicas=3"]);
            wait_for("web-2 running", Duration::from_secs(60), || {
                // Rolled out: web-2 is running, so the watch has printed it by now.
                let path = "jsonpath={.status.readyReplicas}";
                let ready = kubectl_ok(&configs[1], &["get", "deploy", "web", "-o", path]);
                (ready == "3").then_some(())
            });
        },
    );
    assert!(
        printed
            .lines()
            .any(|l| l.starts_with("ADDED") && l.contains("web-2")),
        "{printed}"
    );
    assert!(
        printed
            .lines()
            .any(|l| l.starts_with("MODIFIED") && l.contains("web-2") && l.contains("Running")),
        "{printed}"
    );

    // Versions: a change gives the object a greater one at the node; a watch from a list's
    // version is sent what followed it; one from before a node's journal is 410 Expired.
    let api = |i: usize| cluster.server(i).trim_start_matches("http://").to_string();
    let deployment = |i: usize| json(&cluster.server(i), &["get", "deployment", "web"]);
    let before = version_of(&deployment(0));
    let list: serde_json::Value = serde_json::from_str(
        http_get(&api(1), "/apis/apps/v1/namespaces/default/deployments")
            .split("\r\n\r\n")
            .nth(1)
            .unwrap(),
    )
    .unwrap();
    let listed = version_of(&list);
    kubectl_ok(&configs[0], &["scale", "deployment/web", "--replicas=1"]);
    let path =
        format!("/apis/apps/v1/namespaces/default/deployments?watch=true&resourceVersion={listed}");
    let events = watch_lines(&api(1), &path, Duration::from_secs(20), |t| {
        t.contains("\"replicas\":1")
    });
    let modified = events
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["type"] == "MODIFIED" && e["object"]["spec"]["replicas"] == 1)
        .unwrap_or_else(|| panic!("no MODIFIED event with the scale in {events}"));
    assert!(version_of(&modified["object"]) > listed);
    wait_for("the scale at node 0", Duration::from_secs(10), || {
        (version_of(&deployment(0)) > before).then_some(())
    });
    // A watch with a selector is told ADDED when an object comes into it, DELETED when it
    // leaves (a label added, then taken off, at another peer).
    let labelled = format!(
        "/apis/apps/v1/namespaces/default/deployments?watch=true&labelSelector=tier%3Dfront&resourceVersion={}",
        version_of(&list)
    );
    let watcher = {
        let addr = api(1);
        std::thread::spawn(move || {
            watch_lines(&addr, &labelled, Duration::from_secs(20), |t| {
                t.contains("DELETED")
            })
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    kubectl_ok(&configs[0], &["label", "deployment/web", "tier=front"]);
    std::thread::sleep(Duration::from_secs(1));
    kubectl_ok(&configs[2], &["label", "deployment/web", "tier-"]);
    let seen = watcher.join().unwrap();
    let types: Vec<String> = seen
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|e| e["type"].as_str().unwrap_or_default().to_string())
        .collect();
    let first_added = types.iter().position(|t| t == "ADDED");
    let deleted = types.iter().position(|t| t == "DELETED");
    assert!(
        first_added.is_some() && deleted > first_added,
        "{types:?} in {seen}"
    );

    // A watch resumed at another peer from the first's version is sent what that peer saw
    // after the same moment (node 2 has been asked for deployments: its journal keeps them).
    // Meanwhile a watch with bookmarks and a timeout is told BOOKMARK, then ends.
    let bookmarked = {
        let addr = api(2);
        let path = "/apis/apps/v1/namespaces/default/deployments?watch=true&allowWatchBookmarks=true&timeoutSeconds=17";
        std::thread::spawn(move || {
            let began = std::time::Instant::now();
            let seen = watch_lines(&addr, path, Duration::from_secs(60), |_| false);
            (seen, began.elapsed())
        })
    };
    let at_node_1 = serde_json::from_str::<serde_json::Value>(
        http_get(&api(1), "/apis/apps/v1/namespaces/default/deployments")
            .split("\r\n\r\n")
            .nth(1)
            .unwrap(),
    )
    .unwrap();
    kubectl_ok(&configs[0], &["scale", "deployment/web", "--replicas=2"]);
    let path = format!(
        "/apis/apps/v1/namespaces/default/deployments?watch=true&resourceVersion={}",
        version_of(&at_node_1)
    );
    let resumed = watch_lines(&api(2), &path, Duration::from_secs(20), |t| {
        t.contains("\"replicas\":2")
    });
    assert!(
        resumed
            .lines()
            .any(|l| l.contains("\"type\":\"MODIFIED\"") && l.contains("\"replicas\":2")),
        "{resumed}"
    );
    let (seen, took) = bookmarked.join().unwrap();
    assert!(seen.contains("\"type\":\"BOOKMARK\""), "{seen}");
    assert!(
        took < Duration::from_secs(50),
        "the watch ended at its timeout: {took:?}"
    );

    let expired = watch_lines(
        &api(2),
        "/api/v1/namespaces/default/endpoints?watch=1&resourceVersion=1",
        Duration::from_secs(5),
        |t| t.contains("ERROR"),
    );
    assert!(
        expired.contains("\"type\":\"ERROR\"")
            && expired.contains("\"code\":410")
            && expired.contains("Expired"),
        "{expired}"
    );
}

#[test]
fn kubectl_writes_as_it_does_against_kubernetes_at_any_peer() {
    let Some(cluster) =
        Cluster::three_with_demo("kx", ["127.0.0.147", "127.0.0.148", "127.0.0.149"])
    else {
        return;
    };
    let configs: Vec<PathBuf> = (0..3).map(|i| kubeconfig(&cluster, i)).collect();
    let manifest = |replicas: u32, extra: &str| {
        let path = cluster
            .dir
            .join(format!("web-{replicas}{}.yaml", extra.len()));
        let service = "---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  \
                       selector: {app: web}\n  ports: [{port: 8080, targetPort: 80}]\n";
        let text = demo_deployment("web", replicas)
            .replace("spec:\n  replicas", &format!("spec:\n{extra}  replicas"));
        std::fs::write(&path, format!("{text}{service}")).unwrap();
        path.to_str().unwrap().to_string()
    };
    let spec = |i: usize, path: &str| {
        kubectl_ok(
            &configs[i],
            &[
                "get",
                "deployment",
                "web",
                "-o",
                &format!("jsonpath={path}"),
            ],
        )
    };

    // Client-side apply: created, unchanged, configured; an unknown field is the server's 422.
    let applied = kubectl_ok(&configs[0], &["apply", "-f", &manifest(2, "")]);
    assert!(applied.contains("deployment.apps/web created"), "{applied}");
    assert!(applied.contains("service/web created"), "{applied}");
    let again = kubectl_ok(&configs[1], &["apply", "-f", &manifest(2, "")]);
    assert!(again.contains("deployment.apps/web unchanged"), "{again}");
    let changed = kubectl_ok(&configs[2], &["apply", "-f", &manifest(3, "")]);
    assert!(
        changed.contains("deployment.apps/web configured"),
        "{changed}"
    );
    wait_for("three replicas at node 0", Duration::from_secs(10), || {
        (spec(0, "{.spec.replicas}") == "3").then_some(())
    });
    let bad = kubectl(&configs[0], &["apply", "-f", &manifest(1, "  bogus: 1\n")]);
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("spec.bogus"),
        "{}",
        text(&bad.stderr)
    );
    assert_eq!(
        spec(1, "{.spec.replicas}"),
        "3",
        "a refused apply changes nothing"
    );
    let diffed = kubectl(&configs[2], &["diff", "-f", &manifest(4, "")]);
    assert!(
        text(&diffed.stderr).contains("dry run"),
        "{}",
        text(&diffed.stderr)
    );
    assert_eq!(
        spec(0, "{.spec.replicas}"),
        "3",
        "a dry run changes nothing"
    );
    // kubectl sends a delete's dry run in the body: refused too, and the deployment stays.
    let dry_delete = kubectl(
        &configs[1],
        &["delete", "deployment", "web", "--dry-run=server"],
    );
    assert!(
        text(&dry_delete.stderr).contains("dry run"),
        "{}",
        text(&dry_delete.stderr)
    );
    assert_eq!(
        spec(2, "{.spec.replicas}"),
        "3",
        "a dry-run delete deletes nothing"
    );
    let created = kubectl(&configs[1], &["create", "-f", &manifest(3, "")]);
    assert!(
        text(&created.stderr).contains("AlreadyExists"),
        "{}",
        text(&created.stderr)
    );

    // set image, label, annotate; then the revisions as ReplicaSets: history and undo.
    kubectl_ok(
        &configs[0],
        &[
            "annotate",
            "deployment/web",
            "kubernetes.io/change-cause=first",
        ],
    );
    let set = kubectl_ok(
        &configs[1],
        &["set", "image", "deployment/web", "web=weeble-demo:v2"],
    );
    assert!(set.contains("image updated"), "{set}");
    kubectl_ok(
        &configs[1],
        &[
            "annotate",
            "--overwrite",
            "deployment/web",
            "kubernetes.io/change-cause=v2",
        ],
    );
    kubectl_ok(&configs[2], &["label", "deployment/web", "tier=front"]);
    wait_for(
        "the label and the image at node 0",
        Duration::from_secs(10),
        || {
            let both = spec(
                0,
                "{.metadata.labels.tier} {.spec.template.spec.containers[0].image}",
            );
            (both == "front weeble-demo:v2").then_some(())
        },
    );
    let history = kubectl_ok(&configs[2], &["rollout", "history", "deployment/web"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter(|l| l.starts_with(char::is_numeric))
        .collect();
    assert_eq!(revisions.len(), 2, "{history}");
    assert!(
        revisions[0].contains("first") && revisions[1].contains("v2"),
        "{history}"
    );
    let rs = kubectl_ok(&configs[0], &["get", "rs", "-o", "name"]);
    assert_eq!(rs.lines().count(), 2, "{rs}");
    let undone = kubectl_ok(&configs[0], &["rollout", "undo", "deployment/web"]);
    assert!(undone.contains("rolled back"), "{undone}");
    wait_for(
        "the old image back at node 1",
        Duration::from_secs(10),
        || (spec(1, "{.spec.template.spec.containers[0].image}") == "weeble-demo:v1").then_some(()),
    );
    let rolled = kubectl_ok(
        &configs[1],
        &["rollout", "status", "deployment/web", "--timeout=90s"],
    );
    assert!(rolled.contains("successfully rolled out"), "{rolled}");

    // pause, resume and restart, each at another peer, each reading what the last wrote.
    let paused = kubectl_ok(&configs[0], &["rollout", "pause", "deployment/web"]);
    assert!(paused.contains("paused"), "{paused}");
    wait_for("the pause at node 1", Duration::from_secs(10), || {
        (spec(1, "{.spec.paused}") == "true").then_some(())
    });
    let resumed = kubectl_ok(&configs[1], &["rollout", "resume", "deployment/web"]);
    assert!(resumed.contains("resumed"), "{resumed}");
    wait_for("the resume at node 2", Duration::from_secs(10), || {
        (spec(2, "{.spec.paused}").is_empty()).then_some(())
    });
    let restarted = kubectl_ok(&configs[2], &["rollout", "restart", "deployment/web"]);
    assert!(restarted.contains("restarted"), "{restarted}");
    let rolled = kubectl_ok(
        &configs[0],
        &["rollout", "status", "deployment/web", "--timeout=90s"],
    );
    assert!(rolled.contains("successfully rolled out"), "{rolled}");

    // Replace with optimistic concurrency: a stale resourceVersion is a 409 Conflict.
    // The object read now, its replicas changed (and its version made stale if `stale`).
    let edited = |stale: bool| {
        let current = kubectl_ok(&configs[2], &["get", "deployment", "web", "-o", "json"]);
        let mut object: serde_json::Value = serde_json::from_str(&current).unwrap();
        object["spec"]["replicas"] = 1.into();
        if stale {
            object["metadata"]["resourceVersion"] = "1".into();
        }
        let path = cluster.dir.join(format!("edited-{stale}.json"));
        std::fs::write(&path, object.to_string()).unwrap();
        path.to_str().unwrap().to_string()
    };
    let conflict = kubectl(&configs[2], &["replace", "-f", &edited(true)]);
    assert!(
        text(&conflict.stderr).contains("Conflict"),
        "{}",
        text(&conflict.stderr)
    );
    // Read again and retry on a conflict, as clients do (its status may still change).
    wait_for(
        "a replace of what was just read",
        Duration::from_secs(20),
        || {
            let out = kubectl(&configs[2], &["replace", "-f", &edited(false)]);
            match out.status.success() {
                true => Some(()),
                false if text(&out.stderr).contains("Conflict") => None,
                false => panic!("{}", text(&out.stderr)),
            }
        },
    );
    wait_for("the replace at node 0", Duration::from_secs(10), || {
        (spec(0, "{.spec.replicas}") == "1").then_some(())
    });

    // Server-side apply creates and merges; JSON and merge patches.
    let other = cluster.dir.join("other.yaml");
    std::fs::write(&other, demo_deployment("other", 1)).unwrap();
    let ssa = kubectl_ok(
        &configs[1],
        &["apply", "--server-side", "-f", other.to_str().unwrap()],
    );
    assert!(ssa.contains("serverside-applied"), "{ssa}");
    kubectl_ok(
        &configs[0],
        &[
            "patch",
            "deployment",
            "other",
            "--type",
            "json",
            "-p",
            r#"[{"op":"replace","path":"/spec/replicas","value":2}]"#,
        ],
    );
    kubectl_ok(
        &configs[2],
        &[
            "patch",
            "deployment",
            "other",
            "--type",
            "merge",
            "-p",
            r#"{"metadata":{"labels":{"patched":"yes"}}}"#,
        ],
    );
    let other_spec = |path: &str| {
        kubectl_ok(
            &configs[1],
            &[
                "get",
                "deployment",
                "other",
                "-o",
                &format!("jsonpath={path}"),
            ],
        )
    };
    wait_for("both patches at node 1", Duration::from_secs(10), || {
        (other_spec("{.spec.replicas} {.metadata.labels.patched}") == "2 yes").then_some(())
    });
    // An orphaning delete is refused (its pods would go with it), and deletes nothing.
    let orphan = kubectl(
        &configs[2],
        &["delete", "deployment", "other", "--cascade=orphan"],
    );
    let said = text(&orphan.stderr);
    assert!(
        said.contains("Orphan (--cascade=orphan) is not supported"),
        "{said}"
    );
    assert_eq!(other_spec("{.metadata.name}"), "other");

    // explain reads the OpenAPI schemas; protobuf bodies are refused with a way out.
    let explained = kubectl_ok(&configs[0], &["explain", "deployment.spec.replicas"]);
    assert!(explained.contains("How many pods"), "{explained}");
    // A pod is its deployment's to write: a label on one is refused, saying what to change.
    let labelled = kubectl(&configs[1], &["label", "pod", "web-0", "x=y"]);
    let said = text(&labelled.stderr);
    assert!(
        said.contains("MethodNotAllowed") && said.contains("PATCH of a pod is not supported"),
        "{said}"
    );
    let protobuf = kubectl(&configs[0], &["create", "deployment", "x", "--image=y"]);
    assert!(
        text(&protobuf.stderr).contains("apply -f"),
        "{}",
        text(&protobuf.stderr)
    );

    // Namespaces: made by apply, holding what is applied in them, deleted with it.
    let team = cluster.dir.join("team.yaml");
    let in_team =
        demo_deployment("crew", 1).replace("  name: crew\n", "  name: crew\n  namespace: team\n");
    std::fs::write(&team, format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: team, labels: {{env: test}}}}\n---\n{in_team}")).unwrap();
    let made = kubectl_ok(&configs[0], &["apply", "-f", team.to_str().unwrap()]);
    assert!(
        made.contains("namespace/team created") && made.contains("deployment.apps/crew created"),
        "{made}"
    );
    let namespaces = kubectl_ok(
        &configs[1],
        &["get", "namespaces", "-l", "env=test", "-o", "name"],
    );
    assert_eq!(namespaces.trim(), "namespace/team");
    wait_for("crew in team at node 2", Duration::from_secs(10), || {
        let names = kubectl_ok(
            &configs[2],
            &["get", "deployments", "-n", "team", "-o", "name"],
        );
        (names.trim() == "deployment.apps/crew").then_some(())
    });
    // PUT (kubectl replace) of a service and of a namespace: read and replaced at one peer (a
    // resourceVersion is its node's own), seen at the next.
    for (what, at) in [("service/web", 1), ("namespace/team", 2)] {
        let replaced = || {
            let current = kubectl_ok(&configs[at], &["get", what, "-o", "json"]);
            let mut object: serde_json::Value = serde_json::from_str(&current).unwrap();
            object["metadata"]["labels"]["replaced"] = "yes".into();
            let path = cluster.dir.join("replaced.json");
            std::fs::write(&path, object.to_string()).unwrap();
            let out = kubectl(&configs[at], &["replace", "-f", path.to_str().unwrap()]);
            match out.status.success() {
                true => Some(text(&out.stdout)),
                false if text(&out.stderr).contains("Conflict") => None,
                false => panic!("replace {what}: {}", text(&out.stderr)),
            }
        };
        let out = wait_for(
            "a replace of what was just read",
            Duration::from_secs(20),
            replaced,
        );
        assert!(out.contains("replaced"), "{out}");
        wait_for(
            "the replace at the next peer",
            Duration::from_secs(10),
            || {
                let path = "jsonpath={.metadata.labels.replaced}";
                let label = kubectl_ok(&configs[(at + 1) % 3], &["get", what, "-o", path]);
                (label == "yes").then_some(())
            },
        );
    }
    let all = kubectl_ok(&configs[2], &["get", "deployments", "-A"]);
    assert!(
        all.lines()
            .any(|l| l.starts_with("team") && l.contains("crew")),
        "{all}"
    );
    kubectl_ok(&configs[2], &["delete", "namespace", "team"]);
    wait_for(
        "team and crew gone at node 0",
        Duration::from_secs(10),
        || {
            let left = kubectl_ok(&configs[0], &["get", "deployments", "-A", "-o", "name"]);
            (!left.contains("crew")).then_some(())
        },
    );
    let gone = kubectl(&configs[0], &["get", "namespace", "team"]);
    assert!(
        text(&gone.stderr).contains("NotFound"),
        "{}",
        text(&gone.stderr)
    );
    let kept = kubectl(&configs[0], &["delete", "namespace", "default"]);
    assert!(
        text(&kept.stderr).contains("Forbidden"),
        "{}",
        text(&kept.stderr)
    );

    let deleted = kubectl_ok(&configs[1], &["delete", "-f", &manifest(3, "")]);
    assert!(
        deleted.contains("deployment.apps \"web\" deleted"),
        "{deleted}"
    );
    wait_for("web gone at node 2", Duration::from_secs(10), || {
        (!deployments(&cluster.server(2)).contains(&"web".to_string())).then_some(())
    });
}

/// A client `.ci/run` installs in `target/` (`path` under it), if `ready` says it is there;
/// `None` (the test skips, saying how to install it: `install`) if not, except under
/// CI=true.
fn installed(path: &str, ready: impl Fn(&Path) -> bool, install: &str) -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(path);
    let there = ready(&path);
    needed(&format!("{} ({install})", path.display()), there).then_some(path)
}

/// The Python of a venv with the official `kubernetes` client.
fn python_client() -> Option<PathBuf> {
    let imports = |python: &Path| {
        Command::new(python)
            .args(["-c", "import kubernetes"])
            .status()
            .is_ok_and(|s| s.success())
    };
    installed(
        "python/bin/python",
        imports,
        "python3 -m venv target/python && target/python/bin/pip install kubernetes==32.0.1",
    )
}

/// What the script `tests/python/NAME` printed (one JSON object), run by `python` with `args`;
/// it must succeed.
fn python_saw(python: &Path, name: &str, args: &[PathBuf]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/python")
        .join(name);
    let out = Command::new(python)
        .arg(&script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_official_python_client_creates_reads_patches_scales_watches_and_deletes() {
    let Some(python) = python_client() else {
        return;
    };
    let Some(cluster) =
        Cluster::three_with_demo("py", ["127.0.0.154", "127.0.0.155", "127.0.0.156"])
    else {
        return;
    };
    let configs: Vec<PathBuf> = (0..3).map(|i| kubeconfig(&cluster, i)).collect();
    let seen = python_saw(&python, "client.py", &configs);
    assert_eq!(seen["created"], "py", "{seen}");
    assert_eq!(seen["uid"].as_str().map(str::len), Some(36), "{seen}");
    assert_eq!(seen["read_strategy"], "RollingUpdate", "{seen}");
    assert_eq!(seen["listed"], serde_json::json!(["py"]), "{seen}");
    assert_eq!(seen["listed_none"], 0, "{seen}");
    assert_eq!(seen["patched"], "yes", "{seen}");
    assert_eq!(seen["scaled"], 2, "{seen}");
    assert_eq!(
        seen["watched_running"],
        serde_json::json!(["py-0", "py-1"]),
        "{seen}"
    );
    assert!(
        seen["pod_ips"]
            .as_array()
            .is_some_and(|ips| ips.len() == 2 && ips.iter().all(|ip| ip.is_string())),
        "{seen}"
    );
    assert!(
        seen["log"]
            .as_str()
            .is_some_and(|l| l.contains("GET /from-python")),
        "{seen}"
    );
    assert_eq!(seen["orphan"], 400, "{seen}");
    assert_eq!(seen["deleted"], "Success", "{seen}");
    wait_for("py gone at node 1", Duration::from_secs(10), || {
        (!deployments(&cluster.server(1)).contains(&"py".to_string())).then_some(())
    });
}

/// Debian's kubectl 1.20 (`kubernetes-client`), unpacked beside the one on the PATH.
fn kubectl_1_20() -> Option<PathBuf> {
    installed(
        "kubectl-1.20/usr/bin/kubectl",
        Path::is_file,
        "apt-get download kubernetes-client && dpkg -x kubernetes-client_*.deb target/kubectl-1.20",
    )
}

#[test]
fn kubectl_1_20_validates_applies_reads_rolls_out_logs_and_deletes_at_any_peer() {
    let Some(old) = kubectl_1_20() else {
        return;
    };
    let Some(cluster) =
        Cluster::three_with_demo("ko", ["127.0.0.157", "127.0.0.158", "127.0.0.159"])
    else {
        return;
    };
    let configs: Vec<PathBuf> = (0..3).map(|i| kubeconfig(&cluster, i)).collect();
    let run = |i: usize, args: &[&str]| kubectl_as(&old, &configs[i], args);
    let ok = |i: usize, args: &[&str]| succeeded(args, run(i, args));
    let version = ok(0, &["version"]);
    assert!(version.contains("GitVersion:\"v1.20"), "{version}");
    assert!(version.contains("v1.32.0+weeble-"), "{version}");

    // apply validates the manifest against /openapi/v2 (protobuf) on the client.
    let file = cluster.dir.join("old.yaml");
    let manifest = demo_deployment("old", 2).replace(
        "image: weeble-demo:v1\n",
        "image: weeble-demo:v1\n        ports: [{containerPort: 80}]\n",
    );
    std::fs::write(&file, manifest).unwrap();
    let applied = ok(1, &["apply", "-f", file.to_str().unwrap()]);
    assert!(applied.contains("deployment.apps/old created"), "{applied}");
    let bad = cluster.dir.join("bad.yaml");
    std::fs::write(
        &bad,
        demo_deployment("bad", 1).replace("  replicas:", "  bogus: 1\n  replicas:"),
    )
    .unwrap();
    let refused = run(1, &["apply", "-f", bad.to_str().unwrap()]);
    assert!(
        text(&refused.stderr).contains("unknown field \"bogus\""),
        "{}",
        text(&refused.stderr)
    );
    let explained = ok(2, &["explain", "deployment.spec.replicas"]);
    assert!(explained.contains("How many pods"), "{explained}");

    let rolled = ok(2, &["rollout", "status", "deployment/old", "--timeout=90s"]);
    assert!(rolled.contains("successfully rolled out"), "{rolled}");
    let pods = ok(0, &["get", "pods", "-o", "wide"]);
    let header: Vec<&str> = pods.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        &header[..5],
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{pods}"
    );
    assert_eq!(
        pods.lines().filter(|l| l.contains("Running")).count(),
        2,
        "{pods}"
    );
    let selected = ok(1, &["get", "pods", "-l", "app=old", "-o", "name"]);
    assert_eq!(selected.lines().count(), 2, "{selected}");
    assert!(
        ok(2, &["get", "pods", "-l", "app=other", "-o", "name"])
            .trim()
            .is_empty()
    );

    // Logs at a peer the pod may not be on, and followed.
    let published = ok(
        2,
        &[
            "get",
            "pod",
            "old-0",
            "-o",
            "jsonpath={.status.podIP}:{.status.ports[0].hostPort}",
        ],
    );
    http_get(&published, "/from-1.20");
    let logs = ok(0, &["logs", "old-0", "--tail=5"]);
    assert!(logs.contains("GET /from-1.20"), "{logs}");
    let followed = printed_while(&old, &configs[1], &["logs", "-f", "old-0"], || {
        drop(http_get(&published, "/followed-1.20"))
    });
    assert!(followed.contains("GET /followed-1.20"), "{followed}");

    // set image, history, undo.
    let set = ok(0, &["set", "image", "deployment/old", "web=weeble-demo:v2"]);
    assert!(set.contains("image updated"), "{set}");
    wait_for("two revisions at node 1", Duration::from_secs(10), || {
        let history = ok(1, &["rollout", "history", "deployment/old"]);
        let revisions = history
            .lines()
            .filter(|l| l.starts_with(char::is_numeric))
            .count();
        (revisions == 2).then_some(())
    });
    let undone = ok(2, &["rollout", "undo", "deployment/old"]);
    assert!(undone.contains("rolled back"), "{undone}");
    wait_for(
        "the old image back at node 0",
        Duration::from_secs(10),
        || {
            let image = ok(
                0,
                &[
                    "get",
                    "deployment",
                    "old",
                    "-o",
                    "jsonpath={.spec.template.spec.containers[0].image}",
                ],
            );
            (image == "weeble-demo:v1").then_some(())
        },
    );
    let rolled = ok(1, &["rollout", "status", "deployment/old", "--timeout=90s"]);
    assert!(rolled.contains("successfully rolled out"), "{rolled}");

    // Namespaces, and server-side apply (beta in 1.20).
    let team = cluster.dir.join("team-1.20.yaml");
    let in_team =
        demo_deployment("crew", 1).replace("  name: crew\n", "  name: crew\n  namespace: team\n");
    std::fs::write(
        &team,
        format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: team}}\n---\n{in_team}"),
    )
    .unwrap();
    let made = ok(0, &["apply", "--server-side", "-f", team.to_str().unwrap()]);
    assert!(made.contains("namespace/team serverside-applied"), "{made}");
    wait_for("crew in team at node 2", Duration::from_secs(10), || {
        let names = ok(2, &["get", "deployments", "-n", "team", "-o", "name"]);
        (names.trim() == "deployment.apps/crew").then_some(())
    });
    ok(1, &["delete", "namespace", "team"]);
    wait_for("crew gone at node 0", Duration::from_secs(10), || {
        (!ok(0, &["get", "deployments", "-A", "-o", "name"]).contains("crew")).then_some(())
    });

    let described = ok(1, &["describe", "deployment", "old"]);
    assert!(
        described.contains("Replicas:") && described.contains("NewReplicaSet:"),
        "{described}"
    );
    ok(2, &["scale", "deployment/old", "--replicas=1"]);
    wait_for("the scale at node 0", Duration::from_secs(10), || {
        let replicas = ok(
            0,
            &[
                "get",
                "deployment",
                "old",
                "-o",
                "jsonpath={.spec.replicas}",
            ],
        );
        (replicas == "1").then_some(())
    });
    let deleted = ok(0, &["delete", "deployment", "old"]);
    assert!(deleted.contains("deleted"), "{deleted}");
}

/// Three nodes that ask for a token over TLS (each its own certificate, signed by the cluster's
/// CA), where kubectl and the Python client read and delete a pod at a node that does not run
/// it: the node asked forwards to the pod's node and answers itself, so no client follows a
/// redirect to another host (the Python client drops its token there).
#[test]
fn with_tokens_over_tls_logs_and_pod_deletes_are_answered_at_a_node_without_the_pod() {
    let Some(python) = python_client() else {
        return;
    };
    if !docker_available() {
        return;
    }
    assert!(weeble(&["image", "build-demo"]).status.success());
    let ips = ["127.0.0.150", "127.0.0.151", "127.0.0.152"];
    let mut cluster = Cluster::new("kt");
    let certs = cluster.dir.join("certs");
    let token = "kubectl-tls-token-0123456789";
    let tokens = cluster.dir.join("tokens");
    std::fs::write(&tokens, format!("{token},ops\n")).unwrap();
    let mut names = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let name = format!("kt{}-{i}", std::process::id());
        let mut extra = cluster.tls_args(&name, ip);
        extra.extend(["--join".into(), p2p(ips[(i + 1) % 3])]);
        extra.extend(["--api-token-file".into(), tokens.display().to_string()]);
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        cluster.start(&name, ip, &extra);
        names.push(name);
    }
    let ca = certs.join("ca.crt");
    let configs: Vec<PathBuf> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            let server = format!("https://{ip}:17070");
            let ca = ca.to_str().unwrap();
            let args = [
                "--server",
                &server,
                "--token",
                token,
                "--certificate-authority",
                ca,
                "config",
                "view",
            ];
            // It asks the node its name: once the node listens.
            let out = wait_for("the node's kubeconfig", Duration::from_secs(30), || {
                Some(weeble(&args)).filter(|out| out.status.success())
            });
            let path = cluster.dir.join(format!("kubeconfig-{i}"));
            std::fs::write(&path, &out.stdout).unwrap();
            path
        })
        .collect();
    for config in &configs {
        wait_for(
            "three ready nodes over TLS",
            Duration::from_secs(30),
            || {
                let nodes = kubectl(config, &["get", "nodes", "--no-headers"]);
                let ready = text(&nodes.stdout)
                    .lines()
                    .filter(|l| l.contains(" Ready"))
                    .count();
                (ready == 3).then_some(())
            },
        );
    }
    let file = cluster.dir.join("tls.yaml");
    let manifest = demo_deployment("tls", 2).replace(
        "image: weeble-demo:v1\n",
        "image: weeble-demo:v1\n        ports: [{containerPort: 80}]\n",
    );
    std::fs::write(&file, manifest).unwrap();
    kubectl_ok(&configs[0], &["apply", "-f", file.to_str().unwrap()]);
    let rolled = kubectl_ok(
        &configs[1],
        &["rollout", "status", "deployment/tls", "--timeout=90s"],
    );
    assert!(rolled.contains("successfully rolled out"), "{rolled}");
    // Each pod: the node it is on, a node it is not on, where its port is published; once
    // node 2 has its node's report (rollout status at node 1 may be ahead).
    let placed = |pod: &str| {
        let path = "jsonpath={.spec.nodeName} {.status.podIP}:{.status.ports[0].hostPort}";
        let out = wait_for(
            "the pod's report at node 2",
            Duration::from_secs(10),
            || {
                let out = kubectl(&configs[2], &["get", "pod", pod, "-o", path]);
                out.status.success().then(|| text(&out.stdout))
            },
        );
        let (node, published) = out.split_once(' ').unwrap();
        let on = names
            .iter()
            .position(|n| n == node)
            .expect("one of the nodes");
        (on, (on + 1) % 3, published.to_string())
    };

    let (on, asked, published) = placed("tls-0");
    http_get(&published, "/kubectl-over-tls");
    let logs = kubectl_ok(
        &configs[asked],
        &["logs", "tls-0", "--tail=5", "--timestamps"],
    );
    assert!(logs.contains("GET /kubectl-over-tls"), "{logs}");
    assert!(logs.starts_with("20"), "timestamps kept: {logs}");
    let cut = kubectl_ok(&configs[asked], &["logs", "tls-0", "--limit-bytes=7"]);
    assert_eq!(cut.len(), 7, "{cut}");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let hour_ago = weeble_core::time::rfc3339(now_ms - 3_600_000);
    let since = format!("--since-time={hour_ago}");
    let recent = kubectl_ok(&configs[asked], &["logs", "tls-0", &since]);
    assert!(recent.contains("GET /kubectl-over-tls"), "{recent}");
    let previous = kubectl(&configs[asked], &["logs", "tls-0", "--previous"]);
    let said = text(&previous.stderr);
    assert!(said.contains("previous is not supported"), "{said}");
    let followed = printed_while(
        Path::new("kubectl"),
        &configs[asked],
        &["logs", "-f", "tls-0"],
        || drop(http_get(&published, "/followed-over-tls")),
    );
    assert!(followed.contains("GET /followed-over-tls"), "{followed}");
    let wrong = kubectl(&configs[asked], &["logs", "tls-0", "-c", "nope"]);
    let said = text(&wrong.stderr);
    assert!(said.contains("container nope is not valid"), "{said}");
    // A pod's uid, or nothing while it is made again.
    let uid = |pod: &str| {
        let path = "jsonpath={.metadata.uid}";
        text(&kubectl(&configs[on], &["get", "pod", pod, "-o", path]).stdout)
    };
    let before = uid("tls-0");
    let deleted = kubectl_ok(&configs[asked], &["delete", "pod", "tls-0"]);
    assert!(deleted.contains("pod \"tls-0\" deleted"), "{deleted}");
    wait_for(
        "tls-0 made again, a new pod",
        Duration::from_secs(60),
        || {
            let now = uid("tls-0");
            (!now.is_empty() && now != before).then_some(())
        },
    );

    let (_, asked, published) = placed("tls-1");
    http_get(&published, "/python-over-tls");
    let pod = PathBuf::from("tls-1");
    let seen = python_saw(&python, "pod.py", &[configs[asked].clone(), pod]);
    let log = seen["log"].as_str().unwrap_or_default();
    assert!(log.contains("GET /python-over-tls"), "{seen}");
    assert_eq!(seen["deleted"], "tls-1", "{seen}");
    let before = seen["uid"].as_str().unwrap().to_string();
    wait_for(
        "tls-1 made again, a new pod",
        Duration::from_secs(60),
        || {
            let now = uid("tls-1");
            (!now.is_empty() && now != before).then_some(())
        },
    );
}
