//! The timer `cargo xtask bench microvm` runs inside the nested lab (built as a static musl
//! binary: the lab has no C library, and busybox `sh` has no clock finer than a second).
//!
//! `bench_driver PLAN.json ROUND` runs every tool of the plan once, in an order that rotates
//! with ROUND (a number; `0` is the warm-up round) so that no tool always follows the same
//! one, and prints one line per run on stdout, which the lab's console carries to xtask:
//!
//! ```text
//! CAPSULE-BENCH tool=capsule round=3 ms=812.40 maxrss_kib=40960 boot_ms=610.20 ...
//! ```
//!
//! `ms` is the wall time from just before the spawn to the reaping `wait4`, measured with a
//! monotonic clock: the VMM's whole life, from exec to exit. `maxrss_kib` is the child's peak
//! resident set as `wait4` reports it for that one child (`ru_maxrss`), guest RAM the VMM
//! touched included. For a tool with an `outcome` file (capsule's `--outcome`), the figures
//! capsule measured itself follow: `total_ms`, `boot_ms`, `memory_bytes`,
//! `vmm_overhead_bytes`, each only if the Outcome has it.
//!
//! A run whose guest the lab's emulator lost (`shows_an_emulator_fault`: under TCG's nested
//! SVM a fifth to a third of L2 guests triple-fault on some days) runs again, up to
//! [`ATTEMPTS`] times in all, and says so on a line that starts with `RELAUNCH_MARKER`: a
//! round holds about 60 launches, so without it one lost guest would cost the whole boot. Its
//! time is not counted; the run that completes is timed as any other.
//!
//! A run that ends with another exit status than the plan expects prints its command and
//! output and fails the round; it also leaves a flag that fails every later round at once, so
//! a broken VMM costs one run, not the lab's per-case timeout for each round.

use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use nix::libc;
use serde_json::Value;

#[path = "../src/emulator_fault.rs"]
mod emulator_fault;

const MARKER: &str = "CAPSULE-BENCH";

/// Launches of one run at most: the first and up to three after an emulator fault.
const ATTEMPTS: usize = 4;

/// Left behind by a failed run, holding its error and output; later rounds refuse to start
/// and print both, so that a round after a guest the lab's emulator lost shows that loss too
/// and the lab runs it again on a fresh boot (`shows_an_emulator_fault` in `lab.rs`).
const FAILED_FLAG: &str = "/tmp/bench-failed";

/// One tool of the plan xtask writes.
struct Tool {
    name: String,
    argv: Vec<String>,
    /// The exit status a run that did its work ends with.
    status: i32,
    /// Where the tool writes its Outcome JSON, if it does.
    outcome: Option<String>,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // stdout: the lab tees it to the console, where xtask looks.
            println!("{MARKER} error {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, plan_path, round] = args.as_slice() else {
        bail!("usage: bench_driver PLAN.json ROUND");
    };
    let round: usize = round.parse().context("ROUND must be a number")?;
    if let Ok(earlier) = fs::read_to_string(FAILED_FLAG) {
        bail!("an earlier round failed, so round {round} does not run: {earlier}");
    }
    let plan: Value = serde_json::from_slice(
        &fs::read(plan_path).with_context(|| format!("reading {plan_path}"))?,
    )
    .with_context(|| format!("parsing {plan_path}"))?;
    let output = plan["output"].as_str().context("the plan has no output")?;
    let mut tools = parse_tools(&plan)?;
    if tools.is_empty() {
        bail!("the plan names no tools");
    }
    let turn = round % tools.len();
    tools.rotate_left(turn);
    for tool in &tools {
        if let Err(e) = run_until_the_guest_survives(tool, round, Path::new(output)) {
            let _ = fs::write(FAILED_FLAG, format!("{e:#}"));
            return Err(e);
        }
    }
    Ok(())
}

/// [`run_once`], again after a run the emulator broke, up to [`ATTEMPTS`] launches.
fn run_until_the_guest_survives(tool: &Tool, round: usize, output: &Path) -> Result<()> {
    for attempt in 1.. {
        let Err(e) = run_once(tool, round, output) else {
            return Ok(());
        };
        let message = format!("{e:#}");
        if attempt == ATTEMPTS || !emulator_fault::shows_an_emulator_fault(&message) {
            return Err(e);
        }
        let sign = message.lines().last().unwrap_or_default();
        println!(
            "{} tool={} round={round} attempt={attempt}: {sign}",
            emulator_fault::RELAUNCH_MARKER,
            tool.name
        );
    }
    unreachable!("the attempts are counted up to ATTEMPTS")
}

