//! DNS for services: every node answers `NAME.NAMESPACE.svc.cluster.local` (and the shorter
//! `NAME.NAMESPACE.svc`, `NAME.NAMESPACE` and `NAME`) with its own service address, where its
//! proxy serves every service. It is authoritative for `cluster.local` (an unknown service
//! there is NXDOMAIN) and refuses every other name: it is not a resolver. The server is
//! `hickory-server`; which name means what is the core's `dns::lookup`.

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
use weeble_core::dns::{Lookup, lookup};

/// How long resolvers may keep an answer: short, since services come and go.
const TTL: u32 = 5;

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
