//! The ACPI tables a stock x86_64 Linux needs to boot in the microVM.
//!
//! A distribution kernel built without `CONFIG_X86_MPPARSE` learns about its
//! CPUs and the IOAPIC only from the MADT, so ACPI is not optional here. The
//! machine is "hardware-reduced" (no PM1 blocks, no SCI, no GPEs, no 8259, no
//! PIT setup by the kernel): power-off and reset go through the FADT's sleep
//! and reset registers, which `devices::legacy::AcpiPm` implements on the
//! ports named in [`layout`]. Everything else the guest must know about (COM1,
//! the virtio-mmio devices) is declared in the DSDT.
//!
//! Tables are placed back to back from [`layout::ACPI_START`], RSDP first
//! (where Linux's fallback scan of `0xe0000..0x100000` would also find it):
//! RSDP, XSDT, FADT, MADT, DSDT. There is no FACS: a hardware-reduced FADT
//! with both firmware-control fields zero says "no FACS", and nothing here
//! needs the global lock or a waking vector.

use acpi_tables::Aml;
use acpi_tables::aml;
use acpi_tables::fadt::{FADT, FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, MADT, ProcessorLocalApic,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use vm_memory::{Bytes, GuestAddress};

use crate::memory::GuestMemory;
use crate::x86_64::layout;

/// The OEM every table names: capsule.
const OEM_ID: [u8; 6] = *b"CAPSUL";
/// One table id for all tables: Linux's table-override matching keys on
/// signature plus ids, so the signature already tells them apart.
const OEM_TABLE_ID: [u8; 8] = *b"CAPSULE ";
/// Bumped when the tables' content changes in a way a guest could care about.
const OEM_REVISION: u32 = 1;
/// The FADT's hypervisor vendor identity (ACPI 6.0+), padded like the table id.
const HYPERVISOR_VENDOR_ID: [u8; 8] = *b"CAPSULE ";

/// The FADT revision: ACPI 6.5, the version of the crate's 276-byte layout
/// (the ACPI 6.0+ one, ending with the hypervisor id). That is also Linux
/// 6.1's `struct acpi_table_fadt`, so ACPICA neither truncates nor pads the
/// table. HW_REDUCED_ACPI and the sleep registers only exist from revision 5
/// on: a FADT that sets them must not claim an older revision (Linux on arm64
/// refuses anything below 5.1 outright).
const FADT_MAJOR_REVISION: u8 = 6;
/// See [`FADT_MAJOR_REVISION`].
const FADT_MINOR_REVISION: u8 = 5;

/// DSDT revision 2 or more switches the AML interpreter to 64-bit integers.
const DSDT_REVISION: u8 = 2;

/// IAPC_BOOT_ARCH bit 2: there is no VGA, so Linux must not probe for one.
const IAPC_VGA_NOT_PRESENT: u16 = 1 << 2;
/// IAPC_BOOT_ARCH bit 5: no CMOS RTC. Without it Linux registers `rtc_cmos`,
/// which on a VMM without an RTC spins for seconds waiting for an update
/// that never comes.
const IAPC_CMOS_RTC_NOT_PRESENT: u16 = 1 << 5;
/// What the FADT's IAPC_BOOT_ARCH says. "MSI not supported" (bit 3) stays
/// clear so a later virtio-pci transport can use MSI-X.
///
/// Bit 1 (an 8042 is present) stays clear too: the i8042 capsule emulates is
/// only the `reboot=k` reset line, and a Linux that believed in a keyboard
/// controller would spend a second of every boot failing to probe it.
const IAPC_BOOT_ARCH: u16 = IAPC_VGA_NOT_PRESENT | IAPC_CMOS_RTC_NOT_PRESENT;

/// The most vCPUs the MADT describes: xAPIC ids are 8 bits and 255 is the
/// broadcast id, so APIC ids (= vCPU indices) stop at 254.
pub const MAX_VCPUS: u8 = 254;

/// DSDT device names are `V` plus three hex digits: `V000` to `VFFF`.
pub const MAX_VIRTIO_DEVICES: usize = 0x1000;

/// Tables start on this boundary: not required by ACPI (only the FACS is),
/// but it keeps them readable in a hex dump of guest memory.
const TABLE_ALIGN: u64 = 16;

/// Every system description table begins with this 36-byte header.
const SDT_HEADER_LEN: usize = 36;

/// The XSDT lists the FADT and the MADT.
const XSDT_ENTRIES: usize = 2;

// The MADT and `Memory32Fixed`/`IO` descriptors hold 32-bit addresses and
// 8-bit lengths; these checks turn the casts below into compile-time facts.
const _: () = assert!(layout::APIC_START <= u32::MAX as u64);
const _: () = assert!(layout::IOAPIC_START <= u32::MAX as u64);
const _: () = assert!(layout::SERIAL_PORT_LEN <= u8::MAX as u16);

/// A virtio-mmio device the DSDT declares (`_HID "LNRO0005"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioMmioDevice {
    /// Guest-physical start of the device's register window (below 4 GiB).
    pub base: u64,
    /// Size of the register window, in bytes.
    pub size: u64,
    /// The IOAPIC pin (GSI) the device interrupts on.
    pub irq: u32,
}

