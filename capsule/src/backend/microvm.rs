//! The microVM backend: the Plan's process runs under capsule-init in a
//! stock Linux kernel on capsule's own VMM (kvm-core).
//!
//! Guest memory, vCPU threads and the per-launch archive live and die with
//! this process; the one thing outside it is the launch's state directory,
//! which holds the vsock device's Unix socket (removed on every path, and by
//! `capsule gc` after a crash). The workload travels to the guest agent
//! (`agent.rs`) over vsock, which relays its stdio, signals and exit status.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use devices::event_loop::EventLoopError;
use devices::output::{self, OutputSink};
use devices::virtio::VirtioDevice;
use devices::virtio::balloon::Balloon;
use devices::virtio::block::Block;
use devices::virtio::console::Console;
use devices::virtio::rng::Rng;
use devices::virtio::vsock::Vsock;
use guest_init::agent::RunRequest;
use guest_init::{
    AGENT_MODULES, DISK_ROOT_MODULES, FREE_PAGE_REPORTING_MODULES, GuestConfig, GuestConsole,
    GuestRoot, KERNEL_CMDLINE, KERNEL_CMDLINE_QUIET, ROOT_DEVICE, Workload,
};
use kvm_core::{InitrdPart, Machine, MachineConfig, MachineExit};

use plan::{
    AttachedDisk, Disk, DiskFormat, Host, Isolation, MICROVM_MAX_VCPUS, Outcome, Peaks, Plan,
    Problem, Timings, VmSpec, disk_device,
};

use super::agent::{AgentError, Controls, HostTerminal, SessionIo, SessionThread};
use super::{Backend, Stdin};
use crate::signals::StopHandle;
use crate::{Error, host, process, root_image, state};

/// Guest RAM when the Plan sets no memory.
pub const DEFAULT_MEMORY: u64 = 256 << 20;

/// How long a finished launch waits for the guest's last output to be written.
const OUTPUT_FLUSH_TIME: Duration = Duration::from_secs(2);

/// The exit status of a launch stopped by `--timeout`, as coreutils' `timeout`.
const TIMED_OUT: i32 = 124;

/// The guest's vsock context id: the first a guest may have (0 to 2 are the hypervisor's,
/// the local loopback's and the host's).
const GUEST_CID: u64 = 3;

/// The vsock device's Unix socket in the launch's state directory (Firecracker's hybrid
/// vsock: `CONNECT <port>` on it reaches the guest's port).
const VSOCK_SOCKET: &str = "vsock.sock";

/// How long the host waits for the guest agent (beyond a `--timeout`, which ends the wait
/// first): a guest that boots slower than this is hung (the nested lab boots in seconds).
const AGENT_WAIT: Duration = Duration::from_secs(120);

/// The kernel and base initramfs a Plan boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestArtifacts {
    /// The kernel: an ELF vmlinux booted through PVH, or a bzImage.
    pub kernel: PathBuf,
    /// The base initramfs holding capsule-init and the guest's modules.
    pub initrd: PathBuf,
}

impl GuestArtifacts {
    /// The Plan's own files, else `cargo xtask guest`'s: `$CAPSULE_GUEST_DIR`,
    /// else `~/.cache/capsule/guest`. Of its two kernels the ELF vmlinux is preferred: PVH
    /// enters it in 32-bit mode without the bzImage's 51 MiB decompression (about 7% of a
    /// lab boot, measured).
    pub fn of(vm: &VmSpec) -> GuestArtifacts {
        let dir = guest_dir();
        let default_kernel = || {
            let vmlinux = dir.join("vmlinux");
            if vmlinux.exists() {
                vmlinux
            } else {
                dir.join("vmlinuz")
            }
        };
        GuestArtifacts {
            kernel: vm.kernel.clone().unwrap_or_else(default_kernel),
            initrd: vm
                .initrd
                .clone()
                .unwrap_or_else(|| dir.join("initramfs.cpio")),
        }
    }
}

fn guest_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CAPSULE_GUEST_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/capsule/guest")
}

