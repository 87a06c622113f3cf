//! The service proxy on loopback, beside the same traffic sent straight to the endpoint:
//! throughput of one stream (target: proxy / direct ≥ 0.8) and the latency it adds (target:
//! p99 ≤ 250 µs), both for requests on one open connection and for a new connection per
//! request. Prints a table; `cargo bench -p weeble-node --bench proxy`.
//!
//! The endpoint runs on a thread of its own, as a container's server is a process of its own.
//! Where HAProxy is installed, it runs beside Weeble's proxy as a reference (TCP mode, splice,
//! two threads): what a mature user-space proxy does on the same machine.
//!
//! The machine is shared and noisy, so the paths take turns in short blocks (the one going
//! first changes every block): a burst of noise falls on all of them alike. Throughput is the
//! median of the ratios of streams run one after the other; latency percentiles pool the blocks.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weeble_crdt::{ObjectKey, Protocol};
use weeble_node::services::{Endpoint, Endpoints, PortEndpoints};

const STREAM_BYTES: usize = 256 << 20;
const STREAM_ROUNDS: usize = 9;
const BLOCKS: usize = 20;
const ROUND_TRIPS: usize = 1_000;
const CONNECTIONS: usize = 250;
const MESSAGE: usize = 64;

/// An endpoint on a thread of its own: answers each message (first byte 1) with one of its
/// own, and a stream's end with the number of bytes it read.
fn endpoint() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = TcpListener::from_std(listener).unwrap();
            loop {
                let (conn, _) = listener.accept().await.unwrap();
                tokio::spawn(answer(conn));
            }
        })
    });
    addr
}

async fn answer(mut conn: TcpStream) {
    conn.set_nodelay(true).unwrap();
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
}

/// A port on 127.0.0.1 that nothing listens on (as far as anyone can tell).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Waits until something listens on `addr`.
async fn listening(addr: SocketAddr) -> SocketAddr {
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_ok() {
            return addr;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("nothing ever listened on {addr}");
}

/// Weeble's proxy on 127.0.0.1, serving one service port that forwards to `to`.
async fn weeble(to: SocketAddr) -> SocketAddr {
    let port = free_port();
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
            let ip = "127.0.0.1".parse().unwrap();
            weeble_node::proxy::start(weeble_node::proxy::net::Tcp, ip, rx);
            std::future::pending::<()>().await
        })
    });
    listening(SocketAddr::from(([127, 0, 0, 1], port))).await
}

/// HAProxy and its configuration file, both gone when dropped.
struct Haproxy(Child, std::path::PathBuf);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_file(&self.1);
    }
}

/// HAProxy on 127.0.0.1 forwarding to `to` (TCP mode, splicing when it pays, two threads), if
/// it is installed.
async fn haproxy(to: SocketAddr) -> Option<(Haproxy, SocketAddr)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = std::env::temp_dir().join(format!("weeble-bench-haproxy-{}.cfg", addr.port()));
    std::fs::write(
        &config,
        format!(
            "global\n  maxconn 4096\n  nbthread 2\n\
             defaults\n  mode tcp\n  option splice-auto\n  timeout connect 1s\n  \
             timeout client 60s\n  timeout server 60s\n\
             listen bench\n  bind {addr}\n  server endpoint {to}\n"
        ),
    )
    .unwrap();
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&config)
        .stdout(Stdio::null())
        .spawn();
    let Ok(child) = child else {
        println!("(HAProxy is not installed: no reference column)");
        let _ = std::fs::remove_file(&config);
        return None;
    };
    let running = Haproxy(child, config);
    Some((running, listening(addr).await))
}

/// One stream of `STREAM_BYTES` to `addr`, until the endpoint confirms it all: MB/s, and
/// how many cores the whole machine kept busy meanwhile.
async fn stream(addr: SocketAddr) -> (f64, f64) {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let chunk = vec![7u8; 256 * 1024];
    let (start, busy) = (Instant::now(), busy_seconds());
    for _ in 0..STREAM_BYTES / chunk.len() {
        conn.write_all(&chunk).await.unwrap();
    }
    conn.shutdown().await.unwrap();
    let mut total = [0u8; 8];
    conn.read_exact(&mut total).await.unwrap();
    assert_eq!(u64::from_le_bytes(total) as usize, STREAM_BYTES);
    let seconds = start.elapsed().as_secs_f64();
    (
        STREAM_BYTES as f64 / 1e6 / seconds,
        (busy_seconds() - busy) / seconds,
    )
}

/// CPU seconds the whole machine has spent busy (user, system, interrupts) since boot.
fn busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq; USER_HZ is 100 on Linux.
    [0, 1, 2, 5, 6]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum::<f64>()
        / 100.0
}

/// Round-trip times of `ROUND_TRIPS` messages on `conn`.
async fn round_trips(conn: &mut TcpStream, times: &mut Vec<Duration>) {
    let (message, mut reply) = ([1u8; MESSAGE], [0u8; MESSAGE]);
    for _ in 0..ROUND_TRIPS {
        let start = Instant::now();
        conn.write_all(&message).await.unwrap();
        conn.read_exact(&mut reply).await.unwrap();
        times.push(start.elapsed());
    }
}

