//! The service proxy on loopback, beside the same traffic sent straight to the endpoint:
//! throughput of one stream (target: proxy / direct ≥ 0.8) and the latency it adds (target:
//! p99 ≤ 250 µs), both for requests on one open connection and for a new connection per
//! request. Prints a table; `cargo bench -p weeble-node --bench proxy`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weeble_crdt::{ObjectKey, Protocol};
use weeble_node::services::{Endpoint, Endpoints, PortEndpoints};

const STREAM_BYTES: usize = 512 << 20;
const RUNS: usize = 5;
const ROUND_TRIPS: usize = 20_000;
const CONNECTIONS: usize = 5_000;
const MESSAGE: usize = 64;

/// An endpoint: answers each message (first byte 1) with one of its own, and a stream's end
/// with the number of bytes it read.
async fn endpoint() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            conn.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                let mut total = 0usize;
                loop {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            total += n;
                            if buf[0] == 1 {
                                let _ = conn.write_all(&buf[..MESSAGE]).await;
                            }
                        }
                    }
                }
                let _ = conn.write_all(&(total as u64).to_le_bytes()).await;
            });
        }
    });
    addr
}

/// A proxy on 127.0.0.1 serving one service port that forwards to `to`.
async fn proxy(to: SocketAddr) -> SocketAddr {
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoints: Endpoints = [(
        ObjectKey::new("default", "bench"),
        vec![PortEndpoints {
            name: None,
            port,
            protocol: Protocol::Tcp,
            target_port: "80".into(),
            ready: vec![Endpoint {
                pod: "bench-0".into(),
                node: "here".into(),
                addr: to,
            }],
            not_ready: vec![],
        }],
    )]
    .into();
    // The proxy runs on a runtime of its own, as it does in the agent (another process than
    // the client's and the endpoint's), for as long as the benchmark runs.
    std::thread::spawn(move || {
        two_workers("proxy").block_on(async {
            let (_keep, rx) = tokio::sync::watch::channel(Arc::new(endpoints));
            weeble_node::proxy::start("127.0.0.1".parse().unwrap(), rx);
            std::future::pending::<()>().await
        })
    });
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_ok() {
            return addr;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the proxy never listened on {addr}");
}

/// MB/s of one stream of `STREAM_BYTES` to `addr`, until the endpoint confirms it all.
async fn stream(addr: SocketAddr) -> f64 {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let chunk = vec![7u8; 256 * 1024];
    let start = Instant::now();
    for _ in 0..STREAM_BYTES / chunk.len() {
        conn.write_all(&chunk).await.unwrap();
    }
    conn.shutdown().await.unwrap();
    let mut total = [0u8; 8];
    conn.read_exact(&mut total).await.unwrap();
    assert_eq!(u64::from_le_bytes(total) as usize, STREAM_BYTES);
    STREAM_BYTES as f64 / 1e6 / start.elapsed().as_secs_f64()
}

/// Round-trip times of `ROUND_TRIPS` messages on one connection.
async fn round_trips(addr: SocketAddr) -> Vec<Duration> {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.set_nodelay(true).unwrap();
    let (message, mut reply) = ([1u8; MESSAGE], [0u8; MESSAGE]);
    let mut times = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let start = Instant::now();
        conn.write_all(&message).await.unwrap();
        conn.read_exact(&mut reply).await.unwrap();
        times.push(start.elapsed());
    }
    times
}

/// Times of connect + one message + its reply, a new connection each.
async fn connections(addr: SocketAddr) -> Vec<Duration> {
    let (message, mut reply) = ([1u8; MESSAGE], [0u8; MESSAGE]);
    let mut times = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let start = Instant::now();
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.set_nodelay(true).unwrap();
        conn.write_all(&message).await.unwrap();
        conn.read_exact(&mut reply).await.unwrap();
        times.push(start.elapsed());
    }
    times
}

fn percentile(times: &mut [Duration], p: f64) -> f64 {
    times.sort();
    let i = ((times.len() - 1) as f64 * p / 100.0).round() as usize;
    times[i].as_secs_f64() * 1e6
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A tokio runtime of two worker threads named `name`, like the agent's on this 2-core
/// machine.
fn two_workers(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .unwrap()
}

/// CPU seconds used so far by this process's threads named `name`.
fn cpu_seconds(name: &str) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| {
            let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let used =
                fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
            (comm.trim() == name).then_some(used / ticks)
        })
        .sum()
}

fn main() {
    two_workers("bench").block_on(async {
        let direct = endpoint().await;
        let proxied = proxy(direct).await;
        let (mut straight, mut through) = (Vec::new(), Vec::new());
        // CPU seconds: client and endpoint during the direct streams; client and endpoint,
        // and proxy, during the proxied ones.
        let mut cpu = [0.0; 3];
        for _ in 0..RUNS {
            let before = cpu_seconds("bench");
            straight.push(stream(direct).await);
            cpu[0] += cpu_seconds("bench") - before;
            let before = [cpu_seconds("bench"), cpu_seconds("proxy")];
            through.push(stream(proxied).await);
            cpu[1] += cpu_seconds("bench") - before[0];
            cpu[2] += cpu_seconds("proxy") - before[1];
        }
        let (straight, through) = (median(straight), median(through));
        println!("one stream of {} MiB, median of {RUNS} runs", STREAM_BYTES >> 20);
        println!("  direct {straight:>8.0} MB/s   proxy {through:>8.0} MB/s   ratio {:.2} (target ≥ 0.8)", through / straight);
        let mib = (RUNS * STREAM_BYTES) as f64 / 1e6;
        println!(
            "  CPU (2 cores): direct {:.2} s in {:.2} s; proxied {:.2} s + proxy {:.2} s in {:.2} s",
            cpu[0],
            mib / straight,
            cpu[1],
            cpu[2],
            mib / through
        );
        for (what, mut direct_times, mut proxy_times) in [
            ("one connection, 64-byte request and reply", round_trips(direct).await, round_trips(proxied).await),
            ("a new connection per request", connections(direct).await, connections(proxied).await),
        ] {
            println!("{what} ({} each), µs", direct_times.len());
            println!("        direct   proxy   added (target p99 ≤ 250)");
            for p in [50.0, 99.0] {
                let (d, x) = (percentile(&mut direct_times, p), percentile(&mut proxy_times, p));
                println!("  p{p:<4}{d:>8.1}{x:>8.1}{:>8.1}", x - d);
            }
        }
    });
}
