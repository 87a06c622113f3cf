//! OpenAPI v2, for kubectl before 1.27: its `apply` validates a manifest against `/openapi/v2`
//! and its `explain` reads it, and it asks for it only as protobuf (gnostic's `OpenAPIv2.proto`
//! messages). The document is the v3 one's schemas under `definitions`; [`protobuf`] writes
//! the part of gnostic's messages those schemas use.

use super::{Spec, schemas};
use serde_json::{Value, json};

/// The v2 document, as JSON.
pub fn document(version: &str) -> Value {
    json!({
        "swagger": "2.0",
        "info": {"title": "Weeble", "version": version},
        "paths": {},
        "definitions": schemas(Spec::V2),
    })
}

/// [`document`] as gnostic's protobuf `openapi.v2.Document`: `swagger` (1), `info` (2: title
/// 1, version 2) and `definitions` (9), each schema with `$ref` (1), `format` (2),
/// `description` (4), `additionalProperties` (21), `type` (22), `items` (23), `properties`
/// (25) and its `x-` extensions (31, their values as YAML).
pub fn protobuf(document: &Value) -> Vec<u8> {
    let mut out = vec![];
    text(&mut out, 1, document["swagger"].as_str().unwrap_or("2.0"));
    let mut info = vec![];
    text(
        &mut info,
        1,
        document["info"]["title"].as_str().unwrap_or_default(),
    );
    text(
        &mut info,
        2,
        document["info"]["version"].as_str().unwrap_or_default(),
    );
    message(&mut out, 2, &info);
    let mut definitions = vec![];
    for (name, schema) in document["definitions"].as_object().into_iter().flatten() {
        message(&mut definitions, 1, &named_schema(name, schema));
    }
    message(&mut out, 9, &definitions);
    out
}

/// A `NamedSchema`: name (1), schema (2).
fn named_schema(name: &str, schema: &Value) -> Vec<u8> {
    let mut out = vec![];
    text(&mut out, 1, name);
    message(&mut out, 2, &schema_message(schema));
    out
}

fn schema_message(schema: &Value) -> Vec<u8> {
    let mut out = vec![];
    let field = |name| schema.get(name);
    if let Some(r) = field("$ref").and_then(Value::as_str) {
        text(&mut out, 1, r);
    }
    if let Some(f) = field("format").and_then(Value::as_str) {
        text(&mut out, 2, f);
    }
    if let Some(d) = field("description").and_then(Value::as_str) {
        text(&mut out, 4, d);
    }
    if let Some(extra) = field("additionalProperties") {
        // AdditionalPropertiesItem: schema (1).
        let mut item = vec![];
        message(&mut item, 1, &schema_message(extra));
        message(&mut out, 21, &item);
    }
    if let Some(t) = field("type").and_then(Value::as_str) {
        // TypeItem: value (1), repeated.
        let mut item = vec![];
        text(&mut item, 1, t);
        message(&mut out, 22, &item);
    }
    if let Some(items) = field("items") {
        // ItemsItem: schema (1), repeated.
        let mut item = vec![];
        message(&mut item, 1, &schema_message(items));
        message(&mut out, 23, &item);
    }
    if let Some(properties) = field("properties").and_then(Value::as_object) {
        // Properties: additional_properties (1), repeated NamedSchema.
        let mut item = vec![];
        for (name, property) in properties {
            message(&mut item, 1, &named_schema(name, property));
        }
        message(&mut out, 25, &item);
    }
    for (name, value) in schema.as_object().into_iter().flatten() {
        if name.starts_with("x-") {
            // NamedAny: name (1), value (2: Any, its yaml 2).
            let mut any = vec![];
            text(&mut any, 2, &yaml(value));
            let mut named = vec![];
            text(&mut named, 1, name);
            message(&mut named, 2, &any);
            message(&mut out, 31, &named);
        }
    }
    out
}

/// A JSON value as YAML: JSON is YAML, in flow style.
fn yaml(value: &Value) -> String {
    format!("{value}\n")
}

/// Field `number` with text.
fn text(out: &mut Vec<u8>, number: u32, value: &str) {
    message(out, number, value.as_bytes());
}

/// Field `number`, length-delimited (wire type 2): a text or an embedded message.
fn message(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    varint(out, (u64::from(number) << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads length-delimited fields back: (number, bytes) pairs.
    fn fields(mut bytes: &[u8]) -> Vec<(u64, &[u8])> {
        let read = |bytes: &mut &[u8]| {
            let (mut n, mut shift) = (0u64, 0);
            loop {
                let b = bytes[0];
                *bytes = &bytes[1..];
                n |= u64::from(b & 0x7f) << shift;
                shift += 7;
                if b < 0x80 {
                    return n;
                }
            }
        };
        let mut all = vec![];
        while !bytes.is_empty() {
            let tag = read(&mut bytes);
            assert_eq!(tag & 7, 2, "only length-delimited fields are written");
            let len = read(&mut bytes) as usize;
            all.push((tag >> 3, &bytes[..len]));
            bytes = &bytes[len..];
        }
        all
    }

    #[test]
    fn the_protobuf_holds_every_definition_with_its_kind() {
        let doc = document("0.1.0");
        let bytes = protobuf(&doc);
        let top = fields(&bytes);
        assert_eq!(top[0], (1, &b"2.0"[..]));
        let definitions = fields(top.iter().find(|(n, _)| *n == 9).unwrap().1);
        assert_eq!(
            definitions.len(),
            doc["definitions"].as_object().unwrap().len()
        );
        let deployment = definitions
            .iter()
            .map(|(_, named)| fields(named))
            .find(|named| named[0].1 == b"io.k8s.api.apps.v1.Deployment")
            .expect("the deployment's schema");
        let schema = fields(deployment[1].1);
        let extension = schema.iter().find(|(n, _)| *n == 31).expect("its kind");
        let named = fields(extension.1);
        assert_eq!(named[0].1, b"x-kubernetes-group-version-kind");
        let yaml = String::from_utf8(fields(named[1].1)[0].1.to_vec()).unwrap();
        assert!(yaml.contains("\"kind\":\"Deployment\""), "{yaml}");
        let spec = &doc["definitions"]["io.k8s.api.apps.v1.DeploymentSpec"]["properties"];
        assert_eq!(
            spec["template"]["$ref"],
            "#/definitions/io.k8s.api.core.v1.PodTemplateSpec"
        );
        let container = &doc["definitions"]["io.k8s.api.core.v1.Container"]["properties"];
        assert!(
            container.get("imagePullPolicy").is_some(),
            "an accepted field is listed"
        );
    }
}
