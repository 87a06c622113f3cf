//! Lists as tables (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`), which is how
//! `kubectl get` asks for them: the server chooses the columns and writes the cells, kubectl
//! prints them (`-o wide` adds the columns of priority 1). The columns are Kubernetes' own for
//! each kind, so `kubectl get pods` reads as it does against a Kubernetes cluster.

use super::replicaset::ReplicaSet;
use super::{
    ConditionStatus, Deployment, Endpoints, Image, Namespace, Node, Peer, Pod, Service, readiness,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub format: String,
    pub description: String,
    /// 0: always shown; 1: shown with `-o wide`.
    pub priority: u8,
}

/// `(name, type, priority)` of each column; the first column is the name.
type Columns = &'static [(&'static str, &'static str, u8)];

/// A kind that is listed as a table: its columns, and the cells of one object.
pub trait Tabled {
    const COLUMNS: Columns;
    /// The cells of this object, one per column; `now_ms` is the time ages count to.
    fn cells(&self, now_ms: i64) -> Vec<Value>;
}

/// The column definitions of `T`.
pub fn columns<T: Tabled>() -> Vec<Column> {
    T::COLUMNS
        .iter()
        .map(|&(name, type_, priority)| Column {
            name: name.into(),
            type_: type_.into(),
            format: if name == "Name" { "name" } else { "" }.into(),
            description: String::new(),
            priority,
        })
        .collect()
}

/// What `kubectl get` prints as AGE: Kubernetes' `HumanDuration` of the time since an
/// RFC 3339 `timestamp`, `<unknown>` if there is none.
pub fn age(timestamp: Option<&str>, now_ms: i64) -> String {
    match timestamp.and_then(crate::time::parse_rfc3339) {
        Some(then_ms) => human_duration((now_ms - then_ms).div_euclid(1000)),
        None => "<unknown>".into(),
    }
}

/// Kubernetes' `duration.HumanDuration` of `seconds`.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let s = seconds.max(0);
    let (m, h) = (s / 60, s / 3600);
    let (d, y) = (h / 24, h / 24 / 365);
    let pair = |a: i64, unit_a: &str, b: i64, unit_b: &str| match b {
        0 => format!("{a}{unit_a}"),
        b => format!("{a}{unit_a}{b}{unit_b}"),
    };
    match () {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 => pair(m, "m", s % 60, "s"),
        _ if m < 180 => format!("{m}m"),
        _ if h < 8 => pair(h, "h", m % 60, "m"),
        _ if h < 48 => format!("{h}h"),
        _ if h < 24 * 8 => pair(d, "d", h % 24, "h"),
        _ if h < 24 * 365 * 2 => format!("{d}d"),
        _ if h < 24 * 365 * 8 => pair(y, "y", d % 365, "d"),
        _ => format!("{y}y"),
    }
}

/// `<none>` for an empty text, as kubectl prints it.
fn or_none(text: String) -> Value {
    Value::String(if text.is_empty() {
        "<none>".into()
    } else {
        text
    })
}

impl Tabled for Pod {
    const COLUMNS: Columns = &[
        ("Name", "string", 0),
        ("Ready", "string", 0),
        ("Status", "string", 0),
        ("Restarts", "string", 0),
        ("Age", "string", 0),
        ("IP", "string", 1),
        ("Node", "string", 1),
        ("Nominated Node", "string", 1),
        ("Readiness Gates", "string", 1),
    ];

    fn cells(&self, now_ms: i64) -> Vec<Value> {
        let containers = self.spec.containers.len();
        let ready = match &self.status.container_statuses {
            Some(statuses) => statuses.iter().filter(|c| c.ready).count(),
            None => 0,
        };
        let status = match &self.status.reason {
            Some(reason) if self.status.phase != super::Phase::Running => reason.clone(),
            _ => self.status.phase.to_string(),
        };
        let ip = self
            .status
            .pod_ip
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        vec![
            json!(self.metadata.name),
            json!(format!("{ready}/{containers}")),
            json!(status),
            json!(self.status.restart_count.to_string()),
            json!(age(self.metadata.creation_timestamp.as_deref(), now_ms)),
            or_none(ip),
            or_none(self.spec.node_name.clone().unwrap_or_default()),
            json!("<none>"),
            json!("<none>"),
        ]
    }
}

