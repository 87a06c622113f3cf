//! Turns Kubernetes wire shapes into validated model objects, collecting every error and
//! warning with the field path it belongs to (`spec.template.spec.containers[0].name`).

use crate::echo::{clip, echo};
use crate::k8s;
use crate::model::*;
use crate::quantity::{cpu_millis, memory_bytes};
use std::collections::BTreeMap;

/// The longest deployment name: pod names are `<deployment>-<index>` and must stay valid
/// 63-character hostnames with a five-digit index.
pub const MAX_DEPLOYMENT_NAME: usize = 57;
/// The most replicas one deployment may ask for (pod indexes stay five digits).
pub const MAX_REPLICAS: i64 = 99_999;

/// The longest image reference, in bytes.
pub const MAX_IMAGE_BYTES: usize = 4096;
/// The longest environment variable name, in bytes.
pub const MAX_ENV_NAME_BYTES: usize = 256;
/// The longest environment variable value, in bytes.
pub const MAX_ENV_VALUE_BYTES: usize = 32 * 1024;
/// The longest item of `command`, `args` or an exec probe's `command`, in bytes.
pub const MAX_ARG_BYTES: usize = 32 * 1024;
/// The most items in `command`, `args` or an exec probe's `command`.
pub const MAX_ARGS: usize = 1024;
/// The longest `workingDir` or HTTP probe `path`, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// The largest object, serialized as JSON (etcd's request limit is of this order).
pub const MAX_OBJECT_BYTES: usize = 1 << 20;

/// One problem or warning at one field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub path: String,
    pub message: String,
}

/// What validation found in one object.
#[derive(Debug, Default)]
pub struct Findings {
    pub errors: Vec<Finding>,
    pub warnings: Vec<Finding>,
}

impl Findings {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Finding {
            path: path.into(),
            message: message.into(),
        });
    }

    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Finding {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Warns about each written field of `fields`: Weeble ignores it and nothing that runs changes.
    fn ignored(&mut self, base: &str, fields: &[(&str, bool)]) {
        for (field, _) in fields.iter().filter(|(_, present)| *present) {
            self.warn(join(base, field), "ignored: Weeble does not use this field");
        }
    }

    /// Rejects each written field of `fields`: ignoring it would change what runs.
    fn unsupported(&mut self, base: &str, fields: &[(&str, bool)]) {
        for (field, _) in fields.iter().filter(|(_, present)| *present) {
            self.error(
                join(base, field),
                "not supported by Weeble; remove it (ignoring it would change what runs)",
            );
        }
    }
}

/// Rejects `value` at `path` if it is longer than `max` bytes: such a value is logged at
/// every retry and gossiped in status.
fn capped(path: &str, value: &str, max: usize, f: &mut Findings) {
    if value.len() > max {
        f.error(
            path,
            format!("too long: {} bytes, at most {max}", value.len()),
        );
    }
}

/// Caps a command line: at most [`MAX_ARGS`] items of at most [`MAX_ARG_BYTES`] each.
fn argv(path: &str, items: &[String], f: &mut Findings) {
    if items.len() > MAX_ARGS {
        f.error(
            path,
            format!("too many items: {}, at most {MAX_ARGS}", items.len()),
        );
        return;
    }
    for (i, item) in items.iter().enumerate() {
        capped(&format!("{path}[{i}]"), item, MAX_ARG_BYTES, f);
    }
}

fn join(base: &str, field: &str) -> String {
    if base.is_empty() {
        field.to_string()
    } else {
        format!("{base}.{field}")
    }
}

