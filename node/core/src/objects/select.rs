//! Label and field selectors, as lists and watches take them (`?labelSelector=app=web,tier!=db`
//! and `?fieldSelector=spec.nodeName=node-a`), with Kubernetes' grammar and its rules: a
//! label selector has `=`, `==`, `!=`, `in (…)`, `notin (…)`, `key` and `!key`; a field
//! selector `=`, `==` and `!=` on the fields a resource supports (others are refused, as
//! Kubernetes refuses them, rather than ignored: an ignored selector is a wrong answer).
//!
//! Selectors read the object as it is served (JSON), so a list, a table and a watch select
//! alike.

use serde_json::Value;
use std::collections::BTreeSet;

/// The most requirements one selector may hold: a bound on the work of every object read.
const MAX_REQUIREMENTS: usize = 64;

/// Both selectors of a request; the default selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    labels: Vec<LabelRequirement>,
    fields: Vec<FieldRequirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelRequirement {
    /// `key in (values)`; `key=value` is `In` one value.
    In(String, BTreeSet<String>),
    /// `key notin (values)`; `key!=value` is `NotIn` one value (true where the label is absent).
    NotIn(String, BTreeSet<String>),
    Exists(String),
    NotExists(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldRequirement {
    path: String,
    value: String,
    equal: bool,
}

/// The field paths every resource supports.
const ALWAYS: &[&str] = &["metadata.name", "metadata.namespace"];

impl Selector {
    /// Parses `?labelSelector=` and `?fieldSelector=`, refusing a field not among `fields`
    /// (besides `metadata.name` and `metadata.namespace`); the error says what is wrong.
    pub fn parse(
        labels: Option<&str>,
        fields: Option<&str>,
        supported: &[&str],
    ) -> Result<Self, String> {
        let labels = match labels.map(str::trim).filter(|s| !s.is_empty()) {
            None => vec![],
            Some(text) => split_top(text)
                .and_then(|parts| parts.into_iter().map(label_requirement).collect())
                .map_err(|e| format!("labelSelector {text:?}: {e}"))?,
        };
        let fields = match fields.map(str::trim).filter(|s| !s.is_empty()) {
            None => vec![],
            Some(text) => text
                .split(',')
                .map(|r| field_requirement(r, supported))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("fieldSelector {text:?}: {e}"))?,
        };
        if labels.len() + fields.len() > MAX_REQUIREMENTS {
            return Err(format!(
                "a selector holds at most {MAX_REQUIREMENTS} requirements"
            ));
        }
        Ok(Selector { labels, fields })
    }

    /// Whether `object` (as served) meets every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        let labels_hold = self.labels.iter().all(|r| match r {
            LabelRequirement::In(key, values) => label(key).is_some_and(|v| values.contains(v)),
            LabelRequirement::NotIn(key, values) => label(key).is_none_or(|v| !values.contains(v)),
            LabelRequirement::Exists(key) => label(key).is_some(),
            LabelRequirement::NotExists(key) => label(key).is_none(),
        });
        labels_hold
            && self
                .fields
                .iter()
                .all(|r| (field_value(object, &r.path) == r.value) == r.equal)
    }

    /// Whether it selects everything.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }
}

/// A field's value as a field selector compares it: text as it is, numbers and booleans
/// written out, and the empty string for a field that is absent or null.
fn field_value(object: &Value, path: &str) -> String {
    let pointer = format!("/{}", path.replace('.', "/"));
    match object.pointer(&pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// `text` split at the commas that are not inside parentheses.
fn split_top(text: &str) -> Result<Vec<&str>, String> {
    let (mut parts, mut depth, mut start) = (vec![], 0u32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' if depth == 0 => depth = 1,
            '(' => return Err(format!("nested parenthesis at {i}")),
            ')' if depth == 1 => depth = 0,
            ')' => return Err(format!("unopened parenthesis at {i}")),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unclosed parenthesis".into());
    }
    parts.push(&text[start..]);
    Ok(parts)
}

/// A label key (an optional DNS prefix and `/`, then a name of 1–63 characters) or value
/// (empty, or a name): Kubernetes' characters.
fn label_text(text: &str, key: bool) -> Result<String, String> {
    let name = match (key, text.rsplit_once('/')) {
        (true, Some((prefix, name))) if !prefix.is_empty() && prefix.len() <= 253 => name,
        _ => text,
    };
    let fine = name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && (name.is_empty() && !key
            || name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric()));
    if fine {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not a label {}",
            if key { "key" } else { "value" }
        ))
    }
}