impl Tabled for Deployment {
    const COLUMNS: Columns = &[
        ("Name", "string", 0),
        ("Ready", "string", 0),
        ("Up-to-date", "string", 0),
        ("Available", "string", 0),
        ("Age", "string", 0),
        ("Containers", "string", 1),
        ("Images", "string", 1),
        ("Selector", "string", 1),
    ];

    fn cells(&self, now_ms: i64) -> Vec<Value> {
        let (names, images) = names_and_images(&self.spec.template.spec.containers);
        let ready = format!("{}/{}", self.status.ready_replicas, self.spec.replicas);
        vec![
            json!(self.metadata.name),
            json!(ready),
            json!(self.status.updated_replicas),
            json!(self.status.available_replicas),
            json!(age(self.metadata.creation_timestamp.as_deref(), now_ms)),
            json!(names),
            json!(images),
            or_none(selector(&self.spec.selector.match_labels)),
        ]
    }
}

impl Tabled for ReplicaSet {
    const COLUMNS: Columns = &[
        ("Name", "string", 0),
        ("Desired", "integer", 0),
        ("Current", "integer", 0),
        ("Ready", "integer", 0),
        ("Age", "string", 0),
        ("Containers", "string", 1),
        ("Images", "string", 1),
        ("Selector", "string", 1),
    ];

    fn cells(&self, now_ms: i64) -> Vec<Value> {
        let meta = &self.metadata.meta;
        let (names, images) = names_and_images(&self.spec.template.spec.containers);
        vec![
            json!(meta.name),
            json!(self.spec.replicas),
            json!(self.status.replicas),
            json!(self.status.ready_replicas),
            json!(age(meta.creation_timestamp.as_deref(), now_ms)),
            json!(names),
            json!(images),
            or_none(selector(&self.spec.selector.match_labels)),
        ]
    }
}

/// Containers' names and images, each joined with commas.
fn names_and_images(containers: &[super::Container]) -> (String, String) {
    let join =
        |f: fn(&super::Container) -> &str| containers.iter().map(f).collect::<Vec<_>>().join(",");
    (join(|c| &c.name), join(|c| &c.image))
}

/// A selector as kubectl prints it: `a=b,c=d`.
fn selector(labels: &weeble_crdt::Labels) -> String {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join(",")
}

impl Tabled for Service {
    const COLUMNS: Columns = &[
        ("Name", "string", 0),
        ("Type", "string", 0),
        ("Cluster-IP", "string", 0),
        ("External-IP", "string", 0),
        ("Port(s)", "string", 0),
        ("Age", "string", 0),
        ("Selector", "string", 1),
    ];

    fn cells(&self, now_ms: i64) -> Vec<Value> {
        let ports: Vec<String> = self
            .spec
            .ports
            .iter()
            .map(|p| format!("{}/{}", p.port, protocol(p.protocol)))
            .collect();
        vec![
            json!(self.metadata.name),
            json!(self.spec.type_),
            json!(self.spec.cluster_ip.to_string()),
            json!("<none>"),
            or_none(ports.join(",")),
            json!(age(self.metadata.creation_timestamp.as_deref(), now_ms)),
            or_none(selector(&self.spec.selector)),
        ]
    }
}