/// Validates a Deployment. The returned object is only meaningful if `findings.errors` is empty.
pub fn deployment(m: k8s::DeploymentManifest, f: &mut Findings) -> Deployment {
    api_version(m.api_version.as_deref(), Kind::Deployment, f);
    f.ignored("", &[("status", m.status.is_some())]);
    let meta = meta(m.metadata, Kind::Deployment, f);
    let s = m.spec;
    let seconds = |path: &str, value: Option<i64>, default: u32, f: &mut Findings| match value {
        None => default,
        Some(n) => u32::try_from(n).unwrap_or_else(|_| {
            f.error(path, format!("must be between 0 and {}, got {n}", u32::MAX));
            default
        }),
    };
    let min_ready_seconds = seconds("spec.minReadySeconds", s.min_ready_seconds, 0, f);
    let progress_deadline_seconds = seconds(
        "spec.progressDeadlineSeconds",
        s.progress_deadline_seconds,
        DEFAULT_PROGRESS_DEADLINE_SECONDS,
        f,
    );
    if progress_deadline_seconds <= min_ready_seconds {
        f.error(
            "spec.progressDeadlineSeconds",
            format!(
                "must be greater than minReadySeconds ({min_ready_seconds}), \
                 got {progress_deadline_seconds}"
            ),
        );
    }
    let revision_history_limit = seconds(
        "spec.revisionHistoryLimit",
        s.revision_history_limit,
        DEFAULT_REVISION_HISTORY_LIMIT,
        f,
    );
    let replicas = match s.replicas {
        None => 1,
        Some(n) if !(0..=MAX_REPLICAS).contains(&n) => {
            f.error(
                "spec.replicas",
                format!("must be between 0 and {MAX_REPLICAS}, got {n}"),
            );
            0
        }
        Some(n) => n as u32,
    };
    let template = pod_template(s.template, f);
    let selector = selector(s.selector, &template.labels, f);
    let strategy = strategy(s.strategy, f);
    Deployment {
        meta,
        spec: DeploymentSpec {
            replicas,
            selector,
            template,
            strategy,
            min_ready_seconds,
            progress_deadline_seconds,
            revision_history_limit,
            paused: s.paused,
        },
        history: History::default(),
    }
}

/// Validates a Namespace: a name (a DNS-1123 label) and labels; it has no namespace.
pub fn namespace(m: k8s::NamespaceManifest, f: &mut Findings) -> Namespace {
    api_version(m.api_version.as_deref(), Kind::Namespace, f);
    f.ignored(
        "",
        &[("spec", m.spec.is_some()), ("status", m.status.is_some())],
    );
    let mut meta = meta(m.metadata, Kind::Namespace, f);
    meta.namespace = String::new();
    Namespace { meta }
}

/// Validates a Service. The returned object is only meaningful if `findings.errors` is empty.
pub fn service(m: k8s::ServiceManifest, f: &mut Findings) -> Service {
    api_version(m.api_version.as_deref(), Kind::Service, f);
    f.ignored("", &[("status", m.status.is_some())]);
    let meta = meta(m.metadata, Kind::Service, f);
    let s = m.spec;
    match s.type_.as_deref() {
        None | Some("ClusterIP") => {}
        Some(other) => f.error(
            "spec.type",
            format!(
                "type {} is not supported: Weeble serves every Service as ClusterIP, \
                 on every node's own address",
                echo(other)
            ),
        ),
    }
    if let Some(affinity) = s.session_affinity.as_deref().filter(|a| *a != "None") {
        f.error(
            "spec.sessionAffinity",
            format!("{} is not supported; use None", echo(affinity)),
        );
    }
    f.ignored(
        "spec",
        &[
            ("clusterIP", s.cluster_ip.is_some()),
            ("clusterIPs", s.cluster_ips.is_some()),
            ("ipFamilies", s.ip_families.is_some()),
            ("ipFamilyPolicy", s.ip_family_policy.is_some()),
            ("internalTrafficPolicy", s.internal_traffic_policy.is_some()),
            ("externalTrafficPolicy", s.external_traffic_policy.is_some()),
        ],
    );
    f.unsupported(
        "spec",
        &[
            ("externalIPs", s.external_ips.is_some()),
            ("loadBalancerIP", s.load_balancer_ip.is_some()),
            (
                "publishNotReadyAddresses",
                s.publish_not_ready_addresses.is_some(),
            ),
            ("externalName", s.external_name.is_some()),
        ],
    );
    let selector = match s.selector {
        Some(selector) if !selector.is_empty() => {
            labels("spec.selector", &selector, f);
            selector
        }
        _ => {
            f.error(
                "spec.selector",
                "required: Weeble finds a Service's endpoints by its selector",
            );
            Labels::new()
        }
    };
    if s.ports.is_empty() {
        f.error("spec.ports", "at least one port is required");
    }
    let many = s.ports.len() > 1;
    let mut seen: BTreeMap<(u16, Protocol), usize> = BTreeMap::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let ports = s
        .ports
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let path = format!("spec.ports[{i}]");
            f.ignored(&path, &[("appProtocol", p.app_protocol.is_some())]);
            f.unsupported(&path, &[("nodePort", p.node_port.is_some())]);
            let port = port_number(&format!("{path}.port"), p.port, f);
            let protocol = protocol(&format!("{path}.protocol"), p.protocol.as_deref(), f);
            if let Some(first) = seen.insert((port, protocol), i) {
                f.error(
                    format!("{path}.port"),
                    format!("duplicate port {port}/{protocol} (also spec.ports[{first}])"),
                );
            }
            match &p.name {
                Some(name) => {
                    port_name(&format!("{path}.name"), name, f);
                    if let Some(first) = names.insert(name.clone(), i) {
                        f.error(
                            format!("{path}.name"),
                            format!(
                                "duplicate port name {} (also spec.ports[{first}])",
                                echo(name)
                            ),
                        );
                    }
                }
                None if many => f.error(
                    format!("{path}.name"),
                    "required when a Service has more than one port",
                ),
                None => {}
            }
            let target_port = match p.target_port {
                None => TargetPort::Number(port),
                Some(k8s::IntOrString::Int(n)) => {
                    TargetPort::Number(port_number(&format!("{path}.targetPort"), n, f))
                }
                Some(k8s::IntOrString::String(name)) => {
                    port_name(&format!("{path}.targetPort"), &name, f);
                    TargetPort::Name(name)
                }
            };
            ServicePort {
                name: p.name,
                port,
                target_port,
                protocol,
            }
        })
        .collect();
    Service {
        meta,
        spec: ServiceSpec { selector, ports },
    }
}

