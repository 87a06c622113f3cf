//! The patches Kubernetes' clients send (`PATCH` with one of four content types), applied to
//! an object as the API serves it (JSON); the result is then validated as a manifest:
//!
//! - `application/json-patch+json`: RFC 6902 operations (`kubectl patch --type json`, and
//!   `rollout undo`, which replaces the template);
//! - `application/merge-patch+json`: RFC 7386 (`kubectl patch --type merge`, `label`,
//!   `annotate`);
//! - `application/strategic-merge-patch+json`: Kubernetes' merge, where lists of objects with a
//!   merge key (containers by `name`, ports by `containerPort`/`port`, …) are merged item by
//!   item, with the `$patch` and `$deleteFromPrimitiveList` directives (client-side `kubectl
//!   apply`, `set image`, `rollout restart`, `scale` of old clients);
//! - `application/apply-patch+yaml`: server-side apply, read as a strategic merge of the
//!   manifest given (Weeble keeps no field managers: a field left out of a later apply is
//!   kept, not removed; README, "kubectl").

use serde_json::{Map, Value};

/// One of the four kinds of patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    /// The kind a `Content-Type` names (parameters after `;` ignored), if it is a patch.
    pub fn of(content_type: &str) -> Option<Self> {
        match content_type.split(';').next().unwrap_or_default().trim() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

/// Applies `patch` (the request's body, parsed) to `target`; the error says what is wrong.
pub fn apply(target: &mut Value, patch: &Value, kind: PatchType) -> Result<(), String> {
    match kind {
        PatchType::Json => json_patch(target, patch),
        PatchType::Merge => {
            merge(target, patch, false);
            Ok(())
        }
        PatchType::Strategic | PatchType::Apply => {
            merge(target, patch, true);
            Ok(())
        }
    }
}

/// The key that identifies the items of list `field` in a strategic merge, for lists of
/// objects whose items hold `sample`'s fields; `None`: the list is replaced whole.
fn merge_key(field: &str, sample: &Map<String, Value>) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets" => "name",
        "volumeMounts" => "mountPath",
        "ports" if sample.contains_key("containerPort") => "containerPort",
        "ports" => "port",
        "conditions" => "type",
        "hostAliases" => "ip",
        "ownerReferences" => "uid",
        _ => return None,
    })
}

/// RFC 7386's merge, or with `strategic` Kubernetes' strategic merge.
fn merge(target: &mut Value, patch: &Value, strategic: bool) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if strategic && patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut whole = patch.clone();
        whole.remove("$patch");
        *target = Value::Object(whole);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let object = target.as_object_mut().expect("made an object just above");
    for (key, value) in patch {
        if strategic && key.starts_with('$') {
            if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/")
                && let (Some(Value::Array(list)), Value::Array(gone)) =
                    (object.get_mut(field), value)
            {
                list.retain(|item| !gone.contains(item));
            }
            // `$setElementOrder/…` only orders what the patch names; `$retainKeys` is applied
            // once the other fields are merged.
            continue;
        }
        match value {
            Value::Null => {
                object.remove(key);
            }
            Value::Object(_)
                if strategic && value.get("$patch").and_then(Value::as_str) == Some("delete") =>
            {
                object.remove(key);
            }
            Value::Array(items) if strategic => {
                let current = object.entry(key.clone()).or_insert(Value::Array(vec![]));
                merge_list(key, current, items);
            }
            Value::Object(_) => merge(
                object.entry(key.clone()).or_insert(Value::Null),
                value,
                strategic,
            ),
            _ => {
                object.insert(key.clone(), value.clone());
            }
        }
    }
    // `$retainKeys`: the object keeps only the fields named (a strategy switched to Recreate
    // loses its rollingUpdate).
    if let Some(Value::Array(kept)) = patch.get("$retainKeys").filter(|_| strategic) {
        object.retain(|key, _| kept.iter().any(|k| k.as_str() == Some(key)));
    }
}

/// A strategic merge of list `field`: item by item on its merge key, or replaced whole.
fn merge_list(field: &str, current: &mut Value, items: &[Value]) {
    // `{"$patch": "replace"}` among the items: the list is the other items, whole.
    let replace = |item: &Value| item.get("$patch").and_then(Value::as_str) == Some("replace");
    if items.iter().any(replace) {
        *current = Value::Array(items.iter().filter(|i| !replace(i)).cloned().collect());
        return;
    }
    let key = items
        .iter()
        .find_map(Value::as_object)
        .and_then(|sample| merge_key(field, sample));
    let (Some(key), Value::Array(list)) = (key, &mut *current) else {
        *current = Value::Array(items.to_vec());
        return;
    };
    for item in items {
        let Some(id) = item.get(key) else {
            list.push(item.clone());
            continue;
        };
        let at = list.iter().position(|old| old.get(key) == Some(id));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (at, delete) {
            (Some(at), true) => drop(list.remove(at)),
            (None, true) => {}
            (Some(at), false) => merge(&mut list[at], item, true),
            (None, false) => {
                let mut new = Value::Null;
                merge(&mut new, item, true);
                list.push(new);
            }
        }
    }
}

