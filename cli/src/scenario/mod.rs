//! `weeble scenario`: resilience experiments from files (`weeble-scenario`). `list` describes
//! the library that comes with Weeble; `run FILE|NAME` checks the file, runs it on a backend
//! with a progress bar, and writes `report.md`, `report.json` and `timeline.svg`; it exits
//! non-zero when an expectation is not met. The real backends are here, beside the client
//! they talk to the nodes with: [`real`] (what every real cluster answers), [`process`] and
//! [`docker`].

mod docker;
mod process;
mod real;

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use weeble_scenario::backend::Backend;
use weeble_scenario::run::{RunOptions, run, unsupported};
use weeble_scenario::spec::Scenario;
use weeble_scenario::{library, svg};

#[derive(Subcommand)]
pub enum Command {
    /// Describe the scenarios that come with Weeble.
    List,
    /// Run a scenario: a file, or a library scenario by name.
    Run {
        /// A scenario file, or the name of one in `weeble scenario list`.
        scenario: String,
        #[arg(long, value_enum, default_value_t = BackendName::Sim)]
        backend: BackendName,
        /// Seeds every random choice: on `sim` the same seed gives the same report.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where the report and timeline go (default: scenario-runs/NAME-BACKEND).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Start with this many nodes instead of the file's (its steps still name the first
        /// ones).
        #[arg(long)]
        nodes: Option<usize>,
        /// The loopback /24 the process backend's nodes take (node i: .10+i).
        #[arg(long, default_value = "127.0.3")]
        subnet: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum BackendName {
    /// The simulator: the node's own code, in virtual time.
    Sim,
    /// Real `weeble node` processes on loopback, with this machine's Docker.
    Process,
    /// Each node in a container of its own on a private Docker network.
    Docker,
}

pub fn run_command(command: Command) -> anyhow::Result<()> {
    match command {
        Command::List => {
            for (name, text) in library::SCENARIOS {
                let scenario =
                    Scenario::parse(text).with_context(|| format!("library scenario {name}"))?;
                println!("{name:<24} {}", scenario.description);
            }
            Ok(())
        }
        Command::Run {
            scenario,
            backend,
            seed,
            out,
            nodes,
            subnet,
        } => run_one(&scenario, backend, seed, out, nodes, &subnet),
    }
}

fn run_one(
    source: &str,
    backend: BackendName,
    seed: u64,
    out: Option<PathBuf>,
    nodes: Option<usize>,
    subnet: &str,
) -> anyhow::Result<()> {
    let (name, text) = match library::find(source) {
        Some(text) => (source.to_string(), text.to_string()),
        None => {
            let path = PathBuf::from(source);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!("{source}: neither a file nor a scenario of `weeble scenario list`")
            })?;
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
            (stem.unwrap_or_else(|| "scenario".into()), text)
        }
    };
    let mut scenario = Scenario::parse(&text).map_err(|e| anyhow::anyhow!("{source}:\n{e}"))?;
    if let Some(n) = nodes {
        scenario = scenario.with_nodes(n).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let added = scenario.added_labels();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let before = match backend {
        BackendName::Sim => Vec::new(),
        BackendName::Process => unsupported(&scenario, process::cannot),
        BackendName::Docker => docker::writes_off_the_network(&scenario),
    };
    if !before.is_empty() {
        bail!(
            "the {} backend cannot run {name}:\n{}",
            backend
                .to_possible_value()
                .map_or_else(String::new, |v| v.get_name().to_string()),
            before.join("\n")
        );
    }
    let (mut backend, sample_ms): (Box<dyn Backend>, u64) = match backend {
        BackendName::Sim => (
            Box::new(weeble_scenario::sim::Sim::new(seed, threads, added)),
            100,
        ),
        BackendName::Process => {
            let binary = prepared_binary()?;
            let host = process::Processes::new(binary, subnet).map_err(anyhow::Error::msg)?;
            (Box::new(real::Real::new(host, added)), 250)
        }
        BackendName::Docker => {
            prepared_binary()?;
            let host = docker::Containers::new().map_err(anyhow::Error::msg)?;
            (Box::new(real::Real::new(host, added)), 250)
        }
    };
    let out =
        out.unwrap_or_else(|| PathBuf::from(format!("scenario-runs/{name}-{}", backend.name())));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot make {}", out.display()))?;
    let options = RunOptions {
        name: name.clone(),
        seed,
        sample_ms,
        stop: interrupted(),
    };
    let started = Instant::now();
    let mut shown = None;
    let terminal = std::io::stderr().is_terminal();
    let mut progress = |done: u64, total: u64| {
        // On a terminal, at most every 200 ms of wall time, and at the end.
        let tick = started.elapsed().as_millis() / 200;
        if !terminal || (shown == Some(tick) && done < total) {
            return;
        }
        shown = Some(tick);
        let bar = (done * 30 / total.max(1)) as usize;
        eprint!(
            "\r[{:<30}] {:.1}/{:.1} s, {:.1} s wall",
            "#".repeat(bar.min(30)),
            done as f64 / 1000.0,
            total as f64 / 1000.0,
            started.elapsed().as_secs_f64()
        );
        let _ = std::io::stderr().flush();
    };
    let report = run(&scenario, backend.as_mut(), &options, &mut progress)?;
    if terminal {
        eprintln!();
    }
    let files = [
        ("report.md", report.markdown()),
        ("report.json", report.json()),
        ("timeline.svg", svg::timeline(&report)),
    ];
    for (file, text) in files {
        let path = out.join(file);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    for e in &report.expectations {
        let mark = if e.met { "met    " } else { "NOT MET" };
        println!("{mark} {} ({})", e.expect, e.detail);
    }
    println!("report: {}", out.join("report.md").display());
    if !report.passed {
        bail!(
            "{name}: {} of {} expectations not met",
            report.expectations.iter().filter(|e| !e.met).count(),
            report.expectations.len()
        );
    }
    Ok(())
}

/// This binary, with the Docker engine answering and the demo image built from it
/// ([`real::prepare`]): what a real backend starts from.
fn prepared_binary() -> anyhow::Result<PathBuf> {
    let binary = std::env::current_exe().context("locating this binary")?;
    real::prepare(&binary).map_err(anyhow::Error::msg)?;
    Ok(binary)
}

/// A flag a Ctrl-C (SIGINT) or SIGTERM sets, so that the run ends and its backend removes what
/// it started.
fn interrupted() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut term) = signal(SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        eprintln!("\ninterrupted: stopping and removing what the run started");
        set.store(true, Ordering::Relaxed);
    });
    flag
}
