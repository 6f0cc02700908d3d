//! Everything before the command runs: mounts, the console, modules, the root filesystem.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd};

use guest_init::{GuestConfig, MODULES_DIR, ROOTFS_DIR, VIRTIO_CONSOLE};
use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::kmod::{ModuleInitFlags, finit_module};
use nix::mount::{MsFlags, mount};
use nix::sys::stat::{Mode, SFlag, fstat};
use nix::sys::termios::{OutputFlags, SetArg, tcgetattr, tcsetattr};
use nix::unistd::{chdir, chroot, mkdir};

use crate::Failure;

/// The kernel file systems every root gets, mounted where they always are.
const API_MOUNTS: &[ApiMount] = &[
    ApiMount {
        dir: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        data: Some(c"mode=0755"),
        always_create: false,
        required: true,
    },
    // The guest agent's terminals (`-t`): /dev/ptmx finds its devpts instance at /dev/pts.
    ApiMount {
        dir: "/dev/pts",
        fstype: "devpts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: Some(c"mode=0620,ptmxmode=0666"),
        always_create: true,
        required: false,
    },
    ApiMount {
        dir: "/proc",
        fstype: "proc",
        flags: MsFlags::MS_NOSUID
            .union(MsFlags::MS_NODEV)
            .union(MsFlags::MS_NOEXEC),
        data: None,
        always_create: false,
        required: true,
    },
    ApiMount {
        dir: "/sys",
        fstype: "sysfs",
        flags: MsFlags::MS_NOSUID
            .union(MsFlags::MS_NODEV)
            .union(MsFlags::MS_NOEXEC),
        data: None,
        always_create: false,
        required: true,
    },
];

struct ApiMount {
    dir: &'static str,
    fstype: &'static str,
    flags: MsFlags,
    data: Option<&'static CStr>,
    /// The mount point is inside a file system mounted just before (devtmpfs), not in the
    /// root, so it is made whatever the root holds.
    always_create: bool,
    /// Without it the init cannot go on; devpts is only for `-t` sessions, which fail
    /// without it (a kernel without Unix98 ptys).
    required: bool,
}

/// devtmpfs, devpts, proc and sysfs in the current root, creating missing mount points when
/// `create`.
pub fn mount_api_filesystems(create: bool) -> Result<(), Failure> {
    for m in API_MOUNTS {
        if create || m.always_create {
            make_dir("creating mount point", m.dir)?;
        }
        match mount(Some(m.fstype), m.dir, Some(m.fstype), m.flags, m.data) {
            // Already there (a kernel that mounts devtmpfs itself).
            Ok(()) | Err(Errno::EBUSY) => {}
            Err(_) if !m.required => {}
            Err(e) => {
                return Err(Failure::new(
                    format_args!("mounting {} on", m.fstype),
                    m.dir,
                    e,
                ));
            }
        }
    }
    Ok(())
}

