//! The kubectl-style commands: each turns into requests to a node's Kubernetes-shaped API and
//! prints tables for people or JSON/YAML for machines.

use crate::client::{Client, query_encode};
use crate::manifests;
use anyhow::{anyhow, bail};
use clap::ValueEnum;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::path::Path;
use weeble_core::objects::event::Event;
use weeble_core::objects::{
    self, ANNOTATION_API, ANNOTATION_DEPLOYMENT, ConditionStatus, ObjectMeta,
};
use weeble_crdt::{Admission, Kind, ObjectKey};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Resource {
    #[value(alias = "deployment", alias = "deploy")]
    Deployments,
    #[value(alias = "pod", alias = "po")]
    Pods,
    #[value(alias = "service", alias = "svc")]
    Services,
    /// Where each service forwards to (read-only: kept up to date from the pods' status).
    #[value(alias = "ep")]
    Endpoints,
    #[value(alias = "node", alias = "no")]
    Nodes,
    /// The peers the members and the admission list name (`weeble node allow|deny`).
    #[value(alias = "peer")]
    Peers,
    /// The images the nodes hold, by id, and which nodes (from their reports).
    #[value(alias = "image")]
    Images,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Wide,
    Json,
    Yaml,
}

impl Resource {
    /// The API path of the collection, or of one object when `name` is given.
    fn path(self, ns: &str, name: Option<&str>) -> String {
        let base = match self {
            Resource::Deployments => format!("/apis/apps/v1/namespaces/{ns}/deployments"),
            Resource::Pods => format!("/api/v1/namespaces/{ns}/pods"),
            Resource::Services => format!("/api/v1/namespaces/{ns}/services"),
            Resource::Endpoints => format!("/api/v1/namespaces/{ns}/endpoints"),
            Resource::Nodes => "/api/v1/nodes".to_string(),
            Resource::Peers => "/apis/weeble.io/v1/peers".to_string(),
            Resource::Images => "/apis/weeble.io/v1/images".to_string(),
        };
        match name {
            Some(name) => format!("{base}/{name}"),
            None => base,
        }
    }

    /// The kind its objects have (events name the object they are about by it).
    fn kind(self) -> &'static str {
        match self {
            Resource::Deployments => "Deployment",
            Resource::Pods => "Pod",
            Resource::Services => "Service",
            Resource::Endpoints => "Endpoints",
            Resource::Nodes => "Node",
            Resource::Peers => "Peer",
            Resource::Images => "Image",
        }
    }
}

pub fn apply(client: &Client, file: &Path) -> anyhow::Result<()> {
    manifests::read(file)?; // Validate (and warn) here too: a bad file never leaves the machine.
    let text = manifests::read_text(file)?;
    let answer: objects::Applied = client.post_text("/apis/weeble.io/v1/apply", &text)?;
    for item in answer.items {
        println!(
            "{}/{} {}",
            item.kind.kubectl_name(),
            item.name,
            item.outcome
        );
    }
    Ok(())
}

pub fn get(
    client: &Client,
    ns: &str,
    resource: Resource,
    name: Option<&str>,
    output: Option<Output>,
) -> anyhow::Result<()> {
    let path = resource.path(ns, name);
    match output {
        Some(Output::Json) => println!(
            "{}",
            serde_json::to_string_pretty(&as_written(client, &path, name)?)?
        ),
        Some(Output::Yaml) => print!(
            "{}",
            serde_yaml_ng::to_string(&as_written(client, &path, name)?)?
        ),
        wide => {
            let wide = wide == Some(Output::Wide);
            let rows = match resource {
                Resource::Deployments => rows::<objects::Deployment>(client, &path, name, wide)?,
                Resource::Pods => rows::<objects::Pod>(client, &path, name, wide)?,
                Resource::Services => rows::<objects::Service>(client, &path, name, wide)?,
                Resource::Endpoints => rows::<objects::Endpoints>(client, &path, name, wide)?,
                Resource::Nodes => rows::<objects::Node>(client, &path, name, wide)?,
                Resource::Peers => rows::<objects::Peer>(client, &path, name, wide)?,
                Resource::Images => rows::<objects::Image>(client, &path, name, wide)?,
            };
            // The header alone: nothing was found.
            if rows.len() == 1 {
                eprintln!("No resources found in {ns} namespace.");
                return Ok(());
            }
            print_table(&rows);
        }
    }
    Ok(())
}

