//! `weeble`: the masterless orchestrator's one binary: the agent (`weeble node`), the
//! kubectl-style client (`apply`, `get`, `describe`, `scale`, `delete`, `logs`, `rollout`), and helpers
//! for a machine with no registry (`image build-demo`, `serve-demo`), the simulator
//! (`sim`), and resilience experiments (`scenario`).

mod agent;
mod cert;
mod client;
mod demo;
mod images;
mod kubectl;
mod manifests;
mod peers;
mod rollout;
mod scenario;
mod sim;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "weeble",
    version,
    about = "A container orchestrator with no master"
)]
struct Cli {
    /// The node API to talk to.
    #[arg(
        long,
        global = true,
        env = "WEEBLE_SERVER",
        default_value = "http://127.0.0.1:7070"
    )]
    server: String,
    /// The bearer token the node's API asks for (one of its --api-token-file).
    #[arg(long, global = true, env = "WEEBLE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The CA certificate (PEM) that signed the node's API certificate, for an https://
    /// --server (`weeble cert new` writes it as ca.crt); Mozilla's roots without it.
    #[arg(long, global = true, env = "WEEBLE_CA")]
    certificate_authority: Option<PathBuf>,
    /// The namespace of named objects.
    #[arg(short = 'n', long, global = true, default_value = "default")]
    namespace: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the talk's demo on three local nodes, showing each step, then stop them.
    Demo,
    /// Run a node agent; or, with a subcommand, change which peers the cluster admits.
    Node(Box<agent::NodeCommand>),
    /// Certificates for the nodes' APIs (TLS).
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// The CLI's own settings.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print a new cluster key (for --cluster-key) on standard output.
    Keygen,
    /// Simulate a cluster of N nodes running this node code, deterministically, in virtual
    /// time: a cluster forms, deployments run, nodes crash.
    Sim(Box<sim::SimArgs>),
    /// Run resilience experiments from scenario files, with reports and timelines.
    Scenario {
        #[command(subcommand)]
        command: scenario::Command,
    },
    /// Create or update the objects of a manifest file.
    Apply {
        /// The manifest: a YAML file of Deployments and Services, or - for standard input.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// Validate and print what would be applied, without contacting any node.
        #[arg(long)]
        dry_run: bool,
    },
    /// List objects, or show one: deployments, pods, services, nodes.
    Get {
        resource: kubectl::Resource,
        name: Option<String>,
        /// Output: a table (default), `wide`, `json` or `yaml`.
        #[arg(short = 'o', long)]
        output: Option<kubectl::Output>,
    },
    /// Show one object in detail.
    Describe {
        resource: kubectl::Resource,
        name: String,
    },
    /// Set a deployment's replica count: `scale deployment NAME --replicas N`.
    Scale {
        resource: kubectl::Resource,
        name: String,
        #[arg(long)]
        replicas: i64,
    },
    /// Delete an object (`delete deployment NAME`) or every object of a file (`delete -f FILE`).
    Delete {
        resource: Option<kubectl::Resource>,
        name: Option<String>,
        #[arg(short = 'f', long = "filename", conflicts_with_all = ["resource", "name"])]
        file: Option<PathBuf>,
    },
    /// Follow, list, undo, pause, resume or restart a deployment's rollouts.
    Rollout {
        #[command(subcommand)]
        command: rollout::Command,
    },
    /// Print a pod's container output (fetched from the pod's node).
    Logs {
        pod: String,
        #[arg(long, default_value_t = 100)]
        tail: usize,
    },
    /// Container images Weeble can make on a machine with no registry.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// The demo image's HTTP server (what `weeble-demo:v1` runs).
    #[command(hide = true)]
    ServeDemo {
        #[arg(long, default_value = "0.0.0.0:80")]
        listen: std::net::SocketAddr,
    },
}

