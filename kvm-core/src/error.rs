//! The crate's one error type.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::flavour::KvmFlavour;

/// Everything that can go wrong in kvm-core; each variant names the ioctl or value involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Opening `/dev/kvm` failed.
    #[error("open /dev/kvm: {0}")]
    OpenKvm(#[source] kvm_ioctls::Error),
    /// A KVM ioctl failed.
    #[error("ioctl {ioctl}: {source}")]
    Ioctl {
        /// The ioctl's name, e.g. `KVM_CREATE_VM`.
        ioctl: &'static str,
        /// The errno it returned.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// The requested guest memory size is zero or not a multiple of the page size.
    #[error("guest memory size {size:#x} is not a non-zero multiple of {page:#x}")]
    MemorySize {
        /// The size asked for, in bytes.
        size: usize,
        /// The page size it must be a multiple of.
        page: usize,
    },
    /// Mapping guest memory failed.
    #[error("map {size:#x} bytes of guest memory: {source}")]
    GuestMemory {
        /// The size asked for, in bytes.
        size: usize,
        /// Why mmap (or vm-memory) refused.
        #[source]
        source: std::io::Error,
    },
    /// More guest memory regions than KVM memslot numbers.
    #[error("guest memory region {0} has no kvm memslot number")]
    MemslotIndex(usize),
    /// Writing into guest memory failed (typically: the range is not all RAM).
    #[error("write {len} bytes at guest address {addr:#x}: {source}")]
    GuestWrite {
        /// The guest-physical start address.
        addr: u64,
        /// The number of bytes.
        len: usize,
        /// vm-memory's reason.
        #[source]
        source: vm_memory::GuestMemoryError,
    },
    /// A real-mode entry point must lie below 1 MiB.
    #[error("real-mode entry {0:#x} is not below 1 MiB")]
    RealModeEntry(u64),
    /// The vCPU exited for a reason capsule does not handle.
    #[error("unhandled vcpu exit {0}")]
    UnhandledExit(String),
    /// KVM_EXIT_FAIL_ENTRY: the vCPU state was rejected on entry.
    #[error("kvm_run failed entry: hardware reason {reason:#x} on cpu {cpu}")]
    FailEntry {
        /// `hardware_entry_failure_reason`.
        reason: u64,
        /// The physical CPU.
        cpu: u32,
    },
    /// The vCPU ran past its deadline without an exit that ends the run.
    #[error("vcpu run timed out after {0:?}")]
    Timeout(Duration),
    /// Installing the vCPU kick signal handler failed.
    #[error("register handler for signal {signal}: {source}")]
    Signal {
        /// The signal number.
        signal: i32,
        /// The errno.
        #[source]
        source: vmm_sys_util::errno::Error,
    },
    /// This host's KVM cannot boot a stock guest kernel.
    #[error("{}", .0.stock_kernel_refusal())]
    NoStockKernel(KvmFlavour),
    /// A machine needs 1 to 254 vCPUs (APIC ids 0..=253; 255 is broadcast).
    #[error("{0} vcpus: a microVM has 1 to 254")]
    VcpuCount(u8),
    /// A file the machine is built from cannot be read.
    #[error("cannot read the {what} {}: {source}", path.display())]
    File {
        /// "kernel" or "initrd".
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The reason.
        #[source]
        source: std::io::Error,
    },
    /// linux-loader refused the kernel image.
    #[error(
        "cannot load the kernel {}: {source} (capsule boots a bzImage, or an ELF vmlinux with a PVH entry)",
        path.display()
    )]
    Kernel {
        /// The kernel's path.
        path: PathBuf,
        /// linux-loader's reason.
        #[source]
        source: linux_loader::loader::Error,
    },
    /// The kernel loaded but cannot be booted the way capsule boots.
    #[error("cannot boot the kernel {}: {reason}", path.display())]
    KernelFormat {
        /// The kernel's path.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// The command line does not fit the kernel's `cmdline_size`, or holds a NUL.
    #[error("the kernel command line ({len} bytes) must be at most {max} bytes and hold no NUL")]
    Cmdline {
        /// Its length.
        len: usize,
        /// The kernel's limit.
        max: u64,
    },
    /// More e820 entries than the zero page holds.
    #[error("{0} e820 entries do not fit the zero page")]
    E820Full(usize),
    /// Writing the zero page failed.
    #[error("write the zero page: {0}")]
    BootParams(#[source] linux_loader::configurator::Error),
    /// More memory map entries than the room kept for the PVH memory map.
    #[error("{0} memory map entries do not fit the PVH start info's memory map")]
    PvhMemmapFull(usize),
    /// Writing the PVH start info failed.
    #[error("write the PVH start info: {0}")]
    StartInfo(#[source] linux_loader::configurator::Error),
    /// The initramfs does not fit between the kernel and the end of low RAM.
    #[error(
        "the initramfs ({size} bytes) does not fit in guest memory ({room} bytes free above the kernel): give the VM more memory"
    )]
    InitrdTooLarge {
        /// The initramfs's size.
        size: u64,
        /// The room there is.
        room: u64,
    },
    /// An initrd file changed size while it was being loaded.
    #[error("the initrd {} changed while it was loaded", .0.display())]
    InitrdChanged(PathBuf),
    /// More boot MSRs than a `kvm_msrs` holds (a capsule bug).
    #[error("{0} boot msrs do not fit kvm_msrs")]
    MsrCount(usize),
    /// KVM refused to set a boot MSR.
    #[error("kvm refused to set msr {0:#x}")]
    MsrRefused(u32),
    /// Building the ACPI tables failed.
    #[error(transparent)]
    Acpi(#[from] crate::x86_64::acpi::AcpiError),
    /// A device could not be placed on its bus (a capsule layout bug).
    #[error("device layout: {0}")]
    Device(#[from] devices::BusError),
    /// No virtio-mmio window is left for a device.
    #[error("{device}: no virtio-mmio window left ({source})")]
    VirtioWindow {
        /// The device, e.g. `virtio-blk #2`.
        device: String,
        /// The allocator's reason.
        #[source]
        source: vm_allocator::Error,
    },
    /// No interrupt line is left for a device.
    #[error("{device}: no interrupt line left ({source})")]
    VirtioIrq {
        /// The device, e.g. `virtio-blk #19`.
        device: String,
        /// The allocator's reason.
        #[source]
        source: vm_allocator::Error,
    },
    /// A device allocator was given an empty or overflowing range.
    #[error("device allocator range: {0}")]
    DeviceRange(#[source] vm_allocator::Error),
    /// The device event loop could not start, failed, or a device panicked on it.
    #[error(transparent)]
    EventLoop(#[from] devices::event_loop::EventLoopError),
    /// Creating an eventfd failed.
    #[error("create an eventfd: {0}")]
    EventFd(#[source] std::io::Error),
    /// Spawning a vCPU thread failed.
    #[error("spawn a vcpu thread: {0}")]
    VcpuThread(#[source] std::io::Error),
    /// The vCPU thread of this vCPU panicked (in a device model, say).
    #[error("the thread of vcpu {0} panicked")]
    VcpuPanic(u8),
    /// A machine was asked for what its lifecycle state does not allow.
    #[error("cannot {action} a machine that is {state}")]
    MachineState {
        /// What was asked: "start", "pause", "resume" or "run".
        action: &'static str,
        /// The state the machine was in.
        state: crate::machine::MachineState,
    },
}

impl Error {
    /// Makes an [`Error::File`] for the `what` at `path`, for `map_err`.
    pub(crate) fn file(what: &'static str, path: &Path) -> impl Fn(std::io::Error) -> Error {
        let path = path.to_path_buf();
        move |source| Error::File {
            what,
            path: path.clone(),
            source,
        }
    }
}

/// `Result` with kvm-core's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