/// The object at `path` (when `name` is given) or the whole list there, as the node wrote it.
fn as_written(client: &Client, path: &str, name: Option<&str>) -> anyhow::Result<Value> {
    Ok(match name {
        Some(_) => client.get(path)?,
        None => serde_json::to_value(client.list::<Value>(path)?)?,
    })
}

/// The table of the object at `path` (when `name` is given) or of every item of the list
/// there, read as `T`.
fn rows<T: Row>(
    client: &Client,
    path: &str,
    name: Option<&str>,
    wide: bool,
) -> anyhow::Result<Vec<Vec<String>>> {
    let items: Vec<T> = match name {
        Some(_) => vec![client.get(path)?],
        None => client.list(path)?.items,
    };
    Ok(table(&items, wide))
}

/// `items` joined with commas.
fn commas(items: impl IntoIterator<Item = String>) -> String {
    items.into_iter().collect::<Vec<_>>().join(",")
}

/// `items` joined with commas, or `<none>`.
fn joined(items: impl IntoIterator<Item = String>) -> String {
    let text = commas(items);
    if text.is_empty() { NONE.into() } else { text }
}

/// What a table shows for a field that has no value.
const NONE: &str = "<none>";

/// Labels or a selector as `k=v,k=v`.
fn labels<'a>(pairs: impl IntoIterator<Item = (&'a String, &'a String)>) -> String {
    joined(pairs.into_iter().map(|(k, v)| format!("{k}={v}")))
}

/// An object as a row of `get`'s table.
trait Row: DeserializeOwned {
    const COLUMNS: &'static [&'static str];
    /// The columns `-o wide` adds.
    const WIDE: &'static [&'static str] = &[];
    fn cells(&self) -> Vec<String>;
    fn wide_cells(&self) -> Vec<String> {
        vec![]
    }
}

impl Row for objects::Deployment {
    const COLUMNS: &'static [&'static str] = &["NAME", "READY", "UP-TO-DATE", "AVAILABLE"];
    const WIDE: &'static [&'static str] = &["CONTAINERS", "IMAGES", "SELECTOR"];

    fn cells(&self) -> Vec<String> {
        let status = &self.status;
        vec![
            self.metadata.name.clone(),
            format!("{}/{}", status.ready_replicas, self.spec.replicas),
            status.updated_replicas.to_string(),
            status.available_replicas.to_string(),
        ]
    }

    fn wide_cells(&self) -> Vec<String> {
        let containers = &self.spec.template.spec.containers;
        vec![
            commas(containers.iter().map(|c| c.name.clone())),
            commas(containers.iter().map(|c| c.image.clone())),
            labels(&self.spec.selector.match_labels),
        ]
    }
}

impl Row for objects::Pod {
    const COLUMNS: &'static [&'static str] = &["NAME", "READY", "STATUS", "RESTARTS", "NODE"];
    const WIDE: &'static [&'static str] = &["IP", "PORTS"];

    fn cells(&self) -> Vec<String> {
        let status = &self.status;
        let ready = status.ready();
        let shown = match &status.reason {
            Some(reason) if !ready => reason.clone(),
            _ => status.phase.to_string(),
        };
        vec![
            self.metadata.name.clone(),
            if ready { "1/1" } else { "0/1" }.into(),
            shown,
            status.restart_count.to_string(),
            self.spec.node_name.clone().unwrap_or_else(|| NONE.into()),
        ]
    }

    fn wide_cells(&self) -> Vec<String> {
        let status = &self.status;
        let ports = status
            .ports
            .iter()
            .map(|p| format!("{}:{}->{}", p.host_ip, p.host_port, p.container_port));
        vec![
            status
                .host_ip
                .map_or_else(|| NONE.into(), |ip| ip.to_string()),
            joined(ports),
        ]
    }
}