/// What the tables describe.
#[derive(Clone, Debug)]
pub struct AcpiConfig {
    /// Number of vCPUs; vCPU `i` has APIC id and ACPI processor id `i`.
    pub vcpus: u8,
    /// The virtio-mmio devices, declared as `\_SB_.V000`, `\_SB_.V001`, ...
    pub virtio_devices: Vec<VirtioMmioDevice>,
}

/// Why the ACPI tables could not be built or written.
#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    /// The vCPU count is 0 or above [`MAX_VCPUS`].
    #[error("{0} vCPUs: the MADT describes 1 to {MAX_VCPUS}")]
    VcpuCount(u8),
    /// More virtio-mmio devices than DSDT device names.
    #[error("{0} virtio-mmio devices: at most {MAX_VIRTIO_DEVICES} can be named in the DSDT")]
    TooManyVirtioDevices(usize),
    /// A virtio-mmio window is empty or does not fit a 32-bit `Memory32Fixed` below 4 GiB.
    #[error(
        "virtio-mmio device {index}: window {base:#x}+{size:#x} is empty or does not fit below 4 GiB"
    )]
    VirtioWindow {
        /// Index in [`AcpiConfig::virtio_devices`].
        index: usize,
        /// The window's start.
        base: u64,
        /// The window's size.
        size: u64,
    },
    /// A virtio-mmio interrupt is not a pin of the IOAPIC.
    #[error(
        "virtio-mmio device {index}: irq {irq} is not an IOAPIC pin (0..{})",
        layout::IOAPIC_PINS
    )]
    VirtioIrq {
        /// Index in [`AcpiConfig::virtio_devices`].
        index: usize,
        /// The interrupt asked for.
        irq: u32,
    },
    /// The tables need more room than `ACPI_START..ACPI_END` has.
    #[error("ACPI tables need {needed:#x} bytes, {available:#x} available")]
    TooLarge {
        /// Bytes from `ACPI_START` to the end of the last table.
        needed: u64,
        /// `ACPI_END - ACPI_START`.
        available: u64,
    },
    /// Writing a table into guest memory failed (the range is not all RAM).
    #[error("write ACPI table at {addr:#x}: {source}")]
    GuestWrite {
        /// Guest-physical address of the table.
        addr: u64,
        /// vm-memory's reason.
        #[source]
        source: vm_memory::GuestMemoryError,
    },
}

/// Writes RSDP (at [`layout::ACPI_START`]), XSDT, FADT, MADT and DSDT into
/// guest memory between `ACPI_START` and `ACPI_END`; returns the RSDP's guest
/// address (for `boot_params.acpi_rsdp_addr`).
pub fn create_acpi_tables(memory: &GuestMemory, config: &AcpiConfig) -> Result<u64, AcpiError> {
    let tables = build_acpi_tables(config)?;
    for (addr, bytes) in &tables {
        memory
            .write_slice(bytes, GuestAddress(*addr))
            .map_err(|source| AcpiError::GuestWrite {
                addr: *addr,
                source,
            })?;
    }
    Ok(layout::ACPI_START)
}