#[derive(Subcommand)]
enum CertCommand {
    /// A certificate and key for a node's API (NAME.crt, NAME.key), signed by the cluster's
    /// CA, made in the same folder (ca.crt, ca.key) the first time.
    New(cert::NewArgs),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print a kubeconfig-style file for the node of --server: its address, the CA of
    /// --certificate-authority and the --token, under the node's name.
    View,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Build weeble-demo:v1 from this binary: an HTTP server on port 80 that answers
    /// with its hostname and $MESSAGE.
    BuildDemo,
    /// Send an image of the local engine (DOCKER_HOST) into the cluster through the node of
    /// --server: every node it is for (all, or --nodes) gets it from the nodes that have it,
    /// no registry needed. Pods name it as pushed (NAME:TAG).
    Push {
        /// The image, as the local engine names it (NAME:TAG).
        image: String,
        /// Only these nodes get it (and the node of --server), separated by commas.
        #[arg(long, value_delimiter = ',')]
        nodes: Vec<String>,
    },
}

/// jemalloc, not glibc's allocator: the simulator allocates and frees small values by the
/// billion, and at 2,000 simulated nodes ran 18 % faster with it, with a peak as low or lower
/// (glibc's peak moved by a tenth with the order of unrelated allocations). The agent runs
/// on it too: one allocator for the one binary.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options (its `malloc_conf`): pages freed go back to the system after a
/// second, not ten, so a burst's room does not stay counted in the process's memory; a
/// background thread of jemalloc's gives them back, so an agent idle after a large list does
/// too (without it, only the next allocations in the same arena would).
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: MallocConf =
    MallocConf(c"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0".as_ptr());

/// A C string jemalloc reads at its start: a pointer that is never written.
#[repr(transparent)]
struct MallocConf(*const std::ffi::c_char);

// SAFETY: it points at a constant string, never written.
unsafe impl Sync for MallocConf {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let client = || {
        client::Client::new(&cli.server)
            .with_token(cli.token.clone())
            .with_certificate_authority(cli.certificate_authority.as_deref())
    };
    let ns = cli.namespace.as_str();
    let result = match cli.command {
        Command::Demo => demo::run(),
        Command::Node(node) => match (node.action, node.run) {
            (Some(action), _) => client().and_then(|c| peers::run(&c, action)),
            (None, Some(args)) => agent::run(args),
            (None, None) => Err(anyhow::anyhow!("weeble node: give --name and --data-dir")),
        },
        Command::Keygen => agent::keygen(),
        Command::Cert {
            command: CertCommand::New(args),
        } => cert::new(args),
        Command::Config {
            command: ConfigCommand::View,
        } => client().and_then(|c| {
            let ca = cli.certificate_authority.as_deref();
            cert::view(&c, &cli.server, cli.token.as_deref(), ca)
        }),
        Command::Sim(args) => sim::run(*args),
        Command::Scenario { command } => scenario::run_command(command),
        Command::Apply {
            file,
            dry_run: true,
        } => manifests::dry_run(&file),
        Command::Apply {
            file,
            dry_run: false,
        } => client().and_then(|c| kubectl::apply(&c, &file)),
        Command::Get {
            resource,
            name,
            output,
        } => client().and_then(|c| kubectl::get(&c, ns, resource, name.as_deref(), output)),
        Command::Describe { resource, name } => {
            client().and_then(|c| kubectl::describe(&c, ns, resource, &name))
        }
        Command::Scale {
            resource,
            name,
            replicas,
        } => client().and_then(|c| kubectl::scale(&c, ns, resource, &name, replicas)),
        Command::Delete {
            resource,
            name,
            file,
        } => client()
            .and_then(|c| kubectl::delete(&c, ns, resource, name.as_deref(), file.as_deref())),
        Command::Logs { pod, tail } => client().and_then(|c| kubectl::logs(&c, ns, &pod, tail)),
        Command::Rollout { command } => client().and_then(|c| rollout::run(&c, ns, command)),
        Command::Image {
            command: ImageCommand::BuildDemo,
        } => agent::build_demo_image(),
        Command::Image {
            command: ImageCommand::Push { image, nodes },
        } => client().and_then(|c| images::push(&c, &image, &nodes)),
        Command::ServeDemo { listen } => agent::serve_demo(listen),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
