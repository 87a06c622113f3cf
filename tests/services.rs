//! Services with no master and no kube-proxy: three `weeble node` processes on
//! 127.0.0.71-73, each serving the service's port on its own address and forwarding to the
//! ready replicas wherever they run. Every node's port reaches every replica; a replica
//! killed while a client sends requests costs at most 1% of them, and none for a client
//! that retries once; every node lists the same endpoints and answers DNS for the service
//! with its own address; containers get the Kubernetes service variables, pointing at their
//! own node. A replica failing its readiness probe leaves the endpoints and gets no traffic;
//! one failing its liveness probe is killed and restarted; an exec probe runs in the container.
//!
//! Needs Docker: skipped with a message when it is missing, except under CI=true.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;
use support::*;

const MANIFEST: &str = "
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 3
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers:
      - {name: echo, image: weeble-demo:v1, ports: [{containerPort: 80, name: http}]}
---
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{port: 18080, targetPort: http}]
";

const IPS: [&str; 3] = ["127.0.0.71", "127.0.0.72", "127.0.0.73"];

/// Three nodes running 3 ready replicas of `echo` behind its service; None without Docker.
fn cluster_with_service() -> Option<Cluster> {
    let cluster = Cluster::three_with_demo("services-test", IPS)?;
    apply(&cluster, "echo.yaml", MANIFEST);
    for i in 0..3 {
        wait_for(
            "three endpoints on every node",
            Duration::from_secs(60),
            || (endpoint_addrs(&cluster.server(i), "echo").len() == 3).then_some(()),
        );
    }
    Some(cluster)
}

/// Applies `manifest` (saved as `file` in the cluster's directory) at the first node.
fn apply(cluster: &Cluster, file: &str, manifest: &str) {
    let path = cluster.dir.join(file);
    std::fs::write(&path, manifest).unwrap();
    let server = cluster.server(0);
    let out = weeble(&["--server", &server, "apply", "-f", path.to_str().unwrap()]);
    assert!(out.status.success(), "apply {file}: {}", text(&out.stderr));
}

/// The ready endpoints node `server` lists for `service`: (address, pod) pairs.
fn endpoints(server: &str, service: &str) -> BTreeSet<(String, String)> {
    let out = weeble(&[
        "--server",
        server,
        "get",
        "endpoints",
        service,
        "-o",
        "json",
    ]);
    let endpoints: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    endpoints["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let address = &s["addresses"][0];
            let at = format!("{}:{}", address["ip"].as_str()?, s["ports"][0]["port"]);
            Some((at, address["targetRef"]["name"].as_str()?.to_string()))
        })
        .collect()
}

/// The ready addresses node `server` lists for `service`.
fn endpoint_addrs(server: &str, service: &str) -> BTreeSet<String> {
    endpoints(server, service)
        .into_iter()
        .map(|(at, _)| at)
        .collect()
}

/// The pods node `server` lists as ready endpoints of `service`.
fn endpoint_pods(server: &str, service: &str) -> BTreeSet<String> {
    endpoints(server, service)
        .into_iter()
        .map(|(_, pod)| pod)
        .collect()
}

/// Who answered a request through service port `port` on `ip`, if anyone did.
fn ask_at(ip: &str, port: u16) -> Option<String> {
    let reply = try_http_get(&format!("{ip}:{port}"), "/").ok()?;
    let body = reply.split_once("\r\n\r\n")?.1;
    let who = body.strip_prefix("hello from ")?.split(':').next()?;
    Some(who.to_string())
}