/// Times of connect + one message + its reply, a new connection each.
async fn connections(addr: SocketAddr, times: &mut Vec<Duration>) {
    let (message, mut reply) = ([1u8; MESSAGE], [0u8; MESSAGE]);
    for _ in 0..CONNECTIONS {
        let start = Instant::now();
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.set_nodelay(true).unwrap();
        conn.write_all(&message).await.unwrap();
        conn.read_exact(&mut reply).await.unwrap();
        times.push(start.elapsed());
    }
}

/// Round-trip times of a 64-byte message between two threads over a Unix socket pair: no
/// proxy and no TCP, only two threads waking each other. On a virtual machine whose idle
/// cores halt, this is the floor under any exchange between two processes.
fn thread_ping_pong() -> Vec<Duration> {
    use std::io::{Read, Write};
    let (mut here, mut there) = std::os::unix::net::UnixStream::pair().unwrap();
    let echo = std::thread::spawn(move || {
        let mut message = [0u8; MESSAGE];
        for _ in 0..ROUND_TRIPS * BLOCKS {
            there.read_exact(&mut message).unwrap();
            there.write_all(&message).unwrap();
        }
    });
    let mut message = [1u8; MESSAGE];
    let times = (0..ROUND_TRIPS * BLOCKS)
        .map(|_| {
            let start = Instant::now();
            here.write_all(&message).unwrap();
            here.read_exact(&mut message).unwrap();
            start.elapsed()
        })
        .collect();
    echo.join().unwrap();
    times
}

/// The paths in the order they take their turn in `round`: each goes first as often.
fn turns(round: usize, paths: usize) -> impl Iterator<Item = usize> {
    (0..paths).map(move |i| (round + i) % paths)
}

fn percentile(times: &mut [Duration], p: f64) -> f64 {
    times.sort();
    let i = ((times.len() - 1) as f64 * p / 100.0).round() as usize;
    times[i].as_secs_f64() * 1e6
}

fn median(values: &[f64]) -> f64 {
    let mut values = values.to_vec();
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

fn print_latency(what: &str, names: &[&str], times: &mut [Vec<Duration>]) {
    println!("{what} ({} each), µs", times[0].len());
    println!(
        "  {:<8}{:>8}{:>8}{:>12}{:>12}",
        "", "p50", "p99", "added p50", "added p99"
    );
    let direct = [50.0, 99.0].map(|p| percentile(&mut times[0], p));
    for (name, times) in names.iter().zip(times.iter_mut()) {
        let [p50, p99] = [50.0, 99.0].map(|p| percentile(times, p));
        let added = if *name == "direct" {
            String::new()
        } else {
            format!("{:>12.1}{:>12.1}", p50 - direct[0], p99 - direct[1])
        };
        println!("  {name:<8}{p50:>8.1}{p99:>8.1}{added}");
    }
    println!("  (target: added p99 ≤ 250)");
}

fn main() {
    let mut floor = thread_ping_pong();
    println!(
        "the machine: two threads passing a {MESSAGE}-byte message ({} round trips), µs",
        floor.len()
    );
    let [p50, p99] = [50.0, 99.0].map(|p| percentile(&mut floor, p));
    println!("  p50 {p50:.1}   p99 {p99:.1}");
    two_workers("bench").block_on(async {
        let direct = endpoint();
        let mut paths = vec![("direct", direct), ("weeble", weeble(direct).await)];
        let reference = haproxy(direct).await;
        if let Some((_, addr)) = &reference {
            paths.push(("haproxy", *addr));
        }
        let names: Vec<&str> = paths.iter().map(|(name, _)| *name).collect();

        let mut speeds = vec![Vec::new(); paths.len()];
        let mut busy = vec![Vec::new(); paths.len()];
        let mut ratios = vec![Vec::new(); paths.len()];
        for round in 0..STREAM_ROUNDS {
            let mut measured = vec![(0.0, 0.0); paths.len()];
            for path in turns(round, paths.len()) {
                measured[path] = stream(paths[path].1).await;
            }
            for (path, &(speed, cores)) in measured.iter().enumerate() {
                speeds[path].push(speed);
                busy[path].push(cores);
                ratios[path].push(speed / measured[0].0);
            }
        }
        println!(
            "one stream of {} MiB, {STREAM_ROUNDS} rounds, medians",
            STREAM_BYTES >> 20
        );
        println!("  {:<8}{:>8}{:>12}{:>8}", "", "MB/s", "cores busy", "ratio");
        for (path, name) in names.iter().enumerate() {
            println!(
                "  {name:<8}{:>8.0}{:>12.2}{:>8.2}",
                median(&speeds[path]),
                median(&busy[path]),
                median(&ratios[path])
            );
        }
        println!("  (target: ratio ≥ 0.8)");

        let mut open = Vec::new();
        for (_, addr) in &paths {
            open.push(TcpStream::connect(addr).await.unwrap());
        }
        let mut kept = vec![Vec::new(); paths.len()];
        let mut fresh = vec![Vec::new(); paths.len()];
        for block in 0..BLOCKS {
            for path in turns(block, paths.len()) {
                round_trips(&mut open[path], &mut kept[path]).await;
            }
        }
        for block in 0..BLOCKS {
            for path in turns(block, paths.len()) {
                connections(paths[path].1, &mut fresh[path]).await;
            }
        }
        print_latency(
            "one connection, 64-byte request and reply",
            &names,
            &mut kept,
        );
        print_latency("a new connection per request", &names, &mut fresh);
        drop(reference);
    });
}
