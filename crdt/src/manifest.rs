//! Reads a file of Kubernetes YAML documents into validated objects, or explains every problem.
//!
//! All or nothing: one bad document rejects the whole file. Each error names the document
//! (counting from 1), the object, the field path and, where the YAML parser knows it, the line.

use crate::echo::{clip, clip_to, echo};
use crate::k8s::{self, TypeMeta};
use crate::model::{Kind, Object, ObjectKey};
use crate::validate::{self, Finding, Findings, MAX_OBJECT_BYTES};
use serde::Deserialize;
use serde_yaml_ng::Deserializer;
use std::collections::BTreeMap;
use std::fmt;

/// A problem (or warning) located in a manifest file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The document's position in the file, counting from 1; `None` for the file as a whole.
    pub document: Option<usize>,
    /// `Deployment "nginx"`, when the document got far enough to say.
    pub object: Option<String>,
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.document {
            Some(n) => write!(f, "document {n}")?,
            None => f.write_str("file")?,
        }
        if let Some(object) = &self.object {
            write!(f, " ({object})")?;
        }
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The objects of a valid file, in file order, and the warnings to show the operator.
#[derive(Debug)]
pub struct Parsed {
    pub objects: Vec<Object>,
    pub warnings: Vec<Located>,
}

/// Why a file was rejected: every problem found, in file order.
#[derive(Debug, thiserror::Error)]
pub struct ManifestError {
    pub errors: Vec<Located>,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.errors.iter().map(Located::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

/// The name of an anchor (`&name`) that an alias (`*name`) of `text` refers to, if any: the
/// YAML parser expands each alias as it stands, bounded by jumps, not by what they copy, so a
/// 2 MB file of aliases to a large anchor makes billions of values. Read from the text (an
/// anchor or alias starts a value: after a space, `[`, `{`, `,` or the line's start); a
/// quoted string that looks like both is refused too, and the message says why.
fn aliased_anchor(text: &str) -> Option<&str> {
    let mut anchors = std::collections::BTreeSet::new();
    let mut aliases = vec![];
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let starts_value =
            i == 0 || matches!(bytes[i - 1], b' ' | b'\n' | b'\t' | b'[' | b'{' | b',');
        if !(starts_value && (b == b'&' || b == b'*')) {
            continue;
        }
        let name = &text[i + 1..];
        let end = name
            .find(|c: char| c.is_whitespace() || matches!(c, ',' | '[' | ']' | '{' | '}'))
            .unwrap_or(name.len());
        let name = &name[..end];
        if name.is_empty() {
            continue;
        }
        match b {
            b'&' => drop(anchors.insert(name)),
            _ => aliases.push(name),
        }
    }
    aliases.into_iter().find(|a| anchors.contains(a))
}

/// Parses and validates every document of `text`; nothing is returned unless all are valid.
pub fn parse_manifests(text: &str) -> Result<Parsed, ManifestError> {
    // A byte order mark some editors write; kubectl accepts it too.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut objects = Vec::new();
    let mut seen: BTreeMap<(Kind, ObjectKey), usize> = BTreeMap::new();
    if let Some(alias) = aliased_anchor(text) {
        errors.push(Located {
            document: None,
            object: None,
            path: String::new(),
            line: None,
            message: format!(
                "YAML alias {} is not supported: write the value out (an alias expands where \
                 it stands, and a small file of them can make a very large one)",
                echo(alias)
            ),
        });
        return Err(ManifestError { errors });
    }
    // Two passes over the same stream: a loose one to learn each document's kind, then a
    // strict typed one, which keeps the parser's line numbers for its errors.
    let heads = Deserializer::from_str(text).map(serde_yaml_ng::Value::deserialize);
    for (index, (head, typed)) in heads.zip(Deserializer::from_str(text)).enumerate() {
        let document = index + 1;
        let at = |object: Option<String>, path: &str, line, message: String| Located {
            document: Some(document),
            object,
            path: path.to_string(),
            line,
            message,
        };
        let head = match head {
            Ok(value) if value.is_null() => continue,
            Ok(value) => value,
            Err(e) => {
                let (line, message) = describe(&e, "");
                errors.push(at(None, "", line, format!("invalid YAML: {message}")));
                break; // the parser cannot resynchronise after a syntax error
            }
        };
        let Ok(type_meta) = TypeMeta::deserialize(&head) else {
            errors.push(at(
                None,
                "",
                None,
                "not a Kubernetes object (expected key: value pairs with kind, metadata and spec)"
                    .into(),
            ));
            continue;
        };
        let name = head
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(|n| n.as_str());
        let label = |kind: &str| Some(format!("{} {}", clip(kind), echo(name.unwrap_or("?"))));
        let mut findings = Findings::default();
        let object = match type_meta.kind.as_deref() {
            Some("Deployment") => strict::<k8s::DeploymentManifest>(typed)
                .map(|m| Object::Deployment(validate::deployment(m, &mut findings))),
            Some("Service") => strict::<k8s::ServiceManifest>(typed)
                .map(|m| Object::Service(validate::service(m, &mut findings))),
            Some("Namespace") => strict::<k8s::NamespaceManifest>(typed)
                .map(|m| Object::Namespace(validate::namespace(m, &mut findings))),
            Some(other) => Err((
                "kind".to_string(),
                None,
                format!(
                    "unknown kind {}: Weeble supports Deployment (apps/v1), Service and \
                     Namespace (v1)",
                    echo(other)
                ),
            )),
            None => Err((
                "kind".to_string(),
                None,
                "required: Deployment, Service or Namespace".to_string(),
            )),
        };
        let object_label = type_meta.kind.as_deref().and_then(label);
        let locate = |Finding { path, message }| at(object_label.clone(), &path, None, message);
        warnings.extend(findings.warnings.into_iter().map(locate));
        match object {
            Err((path, line, message)) => {
                errors.push(at(object_label.clone(), &path, line, message))
            }
            Ok(_) if !findings.errors.is_empty() => {
                errors.extend(findings.errors.into_iter().map(locate));
            }
            Ok(object) => {
                let size = serialized_len(&object);
                if size > MAX_OBJECT_BYTES {
                    errors.push(at(
                        object_label.clone(),
                        "",
                        None,
                        format!("too large: {size} bytes as JSON, at most {MAX_OBJECT_BYTES}"),
                    ));
                    continue;
                }
                let key = (object.kind(), object.meta().key());
                if let Some(first) = seen.insert(key.clone(), document) {
                    errors.push(at(
                        object_label.clone(),
                        "metadata.name",
                        None,
                        format!("{} {} is also defined by document {first}", key.0, key.1),
                    ));
                }
                objects.push(object);
            }
        }
    }
    if errors.is_empty() && objects.is_empty() {
        errors.push(Located {
            document: None,
            object: None,
            path: String::new(),
            line: None,
            message: "no Deployment or Service found".into(),
        });
    }
    if errors.is_empty() {
        Ok(Parsed { objects, warnings })
    } else {
        Err(ManifestError { errors })
    }
}

/// How many bytes `object` takes as JSON, counted without keeping them.
fn serialized_len(object: &Object) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, object).expect("a model object serializes");
    count.0
}

/// Deserializes one document strictly, returning (field path, line, message) on failure.
fn strict<'de, T: Deserialize<'de>>(
    document: Deserializer<'de>,
) -> Result<T, (String, Option<usize>, String)> {
    serde_path_to_error::deserialize(document).map_err(|e| {
        let path = match e.path().to_string() {
            root if root == "." => String::new(),
            path => path,
        };
        let (line, message) = describe(e.inner(), &path);
        (path, line, message)
    })
}

/// The parser's line and its message without the position and path it appends itself.
fn describe(e: &serde_yaml_ng::Error, path: &str) -> (Option<usize>, String) {
    let mut message = e.to_string();
    let line = e.location().map(|l| {
        let suffix = format!(" at line {} column {}", l.line(), l.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_string();
        }
        l.line()
    });
    // The parser prefixes the path it knows, which is ours or a parent of ours.
    if let Some((prefix, rest)) = message.split_once(": ")
        && !prefix.contains(' ')
        && (prefix == "." || path.starts_with(prefix))
    {
        message = rest.to_string();
    }
    (line, clip_to(&message, MAX_PARSER_MESSAGE))
}

/// The longest parser message kept: the parser quotes values and keys it rejects in full.
const MAX_PARSER_MESSAGE: usize = 512;