#[test]
fn every_node_s_service_port_reaches_every_replica() {
    let _one_at_a_time = serial();
    let Some(cluster) = cluster_with_service() else {
        return;
    };
    let pods: BTreeSet<String> = pods(&cluster.server(0))
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(pods.len(), 3);
    for (i, ip) in IPS.iter().enumerate() {
        let answered: BTreeSet<String> = (0..9).filter_map(|_| ask_at(ip, 18080)).collect();
        assert_eq!(answered, pods, "node {i} reaches every replica, in turn");
        let services = json(&cluster.server(i), &["get", "services", "echo"]);
        assert_eq!(
            services["spec"]["clusterIP"], *ip,
            "served on the node's own address"
        );
        assert_eq!(
            endpoint_addrs(&cluster.server(i), "echo"),
            endpoint_addrs(&cluster.server(0), "echo"),
            "every node resolves the service alike"
        );
        // Its DNS server answers for the service with its own address.
        for name in ["echo.default.svc.cluster.local", "echo.default", "echo"] {
            assert_eq!(
                resolve(ip, name),
                (0, Some(ip.parse().unwrap())),
                "{name} at {ip}"
            );
        }
        assert_eq!(
            resolve(ip, "nothing.default.svc.cluster.local"),
            (3, None),
            "NXDOMAIN"
        );
        assert_eq!(
            resolve(ip, "example.com"),
            (5, None),
            "REFUSED: not a resolver"
        );
        // Each container has the Kubernetes variables, pointing at its own node.
        for id in cluster.containers_of(Some(&cluster.nodes[i].name), true) {
            let out = Command::new("docker")
                .args(["inspect", "-f", "{{json .Config.Env}}", &id])
                .output()
                .unwrap();
            let env: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
            for want in [
                format!("ECHO_SERVICE_HOST={ip}"),
                "ECHO_SERVICE_PORT=18080".to_string(),
                format!("ECHO_PORT_18080_TCP=tcp://{ip}:18080"),
            ] {
                assert!(env.contains(&want), "{id} lacks {want}: {env:?}");
            }
        }
    }
}

#[test]
fn a_replica_killed_under_load_costs_at_most_one_percent_and_nothing_with_a_retry() {
    let _one_at_a_time = serial();
    let Some(cluster) = cluster_with_service() else {
        return;
    };
    let victim = cluster.containers(true)[0].clone();
    let (mut failed, mut failed_twice) = (0, 0);
    const REQUESTS: usize = 400;
    for n in 0..REQUESTS {
        if n == REQUESTS / 4 {
            let out = Command::new("docker")
                .args(["kill", &victim])
                .output()
                .unwrap();
            assert!(out.status.success(), "docker kill: {}", text(&out.stderr));
        }
        let ip = IPS[n % 3];
        if ask_at(ip, 18080).is_none() {
            failed += 1;
            if ask_at(ip, 18080).is_none() {
                failed_twice += 1;
            }
        }
    }
    // The kill took: the replica is restarted (the requests may all be done before its
    // status says so).
    wait_for(
        "the killed replica restarted",
        Duration::from_secs(10),
        || {
            let restarts: u64 = pods(&cluster.server(0))
                .iter()
                .map(|p| p["status"]["restartCount"].as_u64().unwrap_or(0))
                .sum();
            (restarts >= 1).then_some(())
        },
    );
    eprintln!("{failed} of {REQUESTS} requests failed, {failed_twice} failed again on a retry");
    assert!(failed * 100 <= REQUESTS, "{failed} of {REQUESTS} failed");
    assert_eq!(failed_twice, 0);
}

/// Asks the DNS server on `ip` (UDP port 53) for the A record of `name`: the response code
/// and the address answered, if any.
fn resolve(ip: &str, name: &str) -> (u8, Option<std::net::Ipv4Addr>) {
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]); // the root, type A, class IN
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket.send_to(&query, (ip, 53)).unwrap();
    let mut reply = [0u8; 512];
    let n = socket.recv(&mut reply).expect("the node answers DNS");
    let (code, answers) = (reply[3] & 0x0f, u16::from_be_bytes([reply[6], reply[7]]));
    let address = (answers == 1).then(|| {
        let a = &reply[n - 4..n];
        std::net::Ipv4Addr::new(a[0], a[1], a[2], a[3])
    });
    (code, address)
}

