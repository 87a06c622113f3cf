//! DNS for services: every node answers `NAME.NAMESPACE.svc.cluster.local` (and the shorter
//! `NAME.NAMESPACE.svc`, `NAME.NAMESPACE` and `NAME`) with its own service address, where its
//! proxy serves every service. It is authoritative for
//! `cluster.local` (an unknown service there is NXDOMAIN) and refuses every other name: it is
//! not a resolver. The server is `hickory-server`; which name means what is [`lookup`] (pure).

use crate::view::View;
use hickory_server::net::NetError;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Metadata, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA};
use hickory_server::proto::rr::{RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::sync::watch;
use tracing::{info, warn};
use weeble_crdt::{ObjectKey, Snapshot};

/// The cluster's domain: services are `NAME.NAMESPACE.svc.cluster.local`.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// How long resolvers may keep an answer: short, since services come and go.
const TTL: u32 = 5;

/// What a queried name is to this node.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A service of the desired state.
    Service(ObjectKey),
    /// A name under `cluster.local` that names no service.
    NoSuchName,
    /// Some other name: not ours to answer.
    NotOurs,
}

/// Which service `name` (any case, with or without the final dot) names, if any.
pub fn lookup(name: &str, snapshot: &Snapshot) -> Lookup {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let (short, ours) = match name.strip_suffix(CLUSTER_DOMAIN) {
        Some(rest) => match rest.strip_suffix(".svc.") {
            Some(short) => (short, true),
            None => return Lookup::NoSuchName,
        },
        None => (name.strip_suffix(".svc").unwrap_or(&name), false),
    };
    let key = match short.split('.').collect::<Vec<_>>()[..] {
        [service, namespace] => ObjectKey::new(namespace, service),
        [service] if !ours => short_name(service, snapshot),
        _ if ours => return Lookup::NoSuchName,
        _ => return Lookup::NotOurs,
    };
    match (snapshot.services.contains_key(&key), ours) {
        (true, _) => Lookup::Service(key),
        (false, true) => Lookup::NoSuchName,
        (false, false) => Lookup::NotOurs,
    }
}

/// The service a bare `NAME` means: the `default` namespace's, else that of the first
/// namespace (by name) that has one. Kubernetes takes the asker's namespace from its search
/// path; this server cannot tell who asks, but every service has the same address here (the
/// node's, where its proxy serves all of them), so what matters is that the name exists.
fn short_name(service: &str, snapshot: &Snapshot) -> ObjectKey {
    let default = ObjectKey::new("default", service);
    if snapshot.services.contains_key(&default) {
        return default;
    }
    let named = snapshot.services.keys().find(|key| key.name == service);
    named.cloned().unwrap_or(default)
}

/// Serves DNS on UDP `addr`, answering with `ip`; logs and gives up if `addr` cannot be bound
/// (the rest of the node runs on).
pub fn start(addr: SocketAddr, ip: IpAddr, view: watch::Receiver<Arc<View>>) {
    tokio::spawn(async move {
        let socket = match tokio::net::UdpSocket::bind(addr).await {
            Ok(socket) => socket,
            Err(e) => {
                warn!(%addr, error = %e, "cannot serve DNS for services");
                return;
            }
        };
        info!(%addr, "serving DNS for services");
        let mut server = hickory_server::Server::new(Answers { ip, view });
        server.register_socket(socket);
        if let Err(e) = server.block_until_done().await {
            warn!(error = %e, "the DNS server stopped");
        }
    });
}

struct Answers {
    ip: IpAddr,
    view: watch::Receiver<Arc<View>>,
}

