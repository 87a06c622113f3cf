//! `weeble demo`: the orchestrator talk's demo with no master. Three local nodes, the demo
//! image built on this machine, a 3-replica deployment applied at one peer, a container
//! killed, a scale to 5 and back; each step shown as it happens; everything stopped at the end.

use crate::client::Client;
use crate::kubectl::{self, Resource};
use anyhow::{Context, bail};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use weeble_core::objects::{self, ConditionStatus};
use weeble_core::status::Phase;

const MANIFEST: &str = include_str!("../../examples/demo.yaml");
const NODES: [(&str, &str); 3] = [
    ("demo-1", "127.0.0.11"),
    ("demo-2", "127.0.0.12"),
    ("demo-3", "127.0.0.13"),
];

/// The demo's nodes and data; stopped and removed on drop, whatever happened.
struct Demo {
    children: Vec<Child>,
    dir: PathBuf,
}

impl Drop for Demo {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for (name, _) in NODES {
            let ids = Command::new("docker")
                .args([
                    "ps",
                    "-aq",
                    "--filter",
                    &format!("label=weeble.node={name}"),
                ])
                .output();
            let ids: Vec<String> = ids
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .arg("rm")
                    .arg("-f")
                    .args(&ids)
                    .output();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        println!("\nstopped the three nodes and removed their containers");
    }
}

fn step(text: &str) {
    println!("\n==> {text}");
}

/// Polls until `check` holds, at most `limit`; returns how long it took.
fn until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while !check() {
        if start.elapsed() > limit {
            bail!("gave up after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(start.elapsed())
}

/// The demo's pods, as `client`'s node sees them (none if it cannot be asked).
fn pods(client: &Client) -> Vec<objects::Pod> {
    client
        .list("/api/v1/namespaces/default/pods")
        .map(|list| list.items)
        .unwrap_or_default()
}

fn running(client: &Client) -> Vec<objects::Pod> {
    pods(client)
        .into_iter()
        .filter(|p| p.status.phase == Phase::Running && p.status.ready())
        .collect()
}

pub fn run() -> anyhow::Result<()> {
    let me = std::env::current_exe().context("locating this binary")?;
    let dir = std::env::temp_dir().join(format!("weeble-demo-{}", std::process::id()));
    let mut demo = Demo {
        children: Vec::new(),
        dir: dir.clone(),
    };

    step("building the demo image weeble-demo:v1 from this binary (no registry needed)");
    crate::agent::build_demo_image()?;

    step("starting three nodes, each joining the first; no node is special");
    for (i, (name, ip)) in NODES.iter().enumerate() {
        let mut args = vec![
            "node".to_string(),
            "--name".into(),
            name.to_string(),
            "--data-dir".into(),
            dir.join(name).display().to_string(),
        ];
        args.extend([
            "--p2p".into(),
            format!("{ip}:7946"),
            "--api".into(),
            format!("{ip}:7070"),
        ]);
        if i > 0 {
            args.extend(["--join".into(), format!("{}:7946", NODES[0].1)]);
        }
        std::fs::create_dir_all(&dir)?;
        let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
        demo.children.push(
            Command::new(&me)
                .args(&args)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?,
        );
        println!("  {name}: p2p {ip}:7946, API http://{ip}:7070");
    }
    let clients: Vec<Client> = NODES
        .iter()
        .map(|(_, ip)| Client::new(&format!("http://{ip}:7070")))
        .collect();
    let took = until("three ready members", Duration::from_secs(30), || {
        clients.iter().all(|c| {
            c.list::<objects::Node>("/api/v1/nodes").is_ok_and(|nodes| {
                nodes
                    .items
                    .iter()
                    .filter(|n| n.status.readiness() == ConditionStatus::True)
                    .count()
                    == 3
            })
        })
    })?;
    println!(
        "  every node sees three live members after {:.1} s",
        took.as_secs_f64()
    );
    kubectl::get(&clients[0], "default", Resource::Nodes, None, None)?;

    step("applying the talk's manifest (3 replicas) at the second node");
    let answer: objects::Applied = clients[1].post_text("/apis/weeble.io/v1/apply", MANIFEST)?;
    for item in answer.items {
        println!("  {} {} {}", item.kind, item.name, item.outcome);
    }
    let took = until("3 pods Running", Duration::from_secs(60), || {
        running(&clients[2]).len() == 3
    })?;
    println!(
        "  3 pods Running after {:.2} s, as seen from the third node:",
        took.as_secs_f64()
    );
    kubectl::get(
        &clients[2],
        "default",
        Resource::Pods,
        None,
        Some(kubectl::Output::Wide),
    )?;

    step("killing one container with docker kill");
    let victim = running(&clients[0])
        .first()
        .cloned()
        .context("a running pod")?;
    let name = victim.metadata.name;
    let id = victim
        .status
        .container_statuses
        .iter()
        .flatten()
        .find_map(|c| c.container_id.as_deref())
        .with_context(|| format!("the running pod {name} reports no container"))?
        .trim_start_matches("docker://")
        .to_string();
    Command::new("docker")
        .args(["kill", &id])
        .output()
        .context("docker kill")?;
    let took = until("the pod to run again", Duration::from_secs(30), || {
        running(&clients[0])
            .iter()
            .any(|p| p.metadata.name == name && p.status.restart_count > 0)
    })?;
    println!(
        "  {name} Running again after {:.2} s (restarted by its own node)",
        took.as_secs_f64()
    );
    kubectl::get(&clients[0], "default", Resource::Pods, None, None)?;

    for (replicas, at) in [(5, 0), (3, 2)] {
        step(&format!("scaling to {replicas} at node {}", at + 1));
        let body = serde_json::json!({"spec": {"replicas": replicas}});
        clients[at].put_json::<objects::Scale>(
            "/apis/apps/v1/namespaces/default/deployments/nginx/scale",
            &body,
        )?;
        let took = until("the new replica count", Duration::from_secs(60), || {
            pods(&clients[(at + 1) % 3]).len() == replicas
                && running(&clients[(at + 1) % 3]).len() == replicas
        })?;
        println!(
            "  {replicas} pods Running after {:.2} s",
            took.as_secs_f64()
        );
        kubectl::get(
            &clients[(at + 1) % 3],
            "default",
            Resource::Pods,
            None,
            None,
        )?;
    }

    step("asking the service at every node (each serves it, round-robin over the pods)");
    for (_, ip) in NODES {
        let url = format!("http://{ip}:80/");
        let mut pages = Vec::new();
        for _ in 0..3 {
            let page = ureq::get(&url)
                .call()
                .and_then(|mut r| r.body_mut().read_to_string())
                .with_context(|| format!("GET {url}"))?;
            pages.push(page.trim().trim_end_matches(':').to_string());
        }
        println!("  GET {url} three times -> {}", pages.join(" | "));
    }

    step("deleting the deployment");
    clients[0].delete("/apis/apps/v1/namespaces/default/deployments/nginx")?;
    let took = until("no pods", Duration::from_secs(30), || {
        running(&clients[1]).is_empty()
    })?;
    println!("  all pods gone after {:.2} s", took.as_secs_f64());
    drop(demo);
    Ok(())
}
