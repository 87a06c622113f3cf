//! ReplicaSets, as the read view of a deployment's revisions: one per template the history
//! keeps (the current one and the old ones), named and labelled by the template's hash
//! (`pod-template-hash`), owned by the deployment (`ownerReferences`, its uid) and numbered
//! by `deployment.kubernetes.io/revision`. Weeble runs pods from deployments directly and
//! stores no ReplicaSet; these are what `kubectl rollout history` and `rollout undo` read
//! (undo then patches the deployment's template back, as it does against Kubernetes), and
//! what `describe deployment` names.
//!
//! The current revision counts the pods of the current template; an old one shows none (the
//! deployment's own status counts the old pods still running during a rollout).

use super::{LabelSelector, Object, ObjectMeta, PodTemplateSpec, Resource, known_time};
use crate::rollout::Report;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use weeble_crdt::{self as crdt, CHANGE_CAUSE, Labels, REVISION};

/// The label Kubernetes' deployment controller sets.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSet {
    pub api_version: String,
    pub kind: String,
    pub metadata: ReplicaSetMeta,
    pub spec: ReplicaSetSpec,
    pub status: ReplicaSetStatus,
}

/// Object metadata with the owner: the deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSetMeta {
    #[serde(flatten)]
    pub meta: ObjectMeta,
    pub owner_references: Vec<OwnerReference>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerReference {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub controller: bool,
    pub block_owner_deletion: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaSetSpec {
    pub replicas: u32,
    pub selector: LabelSelector,
    pub template: PodTemplateSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSetStatus {
    pub replicas: u32,
    pub ready_replicas: u32,
    pub available_replicas: u32,
    pub observed_generation: u64,
}

impl Resource for ReplicaSet {
    const KIND: &'static str = "ReplicaSet";
    const API_VERSION: &'static str = "apps/v1";
}

impl Object for ReplicaSet {
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata.meta
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata.meta
    }
}

impl ReplicaSet {
    /// The revisions of `d`, oldest first, the current one last, with the current one's pods
    /// as `report` counts them.
    pub fn of(d: &crdt::Deployment, report: &Report) -> Vec<ReplicaSet> {
        let old = d.history.old.iter().map(|r| {
            let cause = r.change_cause.as_ref();
            ReplicaSet::revision(d, &r.template, r.revision, cause, None)
        });
        let cause = d.meta.annotations.get(CHANGE_CAUSE);
        let current =
            ReplicaSet::revision(d, &d.spec.template, d.history.revision, cause, Some(report));
        old.chain([current]).collect()
    }

    /// Revision `revision` of `d`, made of `template`; `report` for the current one.
    fn revision(
        d: &crdt::Deployment,
        template: &crdt::PodTemplate,
        revision: u64,
        change_cause: Option<&String>,
        report: Option<&Report>,
    ) -> ReplicaSet {
        let hash = template.hash();
        let hashed = |labels: &Labels| {
            let mut labels = labels.clone();
            labels.insert(POD_TEMPLATE_HASH.into(), hash.clone());
            labels
        };
        let mut annotations = BTreeMap::from([(REVISION.to_string(), revision.to_string())]);
        annotations.extend(change_cause.map(|c| (CHANGE_CAUSE.to_string(), c.clone())));
        let mut spec_template = PodTemplateSpec::from(template);
        spec_template.metadata.labels = hashed(&template.labels);
        let created_ms = match report {
            Some(_) if d.history.changed_ms > 0 => d.history.changed_ms,
            _ => d.meta.created_ms,
        };
        let progress = report.map(|r| r.progress).unwrap_or_default();
        ReplicaSet {
            api_version: Self::API_VERSION.into(),
            kind: Self::KIND.into(),
            metadata: ReplicaSetMeta {
                meta: ObjectMeta {
                    name: format!("{}-{hash}", d.meta.name),
                    namespace: Some(d.meta.namespace.clone()),
                    labels: Some(hashed(&template.labels)),
                    annotations: Some(annotations),
                    generation: Some(1),
                    uid: Some(crdt::uid_of(&format!("{}/{hash}", d.meta.uid))),
                    creation_timestamp: known_time(created_ms),
                    resource_version: None,
                },
                owner_references: vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    name: d.meta.name.clone(),
                    uid: d.meta.uid.clone(),
                    controller: true,
                    block_owner_deletion: true,
                }],
            },
            spec: ReplicaSetSpec {
                replicas: report.map_or(0, |_| d.spec.replicas),
                selector: LabelSelector {
                    match_labels: hashed(&d.spec.selector),
                },
                template: spec_template,
            },
            status: ReplicaSetStatus {
                replicas: progress.updated + progress.surge,
                ready_replicas: progress.updated_available,
                available_replicas: progress.updated_available,
                observed_generation: 1,
            },
        }
    }
}
