//! The crate's one error type.

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
        /// vm-memory's reason.
        #[source]
        source: vm_memory::mmap::FromRangesError,
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
    /// Spawning the watchdog thread failed.
    #[error("spawn vcpu watchdog thread: {0}")]
    Watchdog(#[source] std::io::Error),
    /// This host's KVM cannot boot a stock guest kernel.
    #[error("{}", .0.stock_kernel_refusal())]
    NoStockKernel(KvmFlavour),
}

/// `Result` with kvm-core's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
