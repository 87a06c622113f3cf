//! `weeble rollout`: follow, list, undo, pause, resume and restart a deployment's rollouts,
//! as `kubectl rollout` does (its messages, its exit codes).

use crate::client::Client;
use anyhow::{anyhow, bail};
use clap::Subcommand;
use serde::Deserialize;
use std::io::Write;
use std::time::{Duration, Instant};
use weeble_core::objects::{self, PROGRESS_DEADLINE_EXCEEDED, ROLLED_BACK};
use weeble_core::time::parse_duration;
use weeble_crdt::ROLLBACK_ON_FAILURE;

#[derive(Subcommand)]
pub enum Command {
    /// Follow the rollout until it completes (exit 0), fails or runs out of --timeout (exit 1).
    Status {
        /// `deployment/NAME`, or `deployment NAME`.
        target: String,
        name: Option<String>,
        /// How long to wait (`0s`: forever), as `30s` or `5m`.
        #[arg(long, default_value = "0s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// List the revisions the deployment keeps.
    History {
        target: String,
        name: Option<String>,
        /// Show this revision's images only.
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Go back to the previous revision, or to --to-revision.
    Undo {
        target: String,
        name: Option<String>,
        #[arg(long, default_value_t = 0)]
        to_revision: u64,
    },
    /// Start no further rollout step until resumed.
    Pause {
        target: String,
        name: Option<String>,
    },
    /// Let a paused rollout go on.
    Resume {
        target: String,
        name: Option<String>,
    },
    /// Replace every replica, a few at a time, with the same template.
    Restart {
        target: String,
        name: Option<String>,
    },
}

/// The deployment a command names: `deployment/web`, `deploy/web`, `deployment web`.
fn deployment(target: &str, name: Option<&str>) -> anyhow::Result<String> {
    let (kind, name) = match (target.split_once('/'), name) {
        (Some((kind, name)), None) => (kind, name),
        (None, Some(name)) => (target, name),
        _ => bail!("name one deployment: `deployment/NAME` or `deployment NAME`"),
    };
    match kind {
        "deployment" | "deployments" | "deploy" | "deployment.apps" if !name.is_empty() => {
            Ok(name.to_string())
        }
        _ => bail!("only deployments have rollouts, not {kind:?}"),
    }
}

pub fn run(client: &Client, ns: &str, command: Command) -> anyhow::Result<()> {
    let (target, name) = match &command {
        Command::Status { target, name, .. }
        | Command::History { target, name, .. }
        | Command::Undo { target, name, .. }
        | Command::Pause { target, name }
        | Command::Resume { target, name }
        | Command::Restart { target, name } => (target, name),
    };
    let name = &deployment(target, name.as_deref())?;
    match command {
        Command::Status { timeout, .. } => status(client, ns, name, timeout),
        Command::History { revision, .. } => history(client, ns, name, revision),
        Command::Undo { to_revision: 0, .. } => act(client, ns, name, "undo", ""),
        Command::Undo { to_revision, .. } => {
            let body = serde_json::json!({ "toRevision": to_revision }).to_string();
            act(client, ns, name, "undo", &body)
        }
        Command::Pause { .. } => act(client, ns, name, "pause", ""),
        Command::Resume { .. } => act(client, ns, name, "resume", ""),
        Command::Restart { .. } => act(client, ns, name, "restart", ""),
    }
}

fn rollout_path(ns: &str, name: &str, what: &str) -> String {
    format!("/apis/weeble.io/v1/namespaces/{ns}/deployments/{name}/rollout/{what}")
}

#[derive(Deserialize)]
struct Acted {
    outcome: String,
}

fn act(client: &Client, ns: &str, name: &str, action: &str, body: &str) -> anyhow::Result<()> {
    let acted: Acted = client.post_text(&rollout_path(ns, name, action), body)?;
    let outcome = match acted.outcome.as_str() {
        "unchanged" => format!("{action} skipped: nothing to change"),
        other => other.to_string(),
    };
    println!("deployment.apps/{name} {outcome}");
    Ok(())
}

fn history(client: &Client, ns: &str, name: &str, only: Option<u64>) -> anyhow::Result<()> {
    let revisions: Vec<objects::Revision> = client.get(&rollout_path(ns, name, "history"))?;
    if let Some(n) = only {
        let r = revisions
            .iter()
            .find(|r| r.revision == n)
            .ok_or_else(|| anyhow!("unable to find revision {n} of deployment {name}"))?;
        println!("deployment.apps/{name} with revision #{n}");
        println!("Images:\t{}", r.images.join(", "));
        println!("Template hash:\t{}", r.template_hash);
        return Ok(());
    }
    println!("deployment.apps/{name}");
    println!("REVISION  CHANGE-CAUSE");
    for r in &revisions {
        let cause = r.change_cause.as_deref().unwrap_or("<none>");
        let current = if r.current { "  (current)" } else { "" };
        println!("{:<8}  {cause}{current}", r.revision);
    }
    Ok(())
}

/// Where a rollout stands, from the deployment as a node reports it: done, failed (with
/// why), or a line saying what it waits for.
enum Stand {
    Done,
    Failed(String),
    Waiting { line: String, done: u32, of: u32 },
}

fn stand(d: &objects::Deployment) -> Stand {
    let (spec, status) = (&d.spec, &d.status);
    let name = &d.metadata.name;
    let progressing = status.conditions.iter().find(|c| c.type_ == "Progressing");
    // Annotated, a failed rollout is reverted by the cluster: wait for that.
    let reverts = d.metadata.annotation(ROLLBACK_ON_FAILURE) == Some("true");
    if let Some(c) = progressing.filter(|c| c.reason == PROGRESS_DEADLINE_EXCEEDED) {
        let failed = format!(
            "deployment {name:?} exceeded its progress deadline: {}",
            c.message
        );
        return match reverts {
            false => Stand::Failed(failed),
            true => Stand::Waiting {
                line: format!("{failed}; the cluster is going back ({ROLLBACK_ON_FAILURE})"),
                done: 0,
                of: d.spec.replicas,
            },
        };
    }
    if let Some(c) = progressing.filter(|c| c.reason == ROLLED_BACK) {
        return Stand::Failed(format!("deployment {name:?} rolled back: {}", c.message));
    }
    let generation = d.metadata.generation.unwrap_or(0);
    let replicas = spec.replicas;
    let waiting = |line: String, done: u32| Stand::Waiting {
        line: format!("Waiting for deployment {name:?} rollout to finish: {line}"),
        done,
        of: replicas,
    };
    if status.observed_generation < generation {
        return waiting("the new spec is not yet seen".into(), 0);
    }
    if spec.paused {
        return waiting(
            "the deployment is paused (`weeble rollout resume`)".into(),
            0,
        );
    }
    let updated = status.updated_replicas.min(replicas);
    if updated < replicas {
        return waiting(
            format!("{updated} out of {replicas} new replicas have been updated..."),
            updated,
        );
    }
    if status.replicas > status.updated_replicas {
        let old = status.replicas - status.updated_replicas;
        return waiting(
            format!("{old} old replicas are pending termination..."),
            updated,
        );
    }
    if status.replicas > replicas {
        let extra = status.replicas - replicas;
        return waiting(
            format!("{extra} surge replicas are pending termination..."),
            updated,
        );
    }
    if status.available_replicas < replicas {
        let available = status.available_replicas;
        return waiting(
            format!("{available} of {replicas} updated replicas are available..."),
            available,
        );
    }
    Stand::Done
}

fn status(client: &Client, ns: &str, name: &str, timeout: Duration) -> anyhow::Result<()> {
    let path = format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}");
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let d: objects::Deployment = client.get(&path)?;
        match stand(&d) {
            Stand::Done => {
                println!("deployment {name:?} successfully rolled out");
                return Ok(());
            }
            Stand::Failed(why) => bail!("{why}"),
            Stand::Waiting { line, done, of } => {
                if line != last {
                    println!("{} {line}", bar(done, of));
                    std::io::stdout().flush()?;
                    last = line;
                }
            }
        }
        if !timeout.is_zero() && start.elapsed() >= timeout {
            bail!("timed out waiting for the rollout of deployment {name:?} ({timeout:?})");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A progress bar of `done` of `of`: `[#####.....]`.
fn bar(done: u32, of: u32) -> String {
    const WIDTH: u32 = 20;
    let filled = (done * WIDTH).checked_div(of).unwrap_or(WIDTH).min(WIDTH);
    format!(
        "[{}{}]",
        "#".repeat(filled as usize),
        ".".repeat((WIDTH - filled) as usize)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_is_named_as_kubectl_names_it() {
        assert_eq!(deployment("deployment/web", None).unwrap(), "web");
        assert_eq!(deployment("deploy", Some("web")).unwrap(), "web");
        assert!(deployment("service/web", None).is_err());
        assert!(deployment("deployment/web", Some("x")).is_err());
        assert_eq!(bar(1, 4), "[#####...............]");
        assert_eq!(bar(0, 0), "[####################]");
    }
}