/// The most bytes a JSON patch's `copy` operations may add in all: copies could otherwise
/// double a document with each operation of a small body.
const MAX_COPIED: usize = 4 << 20;

/// RFC 6902: `add`, `remove`, `replace`, `move`, `copy` and `test`, all or nothing.
fn json_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let Value::Array(operations) = patch else {
        return Err("a JSON patch is a list of operations".into());
    };
    let mut result = target.clone();
    let mut copied = 0;
    for (i, operation) in operations.iter().enumerate() {
        let field = |name: &str| -> Result<&Value, String> {
            operation
                .get(name)
                .ok_or_else(|| format!("operation {i}: no {name:?}"))
        };
        let text = |name: &str| -> Result<&str, String> {
            field(name)?
                .as_str()
                .ok_or_else(|| format!("operation {i}: {name:?} is not text"))
        };
        let (op, path) = (text("op")?, text("path")?);
        let done = match op {
            "add" => add(&mut result, path, field("value")?.clone()),
            "remove" => remove(&mut result, path).map(drop),
            "replace" => remove(&mut result, path)
                .and_then(|_| add(&mut result, path, field("value")?.clone())),
            "move" => {
                let from = text("from")?;
                remove(&mut result, from).and_then(|v| add(&mut result, path, v))
            }
            "copy" => {
                let from = text("from")?;
                copied += result.pointer(from).map_or(0, |v| v.to_string().len());
                if copied > MAX_COPIED {
                    return Err(format!(
                        "operation {i}: the copies would add over {MAX_COPIED} bytes"
                    ));
                }
                let value = result
                    .pointer(from)
                    .cloned()
                    .ok_or_else(|| format!("{from:?} is not there"));
                value.and_then(|v| add(&mut result, path, v))
            }
            "test" => match result.pointer(path) == Some(field("value")?) {
                true => Ok(()),
                false => Err(format!(
                    "test failed: {path:?} does not hold the value given"
                )),
            },
            other => Err(format!(
                "{other:?} is not an operation (add, remove, replace, move, copy, test)"
            )),
        };
        done.map_err(|e| format!("operation {i} ({op} {path:?}): {e}"))?;
    }
    *target = result;
    Ok(())
}

/// A JSON pointer's parent and last token (`~1` and `~0` undone).
fn split_pointer(path: &str) -> Result<(&str, String), String> {
    if path.is_empty() {
        return Err("the whole document cannot be patched".into());
    }
    let at = path
        .rfind('/')
        .ok_or_else(|| format!("{path:?} is not a JSON pointer"))?;
    let last = path[at + 1..].replace("~1", "/").replace("~0", "~");
    Ok((&path[..at], last))
}

fn add(target: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let (parent, last) = split_pointer(path)?;
    match target.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.insert(last, value);
            Ok(())
        }
        Some(Value::Array(list)) => {
            let at = match last.as_str() {
                "-" => list.len(),
                index => index
                    .parse::<usize>()
                    .ok()
                    .filter(|&i| i <= list.len())
                    .ok_or_else(|| format!("no index {index} in the list"))?,
            };
            list.insert(at, value);
            Ok(())
        }
        _ => Err(format!("{parent:?} is not an object or a list")),
    }
}