/// The microVM backend: the Plan's process runs under capsule-init in a stock Linux kernel
/// on capsule's own VMM (kvm-core).
#[derive(Debug)]
pub struct Microvm;

impl Backend for Microvm {
    /// A host that cannot boot the stock kernel at all is one error, not a list; otherwise the
    /// guest artifacts the Plan boots must exist.
    fn problems(&self, plan: &Plan, host: &Host) -> Result<Vec<Problem>, plan::Error> {
        let vm = plan.vm.clone().unwrap_or_default();
        let flavour = host::flavour(host.kvm);
        if vm.kernel.is_none() && !flavour.boots_stock_kernels() {
            let isolation = if plan.isolation == Isolation::Kata {
                "kata"
            } else {
                "microvm"
            };
            return Err(plan::Error::Unsupported(format!(
                "isolation \"{isolation}\" cannot boot the stock guest kernel here: {}",
                flavour.stock_kernel_refusal()
            )));
        }
        let artifacts = GuestArtifacts::of(&vm);
        let mut problems = Vec::new();
        for (field, path, flag) in [
            ("vm.kernel", &artifacts.kernel, "kernel"),
            ("vm.initrd", &artifacts.initrd, "initrd"),
        ] {
            if path.exists() {
                let what = format!("{field} {}", path.display());
                if flag == "kernel" {
                    if let Err(error) = kvm_core::check_kernel(path) {
                        let reason = match error {
                            kvm_core::Error::KernelFormat { reason, .. } => reason,
                            other => other.to_string(),
                        };
                        problems.push(Problem::new(field, what, reason));
                    }
                } else if path.is_dir() {
                    problems.push(Problem::new(
                        field,
                        what,
                        "it is a directory, not an initramfs archive",
                    ));
                }
            } else {
                let guest = "run `cargo xtask guest` (it fetches Debian's kernel and builds capsule-init's initramfs)";
                problems.push(
                    Problem::new(field, format!("{field} {}", path.display()), "no such file")
                        .fixes(
                            format!("{guest} or give --{flag} FILE"),
                            format!("{guest} or give {flag}(\"FILE\")"),
                        ),
                );
            }
        }
        if std::fs::metadata(&plan.root.path).is_ok_and(|m| m.is_file()) {
            problems.extend(root_image_problem(&plan.root.path));
        }
        for (i, disk) in plan.disks.iter().enumerate() {
            problems.extend(disk_problem(i, disk));
        }
        problems.extend(crate::virtiofsd::problems(plan));
        Ok(problems)
    }

    fn run(
        &self,
        plan: &Plan,
        _host: &Host,
        stop: &StopHandle,
        stdin: Stdin,
    ) -> Result<Outcome, Error> {
        let id = state::new_id();
        run(plan, stop, stdin, &id, Guest::of(plan, &id)?)
    }
}

/// What one launch's guest is: how capsule-init boots, what it runs, and its RAM.
#[derive(Debug)]
pub(super) struct Guest {
    /// How capsule-init boots ([`guest_config`]).
    pub config: GuestConfig,
    /// What the agent's `Run` brings ([`workload`]).
    pub workload: Workload,
    /// Guest RAM in bytes.
    pub memory: u64,
    /// Where the guest mounts the shared directories (the Plan's bind mounts): `None` at
    /// their destinations inside its root, `Some(dir)` at `dir/TAG` (a kata sandbox, whose
    /// container binds them in from there).
    pub shares_at: Option<&'static str>,
    /// The root directory, shared over virtio-fs as `virtiofsd::ROOT_TAG` instead of an
    /// ext4 image of it on the root disk (`None`: the disk).
    pub root_share: Option<std::path::PathBuf>,
    /// Kernel parameters this kind of guest adds to [`KERNEL_CMDLINE`], before the Plan's
    /// own (`vm.cmdline`); empty for none.
    pub kernel_params: &'static str,
}

