//! Kubernetes wire shapes for `apps/v1` Deployment and `v1` Service, as an operator writes them.
//!
//! Every struct denies unknown fields, so a misspelt field is an error with its path. Fields
//! Kubernetes defines but Weeble does not act on are listed explicitly as [`Present`]: the
//! validator warns about those whose absence changes nothing that runs, and rejects the rest.
//! Nothing is silently dropped.

use crate::model::Labels;
use crate::quantity::RawQuantity;
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny};

/// A field whose value Weeble never reads; it only matters whether it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Present;

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(deserializer).map(|_| Present)
    }
}

/// `kind` and `apiVersion` alone: read first to choose the shape for the rest.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeMeta {
    pub api_version: Option<String>,
    pub kind: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub labels: Option<Labels>,
    pub annotations: Option<Labels>,
    pub uid: Option<Present>,
    pub resource_version: Option<Present>,
    pub generation: Option<Present>,
    pub creation_timestamp: Option<Present>,
    pub managed_fields: Option<Present>,
    pub generate_name: Option<Present>,
    pub owner_references: Option<Present>,
    pub finalizers: Option<Present>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeploymentManifest {
    pub api_version: Option<String>,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: DeploymentSpec,
    pub status: Option<Present>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeploymentSpec {
    pub replicas: Option<i64>,
    pub selector: Option<LabelSelector>,
    pub template: PodTemplate,
    pub strategy: Option<Strategy>,
    pub min_ready_seconds: Option<i64>,
    pub revision_history_limit: Option<i64>,
    pub progress_deadline_seconds: Option<i64>,
    pub paused: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSelector {
    pub match_labels: Option<Labels>,
    pub match_expressions: Option<Present>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Strategy {
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub rolling_update: Option<RollingUpdate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RollingUpdate {
    pub max_surge: Option<IntOrString>,
    pub max_unavailable: Option<IntOrString>,
}

/// Kubernetes' IntOrString: `targetPort: 80` or `targetPort: http`, `maxSurge: 25%`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i64),
    String(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodTemplate {
    pub metadata: Option<TemplateMeta>,
    pub spec: PodSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TemplateMeta {
    pub labels: Option<Labels>,
    pub annotations: Option<Labels>,
    pub name: Option<Present>,
    pub creation_timestamp: Option<Present>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodSpec {
    pub containers: Vec<Container>,
    pub node_selector: Option<Labels>,
    pub restart_policy: Option<String>,
    // Accepted with a warning: nothing that runs depends on them here.
    pub termination_grace_period_seconds: Option<Present>,
    pub dns_policy: Option<Present>,
    pub scheduler_name: Option<Present>,
    pub service_account_name: Option<Present>,
    pub service_account: Option<Present>,
    pub automount_service_account_token: Option<Present>,
    pub enable_service_links: Option<Present>,
    pub priority_class_name: Option<Present>,
    pub image_pull_secrets: Option<Present>,
    // Rejected: ignoring them would change what runs.
    pub volumes: Option<Present>,
    pub affinity: Option<Present>,
    pub tolerations: Option<Present>,
    pub init_containers: Option<Present>,
    pub host_network: Option<Present>,
    #[serde(rename = "hostPID")]
    pub host_pid: Option<Present>,
    #[serde(rename = "hostIPC")]
    pub host_ipc: Option<Present>,
    pub security_context: Option<Present>,
    pub node_name: Option<Present>,
    pub topology_spread_constraints: Option<Present>,
    pub host_aliases: Option<Present>,
    pub dns_config: Option<Present>,
    pub runtime_class_name: Option<Present>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    pub image: Option<String>,
    pub command: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    pub env: Option<Vec<EnvVar>>,
    pub ports: Option<Vec<ContainerPort>>,
    pub resources: Option<Resources>,
    pub working_dir: Option<String>,
    pub image_pull_policy: Option<String>,
    // Accepted with a warning.
    pub termination_message_path: Option<Present>,
    pub termination_message_policy: Option<Present>,
    pub stdin: Option<Present>,
    pub stdin_once: Option<Present>,
    pub tty: Option<Present>,
    // Rejected.
    pub volume_mounts: Option<Present>,
    pub volume_devices: Option<Present>,
    pub security_context: Option<Present>,
    pub liveness_probe: Option<Probe>,
    pub readiness_probe: Option<Probe>,
    pub startup_probe: Option<Present>,
    pub lifecycle: Option<Present>,
    pub env_from: Option<Present>,
}

/// A liveness or readiness probe: one action and its timing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Probe {
    pub http_get: Option<HttpGetAction>,
    pub tcp_socket: Option<TcpSocketAction>,
    pub exec: Option<ExecAction>,
    pub initial_delay_seconds: Option<i64>,
    pub period_seconds: Option<i64>,
    pub timeout_seconds: Option<i64>,
    pub success_threshold: Option<i64>,
    pub failure_threshold: Option<i64>,
    // Rejected.
    pub grpc: Option<Present>,
    pub termination_grace_period_seconds: Option<Present>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpGetAction {
    pub path: Option<String>,
    pub port: IntOrString,
    pub scheme: Option<String>,
    // Rejected.
    pub host: Option<Present>,
    pub http_headers: Option<Present>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpSocketAction {
    pub port: IntOrString,
    // Rejected.
    pub host: Option<Present>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecAction {
    pub command: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvVar {
    pub name: String,
    pub value: Option<String>,
    pub value_from: Option<Present>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContainerPort {
    pub container_port: i64,
    pub name: Option<String>,
    pub protocol: Option<String>,
    pub host_port: Option<Present>,
    #[serde(rename = "hostIP")]
    pub host_ip: Option<Present>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    pub requests: Option<ResourceList>,
    pub limits: Option<ResourceList>,
    pub claims: Option<Present>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceList {
    pub cpu: Option<RawQuantity>,
    pub memory: Option<RawQuantity>,
    #[serde(rename = "ephemeral-storage")]
    pub ephemeral_storage: Option<Present>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamespaceManifest {
    pub api_version: Option<String>,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: Option<Present>,
    pub status: Option<Present>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceManifest {
    pub api_version: Option<String>,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: ServiceSpec,
    pub status: Option<Present>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceSpec {
    pub ports: Vec<ServicePort>,
    pub selector: Option<Labels>,
    #[serde(rename = "type")]
    pub type_: Option<String>,
    // Accepted with a warning.
    #[serde(rename = "clusterIP")]
    pub cluster_ip: Option<Present>,
    #[serde(rename = "clusterIPs")]
    pub cluster_ips: Option<Present>,
    pub ip_families: Option<Present>,
    pub ip_family_policy: Option<Present>,
    pub internal_traffic_policy: Option<Present>,
    pub external_traffic_policy: Option<Present>,
    /// `None` is what Weeble does; `ClientIP` is rejected.
    pub session_affinity: Option<String>,
    // Rejected.
    #[serde(rename = "externalIPs")]
    pub external_ips: Option<Present>,
    #[serde(rename = "loadBalancerIP")]
    pub load_balancer_ip: Option<Present>,
    pub publish_not_ready_addresses: Option<Present>,
    pub external_name: Option<Present>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServicePort {
    pub port: i64,
    pub target_port: Option<IntOrString>,
    pub protocol: Option<String>,
    pub name: Option<String>,
    pub app_protocol: Option<Present>,
    pub node_port: Option<Present>,
}

/// The fields a manifest struct accepts, as a manifest writes them (`containerPort`), read
/// from its `Deserialize`: what the API's OpenAPI schemas list, so that a client validating
/// against them (kubectl 1.20) refuses no field Weeble takes.
fn fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    /// A deserializer that only notes the fields it is asked for.
    struct Fields(&'static [&'static str]);
    impl<'de> Deserializer<'de> for &mut Fields {
        type Error = serde::de::value::Error;

        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = fields;
            Err(serde::de::Error::custom("only the fields were wanted"))
        }

        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self,
            _: V,
        ) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut found = Fields(&[]);
    let _ = T::deserialize(&mut found);
    found.0
}

/// The fields a manifest accepts for the Kubernetes schema `name` (`Container`,
/// `DeploymentSpec`, …); `None` for one no manifest writes.
pub fn accepted_fields(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "ObjectMeta" => fields::<ObjectMeta>(),
        "LabelSelector" => fields::<LabelSelector>(),
        "Deployment" => fields::<DeploymentManifest>(),
        "DeploymentSpec" => fields::<DeploymentSpec>(),
        "DeploymentStrategy" => fields::<Strategy>(),
        "RollingUpdateDeployment" => fields::<RollingUpdate>(),
        "PodTemplateSpec" => fields::<PodTemplate>(),
        "PodSpec" => fields::<PodSpec>(),
        "Container" => fields::<Container>(),
        "Probe" => fields::<Probe>(),
        "HTTPGetAction" => fields::<HttpGetAction>(),
        "TCPSocketAction" => fields::<TcpSocketAction>(),
        "ExecAction" => fields::<ExecAction>(),
        "EnvVar" => fields::<EnvVar>(),
        "ContainerPort" => fields::<ContainerPort>(),
        "ResourceRequirements" => fields::<Resources>(),
        "Service" => fields::<ServiceManifest>(),
        "ServiceSpec" => fields::<ServiceSpec>(),
        "ServicePort" => fields::<ServicePort>(),
        "Namespace" => fields::<NamespaceManifest>(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fields_a_manifest_accepts_are_read_from_its_structs() {
        let container = accepted_fields("Container").unwrap();
        for field in [
            "name",
            "image",
            "imagePullPolicy",
            "livenessProbe",
            "envFrom",
        ] {
            assert!(container.contains(&field), "{field}: {container:?}");
        }
        assert!(
            accepted_fields("PodSpec")
                .unwrap()
                .contains(&"terminationGracePeriodSeconds")
        );
        assert!(accepted_fields("Pod").is_none());
    }
}
