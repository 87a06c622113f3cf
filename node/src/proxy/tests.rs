//! The proxy against real sockets on loopback: ports given out, failures retried, turns taken.

use super::*;
use crate::services::{Endpoint, PortEndpoints};
use net::Net;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn port(port: u16, protocol: Protocol, addrs: &[SocketAddr]) -> PortEndpoints {
    PortEndpoints {
        name: None,
        port,
        protocol,
        target_port: "80".into(),
        ready: addrs
            .iter()
            .map(|&addr| Endpoint {
                pod: format!("pod-{}", addr.port()),
                node: "node".into(),
                addr,
            })
            .collect(),
        not_ready: vec![],
    }
}

#[test]
fn a_port_wanted_by_two_services_goes_to_the_first_by_name_and_udp_is_not_proxied() {
    let endpoints: Endpoints = [
        (
            ObjectKey::new("default", "b"),
            vec![port(80, Protocol::Tcp, &[]), port(53, Protocol::Udp, &[])],
        ),
        (
            ObjectKey::new("default", "a"),
            vec![port(80, Protocol::Tcp, &[])],
        ),
    ]
    .into();
    let (ports, conflicts) = listeners(&endpoints);
    let (a, b) = (
        ObjectKey::new("default", "a"),
        ObjectKey::new("default", "b"),
    );
    assert_eq!(ports, BTreeMap::from([(80, (a.clone(), 0))]));
    assert_eq!(conflicts, [((b, 0), (a, 0))]);
}

/// Two connected sockets on loopback: (the connecting end, the accepted end).
pub(super) async fn connected() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let here = TcpStream::connect(listener.local_addr().unwrap());
    let (here, accepted) = tokio::join!(here, listener.accept());
    (here.unwrap(), accepted.unwrap().0)
}

/// An endpoint that answers every connection with its name, after reading a request line.
async fn answering(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut line = [0u8; 64];
                let n = conn.read(&mut line).await.unwrap_or(0);
                let reply = format!("{name} got {}", String::from_utf8_lossy(&line[..n]));
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    addr
}

/// An endpoint that accepts and closes at once, as Docker's userland proxy does for a
/// container that has just died.
async fn closing() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (conn, _) = listener.accept().await.unwrap();
            drop(conn);
        }
    });
    addr
}

/// An address where nothing listens.
async fn refusing() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Sends `request` through a proxy for `addrs` (started at turn `first`), returns the reply.
async fn through(addrs: Vec<SocketAddr>, first: usize, request: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let _ = forward(client, &addrs, first, &Spares::new(net::Tcp)).await;
    });
    let mut conn = TcpStream::connect(proxy).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).await.unwrap_or(0);
    reply
}

#[tokio::test]
async fn a_refused_connect_is_tried_on_the_next_endpoint() {
    let addrs = vec![refusing().await, answering("b").await];
    assert_eq!(through(addrs, 0, "hello").await, "b got hello");
}

#[tokio::test]
async fn an_endpoint_that_closes_before_answering_is_replaced_and_the_request_sent_again() {
    let addrs = vec![closing().await, answering("b").await];
    assert_eq!(through(addrs, 0, "GET /").await, "b got GET /");
}

#[tokio::test]
async fn with_no_endpoint_answering_the_client_gets_nothing() {
    let addrs = vec![refusing().await, closing().await];
    assert_eq!(through(addrs, 0, "hello").await, "");
}

#[tokio::test]
async fn connections_take_the_endpoints_in_turn() {
    let addrs = vec![answering("a").await, answering("b").await];
    let mut replies = Vec::new();
    for turn in 0..4 {
        replies.push(through(addrs.clone(), turn, "x").await);
    }
    assert_eq!(replies, ["a got x", "b got x", "a got x", "b got x"]);
}

#[tokio::test]
async fn a_spare_the_endpoint_closed_is_not_used_and_spares_serve_later_clients() {
    let (mut conn, server_side) = connected().await;
    assert!(net::Tcp::still_open(&mut conn), "open and quiet");
    drop(server_side);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!net::Tcp::still_open(&mut conn), "closed by the endpoint");

    // One proxy's spares, over several clients: every request is answered.
    let addrs = vec![answering("a").await];
    let spares = Spares::new(net::Tcp);
    for _ in 0..3 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = listener.local_addr().unwrap();
        let (addrs, spares) = (addrs.clone(), spares.clone());
        tokio::spawn(async move {
            let (client, _) = listener.accept().await.unwrap();
            let _ = forward(client, &addrs, 0, &spares).await;
        });
        let mut conn = TcpStream::connect(proxy).await.unwrap();
        conn.write_all(b"x").await.unwrap();
        let mut reply = String::new();
        conn.read_to_string(&mut reply).await.unwrap();
        assert_eq!(reply, "a got x");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        spares.conns.lock().unwrap().len(),
        1,
        "one spare per endpoint"
    );
}

#[tokio::test]
async fn a_bulk_stream_arrives_whole_and_in_order_with_its_end_even_when_the_reader_lags() {
    const BYTES: usize = 16 << 20;
    let pattern = |i: usize| (i % 251) as u8;
    let (mut client, mut from_client) = connected().await;
    let (mut upstream, mut endpoint) = connected().await;
    let joined = tokio::spawn(async move { net::Tcp::join(&mut from_client, &mut upstream).await });
    // The endpoint reads nothing at first, so every buffer on the way fills (the pipe too),
    // then checks each byte and answers with the count once the client's end has come.
    let reader = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let (mut buf, mut seen, mut wrong) = (vec![0u8; 100_000], 0usize, 0usize);
        loop {
            let n = endpoint.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            wrong += (0..n).filter(|&i| buf[i] != pattern(seen + i)).count();
            seen += n;
        }
        endpoint
            .write_all(format!("{seen} {wrong}").as_bytes())
            .await
            .unwrap();
    });
    let data: Vec<u8> = (0..BYTES).map(pattern).collect();
    let mut reply = String::new();
    let sent = async {
        client.write_all(&data).await.unwrap();
        client.shutdown().await.unwrap();
        client.read_to_string(&mut reply).await.unwrap();
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), sent)
        .await
        .expect("the stream and its answer within 60 s");
    assert_eq!(reply, format!("{BYTES} 0"), "bytes seen, bytes wrong");
    reader.await.unwrap();
    joined.await.unwrap().unwrap();
}