fn api_version(given: Option<&str>, kind: Kind, f: &mut Findings) {
    let expected = kind.api_version();
    match given {
        None => f.warn("apiVersion", format!("missing: defaulted to {expected}")),
        Some(v) if v == expected => {}
        Some(v) => f.error(
            "apiVersion",
            format!(
                "{kind} is served as {expected}, not {}: write apiVersion: {expected}",
                echo(v)
            ),
        ),
    }
}

fn meta(m: k8s::ObjectMeta, kind: Kind, f: &mut Findings) -> Meta {
    f.ignored(
        "metadata",
        &[
            ("uid", m.uid.is_some()),
            ("resourceVersion", m.resource_version.is_some()),
            ("generation", m.generation.is_some()),
            ("creationTimestamp", m.creation_timestamp.is_some()),
            ("managedFields", m.managed_fields.is_some()),
            ("ownerReferences", m.owner_references.is_some()),
        ],
    );
    f.unsupported(
        "metadata",
        &[
            ("generateName", m.generate_name.is_some()),
            ("finalizers", m.finalizers.is_some()),
        ],
    );
    let name = m.name.unwrap_or_default();
    if name.is_empty() {
        f.error("metadata.name", "required");
    } else {
        let checked = match kind {
            Kind::Deployment => dns1123_label(&name, MAX_DEPLOYMENT_NAME),
            Kind::Service => dns1035_label(&name),
            Kind::Namespace => dns1123_label(&name, 63),
        };
        if let Err(why) = checked {
            f.error(
                "metadata.name",
                format!("invalid name {}: {why}", echo(&name)),
            );
        }
    }
    let namespace = m.namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    if let Err(why) = dns1123_label(&namespace, 63) {
        f.error(
            "metadata.namespace",
            format!("invalid namespace {}: {why}", echo(&namespace)),
        );
    }
    let labels_map = m.labels.unwrap_or_default();
    labels("metadata.labels", &labels_map, f);
    let mut annotations = m.annotations.unwrap_or_default();
    annotations.remove(REVISION);
    self::annotations("metadata.annotations", &annotations, f);
    Meta {
        namespace,
        name,
        labels: labels_map,
        annotations,
        generation: 0,
        uid: String::new(),
        created_ms: 0,
    }
}

fn selector(s: Option<k8s::LabelSelector>, template_labels: &Labels, f: &mut Findings) -> Labels {
    let Some(s) = s else {
        if !template_labels.is_empty() {
            f.warn(
                "spec.selector",
                "missing: defaulted to the template's labels",
            );
        }
        return template_labels.clone();
    };
    f.unsupported(
        "spec.selector",
        &[("matchExpressions", s.match_expressions.is_some())],
    );
    let match_labels = s.match_labels.unwrap_or_default();
    if match_labels.is_empty() {
        f.error(
            "spec.selector.matchLabels",
            "required: at least one label to select pods by",
        );
    }
    labels("spec.selector.matchLabels", &match_labels, f);
    for (key, value) in &match_labels {
        if template_labels.get(key) != Some(value) {
            f.error(
                "spec.selector.matchLabels",
                format!(
                    "selector {}={} does not match the template's labels; \
                     spec.template.metadata.labels must include it",
                    clip(key),
                    clip(value)
                ),
            );
        }
    }
    match_labels
}

