//! What loading a kernel hands the boot vCPU.

/// How the boot vCPU enters the kernel that was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelEntry {
    /// A bzImage: its 64-bit entry (`startup_64`) in long mode, paging on
    /// ([`crate::x86_64::regs::setup_long_mode`]).
    Linux64 {
        /// The entry point.
        entry: u64,
        /// The zero page, passed to the kernel in `rsi`.
        boot_params: u64,
    },
    /// An ELF vmlinux: its PVH entry in 32-bit protected mode, paging off
    /// ([`crate::x86_64::regs::setup_protected_mode`]).
    Pvh {
        /// The entry point its `XEN_ELFNOTE_PHYS32_ENTRY` note names.
        entry: u64,
        /// The `hvm_start_info`, passed to the kernel in `rbx`.
        start_info: u64,
    },
}