/// `TCP` or `UDP`, as the port column writes it.
fn protocol(p: weeble_crdt::Protocol) -> String {
    serde_json::to_value(p)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

impl Tabled for Endpoints {
    const COLUMNS: Columns = &[
        ("Name", "string", 0),
        ("Endpoints", "string", 0),
        ("Age", "string", 0),
    ];

    fn cells(&self, now_ms: i64) -> Vec<Value> {
        let ready: Vec<String> = self
            .subsets
            .iter()
            .flat_map(|s| {
                let addresses = s.addresses.iter().flatten();
                addresses
                    .flat_map(move |a| s.ports.iter().map(move |p| format!("{}:{}", a.ip, p.port)))
            })
            .collect();
        let shown = match ready.len() {
            0..=3 => ready.join(","),
            n => format!("{} + {} more...", ready[..3].join(","), n - 3),
        };
        vec![
            json!(self.metadata.name),
            or_none(shown),
            json!(age(self.metadata.creation_timestamp.as_deref(), now_ms)),
        ]
    }
}

impl Tabled for Node {
    const COLUMNS: Columns = &[
        ("Name", "string", 0),
        ("Status", "string", 0),
        ("Roles", "string", 0),
        ("Age", "string", 0),
        ("Version", "string", 0),
        ("Internal-IP", "string", 1),
        ("External-IP", "string", 1),
        ("Liveness", "string", 1),
    ];

    fn cells(&self, now_ms: i64) -> Vec<Value> {
        let mut status = match readiness(&self.status.conditions) {
            ConditionStatus::True => "Ready",
            ConditionStatus::False => "NotReady",
            ConditionStatus::Unknown => "Unknown",
        }
        .to_string();
        if self.spec.unschedulable {
            status.push_str(",SchedulingDisabled");
        }
        let ip = self.status.addresses.first().map(|a| a.address.to_string());
        let liveness = self.metadata.annotation(super::ANNOTATION_LIVENESS);
        vec![
            json!(self.metadata.name),
            json!(status),
            json!("<none>"),
            json!(age(self.metadata.creation_timestamp.as_deref(), now_ms)),
            json!(format!("weeble-{}", env!("CARGO_PKG_VERSION"))),
            or_none(ip.unwrap_or_default()),
            json!("<none>"),
            or_none(liveness.unwrap_or_default().to_string()),
        ]
    }
}

impl Tabled for Namespace {
    const COLUMNS: Columns = &[
        ("Name", "string", 0),
        ("Status", "string", 0),
        ("Age", "string", 0),
    ];

    fn cells(&self, now_ms: i64) -> Vec<Value> {
        vec![
            json!(self.metadata.name),
            json!(self.status.phase),
            json!(age(self.metadata.creation_timestamp.as_deref(), now_ms)),
        ]
    }
}

impl Tabled for super::event::Event {
    const COLUMNS: Columns = &[
        ("Last Seen", "string", 0),
        ("Type", "string", 0),
        ("Reason", "string", 0),
        ("Object", "string", 0),
        ("Source", "string", 1),
        ("Message", "string", 0),
        ("Count", "integer", 1),
        ("Name", "string", 1),
    ];

    fn cells(&self, now_ms: i64) -> Vec<Value> {
        let object = &self.involved_object;
        vec![
            json!(age(Some(&self.last_timestamp), now_ms)),
            json!(self.type_),
            json!(self.reason),
            json!(format!("{}/{}", object.kind.to_lowercase(), object.name)),
            json!(format!("{}, {}", self.source.component, self.source.host)),
            json!(self.message),
            json!(self.count),
            json!(self.metadata.name),
        ]
    }
}

impl Tabled for Image {
    const COLUMNS: Columns = &[
        ("Name", "string", 0),
        ("Names", "string", 0),
        ("Nodes", "string", 0),
    ];

    fn cells(&self, _now_ms: i64) -> Vec<Value> {
        vec![
            json!(self.metadata.name),
            json!(self.status.names.join(",")),
            json!(self.status.nodes.join(",")),
        ]
    }
}

impl Tabled for Peer {
    const COLUMNS: Columns = &[
        ("Name", "string", 0),
        ("Node", "string", 0),
        ("Address", "string", 0),
        ("Liveness", "string", 0),
        ("Admission", "string", 0),
    ];

    fn cells(&self, _now_ms: i64) -> Vec<Value> {
        let admission = match (self.spec.admission, self.status.admitted) {
            (Some(a), _) => a.to_string(),
            (None, true) => "admitted".into(),
            (None, false) => "not admitted".into(),
        };
        let field = |f: &Option<String>| or_none(f.clone().unwrap_or_default());
        vec![
            json!(self.metadata.name),
            field(&self.status.node),
            field(&self.status.address),
            field(&self.status.liveness),
            json!(admission),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_kubectl_prints_them() {
        for (seconds, text) in [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (185, "3m5s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600 + 120, "3h2m"),
            (5 * 3600, "5h"),
            (30 * 3600, "30h"),
            (3 * 86_400 + 3600, "3d1h"),
            (100 * 86_400, "100d"),
            (3 * 365 * 86_400 + 86_400, "3y1d"),
            (10 * 365 * 86_400, "10y"),
        ] {
            assert_eq!(human_duration(seconds), text, "{seconds} s");
        }
        assert_eq!(age(None, 0), "<unknown>");
        assert_eq!(
            age(Some("2026-12-06T10:00:00Z"), 1_796_551_200_000 + 65_000),
            "65s"
        );
    }
}
