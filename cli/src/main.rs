//! `weeble`: the masterless orchestrator's one binary: the kubectl-style client, and (as
//! `weeble node`) the agent.

mod manifests;

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create or update the objects of a manifest file.
    Apply {
        /// The manifest: a YAML file of Deployments and Services, or - for standard input.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// Validate and print what would be applied, without contacting any node.
        #[arg(long)]
        dry_run: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Apply {
            file,
            dry_run: true,
        } => manifests::dry_run(&file),
        Command::Apply { dry_run: false, .. } => Err(anyhow::anyhow!(
            "this build has no node API yet: use --dry-run to validate the file"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
