//! Guest memory, wrapped once so vm-memory's generics and renames stop here.
//!
//! Guest RAM starts at guest-physical 0 and stops at the 32-bit MMIO hole
//! (virtio-mmio devices, IOAPIC, LAPIC); what does not fit below the hole
//! continues at 4 GiB.

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use crate::x86_64::layout::{MMIO_HOLE_END, MMIO_HOLE_START};
use crate::{Error, Result};

/// The guest's physical memory: vm-memory's mmap backend, no dirty bitmap.
pub type GuestMemory = vm_memory::GuestMemoryMmap<()>;

/// KVM memslot sizes and guest addresses are in units of this (x86_64 page).
pub const PAGE_SIZE: usize = 4096;

/// Maps `size` bytes of anonymous guest RAM from guest-physical 0, split
/// around the MMIO hole.
///
/// `size` must be a non-zero multiple of [`PAGE_SIZE`], as KVM requires of a memslot.
pub fn create_guest_memory(size: usize) -> Result<GuestMemory> {
    if size == 0 || size % PAGE_SIZE != 0 {
        return Err(Error::MemorySize {
            size,
            page: PAGE_SIZE,
        });
    }
    GuestMemory::from_ranges(&ram_ranges(size))
        .map_err(|source| Error::GuestMemory { size, source })
}

/// Where `size` bytes of RAM go: below the MMIO hole, then above 4 GiB.
fn ram_ranges(size: usize) -> Vec<(GuestAddress, usize)> {
    let below = size.min(MMIO_HOLE_START as usize);
    let mut ranges = vec![(GuestAddress(0), below)];
    if size > below {
        ranges.push((GuestAddress(MMIO_HOLE_END), size - below));
    }
    ranges
}

/// Copies `bytes` into guest memory at guest-physical `addr`; the whole range must be RAM.
pub fn write_bytes(memory: &GuestMemory, addr: u64, bytes: &[u8]) -> Result<()> {
    memory
        .write_slice(bytes, GuestAddress(addr))
        .map_err(|source| Error::GuestWrite {
            addr,
            len: bytes.len(),
            source,
        })
}

/// How many bytes of guest RAM are resident on the host: the pages the guest
/// (or the loader) has touched. Used to tell the VMM's own memory apart from
/// the guest's in the process's RSS.
pub fn resident_bytes(memory: &GuestMemory) -> u64 {
    let mut resident = 0;
    for region in memory.iter() {
        let len = region.len() as usize;
        let mut pages = vec![0u8; len.div_ceil(PAGE_SIZE)];
        // SAFETY: the region is one live mapping of `len` bytes at `as_ptr()`
        // (page aligned, as mmap returns it), and `pages` has one byte per
        // page of it, which is all mincore writes.
        let ret = unsafe { libc::mincore(region.as_ptr().cast(), len, pages.as_mut_ptr()) };
        if ret == 0 {
            resident += pages.iter().filter(|&&page| page & 1 != 0).count() as u64;
        }
    }
    resident * PAGE_SIZE as u64
}

/// Registers every region of `memory` with `vm` as memslot 0, 1, ...
///
/// # Safety
///
/// The caller must keep `memory`'s mappings alive for as long as the VM (or
/// any of its vCPUs) can run: KVM reads and writes them behind Rust's back,
/// and a freed mapping could be reused by an unrelated allocation.
pub(crate) unsafe fn register_memslots(vm: &VmFd, memory: &GuestMemory) -> Result<()> {
    for (index, region) in memory.iter().enumerate() {
        let slot = u32::try_from(index).map_err(|_| Error::MemslotIndex(index))?;
        let memslot = kvm_userspace_memory_region {
            slot,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: region.as_ptr() as u64,
        };
        // SAFETY: the memslot describes exactly one live mapping of
        // `region.len()` bytes at `region.as_ptr()`, and our caller keeps it
        // mapped while the VM can run (this function's contract).
        unsafe { vm.set_user_memory_region(memslot) }.map_err(|source| Error::Ioctl {
            ioctl: "KVM_SET_USER_MEMORY_REGION",
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_must_be_a_nonzero_multiple_of_the_page_size() {
        for size in [0, 1, PAGE_SIZE + 1] {
            assert!(matches!(
                create_guest_memory(size),
                Err(Error::MemorySize { size: s, page: PAGE_SIZE }) if s == size
            ));
        }
    }

    #[test]
    fn one_region_at_zero() {
        let memory = create_guest_memory(64 << 10).expect("map 64 KiB");
        assert_eq!(memory.num_regions(), 1);
        let region = memory.iter().next().expect("one region");
        assert_eq!(region.start_addr(), GuestAddress(0));
        assert_eq!(region.len(), 64 << 10);
    }

    #[test]
    fn ram_skips_the_mmio_hole() {
        assert_eq!(ram_ranges(256 << 20), [(GuestAddress(0), 256 << 20)]);
        assert_eq!(
            ram_ranges(4 << 30),
            [
                (GuestAddress(0), 0xc000_0000),
                (GuestAddress(0x1_0000_0000), 0x4000_0000)
            ]
        );
    }

    #[test]
    fn resident_bytes_count_touched_pages_only() {
        let memory = create_guest_memory(64 * PAGE_SIZE).expect("map");
        assert_eq!(resident_bytes(&memory), 0);
        write_bytes(&memory, 0, &[1]).expect("touch page 0");
        write_bytes(&memory, 10 * PAGE_SIZE as u64, &[1]).expect("touch page 10");
        assert_eq!(resident_bytes(&memory), 2 * PAGE_SIZE as u64);
    }

    #[test]
    fn writes_are_bounds_checked() {
        let memory = create_guest_memory(PAGE_SIZE).expect("map one page");
        write_bytes(&memory, 0xff0, &[1; 16]).expect("write the last 16 bytes");
        let mut back = [0u8; 16];
        memory
            .read_slice(&mut back, GuestAddress(0xff0))
            .expect("read back");
        assert_eq!(back, [1; 16]);
        let err = write_bytes(&memory, 0xff8, &[1; 16]).expect_err("straddles the end of RAM");
        assert!(
            matches!(
                err,
                Error::GuestWrite {
                    addr: 0xff8,
                    len: 16,
                    ..
                }
            ),
            "{err}"
        );
    }
}
