//! DNS for services: every node answers `NAME.NAMESPACE.svc.cluster.local` (and the shorter
//! `NAME.NAMESPACE.svc`, `NAME.NAMESPACE` and `NAME`) with its own service address, where its
//! proxy serves every service. It is authoritative for `cluster.local` (an unknown service
//! there is NXDOMAIN) and refuses every other name: it is not a resolver.
//!
//! [`answer`] turns a query's bytes into the reply's, with no socket (which name means what
//! is the core's `dns::lookup`); [`start`] is the thin UDP loop around it. A node run inside a
//! process, or a test, calls `answer` directly.

use crate::shutdown::Shutdown;
use crate::view::View;
use hickory_proto::op::{Message, MessageType, Metadata, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::sync::watch;
use tracing::{debug, info, warn};
use weeble_core::dns::{Lookup, lookup};
use weeble_crdt::Snapshot;

/// How long resolvers may keep an answer: short, since services come and go.
const TTL: u32 = 5;

/// The largest query read: a UDP DNS message without EDNS is at most 512 bytes; a longer one
/// is cut here and fails to parse.
const MAX_QUERY: usize = 4096;

/// The reply to the DNS message `query`, for a node whose service address is `ip` and whose
/// desired state is `snapshot`; `None` for bytes that are no query (they get no answer).
pub fn answer(query: &[u8], ip: IpAddr, snapshot: &Snapshot) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
    reply.metadata = Metadata::response_from_request(&request.metadata);
    let Some(question) = request.queries.first() else {
        reply.metadata.response_code = ResponseCode::FormErr;
        return reply.to_vec().ok();
    };
    let code = match lookup(&question.name().to_string(), snapshot) {
        Lookup::Service(_) => ResponseCode::NoError,
        Lookup::NoSuchName => ResponseCode::NXDomain,
        Lookup::NotOurs => ResponseCode::Refused,
    };
    let rdata = match (ip, question.query_type()) {
        (IpAddr::V4(ip), RecordType::A) => Some(RData::A(A(ip))),
        (IpAddr::V6(ip), RecordType::AAAA) => Some(RData::AAAA(AAAA(ip))),
        _ => None,
    };
    let records = rdata
        .filter(|_| code == ResponseCode::NoError)
        .map(|rdata| Record::from_rdata(question.name().clone(), TTL, rdata));
    reply.add_query(question.clone());
    reply.add_answers(records);
    reply.metadata.authoritative = code != ResponseCode::Refused;
    reply.metadata.response_code = code;
    reply.to_vec().ok()
}

/// Serves DNS on UDP `addr`, answering with `ip`, until `shutdown`; logs and gives up if
/// `addr` cannot be bound (the rest of the node runs on).
pub fn start(addr: SocketAddr, ip: IpAddr, view: watch::Receiver<Arc<View>>, shutdown: Shutdown) {
    tokio::spawn(serve(addr, ip, view, shutdown));
}

async fn serve(
    addr: SocketAddr,
    ip: IpAddr,
    view: watch::Receiver<Arc<View>>,
    mut shutdown: Shutdown,
) {
    let socket = match tokio::net::UdpSocket::bind(addr).await {
        Ok(socket) => socket,
        Err(e) => {
            warn!(%addr, error = %e, "cannot serve DNS for services");
            return;
        }
    };
    info!(%addr, "serving DNS for services");
    let mut buffer = vec![0u8; MAX_QUERY];
    loop {
        let (len, from) = tokio::select! {
            _ = shutdown.wait() => return,
            received = socket.recv_from(&mut buffer) => match received {
                Ok(received) => received,
                Err(e) => {
                    debug!(error = %e, "a DNS query could not be read");
                    continue;
                }
            },
        };
        let snapshot = view.borrow().snapshot.clone();
        let Some(reply) = answer(&buffer[..len], ip, &snapshot) else {
            debug!(%from, "not a DNS query: no answer");
            continue;
        };
        if let Err(e) = socket.send_to(&reply, from).await {
            warn!(%from, error = %e, "a DNS answer could not be sent");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{OpCode, Query};
    use hickory_proto::rr::Name;
    use std::str::FromStr;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 7));

    fn snapshot() -> Snapshot {
        let text = "kind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n";
        let objects = weeble_crdt::parse_manifests(text).unwrap().objects;
        let mut state = weeble_crdt::DesiredState::new(weeble_crdt::ActorId::from([1; 16]));
        state.apply(&objects[0]).unwrap();
        state.snapshot()
    }

    /// Asks for `name`'s records of `kind`: the reply.
    fn ask(name: &str, kind: RecordType) -> Message {
        let mut query = Message::new(0x1234, MessageType::Query, OpCode::Query);
        query.add_query(Query::query(Name::from_str(name).unwrap(), kind));
        let reply = answer(&query.to_vec().unwrap(), IP, &snapshot()).expect("an answer");
        Message::from_vec(&reply).unwrap()
    }

    #[test]
    fn a_service_name_is_answered_with_the_node_s_address() {
        for name in [
            "web.default.svc.cluster.local.",
            "web.default.svc.",
            "web.default.",
            "web.",
        ] {
            let reply = ask(name, RecordType::A);
            assert_eq!(reply.metadata.id, 0x1234);
            assert_eq!(
                reply.metadata.response_code,
                ResponseCode::NoError,
                "{name}"
            );
            assert!(reply.metadata.authoritative);
            let addresses: Vec<_> = reply.answers.iter().map(|r| r.data.clone()).collect();
            assert_eq!(addresses, [RData::A(A::new(10, 0, 0, 7))], "{name}");
        }
        let none = ask("web.default.svc.cluster.local.", RecordType::AAAA);
        assert_eq!(none.metadata.response_code, ResponseCode::NoError);
        assert!(none.answers.is_empty(), "no IPv6 address to give");
    }

    #[test]
    fn an_unknown_service_is_nxdomain_and_another_name_is_refused() {
        let unknown = ask("db.default.svc.cluster.local.", RecordType::A);
        assert_eq!(unknown.metadata.response_code, ResponseCode::NXDomain);
        assert!(unknown.metadata.authoritative);
        let other = ask("example.com.", RecordType::A);
        assert_eq!(other.metadata.response_code, ResponseCode::Refused);
        assert!(!other.metadata.authoritative && other.answers.is_empty());
    }

    #[test]
    fn garbage_gets_no_answer_and_a_question_less_query_a_format_error() {
        assert_eq!(answer(b"\x01\x02\x03", IP, &snapshot()), None);
        let empty = Message::new(7, MessageType::Query, OpCode::Query);
        let reply = answer(&empty.to_vec().unwrap(), IP, &snapshot()).expect("an answer");
        let reply = Message::from_vec(&reply).unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    }
}
