//! The talk's demo, for real and with no master: three `weeble node` processes on
//! 127.0.0.11-13 running containers on this machine's Docker engine. Apply at the second
//! node, see the pods from every node, kill a container, read a pod's log, restart an agent
//! (same identity and state, containers adopted), scale up and down, delete; a node with
//! another cluster key never joins; a malformed manifest changes nothing; logs are JSON; a node
//! runs on the engine `--docker-host` names.
//!
//! Needs Docker: skipped with a message when it is missing, except under CI=true.

mod support;

use serde_json::Value;
use std::process::Command;
use std::time::Duration;
use support::*;

#[test]
fn three_nodes_run_the_talk_demo_with_no_master() {
    if !docker_available() {
        return;
    }
    let built = weeble(&["image", "build-demo"]);
    assert!(
        built.status.success(),
        "build-demo: {}",
        text(&built.stderr)
    );

    let tag = std::process::id();
    let mut cluster = Cluster::new("cluster-test");
    let (good, other) = (cluster.key("cluster.key"), cluster.key("other.key"));
    let (good, other) = (good.to_str().unwrap(), other.to_str().unwrap());
    let names: Vec<String> = (1..=3).map(|i| format!("t{tag}-{i}")).collect();
    // Every node has a join address, so any of them can be restarted and find its way back.
    for (i, name) in names.iter().enumerate() {
        let seed = p2p(&format!("127.0.0.{}", 11 + (i + 2) % 3));
        let ip = format!("127.0.0.{}", 11 + i);
        cluster.start(name, &ip, &["--cluster-key", good, "--join", &seed]);
    }
    cluster.start(
        &format!("t{tag}-intruder"),
        "127.0.0.14",
        &["--cluster-key", other, "--join", &p2p("127.0.0.11")],
    );
    let servers: Vec<String> = (11..=13)
        .map(|i| format!("http://127.0.0.{i}:17070"))
        .collect();

    for server in &servers {
        wait_for(
            "every node to see three ready members",
            Duration::from_secs(30),
            || (ready_nodes(server).len() == 3).then_some(()),
        );
    }
    // The intruder has had time to dial in; it never shows up anywhere.
    std::thread::sleep(Duration::from_secs(3));
    for server in &servers {
        let nodes = json(server, &["get", "nodes"]);
        let listed: Vec<&str> = nodes["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(listed.len(), 3, "{server}: {listed:?}");
        assert!(
            !listed.iter().any(|n| n.ends_with("intruder")),
            "{listed:?}"
        );
    }

    // A malformed manifest: a clear error, a non-zero exit, and nothing applied.
    let broken = std::fs::read_to_string(format!("{ROOT}/examples/demo.yaml"))
        .unwrap()
        .replace("replicas: 3", "replicas: -3");
    let broken_file = cluster.dir.join("broken.yaml");
    std::fs::write(&broken_file, broken).unwrap();
    let out = weeble(&[
        "--server",
        &servers[1],
        "apply",
        "-f",
        broken_file.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("spec.replicas"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        json(&servers[0], &["get", "deployments"])["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Apply the talk's manifest at the second node.
    let out = weeble(&["--server", &servers[1], "apply", "-f", "examples/demo.yaml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("deployment.apps/nginx created"),
        "{}",
        text(&out.stdout)
    );
    let placed = wait_for(
        "three pods Running, seen from every node",
        Duration::from_secs(30),
        || {
            let views: Vec<Vec<Value>> = servers.iter().map(|s| pods(s)).collect();
            views
                .iter()
                .all(|v| v.len() == 3 && running(v) == 3)
                .then(|| views[0].clone())
        },
    );
    // Spread as placement says: each pod runs on the node the API names, with that node's label.
    for pod in &placed {
        let node = pod["spec"]["nodeName"].as_str().unwrap();
        let name = pod["metadata"]["name"].as_str().unwrap();
        let out = Command::new("docker")
            .args([
                "ps",
                "-q",
                "--filter",
                &format!("label=weeble.node={node}"),
                "--filter",
                &format!("label=weeble.pod={name}"),
            ])
            .output()
            .unwrap();
        assert_eq!(text(&out.stdout).lines().count(), 1, "{name} on {node}");
    }
    assert_eq!(cluster.containers(true).len(), 3);

    // Kill one container: it is running again, with a restart counted.
    let victim = cluster.containers(true)[0].clone();
    assert!(
        Command::new("docker")
            .args(["kill", &victim])
            .output()
            .unwrap()
            .status
            .success()
    );
    wait_for(
        "the killed container to run again",
        Duration::from_secs(15),
        || {
            let p = pods(&servers[0]);
            (running(&p) == 3 && p.iter().any(|p| p["status"]["restartCount"] == 1)).then_some(())
        },
    );

    // The demo server logs each request, and `weeble logs` shows it from any node.
    let pod = pods(&servers[0])[0].clone();
    let name = pod["metadata"]["name"].as_str().unwrap().to_string();
    let port = &pod["status"]["ports"][0];
    let addr = format!("{}:{}", port["hostIP"].as_str().unwrap(), port["hostPort"]);
    let reply = http_get(&addr, "/from-the-test");
    assert!(reply.contains(&format!("hello from {name}")), "{reply}");
    wait_for(
        "the request in the pod's log",
        Duration::from_secs(10),
        || {
            let out = weeble(&["--server", &servers[2], "logs", &name]);
            text(&out.stdout)
                .contains("\"GET /from-the-test HTTP/1.0\"")
                .then_some(())
        },
    );

    // Scale to 5, then to 1.
    let scale = |n: &str| {
        let out = weeble(&[
            "--server",
            &servers[2],
            "scale",
            "deployment",
            "nginx",
            "--replicas",
            n,
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    scale("5");
    wait_for("five pods Running", Duration::from_secs(30), || {
        (running(&pods(&servers[0])) == 5 && cluster.containers(true).len() == 5).then_some(())
    });
    restart_keeps_identity_state_and_containers(&mut cluster, &servers);
    scale("1");
    wait_for("one container left", Duration::from_secs(30), || {
        (cluster.containers(false).len() == 1 && running(&pods(&servers[1])) == 1).then_some(())
    });

    // Delete: no containers.
    let out = weeble(&["--server", &servers[0], "delete", "deployment", "nginx"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_for("no containers", Duration::from_secs(30), || {
        cluster.containers(false).is_empty().then_some(())
    });
    assert!(pods(&servers[2]).is_empty());
    logs_are_json_with_a_span_per_actor(&cluster);
}

/// SIGKILL the agent with the most containers and start it again: it keeps its peer id and
/// its desired state (from its data dir), and adopts its running containers.
fn restart_keeps_identity_state_and_containers(cluster: &mut Cluster, servers: &[String]) {
    let index = (0..cluster.nodes.len())
        .max_by_key(|&i| {
            cluster
                .containers_of(Some(&cluster.nodes[i].name), true)
                .len()
        })
        .unwrap();
    let name = cluster.nodes[index].name.clone();
    let other = &servers[(index + 1) % servers.len()];
    let peer_id = |server: &str| {
        json(server, &["get", "nodes", &name])["metadata"]["annotations"]["weeble.io/peer-id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let id_before = peer_id(other);
    let before = cluster.containers_of(Some(&name), true);
    assert!(before.len() >= 2, "{name} runs {before:?}");

    cluster.restart(index);
    // Its first answer already holds the deployment: the state came from its own disk.
    let first = wait_for("the restarted API", Duration::from_secs(10), || {
        let out = weeble(&[
            "--server",
            &servers[index],
            "get",
            "deployments",
            "-o",
            "json",
        ]);
        out.status.success().then(|| text(&out.stdout))
    });
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["items"][0]["spec"]["replicas"], 5, "{first}");
    let loaded = json_log(cluster, &name);
    let loaded = messages(&loaded, "desired state loaded");
    assert_eq!(loaded.len(), 2, "one load per start");
    assert_eq!(
        loaded[1]["fields"]["objects"], 2,
        "the deployment and the service"
    );

    wait_for(
        "the restarted node back, and five pods Running",
        Duration::from_secs(30),
        || {
            let back = servers.iter().all(|s| {
                let nodes = json(s, &["get", "nodes"]);
                nodes["items"].as_array().unwrap().iter().any(|n| {
                    n["metadata"]["name"] == name.as_str()
                        && n["status"]["conditions"][0]["status"] == "True"
                })
            });
            (back && running(&pods(other)) == 5 && cluster.containers(false).len() == 5)
                .then_some(())
        },
    );
    assert_eq!(
        peer_id(other),
        id_before,
        "the node key survived the restart"
    );
    assert_eq!(
        cluster.containers_of(Some(&name), true),
        before,
        "the restarted node adopted its containers: none recreated"
    );
}

/// With `--log-format json` every line is a JSON object; what an operator asks about is
/// logged at info inside the span of the actor that did it.
fn logs_are_json_with_a_span_per_actor(cluster: &Cluster) {
    let mut started = 0;
    for node in &cluster.nodes {
        let log = json_log(cluster, &node.name);
        let intruder = node.name.ends_with("intruder");
        assert_eq!(
            messages(&log, "peer joined").is_empty(),
            intruder,
            "{}: only the intruder never meets a peer",
            node.name
        );
        for line in messages(&log, "container started") {
            assert_eq!(line["level"], "INFO");
            assert_eq!(line["span"]["name"], "reconciler", "{line}");
            started += 1;
        }
        for line in messages(&log, "peer joined") {
            assert_eq!(line["span"]["name"], "node", "{line}");
        }
    }
    // Three, then two more on scale-up (a killed container is restarted, not re-created).
    assert!(started >= 5, "{started} containers started");
}

/// `--docker-host` names the engine a node runs on: a node whose engine cannot be reached does
/// not start and says which it tried; one given the local socket by name runs its pods.
#[test]
fn a_node_runs_its_pods_on_the_engine_its_docker_host_names() {
    if !docker_available() {
        return;
    }
    assert!(weeble(&["image", "build-demo"]).status.success());
    let mut cluster = Cluster::new("dh");
    let missing = weeble(&[
        "node",
        "--name",
        "nowhere",
        "--data-dir",
        cluster.dir.join("nowhere").to_str().unwrap(),
        "--p2p",
        &p2p("127.0.0.161"),
        "--api",
        "127.0.0.161:17070",
        "--docker-host",
        "unix:///nonexistent/docker.sock",
    ]);
    assert!(!missing.status.success());
    let said = text(&missing.stderr);
    assert!(said.contains("unix:///nonexistent/docker.sock"), "{said}");
    let odd = cluster.dir.join("odd");
    let refused = weeble(&[
        "node",
        "--name",
        "odd",
        "--data-dir",
        odd.to_str().unwrap(),
        "--docker-host",
        "ssh://box",
    ]);
    assert!(
        text(&refused.stderr).contains("unix:///PATH or tcp://HOST:PORT"),
        "{}",
        text(&refused.stderr)
    );

    let socket = std::env::var("DOCKER_HOST").unwrap_or("unix:///var/run/docker.sock".into());
    cluster.start(
        &format!("dh{}", std::process::id()),
        "127.0.0.160",
        &["--docker-host", &socket],
    );
    let server = cluster.server(0);
    wait_for("the node ready", Duration::from_secs(30), || {
        (ready_nodes(&server).len() == 1).then_some(())
    });
    let applied = apply_demo(&cluster, &server, "dh", 1);
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    wait_for(
        "the pod running on the named engine",
        Duration::from_secs(60),
        || (running(&pods(&server)) == 1).then_some(()),
    );
}
