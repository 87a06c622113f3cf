//! `weeble node` and the commands that set a node up: `keygen`, `image build-demo`, and the
//! demo image's own server, `serve-demo`.

use anyhow::{Context, anyhow, bail};
use clap::{Args, ValueEnum};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use weeble_core::time::parse_duration;
use weeble_crdt::quantity::{RawQuantity, cpu_millis, memory_bytes};
use weeble_crdt::{Labels, ResourceAmounts};
use weeble_node::agent::{self, NodeConfig};
use weeble_node::api::ApiOptions;
use weeble_node::api::auth::Tokens;
use weeble_node::api::listen::{Limits, raise_open_files_limit};
use weeble_node::api::tls;
use weeble_node::join::JoinToken;
use weeble_node::membership::Detection;
use weeble_node::runtime::{demo, docker::Docker};

/// `weeble node`: run a node agent (its flags), or an action on the cluster's peers.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct NodeCommand {
    #[command(subcommand)]
    pub action: Option<crate::peers::Action>,
    #[command(flatten)]
    pub run: Option<NodeArgs>,
}

#[derive(Args)]
pub struct NodeArgs {
    /// The node's name: unique in the cluster, a DNS-1123 label.
    #[arg(long)]
    name: String,
    /// Where the node keeps its key and its copy of the desired state.
    #[arg(long)]
    data_dir: PathBuf,
    /// Address for peers (libp2p over TCP); containers' ports are published on its IP.
    #[arg(long, default_value = "127.0.0.1:7946")]
    p2p: SocketAddr,
    /// Publish containers' ports on this host IP instead of the --p2p one (for an agent
    /// that runs in a container of its own: the engine publishes on the host's addresses).
    #[arg(long)]
    publish_ip: Option<std::net::IpAddr>,
    /// Serve every service's ports on this IP instead of the --p2p one (each node serves
    /// every service on its own address, round-robin over the ready endpoints).
    #[arg(long)]
    service_ip: Option<std::net::IpAddr>,
    /// The UDP port on the service IP where the node answers DNS for services
    /// (`NAME.NAMESPACE.svc.cluster.local`); 0 for none.
    #[arg(long, default_value_t = 53)]
    dns_port: u16,
    /// Address of the HTTP API.
    #[arg(long, default_value = "127.0.0.1:7070")]
    api: SocketAddr,
    /// API connections served at once; one more is answered 503 and closed.
    #[arg(long, default_value_t = Limits::default().max_connections)]
    api_max_connections: usize,
    /// How long an API client has to send a request's headers, and how long an idle
    /// kept-alive connection is kept (default 10s).
    #[arg(long, value_parser = parse_duration)]
    api_header_timeout: Option<Duration>,
    /// How long an API request may go with no byte moving either way (a body that stalls,
    /// a client that stops reading; default 60s).
    #[arg(long, value_parser = parse_duration)]
    api_idle_timeout: Option<Duration>,
    /// A host name the API answers to besides IP addresses, localhost and the node's name
    /// (requests naming another Host are refused, against DNS rebinding); repeat for several.
    #[arg(long = "api-allow-host")]
    api_allow_hosts: Vec<String>,
    /// An origin (`http://dashboard:8080`) whose web pages may call the API (requests from
    /// other pages are refused); repeat for several.
    #[arg(long = "api-allow-origin")]
    api_allow_origins: Vec<String>,
    /// A file of bearer tokens the API accepts, one a line: `TOKEN,NAME` or
    /// `TOKEN,NAME,read-only` (the name shows in the logs; a read-only token may only read).
    /// Without it the API asks for none, which only a loopback --api allows.
    #[arg(long)]
    api_token_file: Option<PathBuf>,
    /// Serve the API over TLS with this certificate (PEM; `weeble cert new` makes one, or
    /// give your own), and --api-tls-key its key. The CLI then needs https:// in --server and
    /// the CA in --certificate-authority (unless a public CA signed it).
    #[arg(long, requires = "api_tls_key")]
    api_tls_cert: Option<PathBuf>,
    /// The key of --api-tls-cert (PEM).
    #[arg(long, requires = "api_tls_cert")]
    api_tls_key: Option<PathBuf>,
    /// Serve the API on a non-loopback address with no token: anyone who can reach it may
    /// change what the cluster runs.
    #[arg(long)]
    insecure_api: bool,
    /// The Docker engine this node runs its containers on: unix:///PATH or tcp://HOST:PORT
    /// (default: DOCKER_HOST, or the local engine's socket). Several nodes on one machine may
    /// each have an engine of their own, with its own images.
    #[arg(long, env = "DOCKER_HOST")]
    docker_host: Option<String>,
    /// A Docker config.json with the credentials of the registries this node pulls from
    /// ({"auths": {"HOST[:PORT]": {"auth": base64 of USER:PASSWORD}}}); read at each pull, so
    /// a fix takes effect at the next one. Never logged or shown by the API.
    #[arg(long, value_name = "FILE")]
    registry_auth: Option<PathBuf>,
    /// The most this node sends a second, in all, to peers that fetch images from it, in
    /// bytes with Kubernetes' suffixes (20Mi, 1M): for metered or slow links. Default: as
    /// fast as the link goes.
    #[arg(long, value_name = "BYTES", value_parser = parse_rate)]
    image_serve_rate: Option<u64>,
    /// Pull an image from the peers that hold it before its registry (a metered or slow
    /// link to the registry); the registry if no peer can send it. Default: the registry
    /// first, the peers if it fails.
    #[arg(long)]
    peers_first: bool,
    /// Requests a second each caller (each token, or all callers of a node with no tokens)
    /// may make, twice that in a burst; past it: 429. Default: no limit.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    api_rate_limit: Option<u32>,
    /// Requests a second each peer may send this node (membership, status, document sync),
    /// twice that in a burst; past it they are dropped, and logged once every 10 s.
    #[arg(long, default_value_t = weeble_node::network::RATE_LIMIT,
          value_parser = clap::value_parser!(u32).range(1..))]
    p2p_rate_limit: u32,
    /// Any peer's --p2p address; repeat for several. No peer is special.
    #[arg(long)]
    join: Vec<SocketAddr>,
    /// A file made by `weeble keygen`: only nodes with the same key can connect.
    #[arg(long)]
    cluster_key: Option<PathBuf>,
    /// Join with a token from `weeble node join-token` (run against any node): this node's
    /// key, which the cluster allowed, the cluster key and a peer to join. For a new data
    /// directory; it takes the place of --cluster-key.
    #[arg(long, env = "WEEBLE_JOIN_TOKEN", conflicts_with = "cluster_key")]
    join_token: Option<String>,
    /// A label for nodeSelector, `key=value`; repeat for several.
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// What the node offers to requests, `cpu=N,memory=SIZE` (default: this machine's).
    #[arg(long, value_parser = parse_capacity)]
    capacity: Option<ResourceAmounts>,
    /// The most pods this node runs at once (as the kubelet's flag): placement puts the
    /// rest on other nodes, or leaves them Pending (`TooManyPods`).
    #[arg(long, default_value_t = agent::DEFAULT_MAX_PODS)]
    max_pods: u32,
    /// How many other nodes must hold a write on disk before it is acknowledged (every live
    /// peer when there are fewer). An acknowledged write is lost only if all of them and this
    /// node die before it spreads further, which it does at once, by gossip.
    #[arg(long, default_value_t = agent::DEFAULT_REPLICATE_TO as u16, value_parser = clap::value_parser!(u16).range(1..=64))]
    replicate_to: u16,
    /// How many random peers beyond ⌈ln N⌉ a change to the desired state or to a node's status
    /// is pushed to first; they pass it on the same way, and a node they all miss (about
    /// e^-fanout of one per change) learns it from the digests within a second.
    #[arg(long, default_value_t = agent::DEFAULT_FANOUT as u16, value_parser = clap::value_parser!(u16).range(1..=16))]
    fanout: u16,
    /// How long a node told to stop (SIGTERM, Ctrl-C) takes at most to hand its pods over
    /// before it leaves the cluster (default 30s, as Kubernetes' termination grace). A second
    /// signal stops it at once; SIGKILL leaves its containers running, to be adopted at the
    /// next start.
    #[arg(long, value_parser = parse_duration)]
    leave_grace: Option<Duration>,
    /// Log lines for people (`text`) or machines (`json`); filter with RUST_LOG.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Failure detection: how often this node probes a peer (`500ms`, `1s`, ...; default 1s).
    #[arg(long, value_parser = parse_duration)]
    probe_interval: Option<Duration>,
    /// Failure detection: how long a probe may take before other peers are asked to probe
    /// too (default 500ms).
    #[arg(long, value_parser = parse_duration)]
    probe_timeout: Option<Duration>,
    /// Failure detection: how long a suspected peer has to refute before it is declared dead
    /// (default 2s).
    #[arg(long, value_parser = parse_duration)]
    suspect_timeout: Option<Duration>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The API's tokens from `path` ([`Tokens::parse`]).