impl Guest {
    /// The microVM's guest for launch `id` of `plan`: [`guest_config`], [`workload`], the
    /// Plan's memory (else [`DEFAULT_MEMORY`]), the shares at their destinations.
    ///
    /// # Errors
    ///
    /// As [`workload`].
    pub(super) fn of(plan: &Plan, id: &str) -> Result<Guest, Error> {
        let vm = plan.vm.clone().unwrap_or_default();
        Ok(Guest {
            config: guest_config(plan, &vm),
            workload: workload(plan, id)?,
            memory: plan.resources.memory.unwrap_or(DEFAULT_MEMORY),
            shares_at: None,
            root_share: None,
            kernel_params: "",
        })
    }
}

/// ext4's superblock: 1024 bytes into the disk, its magic 0xEF53 (little-endian) at byte 0x38
/// of it (`Documentation/filesystems/ext4/super.rst`).
const EXT4_SUPERBLOCK: u64 = 1024;
const EXT4_MAGIC_OFFSET: usize = 0x38;
const EXT4_MAGIC: [u8; 2] = 0xEF53_u16.to_le_bytes();

/// What is wrong with a root image file (raw or qcow2, holding the ext4 file system the guest
/// mounts as its root), as one Problem naming the file; `None` when it can boot.
fn root_image_problem(path: &Path) -> Option<Problem> {
    let problem = |why: String| {
        Problem::new("root.path", format!("root.path {}", path.display()), why).fixes(
            "give a raw or qcow2 image holding an ext4 file system, or the directory that becomes /",
            "give rootfs() a raw or qcow2 image holding an ext4 file system, or the directory that becomes /",
        )
    };
    if let Some(why) = image_file_problem(path) {
        return Some(problem(why));
    }
    let mut superblock = [0u8; 1024];
    let read = devices::disk::open(path, true)
        .and_then(|mut disk| disk.read_at(EXT4_SUPERBLOCK, &mut superblock));
    match read {
        Err(e) => Some(problem(disk_error_text(path, &e))),
        Ok(()) if superblock[EXT4_MAGIC_OFFSET..EXT4_MAGIC_OFFSET + 2] != EXT4_MAGIC => Some(
            problem("holds no ext4 file system (no ext4 superblock at byte 1024), and the guest mounts its root as ext4".into()),
        ),
        Ok(()) => None,
    }
}

/// What is wrong with the Plan's `index`-th disk, as one Problem naming the file; `None` when
/// it can be attached.
fn disk_problem(index: usize, disk: &Disk) -> Option<Problem> {
    let field = format!("disks[{index}]");
    let subject = format!("{field} {}", disk.path.display());
    if let Some(why) = image_file_problem(&disk.path) {
        return Some(Problem::new(&field, &subject, why).fixes(
            "give a raw or qcow2 image file, or drop the --disk",
            "give disk() a raw or qcow2 image file, or drop it",
        ));
    }
    if !disk.read_only
        && let Err(errno) = nix::unistd::access(&disk.path, nix::unistd::AccessFlags::W_OK)
    {
        return Some(
            Problem::new(
                &field,
                &subject,
                format!(
                    "capsule cannot write to it ({}), and the disk is writable",
                    errno.desc()
                ),
            )
            .fixes(
                format!(
                    "make it writable, or attach it read-only: --disk {}:ro",
                    disk.path.display()
                ),
                "make it writable, or attach it read-only: disk(path, #{ readonly: true })",
            ),
        );
    }
    None
}

/// Why `path` is no disk image capsule can read, in one sentence; `None` when it is one.
/// Only regular files and block devices are read at all: a fifo's reader would wait forever.
fn image_file_problem(path: &Path) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("no such file".into()),
        Err(e) => Some(e.to_string()),
        Ok(m) if m.is_dir() => Some("is a directory, not a disk image".into()),
        Ok(m) if !m.is_file() && !m.file_type().is_block_device() => {
            Some("is neither a regular file nor a block device".into())
        }
        Ok(_) => devices::disk::inspect(path)
            .err()
            .map(|e| disk_error_text(path, &e)),
    }
}

