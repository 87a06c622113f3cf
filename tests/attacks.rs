//! Attacks on a cluster of real `weeble` processes, each ending with no change to the desired
//! state and no container started: a node with the wrong cluster key or none, a node with
//! the key but not allowed, a node allowed then denied; and, from an attacker in this process
//! speaking the p2p protocol with an admitted key (`weeble_node::network`, the real
//! transport), status reports forged for another node, a death and a leave forged in another
//! node's name, and a flood of writes while an honest write still converges.
//! The API's own attacks (no token, a wrong one, a read-only one writing, past the rate
//! limit) are in `tests/api.rs`.

mod support;

use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use weeble_core::keys::NodeKey;
use weeble_core::membership::{Detection, Effect, MemberId, MemberInfo, Membership, Shared};
use weeble_core::status::{NodeStatus, PodStatus, StatusMessage};
use weeble_crdt::{Labels, ResourceAmounts};
use weeble_node::join::JoinToken;
use weeble_node::network::{NetConfig, Network};
use weeble_node::shutdown::Stop;
use weeble_node::transport::{LocalDigest, Transport};

/// `weeble --server SERVER ARGS`, which must succeed: its standard output.
fn weeble_ok(server: &str, args: &[&str]) -> String {
    let mut all = vec!["--server", server];
    all.extend(args);
    let out = weeble(&all);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// The peers `server` knows, by node name: (peer id, liveness, admission).
fn peers(server: &str) -> Vec<(String, String, String, Option<String>)> {
    let list = json(server, &["get", "peers"]);
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let field = |v: &Value| v.as_str().map(str::to_string);
    items
        .iter()
        .map(|p| {
            (
                field(&p["status"]["node"]).unwrap_or_default(),
                field(&p["metadata"]["name"]).unwrap_or_default(),
                field(&p["status"]["liveness"]).unwrap_or_default(),
                field(&p["spec"]["admission"]),
            )
        })
        .collect()
}

fn liveness(server: &str, node: &str) -> Option<String> {
    let found = peers(server).into_iter().find(|(n, ..)| n == node);
    found.map(|(_, _, liveness, _)| liveness)
}

/// `during` goes by; `check` holds at every look (every 200 ms).
fn holds(what: &str, during: Duration, mut check: impl FnMut() -> bool) {
    let until = Instant::now() + during;
    while Instant::now() < until {
        assert!(check(), "{what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn nodes_without_the_key_or_the_cluster_s_allow_change_nothing() {
    if !docker_available() {
        return;
    }
    let _serial = serial();
    let mut cluster = Cluster::new("admit");
    let key = cluster.key("cluster.key");
    let other = cluster.key("other.key");
    let key = key.to_str().unwrap();
    let seed = p2p("127.0.0.131");
    let keyed = |extra: &[&'static str]| -> Vec<String> {
        let mut args = vec![
            "--dns-port".into(),
            "0".into(),
            "--cluster-key".into(),
            key.into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    let start = |cluster: &mut Cluster, name: &str, ip: &str, args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cluster.start(name, ip, &args);
    };
    start(&mut cluster, "ad-a", "127.0.0.131", keyed(&[]));
    let join = ["--join".to_string(), seed.clone()];
    let mut b = keyed(&[]);
    b.extend(join.clone());
    start(&mut cluster, "ad-b", "127.0.0.132", b);
    let (a, b) = (cluster.server(0), cluster.server(1));
    wait_for("a and b Ready", Duration::from_secs(30), || {
        (ready_nodes(&a).len() == 2).then_some(())
    });

    // The wrong key, and none: never members; what they write stays theirs.
    let mut wrong = vec!["--dns-port".to_string(), "0".into(), "--cluster-key".into()];
    wrong.push(other.to_str().unwrap().into());
    wrong.extend(join.clone());
    start(&mut cluster, "ad-wrong", "127.0.0.133", wrong);
    let mut none = vec!["--dns-port".to_string(), "0".into()];
    none.extend(join.clone());
    start(&mut cluster, "ad-none", "127.0.0.134", none);
    for i in [2, 3] {
        let server = cluster.server(i);
        wait_for("the outsider's API", Duration::from_secs(20), || {
            weeble(&["--server", &server, "get", "nodes"])
                .status
                .success()
                .then_some(())
        });
        assert!(
            apply_demo(&cluster, &server, &format!("outsider{i}"), 2)
                .status
                .success()
        );
    }

    // A new node admitted with a join token (the list now allows a, b and it alone); one
    // with the key but a key of its own, never allowed, stays out.
    let token = weeble_ok(&a, &["node", "join-token"]);
    let mut joined = vec!["--dns-port".to_string(), "0".into(), "--join-token".into()];
    joined.push(token.trim().into());
    start(&mut cluster, "ad-joined", "127.0.0.135", joined);
    let mut stranger = keyed(&[]);
    stranger.extend(join.clone());
    start(&mut cluster, "ad-stranger", "127.0.0.136", stranger);
    wait_for(
        "the joined node Ready at a and b",
        Duration::from_secs(30),
        || {
            [&a, &b]
                .iter()
                .all(|s| ready_nodes(s).contains("ad-joined"))
                .then_some(())
        },
    );
    let stranger_api = cluster.server(5);
    wait_for("the stranger's API", Duration::from_secs(20), || {
        weeble(&["--server", &stranger_api, "get", "nodes"])
            .status
            .success()
            .then_some(())
    });
    assert!(
        apply_demo(&cluster, &stranger_api, "stranger", 2)
            .status
            .success()
    );

    // Denied at b: declared down everywhere within a few seconds; what it writes after
    // reaches no one.
    let joined_peer = peers(&a)
        .into_iter()
        .find(|(n, ..)| n == "ad-joined")
        .map(|(_, peer, ..)| peer)
        .expect("the joined node's peer id");
    let out = weeble_ok(&b, &["node", "deny", &joined_peer]);
    assert!(out.contains("denied"), "{out}");
    let denied_at = Instant::now();
    wait_for(
        "the denied node down at a and b",
        Duration::from_secs(10),
        || {
            [&a, &b]
                .iter()
                .all(|s| liveness(s, "ad-joined").as_deref() == Some("Down"))
                .then_some(())
        },
    );
    eprintln!(
        "denied node down everywhere after {:?}",
        denied_at.elapsed()
    );
    assert!(
        apply_demo(&cluster, &cluster.server(4), "denied", 2)
            .status
            .success()
    );

    holds("nothing reaches a or b", Duration::from_secs(6), || {
        let members = |s: &str| ready_nodes(s).into_iter().collect::<Vec<_>>();
        deployments(&a).is_empty()
            && deployments(&b).is_empty()
            && members(&a) == ["ad-a", "ad-b"]
            && members(&b) == ["ad-a", "ad-b"]
    });
    for node in ["ad-a", "ad-b"] {
        assert!(
            cluster.containers_of(Some(node), false).is_empty(),
            "{node} started nothing"
        );
    }
    assert!(
        logged(&cluster, "ad-a", "which is not admitted"),
        "a logged the stranger or the denied node turned away"
    );

    // Allowed at last, the stranger joins (and what it wrote merges: it is one of the
    // cluster's writers now).
    let stranger_peer = weeble_ok(&stranger_api, &["get", "peers"])
        .lines()
        .find(|l| l.contains("ad-stranger"))
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .expect("the stranger knows its own peer id");
    let out = weeble_ok(&a, &["node", "allow", &stranger_peer]);
    assert!(out.contains("allowed"), "{out}");
    wait_for("the stranger Ready at a", Duration::from_secs(30), || {
        ready_nodes(&a).contains("ad-stranger").then_some(())
    });
}

/// An attacker admitted with a join token's key, speaking the p2p protocol from this process.
struct Attacker {
    runtime: tokio::runtime::Runtime,
    network: Network,
    key: NodeKey,
    _stop: Stop,
}

impl Attacker {
    fn new(token: &str, listen: &str) -> Self {
        let token = JoinToken::parse(token).expect("a join token");
        let keypair = token.keypair().unwrap();
        let key = weeble_node::agent::signing_key(&keypair).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (stop, shutdown) = Stop::new();
        let (network, mut events) = runtime
            .block_on(async {
                Network::start(NetConfig {
                    keypair,
                    listen: listen.parse().unwrap(),
                    cluster_key: token.cluster_key().flatten(),
                    digest: Arc::new(LocalDigest::default()),
                    shutdown,
                    rate_limit: 100,
                })
            })
            .expect("the attacker's network starts");
        runtime.spawn(async move { while events.recv().await.is_some() {} });
        Attacker {
            runtime,
            network,
            key,
            _stop: stop,
        }
    }
}

/// Node `name`'s identity as its peers hold it, read from `server`'s API and its data
/// directory (its epoch is its identity's bump).
fn identity(cluster: &Cluster, server: &str, name: &str) -> MemberId {
    let node = json(server, &["get", "nodes", name]);
    let annotation = |key: &str| {
        node["metadata"]["annotations"][key]
            .as_str()
            .unwrap()
            .to_string()
    };
    let capacity = &node["status"]["capacity"];
    let number = |v: &Value| {
        v.as_str()
            .unwrap()
            .trim_end_matches('m')
            .parse::<u64>()
            .unwrap()
    };
    let labels: Labels = serde_json::from_value(node["metadata"]["labels"].clone()).unwrap();
    let ip = node["status"]["addresses"][0]["address"].as_str().unwrap();
    let epoch = std::fs::read_to_string(cluster.dir.join(name).join("epoch")).unwrap();
    MemberId::from(MemberInfo {
        name: name.to_string(),
        peer_id: annotation("weeble.io/peer-id"),
        p2p: p2p(ip).parse().unwrap(),
        api: annotation("weeble.io/api").parse().unwrap(),
        labels,
        capacity: ResourceAmounts {
            cpu_millis: number(&capacity["cpu"]),
            memory_bytes: number(&capacity["memory"]),
        },
        max_pods: number(&capacity["pods"]) as u32,
        bump: epoch.trim().parse().unwrap(),
    })
}

/// The datagrams a node with identity `me` sends `to` when it declares `dead` down and then
/// leaves (each carries both: SWIM piggybacks what a node has heard on all it sends). Made
/// by the membership core itself, which first hears of `to` and `dead` through the
/// announces their identities would send.
fn death_and_leave_in_the_name_of(me: &MemberId, to: &MemberId, dead: &MemberId) -> Vec<Vec<u8>> {
    let core =
        |m: &MemberId| Membership::new(m.clone(), Detection::default(), 1, Shared::default());
    let mut forger = core(me);
    let now = Duration::from_secs(1);
    for other in [to, dead] {
        for effect in core(other).join(me.p2p).unwrap() {
            if let Effect::Send { data, .. } = effect {
                let _ = forger.receive(&data, now);
            }
        }
    }
    forger.declare_down(&dead.peer_id).unwrap();
    let sent = forger.leave().into_iter().filter_map(|e| match e {
        Effect::Send { to: t, data } if t.p2p == to.p2p => Some(data),
        _ => None,
    });
    sent.collect()
}

#[test]
fn forged_status_and_forged_deaths_change_nothing_and_a_flood_leaves_honest_writes_through() {
    if !docker_available() {
        return;
    }
    let _serial = serial();
    let mut cluster = Cluster::new("forge");
    let key = cluster.key("cluster.key");
    let key = key.to_str().unwrap().to_string();
    let ips = ["127.0.0.137", "127.0.0.138", "127.0.0.139"];
    for (i, ip) in ips.iter().enumerate() {
        let seed = p2p(ips[0]);
        let mut args = vec!["--dns-port", "0", "--cluster-key", &key];
        if i > 0 {
            args.extend(["--join", &seed]);
        }
        cluster.start(&format!("fg-{i}"), ip, &args);
    }
    let servers: Vec<String> = (0..3).map(|i| cluster.server(i)).collect();
    for s in &servers {
        wait_for("three Ready", Duration::from_secs(30), || {
            (ready_nodes(s).len() == 3).then_some(())
        });
    }
    let a = &servers[0];
    let token = weeble_ok(a, &["node", "join-token"]);
    let attacker = Attacker::new(token.trim(), &p2p("127.0.0.140"));
    let (to_a, b, c) = (
        identity(&cluster, a, "fg-0"),
        identity(&cluster, a, "fg-1"),
        identity(&cluster, a, "fg-2"),
    );

    // A report for b saying it cannot persist (so it would take no pods, and lose those it
    // runs), with a pod of a deployment nobody applied: signed by the attacker, and unsigned.
    // Both arrive (the transport says so) and neither is taken.
    let forged = |signer: Option<&NodeKey>| {
        let pod = PodStatus {
            name: "forged-0".into(),
            namespace: "default".into(),
            deployment: "forged".into(),
            node: "fg-1".into(),
            labels: Arc::new(Labels::new()),
            container_ids: vec!["0".repeat(64)],
            phase: weeble_core::status::Phase::Running,
            ready: true,
            restarts: 0,
            reason: None,
            message: None,
            host_ip: "127.0.0.140".parse().unwrap(),
            ports: vec![],
            started_at_ms: 1,
            template_hash: "h".into(),
        };
        let report = NodeStatus {
            node: "fg-1".into(),
            epoch: u64::MAX / 2,
            version: 1,
            pods: vec![pod],
            not_ready: Some("forged by an attacker".into()),
            leaving: true,
            images: Vec::new(),
            signature: Default::default(),
        };
        let report = match signer {
            Some(key) => report.signed(key),
            None => report,
        };
        StatusMessage::Reports(vec![Arc::new(report)])
    };
    for message in [forged(Some(&attacker.key)), forged(None)] {
        let sent = attacker
            .runtime
            .block_on(attacker.network.status(to_a.clone(), message));
        assert!(sent.is_ok(), "delivered: {sent:?}");
    }

    // b declaring c dead, and leaving, in b's name.
    let datagrams = death_and_leave_in_the_name_of(&b, &to_a, &c);
    assert!(!datagrams.is_empty(), "the forged datagrams were made");
    for data in datagrams {
        attacker
            .runtime
            .block_on(attacker.network.deliver_membership(to_a.clone(), data));
    }
    holds(
        "b and c stay members, no forged pod",
        Duration::from_secs(5),
        || {
            let pods = pods(a);
            ready_nodes(a).len() == 3 && !pods.iter().any(|p| p["metadata"]["name"] == "forged-0")
        },
    );
    let refused = |what: &str| logged(&cluster, "fg-0", what);
    assert!(
        refused("not signed by their node's key"),
        "the forged reports were refused"
    );
    assert!(
        refused("in another's name"),
        "the forged datagrams were refused"
    );

    // A flood of sync requests from the attacker, 16 at a time, while b writes: a keeps
    // answering, b's write reaches it, and the flood is cut to the rate limit.
    let flood = {
        let network = attacker.network.clone();
        let to = to_a.clone();
        attacker.runtime.spawn(async move {
            let mut refused = 0u64;
            let mut asked = 0u64;
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(8) {
                let batch = (0..16).map(|_| network.sync(to.clone(), automerge_hello()));
                for answer in futures::future::join_all(batch).await {
                    asked += 1;
                    refused +=
                        u64::from(answer.is_err_and(|e| e.to_string().contains("rate limit")));
                }
            }
            (asked, refused)
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let wrote = Instant::now();
    assert!(
        apply_demo(&cluster, &servers[1], "honest", 0)
            .status
            .success()
    );
    wait_for(
        "b's write at a, during the flood",
        Duration::from_secs(15),
        || {
            let started = Instant::now();
            let seen = deployments(a).contains(&"honest".to_string());
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "a keeps answering"
            );
            seen.then_some(())
        },
    );
    eprintln!("the honest write reached a after {:?}", wrote.elapsed());
    let (asked, refused_syncs) = attacker.runtime.block_on(flood).unwrap();
    eprintln!("the attacker asked {asked} syncs, {refused_syncs} refused over the rate limit");
    assert!(
        refused_syncs > 0 && refused_syncs < asked,
        "{refused_syncs} of {asked}"
    );
    assert!(
        refused("faster than --p2p-rate-limit"),
        "a logged the flood"
    );
    assert_eq!(deployments(a), ["honest"], "nothing else changed");
    for node in ["fg-0", "fg-1", "fg-2"] {
        assert!(
            cluster.containers_of(Some(node), false).is_empty(),
            "{node} started nothing"
        );
    }
}

/// The first message of an automerge sync with a peer: the heads of an empty document.
fn automerge_hello() -> Vec<u8> {
    let mut doc = weeble_crdt::DesiredState::new(weeble_crdt::ActorId::from([9; 16]));
    let mut peer = weeble_crdt::PeerSync::default();
    doc.sync_message(&mut peer).expect("a first message")
}