impl Row for objects::Service {
    const COLUMNS: &'static [&'static str] = &["NAME", "TYPE", "CLUSTER-IP", "PORT(S)", "SELECTOR"];

    fn cells(&self) -> Vec<String> {
        let spec = &self.spec;
        vec![
            self.metadata.name.clone(),
            spec.type_.clone(),
            spec.cluster_ip.to_string(),
            commas(
                spec.ports
                    .iter()
                    .map(|p| format!("{}/{}", p.port, p.protocol)),
            ),
            labels(&spec.selector),
        ]
    }
}

impl Row for objects::Endpoints {
    const COLUMNS: &'static [&'static str] = &["NAME", "ENDPOINTS", "NOT READY"];

    fn cells(&self) -> Vec<String> {
        let ready = self.subsets.iter().filter_map(|s| {
            let ip = s.addresses.as_ref()?.first()?.ip;
            Some(format!("{ip}:{}", s.ports.first()?.port))
        });
        let waiting = self
            .subsets
            .iter()
            .flat_map(|s| s.not_ready_addresses.iter().flatten())
            .map(|a| a.target_ref.name.clone());
        vec![self.metadata.name.clone(), joined(ready), joined(waiting)]
    }
}

impl Row for objects::Image {
    const COLUMNS: &'static [&'static str] = &["IMAGE ID", "NAMES", "NODES"];

    fn cells(&self) -> Vec<String> {
        // Docker's short id: the first 12 hex digits.
        let short: String = self.metadata.name.chars().take(12).collect();
        vec![
            short,
            self.status.names.join(","),
            self.status.nodes.join(","),
        ]
    }
}

impl Row for objects::Peer {
    const COLUMNS: &'static [&'static str] = &["PEER", "NODE", "ADDRESS", "LIVENESS", "ADMISSION"];

    fn cells(&self) -> Vec<String> {
        let status = &self.status;
        let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| NONE.into());
        let admission = match (self.spec.admission, status.admitted) {
            (Some(Admission::Allowed), _) => "allowed",
            (Some(Admission::Denied), _) => "denied",
            (None, true) => "open",
            (None, false) => "not allowed",
        };
        vec![
            self.metadata.name.clone(),
            or_none(&status.node),
            or_none(&status.address),
            or_none(&status.liveness),
            admission.into(),
        ]
    }
}

impl Row for objects::Node {
    const COLUMNS: &'static [&'static str] = &["NAME", "STATUS", "ADDRESS", "API"];
    const WIDE: &'static [&'static str] = &["CPU", "MEMORY", "LABELS"];

    fn cells(&self) -> Vec<String> {
        let ready = match self.status.readiness() {
            ConditionStatus::True => "Ready",
            ConditionStatus::Unknown => "Suspect",
            ConditionStatus::False => "NotReady",
        };
        let address = self.status.addresses.first();
        vec![
            self.metadata.name.clone(),
            ready.into(),
            address.map_or_else(|| NONE.into(), |a| a.address.to_string()),
            self.metadata
                .annotation(ANNOTATION_API)
                .unwrap_or(NONE)
                .into(),
        ]
    }

    fn wide_cells(&self) -> Vec<String> {
        let capacity = &self.status.capacity;
        vec![
            capacity.cpu.clone(),
            capacity.memory.clone(),
            labels(self.metadata.labels.iter().flatten()),
        ]
    }
}