fn remove(target: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    let gone = match target.pointer_mut(parent) {
        Some(Value::Object(map)) => map.remove(&last),
        Some(Value::Array(list)) => last
            .parse::<usize>()
            .ok()
            .filter(|&i| i < list.len())
            .map(|i| list.remove(i)),
        _ => None,
    };
    gone.ok_or_else(|| format!("{path:?} is not there"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({"metadata": {"name": "web", "labels": {"app": "web"}},
               "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "web"}},
                 "spec": {"containers": [
                    {"name": "web", "image": "demo:1", "ports": [{"containerPort": 80}],
                     "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                    {"name": "side", "image": "side:1", "args": ["-v", "-x"]}]}}}})
    }

    fn patched(patch: Value, kind: PatchType) -> Value {
        let mut d = deployment();
        apply(&mut d, &patch, kind).unwrap();
        d
    }

    #[test]
    fn a_strategic_merge_merges_containers_by_name_as_set_image_needs() {
        let set_image = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "demo:2"}]}}}});
        let d = patched(set_image.clone(), PatchType::Strategic);
        let containers = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["image"], "demo:2");
        assert_eq!(
            containers[0]["ports"],
            json!([{"containerPort": 80}]),
            "the rest kept"
        );
        assert_eq!(containers[1]["image"], "side:1", "the other container kept");
        let merged = patched(set_image, PatchType::Merge);
        assert_eq!(
            merged["spec"]["template"]["spec"]["containers"],
            json!([{"name": "web", "image": "demo:2"}]),
            "a merge patch replaces lists whole"
        );
    }

    #[test]
    fn strategic_directives_delete_replace_and_prune_primitive_lists() {
        let d = patched(
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}],
                "containers": [{"name": "side", "$patch": "delete"},
                               {"name": "web", "env": [{"name": "A", "value": null},
                                                       {"name": "C", "value": "3"}],
                                "$deleteFromPrimitiveList/args": ["-x"]}]}}},
                   "metadata": {"labels": {"app": null, "tier": "front"}}}),
            PatchType::Strategic,
        );
        let containers = d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(containers.len(), 1, "{d}");
        assert_eq!(
            containers[0]["env"],
            json!([{"name": "A"}, {"name": "B", "value": "2"}, {"name": "C", "value": "3"}])
        );
        assert_eq!(d["metadata"]["labels"], json!({"tier": "front"}));
        let replaced = patched(
            json!({"spec": {"template": {"metadata": {"$patch": "replace", "labels": {"x": "y"}}}}}),
            PatchType::Strategic,
        );
        assert_eq!(
            replaced["spec"]["template"]["metadata"],
            json!({"labels": {"x": "y"}})
        );
    }

    #[test]
    fn a_json_patch_is_all_or_nothing() {
        let d = patched(
            json!([{"op": "replace", "path": "/spec/replicas", "value": 5},
                   {"op": "add", "path": "/metadata/labels/a~1b", "value": "c"},
                   {"op": "add", "path": "/spec/template/spec/containers/1/args/-", "value": "-y"},
                   {"op": "remove", "path": "/spec/template/spec/containers/0/env/0"},
                   {"op": "copy", "from": "/spec/replicas", "path": "/metadata/copied"},
                   {"op": "test", "path": "/spec/replicas", "value": 5}]),
            PatchType::Json,
        );
        assert_eq!(d["spec"]["replicas"], 5);
        assert_eq!(d["metadata"]["labels"]["a/b"], "c");
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][1]["args"],
            json!(["-v", "-x", "-y"])
        );
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(d["metadata"]["copied"], 5);
        let mut untouched = deployment();
        let failing = json!([{"op": "replace", "path": "/spec/replicas", "value": 9},
                             {"op": "test", "path": "/spec/replicas", "value": 2}]);
        let e = apply(&mut untouched, &failing, PatchType::Json).unwrap_err();
        assert!(e.contains("operation 1 (test"), "{e}");
        assert_eq!(untouched, deployment(), "nothing applied");
        for bad in [
            json!({}),
            json!([{"op": "jump", "path": "/a"}]),
            json!([{"op": "remove", "path": "/nope"}]),
            json!([{"op": "add", "path": ""}]),
        ] {
            assert!(
                apply(&mut deployment(), &bad, PatchType::Json).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn retain_keys_prune_and_a_replace_directive_replaces_a_list() {
        let mut d = json!({"spec": {"strategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1}}, "template": {"spec": {"containers": [
            {"name": "a", "image": "a"}, {"name": "b", "image": "b"}]}}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"},
            "template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "c", "image": "c"}]}}}});
        apply(&mut d, &patch, PatchType::Strategic).unwrap();
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"],
            json!([{"name": "c", "image": "c"}])
        );
    }

    #[test]
    fn copies_that_would_grow_a_document_without_bound_are_refused() {
        let mut d = json!({"spec": {"blob": "x".repeat(1 << 20)}});
        let doubling: Vec<Value> = (0..10)
            .map(|i| json!({"op": "copy", "from": "/spec", "path": format!("/spec/c{i}")}))
            .collect();
        let e = apply(&mut d, &Value::Array(doubling), PatchType::Json).unwrap_err();
        assert!(e.contains("would add over"), "{e}");
        assert_eq!(d["spec"].as_object().unwrap().len(), 1, "nothing applied");
    }

    #[test]
    fn content_types_name_the_patch() {
        assert_eq!(
            PatchType::of("application/json-patch+json"),
            Some(PatchType::Json)
        );
        assert_eq!(
            PatchType::of("application/merge-patch+json; charset=utf-8"),
            Some(PatchType::Merge)
        );
        assert_eq!(
            PatchType::of("application/strategic-merge-patch+json"),
            Some(PatchType::Strategic)
        );
        assert_eq!(
            PatchType::of("application/apply-patch+yaml"),
            Some(PatchType::Apply)
        );
        assert_eq!(PatchType::of("application/json"), None);
    }
}
