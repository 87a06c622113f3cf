//! The kubectl-style commands: each turns into requests to a node's Kubernetes-shaped API and
//! prints tables for people or JSON/YAML for machines.

use crate::client::Client;
use crate::manifests;
use anyhow::{anyhow, bail};
use clap::ValueEnum;
use serde_json::{Value, json};
use std::path::Path;

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
        };
        match name {
            Some(name) => format!("{base}/{name}"),
            None => base,
        }
    }
}

pub fn apply(client: &Client, file: &Path) -> anyhow::Result<()> {
    manifests::read(file)?; // Validate (and warn) here too: a bad file never leaves the machine.
    let text = manifests::read_text(file)?;
    let answer = client.post_text("/apis/weeble.io/v1/apply", &text)?;
    for item in answer["items"].as_array().into_iter().flatten() {
        let kind = match item["kind"].as_str() {
            Some("Deployment") => "deployment.apps",
            _ => "service",
        };
        println!(
            "{kind}/{} {}",
            str_of(&item["name"]),
            str_of(&item["outcome"])
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
    let value = match name {
        Some(_) => client.get(&path)?,
        None => client.list(&path)?,
    };
    match output {
        Some(Output::Json) => println!("{}", serde_json::to_string_pretty(&value)?),
        Some(Output::Yaml) => print!("{}", serde_yaml_ng::to_string(&value)?),
        wide => {
            let items = match name {
                Some(_) => vec![value],
                None => value["items"].as_array().cloned().unwrap_or_default(),
            };
            if items.is_empty() {
                eprintln!("No resources found in {ns} namespace.");
                return Ok(());
            }
            print_table(&table(resource, &items, wide == Some(Output::Wide)));
        }
    }
    Ok(())
}

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<none>".into(),
        other => other.to_string(),
    }
}

fn labels(v: &Value) -> String {
    let pairs: Vec<String> = v
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", str_of(v)))
        .collect();
    if pairs.is_empty() {
        "<none>".into()
    } else {
        pairs.join(",")
    }
}