/// A disk error as the rest of a sentence about `image`: the reason alone when it is about
/// `image` itself, the other file (a backing file) named when not.
fn disk_error_text(image: &Path, error: &devices::disk::DiskError) -> String {
    use devices::disk::DiskError;
    match error {
        DiskError::Format { path, reason } if path == image => reason.clone(),
        DiskError::Io { path, source } if path == image => source.to_string(),
        other => other.to_string(),
    }
}

/// The Plan's disks as the guest sees them, for the Outcome: `/dev/vdb`, ... in order, with
/// each image's format read from its content.
///
/// # Errors
///
/// [`Error::Device`] when an image cannot be inspected (it was checked by
/// [`Backend::problems`], so it changed since).
pub fn attached_disks(plan: &Plan) -> Result<Vec<AttachedDisk>, Error> {
    plan.disks
        .iter()
        .enumerate()
        .map(|(i, disk)| {
            let info = devices::disk::inspect(&disk.path).map_err(|source| Error::Device {
                what: format!("disk {} ({})", disk_device(i), disk.path.display()),
                source: source.into(),
            })?;
            Ok(AttachedDisk {
                device: disk_device(i),
                path: disk.path.clone(),
                format: match info.format {
                    devices::disk::ImageFormat::Raw => DiskFormat::Raw,
                    devices::disk::ImageFormat::Qcow2 => DiskFormat::Qcow2,
                },
                read_only: disk.read_only,
            })
        })
        .collect()
}

