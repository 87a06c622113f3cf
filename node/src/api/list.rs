//! Lists as Kubernetes pages them (`?limit=N&continue=TOKEN`, the next token in the list's
//! `metadata.continue`), selected (`labelSelector`, `fieldSelector`) and written item by item
//! into a streamed body, as a list or as a table: a list of 100,000 pods is never whole in
//! memory, neither as values nor as text.
//!
//! A token is the key of the last item sent (`namespace/name`, `namespace/deployment/index`
//! for a pod, `name` for a node); the next page starts after it. Pages are read from the view
//! of the moment, so an object created or deleted between two pages may be missed, never
//! repeated.

use super::watch::{Versions, WatchRequest};
use crate::clock;
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::marker::PhantomData;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use weeble_core::objects::select::Selector;
use weeble_core::objects::table::{self, Tabled};
use weeble_core::objects::{ListMeta, Object};
use weeble_crdt::ObjectKey;

/// What a list or a watch may ask: `?limit=N&continue=TOKEN`, the selectors, and for a
/// watch `watch=true`, `resourceVersion`, `timeoutSeconds` and `allowWatchBookmarks`; for a
/// table `includeObject`. Other parameters clients send (`resourceVersionMatch`, say) are
/// read as Kubernetes reads them when they are left at their defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    pub limit: Option<usize>,
    #[serde(rename = "continue")]
    pub token: Option<String>,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub watch: Option<String>,
    pub resource_version: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub allow_watch_bookmarks: Option<String>,
    pub include_object: Option<String>,
}

/// A true flag as Kubernetes reads one (Go's `strconv.ParseBool`: `true`, `True`, `TRUE`,
/// `t`, `T`, `1`; the Python client sends `True`).
pub fn flag(value: Option<&str>) -> bool {
    matches!(value, Some("true" | "True" | "TRUE" | "t" | "T" | "1"))
}

impl ListQuery {
    /// Whether it asks for a watch rather than a list.
    pub fn watching(&self) -> bool {
        flag(self.watch.as_deref())
    }

    /// What a watch asks besides the selectors.
    pub fn watch_request(&self) -> WatchRequest {
        WatchRequest {
            resource_version: self.resource_version.clone(),
            timeout: self.timeout_seconds.map(Duration::from_secs),
            bookmarks: flag(self.allow_watch_bookmarks.as_deref()),
        }
    }

    /// Both selectors, with the fields `supported` besides the name and namespace.
    pub fn selector(&self, supported: &[&str]) -> Result<Selector, String> {
        Selector::parse(
            self.label_selector.as_deref(),
            self.field_selector.as_deref(),
            supported,
        )
    }

    /// A table if `accept` asks for one (`application/json;as=Table;…`, as kubectl does),
    /// else a plain list.
    pub fn form(&self, accept: Option<&str>) -> Form {
        if !accept.is_some_and(|a| a.contains("as=Table")) {
            return Form::List;
        }
        let include = match self.include_object.as_deref() {
            Some("None") => Include::Nothing,
            Some("Object") => Include::Object,
            _ => Include::Metadata,
        };
        Form::Table {
            now_ms: clock::now_ms(),
            include,
        }
    }
}

/// How a list is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `<Kind>List` with `items`.
    List,
    /// A `meta.k8s.io/v1` `Table` of the kind's columns ([`weeble_core::objects::table`]),
    /// its ages counted to `now_ms`.
    Table { now_ms: i64, include: Include },
}

/// What each row of a table carries besides its cells (`?includeObject=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    Nothing,
    /// A `PartialObjectMetadata`: Kubernetes' default.
    Metadata,
    Object,
}

impl Include {
    /// What a row carries of `object`.
    pub fn of(self, object: Value) -> Value {
        match self {
            Include::Nothing => Value::Null,
            Include::Metadata => json!({"apiVersion": "meta.k8s.io/v1",
                "kind": "PartialObjectMetadata", "metadata": object["metadata"]}),
            Include::Object => object,
        }
    }
}

/// Why a continue token was refused: it is not one this API writes.
#[derive(Debug, PartialEq, Eq)]
pub struct BadToken;

