//! The PVH boot protocol: an ELF vmlinux, entered at the 32-bit entry its
//! `XEN_ELFNOTE_PHYS32_ENTRY` note names, with paging off and `ebx` pointing
//! at an `hvm_start_info` (Xen's structure, which Linux built with
//! `CONFIG_PVH` accepts on any hypervisor). The kernel is not compressed, so
//! neither the bzImage's decompressor nor its setup code run.
//!
//! The start info, the memory map and the module list live in the free page
//! below the zero page; the command line, the initramfs and the memory map
//! are the ones the bzImage path writes (`cmdline.rs`, `initrd.rs`,
//! `e820.rs`).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::mem::size_of;
use std::path::Path;

use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::elf::{Elf64_Ehdr, Elf64_Phdr, PT_LOAD};
use linux_loader::loader::KernelLoader;
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use vm_memory::{ByteValued, GuestAddress};

use super::cmdline::write_cmdline;
use super::e820::e820_map;
use super::entry::KernelEntry;
use super::initrd::{InitrdPart, load_initrd};
use crate::memory::GuestMemory;
use crate::x86_64::layout::{
    BOOT_IDT_START, CMDLINE_START, HIMEM_START, MMIO_HOLE_START, PVH_START_INFO_START,
    ZERO_PAGE_START,
};
use crate::{Error, Result};

/// The `hvm_start_info`.
const START_INFO_START: u64 = PVH_START_INFO_START;
/// The memory map (`hvm_memmap_table_entry`s), right after the start info.
const MEMMAP_START: u64 = START_INFO_START + 0x40;
/// Room for this many memory map entries: far more than the four the
/// machine's RAM layout makes.
const MEMMAP_MAX_ENTRIES: usize = 64;
/// The module list (`hvm_modlist_entry`s): the initramfs is the only module.
const MODLIST_START: u64 = MEMMAP_START + (MEMMAP_MAX_ENTRIES * MEMMAP_ENTRY_SIZE) as u64;

const MEMMAP_ENTRY_SIZE: usize = size_of::<hvm_memmap_table_entry>();

// The three tables sit back to back between the boot IDT and the zero page.
const _: () = assert!(START_INFO_START >= BOOT_IDT_START + 8);
const _: () = assert!(START_INFO_START + size_of::<hvm_start_info>() as u64 <= MEMMAP_START);
const _: () = assert!(MODLIST_START + size_of::<hvm_modlist_entry>() as u64 <= ZERO_PAGE_START);

/// `hvm_start_info.magic`.
const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;
/// Version 1 of the start info carries `rsdp_paddr`, so the kernel needs no
/// BIOS scan to find ACPI.
const START_INFO_VERSION: u32 = 1;
/// x86 Linux's `COMMAND_LINE_SIZE`: there is no setup header to tell it.
const COMMAND_LINE_SIZE: u64 = 2048;

/// Loads the ELF vmlinux `kernel` (open as `image`), the initramfs and the
/// command line into `memory`, and writes the PVH start info; `rsdp` is the
/// ACPI root pointer.
pub(super) fn load(
    memory: &GuestMemory,
    kernel: &Path,
    image: &mut File,
    initrd: &[InitrdPart],
    cmdline: &str,
    rsdp: u64,
) -> Result<KernelEntry> {
    // No load offset: with one, linux-loader ignores the PVH note.
    let loaded =
        Elf::load(memory, None, image, Some(GuestAddress(HIMEM_START))).map_err(|source| {
            Error::Kernel {
                path: kernel.to_path_buf(),
                source,
            }
        })?;
    let PvhBootCapability::PvhEntryPresent(entry) = loaded.pvh_boot_cap else {
        return Err(Error::KernelFormat {
            path: kernel.to_path_buf(),
            reason: "it is an ELF without a PVH entry point (no XEN_ELFNOTE_PHYS32_ENTRY note): \
                     boot its bzImage, or a vmlinux built with CONFIG_PVH=y"
                .into(),
        });
    };
    check_segments(kernel, image)?;
    write_cmdline(memory, cmdline, COMMAND_LINE_SIZE)?;
    // The start info's module addresses are 64-bit, but Linux copies the
    // first module into the zero page's 32-bit `ramdisk_image`.
    let initrd = load_initrd(memory, initrd, loaded.kernel_end, MMIO_HOLE_START - 1)?;
    write_start_info(memory, rsdp, initrd)?;
    Ok(KernelEntry::Pvh {
        entry: entry.0,
        start_info: START_INFO_START,
    })
}

