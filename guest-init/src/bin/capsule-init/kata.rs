//! A kata launch in the guest: capsule-init stays PID 1 of the VM (the sandbox) and builds the
//! launch's container with ns-core and cgroup-core (`guest_init::kata::Sandbox`): the guest's
//! cgroup2 mounted and its controllers enabled, the container's root mounted read-only, the
//! container started with capsule-init's own bytes as its PID 1.

use std::os::fd::{AsFd, OwnedFd};

use guest_init::kata::{GuestContainer, KataChild, KataRoot, Sandbox};

use crate::Failure;
use crate::disk_root::{DEVICE_WAIT, wait_for};

/// Builds and starts `container` with `stdio` (stdin, stdout, stderr) as its streams: the
/// seam the guest agent starts a kata workload through. Once per guest: it mounts the
/// sandbox's cgroup hierarchy and the container's root.
pub fn spawn(container: &GuestContainer, stdio: [OwnedFd; 3]) -> Result<KataChild, Failure> {
    let failed = |e: guest_init::kata::KataError| Failure::message(format!("kata: {e}"));
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
        own(std::io::stdin().as_fd())?,
        own(std::io::stdout().as_fd())?,
        own(std::io::stderr().as_fd())?,
    ];
    let exit = spawn(container, stdio)?
        .wait()
        .map_err(|e| Failure::message(format!("kata: {e}")))?;
    if let Some(error) = &exit.error {
        eprintln!("capsule-init: {error}");
    }
    // A shell's status is 0..=255 already; anything else is no status of the command's.
    Ok(u8::try_from(exit.code).unwrap_or(crate::SETUP_FAILED))
}

fn own(fd: std::os::fd::BorrowedFd<'_>) -> Result<OwnedFd, Failure> {
    fd.try_clone_to_owned()
        .map_err(|e| Failure::message(format!("kata: duplicating the console: {e}")))
}