/// Builds the tables without touching guest memory: `(guest address, bytes)`
/// in the order RSDP, XSDT, FADT, MADT, DSDT; the RSDP is at
/// [`layout::ACPI_START`] and everything ends at or below [`layout::ACPI_END`].
pub fn build_acpi_tables(config: &AcpiConfig) -> Result<Vec<(u64, Vec<u8>)>, AcpiError> {
    validate(config)?;

    // The DSDT and MADT do not point anywhere, so they can be built before
    // the layout is known; their sizes decide it.
    let madt = madt_bytes(config.vcpus);
    let dsdt = dsdt_bytes(&config.virtio_devices);

    let rsdp_addr = layout::ACPI_START;
    let xsdt_addr = align_up(rsdp_addr + Rsdp::len() as u64);
    let xsdt_len = SDT_HEADER_LEN + 8 * XSDT_ENTRIES;
    let fadt_addr = align_up(xsdt_addr + xsdt_len as u64);
    let madt_addr = align_up(fadt_addr + FADT::len() as u64);
    let dsdt_addr = align_up(madt_addr + madt.len() as u64);
    let end = dsdt_addr + dsdt.len() as u64;
    if end > layout::ACPI_END {
        return Err(AcpiError::TooLarge {
            needed: end - layout::ACPI_START,
            available: layout::ACPI_END - layout::ACPI_START,
        });
    }

    let fadt = fadt_bytes(dsdt_addr);
    let xsdt = xsdt_bytes(&[fadt_addr, madt_addr]);
    debug_assert_eq!(xsdt.len(), xsdt_len);
    let rsdp = aml_bytes(&Rsdp::new(OEM_ID, xsdt_addr));

    Ok(vec![
        (rsdp_addr, rsdp),
        (xsdt_addr, xsdt),
        (fadt_addr, fadt),
        (madt_addr, madt),
        (dsdt_addr, dsdt),
    ])
}

/// Rejects configurations the tables cannot express, before any AML is built
/// (the crate's AML builders panic on malformed names).
fn validate(config: &AcpiConfig) -> Result<(), AcpiError> {
    if config.vcpus == 0 || config.vcpus > MAX_VCPUS {
        return Err(AcpiError::VcpuCount(config.vcpus));
    }
    if config.virtio_devices.len() > MAX_VIRTIO_DEVICES {
        return Err(AcpiError::TooManyVirtioDevices(config.virtio_devices.len()));
    }
    for (index, dev) in config.virtio_devices.iter().enumerate() {
        // Memory32Fixed has a 32-bit base and a 32-bit length, and the window
        // must end by 4 GiB; with both below 2^32 the sum cannot overflow.
        let fits = u32::try_from(dev.base).is_ok()
            && u32::try_from(dev.size).is_ok()
            && dev.base + dev.size <= 1 << 32;
        if dev.size == 0 || !fits {
            return Err(AcpiError::VirtioWindow {
                index,
                base: dev.base,
                size: dev.size,
            });
        }
        if dev.irq >= layout::IOAPIC_PINS {
            return Err(AcpiError::VirtioIrq {
                index,
                irq: dev.irq,
            });
        }
    }
    Ok(())
}

fn align_up(addr: u64) -> u64 {
    addr.next_multiple_of(TABLE_ALIGN)
}

fn aml_bytes(table: &dyn Aml) -> Vec<u8> {
    let mut bytes = Vec::new();
    table.to_aml_bytes(&mut bytes);
    bytes
}

/// A System I/O register of one byte, as the FADT's reset and sleep
/// registers are (and as `AcpiPm` decodes them).
fn io_port_gas(port: u16) -> GAS {
    GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        u64::from(port),
    )
}