fn label_requirement(text: &str) -> Result<LabelRequirement, String> {
    let text = text.trim();
    if let Some(key) = text.strip_prefix('!') {
        return Ok(LabelRequirement::NotExists(label_text(key.trim(), true)?));
    }
    for (op, negated) in [("!=", true), ("==", false), ("=", false)] {
        if let Some((key, value)) = text.split_once(op) {
            let key = label_text(key.trim(), true)?;
            let values = BTreeSet::from([label_text(value.trim(), false)?]);
            return Ok(match negated {
                true => LabelRequirement::NotIn(key, values),
                false => LabelRequirement::In(key, values),
            });
        }
    }
    let mut words = text.splitn(2, char::is_whitespace);
    let key = words.next().unwrap_or_default();
    let rest = words.next().unwrap_or_default().trim();
    if rest.is_empty() {
        return Ok(LabelRequirement::Exists(label_text(key, true)?));
    }
    let (op, list) = rest
        .split_once('(')
        .ok_or_else(|| format!("{text:?}: expected `key in (a,b)` or `key notin (a,b)`"))?;
    let list = list
        .trim()
        .strip_suffix(')')
        .ok_or_else(|| format!("{text:?}: the value list must end with `)`"))?;
    let values = list
        .split(',')
        .map(|v| label_text(v.trim(), false))
        .collect::<Result<BTreeSet<_>, _>>()?;
    let key = label_text(key, true)?;
    match op.trim() {
        "in" => Ok(LabelRequirement::In(key, values)),
        "notin" => Ok(LabelRequirement::NotIn(key, values)),
        other => Err(format!("{other:?} is not an operator: use in or notin")),
    }
}

fn field_requirement(text: &str, supported: &[&str]) -> Result<FieldRequirement, String> {
    let text = text.trim();
    let (path, value, equal) = [("!=", false), ("==", true), ("=", true)]
        .into_iter()
        .find_map(|(op, equal)| text.split_once(op).map(|(p, v)| (p, v, equal)))
        .ok_or_else(|| format!("{text:?}: expected field=value or field!=value"))?;
    let path = path.trim();
    if !ALWAYS.contains(&path) && !supported.contains(&path) {
        let mut all: Vec<&str> = ALWAYS.iter().chain(supported).copied().collect();
        all.sort_unstable();
        return Err(format!(
            "field label not supported: {path:?} (supported: {})",
            all.join(", ")
        ));
    }
    Ok(FieldRequirement {
        path: path.into(),
        value: value.trim().into(),
        equal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value, node: Value) -> Value {
        json!({"metadata": {"name": "web-0", "namespace": "default", "labels": labels},
               "spec": {"nodeName": node}, "status": {"phase": "Running"}})
    }

    fn selects(labels: &str, fields: &str, object: &Value) -> bool {
        Selector::parse(
            Some(labels),
            Some(fields),
            &["spec.nodeName", "status.phase"],
        )
        .unwrap()
        .matches(object)
    }

    #[test]
    fn label_selectors_have_kubernetes_operators() {
        let web = pod(json!({"app": "web", "tier": "front"}), json!("a"));
        let bare = pod(json!({}), json!(null));
        for (selector, on_web, on_bare) in [
            ("", true, true),
            ("app=web", true, false),
            ("app==web", true, false),
            ("app = web", true, false),
            ("app!=web", false, true),
            ("app=db", false, false),
            ("app", true, false),
            ("!app", false, true),
            ("app in (web, db)", true, false),
            ("app notin (db,cache)", true, true),
            ("app in (db)", false, false),
            ("app=web,tier=front", true, false),
            ("app=web,tier in (back)", false, false),
            ("example.com/owner", false, false),
        ] {
            assert_eq!(selects(selector, "", &web), on_web, "{selector} on web");
            assert_eq!(selects(selector, "", &bare), on_bare, "{selector} on bare");
        }
    }

    #[test]
    fn field_selectors_read_the_served_fields_and_refuse_others() {
        let on_a = pod(json!({}), json!("a"));
        let unplaced = pod(json!({}), json!(null));
        assert!(selects("", "metadata.name=web-0", &on_a));
        assert!(!selects("", "metadata.name!=web-0", &on_a));
        assert!(selects("", "spec.nodeName=a,status.phase=Running", &on_a));
        assert!(!selects("", "spec.nodeName=b", &on_a));
        assert!(selects("", "spec.nodeName=", &unplaced), "absent is empty");
        assert!(!selects("", "spec.nodeName!=", &unplaced));
        let refused = Selector::parse(None, Some("spec.image=x"), &["spec.nodeName"]);
        let message = refused.unwrap_err();
        assert!(
            message.contains("field label not supported: \"spec.image\""),
            "{message}"
        );
        assert!(message.contains("metadata.name, metadata.namespace, spec.nodeName"));
    }

    #[test]
    fn malformed_selectors_are_errors_that_quote_them() {
        for bad in [
            "app in (web",
            "app in web)",
            "app in ((web))",
            "app between (a)",
            "-app=web",
            "app=we b",
            "app in (a,-b)",
        ] {
            let e = Selector::parse(Some(bad), None, &[]).unwrap_err();
            assert!(e.starts_with("labelSelector"), "{bad}: {e}");
        }
        assert!(Selector::parse(None, Some("nonsense"), &[]).is_err());
        let many = vec!["a=b"; MAX_REQUIREMENTS + 1].join(",");
        assert!(Selector::parse(Some(&many), None, &[]).is_err());
    }
}