fn strategy(s: Option<k8s::Strategy>, f: &mut Findings) -> Strategy {
    let default_rolling = || Strategy::RollingUpdate {
        max_surge: IntOrPercent::Percent(25),
        max_unavailable: IntOrPercent::Percent(25),
    };
    let Some(s) = s else { return default_rolling() };
    match s.type_.as_deref() {
        Some("Recreate") => {
            if s.rolling_update.is_some() {
                f.error(
                    "spec.strategy.rollingUpdate",
                    "only allowed with type RollingUpdate",
                );
            }
            Strategy::Recreate
        }
        None | Some("RollingUpdate") => {
            let Some(r) = s.rolling_update else {
                return default_rolling();
            };
            let surge = int_or_percent("spec.strategy.rollingUpdate.maxSurge", r.max_surge, 25, f);
            let unavailable = int_or_percent(
                "spec.strategy.rollingUpdate.maxUnavailable",
                r.max_unavailable,
                25,
                f,
            );
            if surge.is_zero() && unavailable.is_zero() {
                f.error(
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    "may not be 0 when maxSurge is 0: the rollout could never replace a pod",
                );
            }
            Strategy::RollingUpdate {
                max_surge: surge,
                max_unavailable: unavailable,
            }
        }
        Some(other) => {
            f.error(
                "spec.strategy.type",
                format!(
                    "unknown strategy {}: use RollingUpdate or Recreate",
                    echo(other)
                ),
            );
            default_rolling()
        }
    }
}

fn int_or_percent(
    path: &str,
    value: Option<k8s::IntOrString>,
    default_percent: u32,
    f: &mut Findings,
) -> IntOrPercent {
    match value {
        None => IntOrPercent::Percent(default_percent),
        Some(k8s::IntOrString::Int(n)) if (0..=i64::from(u32::MAX)).contains(&n) => {
            IntOrPercent::Count(n as u32)
        }
        Some(k8s::IntOrString::String(s)) => {
            match s.strip_suffix('%').and_then(|p| p.parse::<u32>().ok()) {
                Some(p) if p <= 100 => IntOrPercent::Percent(p),
                _ => {
                    f.error(
                        path,
                        format!("{} is not a count or a percentage like 25%", echo(&s)),
                    );
                    IntOrPercent::Percent(default_percent)
                }
            }
        }
        Some(k8s::IntOrString::Int(n)) => {
            f.error(path, format!("must not be negative, got {n}"));
            IntOrPercent::Percent(default_percent)
        }
    }
}

