//! Where things live in the guest's physical address space and port space.
//!
//! One table, so the boot code, the ACPI tables and the device wiring cannot
//! disagree. Low memory follows the PC conventions a Linux guest expects
//! (real-mode area, EBDA, BIOS area); RAM above 1 MiB runs up to the 32-bit
//! MMIO hole and continues above 4 GiB.

/// Boot GDT (4 entries of 8 bytes).
pub const BOOT_GDT_START: u64 = 0x500;
/// Boot IDT: an empty one, so a fault before Linux installs its own triple-faults cleanly.
pub const BOOT_IDT_START: u64 = 0x520;
/// The PVH `hvm_start_info`, followed by its memory map and module list
/// (the page below the zero page).
pub const PVH_START_INFO_START: u64 = 0x6000;
/// The Linux zero page (`struct boot_params`).
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial stack pointer of the boot vCPU (grows down, below the page tables).
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Identity-mapping page tables: PML4, one PDPT, then four page directories
/// (2 MiB pages), so the whole first 4 GiB are mapped when the kernel starts.
pub const PML4_START: u64 = 0x9000;
/// The page-directory-pointer table.
pub const PDPTE_START: u64 = 0xa000;
/// The first of four page directories.
pub const PDE_START: u64 = 0xb000;
/// The kernel command line (NUL-terminated).
pub const CMDLINE_START: u64 = 0x20000;
/// Start of the extended BIOS data area; RAM below it is usable, above it reserved.
pub const EBDA_START: u64 = 0x9fc00;
/// The ACPI tables, RSDP first, in the reserved BIOS area below 1 MiB.
pub const ACPI_START: u64 = 0xe0000;
/// End of the BIOS area: ACPI tables must fit below it.
pub const ACPI_END: u64 = 0x10_0000;
/// Where RAM above the low megabyte starts, and where the kernel is loaded.
pub const HIMEM_START: u64 = 0x10_0000;

/// The 32-bit MMIO hole: no RAM here, only devices (virtio-mmio, IOAPIC, LAPIC).
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
/// End of the hole, and where RAM continues when the guest has more than fits below.
pub const MMIO_HOLE_END: u64 = 0x1_0000_0000;
/// Virtio-mmio devices are allocated from here, [`VIRTIO_MMIO_SIZE`] each.
pub const VIRTIO_MMIO_START: u64 = 0xd000_0000;
/// End of the virtio-mmio windows: the IOAPIC follows.
pub const VIRTIO_MMIO_END: u64 = IOAPIC_START;
/// One virtio-mmio device's register window.
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// The IOAPIC KVM emulates.
pub const IOAPIC_START: u64 = 0xfec0_0000;
/// The local APICs KVM emulates.
pub const APIC_START: u64 = 0xfee0_0000;

/// The IOAPIC's pins: legacy ISA interrupts 0..16, then 16..24 for devices.
pub const IOAPIC_PINS: u32 = 24;
/// First IRQ handed to virtio-mmio devices (below are the ISA ones: serial 4, i8042 1).
pub const FIRST_DEVICE_IRQ: u32 = 5;
/// Last IRQ an IOAPIC pin can carry.
pub const LAST_DEVICE_IRQ: u32 = IOAPIC_PINS - 1;

/// COM1.
pub const SERIAL_PORT: u16 = 0x3f8;
/// COM1's eight registers.
pub const SERIAL_PORT_LEN: u16 = 8;
/// COM1's ISA interrupt.
pub const SERIAL_IRQ: u32 = 4;
/// The i8042 controller: data port 0x60, command/status 0x64 (0x60..0x65).
pub const I8042_PORT: u16 = 0x60;
/// The port the guest writes its exit status to.
pub const EXIT_PORT: u16 = devices::EXIT_PORT;
/// ACPI hardware-reduced sleep control register (the FADT's `SLEEP_CONTROL_REG`):
/// a write of `SLP_TYP=5 | SLP_EN` powers the guest off.
pub const ACPI_SLEEP_CONTROL_PORT: u16 = 0x600;
/// ACPI sleep status register (the FADT's `SLEEP_STATUS_REG`).
pub const ACPI_SLEEP_STATUS_PORT: u16 = 0x601;
/// ACPI reset register (the FADT's `RESET_REG`): writing [`ACPI_RESET_VALUE`] resets.
pub const ACPI_RESET_PORT: u16 = 0x602;
/// The value the guest writes to [`ACPI_RESET_PORT`] to reset.
pub const ACPI_RESET_VALUE: u8 = 0x01;
/// The S5 (soft-off) sleep type, as the DSDT's `\_S5` package declares it.
pub const ACPI_S5_SLEEP_TYPE: u8 = 5;
/// The guest's init writes here once when it starts, so the VMM can time
/// the boot up to user space.
pub const STARTED_PORT: u16 = devices::STARTED_PORT;
