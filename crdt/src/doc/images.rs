//! Images pushed into the cluster (`weeble image push`), kept in the desired state: every
//! node an image is for fetches it from the nodes that hold it, including a node that was
//! away or joins later. Each is a root key `images/<name>` holding a JSON string (what
//! [`PushedImage`] serializes to): the engine id the name must have, the nodes it is for
//! (none: every node), and the node that took the push, which holds it from the start. The
//! last writer wins per name, as for any field.

use super::{DesiredState, Outcome, ROOT, StateError};
use automerge::ScalarValue;
use automerge::transaction::Transactable;
use serde::{Deserialize, Serialize};

/// The prefix of a pushed image's root key.
pub(super) const PREFIX: &str = "images/";

/// The most images the document lists as pushed.
pub const MAX_PUSHED_IMAGES: usize = 256;
/// The most nodes one push names.
pub const MAX_PUSH_NODES: usize = 1024;

/// One image pushed into the cluster, by its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushedImage {
    /// The engine's id of the image (`sha256:` and the hex of its config's sha256).
    pub id: String,
    /// The nodes it is for; none: every node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// The node that took the push.
    pub seed: String,
}

impl PushedImage {
    /// Whether node `node` is to hold it (the node that took it always does).
    pub fn is_for(&self, node: &str) -> bool {
        self.seed == node || self.nodes.is_empty() || self.nodes.iter().any(|n| n == node)
    }

    /// The stored value read; an id that is not one (written by a broken or hostile peer:
    /// nodes use it in file names and engine calls) is refused.
    pub(super) fn read(value: &ScalarValue) -> Result<Self, String> {
        let image: PushedImage = match value {
            ScalarValue::Str(json) => serde_json::from_str(json).map_err(|e| e.to_string())?,
            other => return Err(format!("expected a JSON string, found {other}")),
        };
        match crate::image::is_id(&image.id) {
            true => Ok(image),
            false => Err(format!("{:?} is not an image id", image.id)),
        }
    }
}

impl DesiredState {
    /// Records that image `name` was pushed, as `image` says.
    pub fn push_image(&mut self, name: &str, image: &PushedImage) -> Result<Outcome, StateError> {
        let root = format!("{PREFIX}{name}");
        let json = serde_json::to_string(image).expect("a pushed image serializes");
        let before = self.scalar(&ROOT, &root)?;
        let outcome = match before.as_ref().map(PushedImage::read) {
            Some(Ok(stored)) if stored == *image => return Ok(Outcome::Unchanged),
            Some(_) => Outcome::Configured,
            None => Outcome::Created,
        };
        self.doc.put(ROOT, root, ScalarValue::Str(json.into()))?;
        self.commit(outcome, format!("push image {name}"));
        Ok(outcome)
    }
}