fn parse_tools(plan: &Value) -> Result<Vec<Tool>> {
    let mut tools = Vec::new();
    for tool in plan["tools"].as_array().context("the plan has no tools")? {
        let argv: Vec<String> = tool["argv"]
            .as_array()
            .context("a tool has no argv")?
            .iter()
            .map(|a| a.as_str().map(str::to_owned).context("argv holds strings"))
            .collect::<Result<_>>()?;
        if argv.is_empty() {
            bail!("a tool has an empty argv");
        }
        tools.push(Tool {
            name: tool["name"]
                .as_str()
                .context("a tool has no name")?
                .to_owned(),
            argv,
            status: tool["status"]
                .as_i64()
                .and_then(|s| i32::try_from(s).ok())
                .context("a tool has no expected status")?,
            outcome: tool["outcome"].as_str().map(str::to_owned),
        });
    }
    Ok(tools)
}

fn run_once(tool: &Tool, round: usize, output: &Path) -> Result<()> {
    // The console goes to a file (tmpfs, as cheap as /dev/null) so that a failure can show it.
    let out = File::create(output).with_context(|| format!("creating {}", output.display()))?;
    if let Some(outcome) = &tool.outcome {
        // A stale Outcome must not pass for this run's.
        let _ = fs::remove_file(outcome);
    }
    let mut cmd = Command::new(&tool.argv[0]);
    cmd.args(&tool.argv[1..])
        .stdin(Stdio::null())
        .stdout(out.try_clone().context("duplicating the output file")?)
        .stderr(out);

    let start = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", tool.argv.join(" ")))?;
    let (status, usage) = wait4(child.id()).context("waiting for the child")?;
    let ms = start.elapsed().as_secs_f64() * 1000.0;

    let exited = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    if exited != Some(tool.status) {
        let how = match exited {
            Some(code) => format!("exit status {code}"),
            None if libc::WIFSIGNALED(status) => format!("signal {}", libc::WTERMSIG(status)),
            None => format!("wait status {status:#x}"),
        };
        let text = fs::read_to_string(output).unwrap_or_default();
        bail!(
            "tool {} round {round}: `{}` ended with {how}, expected exit status {} (after {ms:.1} ms); its output:\n{}",
            tool.name,
            tool.argv.join(" "),
            tool.status,
            text.trim_end()
        );
    }

    let mut line = format!(
        "{MARKER} tool={} round={round} ms={ms:.2} maxrss_kib={}",
        tool.name, usage.ru_maxrss
    );
    if let Some(path) = &tool.outcome {
        let outcome: Value = serde_json::from_slice(
            &fs::read(path).with_context(|| format!("{} wrote no Outcome at {path}", tool.name))?,
        )
        .with_context(|| format!("parsing {path}"))?;
        for (key, pointer) in [
            ("prepare_ms", "/timings/prepareMs"),
            ("create_ms", "/timings/createMs"),
            ("total_ms", "/timings/totalMs"),
            ("boot_ms", "/timings/bootMs"),
            ("memory_bytes", "/peaks/memoryBytes"),
            ("vmm_overhead_bytes", "/peaks/vmmOverheadBytes"),
        ] {
            if let Some(Value::Number(n)) = outcome.pointer(pointer) {
                line.push_str(&format!(" {key}={n}"));
            }
        }
    }
    println!("{line}");
    Ok(())
}

/// Reaps `pid` and returns its wait status and its own resource usage (std's `wait` does not
/// return the usage, and `getrusage(RUSAGE_CHILDREN)` is the maximum over every child so far).
fn wait4(pid: u32) -> io::Result<(i32, libc::rusage)> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    let mut status = 0;
    // SAFETY: rusage is plain integers, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers are to live locals of the right types; `pid` is our child,
        // which nothing else reaps (its `Child` is never waited on).
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            return Ok((status, usage));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