fn fadt_bytes(dsdt_addr: u64) -> Vec<u8> {
    // PWR_BUTTON and SLP_BUTTON set mean "no fixed-feature button": the
    // machine has none, and a hardware-reduced platform has no PM1 block to
    // report presses in anyway.
    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::ResetRegSup)
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton)
        .dsdt_64(dsdt_addr);
    fadt.major_version = FADT_MAJOR_REVISION;
    fadt.fadt_minor_version = FADT_MINOR_REVISION;
    fadt.iapc_boot_arch = IAPC_BOOT_ARCH.into();
    fadt.reset_reg = io_port_gas(layout::ACPI_RESET_PORT);
    fadt.reset_value = layout::ACPI_RESET_VALUE;
    fadt.sleep_control_reg = io_port_gas(layout::ACPI_SLEEP_CONTROL_PORT);
    fadt.sleep_status_reg = io_port_gas(layout::ACPI_SLEEP_STATUS_PORT);
    fadt.hypervisor_vendor_identity = u64::from_le_bytes(HYPERVISOR_VENDOR_ID).into();
    aml_bytes(&fadt.finalize())
}

fn madt_bytes(vcpus: u8) -> Vec<u8> {
    // PCAT_COMPAT stays clear: there is no 8259 to mask, and the
    // hardware-reduced kernel installs its null legacy PIC anyway.
    let mut madt = MADT::new(
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
        LocalInterruptController::Address(layout::APIC_START as u32),
    );
    for id in 0..vcpus {
        madt.add_structure(ProcessorLocalApic::new(id, id, EnabledStatus::Enabled));
    }
    // IOAPIC id 0, as QEMU and Firecracker use: it is what KVM's IOAPIC id
    // register holds after reset, so Linux finds table and chip agreeing and
    // leaves it alone. That it equals CPU 0's APIC id does not matter: ids
    // only had to be disjoint on the pre-xAPIC serial APIC bus, which neither
    // KVM nor x86_64 Linux models.
    madt.add_structure(IoApic::new(0, layout::IOAPIC_START as u32, 0));
    aml_bytes(&madt)
}

fn xsdt_bytes(entries: &[u64]) -> Vec<u8> {
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    for &entry in entries {
        xsdt.add_entry(entry);
    }
    aml_bytes(&xsdt)
}

fn dsdt_bytes(virtio_devices: &[VirtioMmioDevice]) -> Vec<u8> {
    let mut devices = Vec::new();
    serial_aml(&mut devices);
    for (index, dev) in virtio_devices.iter().enumerate() {
        virtio_aml(index, dev, &mut devices);
    }

    let mut body = aml::Scope::raw("\\_SB_".into(), devices);
    // Linux reads SLP_TYPa for power-off from `\_S5`; without it
    // `acpi_sleep_state_supported(S5)` fails and poweroff just halts.
    let s5_type = layout::ACPI_S5_SLEEP_TYPE;
    aml::Name::new(
        "\\_S5_".into(),
        &aml::Package::new(vec![&s5_type, &aml::ZERO, &aml::ZERO, &aml::ZERO]),
    )
    .to_aml_bytes(&mut body);

    // One append: `Sdt`'s per-byte sink re-checksums the whole table on
    // every byte, which is quadratic in the DSDT's size.
    let mut dsdt = Sdt::new(
        *b"DSDT",
        SDT_HEADER_LEN as u32,
        DSDT_REVISION,
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
    );
    dsdt.append_slice(&body);
    dsdt.as_slice().to_vec()
}

/// Appends `Device(name) { _HID, _UID, _CRS }` to `out`.
fn device_aml(name: &str, hid: &dyn Aml, uid: u32, resources: Vec<&dyn Aml>, out: &mut Vec<u8>) {
    let hid = aml::Name::new("_HID".into(), hid);
    let uid = aml::Name::new("_UID".into(), &uid);
    let crs = aml::Name::new("_CRS".into(), &aml::ResourceTemplate::new(resources));
    aml::Device::new(name.into(), vec![&hid, &uid, &crs]).to_aml_bytes(out);
}

