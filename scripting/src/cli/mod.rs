//! The `capsule` command line: argument parsing only; each verb calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod gc;
mod launch_args;
mod plan;
mod run;

pub use launch_args::LaunchArgs;

/// Run a workload as a container or a microVM, chosen by policy.
#[derive(Debug, Parser)]
#[command(name = "capsule", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Launch a workload and exit with its status.
    Run {
        /// Run a Plan saved by `capsule plan` instead of building one from flags.
        /// A saved Plan carries the whole launch, so no launch flag may be given with it.
        #[arg(long, value_name = "PLAN.json", conflicts_with = "launch")]
        plan: Option<PathBuf>,
        /// Write the launch's Outcome as JSON to FILE.
        #[arg(long, value_name = "FILE")]
        outcome: Option<PathBuf>,
        #[command(flatten)]
        launch: LaunchArgs,
    },
    /// Print the Plan the flags describe, as JSON; launch nothing.
    Plan {
        #[command(flatten)]
        launch: LaunchArgs,
    },
    /// Remove what crashed launches left behind (state, cgroups, processes).
    Gc,
}

/// Parses the command line, runs the verb and returns the process's exit code.
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAPSULE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    // A usage error is a failure of the runtime, not of the workload: 125, as docker exits.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(crate::ExitCode::Runtime as u8)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Run {
            plan,
            outcome,
            launch,
        } => run::run(plan.as_deref(), outcome.as_deref(), &launch),
        Command::Plan { launch } => plan::plan(&launch),
        Command::Gc => gc::gc(),
    }
}

/// Reports `message` the way every verb does and returns the runtime failure code.
fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("capsule: {message}");
    ExitCode::from(crate::ExitCode::Runtime as u8)
}
