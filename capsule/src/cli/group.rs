//! Launching a group of Plans, each as a child `capsule run --plan` of its own.
//!
//! A child per Plan, rather than a thread, because a launch owns process-wide state: the
//! signal handlers that forward SIGTERM to its container, its microVM's stop flag. Each child
//! sits in a process group of its own, so a signal reaches it once, forwarded from here,
//! rather than also from the terminal.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;

use super::run::failed_outcome;
use plan::{Outcome, Plan};

use crate::ExitCode;

/// The signals forwarded to every running member, as a single launch forwards them.
const FORWARDED: [i32; 6] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2];

/// Launches `plans` together, or one after another when `sequential` (stopping at the first
/// that fails). Returns their Outcomes in order and the exit status: the first non-zero.
pub(super) fn launch(plans: &[Plan], sequential: bool) -> (Vec<Outcome>, i32) {
    match Members::prepare(plans) {
        Ok(members) => members.run(sequential),
        Err(e) => {
            eprintln!("capsule: cannot launch the group: {e}");
            let code = ExitCode::Runtime as i32;
            let outcomes = plans
                .iter()
                .map(|p| failed_outcome(p, code, format!("cannot launch the group: {e}")))
                .collect();
            (outcomes, code)
        }
    }
}

struct Members<'a> {
    plans: &'a [Plan],
    /// Holds each member's Plan and Outcome files; removed when the group ends.
    dir: tempfile::TempDir,
    capsule: PathBuf,
    /// Members running now, for the signal forwarder.
    running: Arc<Mutex<Vec<u32>>>,
}

impl<'a> Members<'a> {
    fn prepare(plans: &'a [Plan]) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("capsule-group-")
            .tempdir()?;
        for (i, plan) in plans.iter().enumerate() {
            let json = serde_json::to_vec(plan).expect("a Plan serialises");
            std::fs::write(plan_file(dir.path(), i), json)?;
        }
        Ok(Members {
            plans,
            dir,
            capsule: std::env::current_exe()?,
            running: Arc::new(Mutex::new(Vec::new())),
        })
    }

    fn run(self, sequential: bool) -> (Vec<Outcome>, i32) {
        let forwarder = self.forward_signals();
        let mut outcomes = Vec::new();
        let mut first_failure = None;
        if sequential {
            for i in 0..self.plans.len() {
                let (outcome, code) = match self.start(i) {
                    Ok(child) => self.finish(i, child),
                    Err(e) => self.not_started(i, &e),
                };
                outcomes.push(outcome);
                if code != 0 {
                    first_failure = Some(code);
                    break;
                }
            }
        } else {
            let children: Vec<_> = (0..self.plans.len()).map(|i| self.start(i)).collect();
            for (i, child) in children.into_iter().enumerate() {
                let (outcome, code) = match child {
                    Ok(child) => self.finish(i, child),
                    Err(e) => self.not_started(i, &e),
                };
                outcomes.push(outcome);
                if code != 0 && first_failure.is_none() {
                    first_failure = Some(code);
                }
            }
        }
        if let Some((handle, thread)) = forwarder {
            handle.close();
            let _ = thread.join();
        }
        (outcomes, first_failure.unwrap_or(0))
    }

    /// A thread that passes the signals this process gets on to the running members.
    fn forward_signals(
        &self,
    ) -> Option<(signal_hook::iterator::Handle, std::thread::JoinHandle<()>)> {
        let mut signals = match Signals::new(FORWARDED) {
            Ok(signals) => signals,
            Err(e) => {
                tracing::warn!("signals will not reach the group's launches: {e}");
                return None;
            }
        };
        let handle = signals.handle();
        let running = self.running.clone();
        let thread = std::thread::spawn(move || {
            for number in signals.forever() {
                let Ok(signal) = Signal::try_from(number) else {
                    continue;
                };
                let pids = running.lock().map(|p| p.clone()).unwrap_or_default();
                for pid in pids {
                    let _ = kill(Pid::from_raw(pid as i32), signal);
                }
            }
        });
        Some((handle, thread))
    }

    fn start(&self, i: usize) -> std::io::Result<Child> {
        let child = Command::new(&self.capsule)
            .arg("run")
            .arg("--plan")
            .arg(plan_file(self.dir.path(), i))
            .arg("--outcome")
            .arg(outcome_file(self.dir.path(), i))
            // Members run at once: none can own the terminal's input.
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()?;
        if let Ok(mut running) = self.running.lock() {
            running.push(child.id());
        }
        Ok(child)
    }

    fn finish(&self, i: usize, mut child: Child) -> (Outcome, i32) {
        let status = child.wait();
        if let Ok(mut running) = self.running.lock() {
            running.retain(|pid| *pid != child.id());
        }
        let code = match status {
            Ok(status) => status
                .code()
                .or_else(|| status.signal().map(|s| 128 + s))
                .unwrap_or(ExitCode::Runtime as i32),
            Err(e) => return self.not_started(i, &e),
        };
        let outcome = std::fs::read(outcome_file(self.dir.path(), i))
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .unwrap_or_else(|| {
                failed_outcome(
                    &self.plans[i],
                    code,
                    format!("plan {i} of the group ended with status {code} and wrote no outcome"),
                )
            });
        (outcome, code)
    }

    fn not_started(&self, i: usize, e: &std::io::Error) -> (Outcome, i32) {
        eprintln!("capsule: cannot start plan {i} of the group: {e}");
        let code = ExitCode::Runtime as i32;
        (
            failed_outcome(&self.plans[i], code, format!("cannot start: {e}")),
            code,
        )
    }
}

fn plan_file(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("plan-{i}.json"))
}

fn outcome_file(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("outcome-{i}.json"))
}
