//! Which peers the cluster admits, kept in the desired state so that every node enforces
//! the same list and an operator changes it at runtime (`weeble node allow|deny PEER`). Each
//! peer is a root key `peers/<peer id>` holding `"allowed"` or `"denied"`: the last writer
//! wins per peer, as for any field.
//!
//! With no peer allowed the cluster is open (any node with the cluster key joins) but for
//! the peers denied; once one is allowed, only the peers allowed are admitted.

use super::{DesiredState, Outcome, ROOT, StateError};
use automerge::ScalarValue;
use automerge::transaction::Transactable;
use std::collections::BTreeMap;

/// The prefix of a peer's root key.
pub(super) const PREFIX: &str = "peers/";

/// What the cluster says of one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Admission {
    Allowed,
    Denied,
}

impl std::fmt::Display for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.stored())
    }
}

impl Admission {
    fn stored(self) -> &'static str {
        match self {
            Admission::Allowed => "allowed",
            Admission::Denied => "denied",
        }
    }

    pub(super) fn read(value: &ScalarValue) -> Result<Self, String> {
        match value {
            ScalarValue::Str(s) if s.as_str() == "allowed" => Ok(Admission::Allowed),
            ScalarValue::Str(s) if s.as_str() == "denied" => Ok(Admission::Denied),
            other => Err(format!("expected \"allowed\" or \"denied\", found {other}")),
        }
    }
}

/// The peers the cluster allows or denies, by peer id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admissions {
    entries: BTreeMap<String, Admission>,
    /// How many are allowed: with none, the cluster is open.
    allowed: usize,
}

impl Admissions {
    /// Whether the cluster admits `peer_id`: not denied, and allowed if any peer is.
    pub fn admits(&self, peer_id: &str) -> bool {
        match self.entries.get(peer_id) {
            Some(Admission::Allowed) => true,
            Some(Admission::Denied) => false,
            None => self.allowed == 0,
        }
    }

    /// Whether the cluster admits only the peers allowed.
    pub fn is_closed(&self) -> bool {
        self.allowed > 0
    }

    pub fn get(&self, peer_id: &str) -> Option<Admission> {
        self.entries.get(peer_id).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, Admission)> {
        self.entries.iter().map(|(p, a)| (p.as_str(), *a))
    }

    pub(super) fn set(&mut self, peer_id: &str, admission: Option<Admission>) {
        let old = match admission {
            Some(a) => self.entries.insert(peer_id.to_string(), a),
            None => self.entries.remove(peer_id),
        };
        if old == Some(Admission::Allowed) {
            self.allowed -= 1;
        }
        if admission == Some(Admission::Allowed) {
            self.allowed += 1;
        }
    }
}

impl DesiredState {
    /// Allows or denies each of `peers` (libp2p peer ids); an outcome for each, `Unchanged`
    /// where the document said so already. One change for all of them.
    pub fn admit(
        &mut self,
        peers: &[String],
        admission: Admission,
    ) -> Result<Vec<Outcome>, StateError> {
        let value = ScalarValue::Str(admission.stored().into());
        let mut outcomes = Vec::with_capacity(peers.len());
        for peer in peers {
            let root = format!("{PREFIX}{peer}");
            if self.scalar(&ROOT, &root)? == Some(value.clone()) {
                outcomes.push(Outcome::Unchanged);
                continue;
            }
            self.doc.put(ROOT, root, value.clone())?;
            outcomes.push(match admission {
                Admission::Allowed => Outcome::Allowed,
                Admission::Denied => Outcome::Denied,
            });
        }
        let changed = outcomes.iter().find(|o| **o != Outcome::Unchanged);
        if let Some(&outcome) = changed {
            self.commit(outcome, format!("{outcome} peers {}", peers.join(", ")));
        }
        Ok(outcomes)
    }
}
