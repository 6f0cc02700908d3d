//! Loading Linux: the bzImage through linux-loader, the initramfs, the
//! command line, and the zero page (`struct boot_params`) with the e820 map
//! and the RSDP address (boot protocol 2.14+, so the kernel needs no BIOS
//! scan to find ACPI). An ELF vmlinux goes through [`crate::x86_64::pvh`] instead,
//! sharing the command line, the initramfs placement and the memory map.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::{KernelLoader, bzimage::BzImage};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use super::layout::{CMDLINE_START, EBDA_START, HIMEM_START, MMIO_HOLE_END, ZERO_PAGE_START};
use crate::memory::{GuestMemory, PAGE_SIZE};
use crate::{Error, Result};

/// The bzImage's 64-bit entry point is this far into the protected-mode kernel.
const STARTUP_64_OFFSET: u64 = 0x200;
const BOOT_FLAG_MAGIC: u16 = 0xaa55;
const HEADER_MAGIC: u32 = 0x5372_6448; // "HdrS"
/// `type_of_loader`: "undefined" boot loader; the kernel asks for nothing more.
const LOADER_TYPE_OTHER: u8 = 0xff;
/// `xloadflags` bit: the kernel has a 64-bit entry point at +0x200.
const XLF_KERNEL_64: u16 = 1;
const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;

/// One piece of the initramfs: archives are concatenated, as the kernel accepts.
#[derive(Debug, Clone)]
pub enum InitrdPart {
    /// A file read straight into guest memory (the cached base archive).
    File(PathBuf),
    /// Bytes built for this launch.
    Bytes(Vec<u8>),
}

impl InitrdPart {
    fn len(&self) -> Result<u64> {
        match self {
            InitrdPart::File(path) => {
                std::fs::metadata(path)
                    .map(|m| m.len())
                    .map_err(|source| Error::File {
                        what: "initrd",
                        path: path.clone(),
                        source,
                    })
            }
            InitrdPart::Bytes(bytes) => Ok(bytes.len() as u64),
        }
    }
}

/// How the boot vCPU enters the kernel that was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelEntry {
    /// A bzImage: its 64-bit entry (`startup_64`) in long mode, paging on
    /// ([`super::regs::setup_long_mode`]).
    Linux64 {
        /// The entry point.
        entry: u64,
        /// The zero page, passed to the kernel in `rsi`.
        boot_params: u64,
    },
    /// An ELF vmlinux: its PVH entry in 32-bit protected mode, paging off
    /// ([`super::regs::setup_protected_mode`]).
    Pvh {
        /// The entry point its `XEN_ELFNOTE_PHYS32_ENTRY` note names.
        entry: u64,
        /// The `hvm_start_info`, passed to the kernel in `rbx`.
        start_info: u64,
    },
}