fn pod_template(t: k8s::PodTemplate, f: &mut Findings) -> PodTemplate {
    let (labels_map, annotations) = match t.metadata {
        Some(m) => {
            f.ignored(
                "spec.template.metadata",
                &[
                    ("name", m.name.is_some()),
                    ("creationTimestamp", m.creation_timestamp.is_some()),
                ],
            );
            let annotations = m.annotations.unwrap_or_default();
            self::annotations("spec.template.metadata.annotations", &annotations, f);
            (m.labels.unwrap_or_default(), annotations)
        }
        None => (Labels::new(), Labels::new()),
    };
    if labels_map.is_empty() {
        f.error(
            "spec.template.metadata.labels",
            "required: the pods' labels, which the selector and Services match",
        );
    }
    labels("spec.template.metadata.labels", &labels_map, f);
    let s = t.spec;
    let base = "spec.template.spec";
    f.ignored(
        base,
        &[
            (
                "terminationGracePeriodSeconds",
                s.termination_grace_period_seconds.is_some(),
            ),
            ("dnsPolicy", s.dns_policy.is_some()),
            ("schedulerName", s.scheduler_name.is_some()),
            ("serviceAccountName", s.service_account_name.is_some()),
            ("serviceAccount", s.service_account.is_some()),
            (
                "automountServiceAccountToken",
                s.automount_service_account_token.is_some(),
            ),
            ("enableServiceLinks", s.enable_service_links.is_some()),
            ("priorityClassName", s.priority_class_name.is_some()),
            ("imagePullSecrets", s.image_pull_secrets.is_some()),
        ],
    );
    f.unsupported(
        base,
        &[
            ("volumes", s.volumes.is_some()),
            ("affinity", s.affinity.is_some()),
            ("tolerations", s.tolerations.is_some()),
            ("initContainers", s.init_containers.is_some()),
            ("hostNetwork", s.host_network.is_some()),
            ("hostPID", s.host_pid.is_some()),
            ("hostIPC", s.host_ipc.is_some()),
            ("securityContext", s.security_context.is_some()),
            ("nodeName", s.node_name.is_some()),
            (
                "topologySpreadConstraints",
                s.topology_spread_constraints.is_some(),
            ),
            ("hostAliases", s.host_aliases.is_some()),
            ("dnsConfig", s.dns_config.is_some()),
            ("runtimeClassName", s.runtime_class_name.is_some()),
        ],
    );
    let restart_policy = match s.restart_policy.as_deref() {
        None | Some("Always") => RestartPolicy::Always,
        Some("OnFailure") => RestartPolicy::OnFailure,
        Some("Never") => RestartPolicy::Never,
        Some(other) => {
            f.error(
                format!("{base}.restartPolicy"),
                format!(
                    "unknown restartPolicy {}: use Always, OnFailure or Never",
                    echo(other)
                ),
            );
            RestartPolicy::Always
        }
    };
    let node_selector = s.node_selector.unwrap_or_default();
    labels(&format!("{base}.nodeSelector"), &node_selector, f);
    if s.containers.is_empty() {
        f.error(
            format!("{base}.containers"),
            "at least one container is required",
        );
    }
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut ports: BTreeMap<(u16, Protocol), String> = BTreeMap::new();
    let containers = s
        .containers
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let path = format!("{base}.containers[{i}]");
            if let Some(first) = names.insert(c.name.clone(), i) {
                f.error(
                    format!("{path}.name"),
                    format!(
                        "duplicate container name {} (also containers[{first}])",
                        echo(&c.name)
                    ),
                );
            }
            let container = container(&path, c, f);
            for (j, p) in container.ports.iter().enumerate() {
                let here = format!("{path}.ports[{j}].containerPort");
                if let Some(first) = ports.insert((p.container_port, p.protocol), here.clone()) {
                    f.error(
                        here,
                        format!(
                            "port {}/{} is already used by {first}",
                            p.container_port, p.protocol
                        ),
                    );
                }
            }
            container
        })
        .collect();
    PodTemplate {
        labels: labels_map,
        annotations,
        containers,
        node_selector,
        restart_policy,
    }
}

