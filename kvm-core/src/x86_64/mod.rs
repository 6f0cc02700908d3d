//! The x86_64 machine: address layout, CPU state at boot, CPUID, ACPI and
//! the Linux boot protocol.

/// ACPI tables: RSDP, XSDT, FADT, MADT, DSDT.
pub mod acpi;
/// The CPUID each vCPU reports.
pub mod cpuid;
/// Where everything lives in guest-physical and port space.
pub mod layout;
/// Loading Linux: a bzImage (Linux boot protocol) or an ELF vmlinux (PVH),
/// with the command line, the initramfs and the e820 map.
pub mod loader;
/// Boot-time CPU state: GDT, page tables, long or protected mode, FPU, MSRs, LAPIC.
pub mod regs;
