//! The x86_64 machine: address layout, CPU state at boot, CPUID, ACPI and
//! the Linux boot protocol.

/// ACPI tables: RSDP, XSDT, FADT, MADT, DSDT.
pub mod acpi;
/// Loading Linux: bzImage, initramfs, command line, zero page and e820 map.
pub mod boot;
/// The CPUID each vCPU reports.
pub mod cpuid;
/// Where everything lives in guest-physical and port space.
pub mod layout;
/// The PVH boot protocol: an ELF vmlinux and its `hvm_start_info`.
pub mod pvh;
/// Boot-time CPU state: GDT, page tables, long or protected mode, FPU, MSRs, LAPIC.
pub mod regs;
