//! OpenAPI v3 documents (and [`v2`] for older clients), as kubectl reads them: `/openapi/v3` lists the group versions,
//! `/openapi/v3/api/v1` and `/openapi/v3/apis/apps/v1` describe each. Two clients read them:
//!
//! - `kubectl apply` (and `create`, `replace`) asks whether the server validates fields
//!   itself: it looks for the `fieldValidation` parameter of the kind's `PATCH` operation. It
//!   finds it, so it sends `?fieldValidation=Strict` and leaves the checking to the server,
//!   which Weeble does anyway (an unknown field is a 422 with its path).
//! - `kubectl explain` reads the schemas of the kinds, by their
//!   `x-kubernetes-group-version-kind`: the fields Weeble supports, with what each does here.
//!
//! The schemas name only the fields a manifest may give Weeble, described as Weeble reads
//! them; the read-only kinds (pods, nodes, endpoints, replica sets) get their top level.

use serde_json::{Map, Value, json};

pub mod v2;

/// A field's type.
#[derive(Clone, Copy)]
enum Ty {
    Str,
    Int,
    Bool,
    /// A number or a text (`80`, `http`, `25%`).
    IntOrStr,
    /// Text keys to text values (labels).
    StrMap,
    StrList,
    /// Another schema of this document, by its short name.
    Ref(&'static str),
    RefList(&'static str),
    /// Anything: a field Weeble writes and never reads.
    Any,
}

/// A schema: its short name, the kind it is (group, version, kind) if it is one, what it
/// is, and its fields (name, type, what it does).
type Schema = (
    &'static str,
    Option<(&'static str, &'static str, &'static str)>,
    &'static str,
    &'static [(&'static str, Ty, &'static str)],
);

use Ty::*;

/// The schemas of the kinds, by their Kubernetes short names.
const SCHEMAS: &[Schema] = &[
    (
        "ObjectMeta",
        None,
        "Standard object metadata.",
        &[
            (
                "name",
                Str,
                "The object's name, unique among its kind in its namespace: a DNS-1123 label.",
            ),
            (
                "namespace",
                Str,
                "Its namespace; `default` if none is given.",
            ),
            (
                "labels",
                StrMap,
                "Labels: selectors and services find pods by them.",
            ),
            (
                "annotations",
                StrMap,
                "Annotations, kept as written. Weeble reads kubernetes.io/change-cause and weeble.io/rollback-on-failure.",
            ),
            (
                "uid",
                Str,
                "The object's identity, the same at every node (read-only).",
            ),
            (
                "resourceVersion",
                Str,
                "This node's version of the object: a watch resumes from it, a replace must give the current one (read-only).",
            ),
            (
                "generation",
                Int,
                "Counts the changes of the spec (read-only).",
            ),
            (
                "creationTimestamp",
                Str,
                "When the object was created, RFC 3339 (read-only).",
            ),
        ],
    ),
    (
        "LabelSelector",
        None,
        "Which pods a deployment owns.",
        &[(
            "matchLabels",
            StrMap,
            "Labels a pod must have: the template's labels must include them.",
        )],
    ),
    (
        "Deployment",
        Some(("apps", "v1", "Deployment")),
        "Replicas of a pod template, placed on the cluster's nodes by rendezvous hashing and rolled out at a pace no leader sets.",
        &[
            ("apiVersion", Str, "apps/v1"),
            ("kind", Str, "Deployment"),
            ("metadata", Ref("ObjectMeta"), "Standard object metadata."),
            ("spec", Ref("DeploymentSpec"), "The desired state."),
            (
                "status",
                Ref("DeploymentStatus"),
                "The rollout as the serving node sees it (read-only).",
            ),
        ],
    ),
    (
        "DeploymentSpec",
        None,
        "What a deployment wants.",
        &[
            ("replicas", Int, "How many pods; 1 if not given."),
            (
                "selector",
                Ref("LabelSelector"),
                "Which pods are the deployment's; the template's labels if not given.",
            ),
            (
                "template",
                Ref("PodTemplateSpec"),
                "The pod each replica runs.",
            ),
            (
                "strategy",
                Ref("DeploymentStrategy"),
                "How a new template replaces the old one.",
            ),
            (
                "minReadySeconds",
                Int,
                "How long a pod must be ready to count as available.",
            ),
            (
                "progressDeadlineSeconds",
                Int,
                "How long a rollout may go without progress before it is reported stalled (600).",
            ),
            (
                "revisionHistoryLimit",
                Int,
                "How many old templates are kept for rollout undo (10).",
            ),
            ("paused", Bool, "A paused deployment starts no rollout."),
        ],
    ),
    (
        "DeploymentStrategy",
        None,
        "How a rollout replaces pods.",
        &[
            ("type", Str, "RollingUpdate (the default) or Recreate."),
            (
                "rollingUpdate",
                Ref("RollingUpdateDeployment"),
                "The pace of a rolling update.",
            ),
        ],
    ),
    (
        "RollingUpdateDeployment",
        None,
        "The pace of a rolling update.",
        &[
            (
                "maxSurge",
                IntOrStr,
                "Pods over the replicas during a rollout: a number or a percentage (25%).",
            ),
            (
                "maxUnavailable",
                IntOrStr,
                "Replicas that may be unavailable during a rollout: a number or a percentage (25%).",
            ),
        ],
    ),
    (
        "DeploymentStatus",
        None,
        "A deployment's rollout as the serving node sees it.",
        &[
            (
                "observedGeneration",
                Int,
                "The generation this status is of.",
            ),
            ("replicas", Int, "Pods of the deployment, surge included."),
            (
                "readyReplicas",
                Int,
                "Replicas running ready on the node placement gives them.",
            ),
            ("availableReplicas", Int, "Pods ready for minReadySeconds."),
            ("updatedReplicas", Int, "Pods of the current template."),
            ("unavailableReplicas", Int, "Replicas not available."),
            ("conditions", Any, "Available and Progressing."),
        ],
    ),
    (
        "PodTemplateSpec",
        None,
        "A pod as replicas are made from it.",
        &[
            ("metadata", Ref("ObjectMeta"), "Its labels and annotations."),
            (
                "spec",
                Ref("PodSpec"),
                "Its containers and where it may run.",
            ),
        ],
    ),
    (
        "PodSpec",
        None,
        "A pod's containers and where it may run.",
        &[
            (
                "containers",
                RefList("Container"),
                "The containers, run on one node's Docker engine.",
            ),
            (
                "nodeSelector",
                StrMap,
                "Labels a node must have (`weeble node --label`) to take the pod.",
            ),
            (
                "restartPolicy",
                Str,
                "Always (the default), OnFailure or Never.",
            ),
        ],
    ),
    (
        "Container",
        None,
        "A container of a pod.",
        &[
            ("name", Str, "Its name, unique in the pod."),
            ("image", Str, "The image, as the node's engine names it."),
            (
                "command",
                StrList,
                "The entrypoint; the image's if not given.",
            ),
            ("args", StrList, "Arguments to the entrypoint."),
            (
                "env",
                RefList("EnvVar"),
                "Environment variables (besides those of the services).",
            ),
            (
                "ports",
                RefList("ContainerPort"),
                "Ports the container listens on: each is published on its node.",
            ),
            (
                "resources",
                Ref("ResourceRequirements"),
                "CPU and memory: requests place the pod, limits bound it.",
            ),
            ("workingDir", Str, "The working directory."),
            (
                "imagePullPolicy",
                Str,
                "Always, IfNotPresent or Never; Always for :latest or no tag, IfNotPresent \
                 otherwise.",
            ),
            (
                "livenessProbe",
                Ref("Probe"),
                "Restarts the container when it fails.",
            ),
            (
                "readinessProbe",
                Ref("Probe"),
                "Takes the pod out of its services while it fails.",
            ),
        ],
    ),
    (
        "EnvVar",
        None,
        "An environment variable.",
        &[("name", Str, "Its name."), ("value", Str, "Its value.")],
    ),
    (
        "ContainerPort",
        None,
        "A port a container listens on.",
        &[
            ("containerPort", Int, "The port."),
            ("name", Str, "A name services may target."),
            ("protocol", Str, "TCP (the default) or UDP."),
        ],
    ),
    (
        "ResourceRequirements",
        None,
        "CPU and memory.",
        &[
            (
                "requests",
                StrMap,
                "cpu and memory the pod needs: a node takes it only with room for them.",
            ),
            (
                "limits",
                StrMap,
                "cpu and memory the container may use at most.",
            ),
        ],
    ),
    (
        "Probe",
        None,
        "A health check: exactly one of httpGet, tcpSocket and exec.",
        &[
            (
                "httpGet",
                Ref("HTTPGetAction"),
                "An HTTP GET that must answer 2xx or 3xx.",
            ),
            (
                "tcpSocket",
                Ref("TCPSocketAction"),
                "A TCP connection that must open.",
            ),
            ("exec", Ref("ExecAction"), "A command that must exit 0."),
            (
                "initialDelaySeconds",
                Int,
                "Seconds before the first check.",
            ),
            ("periodSeconds", Int, "Seconds between checks (10)."),
            ("timeoutSeconds", Int, "Seconds a check may take (1)."),
            ("successThreshold", Int, "Successes in a row to pass (1)."),
            ("failureThreshold", Int, "Failures in a row to fail (3)."),
        ],
    ),
    (
        "HTTPGetAction",
        None,
        "An HTTP GET on the container.",
        &[
            ("path", Str, "The path."),
            (
                "port",
                IntOrStr,
                "A port number or a container port's name.",
            ),
            ("scheme", Str, "HTTP."),
        ],
    ),
    (
        "TCPSocketAction",
        None,
        "A TCP connection to the container.",
        &[(
            "port",
            IntOrStr,
            "A port number or a container port's name.",
        )],
    ),
    (
        "ExecAction",
        None,
        "A command run in the container.",
        &[("command", StrList, "The command and its arguments.")],
    ),
    (
        "Service",
        Some(("", "v1", "Service")),
        "Ports that every node serves on its own address, forwarded round-robin to the ready pods the selector picks, and a DNS name.",
        &[
            ("apiVersion", Str, "v1"),
            ("kind", Str, "Service"),
            ("metadata", Ref("ObjectMeta"), "Standard object metadata."),
            (
                "spec",
                Ref("ServiceSpec"),
                "The ports and the pods they go to.",
            ),
        ],
    ),
    (
        "ServiceSpec",
        None,
        "A service's ports and the pods they go to.",
        &[
            ("selector", StrMap, "Labels of the pods the ports go to."),
            (
                "ports",
                RefList("ServicePort"),
                "The ports served on every node.",
            ),
            (
                "type",
                Str,
                "ClusterIP: each node serves the service on its own service address.",
            ),
            (
                "clusterIP",
                Str,
                "The serving node's service address (read-only).",
            ),
        ],
    ),
    (
        "ServicePort",
        None,
        "A port of a service.",
        &[
            ("name", Str, "Its name."),
            ("port", Int, "The port served."),
            (
                "targetPort",
                IntOrStr,
                "The pods' port: a number or a container port's name.",
            ),
            ("protocol", Str, "TCP (the default) or UDP."),
        ],
    ),
    (
        "Namespace",
        Some(("", "v1", "Namespace")),
        "A namespace: objects in it are named apart from others; deleting it deletes them.",
        &[
            ("apiVersion", Str, "v1"),
            ("kind", Str, "Namespace"),
            ("metadata", Ref("ObjectMeta"), "Its name and labels."),
            ("status", Any, "Always Active (read-only)."),
        ],
    ),
    (
        "Pod",
        Some(("", "v1", "Pod")),
        "A replica of a deployment, where placement puts it and as its node reports it. Deleting one makes its containers again: a new pod of the same name.",
        &[
            ("apiVersion", Str, "v1"),
            ("kind", Str, "Pod"),
            ("metadata", Ref("ObjectMeta"), "Standard object metadata."),
            ("spec", Any, "Its containers and its node."),
            ("status", Any, "As its node reports it."),
        ],
    ),
    (
        "Node",
        Some(("", "v1", "Node")),
        "A member of the cluster (read-only).",
        &[
            ("apiVersion", Str, "v1"),
            ("kind", Str, "Node"),
            ("metadata", Ref("ObjectMeta"), "Standard object metadata."),
            ("spec", Any, "Whether it takes pods."),
            ("status", Any, "Its readiness, address and capacity."),
        ],
    ),
    (
        "Endpoints",
        Some(("", "v1", "Endpoints")),
        "Where a service's ports forward to (read-only).",
        &[
            ("apiVersion", Str, "v1"),
            ("kind", Str, "Endpoints"),
            ("metadata", Ref("ObjectMeta"), "Standard object metadata."),
            (
                "subsets",
                Any,
                "Ready and not-ready addresses, with their ports.",
            ),
        ],
    ),
    (
        "ReplicaSet",
        Some(("apps", "v1", "ReplicaSet")),
        "A revision of a deployment (read-only).",
        &[
            ("apiVersion", Str, "apps/v1"),
            ("kind", Str, "ReplicaSet"),
            (
                "metadata",
                Ref("ObjectMeta"),
                "Standard object metadata, with the revision.",
            ),
            ("spec", Any, "The revision's template."),
            ("status", Any, "The revision's pods."),
        ],
    ),
];

/// The group versions and, per resource, its path, kind and whether it is written.
const RESOURCES: &[(&str, &str, &str, bool)] = &[
    ("api/v1", "pods", "Pod", false),
    ("api/v1", "services", "Service", true),
    ("api/v1", "endpoints", "Endpoints", false),
    ("api/v1", "nodes", "Node", false),
    ("api/v1", "namespaces", "Namespace", true),
    ("apis/apps/v1", "deployments", "Deployment", true),
    ("apis/apps/v1", "replicasets", "ReplicaSet", false),
];

/// The group versions documented.
const GROUP_VERSIONS: [&str; 2] = ["api/v1", "apis/apps/v1"];

/// A schema's full name, as Kubernetes' documents name it.
fn full_name(short: &str) -> String {
    let package = match short {
        "ObjectMeta" | "LabelSelector" => "io.k8s.apimachinery.pkg.apis.meta.v1",
        "Deployment"
        | "DeploymentSpec"
        | "DeploymentStrategy"
        | "RollingUpdateDeployment"
        | "DeploymentStatus"
        | "ReplicaSet" => "io.k8s.api.apps.v1",
        _ => "io.k8s.api.core.v1",
    };
    format!("{package}.{short}")
}

/// Which OpenAPI a document is written in: v3 refers to `#/components/schemas/` and wraps a
/// field's reference in `allOf` (as Kubernetes' v3 documents do, which `kubectl explain`
/// follows); v2 refers to `#/definitions/` directly.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Spec {
    V2,
    V3,
}

fn reference(short: &str, spec: Spec) -> Value {
    let prefix = match spec {
        Spec::V2 => "#/definitions/",
        Spec::V3 => "#/components/schemas/",
    };
    json!({"$ref": format!("{prefix}{}", full_name(short))})
}

fn type_of(ty: Ty, spec: Spec) -> Value {
    let refer = |short| match spec {
        Spec::V2 => reference(short, spec),
        Spec::V3 => json!({"allOf": [reference(short, spec)]}),
    };
    match ty {
        Str => json!({"type": "string"}),
        Int => json!({"type": "integer", "format": "int32"}),
        Bool => json!({"type": "boolean"}),
        // v2 as Kubernetes writes it: a string of format int-or-string, which validation
        // takes a number for.
        IntOrStr if spec == Spec::V2 => json!({"type": "string", "format": "int-or-string"}),
        IntOrStr => json!({"x-kubernetes-int-or-string": true}),
        StrMap => json!({"type": "object", "additionalProperties": {"type": "string"}}),
        StrList => json!({"type": "array", "items": {"type": "string"}}),
        Ref(short) => refer(short),
        RefList(short) => json!({"type": "array", "items": refer(short)}),
        // No type: anything is valid.
        Any => json!({}),
    }
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!([{"group": group, "version": version, "kind": kind}])
}

/// What the schemas say of a field a manifest accepts that they do not describe.
const ACCEPTED: &str = "Accepted as Kubernetes defines it: Weeble does not act on it, warns, \
                        or refuses it with the reason (README, \"Manifest fields\").";

/// Every schema, by full name: the fields described, and every other field a manifest of it
/// accepts ([`weeble_crdt::k8s::accepted_fields`]).
fn schemas(spec: Spec) -> Map<String, Value> {
    SCHEMAS
        .iter()
        .map(|(short, kind, description, fields)| {
            let mut properties: Map<String, Value> = fields
                .iter()
                .map(|(name, ty, description)| {
                    let mut field = type_of(*ty, spec);
                    field["description"] = json!(description);
                    (name.to_string(), field)
                })
                .collect();
            for field in weeble_crdt::k8s::accepted_fields(short).unwrap_or_default() {
                properties
                    .entry(field.to_string())
                    .or_insert_with(|| json!({"description": ACCEPTED}));
            }
            let mut schema = json!({"type": "object", "description": description,
                "properties": properties});
            if let Some((g, v, k)) = kind {
                schema["x-kubernetes-group-version-kind"] = gvk(g, v, k);
            }
            (full_name(short), schema)
        })
        .collect()
}

/// `/openapi/v3`: where each group version's document is. `version` changes with Weeble's,
/// so a client's cache of the documents goes with it.
pub fn root(version: &str) -> Value {
    let paths: Map<String, Value> = GROUP_VERSIONS
        .iter()
        .map(|gv| {
            let url = format!("/openapi/v3/{gv}?hash=weeble-{version}");
            (gv.to_string(), json!({"serverRelativeURL": url}))
        })
        .collect();
    json!({"paths": paths})
}

/// `/openapi/v3/{group_version}` (`api/v1`, `apis/apps/v1`); `None` for another.
pub fn document(group_version: &str) -> Option<Value> {
    if !GROUP_VERSIONS.contains(&group_version) {
        return None;
    }
    let (group, version) = match group_version.strip_prefix("apis/") {
        Some(gv) => gv.split_once('/')?,
        None => ("", "v1"),
    };
    let mut paths = Map::new();
    for &(gv, resource, kind, written) in RESOURCES.iter().filter(|r| r.0 == group_version) {
        let extension = json!({"group": group, "version": version, "kind": kind});
        let schema = reference(kind, Spec::V3);
        let ok = json!({"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}});
        let operation = |id: &str, validated: bool| {
            let mut op = json!({"operationId": id, "responses": ok,
                "x-kubernetes-group-version-kind": extension});
            if validated {
                op["parameters"] = json!([{"name": "fieldValidation", "in": "query",
                    "description": "Strict: an unknown or duplicate field is an error (Weeble always checks so).",
                    "schema": {"type": "string", "uniqueItems": true}}]);
            }
            op
        };
        let namespaced = !matches!(kind, "Node" | "Namespace");
        let base = match namespaced {
            true => format!("/{gv}/namespaces/{{namespace}}/{resource}"),
            false => format!("/{gv}/{resource}"),
        };
        let mut one = json!({"get": operation(&format!("read{kind}"), false)});
        let mut all = json!({"get": operation(&format!("list{kind}"), false)});
        if written {
            one["put"] = operation(&format!("replace{kind}"), true);
            one["patch"] = operation(&format!("patch{kind}"), true);
            one["delete"] = operation(&format!("delete{kind}"), false);
            all["post"] = operation(&format!("create{kind}"), true);
        }
        paths.insert(format!("{base}/{{name}}"), one);
        paths.insert(base, all);
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Weeble", "version": version},
        "paths": paths,
        "components": {"schemas": schemas(Spec::V3)},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_names_a_schema_and_every_kind_is_documented() {
        let schemas = schemas(Spec::V3);
        for gv in GROUP_VERSIONS {
            let doc = document(gv).unwrap();
            let text = doc.to_string();
            for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
                let name = &reference[..reference.find('"').unwrap()];
                assert!(schemas.contains_key(name), "{name} in {gv}");
            }
        }
        for (_, _, kind, _) in RESOURCES {
            let schema = &schemas[&full_name(kind)];
            assert_eq!(schema["x-kubernetes-group-version-kind"][0]["kind"], *kind);
        }
        assert!(document("apis/batch/v1").is_none());
    }

    #[test]
    fn a_written_kinds_patch_takes_field_validation_as_kubectl_looks_for_it() {
        let doc = document("apis/apps/v1").unwrap();
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert_eq!(patch["parameters"][0]["name"], "fieldValidation");
        let pods = document("api/v1").unwrap();
        let pod = &pods["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"];
        assert!(pod.get("patch").is_none(), "pods are read-only");
        let root = root("0.1.0");
        assert_eq!(
            root["paths"]["apis/apps/v1"]["serverRelativeURL"],
            "/openapi/v3/apis/apps/v1?hash=weeble-0.1.0"
        );
    }
}
