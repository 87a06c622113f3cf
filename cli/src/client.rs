//! The HTTP client side of the CLI: requests to any node's API, errors turned into messages.

use anyhow::{Context, anyhow, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;
use std::time::Duration;
use ureq::http::header;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, parse_pem};
use weeble_core::objects::{List, ListMeta, Status};

/// How many items the CLI asks for in each page of a list (kubectl's default chunk size).
pub const PAGE: usize = 500;

/// `text` made safe for a URL's query: bytes other than letters, digits and `-._~/` as `%XX`.
pub fn query_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A node's API, as `--server` names it, with the token it asks for (`--token`).
pub struct Client {
    base: String,
    agent: ureq::Agent,
    token: Option<String>,
    timeout: Duration,
}

/// The agent every request goes through: `timeout` for each, no redirect followed (the API
/// sends none: a pod's log on another node is streamed through the node asked), TLS trusting
/// `roots` (Mozilla's roots if `None`).
fn agent(timeout: Duration, roots: Option<RootCerts>) -> ureq::Agent {
    let tls = TlsConfig::builder()
        .root_certs(roots.unwrap_or(RootCerts::WebPki))
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .tls_config(tls)
        .build()
        .into()
}

impl Client {
    pub fn new(server: &str) -> Self {
        Client::with_timeout(server, Duration::from_secs(30))
    }

    /// A client whose every request gives up after `timeout`.
    pub fn with_timeout(server: &str, timeout: Duration) -> Self {
        Client {
            base: server.trim_end_matches('/').to_string(),
            agent: agent(timeout, None),
            token: None,
            timeout,
        }
    }

    /// The same client, trusting the CA certificates of the PEM file `ca` (if given) for an
    /// https:// server, as kubectl's `--certificate-authority`.
    pub fn with_certificate_authority(mut self, ca: Option<&Path>) -> anyhow::Result<Self> {
        let Some(ca) = ca else {
            return Ok(self);
        };
        let pem = std::fs::read(ca)
            .with_context(|| format!("--certificate-authority {}", ca.display()))?;
        let certs: Vec<Certificate<'static>> = parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(PemItem::Certificate(cert)) => Some(cert),
                _ => None,
            })
            .collect();
        if certs.is_empty() {
            bail!(
                "--certificate-authority {}: no PEM certificate in it (`weeble cert new` writes \
                 ca.crt)",
                ca.display()
            );
        }
        self.agent = agent(self.timeout, Some(RootCerts::new_with_certs(&certs)));
        Ok(self)
    }

    /// The same client, sending `token` (`Authorization: Bearer`) with every request.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.is_empty());
        self
    }

    /// `request` with the token, if there is one.
    fn authorized<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(token) => request.header(header::AUTHORIZATION, format!("Bearer {token}")),
            None => request,
        }
    }

    /// The object at `path`, read as a `T` (a `serde_json::Value` to take it as it is).
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self.authorized(self.agent.get(&self.url(path))).call();
        self.json(path, response)
    }

    /// Every item of the list at `path`, fetched in pages of [`PAGE`] items as kubectl does
    /// (so no answer grows with the cluster), as one list. `path` may carry a query of its own.
    pub fn list<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<List<T>> {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let query = if path.contains('?') { '&' } else { '?' };
            let mut url = format!("{path}{query}limit={PAGE}");
            if let Some(token) = &token {
                url = format!("{url}&continue={}", query_encode(token));
            }
            let page: List<T> = self.get(&url)?;
            items.extend(page.items);
            let next = page.metadata.continue_.filter(|t| !t.is_empty());
            if next.is_some() && next == token {
                bail!(
                    "the node at {} answered {path} with the same page twice",
                    self.base
                );
            }
            token = next;
            if token.is_none() {
                return Ok(List {
                    metadata: ListMeta::default(),
                    items,
                    ..page
                });
            }
        }
    }

    /// The text at `path` (a pod's log).
    pub fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let response = self.authorized(self.agent.get(&self.url(path))).call();
        let (status, body) = self.read(path, response)?;
        if status >= 400 {
            return Err(self.failure(status, &body));
        }
        Ok(body)
    }

    pub fn post_text<T: DeserializeOwned>(&self, path: &str, body: &str) -> anyhow::Result<T> {
        let response = self
            .authorized(self.agent.post(&self.url(path)))
            .content_type("application/yaml")
            .send(body);
        self.json(path, response)
    }

    pub fn put_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        let response = self
            .authorized(self.agent.put(&self.url(path)))
            .content_type("application/json")
            .send(serde_json::to_string(body)?);
        self.json(path, response)
    }

    /// Posts what `body` reads (an image's tar) to `path`, giving up after `timeout` rather
    /// than the client's own.
    pub fn upload<T: DeserializeOwned>(
        &self,
        path: &str,
        body: impl std::io::Read + 'static,
        timeout: Duration,
    ) -> anyhow::Result<T> {
        let request = self.authorized(self.agent.post(&self.url(path)));
        let response = request
            .config()
            .timeout_global(Some(timeout))
            .build()
            .content_type("application/x-tar")
            .send(ureq::SendBody::from_owned_reader(body));
        self.json(path, response)
    }

    pub fn delete(&self, path: &str) -> anyhow::Result<Status> {
        let response = self.authorized(self.agent.delete(&self.url(path))).call();
        self.json(path, response)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn read(
        &self,
        path: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<(u16, String)> {
        let mut response = response.map_err(|e| {
            anyhow!("cannot reach the Weeble node at {} ({e}); is `weeble node` running there? (set --server or WEEBLE_SERVER)", self.base)
        })?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("reading the answer to {path}"))?;
        Ok((status, body))
    }

    fn json<T: DeserializeOwned>(
        &self,
        path: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<T> {
        let (status, body) = self.read(path, response)?;
        if status >= 400 {
            return Err(self.failure(status, &body));
        }
        serde_json::from_str(&body).with_context(|| {
            format!(
                "the node at {} answered {path} with something this weeble cannot read \
                 (a node of another version, or not a Weeble node?)",
                self.base
            )
        })
    }

    /// A Kubernetes `Status` body turned into its message.
    fn failure(&self, status: u16, body: &str) -> anyhow::Error {
        let message = serde_json::from_str::<Status>(body)
            .ok()
            .and_then(|s| s.message)
            .unwrap_or_else(|| body.trim().to_string());
        anyhow!("{message} (HTTP {status} from {})", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_encoded_for_a_query() {
        assert_eq!(query_encode("default/web/499"), "default/web/499");
        assert_eq!(query_encode("a b&c=d%"), "a%20b%26c%3Dd%25");
    }
}
