//! A kata launch in the guest: capsule-init stays PID 1 of the VM (the sandbox) and builds the
//! launch's container with ns-core and cgroup-core (`guest_init::kata::Sandbox`): the guest's
//! cgroup2 mounted and its controllers enabled, the container's root mounted read-only, the
//! container started with capsule-init's own bytes as its PID 1. Started by the agent
//! ([`Container`], its `Running`) or, without the agent, from the archive ([`run`]).

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use guest_init::agent::{ChildStdio, ExitReport, Running};
use guest_init::kata::{GuestContainer, KataChild, KataError, KataExit, KataRoot, Sandbox};

use crate::Failure;
use crate::disk_root::{DEVICE_WAIT, wait_for};

/// Builds and starts `container` with `stdio` (stdin, stdout, stderr) as its streams. Once
/// per guest: it mounts the sandbox's cgroup hierarchy and the container's root.
pub fn spawn(container: &GuestContainer, stdio: [OwnedFd; 3]) -> Result<KataChild, Failure> {
    let sandbox = Sandbox::in_guest().map_err(failed)?;
    if let KataRoot::Disk(device) = &container.root {
        wait_for(device, DEVICE_WAIT)?;
    }
    Sandbox::mount_root(container).map_err(failed)?;
    sandbox.spawn(container, stdio).map_err(failed)
}

/// Runs `container` with the init's own stdio (the console) and returns its status as a shell
/// reports it: a kata launch whose workload came in the launch archive, without the agent. Why
/// a command could not run is one line on the console, as for a plain guest.
pub fn run(container: &GuestContainer) -> Result<u8, Failure> {
    let stdio = [
        own(io::stdin().as_fd())?,
        own(io::stdout().as_fd())?,
        own(io::stderr().as_fd())?,
    ];
    let exit = spawn(container, stdio)?.wait().map_err(failed)?;
    if let Some(error) = &exit.error {
        eprintln!("capsule-init: {error}");
    }
    Ok(status(&exit))
}

/// A kata container as the agent's workload.
pub struct Container {
    child: KataChild,
    /// The command's stderr, kept to say there why it could not run (127, 126, 125), as
    /// capsule-init's own command does; dropped with the report, so the agent sees its EOF.
    stderr: Option<File>,
    exit: Option<ExitReport>,
}

impl Container {
    /// Starts `container` on the agent's `stdio`. A terminal (`-t`) is the container's stdio
    /// and its PID 1's controlling terminal, in a session of its own (`^C` and job control
    /// reach it, as with `docker run -t`).
    pub fn spawn(container: &GuestContainer, stdio: ChildStdio) -> Result<Container, Failure> {
        let stderr = stdio.stderr.try_clone().map_err(|e| {
            Failure::message(format!("kata: duplicating the command's stderr: {e}"))
        })?;
        let mut container = container.clone();
        container.spec.terminal = stdio.terminal;
        let child = spawn(&container, [stdio.stdin, stdio.stdout, stdio.stderr])?;
        Ok(Container {
            child,
            stderr: Some(File::from(stderr)),
            exit: None,
        })
    }
}

impl Running for Container {
    fn pid(&self) -> u32 {
        self.child.pid().unsigned_abs()
    }

    fn signal(&mut self, signal: i32) {
        // A container that has ended refuses it: nothing to do.
        let _ = self.child.signal(signal);
    }

    fn exit_fd(&self) -> BorrowedFd<'_> {
        self.child.exit_fd()
    }

    fn try_wait(&mut self) -> io::Result<Option<ExitReport>> {
        if self.exit.is_none() {
            let Some(exit) = self.child.try_wait().map_err(io::Error::other)? else {
                return Ok(None);
            };
            if let (Some(error), Some(stderr)) = (&exit.error, &mut self.stderr) {
                // The workload's stderr may be gone; the status says enough then.
                let _ = writeln!(stderr, "capsule-init: {error}");
            }
            self.stderr = None;
            self.exit = Some(ExitReport {
                code: i32::from(status(&exit)),
                signal: exit.signal,
                oom_killed: exit.oom_killed,
            });
        }
        Ok(self.exit)
    }
}

/// The exit code as the one byte a status is: a shell's is 0..=255 already, anything else is
/// no status of the command's.
fn status(exit: &KataExit) -> u8 {
    u8::try_from(exit.code).unwrap_or(crate::SETUP_FAILED)
}

fn failed(e: KataError) -> Failure {
    Failure::message(format!("kata: {e}"))
}

fn own(fd: BorrowedFd<'_>) -> Result<OwnedFd, Failure> {
    fd.try_clone_to_owned()
        .map_err(|e| Failure::message(format!("kata: duplicating the console: {e}")))
}