/// The parts of a continue token, `parts` of them: DNS names, or a number for a pod index.
pub fn parse_token(token: &str, parts: usize) -> Result<Vec<&str>, BadToken> {
    let split: Vec<&str> = token.split('/').collect();
    let fine = |p: &&str| {
        !p.is_empty()
            && p.len() <= 253
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    if split.len() == parts && split.iter().all(fine) {
        Ok(split)
    } else {
        Err(BadToken)
    }
}

/// The key of the object a continue token names (`namespace/name`).
pub fn object_token_key(token: &str) -> Result<ObjectKey, BadToken> {
    parse_token(token, 2).map(|p| ObjectKey::new(p[0], p[1]))
}

/// The objects of `map` from `start` on, within `ns` if the list is of one namespace.
pub fn objects_from<'a, V>(
    map: &'a BTreeMap<ObjectKey, V>,
    ns: Option<&'a str>,
    start: Bound<ObjectKey>,
) -> impl Iterator<Item = (&'a ObjectKey, &'a V)> + 'a {
    let first = ns.map(|ns| ObjectKey::new(ns, ""));
    let start = match (start, first) {
        (Bound::Included(k) | Bound::Excluded(k), Some(first)) if k < first => {
            Bound::Included(first)
        }
        (Bound::Unbounded, Some(first)) => Bound::Included(first),
        (start, _) => start,
    };
    map.range((start, Bound::Unbounded))
        .take_while(move |(key, _)| ns.is_none_or(|ns| key.namespace == ns))
}

/// The objects of `map` after `after` (a list's continue key), within `ns` if given.
pub fn objects_after<'a, V>(
    map: &'a BTreeMap<ObjectKey, V>,
    ns: Option<&'a str>,
    after: Option<ObjectKey>,
) -> impl Iterator<Item = (&'a ObjectKey, &'a V)> + 'a {
    objects_from(map, ns, after.map_or(Bound::Unbounded, Bound::Excluded))
}

/// The token of an object keyed by [`ObjectKey`].
pub fn object_token(key: &ObjectKey) -> String {
    format!("{}/{}", key.namespace, key.name)
}

/// A table of one object: `value` is `item` as JSON, its version set. Without `columns`
/// its column definitions are left out (a watch sends them with its first event only).
pub fn table_of<T: Tabled>(item: &T, value: Value, form: Form, columns: bool) -> Value {
    let (now_ms, include) = match form {
        Form::Table { now_ms, include } => (now_ms, include),
        Form::List => (clock::now_ms(), Include::Metadata),
    };
    let columns = match columns {
        true => serde_json::to_value(table::columns::<T>()).expect("columns serialize"),
        false => json!([]),
    };
    let version = value["metadata"]["resourceVersion"].clone();
    let row = json!({"cells": item.cells(now_ms), "object": include.of(value)});
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "Table",
        "metadata": {"resourceVersion": version},
        "columnDefinitions": columns, "rows": [row]})
}

/// Collects a list's items (of type `T`), those the selector takes, each with its version,
/// into JSON pages of a few dozen kilobytes, sent as they fill.
pub struct Sink<T> {
    pages: mpsc::Sender<Bytes>,
    buffer: Vec<u8>,
    listing: Listing,
    sent: usize,
    last: Option<String>,
    next: Option<String>,
    items: PhantomData<fn(&T)>,
}

/// How many bytes a page of the body holds before it is sent.
const PAGE_BYTES: usize = 64 * 1024;

/// What a list is asked for: at most `limit` items of `resource`, those `selector` takes,
/// written in `form`, versioned by `versions`.
pub struct Listing {
    pub resource: &'static str,
    pub limit: Option<usize>,
    pub form: Form,
    pub selector: Selector,
    pub versions: Arc<Versions>,
}

impl<T: Object + Tabled> Sink<T> {
    /// Adds an item whose continue token is `token`, if the selector takes it. False when
    /// the list must stop: the limit is reached (the item is not sent; the list says where
    /// to continue) or the client has gone.
    pub fn push(&mut self, token: String, item: T) -> bool {
        if self.listing.limit.is_some_and(|limit| self.sent >= limit) {
            self.next = self.last.take();
            return false;
        }
        let item = self.listing.versions.stamp(self.listing.resource, item);
        let value = serde_json::to_value(&item).expect("a read model serializes");
        if !self.listing.selector.matches(&value) {
            return true;
        }
        if self.sent > 0 {
            self.buffer.push(b',');
        }
        let written = match self.listing.form {
            Form::List => serde_json::to_writer(&mut self.buffer, &value),
            Form::Table { now_ms, include } => {
                let row = json!({"cells": item.cells(now_ms), "object": include.of(value)});
                serde_json::to_writer(&mut self.buffer, &row)
            }
        };
        written.expect("JSON is written to memory");
        self.sent += 1;
        self.last = Some(token);
        self.buffer.len() < PAGE_BYTES || self.flush()
    }

