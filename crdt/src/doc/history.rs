//! A deployment's revisions in the document, and the writes that make one: a new template
//! (`apply`), an old one again (`undo`), the same one restarted (`restart`).
//!
//! Layout, in the deployment's map: `template` (the current template, JSON), `revision` (its
//! number, an integer) and `revisions`, a map from an old template's hash to its
//! [`Revision`] (JSON). Keyed by hash, two concurrent changes of one template both keep the
//! template they replaced (the same entry, written twice alike) and one of them wins
//! `template` on every node; the loser is simply gone, as one of two concurrent `kubectl
//! apply`s is. A template that comes back (an `undo`, or an apply of an old manifest) leaves
//! `revisions` and takes the next number, as a Kubernetes ReplicaSet does.

use super::*;
use automerge::{ScalarValueRef, ValueRef};

/// The fields of a deployment's history.
const TEMPLATE: &str = "template";
const REVISION: &str = "revision";
const REVISIONS: &str = "revisions";
const CHANGED: &str = "templateChangedMs";
const REVERTED: &str = "reverted";

impl DesiredState {
    /// Makes `template` the deployment's current one (a no-op if it is already): the one it
    /// replaces is kept under its number with the change cause it was applied with, the new
    /// one gets the next number, and only the newest `limit` old revisions stay. Returns
    /// whether the template changed.
    pub(super) fn put_template(
        &mut self,
        obj: &ObjId,
        template: &PodTemplate,
        limit: u32,
    ) -> Result<bool, StateError> {
        let value = json(template);
        let current = self.scalar(obj, TEMPLATE)?;
        if current.as_ref() == Some(&value) {
            return Ok(false);
        }
        self.doc
            .put(obj, CHANGED, ScalarValue::Timestamp(self.now_ms))?;
        if self.doc.get(obj, REVERTED)?.is_some() {
            self.doc.delete(obj, REVERTED)?;
        }
        let Some(ScalarValue::Str(current)) = current else {
            // The first template: revision 1, which a missing `revision` reads as.
            self.doc.put(obj, TEMPLATE, value)?;
            return Ok(true);
        };
        let revisions = match self.doc.get(obj, REVISIONS)? {
            Some((Value::Object(ObjType::Map), id)) => id,
            _ => self.doc.put_object(obj, REVISIONS, ObjType::Map)?,
        };
        let number = self.read_revision(obj);
        let old: PodTemplate = serde_json::from_str(&current)
            .map_err(|e| StateError::Unreadable(format!("{TEMPLATE}: {e}")))?;
        let change_cause = self
            .read_json::<Labels>(obj, "annotations")
            .ok()
            .and_then(|mut a| a.remove(CHANGE_CAUSE));
        let kept = Revision {
            revision: number,
            template: old.clone(),
            change_cause,
        };
        self.doc.put(&revisions, old.hash(), json(&kept))?;
        self.doc.put(obj, TEMPLATE, value)?;
        let mut old = self.read_revisions(&revisions);
        let newest = old.iter().map(|r| r.revision).max().unwrap_or(0);
        self.doc
            .put(obj, REVISION, ScalarValue::Uint(number.max(newest) + 1))?;
        let hash = template.hash();
        old.retain(|r| r.template.hash() != hash);
        if self.doc.get(&revisions, &hash)?.is_some() {
            self.doc.delete(&revisions, &hash)?;
        }
        let gone = old.len().saturating_sub(limit as usize);
        for r in &old[..gone] {
            self.doc.delete(&revisions, r.template.hash())?;
        }
        Ok(true)
    }

    /// The deployment's history as the document holds it (revision 1 for a deployment
    /// written before revisions were kept).
    pub(super) fn read_history(&self, obj: &ObjId) -> History {
        let old = match self.doc.get(obj, REVISIONS) {
            Ok(Some((Value::Object(ObjType::Map), id))) => self.read_revisions(&id),
            _ => Vec::new(),
        };
        let changed_ms = match self.scalar(obj, CHANGED) {
            Ok(Some(ScalarValue::Timestamp(ms))) => ms,
            _ => 0,
        };
        History {
            revision: self.read_revision(obj),
            old,
            changed_ms,
            reverted: self.read_json(obj, REVERTED).ok(),
        }
    }

    fn read_revision(&self, obj: &ObjId) -> u64 {
        match self.scalar(obj, REVISION) {
            Ok(Some(ScalarValue::Uint(n))) => n,
            _ => 1,
        }
    }

