//! Real `weeble node` processes on loopback as a scenario's cluster (`--backend process`): node
//! `i` on `PREFIX.(10 + i)` (p2p port 7946, API port 7070, services on the same address), its
//! data in a directory of its own, its containers on this machine's Docker engine. A kill is
//! SIGKILL and the node's containers removed; a pause is SIGSTOP. The nodes run in a process
//! group of their own, so a Ctrl-C at the terminal reaches only the runner, which removes
//! everything.
//!
//! It cannot split the network: on loopback, libp2p dials from 127.0.0.1 whatever a node's
//! address, so packets cannot be told apart by address (`--backend docker` can).

use super::real::{Host, node_args, remove_workloads};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use weeble_crdt::Labels;
use weeble_scenario::spec::{Action, Cluster};

/// Why processes on loopback cannot carry out `action`, if they cannot.
pub fn cannot(action: &Action) -> Option<String> {
    matches!(
        action,
        Action::Partition(_)
            | Action::Cut { .. }
            | Action::Link { .. }
            | Action::Heal
            | Action::Disconnect(_)
            | Action::Connect(_)
            | Action::RebootOffline(_)
    )
    .then(|| {
        "processes on loopback cannot be cut apart (libp2p dials from 127.0.0.1 whatever a \
         node's address); use --backend sim"
            .into()
    })
}

pub struct Processes {
    binary: PathBuf,
    dir: PathBuf,
    /// The first three octets of the nodes' addresses.
    prefix: String,
    /// What every node's name starts with: unique to this run.
    tag: String,
    /// Each node's process and command line, once started.
    nodes: Vec<(Option<Child>, Vec<String>)>,
}

impl Processes {
    /// Room for the nodes' data, which `binary` runs; the nodes come at `boot`.
    pub fn new(binary: PathBuf, prefix: &str) -> Result<Self, String> {
        let tag = format!("sc{}", std::process::id());
        let dir = std::env::temp_dir().join(format!("weeble-scenario-{tag}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Processes {
            binary,
            dir,
            prefix: prefix.to_string(),
            tag,
            nodes: Vec::new(),
        })
    }

    /// Node `i`'s command line.
    fn args(&self, i: usize, cluster: &Cluster, labels: &Labels) -> Vec<String> {
        let ip = self.ip(i);
        node_args(
            &self.node_name(i),
            &self.dir.join(i.to_string()).to_string_lossy(),
            &format!("{ip}:7946"),
            &format!("{ip}:7070"),
            (i > 0).then(|| format!("{}:7946", self.ip(0))),
            cluster,
            labels,
        )
    }

    fn spawn(&self, i: usize, args: &[String]) -> Result<Child, String> {
        let log_path = self.dir.join(format!("{i}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        Command::new(&self.binary)
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start node {i}: {e}"))
    }

    fn signal(&self, i: usize, signal: &str) -> Result<(), String> {
        let pid = self.nodes[i]
            .0
            .as_ref()
            .ok_or(format!("node {i} is not running"))?
            .id();
        let done = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status();
        done.is_ok_and(|s| s.success())
            .then_some(())
            .ok_or(format!("kill {signal} {pid} failed"))
    }
}

impl Host for Processes {
    fn name(&self) -> &'static str {
        "process"
    }

    fn cannot(&self, action: &Action) -> Option<String> {
        cannot(action)
    }

    fn boot(&mut self, i: usize, cluster: &Cluster, labels: &Labels) -> Result<(), String> {
        if i >= self.nodes.len() {
            self.nodes.resize_with(i + 1, || (None, Vec::new()));
        }
        if self.nodes[i].1.is_empty() {
            self.nodes[i].1 = self.args(i, cluster, labels);
        }
        let child = self.spawn(i, &self.nodes[i].1)?;
        self.nodes[i].0 = Some(child);
        Ok(())
    }

    fn kill(&mut self, i: usize) -> Result<(), String> {
        if let Some(mut child) = self.nodes[i].0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        remove_workloads(&self.node_name(i))
    }

    fn freeze(&mut self, i: usize, frozen: bool) -> Result<(), String> {
        self.signal(i, if frozen { "-STOP" } else { "-CONT" })
    }

    fn network(&mut self, action: &Action, _: &Cluster) -> Result<(), String> {
        Err(self
            .cannot(action)
            .unwrap_or_else(|| format!("{} is not a network action", action.name())))
    }

    fn tag(&self) -> &str {
        &self.tag
    }

    fn ip(&self, i: usize) -> String {
        format!("{}.{}", self.prefix, 10 + i)
    }

    fn clean_up(&mut self) {
        for i in 0..self.nodes.len() {
            let _ = self.signal(i, "-CONT");
            let _ = self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
