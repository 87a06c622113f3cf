//! Which requests the API takes from a browser: each request's `Host` must name this node
//! (an IP literal, `localhost`, the node's name or an allowed host), so that a page cannot
//! reach it through DNS rebinding; an `Origin`, if sent, must be the node's own or an allowed
//! one; and a write must say it is YAML or JSON, which a plain HTML form cannot send. Pure:
//! [`Policy::check`] takes a request's method and headers and says what is wrong.

use axum::http::Method;
use std::net::IpAddr;

/// Who may talk to the API, beyond the node's own names and origin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// The node's name, accepted as a host.
    pub node_name: String,
    /// More host names to accept (`--api-allow-host`), lower case.
    pub allow_hosts: Vec<String>,
    /// Origins that may send requests (`--api-allow-origin`), such as `http://dashboard:8080`.
    pub allow_origins: Vec<String>,
}

/// The media types a write may carry: YAML, JSON, the patch types kubectl sends, and an
/// image's tar (`weeble image push`). None is one a page may send another origin unasked.
pub const WRITE_TYPES: [&str; 8] = [
    "application/yaml",
    "application/x-yaml",
    "application/json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/json-patch+json",
    "application/apply-patch+yaml",
    "application/x-tar",
];

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 403: the Host header names something other than this node.
    Host(String),
    /// 403: the request comes from a page of another origin.
    Origin(String),
    /// 415: a write with no Content-Type, or one that is not YAML or JSON.
    ContentType(Option<String>),
}

impl Policy {
    /// Checks one request; `None` for a header the request does not carry, and for the
    /// content type of a request whose body the API does not read (a pod's `exec`: its answer
    /// only says it is not served).
    pub fn check(
        &self,
        method: &Method,
        host: Option<&str>,
        origin: Option<&str>,
        content_type: Option<Option<&str>>,
    ) -> Result<(), Refusal> {
        // A request with no Host (HTTP/1.0) cannot come from a browser, which always sends it.
        if let Some(host) = host
            && !self.host_allowed(host)
        {
            return Err(Refusal::Host(host.to_string()));
        }
        if let Some(origin) = origin
            && !self.origin_allowed(origin, host)
        {
            return Err(Refusal::Origin(origin.to_string()));
        }
        let write = [Method::POST, Method::PUT, Method::PATCH].contains(method);
        if let Some(content_type) = content_type.filter(|_| write)
            && !content_type.is_some_and(is_write_type)
        {
            return Err(Refusal::ContentType(content_type.map(str::to_string)));
        }
        Ok(())
    }

    fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        let name = name.strip_suffix('.').unwrap_or(&name);
        name.parse::<IpAddr>().is_ok()
            || name == "localhost"
            || name == self.node_name
            || self
                .allow_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name))
    }

    /// The node's own origin is `http://` and the Host the request was sent to (which
    /// [`Policy::host_allowed`] has checked).
    fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.trim_end_matches('/');
        host.is_some_and(|h| origin.eq_ignore_ascii_case(&format!("http://{h}")))
            || self
                .allow_origins
                .iter()
                .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
    }
}

/// The host part of a Host header: without its port, and without the brackets of an IPv6
/// literal.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // An unclosed bracket names nothing.
        return rest.split_once(']').map_or("", |(ip, _)| ip);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Whether `content_type` (parameters such as `; charset=utf-8` allowed) is one of
/// [`WRITE_TYPES`].
fn is_write_type(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or("").trim();
    WRITE_TYPES.iter().any(|t| t.eq_ignore_ascii_case(media))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            node_name: "n1".into(),
            allow_hosts: vec!["weeble.example".into()],
            allow_origins: vec!["http://dashboard:8080".into()],
        }
    }

    fn get(host: Option<&str>, origin: Option<&str>) -> Result<(), Refusal> {
        policy().check(&Method::GET, host, origin, Some(None))
    }

    #[test]
    fn hosts_must_name_this_node() {
        for host in [
            "127.0.0.1:7070",
            "127.0.0.1",
            "[::1]:7070",
            "[::1]",
            "localhost:7070",
            "LOCALHOST.",
            "n1:7070",
            "weeble.example",
            "Weeble.Example:80",
        ] {
            assert_eq!(get(Some(host), None), Ok(()), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:7070",
            "n1.evil.example",
            "",
            "[::1",
        ] {
            assert_eq!(
                get(Some(host), None),
                Err(Refusal::Host(host.into())),
                "{host}"
            );
        }
        assert_eq!(get(None, None), Ok(()), "HTTP/1.0 with no Host");
    }

    #[test]
    fn origins_must_be_the_nodes_own_or_allowed() {
        let host = Some("127.0.0.1:7070");
        assert_eq!(get(host, Some("http://127.0.0.1:7070")), Ok(()));
        assert_eq!(get(host, Some("http://dashboard:8080/")), Ok(()));
        for origin in [
            "http://evil.example",
            "null",
            "https://127.0.0.1:7070",
            "http://127.0.0.1:7071",
        ] {
            assert_eq!(
                get(host, Some(origin)),
                Err(Refusal::Origin(origin.into())),
                "{origin}"
            );
        }
        assert_eq!(
            get(None, Some("http://127.0.0.1:7070")),
            Err(Refusal::Origin("http://127.0.0.1:7070".into())),
            "no Host: nothing to be the same origin as"
        );
    }

    #[test]
    fn writes_must_be_yaml_or_json() {
        let p = policy();
        let write = |method: Method, ct: Option<&str>| p.check(&method, None, None, Some(ct));
        for ct in WRITE_TYPES {
            assert_eq!(write(Method::POST, Some(ct)), Ok(()), "{ct}");
        }
        assert_eq!(
            write(Method::PUT, Some("Application/JSON; charset=utf-8")),
            Ok(())
        );
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "",
        ] {
            for method in [Method::POST, Method::PUT, Method::PATCH] {
                assert_eq!(
                    write(method, Some(ct)),
                    Err(Refusal::ContentType(Some(ct.into())))
                );
            }
        }
        assert_eq!(write(Method::POST, None), Err(Refusal::ContentType(None)));
        assert_eq!(write(Method::GET, Some("text/plain")), Ok(()));
        assert_eq!(write(Method::DELETE, None), Ok(()));
    }
}
