//! The `capsule` command line: argument parsing only; each verb calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod check;
mod gc;
mod launch;
mod launch_args;
mod plan_verb;
mod policy_args;
mod run;

pub use launch_args::LaunchArgs;
pub use policy_args::PolicyArgs;

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
        /// A policy script that computes the Plans to launch (see docs/policy.md).
        #[arg(value_name = "SCRIPT.rhai", conflicts_with = "plan")]
        script: Option<PathBuf>,
        /// Run what `capsule plan` saved (one Plan, or a group launched together or in
        /// order) instead of building a Plan from flags. A saved Plan carries the whole
        /// launch, so no launch flag may be given with it.
        #[arg(long, value_name = "PLAN.json", conflicts_with = "launch")]
        plan: Option<PathBuf>,
        /// Write the launch's Outcome as JSON to FILE (an array for a group of Plans).
        #[arg(long, value_name = "FILE")]
        outcome: Option<PathBuf>,
        /// Keep stdin open: capsule's stdin flows to the command (without, the command's
        /// stdin is empty).
        #[arg(long, short = 'i')]
        interactive: bool,
        /// Give the command a terminal (capsule's stdin must be one).
        #[arg(long, short = 't')]
        tty: bool,
        #[command(flatten)]
        policy: PolicyArgs,
        #[command(flatten)]
        launch: LaunchArgs,
    },
    /// Print the Plan the flags or a policy script describe, as JSON; launch nothing.
    Plan {
        /// A policy script; a group of Plans prints as a JSON array, an `in_order` group as
        /// `{"inOrder": [...]}`.
        #[arg(value_name = "SCRIPT.rhai")]
        script: Option<PathBuf>,
        #[command(flatten)]
        policy: PolicyArgs,
        #[command(flatten)]
        launch: LaunchArgs,
    },
    /// Evaluate a policy script and validate its Plans against this host; launch nothing.
    Check {
        /// The policy script.
        #[arg(value_name = "SCRIPT.rhai")]
        script: PathBuf,
        #[command(flatten)]
        policy: PolicyArgs,
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
    // --set and --host-facts mean something only to a script.
    if let Command::Run {
        script: None,
        policy,
        ..
    }
    | Command::Plan {
        script: None,
        policy,
        ..
    } = &cli.command
        && let Some(flag) = policy.given()
    {
        return fail(format!(
            "{flag} is for a policy script: give it after SCRIPT.rhai, e.g. capsule run job.rhai {flag} ..."
        ));
    }
    let stdin = match &cli.command {
        Command::Run {
            interactive, tty, ..
        } => match stdin(*interactive, *tty) {
            Ok(stdin) => stdin,
            Err(code) => return code,
        },
        _ => crate::Stdin::NULL,
    };
    match cli.command {
        Command::Run {
            script: Some(script),
            outcome,
            policy,
            launch,
            ..
        } => run::run_script(&script, outcome.as_deref(), &policy, &launch, stdin),
        Command::Run {
            script: None,
            plan,
            outcome,
            launch,
            ..
        } => run::run(plan.as_deref(), outcome.as_deref(), &launch, stdin),
        Command::Plan {
            script: Some(script),
            policy,
            launch,
        } => plan_verb::plan_script(&script, &policy, &launch),
        Command::Plan {
            script: None,
            launch,
            ..
        } => plan_verb::plan(&launch),
        Command::Check {
            script,
            policy,
            launch,
        } => check::check(&script, &policy, &launch),
        Command::Gc => gc::gc(),
    }
}

/// `-i` and `-t` as a launch's [`Stdin`](crate::Stdin); `-t` needs a terminal on stdin, as
/// `docker run -t` does with `-i`.
fn stdin(interactive: bool, tty: bool) -> Result<crate::Stdin, ExitCode> {
    use std::io::IsTerminal;
    if tty && !std::io::stdin().is_terminal() {
        return Err(fail(
            "-t needs a terminal on stdin, and stdin is not one; drop -t, or run capsule from a terminal",
        ));
    }
    Ok(crate::Stdin { interactive, tty })
}

/// Reports `message` the way every verb does and returns the runtime failure code.
fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("capsule: {message}");
    ExitCode::from(crate::ExitCode::Runtime as u8)
}

/// Reports a policy's errors, one `capsule: file:line:col: ...` block each, and returns the
/// runtime failure code.
fn fail_policy(error: &policy::PolicyError) -> ExitCode {
    match error.diagnostics() {
        [] => fail(error),
        diagnostics => {
            for d in diagnostics {
                eprintln!("capsule: {d}");
            }
            ExitCode::from(crate::ExitCode::Runtime as u8)
        }
    }
}