const CHECKED: &str = "
kind: Deployment
metadata: {name: checked}
spec:
  replicas: 3
  template:
    metadata: {labels: {app: checked}}
    spec:
      containers:
      - name: web
        image: weeble-demo:v1
        ports: [{containerPort: 80, name: http}]
        readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1, failureThreshold: 1}
        livenessProbe: {exec: {command: [/weeble, --version]}, periodSeconds: 1, timeoutSeconds: 5}
---
kind: Service
metadata: {name: checked}
spec:
  selector: {app: checked}
  ports: [{port: 18081, targetPort: http}]
---
kind: Deployment
metadata: {name: doomed}
spec:
  replicas: 1
  template:
    metadata: {labels: {app: doomed}}
    spec:
      containers:
      - name: web
        image: weeble-demo:v1
        ports: [{containerPort: 80}]
        livenessProbe: {httpGet: {path: /healthz, port: 80}, periodSeconds: 1, failureThreshold: 2}
";

/// Makes the demo server in container `id` fail its health checks from now on.
fn make_unhealthy(cluster: &Cluster, id: &str) {
    let file = cluster.dir.join("unhealthy");
    std::fs::write(&file, "").unwrap();
    let out = Command::new("docker")
        .args(["cp", file.to_str().unwrap(), &format!("{id}:/unhealthy")])
        .output()
        .unwrap();
    assert!(out.status.success(), "docker cp: {}", text(&out.stderr));
}

/// The id of a pod's (first) container.
fn container_id(pod: &Value) -> String {
    let id = pod["status"]["containerStatuses"][0]["containerID"].as_str();
    id.expect("the pod has a container")
        .trim_start_matches("docker://")
        .to_string()
}

/// The pod named `name`, as node `server` reports it.
fn pod_named(server: &str, name: &str) -> Value {
    pods(server)
        .into_iter()
        .find(|p| p["metadata"]["name"] == name)
        .unwrap_or(Value::Null)
}

#[test]
fn a_replica_failing_readiness_gets_no_traffic_and_failing_liveness_restarts() {
    let _one_at_a_time = serial();
    let Some(cluster) = cluster_with_service() else {
        return;
    };
    apply(&cluster, "checked.yaml", CHECKED);
    wait_for(
        "three ready endpoints (readiness passed)",
        Duration::from_secs(60),
        || (endpoint_addrs(&cluster.server(0), "checked").len() == 3).then_some(()),
    );

    // One replica starts failing its readiness probe: it leaves the endpoints, still running.
    let victim = pod_named(&cluster.server(0), "checked-0");
    let id = container_id(&victim);
    make_unhealthy(&cluster, &id);
    let others = BTreeSet::from(["checked-1".to_string(), "checked-2".to_string()]);
    for i in 0..3 {
        wait_for(
            "checked-0 gone from the endpoints everywhere, the others there",
            Duration::from_secs(30),
            || (endpoint_pods(&cluster.server(i), "checked") == others).then_some(()),
        );
    }
    let pod = pod_named(&cluster.server(1), "checked-0");
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(
        pod["status"]["conditions"][0]["status"], "False",
        "shown not ready"
    );
    for ip in IPS {
        for _ in 0..10 {
            let who = ask_at(ip, 18081).expect("the other replicas answer");
            assert_ne!(
                who, "checked-0",
                "an unready replica got traffic through {ip}"
            );
        }
    }
    // The exec liveness probe passes all along: nothing was restarted for it.
    assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0);

    // A replica failing its liveness probe is killed and restarted.
    let doomed = pod_named(&cluster.server(0), "doomed-0");
    let id = container_id(&doomed);
    make_unhealthy(&cluster, &id);
    wait_for("doomed-0 restarted", Duration::from_secs(30), || {
        let restarts = pod_named(&cluster.server(0), "doomed-0")["status"]["containerStatuses"][0]
            ["restartCount"]
            .as_u64()
            .unwrap_or(0);
        (restarts >= 1).then_some(())
    });
    let killed: usize = cluster
        .nodes
        .iter()
        .map(|n| {
            messages(
                &json_log(&cluster, &n.name),
                "liveness probe failed: container killed",
            )
            .len()
        })
        .sum();
    assert!(killed >= 1, "a node logged the kill");
}
