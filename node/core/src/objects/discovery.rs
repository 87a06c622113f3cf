//! Kubernetes' discovery documents, which kubectl and the client libraries read before
//! anything else: `/version`, the groups (`/api`, `/apis`) and the resources of each group
//! version (`/api/v1`, `/apis/apps/v1`, `/apis/weeble.io/v1`), with the verbs Weeble serves
//! for each. What a resource lists here is what the API answers; a verb it does not list is
//! 405 there.

use serde::{Deserialize, Serialize};

/// The Kubernetes minor version Weeble's API speaks (what `/version` says; kubectl warns
/// when it is more than one minor away from its own).
pub const KUBERNETES_MINOR: &str = "32";

/// `/version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Version {
    pub major: String,
    pub minor: String,
    pub git_version: String,
    pub git_commit: String,
    pub git_tree_state: String,
    pub build_date: String,
    pub go_version: String,
    pub compiler: String,
    pub platform: String,
}

/// `/api`: the core group's versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiVersions {
    pub kind: String,
    pub versions: Vec<String>,
    #[serde(rename = "serverAddressByClientCIDRs")]
    pub server_address_by_client_cidrs: Vec<ServerAddress>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerAddress {
    #[serde(rename = "clientCIDR")]
    pub client_cidr: String,
    pub server_address: String,
}