/// Boots the Plan's microVM as `guest` says, runs its workload through the guest agent and
/// reports how launch `id` ended.
pub(super) fn run(
    plan: &Plan,
    stop: &StopHandle,
    stdin: Stdin,
    id: &str,
    guest: Guest,
) -> Result<Outcome, Error> {
    let start = Instant::now();
    let id = id.to_owned();
    let Guest {
        config: mut guest,
        workload,
        memory,
        shares_at,
        root_share,
        kernel_params,
    } = guest;
    let vm = plan.vm.clone().unwrap_or_default();
    let artifacts = GuestArtifacts::of(&vm);
    let launch_dir = LaunchDir(state::Launch::create(&id, false)?);
    let uds = launch_dir.0.dir.join(VSOCK_SOCKET);

    // The root travels on a disk (/dev/vda), so the launch archive holds only the config:
    // a root of any size boots in any guest RAM, and the source is never changed (the guest
    // mounts the image read-only under an overlay in its RAM).
    let root = match root_share {
        None => Some(root_image::for_plan(plan)?),
        Some(_) => None,
    };
    // The shared directories' daemons, stopped when this goes (after the machine, before
    // the launch directory that holds their sockets).
    let mut virtiofsd =
        crate::virtiofsd::Daemons::start(plan, &launch_dir.0.dir, root_share.as_deref())?;
    virtiofsd.add_to(&mut guest, shares_at);
    let mut archive = Vec::new();
    guest_init::write_launch_archive(&mut archive, &guest, None).map_err(|source| {
        Error::GuestArchive {
            rootfs: plan.root.path.clone(),
            source,
        }
    })?;
    let disks = attached_disks(plan)?;
    let mut cmdline = format!(
        "{KERNEL_CMDLINE} {}",
        if vm.kernel_log {
            ""
        } else {
            KERNEL_CMDLINE_QUIET
        }
    );
    if !kernel_params.is_empty() {
        cmdline = format!("{cmdline} {kernel_params}");
    }
    if let Some(extra) = &vm.cmdline {
        cmdline = format!("{cmdline} {extra}");
    }
    let config = MachineConfig {
        memory: usize::try_from(memory).map_err(|_| {
            plan::Error::Unsupported(format!("{memory} bytes of guest RAM do not fit this host"))
        })?,
        vcpus: vcpus(plan),
        kernel: artifacts.kernel,
        initrd: vec![
            InitrdPart::File(artifacts.initrd),
            InitrdPart::Bytes(archive),
        ],
        cmdline,
    };
    let prepared = start.elapsed();

    // The guest's output reaches stdout through a bounded buffer and a writer thread, so a
    // reader that stops reading holds up the guest (the console's backpressure) but never the
    // VMM: --timeout and signals end the launch on time whatever the reader does.
    let output = OutputSink::new(stdout_file()?, output::DEFAULT_CAPACITY).map_err(|source| {
        Error::Device {
            what: "console output".into(),
            source: source.into(),
        }
    })?;
    let mut devices = virtio_devices(
        plan,
        root.as_ref().map(root_image::RootDisk::path),
        &output,
        &uds,
    )?;
    devices.extend(virtiofsd.devices()?);
    let mut machine =
        Machine::build_with_devices(&config, Box::new(output.lossy_writer()), devices)?;
    // Once the guest agent is up, the signals the launch receives go to the command, as a
    // container's go to its PID 1. Before, one ends the VM, and capsule exits 128 + the
    // signal, as a shell reports a command the signal killed.
    let controls = Controls::new();
    let stopped_by = Arc::new(AtomicI32::new(0));
    let forwarding = stop.forward_to({
        let (stopped_by, stopper, controls) =
            (stopped_by.clone(), machine.stopper(), controls.clone());
        move |signal| {
            if controls.connected() {
                controls.signal(signal);
            } else {
                stopped_by.store(signal, Ordering::SeqCst);
                stopper.stop();
            }
        }
    });
    let terminal = stdin
        .tty
        .then(|| HostTerminal::take(stdin.interactive, &controls))
        .transpose()
        .map_err(|e| Error::io("taking over the terminal on", Path::new("/dev/stdin"), e))?;
    let session = start_session(
        &uds,
        workload,
        stdin,
        terminal.as_ref(),
        controls,
        // With a --timeout the machine's ends the wait first, as a timeout (124).
        Instant::now()
            + plan
                .timeout
                .map_or(AGENT_WAIT, |t| Duration::from_secs_f64(t) + AGENT_WAIT),
        machine.stopper(),
    )?;
    // The per-launch archive is in guest memory now; freed here, it stops counting as the
    // VMM's own memory while the guest runs. The disks hold their files open: a one-off root
    // image may go.
    drop(config);
    drop(root);
    let created = start.elapsed();
    let booted = Instant::now();
    let exit = machine.run(plan.timeout.map(Duration::from_secs_f64));
    session.cancel();
    drop(forwarding);
    let ran = start.elapsed();
    let user_space = machine.user_space_reached();
    // The VMM is this process: its RSS holds the guest RAM the guest touched,
    // and what is left is the VMM's own (measured while the VM still exists).
    let vmm_overhead =
        status_bytes("VmRSS:").map(|rss| rss.saturating_sub(machine.guest_memory_resident()));
    // The vsock device goes with the machine: a session still waiting reads the end of its
    // connection.
    drop(machine);
    let peak_rss = status_bytes("VmHWM:");
    let session = session.wait(OUTPUT_FLUSH_TIME);
    drop(terminal);
    // What the guest wrote last is on its way out; a reader that stopped reading gets no
    // more time than this.
    output.flush_for(Instant::now() + OUTPUT_FLUSH_TIME);
    // A virtiofsd that exited mid-run ended the machine (the guest would wait on it forever,
    // as Kata stops a sandbox whose virtiofsd quits): the launch fails saying which directory.
    let lost_share = match &exit {
        Err(kvm_core::Error::EventLoop(EventLoopError::BackendLost(lost))) => {
            virtiofsd.explain_loss(&lost.device)
        }
        _ => None,
    };
    let exit = match lost_share {
        Some(_) => MachineExit::Stopped,
        None => exit?,
    };
    drop(virtiofsd);
    drop(launch_dir);
    let finished = start.elapsed();

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut agent_ms = None;
    let mut oom_killed = false;
    let (exit_code, signal, error) = match (exit, session) {
        _ if lost_share.is_some() => (125, None, lost_share),
        (MachineExit::Timeout, _) => (
            TIMED_OUT,
            None,
            Some(format!(
                "the guest did not finish within the {}s timeout and was stopped",
                plan.timeout.unwrap_or_default()
            )),
        ),
        (_, Some(Ok(end))) => {
            agent_ms = Some(ms(end.hello_at.saturating_duration_since(booted)));
            oom_killed = end.report.oom_killed;
            let error =
                (!end.errors.is_empty()).then(|| format!("the guest: {}", end.errors.join("; ")));
            (end.report.code, end.report.signal, error)
        }
        // The guest broke the protocol: its word on the status is worth nothing.
        (_, Some(Err(e))) if e.is_from_guest() => (125, None, Some(e.to_string())),
        // The agent is gone or never came (a guest without vsock, a kernel that panicked or
        // halted, which closes the connection with the VM): the exit port's status, how the
        // machine ended, or the signal that stopped the VM, as before the agent.
        (
            exit @ (MachineExit::Status(_)
            | MachineExit::Reset
            | MachineExit::TripleFault
            | MachineExit::Halted
            | MachineExit::PowerOff),
            _,
        ) => machine_status(exit, plan, &stopped_by),
        (MachineExit::Stopped, _) if stopped_by.load(Ordering::SeqCst) != 0 => {
            machine_status(MachineExit::Stopped, plan, &stopped_by)
        }
        (_, Some(Err(e))) if !matches!(e, AgentError::Cancelled) => {
            (125, None, Some(e.to_string()))
        }
        (exit, _) => machine_status(exit, plan, &stopped_by),
    };
    if let Some(error) = &error {
        eprintln!("capsule: {error}");
    }
    Ok(Outcome {
        id,
        isolation: plan.isolation,
        exit_code,
        signal,
        oom_killed,
        error,
        timings: Timings {
            boot_ms: user_space.map(|at| ms(at.duration_since(booted))),
            agent_ms,
            ..Timings::of(prepared, created, ran, finished)
        },
        peaks: Peaks {
            memory_bytes: peak_rss,
            vmm_overhead_bytes: vmm_overhead,
            ..Default::default()
        },
        violations: Vec::new(),
        disks,
    })
}