fn read_tokens(path: &Path) -> anyhow::Result<Tokens> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--api-token-file {}", path.display()))?;
    Tokens::parse(&text).map_err(|e| anyhow!("--api-token-file {}: {e}", path.display()))
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{text:?} is not key=value"))
}

/// A rate in bytes a second, as a quantity (`20Mi`); at least one byte.
fn parse_rate(text: &str) -> Result<u64, String> {
    match memory_bytes(&RawQuantity::Text(text.to_string()))? {
        0 => Err("a rate of 0 bytes a second sends nothing".into()),
        bytes => Ok(bytes),
    }
}

fn parse_capacity(text: &str) -> Result<ResourceAmounts, String> {
    let mut amounts = ResourceAmounts::default();
    for part in text.split(',') {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not name=quantity"))?;
        let raw = RawQuantity::Text(value.to_string());
        match key {
            "cpu" => amounts.cpu_millis = cpu_millis(&raw)?,
            "memory" => amounts.memory_bytes = memory_bytes(&raw)?,
            other => return Err(format!("unknown resource {other:?}: use cpu and memory")),
        }
    }
    Ok(amounts)
}

/// This machine's CPUs and memory.
fn machine_capacity() -> ResourceAmounts {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(1 << 30, |kib| kib * 1024);
    ResourceAmounts {
        cpu_millis: cpus * 1000,
        memory_bytes: memory,
    }
}

