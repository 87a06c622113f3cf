//! Lists as Kubernetes pages them (`?limit=N&continue=TOKEN`, the next token in the list's
//! `metadata.continue`), written item by item into a streamed body: a list of 100,000 pods
//! is never whole in memory, neither as values nor as text.
//!
//! A token is the key of the last item sent (`namespace/name`, `namespace/deployment/index`
//! for a pod, `name` for a node); the next page starts after it. Pages are read from the view
//! of the moment, so an object created or deleted between two pages may be missed, never
//! repeated.

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::marker::PhantomData;
use std::ops::Bound;
use tokio::sync::mpsc;
use weeble_core::objects::{ListMeta, Resource};
use weeble_crdt::ObjectKey;

/// `?limit=N&continue=TOKEN`.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    pub limit: Option<usize>,
    #[serde(rename = "continue")]
    pub token: Option<String>,
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

/// The key after which a list of objects keyed by [`ObjectKey`] resumes.
pub fn object_token_key(token: Option<&str>) -> Result<Option<ObjectKey>, BadToken> {
    token
        .map(|t| parse_token(t, 2).map(|p| ObjectKey::new(p[0], p[1])))
        .transpose()
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

/// Collects a list's items (of type `T`) into JSON pages of a few dozen kilobytes, sent as
/// they fill.
pub struct Sink<T> {
    pages: mpsc::Sender<Bytes>,
    buffer: Vec<u8>,
    limit: Option<usize>,
    sent: usize,
    last: Option<String>,
    next: Option<String>,
    items: PhantomData<fn(&T)>,
}

/// How many bytes a page of the body holds before it is sent.
const PAGE_BYTES: usize = 64 * 1024;

impl<T: Resource> Sink<T> {
    /// Adds an item whose continue token is `token`. False when the list must stop: the
    /// limit is reached (the item is not sent; the list says where to continue) or the client
    /// has gone.
    pub fn push(&mut self, token: impl FnOnce() -> String, item: &T) -> bool {
        if self.limit.is_some_and(|limit| self.sent >= limit) {
            self.next = self.last.take();
            return false;
        }
        if self.sent > 0 {
            self.buffer.push(b',');
        }
        serde_json::to_writer(&mut self.buffer, item).expect("a read model serializes");
        self.sent += 1;
        if self.limit.is_some() {
            self.last = Some(token());
        }
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

/// A streamed [`weeble_core::objects::List`] of `T`: `produce` pushes items into the sink on a
/// blocking thread (it owns what it reads) until it runs out or `push` says stop.
pub fn respond<T, F>(limit: Option<usize>, produce: F) -> Response
where
    T: Resource + 'static,
    F: FnOnce(&mut Sink<T>) + Send + 'static,
{
    let (pages, mut receiver) = mpsc::channel(PAGES_AHEAD);
    let head = format!(
        r#"{{"apiVersion":"{}","kind":"{}List","items":["#,
        T::API_VERSION,
        T::KIND
    );
    let mut sink = Sink {
        pages,
        buffer: head.into_bytes(),
        limit: limit.filter(|&l| l > 0),
        sent: 0,
        last: None,
        next: None,
        items: PhantomData,
    };
    tokio::task::spawn_blocking(move || {
        produce(&mut sink);
        let metadata = ListMeta {
            continue_: sink.next.take(),
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
    use weeble_core::objects::List;

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
            let after = object_token_key(token).unwrap();
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
        assert_eq!(object_token_key(Some("nope")), Err(BadToken));
        let from_b: Vec<String> =
            objects_from(&map, None, Bound::Included(ObjectKey::new("b", "x")))
                .map(|(k, _)| object_token(k))
                .collect();
        assert_eq!(from_b, ["b/x", "b/y", "c/x"]);
    }

    /// A number, as the item of a test list.
    #[derive(Debug, PartialEq, serde::Serialize, Deserialize)]
    struct Number(usize);

    impl Resource for Number {
        const KIND: &'static str = "Number";
        const API_VERSION: &'static str = "v1";
    }

    /// The whole body of a list of `n` numbers with `limit`, as a client reads it.
    async fn body(n: usize, limit: Option<usize>) -> List<Number> {
        let response = respond(limit, move |sink| {
            for i in 0..n {
                if !sink.push(|| i.to_string(), &Number(i)) {
                    break;
                }
            }
        });
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_list_is_whole_json_with_a_continue_token_only_when_cut() {
        let all = body(100_000, None).await;
        assert_eq!(
            (all.api_version.as_str(), all.kind.as_str()),
            ("v1", "NumberList")
        );
        assert_eq!(all.items.len(), 100_000);
        assert_eq!(all.metadata, ListMeta::default());
        let page = body(10, Some(4)).await;
        assert_eq!(page.items, [0, 1, 2, 3].map(Number));
        assert_eq!(page.metadata.continue_.as_deref(), Some("3"));
        let exact = body(4, Some(4)).await;
        assert_eq!(exact.metadata, ListMeta::default(), "nothing follows");
        assert!(body(0, Some(4)).await.items.is_empty());
    }
}