fn open(what: &'static str, path: &Path) -> Result<File> {
    File::open(path).map_err(|source| Error::File {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Loads the kernel at `kernel` (a bzImage, or an ELF vmlinux with a PVH
/// entry), the initramfs `initrd` and `cmdline` into `memory`, and writes
/// the zero page or the PVH start info; `rsdp` is the ACPI root pointer.
pub fn load_linux(
    memory: &GuestMemory,
    kernel: &Path,
    initrd: &[InitrdPart],
    cmdline: &str,
    rsdp: u64,
) -> Result<KernelEntry> {
    let mut image = open("kernel", kernel)?;
    let mut magic = [0u8; 4];
    match image.read_exact(&mut magic) {
        Ok(()) => {}
        // Too short to be an ELF: BzImage names what is wrong with it.
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => {}
        Err(source) => {
            return Err(Error::File {
                what: "kernel",
                path: kernel.to_path_buf(),
                source,
            });
        }
    }
    if magic == *b"\x7fELF" {
        return super::pvh::load_elf(memory, kernel, &mut image, initrd, cmdline, rsdp);
    }
    load_bzimage(memory, kernel, &mut image, initrd, cmdline, rsdp)
}

fn load_bzimage(
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
    .map_err(|source| Error::BootParams(source.to_string()))?;

    Ok(KernelEntry::Linux64 {
        entry: loaded.kernel_load.0 + STARTUP_64_OFFSET,
        boot_params: ZERO_PAGE_START,
    })
}

/// Writes `cmdline`, NUL-terminated, at [`CMDLINE_START`]; with its NUL it
/// must fit the kernel's `cmdline_size`.
pub(super) fn write_cmdline(memory: &GuestMemory, cmdline: &str, cmdline_size: u64) -> Result<()> {
    if cmdline.len() as u64 >= cmdline_size || cmdline.contains('\0') {
        return Err(Error::Cmdline {
            len: cmdline.len(),
            max: cmdline_size.saturating_sub(1),
        });
    }
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    crate::memory::write_bytes(memory, CMDLINE_START, &bytes)
}

/// Copies the initramfs parts back to back into the top of low RAM; returns
/// its start and size. It must stay below the kernel's `initrd_addr_max`
/// and above `kernel_end`.
pub(super) fn load_initrd(
    memory: &GuestMemory,
    parts: &[InitrdPart],
    kernel_end: u64,
    initrd_addr_max: u64,
) -> Result<(u64, u64)> {
    let mut size = 0;
    for part in parts {
        size += part.len()?;
    }
    if size == 0 {
        return Ok((0, 0));
    }
    let low_ram_end = memory
        .iter()
        .map(|region| region.start_addr().0 + region.len())
        .filter(|end| *end <= MMIO_HOLE_END)
        .max()
        .unwrap_or(0);
    let top = low_ram_end.min(initrd_addr_max.saturating_add(1));
    let start = top.saturating_sub(size) & !(PAGE_SIZE as u64 - 1);
    if start < kernel_end || top < size {
        return Err(Error::InitrdTooLarge {
            size,
            room: top.saturating_sub(kernel_end),
        });
    }
    let mut at = start;
    for part in parts {
        match part {
            InitrdPart::File(path) => {
                let len = part.len()?;
                let mut file = open("initrd", path)?;
                memory
                    .read_exact_volatile_from(GuestAddress(at), &mut file, len as usize)
                    .map_err(|source| Error::GuestWrite {
                        addr: at,
                        len: len as usize,
                        source,
                    })?;
                // A file that grew after we measured it would overlap the next part.
                if file.read(&mut [0u8; 1]).map_err(|source| Error::File {
                    what: "initrd",
                    path: path.clone(),
                    source,
                })? != 0
                {
                    return Err(Error::InitrdChanged(path.clone()));
                }
                at += len;
            }
            InitrdPart::Bytes(bytes) => {
                crate::memory::write_bytes(memory, at, bytes)?;
                at += bytes.len() as u64;
            }
        }
    }
    Ok((start, size))
}

/// The e820 map: RAM below the EBDA, the reserved BIOS area (where the
/// ACPI tables are), then every RAM region from 1 MiB up.
pub(super) fn e820_map(memory: &GuestMemory) -> Vec<boot_e820_entry> {
    let entry = |addr: u64, size: u64, kind: u32| boot_e820_entry {
        addr,
        size,
        r#type: kind,
    };
    let mut map = vec![
        entry(0, EBDA_START, E820_RAM),
        entry(EBDA_START, HIMEM_START - EBDA_START, E820_RESERVED),
    ];
    for region in memory.iter() {
        let start = region.start_addr().0.max(HIMEM_START);
        let end = region.start_addr().0 + region.len();
        if end > start {
            map.push(entry(start, end - start, E820_RAM));
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::create_guest_memory;

    #[test]
    fn e820_covers_ram_around_the_hole() {
        let memory = create_guest_memory(3200 << 20).expect("map");
        let map: Vec<(u64, u64, u32)> = e820_map(&memory)
            .iter()
            .map(|e| (e.addr, e.size, e.r#type))
            .collect();
        assert_eq!(
            map,
            [
                (0, 0x9fc00, E820_RAM),
                (0x9fc00, 0x60400, E820_RESERVED),
                (0x10_0000, 0xc000_0000 - 0x10_0000, E820_RAM),
                (0x1_0000_0000, (3200 << 20) - 0xc000_0000, E820_RAM),
            ]
        );
    }

    #[test]
    fn the_initrd_goes_to_the_top_of_low_ram_page_aligned() {
        let memory = create_guest_memory(16 << 20).expect("map");
        let parts = [
            InitrdPart::Bytes(vec![1; 5000]),
            InitrdPart::Bytes(vec![2; 100]),
        ];
        let (start, size) = load_initrd(&memory, &parts, 2 << 20, 0x7fff_ffff).expect("fits");
        assert_eq!(size, 5100);
        assert_eq!(start, ((16 << 20) - 5100) & !0xfff);
        let mut back = [0u8; 2];
        memory
            .read_slice(&mut back, GuestAddress(start + 4999))
            .expect("read");
        assert_eq!(back, [1, 2]);
    }

    #[test]
    fn an_initrd_that_would_overlap_the_kernel_is_refused() {
        let memory = create_guest_memory(4 << 20).expect("map");
        let parts = [InitrdPart::Bytes(vec![0; 3 << 20])];
        let err = load_initrd(&memory, &parts, 2 << 20, 0x7fff_ffff).expect_err("too big");
        assert!(
            matches!(err, Error::InitrdTooLarge { size, .. } if size == 3 << 20),
            "{err}"
        );
    }
}
