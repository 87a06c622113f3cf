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
use std::net::{IpAddr, SocketAddr};
use weeble_crdt::{Deployment, ObjectKey, Protocol, Service, ServicePort, Snapshot, TargetPort};

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
    /// Selected pods that are not ready (or do not publish the target port).
    pub not_ready: Vec<NotReady>,
}

/// A selected pod that gets no traffic, and the address of its node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotReady {
    pub pod: String,
    pub node: String,
    pub ip: IpAddr,
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
                            .get(&ObjectKey::new(&pod.namespace, &pod.deployment))
                            .map(|d| &**d);
                        match published(pod, deployment, &port.target_port, port.protocol) {
                            Some(addr) if ready(pod) => ends.ready.push(Endpoint {
                                pod: pod.name.clone(),
                                node: pod.node.clone(),
                                addr,
                            }),
                            _ => ends.not_ready.push(NotReady {
                                pod: pod.name.clone(),
                                node: pod.node.clone(),
                                ip: pod.host_ip,
                            }),
                        }
                    }
                    ends
                })
                .collect();
            (key.clone(), ports)
        })
        .collect()
}

/// The environment Kubernetes gives a container for each service of its namespace
/// (`NGINX_SERVICE_SERVICE_HOST`, `NGINX_SERVICE_SERVICE_PORT`, `NGINX_SERVICE_PORT_80_TCP`,
/// ...), with `host` (the node's own service address) as each service's address. Like
/// Kubernetes, a container gets the services that exist when it is created, and is not
/// restarted when they change.
pub fn environment(snapshot: &Snapshot, namespace: &str, host: IpAddr) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for service in snapshot.services.values() {
        let (meta, ports) = (&service.meta, &service.spec.ports);
        let Some(first) = ports.first().filter(|_| meta.namespace == namespace) else {
            continue;
        };
        let prefix = env_name(&meta.name);
        env.push((format!("{prefix}_SERVICE_HOST"), host.to_string()));
        env.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        let url = |p: &ServicePort| {
            let proto = p.protocol.to_string().to_lowercase();
            (proto.clone(), format!("{proto}://{host}:{}", p.port))
        };
        env.push((format!("{prefix}_PORT"), url(first).1));
        for p in ports {
            if let Some(name) = &p.name {
                env.push((
                    format!("{prefix}_SERVICE_PORT_{}", env_name(name)),
                    p.port.to_string(),
                ));
            }
            let (proto, address) = url(p);
            let var = format!("{prefix}_PORT_{}_{}", p.port, proto.to_uppercase());
            env.push((format!("{var}_PROTO"), proto));
            env.push((format!("{var}_PORT"), p.port.to_string()));
            env.push((format!("{var}_ADDR"), host.to_string()));
            env.push((var, address));
        }
    }
    env
}

/// A name as Kubernetes writes it in an environment variable: upper case, `-` as `_`.
fn env_name(name: &str) -> String {
    name.to_uppercase().replace('-', "_")
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