fn container(path: &str, c: k8s::Container, f: &mut Findings) -> Container {
    f.ignored(
        path,
        &[
            (
                "terminationMessagePath",
                c.termination_message_path.is_some(),
            ),
            (
                "terminationMessagePolicy",
                c.termination_message_policy.is_some(),
            ),
            ("stdin", c.stdin.is_some()),
            ("stdinOnce", c.stdin_once.is_some()),
            ("tty", c.tty.is_some()),
        ],
    );
    f.unsupported(
        path,
        &[
            ("volumeMounts", c.volume_mounts.is_some()),
            ("volumeDevices", c.volume_devices.is_some()),
            ("securityContext", c.security_context.is_some()),
            ("startupProbe", c.startup_probe.is_some()),
            ("lifecycle", c.lifecycle.is_some()),
            ("envFrom", c.env_from.is_some()),
        ],
    );
    if let Err(why) = dns1123_label(&c.name, 63) {
        f.error(
            format!("{path}.name"),
            format!("invalid container name {}: {why}", echo(&c.name)),
        );
    }
    let image = c.image.unwrap_or_default();
    if image.trim().is_empty() {
        f.error(format!("{path}.image"), "required: the image to run");
    }
    capped(&format!("{path}.image"), &image, MAX_IMAGE_BYTES, f);
    let image_pull_policy = match c.image_pull_policy.as_deref() {
        None => None,
        Some("Always") => Some(PullPolicy::Always),
        Some("IfNotPresent") => Some(PullPolicy::IfNotPresent),
        Some("Never") => Some(PullPolicy::Never),
        Some(other) => {
            f.error(
                format!("{path}.imagePullPolicy"),
                format!(
                    "unknown imagePullPolicy {}: use Always, IfNotPresent or Never",
                    echo(other)
                ),
            );
            None
        }
    };
    // The image's default is kept as no policy: a client that writes back what it read (the
    // API shows the default) changes nothing, and the template's hash stays.
    let image_pull_policy = image_pull_policy.filter(|p| *p != crate::image::policy(&image, None));
    let command = c.command.unwrap_or_default();
    argv(&format!("{path}.command"), &command, f);
    let args = c.args.unwrap_or_default();
    argv(&format!("{path}.args"), &args, f);
    if let Some(dir) = &c.working_dir {
        capped(&format!("{path}.workingDir"), dir, MAX_PATH_BYTES, f);
    }
    let env = c
        .env
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let here = format!("{path}.env[{i}]");
            f.unsupported(&here, &[("valueFrom", e.value_from.is_some())]);
            if let Err(why) = env_name(&e.name) {
                f.error(
                    format!("{here}.name"),
                    format!("invalid variable name {}: {why}", echo(&e.name)),
                );
            }
            let value = e.value.unwrap_or_default();
            capped(&format!("{here}.value"), &value, MAX_ENV_VALUE_BYTES, f);
            EnvVar {
                name: e.name,
                value,
            }
        })
        .collect();
    let ports: Vec<ContainerPort> = c
        .ports
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let here = format!("{path}.ports[{i}]");
            f.unsupported(
                &here,
                &[
                    ("hostPort", p.host_port.is_some()),
                    ("hostIP", p.host_ip.is_some()),
                ],
            );
            if let Some(name) = &p.name {
                port_name(&format!("{here}.name"), name, f);
            }
            ContainerPort {
                container_port: port_number(&format!("{here}.containerPort"), p.container_port, f),
                protocol: protocol(&format!("{here}.protocol"), p.protocol.as_deref(), f),
                name: p.name,
            }
        })
        .collect();
    let resources = c
        .resources
        .map(|r| resources(&format!("{path}.resources"), r, f));
    let liveness_probe = c
        .liveness_probe
        .map(|p| probe(&format!("{path}.livenessProbe"), p, &ports, true, f));
    let readiness_probe = c
        .readiness_probe
        .map(|p| probe(&format!("{path}.readinessProbe"), p, &ports, false, f));
    Container {
        name: c.name,
        image,
        command,
        args,
        env,
        ports,
        resources: resources.unwrap_or_default(),
        working_dir: c.working_dir,
        liveness_probe,
        readiness_probe,
        image_pull_policy,
    }
}

/// A probe's port: it must be one the container declares.
fn probe_port(
    field: String,
    value: k8s::IntOrString,
    ports: &[ContainerPort],
    f: &mut Findings,
) -> TargetPort {
    let (target, declared) = match value {
        k8s::IntOrString::Int(n) => {
            let n = port_number(&field, n, f);
            (
                TargetPort::Number(n),
                ports.iter().any(|p| p.container_port == n),
            )
        }
        k8s::IntOrString::String(name) => {
            let declared = ports.iter().any(|p| p.name.as_deref() == Some(&name));
            (TargetPort::Name(name), declared)
        }
    };
    if !declared {
        f.error(
            field,
            format!(
                "port {target} is not among the container's ports: probes reach the \
                 container where a declared port is published"
            ),
        );
    }
    target
}