/// The header and a row per item, with the wide columns if `wide`.
fn table<T: Row>(items: &[T], wide: bool) -> Vec<Vec<String>> {
    let mut header = T::COLUMNS.to_vec();
    if wide {
        header.extend(T::WIDE);
    }
    let rows = items.iter().map(|item| {
        let mut row = item.cells();
        if wide {
            row.extend(item.wide_cells());
        }
        row
    });
    std::iter::once(header.into_iter().map(String::from).collect())
        .chain(rows)
        .collect()
}

fn print_table(rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<w$}", w = widths[i]))
            .collect();
        println!("{}", cells.join("   ").trim_end());
    }
}

/// What `describe` shows of any object: its metadata, read, and its spec and status as the
/// node wrote them.
#[derive(Deserialize)]
struct Described {
    metadata: ObjectMeta,
    spec: Option<Value>,
    status: Option<Value>,
}

pub fn describe(client: &Client, ns: &str, resource: Resource, name: &str) -> anyhow::Result<()> {
    let object: Described = client.get(&resource.path(ns, Some(name)))?;
    let meta = &object.metadata;
    println!("Name:         {}", meta.name);
    if !matches!(
        resource,
        Resource::Nodes | Resource::Peers | Resource::Images
    ) {
        println!(
            "Namespace:    {}",
            meta.namespace.as_deref().unwrap_or(NONE)
        );
    }
    println!("Labels:       {}", labels(meta.labels.iter().flatten()));
    if let Some(spec) = &object.spec {
        println!("Spec:\n{}", indent(&serde_yaml_ng::to_string(spec)?));
    }
    if let Some(status) = &object.status {
        println!("Status:\n{}", indent(&serde_yaml_ng::to_string(status)?));
    }
    if resource == Resource::Deployments {
        let pods = client.list::<objects::Pod>(&Resource::Pods.path(ns, None))?;
        let key = format!("{ns}/{name}");
        let mine: Vec<objects::Pod> = pods
            .items
            .into_iter()
            .filter(|p| p.metadata.annotation(ANNOTATION_DEPLOYMENT) == Some(key.as_str()))
            .collect();
        println!("Pods:");
        for line in table(&mine, true) {
            println!("  {}", line.join("  "));
        }
        let path = format!("/apis/weeble.io/v1/namespaces/{ns}/deployments/{name}/rollout/history");
        let revisions: Vec<objects::Revision> = client.get(&path)?;
        println!("Revisions:");
        for r in revisions.iter().rev() {
            let current = if r.current { " (current)" } else { "" };
            println!("  {}{current}: {}", r.revision, r.images.join(", "));
        }
    }
    print_events(client, ns, resource, name)
}