/// `/apis`: the named groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiGroupList {
    pub kind: String,
    pub api_version: String,
    pub groups: Vec<ApiGroup>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiGroup {
    pub name: String,
    pub versions: Vec<GroupVersion>,
    pub preferred_version: GroupVersion,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupVersion {
    pub group_version: String,
    pub version: String,
}

/// `/api/v1`, `/apis/GROUP/VERSION`: the resources of one group version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiResourceList {
    pub kind: String,
    pub api_version: String,
    pub group_version: String,
    pub resources: Vec<ApiResource>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiResource {
    pub name: String,
    pub singular_name: String,
    pub namespaced: bool,
    /// A subresource's own group and version, where they are not the list's (`Scale` is
    /// `autoscaling/v1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub kind: String,
    pub verbs: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub short_names: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub categories: Vec<String>,
}

/// One resource as the tables below give it: (plural, singular, namespaced, kind, verbs,
/// short names, in the category `all`).
type Row = (
    &'static str,
    &'static str,
    bool,
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    bool,
);

/// The verbs of a resource clients read and watch.
const READ: &[&str] = &["get", "list", "watch"];
/// The verbs of a resource the desired state stores.
const WRITE: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

const CORE: &[Row] = &[
    (
        "pods",
        "pod",
        true,
        "Pod",
        &["delete", "get", "list", "watch"],
        &["po"],
        true,
    ),
    ("pods/log", "", true, "Pod", &["get"], &[], false),
    (
        "services",
        "service",
        true,
        "Service",
        WRITE,
        &["svc"],
        true,
    ),
    (
        "endpoints",
        "endpoints",
        true,
        "Endpoints",
        READ,
        &["ep"],
        false,
    ),
    ("events", "event", true, "Event", READ, &["ev"], false),
    (
        "namespaces",
        "namespace",
        false,
        "Namespace",
        WRITE,
        &["ns"],
        false,
    ),
    ("nodes", "node", false, "Node", READ, &["no"], false),
];

const APPS: &[Row] = &[
    (
        "deployments",
        "deployment",
        true,
        "Deployment",
        WRITE,
        &["deploy"],
        true,
    ),
    (
        "replicasets",
        "replicaset",
        true,
        "ReplicaSet",
        READ,
        &["rs"],
        true,
    ),
    (
        "deployments/scale",
        "",
        true,
        "Scale",
        &["get", "update", "patch"],
        &[],
        false,
    ),
];

const WEEBLE: &[Row] = &[
    ("peers", "peer", false, "Peer", READ, &[], false),
    ("images", "image", false, "Image", READ, &[], false),
];

/// The named groups and their one version each.
const GROUPS: &[(&str, &str, &[Row])] = &[("apps", "v1", APPS), ("weeble.io", "v1", WEEBLE)];

/// `/version`: Kubernetes' minor that the API speaks, and Weeble's own version after a `+`.
pub fn version(weeble: &str) -> Version {
    Version {
        major: "1".into(),
        minor: KUBERNETES_MINOR.into(),
        git_version: format!("v1.{KUBERNETES_MINOR}.0+weeble-{weeble}"),
        git_commit: String::new(),
        git_tree_state: "clean".into(),
        build_date: String::new(),
        go_version: String::new(),
        compiler: "rustc".into(),
        platform: format!("{}/{}", std::env::consts::OS, arch()),
    }
}

/// The architecture as Go names it (`amd64`, `arm64`), as `/version` says it.
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `/api`, answered at `server_address` (the address the request came to).
pub fn core_versions(server_address: &str) -> ApiVersions {
    ApiVersions {
        kind: "APIVersions".into(),
        versions: vec!["v1".into()],
        server_address_by_client_cidrs: vec![ServerAddress {
            client_cidr: "0.0.0.0/0".into(),
            server_address: server_address.into(),
        }],
    }
}

/// `/apis`.
pub fn groups() -> ApiGroupList {
    let group = |(name, version, _): &(&str, &str, &[Row])| {
        let preferred = GroupVersion {
            group_version: format!("{name}/{version}"),
            version: version.to_string(),
        };
        ApiGroup {
            name: name.to_string(),
            versions: vec![preferred.clone()],
            preferred_version: preferred,
        }
    };
    ApiGroupList {
        kind: "APIGroupList".into(),
        api_version: "v1".into(),
        groups: GROUPS.iter().map(group).collect(),
    }
}

/// The resources of `group_version` (`v1`, `apps/v1`, `weeble.io/v1`), if Weeble serves it.
pub fn resources(group_version: &str) -> Option<ApiResourceList> {
    let rows = match group_version {
        "v1" => CORE,
        other => {
            let (group, version) = other.split_once('/')?;
            let found = GROUPS.iter().find(|(g, v, _)| *g == group && *v == version);
            found.map(|(_, _, rows)| *rows)?
        }
    };
    let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
    let resource = |&(name, singular, namespaced, kind, verbs, short, all): &Row| ApiResource {
        name: name.into(),
        singular_name: singular.into(),
        namespaced,
        group: (kind == "Scale").then(|| "autoscaling".into()),
        version: (kind == "Scale").then(|| "v1".into()),
        kind: kind.into(),
        verbs: strings(verbs),
        short_names: strings(short),
        categories: if all { vec!["all".into()] } else { vec![] },
    };
    Some(ApiResourceList {
        kind: "APIResourceList".into(),
        api_version: "v1".into(),
        group_version: group_version.into(),
        resources: rows.iter().map(resource).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_group_version_lists_its_resources_with_kubernetes_names() {
        let core = resources("v1").unwrap();
        let pods = core.resources.iter().find(|r| r.name == "pods").unwrap();
        assert_eq!((pods.kind.as_str(), pods.namespaced), ("Pod", true));
        assert_eq!(pods.short_names, ["po"]);
        assert_eq!(pods.categories, ["all"]);
        let apps = resources("apps/v1").unwrap();
        assert!(apps.resources.iter().any(|r| r.name == "deployments/scale"));
        assert!(resources("batch/v1").is_none());
        assert!(resources("apps/v2").is_none());
        let listed: Vec<String> = groups().groups.iter().map(|g| g.name.clone()).collect();
        assert_eq!(listed, ["apps", "weeble.io"]);
        for g in groups().groups {
            assert!(
                resources(&g.preferred_version.group_version).is_some(),
                "{}",
                g.name
            );
        }
        let json = serde_json::to_value(core_versions("10.0.0.1:7070")).unwrap();
        assert_eq!(
            json["serverAddressByClientCIDRs"][0]["clientCIDR"],
            "0.0.0.0/0"
        );
        assert_eq!(version("0.1.0").git_version, "v1.32.0+weeble-0.1.0");
    }
}