/// Reads a cluster key: 64 hex digits, optionally in libp2p's swarm.key layout.
fn read_cluster_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read cluster key {}", path.display()))?;
    let hex = text
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 64)
        .ok_or_else(|| {
            anyhow!(
                "{}: expected a line of 64 hex digits (make one with `weeble keygen`)",
                path.display()
            )
        })?;
    let key = weeble_node::join::unhex(hex).and_then(|k| k.try_into().ok());
    key.ok_or_else(|| anyhow!("{}: not hexadecimal", path.display()))
}

pub fn keygen() -> anyhow::Result<()> {
    let key: [u8; 32] = rand::random();
    println!("/key/swarm/psk/1.0.0/\n/base16/");
    println!("{}", weeble_node::join::hex(&key));
    Ok(())
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub fn run(args: NodeArgs) -> anyhow::Result<()> {
    if weeble_crdt::validate::dns1123_label(&args.name, 40).is_err() {
        bail!(
            "--name {:?}: use lower-case letters, digits and '-' (at most 40)",
            args.name
        );
    }
    // automerge instruments its change loading with an INFO span whose fields print the whole
    // change graph: at INFO that formatting was a third of a peer's CPU on every sync message
    // (and grew with the history). Its spans and events stay off unless RUST_LOG asks.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,automerge=warn".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    if args.api_max_connections == 0 {
        bail!("--api-max-connections must be at least 1");
    }
    match raise_open_files_limit() {
        Ok(limit) => tracing::info!(limit, "open files"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the limit on open files"),
    }
    let defaults = Limits::default();
    let api_options = ApiOptions {
        limits: Limits {
            max_connections: args.api_max_connections,
            header_timeout: args.api_header_timeout.unwrap_or(defaults.header_timeout),
            idle_timeout: args.api_idle_timeout.unwrap_or(defaults.idle_timeout),
        },
        allow_hosts: args.api_allow_hosts,
        allow_origins: args.api_allow_origins,
        tokens: args
            .api_token_file
            .as_deref()
            .map(read_tokens)
            .transpose()?,
        rate_limit: args.api_rate_limit,
        tls: match (&args.api_tls_cert, &args.api_tls_key) {
            (Some(cert), Some(key)) => {
                Some(tls::server_config(cert, key).map_err(|e| anyhow!("--api-tls-cert: {e}"))?)
            }
            _ => None,
        },
    };
    if api_options.tokens.is_none() && !args.api.ip().is_loopback() && !args.insecure_api {
        bail!(
            "--api {}: the API would be open to anyone who can reach that address; give \
             --api-token-file FILE (tokens the CLI passes with --token), or --insecure-api",
            args.api
        );
    }
    let mut config = NodeConfig::new(args.name, args.data_dir, args.p2p, args.api);
    config.join = args.join;
    config.publish_ip = args.publish_ip;
    config.service_ip = args.service_ip;
    config.dns_port = args.dns_port;
    config.cluster_key = args
        .cluster_key
        .as_deref()
        .map(read_cluster_key)
        .transpose()?;
    if let Some(token) = &args.join_token {
        let token = JoinToken::parse(token).map_err(|e| anyhow!("--join-token: {e}"))?;
        config.key = Some(token.key_bytes());
        config.cluster_key = token.cluster_key().flatten();
        config.join.push(token.join);
    }
    config.p2p_rate_limit = args.p2p_rate_limit;
    config.labels = args.labels.into_iter().collect::<Labels>();
    config.capacity = args.capacity.unwrap_or_else(machine_capacity);
    config.max_pods = args.max_pods;
    if let Some(file) = &args.registry_auth {
        // Read once now, so a file that cannot be read stops the start, not the first pull.
        let credentials = weeble_node::runtime::credentials::CredentialsFile(file.clone());
        credentials
            .for_registry(weeble_crdt::image::DEFAULT_REGISTRY)
            .map_err(|e| anyhow!("--registry-auth: {e}"))?;
    }
    config.registry_auth = args.registry_auth;
    config.image_serve_rate = args.image_serve_rate;
    config.peers_first = args.peers_first;
    let leave_grace = args.leave_grace.unwrap_or(Duration::from_secs(30));
    let docker_host = args.docker_host.clone();
    config.replicate_to = usize::from(args.replicate_to);
    config.fanout = usize::from(args.fanout);
    let default = Detection::default();
    config.detection = Detection {
        probe_period: args.probe_interval.unwrap_or(default.probe_period),
        probe_rtt: args.probe_timeout.unwrap_or(default.probe_rtt),
        suspect_to_down: args.suspect_timeout.unwrap_or(default.suspect_to_down),
    };
    if config.detection.probe_rtt >= config.detection.probe_period {
        bail!(
            "--probe-timeout ({:?}) must be shorter than --probe-interval ({:?})",
            config.detection.probe_rtt,
            config.detection.probe_period
        );
    }
    runtime()?.block_on(async move {
        let docker = Docker::connect_to(docker_host.as_deref())
            .await
            .context("the node needs the Docker engine")?;
        let api = config.api;
        let node = agent::start(config, docker.clone()).await?;
        let leaving = node.clone();
        let serve = weeble_node::api::serve(api, api_options, node, docker);
        tokio::pin!(serve);
        tokio::select! {
            served = &mut serve => return served.with_context(|| format!("serving the API on {api}")),
            _ = shutdown() => {}
        }
        tracing::info!("stopping: handing this node's pods over, then leaving the cluster");
        // The API keeps serving while the node hands its pods over.
        tokio::select! {
            _ = leaving.leave(leave_grace) => tracing::info!("left the cluster"),
            _ = shutdown() => tracing::info!("stopping at once; containers keep running and are adopted at the next start"),
            served = &mut serve => return served.with_context(|| format!("serving the API on {api}")),
        }
        Ok(())
    })
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("signal handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

pub fn build_demo_image() -> anyhow::Result<()> {
    let binary = std::env::current_exe().context("locating this binary")?;
    runtime()?.block_on(async {
        let docker = Docker::connect().await?;
        let id = demo::build_demo_image(&docker, &binary).await?;
        println!("{} built ({id})", demo::DEMO_IMAGE);
        Ok(())
    })
}

/// The demo server; it is PID 1 in its container, so it stops on SIGTERM itself (`docker
/// stop` would otherwise wait out its grace period).
pub fn serve_demo(listen: SocketAddr) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        tokio::select! {
            served = demo::serve_demo(listen) => served.with_context(|| format!("serving on {listen}")),
            _ = shutdown() => Ok(()),
        }
    })
}