fn table(resource: Resource, items: &[Value], wide: bool) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    match resource {
        Resource::Deployments => {
            rows.push(vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE"]);
            if wide {
                rows[0].extend(["CONTAINERS", "IMAGES", "SELECTOR"]);
            }
        }
        Resource::Pods => {
            rows.push(vec!["NAME", "READY", "STATUS", "RESTARTS", "NODE"]);
            if wide {
                rows[0].extend(["IP", "PORTS"]);
            }
        }
        Resource::Services => rows.push(vec!["NAME", "TYPE", "CLUSTER-IP", "PORT(S)", "SELECTOR"]),
        Resource::Endpoints => rows.push(vec!["NAME", "ENDPOINTS", "NOT READY"]),
        Resource::Nodes => {
            rows.push(vec!["NAME", "STATUS", "ADDRESS", "API"]);
            if wide {
                rows[0].extend(["CPU", "MEMORY", "LABELS"]);
            }
        }
    }
    let mut rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|r| r.into_iter().map(String::from).collect())
        .collect();
    for item in items {
        let name = str_of(&item["metadata"]["name"]);
        let mut row = match resource {
            Resource::Deployments => {
                let s = &item["status"];
                vec![
                    name,
                    format!("{}/{}", s["readyReplicas"], item["spec"]["replicas"]),
                    s["updatedReplicas"].to_string(),
                    s["availableReplicas"].to_string(),
                ]
            }
            Resource::Pods => {
                let s = &item["status"];
                let ready = s["conditions"][0]["status"] == "True";
                let status = s["reason"]
                    .as_str()
                    .filter(|_| !ready)
                    .unwrap_or_else(|| s["phase"].as_str().unwrap_or("Unknown"));
                vec![
                    name,
                    if ready { "1/1" } else { "0/1" }.into(),
                    status.into(),
                    s["restartCount"].to_string(),
                    str_of(&item["spec"]["nodeName"]),
                ]
            }
            Resource::Services => {
                let ports: Vec<String> = item["spec"]["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| format!("{}/{}", p["port"], str_of(&p["protocol"])))
                    .collect();
                vec![
                    name,
                    "ClusterIP".into(),
                    str_of(&item["spec"]["clusterIP"]),
                    ports.join(","),
                    labels(&item["spec"]["selector"]),
                ]
            }
            Resource::Endpoints => {
                let subsets = item["subsets"].as_array().cloned().unwrap_or_default();
                let ready: Vec<String> = subsets
                    .iter()
                    .filter_map(|s| {
                        let ip = s["addresses"][0]["ip"].as_str()?;
                        Some(format!("{ip}:{}", s["ports"][0]["port"]))
                    })
                    .collect();
                let waiting: Vec<String> = subsets
                    .iter()
                    .flat_map(|s| {
                        s["notReadyAddresses"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                    })
                    .map(|a| str_of(&a["targetRef"]["name"]))
                    .collect();
                let or_none = |v: Vec<String>| {
                    if v.is_empty() {
                        "<none>".to_string()
                    } else {
                        v.join(",")
                    }
                };
                vec![name, or_none(ready), or_none(waiting)]
            }
            Resource::Nodes => {
                let ready = match item["status"]["conditions"][0]["status"].as_str() {
                    Some("True") => "Ready",
                    Some("Unknown") => "Suspect",
                    _ => "NotReady",
                };
                vec![
                    name,
                    ready.into(),
                    str_of(&item["status"]["addresses"][0]["address"]),
                    str_of(&item["metadata"]["annotations"]["weeble.io/api"]),
                ]
            }
        };
        if wide {
            match resource {
                Resource::Deployments => {
                    let containers = item["spec"]["template"]["spec"]["containers"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    let names: Vec<String> =
                        containers.iter().map(|c| str_of(&c["name"])).collect();
                    let images: Vec<String> =
                        containers.iter().map(|c| str_of(&c["image"])).collect();
                    row.extend([
                        names.join(","),
                        images.join(","),
                        labels(&item["spec"]["selector"]["matchLabels"]),
                    ]);
                }
                Resource::Pods => {
                    let ports: Vec<String> = item["status"]["ports"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|p| {
                            format!(
                                "{}:{}->{}",
                                str_of(&p["hostIP"]),
                                p["hostPort"],
                                p["containerPort"]
                            )
                        })
                        .collect();
                    row.extend([
                        str_of(&item["status"]["hostIP"]),
                        if ports.is_empty() {
                            "<none>".into()
                        } else {
                            ports.join(",")
                        },
                    ]);
                }
                Resource::Nodes => {
                    let c = &item["status"]["capacity"];
                    row.extend([
                        str_of(&c["cpu"]),
                        str_of(&c["memory"]),
                        labels(&item["metadata"]["labels"]),
                    ]);
                }
                Resource::Services | Resource::Endpoints => {}
            }
        }
        rows.push(row);
    }
    rows
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

pub fn describe(client: &Client, ns: &str, resource: Resource, name: &str) -> anyhow::Result<()> {
    let value = client.get(&resource.path(ns, Some(name)))?;
    let meta = &value["metadata"];
    println!("Name:         {}", str_of(&meta["name"]));
    if resource != Resource::Nodes {
        println!("Namespace:    {}", str_of(&meta["namespace"]));
    }
    println!("Labels:       {}", labels(&meta["labels"]));
    if let Some(spec) = value.get("spec") {
        println!("Spec:\n{}", indent(&serde_yaml_ng::to_string(spec)?));
    }
    if let Some(status) = value.get("status") {
        println!("Status:\n{}", indent(&serde_yaml_ng::to_string(status)?));
    }
    if resource == Resource::Deployments {
        let pods = client.list(&Resource::Pods.path(ns, None))?;
        let key = format!("{ns}/{name}");
        let mine: Vec<Value> = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["metadata"]["annotations"]["weeble.io/deployment"] == key.as_str())
            .cloned()
            .collect();
        println!("Pods:");
        for line in table(Resource::Pods, &mine, true) {
            println!("  {}", line.join("  "));
        }
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
    client.put_json(&path, &json!({"spec": {"replicas": replicas}}))?;
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
    let targets: Vec<(Resource, String, String)> = match (resource, name, file) {
        (_, _, Some(file)) => manifests::read(file)?
            .iter()
            .map(|o| {
                let r = match o {
                    weeble_crdt::Object::Deployment(_) => Resource::Deployments,
                    weeble_crdt::Object::Service(_) => Resource::Services,
                };
                (r, o.meta().namespace.clone(), o.meta().name.clone())
            })
            .collect(),
        (Some(r @ (Resource::Deployments | Resource::Services)), Some(name), None) => {
            vec![(r, ns.to_string(), name.to_string())]
        }
        (Some(_), Some(_), None) => bail!("only deployments and services can be deleted"),
        _ => {
            return Err(anyhow!(
                "say what to delete: `delete deployment NAME`, `delete service NAME` or `delete -f FILE`"
            ));
        }
    };
    for (resource, ns, name) in targets {
        client.delete(&resource.path(&ns, Some(&name)))?;
        let kind = if resource == Resource::Deployments {
            "deployment.apps"
        } else {
            "service"
        };
        println!("{kind}/{name} deleted");
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
