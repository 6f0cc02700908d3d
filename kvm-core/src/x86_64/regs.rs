//! A vCPU's architectural state at boot: GDT, identity page tables, long
//! mode or 32-bit protected mode, general registers, FPU, the MSRs Linux
//! expects a boot loader to have cleared, and the local APIC's LINT pins.
//!
//! Values follow the Linux 64-bit boot protocol (`Documentation/arch/x86/boot.rst`):
//! flat 4 GiB segments, paging on with an identity map covering the kernel,
//! the zero page and the command line, interrupts off, `rsi` = zero page.
//! Or the PVH boot ABI (Xen's `docs/misc/pvh.pandoc`): flat 32-bit
//! segments, paging off, `ebx` = `hvm_start_info`.

use kvm_bindings::{Msrs, kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs};
use kvm_ioctls::VcpuFd;

use super::layout::{
    BOOT_GDT_START, BOOT_IDT_START, BOOT_STACK_POINTER, PDE_START, PDPTE_START, PML4_START,
};
use crate::memory::{self, GuestMemory};
use crate::{Error, Result};

const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// Page-table entry bits: present, writable; `PS` makes a PD entry a 2 MiB page.
const PTE_PRESENT_RW: u64 = 0x3;
const PTE_PAGE_SIZE: u64 = 0x80;
/// Page directories in the identity map: 4 x 512 x 2 MiB = the first 4 GiB.
const PAGE_DIRECTORIES: u64 = 4;

/// GDT slots. Linux reloads its own GDT early; these only have to be valid
/// for the first instructions of `startup_64` or `pvh_start_xen` (or a test guest).
const GDT_CODE: usize = 1;
const GDT_DATA: usize = 2;
const GDT_TSS: usize = 3;

/// The boot GDT for the 64-bit entry.
const LONG_MODE_GDT: [u64; 4] = [
    gdt_entry(0, 0, 0),            // null
    gdt_entry(0xa09b, 0, 0xfffff), // 64-bit code, execute/read, accessed
    gdt_entry(0xc093, 0, 0xfffff), // 32-bit data, read/write, accessed
    gdt_entry(0x808b, 0, 0xfffff), // 32-bit TSS, busy
];

/// The boot GDT for the PVH entry: the same slots, but the code is 32-bit
/// and the TSS is the 0x67-byte one the PVH ABI specifies.
const PROTECTED_MODE_GDT: [u64; 4] = [
    gdt_entry(0, 0, 0),            // null
    gdt_entry(0xc09b, 0, 0xfffff), // 32-bit code, execute/read, accessed
    gdt_entry(0xc093, 0, 0xfffff), // 32-bit data, read/write, accessed
    gdt_entry(0x008b, 0, 0x67),    // 32-bit TSS, busy
];

/// The segments of the boot GDT, as KVM wants them described.
struct Segments {
    code: kvm_segment,
    data: kvm_segment,
    tss: kvm_segment,
}

/// Encodes a GDT descriptor from `flags` (access byte and granularity nibble
/// as the usual 16-bit `0xGFAA` shorthand), base and limit.
const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << 32)
        | ((flags as u64 & 0xf0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << 32)
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
}

/// The KVM view of GDT slot `index` holding `entry`.
fn segment(index: usize, entry: u64) -> kvm_segment {
    let bit = |shift: u32| ((entry >> shift) & 1) as u8;
    let base = ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000);
    let raw_limit = ((entry & 0xffff) | ((entry >> 32) & 0x000f_0000)) as u32;
    let granular = bit(55);
    kvm_segment {
        base,
        // With 4 KiB granularity the limit counts pages: the last byte is limit * 4096 + 4095.
        limit: if granular == 1 {
            (raw_limit << 12) | 0xfff
        } else {
            raw_limit
        },
        selector: (index * 8) as u16,
        type_: ((entry >> 40) & 0xf) as u8,
        present: bit(47),
        dpl: ((entry >> 45) & 0x3) as u8,
        db: bit(54),
        s: bit(44),
        l: bit(53),
        g: granular,
        avl: bit(52),
        unusable: u8::from(bit(47) == 0),
        padding: 0,
    }
}

