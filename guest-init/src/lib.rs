//! The microVM guest's side of a capsule launch: what the guest's PID 1 (`capsule-init`, the
//! binary of this crate) is told, and the archive that carries it.
//!
//! The kernel's initrd is two uncompressed newc cpio archives back to back: a cached base
//! archive (`/init`, kernel modules under [`MODULES_DIR`], a few device nodes) and a small
//! per-launch archive written by [`write_launch_archive`]: the [`GuestConfig`] as JSON at
//! [`CONFIG_PATH`] and, optionally, a root filesystem tree under [`ROOTFS_DIR`]. The kernel
//! unpacks both into its initramfs and runs `/init`, which mounts the basics, loads the modules
//! the config names, makes the rootfs its root, runs the command as the configured user, and
//! reports the command's exit status with one write to the I/O port [`EXIT_PORT`]. With the
//! guest agent ([`agent`]), the command comes from the host over vsock instead, and its stdio,
//! signals and exit status travel there.
//!
//! The library is small on purpose: the init links it, and the init is a static binary that
//! every guest boot loads.
//!
//! ```no_run
//! use guest_init::{GuestConfig, write_launch_archive};
//! use std::path::Path;
//!
//! let mut config = GuestConfig::new(vec!["/bin/sh".into(), "-c".into(), "echo hi".into()]);
//! if let Some(workload) = &mut config.workload {
//!     workload.process.env.push("PATH=/bin".into());
//! }
//! let mut initrd = std::fs::File::create("/tmp/launch.cpio")?;
//! let bytes = write_launch_archive(&mut initrd, &config, Some(Path::new("/srv/rootfs")))?;
//! println!("{bytes} bytes");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod agent;
mod archive;
mod config;
mod error;
pub mod kata;
pub mod newc;
mod workload;

pub use archive::write_launch_archive;
pub use config::{GuestConfig, GuestConsole, GuestRoot, Share, Tmpfs};
pub use error::Error;
pub use workload::Workload;

/// Where the per-launch archive puts the [`GuestConfig`] (JSON).
pub const CONFIG_PATH: &str = "/capsule/config.json";

/// Where the per-launch archive puts the root filesystem, if the launch brings one.
pub const ROOTFS_DIR: &str = "/capsule/rootfs";

/// The vsock port the guest agent (capsule-init) listens on; the host reaches it through the
/// vsock device's Unix socket with `CONNECT 1024` (Firecracker's hybrid vsock convention; 1024
/// is also Kata's agent port).
pub const AGENT_PORT: u32 = 1024;

/// The block device of a root on a disk ([`GuestRoot::Disk`]): the first virtio-blk device
/// the guest finds, as the VMM attaches the root's before any other.
pub const ROOT_DEVICE: &str = "/dev/vda";

/// The virtio console's first port, the command's stdio with [`GuestConsole::Virtio`].
pub const VIRTIO_CONSOLE: &str = "/dev/hvc0";

/// Where the base archive keeps the kernel modules (`.ko` files, flat) that
/// [`GuestConfig::modules`] names.
pub const MODULES_DIR: &str = "/lib/modules";

/// The kernel modules the base archive carries in [`MODULES_DIR`] (the virtio drivers, which
/// Debian's cloud kernel builds as modules), each after the modules it depends on, so that
/// [`GuestConfig::modules`] can list them in this order. A kernel that builds one in has no
/// file for it.
pub const BASE_MODULES: &[&str] = &[
    "virtio_ring.ko",
    "virtio.ko",
    "virtio_mmio.ko",
    "virtio_blk.ko",
    // virtio_net's dependencies.
    "failover.ko",
    "net_failover.ko",
    "virtio_net.ko",
    "virtio_console.ko",
    "virtio_rng.ko",
    // Free page reporting (virtio-balloon).
    "virtio_balloon.ko",
    // The overlay over a disk root; Debian builds ext4 in, overlayfs as a module.
    "overlay.ko",
    // Host directories over virtio-fs (FUSE's transport in the guest).
    "fuse.ko",
    "virtiofs.ko",
    // The guest agent's transport (AF_VSOCK over virtio-vsock).
    "vsock.ko",
    "vmw_vsock_virtio_transport_common.ko",
    "vmw_vsock_virtio_transport.ko",
];