    /// Sends what is buffered; false if the client has gone.
    fn flush(&mut self) -> bool {
        let page = Bytes::from(std::mem::take(&mut self.buffer));
        self.pages.blocking_send(page).is_ok()
    }
}

/// How many pages may wait for a slow client.
const PAGES_AHEAD: usize = 2;

/// A streamed [`weeble_core::objects::List`] of `T`, or a table of them: `produce` pushes items
/// into the sink on a blocking thread (it owns what it reads) until it runs out or `push`
/// says stop. The list's `resourceVersion` is the journal's last number as it starts.
pub fn respond<T, F>(listing: Listing, produce: F) -> Response
where
    T: Object + Tabled + 'static,
    F: FnOnce(&mut Sink<T>) + Send + 'static,
{
    let (pages, mut receiver) = mpsc::channel(PAGES_AHEAD);
    let head = match listing.form {
        Form::List => format!(
            r#"{{"apiVersion":"{}","kind":"{}List","items":["#,
            T::API_VERSION,
            T::KIND
        ),
        Form::Table { .. } => format!(
            r#"{{"apiVersion":"meta.k8s.io/v1","kind":"Table","columnDefinitions":{},"rows":["#,
            serde_json::to_string(&table::columns::<T>()).expect("columns serialize")
        ),
    };
    let version = listing.versions.last();
    let mut sink = Sink {
        pages,
        buffer: head.into_bytes(),
        listing: Listing {
            limit: listing.limit.filter(|&l| l > 0),
            ..listing
        },
        sent: 0,
        last: None,
        next: None,
        items: PhantomData,
    };
    tokio::task::spawn_blocking(move || {
        produce(&mut sink);
        let metadata = ListMeta {
            continue_: sink.next.take(),
            resource_version: Some(version.to_string()),
        };
        sink.buffer.extend_from_slice(b"],\"metadata\":");
        serde_json::to_writer(&mut sink.buffer, &metadata).expect("list metadata serializes");
        sink.buffer.push(b'}');
        sink.flush();
    });
    let stream = futures::stream::poll_fn(move |cx| {
        receiver
            .poll_recv(cx)
            .map(|page| page.map(Ok::<_, Infallible>))
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use weeble_core::objects::{List, ObjectMeta, Resource};

    #[test]
    fn tokens_are_dns_names_in_the_expected_number() {
        assert_eq!(parse_token("default/web", 2), Ok(vec!["default", "web"]));
        assert_eq!(
            parse_token("default/web/17", 3),
            Ok(vec!["default", "web", "17"])
        );
        for bad in [
            "",
            "default",
            "default/",
            "Default/web",
            "a/b/c",
            "a/b c",
            "a/%2e",
        ] {
            assert_eq!(parse_token(bad, 2), Err(BadToken), "{bad:?}");
        }
    }

    #[test]
    fn object_lists_resume_after_the_token_within_their_namespace() {
        let map: BTreeMap<ObjectKey, ()> = [("a", "x"), ("b", "x"), ("b", "y"), ("c", "x")]
            .into_iter()
            .map(|(ns, name)| (ObjectKey::new(ns, name), ()))
            .collect();
        let keys = |ns, token: Option<&str>| -> Vec<String> {
            let after = token.map(|t| object_token_key(t).unwrap());
            objects_after(&map, ns, after)
                .map(|(k, _)| object_token(k))
                .collect()
        };
        assert_eq!(keys(None, None), ["a/x", "b/x", "b/y", "c/x"]);
        assert_eq!(keys(None, Some("b/x")), ["b/y", "c/x"]);
        assert_eq!(keys(Some("b"), None), ["b/x", "b/y"]);
        assert_eq!(keys(Some("b"), Some("b/x")), ["b/y"]);
        assert_eq!(keys(Some("b"), Some("a/z")), ["b/x", "b/y"]);
        assert!(keys(Some("b"), Some("c/a")).is_empty());
        assert_eq!(object_token_key("nope"), Err(BadToken));
        let from_b: Vec<String> =
            objects_from(&map, None, Bound::Included(ObjectKey::new("b", "x")))
                .map(|(k, _)| object_token(k))
                .collect();
        assert_eq!(from_b, ["b/x", "b/y", "c/x"]);
    }

    /// A numbered object, as the item of a test list: named by its number, labelled
    /// `even=true` or `even=false`.
    #[derive(Debug, PartialEq, serde::Serialize, Deserialize)]
    struct Numbered {
        metadata: ObjectMeta,
    }

    impl Numbered {
        fn new(i: usize) -> Self {
            let labels = [("even".to_string(), i.is_multiple_of(2).to_string())];
            Numbered {
                metadata: ObjectMeta {
                    name: i.to_string(),
                    labels: Some(labels.into()),
                    ..ObjectMeta::default()
                },
            }
        }

        fn number(&self) -> usize {
            self.metadata.name.parse().unwrap()
        }
    }

    impl Resource for Numbered {
        const KIND: &'static str = "Numbered";
        const API_VERSION: &'static str = "v1";
    }

    impl Object for Numbered {
        fn metadata(&self) -> &ObjectMeta {
            &self.metadata
        }

        fn metadata_mut(&mut self) -> &mut ObjectMeta {
            &mut self.metadata
        }
    }

    impl Tabled for Numbered {
        const COLUMNS: &'static [(&'static str, &'static str, u8)] =
            &[("Name", "string", 0), ("Double", "integer", 0)];

        fn cells(&self, _: i64) -> Vec<Value> {
            vec![json!(self.metadata.name), json!(self.number() * 2)]
        }
    }

    /// The whole body of a list of `n` numbers as `form` with `limit` and a label selector,
    /// as a client reads it.
    async fn body(n: usize, limit: Option<usize>, labels: &str, form: Form) -> Value {
        let listing = Listing {
            resource: "numbers",
            limit,
            form,
            selector: Selector::parse(Some(labels), None, &[]).unwrap(),
            versions: Versions::new(),
        };
        let response = respond(listing, move |sink| {
            for i in 0..n {
                if !sink.push(i.to_string(), Numbered::new(i)) {
                    break;
                }
            }
        });
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn list(value: Value) -> List<Numbered> {
        serde_json::from_value(value).unwrap()
    }

    fn numbers(list: &List<Numbered>) -> Vec<usize> {
        list.items.iter().map(Numbered::number).collect()
    }

    #[tokio::test]
    async fn a_list_is_whole_json_with_a_continue_token_only_when_cut() {
        let all = list(body(100_000, None, "", Form::List).await);
        assert_eq!(
            (all.api_version.as_str(), all.kind.as_str()),
            ("v1", "NumberedList")
        );
        assert_eq!(all.items.len(), 100_000);
        let version = all
            .metadata
            .resource_version
            .clone()
            .expect("a list has a version");
        assert_eq!(all.metadata.continue_, None);
        assert_eq!(
            all.items[7].metadata.resource_version.as_ref(),
            Some(&version),
            "an object the journal has not seen has the list's version"
        );
        let page = list(body(10, Some(4), "", Form::List).await);
        assert_eq!(numbers(&page), [0, 1, 2, 3]);
        assert_eq!(page.metadata.continue_.as_deref(), Some("3"));
        let exact = list(body(4, Some(4), "", Form::List).await);
        assert_eq!(exact.metadata.continue_, None, "nothing follows");
        assert!(
            list(body(0, Some(4), "", Form::List).await)
                .items
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_selector_picks_the_items_and_the_limit_counts_those_it_picks() {
        let odd = list(body(10, Some(3), "even=false", Form::List).await);
        assert_eq!(numbers(&odd), [1, 3, 5]);
        assert_eq!(odd.metadata.continue_.as_deref(), Some("5"));
        let none = list(body(10, None, "even notin (true,false)", Form::List).await);
        assert!(none.items.is_empty());
    }

    #[tokio::test]
    async fn a_table_has_the_kinds_columns_and_a_row_per_item() {
        let form = |include| Form::Table { now_ms: 0, include };
        let table = body(3, None, "even=true", form(Include::Metadata)).await;
        assert_eq!(
            (&table["kind"], &table["apiVersion"]),
            (&json!("Table"), &json!("meta.k8s.io/v1"))
        );
        let names: Vec<&Value> = table["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| &c["name"])
            .collect();
        assert_eq!(names, [&json!("Name"), &json!("Double")]);
        assert_eq!(table["rows"][0]["cells"], json!(["0", 0]));
        assert_eq!(table["rows"][1]["cells"], json!(["2", 4]));
        assert_eq!(table["rows"][1]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(table["rows"][1]["object"]["metadata"]["name"], "2");
        assert!(table["metadata"]["resourceVersion"].is_string());
        let whole = body(1, None, "", form(Include::Object)).await;
        assert_eq!(
            whole["rows"][0]["object"]["metadata"]["labels"]["even"],
            "true"
        );
        let bare = body(1, None, "", form(Include::Nothing)).await;
        assert_eq!(bare["rows"][0]["object"], Value::Null);
    }
}
