//! `capsule-init`: PID 1 of capsule's microVM guests.
//!
//! 1. Tells the VMM that user space started (a byte to `STARTED_PORT`, if it may).
//! 2. Mounts devtmpfs on /dev, proc and sysfs in the initramfs; puts the console on stdin,
//!    stdout and stderr where the kernel could not, and stops it turning `\n` into `\r\n`.
//! 3. Reads the launch's `GuestConfig` at `CONFIG_PATH`, loads its kernel modules (then
//!    deletes their files) and has free page reporting hand back blocks from 128 KiB; with a
//!    virtio console, moves its own stdio (which the command inherits) to `/dev/hvc0`.
//! 4. Enters the root filesystem, with its own /dev, /proc and /sys: on a disk
//!    (`disk_root.rs`: the ext4 file system on `/dev/vda`, read-only, under an overlay in RAM
//!    unless the root is read-only), or the tree the launch brought at `ROOTFS_DIR` (read-only
//!    if asked).
//!    Then mounts the launch's virtio-fs shares and tmpfs inside it (`mounts.rs`).
//! 5. With the workload in the config: sets the hostname, then forks the command, which
//!    becomes the configured user, changes directory and executes. Meanwhile PID 1 reaps every
//!    process that exits and forwards every signal it receives to the command (`supervise.rs`,
//!    shared with `--container`). With the agent instead (`agent.rs`): listens on vsock port
//!    `AGENT_PORT`, takes the workload from the host's `Run`, runs it the same way with its
//!    stdio on pipes or a terminal relayed to the host, and reports its exit there.
//! 6. Flushes what the command wrote to its disks, writes the command's status to `EXIT_PORT`
//!    (the VMM stops the VM there), else powers off.
//!
//! The status is a shell's: the command's exit code, 128 + the signal that killed it, 127 if
//! it does not exist, 126 if it cannot be executed, and 125 if the init's own setup failed,
//! with one line on the console that names the step and the path.
//!
//! PID 1 must not panic or exit (either is a kernel panic): every failure is a value that ends
//! in a status.
//!
//! With a kata container in the workload (the archive's or the agent's `Run`), the guest
//! stays in the initramfs (its root is `Initramfs`) and step 5 is instead the container's
//! (`kata.rs`): the command runs in the container built there, its PID 1 capsule-init again.
//!
//! Run as `capsule-init --container -- COMMAND ARGS...` it is instead the init of a container
//! that ns-core has set up (see `container.rs`).

mod agent;
mod container;
mod disk_root;
mod kata;
mod mounts;
mod port;
mod run;
mod setup;
mod supervise;

use std::fmt::Display;
use std::path::Path;

use guest_init::{CONFIG_PATH, GuestConfig, GuestConsole, GuestRoot, ROOTFS_DIR};
use nix::errno::Errno;
use nix::sys::reboot::{RebootMode, reboot};

/// The init's own setup failed (the value `docker run` uses for its own failures).
const SETUP_FAILED: u8 = 125;

fn main() {
    let args: Vec<_> = std::env::args_os().collect();
    if args
        .get(1)
        .is_some_and(|arg| arg == ns_core::init::CONTAINER_ARG)
    {
        container::run(&args[2..]);
    }
    port::announce_start();
    let status = match init() {
        Ok(status) => status,
        Err(failure) => {
            eprintln!("capsule-init: {failure}");
            SETUP_FAILED
        }
    };
    finish(status)
}

fn init() -> Result<u8, Failure> {
    setup::mount_api_filesystems(true)?;
    setup::attach_console();
    setup::console_output_verbatim();
    let config = read_config()?;
    if config.quiet {
        // Kernel messages would interleave with the command's output on the console; keep
        // only emergencies. Not fatal: the messages are noise, not harm.
        let _ = std::fs::write("/proc/sys/kernel/printk", "1");
    }
    setup::load_modules(&config)?;
    setup::report_smaller_free_blocks();
    if config.console == GuestConsole::Virtio {
        setup::attach_virtio_console()?;
    }
    match &config.root {
        GuestRoot::Disk(device) => disk_root::run(&disk_root::steps(
            disk_root::LAYERS,
            disk_root::Lower::Disk(device),
            config.readonly_root,
        ))?,
        GuestRoot::Share(tag) => disk_root::run(&disk_root::steps(
            disk_root::LAYERS,
            disk_root::Lower::Share(tag),
            config.readonly_root,
        ))?,
        GuestRoot::Sandbox => setup::enter_sandbox()?,
        GuestRoot::Initramfs if Path::new(ROOTFS_DIR).is_dir() => setup::enter_rootfs(&config)?,
        GuestRoot::Initramfs => {}
    }
    mounts::run(&config)?;
    let Some(workload) = &config.workload else {
        return agent::serve();
    };
    if let Some(container) = &workload.container {
        return kata::run(container);
    }
    set_hostname(workload)?;
    let command = run::Command::new(workload)?;
    run::run_command(&command)
}

/// The workload's hostname, if it names one.
fn set_hostname(workload: &guest_init::Workload) -> Result<(), Failure> {
    if let Some(hostname) = &workload.hostname {
        nix::unistd::sethostname(hostname)
            .map_err(|e| Failure::new("setting the hostname to", hostname, e))?;
    }
    Ok(())
}

fn read_config() -> Result<GuestConfig, Failure> {
    let json = std::fs::read(CONFIG_PATH)
        .map_err(|e| Failure::message(format!("reading {CONFIG_PATH}: {e}")))?;
    GuestConfig::from_json(&json).map_err(|e| Failure::message(format!("{CONFIG_PATH}: {e}")))
}

/// Reports `status` and stops the VM.
fn finish(status: u8) -> ! {
    // What the command wrote to a disk and did not sync is in the guest's page cache, which
    // the VMM's stop drops: write it out first (nothing to do for a root in RAM).
    nix::unistd::sync();
    // The VMM stops the VM on this write; returning from it means no VMM listens there.
    port::report(status);
    let Err(e) = reboot(RebootMode::RB_POWER_OFF);
    eprintln!("capsule-init: powering off: {e}");
    // The kernel panics when PID 1 exits, and its message carries the status: better than
    // hanging.
    std::process::exit(status.into())
}

/// One step of the setup that failed, as one line: the step, what it acted on, why.
#[derive(Debug)]
pub struct Failure(String);

impl Failure {
    pub fn new(step: impl Display, what: impl Display, errno: Errno) -> Self {
        Self(format!("{step} {what}: {errno}"))
    }

    pub fn message(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