/// Writes `gdt` as the boot GDT and an empty IDT into guest memory.
fn write_gdt(memory: &GuestMemory, gdt: &[u64; 4]) -> Result<Segments> {
    let bytes: Vec<u8> = gdt.iter().flat_map(|entry| entry.to_le_bytes()).collect();
    memory::write_bytes(memory, BOOT_GDT_START, &bytes)?;
    memory::write_bytes(memory, BOOT_IDT_START, &0u64.to_le_bytes())?;
    Ok(Segments {
        code: segment(GDT_CODE, gdt[GDT_CODE]),
        data: segment(GDT_DATA, gdt[GDT_DATA]),
        tss: segment(GDT_TSS, gdt[GDT_TSS]),
    })
}

/// Points `sregs` at the boot GDT and IDT and loads every segment register
/// from `segments`; control registers are the caller's.
fn load_segments(sregs: &mut kvm_sregs, segments: &Segments) {
    sregs.gdt.base = BOOT_GDT_START;
    sregs.gdt.limit = (4 * 8 - 1) as u16;
    sregs.idt.base = BOOT_IDT_START;
    sregs.idt.limit = 7;
    sregs.cs = segments.code;
    sregs.ds = segments.data;
    sregs.es = segments.data;
    sregs.fs = segments.data;
    sregs.gs = segments.data;
    sregs.ss = segments.data;
    sregs.tr = segments.tss;
}

/// Writes identity-mapping page tables for the first 4 GiB with 2 MiB pages.
fn write_page_tables(memory: &GuestMemory) -> Result<()> {
    memory::write_bytes(
        memory,
        PML4_START,
        &(PDPTE_START | PTE_PRESENT_RW).to_le_bytes(),
    )?;
    let pdpt: Vec<u8> = (0..PAGE_DIRECTORIES)
        .flat_map(|i| ((PDE_START + i * 0x1000) | PTE_PRESENT_RW).to_le_bytes())
        .collect();
    memory::write_bytes(memory, PDPTE_START, &pdpt)?;
    let pd: Vec<u8> = (0..PAGE_DIRECTORIES * 512)
        .flat_map(|i| ((i << 21) | PTE_PRESENT_RW | PTE_PAGE_SIZE).to_le_bytes())
        .collect();
    memory::write_bytes(memory, PDE_START, &pd)
}

fn ioctl(ioctl: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |source| Error::Ioctl { ioctl, source }
}

/// Puts `vcpu` in 64-bit long mode with the boot GDT and identity page
/// tables (written into `memory`), at `entry` with `rsi` = `boot_info`
/// (the zero page for Linux) and interrupts off.
pub fn setup_long_mode(
    vcpu: &VcpuFd,
    memory: &GuestMemory,
    entry: u64,
    boot_info: u64,
) -> Result<()> {
    let segments = write_gdt(memory, &LONG_MODE_GDT)?;
    write_page_tables(memory)?;
    let mut sregs: kvm_sregs = vcpu.get_sregs().map_err(ioctl("KVM_GET_SREGS"))?;
    load_segments(&mut sregs, &segments);
    sregs.cr0 = CR0_PE | CR0_ET | CR0_PG;
    sregs.cr3 = PML4_START;
    sregs.cr4 = CR4_PAE;
    sregs.efer = EFER_LME | EFER_LMA;
    vcpu.set_sregs(&sregs).map_err(ioctl("KVM_SET_SREGS"))?;
    let regs = kvm_regs {
        rsi: boot_info,
        ..entry_regs(entry)
    };
    vcpu.set_regs(&regs).map_err(ioctl("KVM_SET_REGS"))
}