/// Makes the console the init's stdin, stdout and stderr where the kernel could not. The
/// kernel opens `/dev/console` for the init when the initramfs has it; failing that, the Rust
/// runtime has put `/dev/null` on closed descriptors before `main`, which is as good as closed.
/// Not fatal: without a console the exit port still reports the status.
pub fn attach_console() {
    let useful = [
        is_useful(std::io::stdin().as_fd()),
        is_useful(std::io::stdout().as_fd()),
        is_useful(std::io::stderr().as_fd()),
    ];
    if useful.iter().all(|u| *u) {
        return;
    }
    let Ok(console) = open(
        "/dev/console",
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    // dup2 clears close-on-exec on the copies, so the command inherits them. A failure leaves
    // that descriptor as it was, which is no worse.
    if !useful[0] {
        let _ = nix::unistd::dup2_stdin(&console);
    }
    if !useful[1] {
        let _ = nix::unistd::dup2_stdout(&console);
    }
    if !useful[2] {
        let _ = nix::unistd::dup2_stderr(&console);
    }
}

/// Lets the command's output reach the VMM byte for byte: a tty turns every `\n` into `\r\n`
/// by default (ONLCR), which would change what `capsule run` prints on the host, whose own
/// terminal adds the `\r` where one is needed. Not fatal: stdout may be no tty at all.
pub fn console_output_verbatim() {
    let stdout = std::io::stdout();
    let Ok(mut termios) = tcgetattr(stdout.as_fd()) else {
        return;
    };
    if termios.output_flags.contains(OutputFlags::ONLCR) {
        termios.output_flags.remove(OutputFlags::ONLCR);
        let _ = tcsetattr(stdout.as_fd(), SetArg::TCSANOW, &termios);
    }
}

/// Open, and not the Rust runtime's `/dev/null` stand-in (character device 1:3).
fn is_useful(fd: BorrowedFd<'_>) -> bool {
    match fstat(fd) {
        Ok(st) => {
            let is_char = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR;
            !(is_char && st.st_rdev == nix::sys::stat::makedev(1, 3))
        }
        Err(_) => false,
    }
}

/// Loads `config.modules` from [`MODULES_DIR`] in order. A module without a file is built
/// into the kernel: `cargo xtask guest` puts in the base archive the modules the kernel
/// package has as files, and no others.
pub fn load_modules(config: &GuestConfig) -> Result<(), Failure> {
    for module in &config.modules {
        let path = format!("{MODULES_DIR}/{module}");
        let file = match open(
            path.as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(file) => file,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(Failure::new("opening module", &path, e)),
        };
        match finit_module(&file, c"", ModuleInitFlags::empty()) {
            // Built in, or loaded as another module's dependency.
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(Failure::new("loading module", &path, e)),
        }
    }
    // The initramfs is a tmpfs in guest RAM: its module files (1.6 MiB) would stay resident
    // for the guest's life, and nothing loads a module later. Not fatal: they only cost RAM.
    let _ = std::fs::remove_dir_all(MODULES_DIR);
    Ok(())
}

/// Linux's smallest free block (a page order) that free page reporting hands to the VMM
/// (`mm/page_reporting.c`; the parameter exists once a driver such as virtio_balloon uses
/// page reporting).
const PAGE_REPORTING_ORDER: &str = "/sys/module/page_reporting/parameters/page_reporting_order";

/// 128 KiB, where Linux reports only whole 2 MiB pageblocks on x86: the blocks a guest frees
/// after its boot are smaller and scattered over the 2 MiB huge pages that back its RAM on
/// the host, each of which stays resident while any page in it is in use. In the lab (Debian
/// 6.1, an idle microVM of 256 MiB booted with `lockdown=confidentiality`, 2026-12-01) the
/// VMM's resident memory was 80.3 MiB at the default order, 69.7 MiB at order 5 and 69.4 MiB
/// at order 0: 5 gets nearly all of it in reports of 32 pages or more.
const FREE_PAGE_REPORTING_ORDER: &str = "5";

/// Sets [`PAGE_REPORTING_ORDER`] to [`FREE_PAGE_REPORTING_ORDER`], after the modules loaded.
/// Not fatal: a kernel without the parameter keeps reporting as it chooses.
pub fn report_smaller_free_blocks() {
    let _ = std::fs::write(PAGE_REPORTING_ORDER, FREE_PAGE_REPORTING_ORDER);
}

/// Puts the virtio console's first port on the init's stdin, stdout and stderr, which the
/// command inherits; the kernel's log stays on the serial console. Waits for the port as for
/// the root device: virtio_console creates it as it loads.
pub fn attach_virtio_console() -> Result<(), Failure> {
    crate::disk_root::run(&[crate::disk_root::Step::WaitFor(VIRTIO_CONSOLE.to_owned())])?;
    let console = open(
        VIRTIO_CONSOLE,
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Failure::new("opening", VIRTIO_CONSOLE, e))?;
    nix::unistd::dup2_stdin(&console)
        .map_err(|e| Failure::new("reading from", VIRTIO_CONSOLE, e))?;
    nix::unistd::dup2_stdout(&console)
        .map_err(|e| Failure::new("writing to", VIRTIO_CONSOLE, e))?;
    nix::unistd::dup2_stderr(&console)
        .map_err(|e| Failure::new("writing to", VIRTIO_CONSOLE, e))?;
    console_output_verbatim();
    Ok(())
}

/// Makes [`ROOTFS_DIR`] the root: a bind mount of itself (read-only if asked), then
/// [`switch_root`].
pub fn enter_rootfs(config: &GuestConfig) -> Result<(), Failure> {
    // The mount points are made while the tree is still writable, so that a read-only root
    // gets them too; the tree is this boot's copy in RAM, never the host's.
    make_mount_points(ROOTFS_DIR)?;
    // A bind mount makes the directory a mount of its own, which MS_MOVE needs.
    mount(
        Some(ROOTFS_DIR),
        ROOTFS_DIR,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| Failure::new("bind-mounting", ROOTFS_DIR, e))?;
    if config.readonly_root {
        mount(
            None::<&str>,
            ROOTFS_DIR,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(|e| Failure::new("remounting read-only", ROOTFS_DIR, e))?;
    }
    switch_root(ROOTFS_DIR)
}

/// Creates `dir` (mode 0755) unless it exists; `step` names the step in the failure.
pub fn make_dir(step: &str, dir: &str) -> Result<(), Failure> {
    match mkdir(dir, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(Failure::new(step, dir, e)),
    }
}

/// The directories /dev, /proc and /sys are mounted on, in `root`; existing ones are fine
/// (on a read-only root too: mkdir(2) says EEXIST before EROFS).
fn make_mount_points(root: &str) -> Result<(), Failure> {
    // Not those inside another API mount (/dev/pts): made after it, in it, and a read-only
    // root could not hold them.
    for m in API_MOUNTS.iter().filter(|m| !m.always_create) {
        make_dir("creating mount point", &format!("{root}{}", m.dir))?;
    }
    Ok(())
}

/// Where the sandbox's tmpfs is mounted before it becomes the root.
const SANDBOX_DIR: &str = "/capsule/sandbox";

/// Makes a fresh tmpfs the root ([`GuestRoot::Sandbox`](guest_init::GuestRoot::Sandbox)),
/// with its own /dev, /proc and /sys: a root that is a mount of its own, which a container's
/// pivot_root(2) can move (the initramfs cannot be).
pub fn enter_sandbox() -> Result<(), Failure> {
    make_dir("creating", SANDBOX_DIR)?;
    mount(
        Some("tmpfs"),
        SANDBOX_DIR,
        Some("tmpfs"),
        MsFlags::MS_NOSUID,
        Some("mode=0755"),
    )
    .map_err(|e| Failure::new("mounting tmpfs on", SANDBOX_DIR, e))?;
    switch_root(SANDBOX_DIR)
}

/// Makes the mount at `dir` the root the way switch_root does it from an initramfs (which
/// cannot be pivot_root'ed): moves it over `/` and chroots into it. Then mounts /dev, /proc
/// and /sys inside it.
pub fn switch_root(dir: &str) -> Result<(), Failure> {
    make_mount_points(dir)?;
    chdir(dir).map_err(|e| Failure::new("entering", dir, e))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(|e| Failure::new("moving the root filesystem onto", "/", e))?;
    chroot(".").map_err(|e| Failure::new("chroot into", dir, e))?;
    chdir("/").map_err(|e| Failure::new("entering the new root", "/", e))?;
    mount_api_filesystems(false)
}