/// A probe, with Kubernetes' defaults (period 10 s, timeout 1 s, thresholds 1 and 3). Its
/// port must be one the container declares: probes reach the container where that port is
/// published.
fn probe(
    path: &str,
    p: k8s::Probe,
    ports: &[ContainerPort],
    liveness: bool,
    f: &mut Findings,
) -> Probe {
    f.unsupported(
        path,
        &[
            ("grpc", p.grpc.is_some()),
            (
                "terminationGracePeriodSeconds",
                p.termination_grace_period_seconds.is_some(),
            ),
        ],
    );
    let mut actions = Vec::new();
    if let Some(h) = p.http_get {
        let here = format!("{path}.httpGet");
        f.unsupported(
            &here,
            &[
                ("host", h.host.is_some()),
                ("httpHeaders", h.http_headers.is_some()),
            ],
        );
        if let Some(scheme) = h.scheme.filter(|s| s != "HTTP") {
            f.error(
                format!("{here}.scheme"),
                format!("scheme {} is not supported: only HTTP", echo(&scheme)),
            );
        }
        let request_path = h.path.unwrap_or_else(|| "/".into());
        if !request_path.starts_with('/') {
            f.error(format!("{here}.path"), "must start with '/'");
        }
        capped(&format!("{here}.path"), &request_path, MAX_PATH_BYTES, f);
        actions.push(ProbeAction::HttpGet {
            port: probe_port(format!("{here}.port"), h.port, ports, f),
            path: request_path,
        });
    }
    if let Some(t) = p.tcp_socket {
        let here = format!("{path}.tcpSocket");
        f.unsupported(&here, &[("host", t.host.is_some())]);
        actions.push(ProbeAction::TcpSocket {
            port: probe_port(format!("{here}.port"), t.port, ports, f),
        });
    }
    if let Some(e) = p.exec {
        let command = e.command.unwrap_or_default();
        if command.is_empty() {
            f.error(
                format!("{path}.exec.command"),
                "required: the command to run",
            );
        }
        argv(&format!("{path}.exec.command"), &command, f);
        actions.push(ProbeAction::Exec { command });
    }
    if actions.len() != 1 {
        f.error(
            path,
            format!(
                "needs exactly one of httpGet, tcpSocket and exec, found {}",
                actions.len()
            ),
        );
    }
    let mut seconds = |field: &str, value: Option<i64>, default: u32, least: u32| {
        let value = value.unwrap_or(i64::from(default));
        u32::try_from(value)
            .ok()
            .filter(|v| *v >= least)
            .unwrap_or_else(|| {
                f.error(
                    format!("{path}.{field}"),
                    format!("must be at least {least}, got {value}"),
                );
                default
            })
    };
    let probe = Probe {
        initial_delay_seconds: seconds("initialDelaySeconds", p.initial_delay_seconds, 0, 0),
        period_seconds: seconds("periodSeconds", p.period_seconds, 10, 1),
        timeout_seconds: seconds("timeoutSeconds", p.timeout_seconds, 1, 1),
        success_threshold: seconds("successThreshold", p.success_threshold, 1, 1),
        failure_threshold: seconds("failureThreshold", p.failure_threshold, 3, 1),
        action: actions.into_iter().next().unwrap_or(ProbeAction::Exec {
            command: Vec::new(),
        }),
    };
    if liveness && probe.success_threshold != 1 {
        f.error(
            format!("{path}.successThreshold"),
            "must be 1 for a liveness probe",
        );
    }
    probe
}

fn resources(path: &str, r: k8s::Resources, f: &mut Findings) -> Resources {
    f.unsupported(path, &[("claims", r.claims.is_some())]);
    let mut amounts = |which: &str, list: Option<k8s::ResourceList>| {
        let Some(list) = list else {
            return ResourceAmounts::default();
        };
        let here = format!("{path}.{which}");
        f.ignored(
            &here,
            &[("ephemeral-storage", list.ephemeral_storage.is_some())],
        );
        let mut read = |field: &str, raw: Option<_>, parse: fn(&_) -> Result<u64, String>| {
            raw.map_or(0, |raw| {
                parse(&raw).unwrap_or_else(|why| {
                    f.error(format!("{here}.{field}"), why);
                    0
                })
            })
        };
        ResourceAmounts {
            cpu_millis: read("cpu", list.cpu, cpu_millis),
            memory_bytes: read("memory", list.memory, memory_bytes),
        }
    };
    let requests = amounts("requests", r.requests);
    let limits = amounts("limits", r.limits);
    let over = |req: u64, lim: u64| lim != 0 && req > lim;
    if over(requests.cpu_millis, limits.cpu_millis) {
        f.error(format!("{path}.requests.cpu"), "must not exceed limits.cpu");
    }
    if over(requests.memory_bytes, limits.memory_bytes) {
        f.error(
            format!("{path}.requests.memory"),
            "must not exceed limits.memory",
        );
    }
    Resources { requests, limits }
}

fn port_number(path: &str, n: i64, f: &mut Findings) -> u16 {
    match u16::try_from(n) {
        Ok(port) if port > 0 => port,
        _ => {
            f.error(
                path,
                format!("port {n} is out of range: must be between 1 and 65535"),
            );
            0
        }
    }
}