/// The status of a launch the guest agent did not report: how the machine ended (the exit
/// port's status, a signal that stopped it, a guest that died), as before the agent.
fn machine_status(
    exit: MachineExit,
    plan: &Plan,
    stopped_by: &AtomicI32,
) -> (i32, Option<i32>, Option<String>) {
    match exit {
        MachineExit::Status(status) => (i32::from(status), None, None),
        MachineExit::Timeout => (
            TIMED_OUT,
            None,
            Some(format!(
                "the guest did not finish within the {}s timeout and was stopped",
                plan.timeout.unwrap_or_default()
            )),
        ),
        MachineExit::Stopped => {
            let signal = stopped_by.load(Ordering::SeqCst);
            (128 + signal, Some(signal), None)
        }
        MachineExit::PowerOff => (
            125,
            None,
            Some("the guest powered off without reporting an exit status".into()),
        ),
        MachineExit::Halted => (
            125,
            None,
            Some("the guest halted (every vCPU stopped with interrupts off, as `halt -f` leaves them) without reporting an exit status".into()),
        ),
        MachineExit::Reset | MachineExit::TripleFault => (
            125,
            None,
            Some(format!(
                "the guest kernel {} before the command ended (a kernel panic, or a reboot); rerun with --kernel-log to see its console",
                if exit == MachineExit::Reset {
                    "reset"
                } else {
                    "triple-faulted"
                }
            )),
        ),
    }
}

