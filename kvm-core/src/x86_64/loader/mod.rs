//! Loading Linux into guest memory, one file per format: a bzImage through
//! the Linux boot protocol (`bzimage.rs`), an ELF vmlinux through its PVH
//! entry (`pvh.rs`). Both place the same command line (`cmdline.rs`),
//! initramfs (`initrd.rs`) and memory map (`e820.rs`);
//! [`load_linux`](crate::x86_64::loader::load_linux) tells the formats apart
//! and says how the boot vCPU enters
//! ([`KernelEntry`](crate::x86_64::loader::KernelEntry)).
//!
//! The dependencies run one way: this file uses the formats, the formats
//! use the common pieces, and nothing uses this file back.

mod bzimage;
mod check;
mod cmdline;
mod e820;
mod entry;
mod initrd;
mod pvh;

use std::fs::File;
use std::path::Path;

pub use check::{KernelFormat, check_kernel};
pub use entry::KernelEntry;
pub use initrd::InitrdPart;

use crate::memory::GuestMemory;
use crate::{Error, Result};

/// Loads the kernel at `kernel` (a bzImage, or an ELF vmlinux with a PVH
/// entry, told apart by the ELF magic), the initramfs `initrd` and
/// `cmdline` into `memory`, and writes the zero page or the PVH start info;
/// `rsdp` is the ACPI root pointer.
///
/// Errors: [`check_kernel`]'s, [`Error::File`] when a file cannot be read, [`Error::Kernel`]
/// when linux-loader refuses the image, [`Error::KernelFormat`] when it
/// cannot be booted the way capsule boots, [`Error::Cmdline`],
/// [`Error::InitrdTooLarge`], [`Error::InitrdChanged`], and the zero page's
/// or start info's write errors.
pub fn load_linux(
    memory: &GuestMemory,
    kernel: &Path,
    initrd: &[InitrdPart],
    cmdline: &str,
    rsdp: u64,
) -> Result<KernelEntry> {
    let format = check_kernel(kernel)?;
    let mut image = File::open(kernel).map_err(Error::file("kernel", kernel))?;
    match format {
        KernelFormat::Elf => pvh::load(memory, kernel, &mut image, initrd, cmdline, rsdp),
        KernelFormat::BzImage => bzimage::load(memory, kernel, &mut image, initrd, cmdline, rsdp),
    }
}
