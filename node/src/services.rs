//! Services: where each service port forwards to, computed alike on every node from the
//! desired state (services, and the container port names of deployments) and the gossiped
//! pod status. Pure; the proxy and the API read its result.
//!
//! As in Kubernetes, a service selects the pods of its namespace whose labels include its
//! selector (an empty selector selects nothing), and only ready pods are endpoints. A
//! `targetPort` by name is looked up among the pod's container ports; by number it must be a
//! port the pod declares, because only declared ports are published on the pod's node.

use crate::status::{Phase, PodStatus, StatusTable};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use weeble_crdt::{Deployment, ObjectKey, Protocol, Service, Snapshot, TargetPort};

/// The endpoints of one service port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortEndpoints {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
    pub target_port: String,
    /// Ready pods and where their target port is published, by pod name.
    pub ready: Vec<Endpoint>,
    /// Selected pods that are not ready (or do not publish the target port), by pod name.
    pub not_ready: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub pod: String,
    pub node: String,
    pub addr: SocketAddr,
}

/// Every service's ports and their endpoints, by service key.
pub type Endpoints = BTreeMap<ObjectKey, Vec<PortEndpoints>>;

/// Resolves every service of `snapshot` against the pods of `table`.
pub fn endpoints(snapshot: &Snapshot, table: &StatusTable) -> Endpoints {
    let pods = table.pods();
    snapshot
        .services
        .iter()
        .map(|(key, service)| {
            let selected: Vec<&PodStatus> = pods
                .iter()
                .copied()
                .filter(|p| selects(service, p))
                .collect();
            let ports = service
                .spec
                .ports
                .iter()
                .map(|port| {
                    let mut ends = PortEndpoints {
                        name: port.name.clone(),
                        port: port.port,
                        protocol: port.protocol,
                        target_port: port.target_port.to_string(),
                        ready: Vec::new(),
                        not_ready: Vec::new(),
                    };
                    for pod in &selected {
                        let deployment = snapshot
                            .deployments
                            .get(&ObjectKey::new(&pod.namespace, &pod.deployment));
                        match published(pod, deployment, &port.target_port, port.protocol) {
                            Some(addr) if ready(pod) => ends.ready.push(Endpoint {
                                pod: pod.name.clone(),
                                node: pod.node.clone(),
                                addr,
                            }),
                            _ => ends.not_ready.push(pod.name.clone()),
                        }
                    }
                    ends
                })
                .collect();
            (key.clone(), ports)
        })
        .collect()
}

fn selects(service: &Service, pod: &PodStatus) -> bool {
    let selector = &service.spec.selector;
    pod.namespace == service.meta.namespace
        && !selector.is_empty()
        && selector.iter().all(|(k, v)| pod.labels.get(k) == Some(v))
}

fn ready(pod: &PodStatus) -> bool {
    pod.phase == Phase::Running && pod.ready
}

/// Where `pod` publishes the container port `target` names, if it does.
fn published(
    pod: &PodStatus,
    deployment: Option<&Deployment>,
    target: &TargetPort,
    protocol: Protocol,
) -> Option<SocketAddr> {
    let container_port = match target {
        TargetPort::Number(n) => *n,
        TargetPort::Name(name) => {
            deployment?
                .spec
                .template
                .containers
                .iter()
                .flat_map(|c| &c.ports)
                .find(|p| p.name.as_deref() == Some(name) && p.protocol == protocol)?
                .container_port
        }
    };
    pod.ports
        .iter()
        .find(|p| p.container_port == container_port && p.protocol == protocol)
        .map(|p| SocketAddr::new(pod.host_ip, p.host_port))
}

#[cfg(test)]
mod tests;