/// Refuses an ELF with a segment below 1 MiB: linux-loader puts segments
/// where they ask to be, and there they would overwrite the ACPI tables
/// and the boot structures. The loader has validated the header already.
fn check_segments(kernel: &Path, image: &mut File) -> Result<()> {
    let read_error = Error::file("kernel", kernel);
    let mut header = Elf64_Ehdr::default();
    image.rewind().map_err(&read_error)?;
    image
        .read_exact(header.as_mut_slice())
        .map_err(&read_error)?;
    image
        .seek(SeekFrom::Start(header.e_phoff))
        .map_err(&read_error)?;
    for _ in 0..header.e_phnum {
        let mut segment = Elf64_Phdr::default();
        image
            .read_exact(segment.as_mut_slice())
            .map_err(&read_error)?;
        if segment.p_type == PT_LOAD && segment.p_filesz != 0 && segment.p_paddr < HIMEM_START {
            return Err(Error::KernelFormat {
                path: kernel.to_path_buf(),
                reason: format!(
                    "a segment loads at {:#x}, below {HIMEM_START:#x} where the kernel must be",
                    segment.p_paddr
                ),
            });
        }
    }
    Ok(())
}

/// Writes the start info at [`START_INFO_START`]: the command line at
/// [`CMDLINE_START`], the RSDP, the e820 memory map, and the initramfs
/// (`(start, size)`, size 0 for none) as the one module.
fn write_start_info(memory: &GuestMemory, rsdp: u64, initrd: (u64, u64)) -> Result<()> {
    let memmap: Vec<hvm_memmap_table_entry> = e820_map(memory)
        .iter()
        .map(|entry| hvm_memmap_table_entry {
            addr: entry.addr,
            size: entry.size,
            type_: entry.r#type,
            reserved: 0,
        })
        .collect();
    if memmap.len() > MEMMAP_MAX_ENTRIES {
        return Err(Error::PvhMemmapFull(memmap.len()));
    }
    let (initrd_start, initrd_size) = initrd;
    let modules: Vec<hvm_modlist_entry> = if initrd_size == 0 {
        Vec::new()
    } else {
        vec![hvm_modlist_entry {
            paddr: initrd_start,
            size: initrd_size,
            ..Default::default()
        }]
    };
    let start_info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC,
        version: START_INFO_VERSION,
        nr_modules: modules.len() as u32,
        modlist_paddr: if modules.is_empty() { 0 } else { MODLIST_START },
        cmdline_paddr: CMDLINE_START,
        rsdp_paddr: rsdp,
        memmap_paddr: MEMMAP_START,
        memmap_entries: memmap.len() as u32,
        ..Default::default()
    };
    let mut params = BootParams::new(&start_info, GuestAddress(START_INFO_START));
    params.set_sections(&memmap, GuestAddress(MEMMAP_START));
    if !modules.is_empty() {
        params.set_modules(&modules, GuestAddress(MODLIST_START));
    }
    PvhBootConfigurator::write_bootparams::<GuestMemory>(&params, memory).map_err(Error::StartInfo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::create_guest_memory;
    use vm_memory::Bytes;

    fn read<T: ByteValued>(memory: &GuestMemory, addr: u64) -> T {
        memory.read_obj(GuestAddress(addr)).expect("read")
    }

    #[test]
    fn the_start_info_points_at_the_map_the_module_and_the_command_line() {
        let memory = create_guest_memory(64 << 20).expect("map");
        write_start_info(&memory, 0xe0000, (0x300_0000, 5000)).expect("write");
        let info: hvm_start_info = read(&memory, START_INFO_START);
        assert_eq!((info.magic, info.version), (0x336e_c578, 1));
        assert_eq!((info.cmdline_paddr, info.rsdp_paddr), (0x20000, 0xe0000));
        assert_eq!((info.nr_modules, info.modlist_paddr), (1, MODLIST_START));
        let module: hvm_modlist_entry = read(&memory, MODLIST_START);
        assert_eq!((module.paddr, module.size), (0x300_0000, 5000));
        assert_eq!(info.memmap_paddr, MEMMAP_START);
        let map: Vec<(u64, u64, u32)> = (0..u64::from(info.memmap_entries))
            .map(|i| read::<hvm_memmap_table_entry>(&memory, MEMMAP_START + i * 24))
            .map(|e| (e.addr, e.size, e.type_))
            .collect();
        let e820: Vec<(u64, u64, u32)> = e820_map(&memory)
            .iter()
            .map(|e| (e.addr, e.size, e.r#type))
            .collect();
        assert_eq!(map, e820);
    }

    #[test]
    fn without_an_initramfs_there_is_no_module() {
        let memory = create_guest_memory(16 << 20).expect("map");
        write_start_info(&memory, 0xe0000, (0, 0)).expect("write");
        let info: hvm_start_info = read(&memory, START_INFO_START);
        assert_eq!((info.nr_modules, info.modlist_paddr), (0, 0));
    }
}