#[async_trait::async_trait]
impl RequestHandler for Answers {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let builder = MessageResponseBuilder::from_message_request(request);
        let Some(query) = request.queries.queries().first() else {
            let refused = builder.error_msg(&request.metadata, ResponseCode::FormErr);
            return sent(response.send_response(refused).await, request);
        };
        let snapshot = self.view.borrow().snapshot.clone();
        let code = match lookup(&query.name().to_string(), &snapshot) {
            Lookup::Service(_) => ResponseCode::NoError,
            Lookup::NoSuchName => ResponseCode::NXDomain,
            Lookup::NotOurs => ResponseCode::Refused,
        };
        let rdata = match (self.ip, query.query_type()) {
            (IpAddr::V4(ip), RecordType::A) => Some(RData::A(A(ip))),
            (IpAddr::V6(ip), RecordType::AAAA) => Some(RData::AAAA(AAAA(ip))),
            _ => None,
        };
        let records: Vec<Record> = rdata
            .filter(|_| code == ResponseCode::NoError)
            .map(|rdata| Record::from_rdata(query.name().clone().into(), TTL, rdata))
            .into_iter()
            .collect();
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = code != ResponseCode::Refused;
        metadata.response_code = code;
        let none = std::iter::empty::<&Record>;
        let answer = builder.build(metadata, records.iter(), none(), none(), none());
        sent(response.send_response(answer).await, request)
    }
}

/// The answer's summary, or a SERVFAIL one if it could not be sent.
fn sent(result: Result<ResponseInfo, NetError>, request: &Request) -> ResponseInfo {
    result.unwrap_or_else(|e| {
        warn!(error = %e, "a DNS answer could not be sent");
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = ResponseCode::ServFail;
        ResponseInfo::from(hickory_server::proto::op::Header {
            metadata,
            counts: Default::default(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use weeble_crdt::{Object, parse_manifests};

    fn snapshot() -> Snapshot {
        let mut snapshot = Snapshot::default();
        let services = "kind: Service\nmetadata: {name: nginx-service}\nspec:\n  selector: {app: nginx}\n  ports: [{port: 80}]\n---\nkind: Service\nmetadata: {name: db, namespace: shop}\nspec:\n  selector: {app: db}\n  ports: [{port: 5432}]\n";
        for object in parse_manifests(services).unwrap().objects {
            if let Object::Service(s) = object {
                snapshot.services.insert(s.meta.key(), s.into());
            }
        }
        snapshot
    }

    #[test]
    fn service_names_resolve_in_every_kubernetes_form() {
        let s = snapshot();
        let nginx = Lookup::Service(ObjectKey::new("default", "nginx-service"));
        for name in [
            "nginx-service.default.svc.cluster.local.",
            "NGINX-SERVICE.default.svc.cluster.local",
            "nginx-service.default.svc",
            "nginx-service.default",
            "nginx-service",
        ] {
            assert_eq!(lookup(name, &s), nginx, "{name}");
        }
        let db = Lookup::Service(ObjectKey::new("shop", "db"));
        assert_eq!(lookup("db.shop.svc.cluster.local.", &s), db);
        assert_eq!(lookup("db", &s), db, "the one namespace with a db");
    }

    #[test]
    fn a_short_name_in_several_namespaces_is_the_default_one_s_first() {
        let mut s = snapshot();
        let shop = weeble_crdt::Service::clone(&s.services[&ObjectKey::new("shop", "db")]);
        for namespace in ["default", "archive"] {
            let mut copy = shop.clone();
            copy.meta.namespace = namespace.into();
            s.services.insert(copy.meta.key(), copy.into());
        }
        let service = |namespace| Lookup::Service(ObjectKey::new(namespace, "db"));
        assert_eq!(lookup("db", &s), service("default"));
        s.services.remove(&ObjectKey::new("default", "db"));
        assert_eq!(lookup("db", &s), service("archive"), "first by name");
    }

    #[test]
    fn unknown_names_under_cluster_local_do_not_exist_and_others_are_not_ours() {
        let s = snapshot();
        for name in [
            "nothing.default.svc.cluster.local.",
            "db.default.svc.cluster.local",
            "cluster.local",
            "a.b.c.svc.cluster.local",
        ] {
            assert_eq!(lookup(name, &s), Lookup::NoSuchName, "{name}");
        }
        for name in ["example.com.", "www.example.com", "localhost"] {
            assert_eq!(lookup(name, &s), Lookup::NotOurs, "{name}");
        }
    }
}
