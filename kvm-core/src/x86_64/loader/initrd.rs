//! The initramfs: archives concatenated (as the kernel accepts them) at the
//! top of low RAM, below the kernel's limit and above the kernel.

use std::io::Read;
use std::path::PathBuf;

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use crate::memory::{GuestMemory, PAGE_SIZE};
use crate::x86_64::layout::MMIO_HOLE_END;
use crate::{Error, Result};

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
            InitrdPart::File(path) => std::fs::metadata(path)
                .map(|m| m.len())
                .map_err(Error::file("initrd", path)),
            InitrdPart::Bytes(bytes) => Ok(bytes.len() as u64),
        }
    }
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
                let mut file = std::fs::File::open(path).map_err(Error::file("initrd", path))?;
                memory
                    .read_exact_volatile_from(GuestAddress(at), &mut file, len as usize)
                    .map_err(|source| Error::GuestWrite {
                        addr: at,
                        len: len as usize,
                        source,
                    })?;
                // A file that grew after we measured it would overlap the next part.
                if file
                    .read(&mut [0u8; 1])
                    .map_err(Error::file("initrd", path))?
                    != 0
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::create_guest_memory;
    use vm_memory::Bytes;

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
