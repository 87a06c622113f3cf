//! Each node in a container of its own as a scenario's cluster (`--backend docker`), as the
//! container test bed runs them: the demo image's `weeble` on a private Docker network the run
//! makes (node `i` at `.10 + i` of its /24), with the host's Docker socket for its workloads,
//! which publish their ports on the network's gateway. A kill is `docker kill` and the node's
//! workloads removed; a restart is `docker start` (the node's disk is its container's); a pause
//! is `docker pause`. Partitions, one-way cuts and lossy links are iptables rules on the host's
//! bridge traffic (`DOCKER-USER`, tagged with the network's name; root needed); a disconnect is
//! `docker network disconnect`, and an offline reboot a `docker restart` while disconnected.
//!
//! The runner reaches the nodes over the same network, so a write cannot be sent to a node off
//! it: such a step is named before anything starts ([`writes_off_the_network`]). A slow link
//! cannot be made (this kernel has no netem).

use super::real::{Host, docker, node_args, remove_workloads};
use std::process::Command;
use weeble_crdt::Labels;
use weeble_scenario::spec::{Action, Cluster, Scenario};

pub struct Containers {
    network: String,
    /// The first three octets of the network's /24.
    prefix: String,
    tag: String,
    /// Nodes started at least once (their containers exist).
    made: Vec<bool>,
    iptables: bool,
}