/// Starts the session with the guest agent on a thread: the workload, capsule's stdin with
/// `-i`, a terminal of `terminal`'s size with `-t`; the machine stops when it ends.
fn start_session(
    uds: &Path,
    workload: Workload,
    stdin: Stdin,
    terminal: Option<&HostTerminal>,
    controls: Controls,
    deadline: Instant,
    stopper: kvm_core::Stopper,
) -> Result<SessionThread, Error> {
    let dup = |fd: std::os::fd::BorrowedFd<'_>, name: &str| {
        fd.try_clone_to_owned()
            .map(std::fs::File::from)
            .map_err(|e| Error::io("duplicating", Path::new(name), e))
    };
    let input: Option<Box<dyn std::io::Read + Send>> = if stdin.interactive {
        Some(Box::new(dup(std::io::stdin().as_fd(), "/dev/stdin")?))
    } else {
        None
    };
    let io = SessionIo {
        stdin: input,
        stdout: Box::new(stdout_file()?),
        stderr: Box::new(dup(std::io::stderr().as_fd(), "/dev/stderr")?),
    };
    let request = RunRequest {
        workload,
        stdin: stdin.interactive,
        terminal: terminal.map(|t| t.size),
    };
    SessionThread::start(uds.to_owned(), request, io, controls, deadline, move || {
        stopper.stop()
    })
    .map_err(|source| Error::Device {
        what: "guest agent session thread".into(),
        source: source.into(),
    })
}

/// The launch's state directory, removed when dropped (on every path).
struct LaunchDir(state::Launch);

impl Drop for LaunchDir {
    fn drop(&mut self) {
        if let Err(e) = self.0.remove() {
            tracing::warn!("{e}");
        }
    }
}

/// The virtio devices, in the order the guest enumerates them: the root disk (`/dev/vda`,
/// read-only: the guest writes to an overlay in its RAM), the Plan's disks (`/dev/vdb`, ...),
/// the console (`hvc0`), the entropy source (`/dev/hwrng`) and vsock (the guest agent's
/// transport, its host side the Unix socket `uds`).
fn virtio_devices(
    plan: &Plan,
    root: Option<&Path>,
    output: &OutputSink,
    uds: &Path,
) -> Result<Vec<Box<dyn VirtioDevice>>, Error> {
    let mut devices: Vec<Box<dyn VirtioDevice>> = Vec::new();
    let root = root.map(|root| (ROOT_DEVICE.to_owned(), root, true));
    let disks = root.into_iter().chain(
        plan.disks
            .iter()
            .enumerate()
            .map(|(i, disk)| (disk_device(i), disk.path.as_path(), disk.read_only)),
    );
    for (device, path, read_only) in disks {
        let image = devices::disk::open(path, read_only).map_err(|source| Error::Device {
            what: format!("disk {device} ({})", path.display()),
            source: source.into(),
        })?;
        // The serial number the guest reads (VIRTIO_BLK_T_GET_ID, /sys/block/vdX/serial).
        let id = device.trim_start_matches("/dev/");
        devices.push(Box::new(Block::new(image, read_only, id)));
    }
    let console = Console::new(output.clone(), None).map_err(|source| Error::Device {
        what: "console".into(),
        source: source.into(),
    })?;
    devices.push(Box::new(console));
    devices.push(Box::new(Rng::new()));
    let vsock = Vsock::new(GUEST_CID, uds).map_err(|source| Error::Device {
        what: format!("vsock device ({})", uds.display()),
        source: source.into(),
    })?;
    devices.push(Box::new(vsock));
    // The guest hands back the memory it frees (its boot's, a workload's peak), which would
    // otherwise stay resident on the host for the VM's life.
    devices.push(Box::new(Balloon::new()));
    Ok(devices)
}

/// This process's stdout as a file of its own (a duplicate descriptor), for the output
/// thread: writing through `std::io::stdout()` would take its lock.
fn stdout_file() -> Result<std::fs::File, Error> {
    std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .map_err(|source| Error::io("duplicating", Path::new("/dev/stdout"), source))
}

/// A memory figure of this process from `/proc/self/status` (`VmRSS:`, `VmHWM:`), in bytes.
fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `resources.cpus` rounded up: 1.5 CPUs of time need 2 vCPUs.
pub(super) fn vcpus(plan: &Plan) -> u8 {
    plan.resources.cpus.map_or(1, |cpus| {
        cpus.ceil().clamp(1.0, f64::from(MICROVM_MAX_VCPUS)) as u8
    })
}

