//! `weeble sim`: the node's code (`NodeCore`) at N nodes in one deterministic simulation
//! (`weeble-sim`): a cluster forms, deployments are applied at one random peer and run, nodes
//! crash; then a summary, or one JSON object.

use clap::Args;
use serde_json::json;
use std::io::Write;
use std::time::{Duration, Instant};
use weeble_core::time::parse_duration;
use weeble_sim::net::Links;

#[derive(Args)]
pub struct SimArgs {
    /// Nodes in the cluster.
    #[arg(long)]
    nodes: usize,
    /// Replicas in all, spread evenly over the deployments.
    #[arg(long)]
    replicas: u32,
    /// Deployments.
    #[arg(long, default_value_t = 10)]
    deployments: u32,
    /// Nodes crashed (at random) once every replica runs and a 10 s idle window is over.
    #[arg(long, default_value_t = 0)]
    kill: usize,
    /// Seeds every random choice: the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Virtual time in all.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// One-way latency of every link (up to half as much again of jitter).
    #[arg(long, default_value = "0.2ms", value_parser = parse_duration)]
    latency: Duration,
    /// The chance that one transmission is lost (TCP sends it again).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// How long a container takes to start.
    #[arg(long, default_value = "300ms", value_parser = parse_duration)]
    start_delay: Duration,
    /// The chance that a container action fails.
    #[arg(long, default_value_t = 0.0)]
    failure_rate: f64,
    /// Threads the nodes run on (default: the machine's cores); the run is the same for any
    /// number.
    #[arg(long)]
    threads: Option<usize>,
    /// After the write, change every deployment's image and time the rolling update (25 % /
    /// 25 %) until every replica runs the new one; before the crash.
    #[arg(long)]
    update: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: SimArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.nodes >= 1, "--nodes: at least 1");
    anyhow::ensure!(args.kill < args.nodes, "--kill: fewer than --nodes");
    for (flag, p) in [("--loss", args.loss), ("--failure-rate", args.failure_rate)] {
        anyhow::ensure!(
            (0.0..1.0).contains(&p),
            "{flag}: a chance from 0 up to 1, got {p}"
        );
    }
    let options = weeble_sim::Options {
        nodes: args.nodes,
        replicas: args.replicas,
        deployments: args.deployments,
        kill: args.kill,
        seed: args.seed,
        duration_s: args.duration.as_secs().max(1),
        links: Links {
            latency_us: args.latency.as_micros() as u64,
            jitter_us: args.latency.as_micros() as u64 / 2,
            loss: args.loss,
        },
        start_us: args.start_delay.as_micros() as u64,
        failure_rate: args.failure_rate,
        threads: args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        update: args.update,
    };
    let started = Instant::now();
    let total = options.duration_s;
    let report = weeble_sim::run(&options, |now_us| {
        if !args.json {
            let done = now_us / 1_000_000;
            let bar = (done * 30 / total.max(1)) as usize;
            eprint!(
                "\r[{:<30}] {done}/{total} virtual s, {:.1} s wall, {:.0} MB",
                "#".repeat(bar.min(30)),
                started.elapsed().as_secs_f64(),
                rss_mb("VmRSS")
            );
            let _ = std::io::stderr().flush();
        }
    });
    let wall_s = started.elapsed().as_secs_f64();
    let peak_rss_mb = rss_mb("VmHWM");
    if args.json {
        let mut out = json!({
            "nodes": report.nodes,
            "replicas_desired": report.replicas_desired,
            "replicas_running": report.replicas_running,
            "duplicates": report.duplicates,
            "detect_p50_s": report.detect_p50_s,
            "detect_p95_s": report.detect_p95_s,
            "restore_p50_s": report.restore_p50_s,
            "restore_p95_s": report.restore_p95_s,
            "bytes_per_node_s": report.bytes_per_node_s,
            "msgs_per_node_s": report.msgs_per_node_s,
            "virtual_s": report.virtual_s,
            "wall_s": wall_s,
            "peak_rss_mb": peak_rss_mb,
            "trace_hash": format!("{:016x}", report.trace_hash),
        });
        if let Some(update_s) = report.update_s {
            out["update_s"] = json!(update_s);
        }
        println!("{out}");
    } else {
        eprintln!();
        println!(
            "{} nodes, {} of {} replicas running, {} duplicates",
            report.nodes, report.replicas_running, report.replicas_desired, report.duplicates
        );
        println!(
            "crash of {}: detected p50 {:.2} s, p95 {:.2} s; replicas back p50 {:.2} s, p95 {:.2} s (virtual)",
            args.kill,
            report.detect_p50_s,
            report.detect_p95_s,
            report.restore_p50_s,
            report.restore_p95_s
        );
        println!(
            "a write at one node: acknowledged in {:.3} s; held by half the nodes in {:.3} s, by 99 % in {:.3} s (virtual)",
            report.write_ack_s, report.write_spread_p50_s, report.write_spread_p99_s
        );
        if let Some(update_s) = report.update_s {
            println!(
                "a rolling update of every replica's image: {update_s:.1} s until every replica ran the new one (virtual)"
            );
        }
        let [membership, status, sync] = report.idle_bytes;
        println!(
            "every node held the same status and document {:.0} s after every replica ran (virtual)",
            report.agreed_s
        );
        println!(
            "idle: {:.0} bytes ({membership:.0} membership, {status:.0} status, {sync:.0} sync) and {:.1} messages per node per second",
            report.bytes_per_node_s, report.msgs_per_node_s
        );
        println!(
            "{:.0} virtual s in {wall_s:.1} wall s, peak RSS {peak_rss_mb:.0} MB, trace {:016x}",
            report.virtual_s, report.trace_hash
        );
    }
    anyhow::ensure!(
        report.unfinished.is_empty(),
        "not finished within --duration: {}",
        report.unfinished.join(", ")
    );
    Ok(())
}

/// One of the process's resident memory figures in MB (Linux: `VmRSS` now, `VmHWM` its
/// peak); 0 where it cannot be read.
fn rss_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    kb.unwrap_or(0.0) / 1024.0
}