fn protocol(path: &str, given: Option<&str>, f: &mut Findings) -> Protocol {
    match given {
        None | Some("TCP") => Protocol::Tcp,
        Some("UDP") => Protocol::Udp,
        Some(other) => {
            f.error(
                path,
                format!("protocol {} is not supported: use TCP or UDP", echo(other)),
            );
            Protocol::Tcp
        }
    }
}

/// Kubernetes' limit on an object's annotations, keys and values together.
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// Annotation keys are qualified names, as label keys; values are free text, capped in all.
fn annotations(path: &str, annotations: &Labels, f: &mut Findings) {
    for key in annotations.keys() {
        if let Err(why) = label_key(key) {
            f.error(
                format!("{path}.{}", clip(key)),
                format!("invalid annotation key {}: {why}", echo(key)),
            );
        }
    }
    let size: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_ANNOTATIONS_BYTES {
        f.error(
            path,
            format!("{size} bytes in all: at most {MAX_ANNOTATIONS_BYTES}"),
        );
    }
}

fn labels(path: &str, labels: &Labels, f: &mut Findings) {
    for (key, value) in labels {
        if let Err(why) = label_key(key) {
            f.error(
                format!("{path}.{}", clip(key)),
                format!("invalid label key {}: {why}", echo(key)),
            );
        }
        if let Err(why) = label_value(value) {
            f.error(
                format!("{path}.{}", clip(key)),
                format!("invalid label value {}: {why}", echo(value)),
            );
        }
    }
}

/// RFC 1123 label: lower-case alphanumerics and '-', alphanumeric at both ends.
pub fn dns1123_label(s: &str, max: usize) -> Result<(), String> {
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ends = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if s.is_empty()
        || s.len() > max
        || !ok_chars
        || !ends(s.bytes().next())
        || !ends(s.bytes().last())
    {
        return Err(format!(
            "must be lower-case letters, digits and '-', start and end with a letter or digit, \
             and be at most {max} characters (e.g. 'my-app')"
        ));
    }
    Ok(())
}

/// RFC 1035 label: an RFC 1123 label that starts with a letter (Service names).
pub fn dns1035_label(s: &str) -> Result<(), String> {
    dns1123_label(s, 63)?;
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("must start with a lower-case letter (e.g. 'my-service')".into());
    }
    Ok(())
}

fn label_key(key: &str) -> Result<(), String> {
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            let subdomain_ok = !prefix.is_empty()
                && prefix.len() <= 253
                && prefix
                    .split('.')
                    .all(|part| dns1123_label(part, 63).is_ok());
            if !subdomain_ok {
                return Err(format!(
                    "prefix {} must be a DNS subdomain such as example.com",
                    echo(prefix)
                ));
            }
            name
        }
        None => key,
    };
    if name.is_empty() {
        return Err("the name part must not be empty".into());
    }
    label_value(name)
}

fn label_value(value: &str) -> Result<(), String> {
    let ok = |b: u8| b.is_ascii_alphanumeric();
    let fine = value.len() <= 63
        && value
            .bytes()
            .all(|b| ok(b) || b == b'-' || b == b'_' || b == b'.')
        && value.bytes().next().is_none_or(ok)
        && value.bytes().last().is_none_or(ok);
    if fine {
        Ok(())
    } else {
        Err(
            "must be at most 63 letters, digits, '-', '_' or '.', starting and ending \
             with a letter or digit"
                .into(),
        )
    }
}

/// IANA service name, as Kubernetes requires for port names: at most 15 characters,
/// lower-case letters, digits and non-consecutive '-', with at least one letter.
fn port_name(path: &str, name: &str, f: &mut Findings) {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if !ok {
        f.error(
            path,
            format!(
                "invalid port name {}: at most 15 lower-case letters, digits and single \
                 '-', with at least one letter (e.g. 'http')",
                echo(name)
            ),
        );
    }
}

fn env_name(name: &str) -> Result<(), String> {
    let ok = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.';
    let starts = name.bytes().next().is_some_and(|b| !b.is_ascii_digit());
    if starts && name.len() <= MAX_ENV_NAME_BYTES && name.bytes().all(ok) {
        Ok(())
    } else {
        Err(format!(
            "must be at most {MAX_ENV_NAME_BYTES} letters, digits, '_', '-' or '.', \
             not starting with a digit"
        ))
    }
}