    /// The old revisions, oldest first (by number, then hash: two concurrent writers may
    /// have given two templates one number). An entry that cannot be read is left out.
    fn read_revisions(&self, revisions: &ObjId) -> Vec<Revision> {
        let mut old: Vec<Revision> = self
            .doc
            .map_range(revisions, ..)
            .filter_map(|item| match item.value {
                ValueRef::Scalar(ScalarValueRef::Str(s)) => serde_json::from_str(&s).ok(),
                _ => None,
            })
            .collect();
        old.sort_by_cached_key(|r| (r.revision, r.template.hash()));
        old
    }

    /// `rollout undo`: makes an old revision's template current again (the newest old one
    /// if `to` is `None`). The template it replaces is kept like any other.
    pub fn undo(&mut self, key: &ObjectKey, to: Option<u64>) -> Result<Outcome, StateError> {
        let obj = self.deployment_id(key)?;
        let history = self.read_history(&obj);
        let target = match to {
            None => history.old.last(),
            Some(n) => history.by_number(n),
        };
        let Some(target) = target else {
            return Err(StateError::NoRevision {
                key: key.clone(),
                revision: to,
            });
        };
        let (template, revision) = (target.template.clone(), target.revision);
        self.change_template(&obj, &template)?;
        let message = format!("undo Deployment {key} to revision {revision}");
        self.commit(Outcome::RolledBack, message);
        Ok(Outcome::RolledBack)
    }

    /// Reverts a rollout that could not progress (`from_hash`, the template that failed) to
    /// old revision `to`, and says why in the deployment (`reverted`). Unchanged if the
    /// template is no longer `from_hash` (reverted already, or changed since): every node that
    /// sees the failure may ask for it, and two that do write the same.
    pub fn revert(
        &mut self,
        key: &ObjectKey,
        from_hash: &str,
        to: u64,
        reason: &str,
    ) -> Result<Outcome, StateError> {
        let obj = self.deployment_id(key)?;
        let template = self.current_template(&obj)?;
        let history = self.read_history(&obj);
        let target = history.by_number(to).map(|r| r.template.clone());
        let (Some(target), true) = (target, template.hash() == from_hash) else {
            return Ok(Outcome::Unchanged);
        };
        self.change_template(&obj, &target)?;
        let reverted = Reverted {
            from: history.revision,
            to,
            reason: reason.to_string(),
        };
        self.doc.put(&obj, REVERTED, json(&reverted))?;
        let message = format!("revert Deployment {key} to revision {to}: {reason}");
        self.commit(Outcome::RolledBack, message);
        Ok(Outcome::RolledBack)
    }

    /// `rollout restart`: the same template with the annotation kubectl sets
    /// ([`RESTARTED_AT`], `at` an RFC 3339 time), so a new rollout of the same containers.
    pub fn restart(&mut self, key: &ObjectKey, at: &str) -> Result<Outcome, StateError> {
        let obj = self.deployment_id(key)?;
        let mut template = self.current_template(&obj)?;
        template
            .annotations
            .insert(RESTARTED_AT.to_string(), at.to_string());
        if !self.change_template(&obj, &template)? {
            return Ok(Outcome::Unchanged);
        }
        self.commit(
            Outcome::Restarted,
            format!("restart Deployment {key} at {at}"),
        );
        Ok(Outcome::Restarted)
    }

    /// `rollout pause` and `resume`: a paused deployment starts no rollout step.
    pub fn pause(&mut self, key: &ObjectKey, paused: bool) -> Result<Outcome, StateError> {
        let obj = self.deployment_id(key)?;
        let value = ScalarValue::Boolean(paused);
        if self.stored(&obj, "paused")? == Some(value.clone()) {
            return Ok(Outcome::Unchanged);
        }
        self.doc.put(&obj, "paused", value)?;
        self.doc.increment(&obj, "generation", 1)?;
        let outcome = if paused {
            Outcome::Paused
        } else {
            Outcome::Resumed
        };
        self.commit(outcome, format!("{outcome} Deployment {key}"));
        Ok(outcome)
    }

    /// A rollout command's new template: [`Self::put_template`] under the deployment's own
    /// `revisionHistoryLimit`, a spec change (the generation counts it). Whether it changed.
    fn change_template(&mut self, obj: &ObjId, template: &PodTemplate) -> Result<bool, StateError> {
        let limit = self
            .read_int(obj, "revisionHistoryLimit")
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT);
        let changed = self.put_template(obj, template, limit)?;
        if changed {
            self.doc.increment(obj, "generation", 1)?;
        }
        Ok(changed)
    }

    fn current_template(&self, obj: &ObjId) -> Result<PodTemplate, StateError> {
        self.read_json(obj, TEMPLATE)
            .map_err(StateError::Unreadable)
    }

    fn deployment_id(&self, key: &ObjectKey) -> Result<ObjId, StateError> {
        let kind = Kind::Deployment;
        self.object_id(kind, key)?
            .ok_or_else(|| StateError::NotFound {
                kind,
                key: key.clone(),
            })
    }
}