/// An edge-triggered, active-high, exclusive interrupt: ISA semantics, and
/// what a virtio-mmio irqfd delivers.
fn edge_interrupt(irq: u32) -> aml::Interrupt {
    aml::Interrupt::new(true, true, false, false, irq)
}

/// A fixed I/O range (`IO(Decode16, port, port, 1, len)`).
fn io_range(port: u16, len: u8) -> aml::IO {
    aml::IO::new(port, port, 1, len)
}

fn serial_aml(out: &mut Vec<u8>) {
    // Linux's 8250 driver also probes COM1 blindly, but declaring it lets
    // `8250_pnp` claim it and keeps its port and IRQ out of the allocators.
    let ports = io_range(layout::SERIAL_PORT, layout::SERIAL_PORT_LEN as u8);
    let irq = edge_interrupt(layout::SERIAL_IRQ);
    device_aml(
        "COM1",
        &aml::EISAName::new("PNP0501"),
        0,
        vec![&ports, &irq],
        out,
    );
}

fn virtio_aml(index: usize, dev: &VirtioMmioDevice, out: &mut Vec<u8>) {
    // `validate` bounded index, base and size, so these conversions hold.
    let name = format!("V{index:03X}");
    let window = aml::Memory32Fixed::new(true, dev.base as u32, dev.size as u32);
    let irq = edge_interrupt(dev.irq);
    device_aml(&name, &"LNRO0005", index as u32, vec![&window, &irq], out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(bytes: &[u8], offset: usize) -> u16 {
        u16::from_le_bytes(bytes[offset..offset + 2].try_into().unwrap())
    }

    fn u32_at(bytes: &[u8], offset: usize) -> u32 {
        u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap())
    }

    fn u64_at(bytes: &[u8], offset: usize) -> u64 {
        u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap())
    }

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b))
    }

    fn count(haystack: &[u8], needle: &[u8]) -> usize {
        haystack
            .windows(needle.len())
            .filter(|w| *w == needle)
            .count()
    }

    fn virtio(n: usize) -> Vec<VirtioMmioDevice> {
        (0..n)
            .map(|i| VirtioMmioDevice {
                base: layout::VIRTIO_MMIO_START + i as u64 * layout::VIRTIO_MMIO_SIZE,
                size: layout::VIRTIO_MMIO_SIZE,
                irq: layout::FIRST_DEVICE_IRQ
                    + (i as u32 % (layout::LAST_DEVICE_IRQ - layout::FIRST_DEVICE_IRQ + 1)),
            })
            .collect()
    }

    fn config(vcpus: u8, devices: usize) -> AcpiConfig {
        AcpiConfig {
            vcpus,
            virtio_devices: virtio(devices),
        }
    }

    /// The table whose signature is `sig`, and its address.
    fn table<'a>(tables: &'a [(u64, Vec<u8>)], sig: &[u8]) -> (u64, &'a [u8]) {
        let mut found = tables.iter().filter(|(_, b)| b.starts_with(sig));
        let (addr, bytes) = found.next().expect("table present");
        assert!(found.next().is_none(), "one table per signature");
        (*addr, bytes)
    }

    /// The table written at `addr`.
    fn at(tables: &[(u64, Vec<u8>)], addr: u64) -> &[u8] {
        &tables.iter().find(|(a, _)| *a == addr).expect("a table").1
    }

    #[test]
    fn checksums_and_lengths_are_right() {
        for (vcpus, devices) in [(1, 0), (4, 3), (MAX_VCPUS, 19)] {
            let tables = build_acpi_tables(&config(vcpus, devices)).unwrap();
            assert_eq!(tables.len(), 5);
            let (rsdp_addr, rsdp) = table(&tables, b"RSD PTR ");
            assert_eq!(rsdp_addr, layout::ACPI_START);
            assert_eq!(rsdp.len(), 36);
            assert_eq!(rsdp[15], 2, "RSDP revision");
            assert_eq!(u32_at(rsdp, 20) as usize, rsdp.len());
            assert_eq!(sum(&rsdp[..20]), 0, "ACPI 1.0 checksum");
            assert_eq!(sum(rsdp), 0, "extended checksum");
            for sig in [b"XSDT", b"FACP", b"APIC", b"DSDT"] {
                let (_, bytes) = table(&tables, sig);
                assert_eq!(u32_at(bytes, 4) as usize, bytes.len(), "{sig:?} length");
                assert_eq!(sum(bytes), 0, "{sig:?} checksum");
                assert_eq!(&bytes[10..16], b"CAPSUL");
                assert_eq!(&bytes[16..24], b"CAPSULE ");
            }
        }
    }

    #[test]
    fn tables_lie_between_acpi_start_and_end_without_overlap() {
        let mut tables = build_acpi_tables(&config(MAX_VCPUS, 19)).unwrap();
        tables.sort_by_key(|(addr, _)| *addr);
        let mut next_free = layout::ACPI_START;
        for (addr, bytes) in &tables {
            assert!(*addr >= next_free);
            next_free = addr + bytes.len() as u64;
        }
        assert!(next_free <= layout::ACPI_END);
    }

    #[test]
    fn rsdp_points_to_xsdt_which_lists_fadt_and_madt() {
        let tables = build_acpi_tables(&config(2, 1)).unwrap();
        let (_, rsdp) = table(&tables, b"RSD PTR ");
        let (xsdt_addr, xsdt) = table(&tables, b"XSDT");
        assert_eq!(u64_at(rsdp, 24), xsdt_addr);
        assert_eq!(u32_at(rsdp, 16), 0, "no RSDT");

        let entries: Vec<u64> = (36..xsdt.len())
            .step_by(8)
            .map(|o| u64_at(xsdt, o))
            .collect();
        let (fadt_addr, _) = table(&tables, b"FACP");
        let (madt_addr, _) = table(&tables, b"APIC");
        assert_eq!(entries, vec![fadt_addr, madt_addr]);
        assert!(at(&tables, fadt_addr).starts_with(b"FACP"));
        assert!(at(&tables, madt_addr).starts_with(b"APIC"));
    }

    #[test]
    fn fadt_is_hardware_reduced_with_reset_and_sleep_registers() {
        let tables = build_acpi_tables(&config(1, 0)).unwrap();
        let (_, fadt) = table(&tables, b"FACP");
        assert_eq!(fadt.len(), 276, "ACPI 6.x FADT");
        assert_eq!(fadt[8], 6, "major revision");
        assert_eq!(fadt[131], 5, "minor revision");

        let flags = u32_at(fadt, 112);
        assert_ne!(flags & (1 << 20), 0, "HW_REDUCED_ACPI");
        assert_ne!(flags & (1 << 10), 0, "RESET_REG_SUP");
        assert_ne!(flags & (1 << 4), 0, "PWR_BUTTON: no fixed power button");
        assert_ne!(flags & (1 << 5), 0, "SLP_BUTTON: no fixed sleep button");

        let boot_arch = u16_at(fadt, 109);
        assert_ne!(boot_arch & (1 << 5), 0, "CMOS RTC not present");
        assert_ne!(boot_arch & (1 << 2), 0, "VGA not present");
        assert_eq!(boot_arch & (1 << 3), 0, "MSI must stay allowed");
        assert_eq!(
            boot_arch & (1 << 1),
            0,
            "no 8042: Linux must not probe a keyboard"
        );

        // GAS: space id, bit width, bit offset, access size, address.
        let io_byte = |port: u16| {
            let mut gas = vec![1, 8, 0, 1];
            gas.extend_from_slice(&u64::from(port).to_le_bytes());
            gas
        };
        assert_eq!(fadt[116..128], io_byte(layout::ACPI_RESET_PORT)[..]);
        assert_eq!(fadt[128], layout::ACPI_RESET_VALUE);
        assert_eq!(fadt[244..256], io_byte(layout::ACPI_SLEEP_CONTROL_PORT)[..]);
        assert_eq!(fadt[256..268], io_byte(layout::ACPI_SLEEP_STATUS_PORT)[..]);
        assert_eq!(&fadt[268..276], b"CAPSULE ");

        let (dsdt_addr, _) = table(&tables, b"DSDT");
        assert_eq!(u64_at(fadt, 140), dsdt_addr, "X_DSDT");
        assert_eq!(u32_at(fadt, 40), 0, "no 32-bit DSDT pointer beside X_DSDT");
        assert_eq!(u32_at(fadt, 36), 0, "no FACS");
        assert_eq!(u64_at(fadt, 132), 0, "no X_FACS");
    }

    #[test]
    fn madt_has_one_local_apic_per_vcpu_and_one_ioapic() {
        for vcpus in [1, 2, 7, MAX_VCPUS] {
            let tables = build_acpi_tables(&config(vcpus, 0)).unwrap();
            let (_, madt) = table(&tables, b"APIC");
            assert_eq!(u32_at(madt, 36), layout::APIC_START as u32);
            let (mut lapics, mut ioapics) = (Vec::new(), Vec::new());
            let mut offset = 44;
            while offset < madt.len() {
                let (kind, len) = (madt[offset], madt[offset + 1] as usize);
                let entry = &madt[offset..offset + len];
                match kind {
                    0 => lapics.push((entry[2], entry[3], u32_at(entry, 4))),
                    1 => ioapics.push((entry[2], u32_at(entry, 4), u32_at(entry, 8))),
                    other => panic!("unexpected MADT entry type {other}"),
                }
                offset += len;
            }
            assert_eq!(offset, madt.len());
            let expected: Vec<_> = (0..vcpus).map(|i| (i, i, 1)).collect();
            assert_eq!(lapics, expected, "uid = apic id = index, enabled");
            assert_eq!(ioapics, vec![(0, 0xfec0_0000, 0)]);
        }
    }

    #[test]
    fn dsdt_declares_s5_legacy_devices_and_each_virtio_device() {
        for devices in [0, 1, 5] {
            let cfg = config(1, devices);
            let tables = build_acpi_tables(&cfg).unwrap();
            let (_, dsdt) = table(&tables, b"DSDT");
            assert_eq!(count(dsdt, b"LNRO0005"), devices);
            // `\_S5_` = Package(4) { ACPI_S5_SLEEP_TYPE (BytePrefix), 0, 0, 0 }.
            let s5 = [b'_', b'S', b'5', b'_', 0x12, 0x07, 0x04, 0x0a];
            let at_s5 = dsdt.windows(s5.len()).position(|w| w == s5).expect("_S5_");
            assert_eq!(
                dsdt[at_s5 + s5.len()..at_s5 + s5.len() + 4],
                [layout::ACPI_S5_SLEEP_TYPE, 0, 0, 0]
            );
            // EISAID("PNP0501") as DWordConst, and no keyboard controller (PNP0303).
            assert_eq!(count(dsdt, &[0x0c, 0x41, 0xd0, 0x05, 0x01]), 1);
            assert_eq!(count(dsdt, &[0x0c, 0x41, 0xd0, 0x03, 0x03]), 0);
            // IO(Decode16, 0x3f8, 0x3f8, 1, 8), then ExtendedIRQ 4.
            let mut com1 = vec![0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08];
            com1.extend_from_slice(&[0x89, 0x06, 0x00, 0x03, 0x01, 4, 0, 0, 0]);
            assert_eq!(count(dsdt, &com1), 1);
            for (index, dev) in cfg.virtio_devices.iter().enumerate() {
                assert_eq!(count(dsdt, format!("V{index:03X}").as_bytes()), 1);
                // Memory32Fixed(ReadWrite, base, size), then an ExtendedIRQ
                // with flags consumer | edge (active high, exclusive).
                let mut crs = vec![0x86, 0x09, 0x00, 0x01];
                crs.extend_from_slice(&(dev.base as u32).to_le_bytes());
                crs.extend_from_slice(&(dev.size as u32).to_le_bytes());
                crs.extend_from_slice(&[0x89, 0x06, 0x00, 0x03, 0x01]);
                crs.extend_from_slice(&dev.irq.to_le_bytes());
                assert_eq!(count(dsdt, &crs), 1, "device {index}'s _CRS");
            }
        }
    }

    #[test]
    fn bad_vcpu_counts_are_errors() {
        for vcpus in [0, 255] {
            let err = build_acpi_tables(&config(vcpus, 0)).unwrap_err();
            assert!(
                matches!(err, AcpiError::VcpuCount(n) if n == vcpus),
                "{err}"
            );
        }
    }

    #[test]
    fn tables_that_do_not_fit_are_an_error() {
        let err = build_acpi_tables(&config(MAX_VCPUS, 3000)).unwrap_err();
        match err {
            AcpiError::TooLarge { needed, available } => {
                assert_eq!(available, layout::ACPI_END - layout::ACPI_START);
                assert!(needed > available);
            }
            other => panic!("expected TooLarge, got {other}"),
        }
        let err = build_acpi_tables(&config(1, MAX_VIRTIO_DEVICES + 1)).unwrap_err();
        assert!(matches!(err, AcpiError::TooManyVirtioDevices(_)), "{err}");
    }

    #[test]
    fn bad_virtio_devices_are_errors() {
        let dev = |base, size, irq| AcpiConfig {
            vcpus: 1,
            virtio_devices: vec![virtio(1)[0], VirtioMmioDevice { base, size, irq }],
        };
        let err = build_acpi_tables(&dev(1 << 32, 0x1000, 5)).unwrap_err();
        assert!(
            matches!(err, AcpiError::VirtioWindow { index: 1, .. }),
            "{err}"
        );
        let err = build_acpi_tables(&dev(0xffff_f000, 0x2000, 5)).unwrap_err();
        assert!(
            matches!(err, AcpiError::VirtioWindow { index: 1, .. }),
            "{err}"
        );
        let err = build_acpi_tables(&dev(u64::MAX, 2, 5)).unwrap_err();
        assert!(
            matches!(err, AcpiError::VirtioWindow { index: 1, .. }),
            "{err}"
        );
        let err = build_acpi_tables(&dev(0, 1 << 32, 5)).unwrap_err();
        assert!(
            matches!(err, AcpiError::VirtioWindow { index: 1, .. }),
            "{err}"
        );
        let err = build_acpi_tables(&dev(0xd000_1000, 0, 5)).unwrap_err();
        assert!(
            matches!(err, AcpiError::VirtioWindow { index: 1, .. }),
            "{err}"
        );
        let err = build_acpi_tables(&dev(0xd000_1000, 0x1000, layout::IOAPIC_PINS)).unwrap_err();
        assert!(
            matches!(err, AcpiError::VirtioIrq { index: 1, irq: 24 }),
            "{err}"
        );
        // The last window that still ends at 4 GiB is fine.
        build_acpi_tables(&dev(0xffff_f000, 0x1000, 23)).unwrap();
    }

    #[test]
    fn create_acpi_tables_writes_guest_memory() {
        let memory = crate::memory::create_guest_memory(2 << 20).unwrap();
        let cfg = config(4, 2);
        let rsdp = create_acpi_tables(&memory, &cfg).unwrap();
        assert_eq!(rsdp, layout::ACPI_START);
        let mut signature = [0u8; 8];
        memory
            .read_slice(&mut signature, GuestAddress(rsdp))
            .unwrap();
        assert_eq!(&signature, b"RSD PTR ");
        for (addr, bytes) in build_acpi_tables(&cfg).unwrap() {
            let mut written = vec![0u8; bytes.len()];
            memory.read_slice(&mut written, GuestAddress(addr)).unwrap();
            assert_eq!(written, bytes, "table at {addr:#x}");
        }
    }

    #[test]
    fn create_acpi_tables_reports_memory_that_is_too_small() {
        // RAM ends where the ACPI area begins.
        let memory = crate::memory::create_guest_memory(layout::ACPI_START as usize).unwrap();
        let err = create_acpi_tables(&memory, &config(MAX_VCPUS, 10)).unwrap_err();
        assert!(matches!(err, AcpiError::GuestWrite { .. }), "{err}");
    }
}