/// The modules a microVM with shared host directories (or a root on one) loads besides
/// [`DISK_ROOT_MODULES`], in [`BASE_MODULES`]' order.
pub const SHARE_MODULES: &[&str] = &["fuse.ko", "virtiofs.ko"];

/// The modules a microVM with its root on a disk, a virtio console and an entropy device
/// loads ([`GuestConfig::modules`]), in [`BASE_MODULES`]' order. One the kernel builds in has
/// no file in the base archive and is skipped.
pub const DISK_ROOT_MODULES: &[&str] = &[
    "virtio_ring.ko",
    "virtio.ko",
    "virtio_mmio.ko",
    "virtio_blk.ko",
    "virtio_console.ko",
    "virtio_rng.ko",
    "overlay.ko",
];

/// The module that reports the guest's free memory to the VMM (virtio-balloon's free page
/// reporting), loaded after [`DISK_ROOT_MODULES`].
pub const FREE_PAGE_REPORTING_MODULES: &[&str] = &["virtio_balloon.ko"];

/// The modules the guest agent needs beyond [`DISK_ROOT_MODULES`] (AF_VSOCK and its virtio
/// transport), in [`BASE_MODULES`]' order.
pub const AGENT_MODULES: &[&str] = &[
    "vsock.ko",
    "vmw_vsock_virtio_transport_common.ko",
    "vmw_vsock_virtio_transport.ko",
];

/// The I/O port the init writes the command's exit status to (one byte); the VMM stops the VM
/// on that write and exits with the status. The init writes one byte (0) to [`STARTED_PORT`]
/// as the first thing it does, so the VMM can tell how long the kernel took to reach user
/// space; never required: the init skips it when it cannot get the port. Both are the
/// `devices` crate's, which the VMM uses too.
pub use devices::{EXIT_PORT, STARTED_PORT};

/// The guest kernel's command line that capsule's microVM boots with (and the microVM
/// benchmark gives QEMU's guest too, so both kernels do the same work). Every console byte is
/// a trapped port write, so the boot is quiet unless the Plan asks for the kernel log
/// ([`KERNEL_CMDLINE_QUIET`] is added otherwise); `panic=-1` turns a panic into a reset the
/// VMM sees at once; `8250.nr_uarts=1` stops the serial driver probing three absent UARTs;
/// `rdinit=/init` runs capsule-init. The last four are Kata Containers' defaults for its
/// microVM guests: the TSC is KVM's and needs no watchdog or timer check, boot-time RCU grace
/// periods are expedited, and the crypto self-tests (a third of a second of the lab's boot)
/// are skipped, as the kernel's own tests, not the guest's safety, are what they check.
/// `percpu_alloc=page` maps per-CPU memory in pages rather than 2 MiB units: with 2 MiB units
/// the first cgroup-accounted per-CPU allocation (a memory cgroup's statistics) makes a chunk
/// whose `obj_cgroups` array is 4 MiB of zeroed guest RAM; an idle kata sandbox in the lab
/// went from 67.8 to 62.4 MiB resident with it (Debian 6.1, 2026-12-01).
pub const KERNEL_CMDLINE: &str = "console=ttyS0 8250.nr_uarts=1 reboot=acpi panic=-1 pci=off \
                                  i8042.noaux i8042.nomux i8042.dumbkbd rdinit=/init \
                                  tsc=reliable no_timer_check rcupdate.rcu_expedited=1 cryptomgr.notests \
                                  percpu_alloc=page";

/// Added to [`KERNEL_CMDLINE`] unless the kernel log is wanted.
pub const KERNEL_CMDLINE_QUIET: &str = "quiet loglevel=1";

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
