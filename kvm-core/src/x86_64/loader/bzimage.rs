//! The Linux boot protocol (`Documentation/arch/x86/boot.rst`): a bzImage
//! loaded by linux-loader, entered at its 64-bit entry, and the zero page
//! (`struct boot_params`) with the command line, the initramfs, the e820
//! map and the RSDP address (protocol 2.14+, so the kernel needs no BIOS
//! scan to find ACPI).

use std::fs::File;
use std::path::Path;

use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::boot_params;
use linux_loader::loader::{KernelLoader, bzimage::BzImage};
use vm_memory::GuestAddress;

use super::cmdline::write_cmdline;
use super::e820::e820_map;
use super::entry::KernelEntry;
use super::initrd::{InitrdPart, load_initrd};
use crate::memory::GuestMemory;
use crate::x86_64::layout::{CMDLINE_START, HIMEM_START, ZERO_PAGE_START};
use crate::{Error, Result};

/// The bzImage's 64-bit entry point is this far into the protected-mode kernel.
const STARTUP_64_OFFSET: u64 = 0x200;
const BOOT_FLAG_MAGIC: u16 = 0xaa55;
const HEADER_MAGIC: u32 = 0x5372_6448; // "HdrS"
/// `type_of_loader`: "undefined" boot loader; the kernel asks for nothing more.
const LOADER_TYPE_OTHER: u8 = 0xff;
/// `xloadflags` bit: the kernel has a 64-bit entry point at +0x200.
const XLF_KERNEL_64: u16 = 1;

/// Loads the bzImage `kernel` (open as `image`), the initramfs and the
/// command line into `memory`, and writes the zero page; `rsdp` is the ACPI
/// root pointer.
pub(super) fn load(
    memory: &GuestMemory,
    kernel: &Path,
    image: &mut File,
    initrd: &[InitrdPart],
    cmdline: &str,
    rsdp: u64,
) -> Result<KernelEntry> {
    let loaded =
        BzImage::load(memory, None, image, Some(GuestAddress(HIMEM_START))).map_err(|source| {
            Error::Kernel {
                path: kernel.to_path_buf(),
                source,
            }
        })?;
    let mut header = loaded.setup_header.ok_or_else(|| Error::KernelFormat {
        path: kernel.to_path_buf(),
        reason: "it has no bzImage setup header".into(),
    })?;
    if header.xloadflags & XLF_KERNEL_64 == 0 {
        return Err(Error::KernelFormat {
            path: kernel.to_path_buf(),
            reason: "it has no 64-bit entry point (boot protocol 2.12+ with XLF_KERNEL_64)".into(),
        });
    }

    write_cmdline(memory, cmdline, u64::from(header.cmdline_size))?;

    // The kernel decompresses itself in place and needs `init_size` bytes from
    // its load address; the initramfs goes as high as possible above that.
    let kernel_end = loaded.kernel_load.0 + u64::from(header.init_size).max(loaded.kernel_end);
    let (initrd_start, initrd_size) = load_initrd(
        memory,
        initrd,
        kernel_end,
        u64::from(header.initrd_addr_max),
    )?;

    header.type_of_loader = LOADER_TYPE_OTHER;
    header.boot_flag = BOOT_FLAG_MAGIC;
    header.header = HEADER_MAGIC;
    header.cmd_line_ptr = CMDLINE_START as u32;
    header.ramdisk_image = initrd_start as u32;
    header.ramdisk_size = initrd_size as u32;

    let mut params = boot_params {
        hdr: header,
        acpi_rsdp_addr: rsdp,
        ..Default::default()
    };
    let e820 = e820_map(memory);
    if e820.len() > params.e820_table.len() {
        return Err(Error::E820Full(e820.len()));
    }
    for (slot, entry) in params.e820_table.iter_mut().zip(&e820) {
        *slot = *entry;
    }
    params.e820_entries = e820.len() as u8;
    LinuxBootConfigurator::write_bootparams::<GuestMemory>(
        &BootParams::new::<boot_params>(&params, GuestAddress(ZERO_PAGE_START)),
        memory,
    )
    .map_err(Error::BootParams)?;

    Ok(KernelEntry::Linux64 {
        entry: loaded.kernel_load.0 + STARTUP_64_OFFSET,
        boot_params: ZERO_PAGE_START,
    })
}