/// Whether iptables can change the host's `DOCKER-USER` chain here (it needs root).
fn iptables(args: &[&str]) -> bool {
    Command::new("iptables")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The steps that send a write to a node the timeline has taken off the network by then.
pub fn writes_off_the_network(scenario: &Scenario) -> Vec<String> {
    let mut off = std::collections::BTreeSet::new();
    let mut found = Vec::new();
    for step in &scenario.timeline {
        match &step.action {
            Action::Disconnect(i) | Action::RebootOffline(i) => {
                off.insert(*i);
            }
            Action::Connect(i) => {
                off.remove(i);
            }
            Action::Heal => off.clear(),
            a if a.is_write() && off.contains(&step.on) => found.push(format!(
                "{}.on: node {} is off the network then, and the runner reaches nodes over it",
                step.path, step.on
            )),
            _ => {}
        }
    }
    found
}

impl Containers {
    /// Makes the run's network; the nodes (the demo image's `weeble`) come at `boot`.
    pub fn new() -> Result<Self, String> {
        let pid = std::process::id();
        let prefix = format!("172.31.{}", 20 + pid % 200);
        let network = format!("weeble-scenario-{pid}");
        docker(&[
            "network",
            "create",
            "--subnet",
            &format!("{prefix}.0/24"),
            &network,
        ])?;
        Ok(Containers {
            network,
            prefix,
            tag: format!("sc{pid}"),
            made: Vec::new(),
            iptables: iptables(&["-S", "DOCKER-USER"]),
        })
    }

    /// Drops the packets `matching`, with the run's tag.
    fn drop_rule(&self, matching: &[&str]) -> Result<(), String> {
        let mut rule = vec!["-I", "DOCKER-USER"];
        rule.extend_from_slice(matching);
        rule.extend(["-m", "comment", "--comment", &self.network, "-j", "DROP"]);
        iptables(&rule)
            .then_some(())
            .ok_or(format!("iptables {}", rule.join(" ")))
    }

    fn cut(&self, from: usize, to: usize) -> Result<(), String> {
        self.drop_rule(&["-s", &self.ip(from), "-d", &self.ip(to)])
    }

    /// Removes every rule of the run, by its number in the chain, the last first.
    fn heal_rules(&self) {
        let listed = Command::new("iptables")
            .args(["-L", "DOCKER-USER", "-n", "--line-numbers"])
            .output();
        let Ok(listed) = listed else { return };
        let tag = format!("/* {} */", self.network);
        let text = String::from_utf8_lossy(&listed.stdout);
        let mut numbers: Vec<u32> = text
            .lines()
            .filter(|l| l.contains(&tag))
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect();
        numbers.sort_unstable_by(|a, b| b.cmp(a));
        for n in numbers {
            iptables(&["-D", "DOCKER-USER", &n.to_string()]);
        }
    }

    fn attached(&self, i: usize) -> bool {
        let format = format!(
            "{{{{with index .NetworkSettings.Networks \"{}\"}}}}yes{{{{end}}}}",
            self.network
        );
        docker(&["inspect", "--format", &format, &self.node_name(i)])
            .is_ok_and(|o| o.trim() == "yes")
    }

    fn connect(&self, i: usize) -> Result<(), String> {
        if self.attached(i) {
            return Ok(());
        }
        docker(&[
            "network",
            "connect",
            "--ip",
            &self.ip(i),
            &self.network,
            &self.node_name(i),
        ])
        .map(drop)
    }

    fn disconnect(&self, i: usize) -> Result<(), String> {
        if !self.attached(i) {
            return Ok(());
        }
        docker(&["network", "disconnect", &self.network, &self.node_name(i)]).map(drop)
    }
}

impl Host for Containers {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn cannot(&self, action: &Action) -> Option<String> {
        match action {
            Action::Link { delay_ms, .. } if *delay_ms > 0 => {
                Some("a slow link needs netem, which this kernel lacks; give only a loss".into())
            }
            Action::Partition(_) | Action::Cut { .. } | Action::Link { .. } | Action::Heal
                if !self.iptables =>
            {
                Some("iptables cannot change DOCKER-USER here (it needs root)".into())
            }
            _ => None,
        }
    }

    fn boot(&mut self, i: usize, cluster: &Cluster, labels: &Labels) -> Result<(), String> {
        if self.made.get(i).copied().unwrap_or(false) {
            return docker(&["start", &self.node_name(i)]).map(drop);
        }
        let (name, ip) = (self.node_name(i), self.ip(i));
        let node = node_args(
            &name,
            "/data",
            &format!("{ip}:7946"),
            "0.0.0.0:7070",
            (i > 0).then(|| format!("{}:7946", self.ip(0))),
            cluster,
            labels,
        );
        let gateway = format!("{}.1", self.prefix);
        // No value here holds a space: the command line splits on them.
        let run = format!(
            "run -d --name {name} --hostname {name} --label weeble.scenario=node \
             --network {} --ip {ip} -v /var/run/docker.sock:/var/run/docker.sock \
             --entrypoint /weeble weeble-demo:v1",
            self.network
        );
        let mut args: Vec<String> = run.split_whitespace().map(String::from).collect();
        args.extend(node);
        // The network is the run's own and the nodes live for the run: no token is asked.
        args.extend(["--publish-ip".into(), gateway, "--insecure-api".into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&args)?;
        if i >= self.made.len() {
            self.made.resize(i + 1, false);
        }
        self.made[i] = true;
        Ok(())
    }

    fn kill(&mut self, i: usize) -> Result<(), String> {
        docker(&["kill", &self.node_name(i)])?;
        remove_workloads(&self.node_name(i))
    }

    fn freeze(&mut self, i: usize, frozen: bool) -> Result<(), String> {
        let verb = if frozen { "pause" } else { "unpause" };
        docker(&[verb, &self.node_name(i)]).map(drop)
    }

    fn network(&mut self, action: &Action, cluster: &Cluster) -> Result<(), String> {
        match action {
            Action::Partition(groups) => {
                let named: Vec<usize> = groups.iter().flatten().copied().collect();
                let mut groups = groups.clone();
                groups[0]
                    .extend((0..self.made.len().max(cluster.nodes)).filter(|i| !named.contains(i)));
                for (g, group) in groups.iter().enumerate() {
                    for other in &groups[g + 1..] {
                        for &a in group {
                            for &b in other {
                                self.cut(a, b)?;
                                self.cut(b, a)?;
                            }
                        }
                    }
                }
                Ok(())
            }
            Action::Cut { from, to } => self.cut(*from, *to),
            Action::Link {
                between: [a, b],
                loss,
                ..
            } => {
                let p = loss.to_string();
                for (src, dst) in [(self.ip(*a), self.ip(*b)), (self.ip(*b), self.ip(*a))] {
                    let random = ["-m", "statistic", "--mode", "random", "--probability", &p];
                    let mut matching = vec!["-s", &src, "-d", &dst];
                    matching.extend(random);
                    self.drop_rule(&matching)?;
                }
                Ok(())
            }
            Action::Heal => {
                self.heal_rules();
                (0..self.made.len()).try_for_each(|i| self.connect(i))
            }
            Action::Disconnect(i) => self.disconnect(*i),
            Action::Connect(i) => self.connect(*i),
            Action::RebootOffline(i) => {
                self.disconnect(*i)?;
                docker(&["restart", "-t", "1", &self.node_name(*i)]).map(drop)
            }
            other => Err(format!("{} is not a network action", other.name())),
        }
    }

    fn tag(&self) -> &str {
        &self.tag
    }

    fn ip(&self, i: usize) -> String {
        format!("{}.{}", self.prefix, 10 + i)
    }

    fn clean_up(&mut self) {
        self.heal_rules();
        for i in 0..self.made.len() {
            let _ = docker(&["rm", "-f", &self.node_name(i)]);
            let _ = remove_workloads(&self.node_name(i));
        }
        let _ = docker(&["network", "rm", &self.network]);
    }
}