/// Puts `vcpu` in 32-bit protected mode with paging off and the boot GDT
/// (written into `memory`), at `entry` with `rbx` = `start_info` (the PVH
/// `hvm_start_info`) and interrupts off, as the PVH boot ABI specifies.
pub fn setup_protected_mode(
    vcpu: &VcpuFd,
    memory: &GuestMemory,
    entry: u64,
    start_info: u64,
) -> Result<()> {
    let segments = write_gdt(memory, &PROTECTED_MODE_GDT)?;
    let mut sregs: kvm_sregs = vcpu.get_sregs().map_err(ioctl("KVM_GET_SREGS"))?;
    load_segments(&mut sregs, &segments);
    sregs.cr0 = CR0_PE | CR0_ET;
    sregs.cr3 = 0;
    sregs.cr4 = 0;
    sregs.efer = 0;
    vcpu.set_sregs(&sregs).map_err(ioctl("KVM_SET_SREGS"))?;
    let regs = kvm_regs {
        rbx: start_info,
        ..entry_regs(entry)
    };
    vcpu.set_regs(&regs).map_err(ioctl("KVM_SET_REGS"))
}

/// The general registers both boot protocols start from: at `entry`, on the boot stack,
/// interrupts off.
fn entry_regs(entry: u64) -> kvm_regs {
    kvm_regs {
        rflags: 0x2,
        rip: entry,
        rsp: BOOT_STACK_POINTER,
        rbp: BOOT_STACK_POINTER,
        ..Default::default()
    }
}

/// The x87 and SSE control words of a freshly reset CPU (all exceptions masked).
pub fn setup_fpu(vcpu: &VcpuFd) -> Result<()> {
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(ioctl("KVM_SET_FPU"))
}

/// MSR numbers set at boot (Intel SDM vol. 4).
mod msr {
    pub const IA32_SYSENTER_CS: u32 = 0x174;
    pub const IA32_SYSENTER_ESP: u32 = 0x175;
    pub const IA32_SYSENTER_EIP: u32 = 0x176;
    pub const IA32_TSC: u32 = 0x10;
    pub const IA32_MISC_ENABLE: u32 = 0x1a0;
    pub const MTRR_DEF_TYPE: u32 = 0x2ff;
    pub const STAR: u32 = 0xc000_0081;
    pub const LSTAR: u32 = 0xc000_0082;
    pub const CSTAR: u32 = 0xc000_0083;
    pub const SYSCALL_MASK: u32 = 0xc000_0084;
    pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
}

/// `IA32_MISC_ENABLE.FAST_STRING`: `rep movs/stos` may use fast strings.
const MISC_ENABLE_FAST_STRING: u64 = 1;
/// `MTRRdefType`: MTRRs enabled, default type write-back (6), so guest RAM is cacheable.
const MTRR_ENABLE_WRITE_BACK: u64 = (1 << 11) | 6;