/// How capsule-init boots: the root on `/dev/vda`, the virtio console, and the guest agent
/// (the workload comes over vsock).
fn guest_config(plan: &Plan, vm: &VmSpec) -> GuestConfig {
    GuestConfig {
        modules: DISK_ROOT_MODULES
            .iter()
            .chain(FREE_PAGE_REPORTING_MODULES)
            .chain(AGENT_MODULES)
            .map(|m| m.to_string())
            .collect(),
        root: GuestRoot::Disk(ROOT_DEVICE.into()),
        readonly_root: plan.root.readonly,
        console: GuestConsole::Virtio,
        quiet: !vm.kernel_log,
        tmpfs: crate::virtiofsd::guest_tmpfs(plan),
        ..GuestConfig::with_agent()
    }
}

/// The part of the Plan capsule-init carries out inside the guest: the
/// process, with the same privileges, limits and seccomp filter it would
/// have in a container.
fn workload(plan: &Plan, id: &str) -> Result<Workload, Error> {
    let hostname = process::hostname(plan, id);
    let mut process = plan.process.clone();
    process.env = process::environment(plan, &hostname)?;
    Ok(Workload {
        process,
        seccomp: plan.seccomp,
        hostname: Some(hostname),
        container: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outcome_lists_the_disks_in_order_with_their_format() {
        let tmp = tempfile::tempdir().unwrap();
        let raw = tmp.path().join("data.img");
        std::fs::write(&raw, vec![0u8; 4096]).unwrap();
        let qcow2 = tmp.path().join("clone.raw");
        let status = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&qcow2)
            .arg("1M")
            .status()
            .expect("qemu-img runs (Debian's qemu-utils)");
        assert!(status.success());
        let mut plan = Plan::container("/", vec!["true".into()]);
        plan.disks = vec![
            Disk {
                path: raw.clone(),
                read_only: false,
            },
            Disk {
                path: qcow2.clone(),
                read_only: true,
            },
        ];
        let disks = attached_disks(&plan).unwrap();
        // Formats come from the content: the names say the opposite.
        assert_eq!(
            serde_json::to_value(&disks).unwrap(),
            serde_json::json!([
                {"device": "/dev/vdb", "path": raw, "format": "raw", "readOnly": false},
                {"device": "/dev/vdc", "path": qcow2, "format": "qcow2", "readOnly": true},
            ])
        );
        std::fs::remove_file(&raw).unwrap();
        let err = attached_disks(&plan).unwrap_err().to_string();
        assert!(err.contains("/dev/vdb"), "{err}");
    }

    #[test]
    fn vcpus_round_cpus_up() {
        let mut plan = Plan::container("/", vec!["true".into()]);
        assert_eq!(vcpus(&plan), 1);
        plan.resources.cpus = Some(1.5);
        assert_eq!(vcpus(&plan), 2);
        plan.resources.cpus = Some(0.1);
        assert_eq!(vcpus(&plan), 1);
    }

    #[test]
    fn the_plan_s_files_win_over_the_guest_dir() {
        let vm = VmSpec {
            kernel: Some("/k".into()),
            ..Default::default()
        };
        let artifacts = GuestArtifacts::of(&vm);
        assert_eq!(artifacts.kernel, PathBuf::from("/k"));
        assert!(artifacts.initrd.ends_with("initramfs.cpio"));
    }

    #[test]
    fn the_guest_boots_with_the_agent_and_the_workload_goes_to_it() {
        let mut plan = Plan::container("/", vec!["sh".into()]);
        plan.root.readonly = true;
        let config = guest_config(&plan, &VmSpec::default());
        assert!(config.agent && config.workload.is_none());
        assert!(config.readonly_root);
        for module in AGENT_MODULES {
            assert!(config.modules.iter().any(|m| m == module), "{module}");
        }
        config.validate().unwrap();
        let workload = workload(&plan, "launch-1").unwrap();
        assert_eq!(workload.process.args, ["sh"]);
        assert_eq!(workload.hostname.as_deref(), Some("launch-1"));
        assert!(workload.process.env.iter().any(|v| v.starts_with("PATH=")));
    }
}
