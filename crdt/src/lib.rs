//! Weeble's desired state: Kubernetes manifests in, validated objects out, held in an
//! automerge document that every node merges. Pure: no network, no Docker, no clock.

pub mod doc;
pub mod echo;
pub mod image;
pub mod k8s;
pub mod manifest;
pub mod model;
pub mod quantity;
pub mod validate;

pub use automerge::{ActorId, ChangeHash};
pub use doc::{
    Admission, Admissions, DesiredState, Outcome, PeerSync, PushedImage, Snapshot, StateError,
    uid_of,
};
pub use manifest::{Located, ManifestError, Parsed, parse_manifests};
pub use model::*;