/// Clears the syscall and sysenter MSRs and the TSC, enables fast strings and
/// write-back MTRRs, as firmware would have before handing over to Linux.
pub fn setup_msrs(vcpu: &VcpuFd) -> Result<()> {
    let entries: Vec<kvm_msr_entry> = [
        (msr::IA32_SYSENTER_CS, 0),
        (msr::IA32_SYSENTER_ESP, 0),
        (msr::IA32_SYSENTER_EIP, 0),
        (msr::STAR, 0),
        (msr::CSTAR, 0),
        (msr::KERNEL_GS_BASE, 0),
        (msr::SYSCALL_MASK, 0),
        (msr::LSTAR, 0),
        (msr::IA32_TSC, 0),
        (msr::IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        (msr::MTRR_DEF_TYPE, MTRR_ENABLE_WRITE_BACK),
    ]
    .into_iter()
    .map(|(index, data)| kvm_msr_entry {
        index,
        data,
        ..Default::default()
    })
    .collect();
    let msrs = Msrs::from_entries(&entries).map_err(|_| Error::MsrCount(entries.len()))?;
    let written = vcpu.set_msrs(&msrs).map_err(ioctl("KVM_SET_MSRS"))?;
    if written != entries.len() {
        // KVM stops at the first MSR it refuses and returns how many it took.
        return Err(Error::MsrRefused(entries[written].index));
    }
    Ok(())
}

/// Local APIC register offsets and the delivery modes the LINT pins get.
const APIC_LVT_LINT0: usize = 0x350;
const APIC_LVT_LINT1: usize = 0x360;
const APIC_MODE_EXTINT: u32 = 0x7;
const APIC_MODE_NMI: u32 = 0x4;

/// Wires LINT0 as ExtINT and LINT1 as NMI, as a PC's firmware leaves them
/// (virtual wire mode); Linux checks this before taking over the APIC.
pub fn setup_lapic(vcpu: &VcpuFd) -> Result<()> {
    let mut lapic = vcpu.get_lapic().map_err(ioctl("KVM_GET_LAPIC"))?;
    for (register, mode) in [
        (APIC_LVT_LINT0, APIC_MODE_EXTINT),
        (APIC_LVT_LINT1, APIC_MODE_NMI),
    ] {
        // The register file is `c_char`s; a LVT register is a little-endian u32.
        let bytes = &mut lapic.regs[register..register + 4];
        let mut value = [0u8; 4];
        for (out, byte) in value.iter_mut().zip(bytes.iter()) {
            *out = *byte as u8;
        }
        let value = (u32::from_le_bytes(value) & !0x700) | (mode << 8);
        for (byte, new) in bytes.iter_mut().zip(value.to_le_bytes()) {
            *byte = new as libc::c_char;
        }
    }
    vcpu.set_lapic(&lapic).map_err(ioctl("KVM_SET_LAPIC"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdt_entries_decode_to_the_segments_linux_expects() {
        let code = segment(GDT_CODE, LONG_MODE_GDT[GDT_CODE]);
        assert_eq!(
            (code.selector, code.type_, code.l, code.db),
            (0x8, 0xb, 1, 0)
        );
        assert_eq!((code.present, code.s, code.g, code.dpl), (1, 1, 1, 0));
        assert_eq!(code.limit, 0xffff_ffff);
        let data = segment(GDT_DATA, LONG_MODE_GDT[GDT_DATA]);
        assert_eq!(
            (data.selector, data.type_, data.l, data.db),
            (0x10, 0x3, 0, 1)
        );
        let tss = segment(GDT_TSS, LONG_MODE_GDT[GDT_TSS]);
        assert_eq!((tss.selector, tss.type_, tss.s), (0x18, 0xb, 0));
        assert_eq!(segment(0, 0).unusable, 1);
    }

    #[test]
    fn the_pvh_gdt_has_flat_32_bit_segments_and_a_small_tss() {
        let code = segment(GDT_CODE, PROTECTED_MODE_GDT[GDT_CODE]);
        assert_eq!(
            (code.selector, code.type_, code.l, code.db, code.g),
            (0x8, 0xb, 0, 1, 1)
        );
        assert_eq!((code.base, code.limit, code.present), (0, 0xffff_ffff, 1));
        let data = segment(GDT_DATA, PROTECTED_MODE_GDT[GDT_DATA]);
        assert_eq!((data.type_, data.db, data.limit), (0x3, 1, 0xffff_ffff));
        let tss = segment(GDT_TSS, PROTECTED_MODE_GDT[GDT_TSS]);
        assert_eq!(
            (tss.type_, tss.s, tss.g, tss.limit, tss.present),
            (0xb, 0, 0, 0x67, 1)
        );
    }

    #[test]
    fn page_tables_identity_map_four_gib() {
        let memory = memory::create_guest_memory(1 << 20).expect("1 MiB");
        write_page_tables(&memory).expect("tables fit");
        let read = |addr: u64| {
            let mut bytes = [0u8; 8];
            vm_memory::Bytes::read_slice(&memory, &mut bytes, vm_memory::GuestAddress(addr))
                .expect("read");
            u64::from_le_bytes(bytes)
        };
        assert_eq!(read(PML4_START), PDPTE_START | 3);
        assert_eq!(read(PDPTE_START + 3 * 8), (PDE_START + 0x3000) | 3);
        // The last 2 MiB page of the map: 4 GiB - 2 MiB.
        assert_eq!(read(PDE_START + (4 * 512 - 1) * 8), 0xffe0_0000 | 0x83);
    }
}