/// The events about one object, oldest first, as `kubectl describe` ends.
fn print_events(client: &Client, ns: &str, resource: Resource, name: &str) -> anyhow::Result<()> {
    let base = match resource {
        Resource::Nodes | Resource::Peers | Resource::Images => "/api/v1/events".to_string(),
        _ => format!("/api/v1/namespaces/{ns}/events"),
    };
    let kind = resource.kind();
    let selector = query_encode(&format!(
        "involvedObject.kind={kind},involvedObject.name={name}"
    ));
    let events = client.list::<Event>(&format!("{base}?fieldSelector={selector}"))?;
    if events.items.is_empty() {
        println!("Events:       {NONE}");
        return Ok(());
    }
    println!("Events:");
    for e in &events.items {
        let times = match e.count {
            1 => String::new(),
            n => format!(" (x{n})"),
        };
        let (when, kind) = (&e.last_timestamp, &e.type_);
        println!("  {when}  {kind:<7}  {}{times}: {}", e.reason, e.message);
    }
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn scale(
    client: &Client,
    ns: &str,
    resource: Resource,
    name: &str,
    replicas: i64,
) -> anyhow::Result<()> {
    if resource != Resource::Deployments {
        bail!("only deployments can be scaled");
    }
    if replicas < 0 {
        bail!("--replicas must not be negative, got {replicas}");
    }
    let path = format!("{}/scale", resource.path(ns, Some(name)));
    client.put_json::<objects::Scale>(&path, &json!({"spec": {"replicas": replicas}}))?;
    println!("deployment.apps/{name} scaled");
    Ok(())
}

pub fn delete(
    client: &Client,
    ns: &str,
    resource: Option<Resource>,
    name: Option<&str>,
    file: Option<&Path>,
) -> anyhow::Result<()> {
    let targets: Vec<(Kind, ObjectKey)> = match (resource, name, file) {
        (_, _, Some(file)) => manifests::read(file)?
            .iter()
            .map(|o| (o.kind(), o.meta().key()))
            .collect(),
        (Some(Resource::Deployments), Some(name), None) => {
            vec![(Kind::Deployment, ObjectKey::new(ns, name))]
        }
        (Some(Resource::Services), Some(name), None) => {
            vec![(Kind::Service, ObjectKey::new(ns, name))]
        }
        (Some(_), Some(_), None) => bail!("only deployments and services can be deleted"),
        _ => {
            return Err(anyhow!(
                "say what to delete: `delete deployment NAME`, `delete service NAME` or `delete -f FILE`"
            ));
        }
    };
    for (kind, key) in targets {
        client.delete(&kind.path(&key))?;
        println!("{}/{} deleted", kind.kubectl_name(), key.name);
    }
    Ok(())
}

pub fn logs(client: &Client, ns: &str, pod: &str, tail: usize) -> anyhow::Result<()> {
    print!(
        "{}",
        client.get_text(&format!(
            "/api/v1/namespaces/{ns}/pods/{pod}/log?tailLines={tail}"
        ))?
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use weeble_core::membership::{Liveness, MemberId, MemberInfo};
    use weeble_core::placement::Unplaced;
    use weeble_crdt::{Labels, Object, ResourceAmounts, parse_manifests};

    const DEPLOYMENT: &str = "
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: weeble-demo}]}
";

    #[test]
    fn tables_read_the_objects_the_api_writes() {
        let parsed = parse_manifests(DEPLOYMENT).unwrap();
        let Some(Object::Deployment(d)) = parsed.objects.first() else {
            panic!("the manifest holds a deployment");
        };
        let report = weeble_core::rollout::Report {
            progress: weeble_core::rollout::Progress {
                updated: 2,
                updated_available: 1,
                available: 1,
                ..Default::default()
            },
            stalled: None,
        };
        let deployment = objects::Deployment::new(d, &report, 1);
        assert_eq!(
            table(&[deployment], true),
            [
                [
                    "NAME",
                    "READY",
                    "UP-TO-DATE",
                    "AVAILABLE",
                    "CONTAINERS",
                    "IMAGES",
                    "SELECTOR"
                ],
                ["web", "1/2", "2", "1", "web", "weeble-demo", "app=web"],
            ]
        );
        let pending = objects::Pod::desired(d, "web-1", Err(Unplaced::NoEligibleNode), None);
        assert_eq!(
            table(&[pending], true)[1],
            [
                "web-1",
                "0/1",
                "Unschedulable",
                "0",
                "<none>",
                "<none>",
                "<none>"
            ]
        );
        let member = MemberId::from(MemberInfo {
            name: "n1".into(),
            peer_id: "peer1".into(),
            p2p: "127.0.0.11:7946".parse().unwrap(),
            api: "127.0.0.11:7070".parse().unwrap(),
            labels: Labels::new(),
            capacity: ResourceAmounts {
                cpu_millis: 500,
                memory_bytes: 1024,
            },
            max_pods: 10,
            bump: 1,
        });
        let suspect = objects::Node::new(&member, Liveness::Suspect, None);
        assert_eq!(
            table(&[suspect], true)[1],
            [
                "n1",
                "Suspect",
                "127.0.0.11",
                "127.0.0.11:7070",
                "500m",
                "1024",
                "<none>"
            ]
        );
    }
}
