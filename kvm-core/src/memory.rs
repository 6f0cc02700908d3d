//! Guest memory, wrapped once so vm-memory's generics and renames stop here.
//!
//! Guest RAM starts at guest-physical 0 and stops at the 32-bit MMIO hole
//! (virtio-mmio devices, IOAPIC, LAPIC); what does not fit below the hole
//! continues at 4 GiB.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use devices::virtio::RegionOwner;
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{
    Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryRegion, GuestRegionMmap,
};

use crate::x86_64::layout::{MMIO_HOLE_END, MMIO_HOLE_START};
use crate::{Error, Result};

/// The guest's physical memory: vm-memory's mmap backend over RAM that kvm-core maps itself
/// ([`RamMapping`], owned by each region's [`RegionOwner`]); the type the virtio devices
/// get, so it is the `devices` crate's.
pub type GuestMemory = devices::virtio::GuestMemory;

/// KVM memslot sizes and guest addresses are in units of this (x86_64 page).
pub const PAGE_SIZE: usize = 4096;

/// The huge page size guest RAM is aligned to.
const HUGE_PAGE_SIZE: usize = 2 << 20;

/// How guest RAM is backed on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemoryBacking {
    /// Anonymous private memory, only this process maps it: the default, with transparent
    /// huge pages where the host enables them (`/sys/kernel/mm/transparent_hugepage/enabled`).
    #[default]
    Private,
    /// Each region a memfd mapped `MAP_SHARED`, so another process can map the same pages
    /// from the fd and offset (a vhost-user backend: virtiofsd). It costs huge pages on
    /// most hosts: shared memory gets them only where
    /// `/sys/kernel/mm/transparent_hugepage/shmem_enabled` allows, which is `never` by
    /// default, and without them every page the guest first touches is a 4 KiB nested page
    /// fault. So kvm-core backs RAM this way only when a device asks
    /// ([`devices::virtio::VirtioDevice::shares_guest_memory`]). Its pages count in the
    /// process's RSS as `RssShmem`, and in [`resident_bytes`] as before.
    Shared,
}

/// Maps `size` bytes of anonymous guest RAM from guest-physical 0, split
/// around the MMIO hole.
///
/// `size` must be a non-zero multiple of [`PAGE_SIZE`], as KVM requires of a memslot.
pub fn create_guest_memory(size: usize) -> Result<GuestMemory> {
    create_guest_memory_backed(size, MemoryBacking::Private)
}

/// [`create_guest_memory`] with the RAM backed as `backing` says.
///
/// Errors: [`Error::MemorySize`]; [`Error::GuestMemory`] when mapping (or, for
/// [`MemoryBacking::Shared`], creating and sizing a memfd) fails.
pub fn create_guest_memory_backed(size: usize, backing: MemoryBacking) -> Result<GuestMemory> {
    if size == 0 || size % PAGE_SIZE != 0 {
        return Err(Error::MemorySize {
            size,
            page: PAGE_SIZE,
        });
    }
    let mut regions = Vec::new();
    for (start, len) in ram_ranges(size) {
        let memory_error = |source| Error::GuestMemory { size, source };
        let file = match backing {
            MemoryBacking::Private => None,
            MemoryBacking::Shared => Some(ram_file(len).map_err(memory_error)?),
        };
        let mapping = RamMapping::new(len, file.as_ref()).map_err(memory_error)?;
        let addr = mapping.addr as *mut u8;
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: `addr` is the start of a live, page-aligned mapping of `len` bytes that the
        // region itself owns (as its bitmap), so it outlives every access through the region.
        let builder = unsafe {
            MmapRegionBuilder::new_with_bitmap(len, RegionOwner::new(mapping))
                .with_mmap_prot(prot)
                .with_raw_mmap_pointer(addr)
        };
        let builder = match file {
            None => builder.with_mmap_flags(RamMapping::PRIVATE),
            // The region keeps the memfd, and a vhost-user frontend hands it out from there.
            Some(file) => builder
                .with_mmap_flags(RamMapping::SHARED)
                .with_file_offset(FileOffset::new(file, 0)),
        };
        let region = builder.build().map_err(|e| Error::GuestMemory {
            size,
            source: std::io::Error::other(e),
        })?;
        let region = GuestRegionMmap::new(region, start).ok_or_else(|| Error::GuestMemory {
            size,
            source: std::io::Error::other(format!("a region at {start:?} overflows")),
        })?;
        regions.push(region);
    }
    GuestMemory::from_regions(regions).map_err(|e| Error::GuestMemory {
        size,
        source: std::io::Error::other(e),
    })
}

/// A memfd of `len` bytes for one region of shared guest RAM.
fn ram_file(len: usize) -> std::io::Result<File> {
    // SAFETY: memfd_create takes a NUL-terminated name and flags, and returns a new fd or -1.
    let fd = unsafe { libc::memfd_create(c"capsule-guest-ram".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and nothing else owns it.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.set_len(len as u64)?;
    Ok(file)
}

/// One region of guest RAM, mapped 2 MiB-aligned and marked for transparent huge pages, and
/// unmapped when the last region that uses it is dropped.
///
/// Why not vm-memory's own mapping: it puts RAM wherever mmap does, at any page boundary, and
/// KVM backs guest memory with 2 MiB pages only where guest-physical and host-virtual addresses
/// agree modulo 2 MiB. With 4 KiB pages every page the guest first touches is a nested page
/// fault; nested in the lab, a boot of the Debian kernel to its init took 1.8 s instead of
/// 2.5 s once RAM was aligned (QEMU aligns its RAM the same way).
///
/// vm-memory's regions over a raw pointer never unmap it: each region keeps its mapping in
/// its [`RegionOwner`], and the mapping is unmapped when the last clone of the memory goes.
#[derive(Debug)]
pub struct RamMapping {
    addr: usize,
    len: usize,
}

impl RamMapping {
    /// vm-memory's own flags for anonymous guest RAM.
    const PRIVATE: i32 = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    /// The flags of RAM shared through a memfd ([`MemoryBacking::Shared`]).
    const SHARED: i32 = libc::MAP_SHARED | libc::MAP_NORESERVE;

    /// Maps `len` bytes 2 MiB-aligned: anonymous, or `file` from offset 0 when given.
    fn new(len: usize, file: Option<&File>) -> std::io::Result<RamMapping> {
        let reserved = len + HUGE_PAGE_SIZE;
        // SAFETY: a fresh anonymous mapping at an address the kernel chooses; nothing else
        // is affected.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                reserved,
                libc::PROT_READ | libc::PROT_WRITE,
                Self::PRIVATE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let raw = raw as usize;
        let addr = raw.next_multiple_of(HUGE_PAGE_SIZE);
        let head = addr - raw;
        let tail = reserved - head - len;
        if let Some(file) = file {
            // SAFETY: MAP_FIXED replaces the aligned middle of the reservation made above,
            // which nothing references yet, with the file's pages.
            let mapped = unsafe {
                libc::mmap(
                    addr as *mut libc::c_void,
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    Self::SHARED | libc::MAP_FIXED,
                    file.as_raw_fd(),
                    0,
                )
            };
            if mapped == libc::MAP_FAILED {
                let error = std::io::Error::last_os_error();
                // SAFETY: the reservation is ours and unused.
                unsafe { libc::munmap(raw as *mut libc::c_void, reserved) };
                return Err(error);
            }
        }
        // SAFETY: both ranges are the unused ends of the mapping made above, which nothing
        // references; an empty range is skipped.
        unsafe {
            if head > 0 {
                libc::munmap(raw as *mut libc::c_void, head);
            }
            if tail > 0 {
                libc::munmap((addr + len) as *mut libc::c_void, tail);
            }
        }
        // Without THP (or with it off, or for shared memory without shmem THP), this fails
        // and RAM simply stays in 4 KiB pages.
        // SAFETY: madvise only changes the paging policy of our own mapping.
        unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_HUGEPAGE) };
        Ok(RamMapping { addr, len })
    }
}

impl Drop for RamMapping {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours; it is dropped with the last region that used it, so
        // no guest memory access can reach it anymore.
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
    }
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

    fn is_mapped(addr: *mut u8) -> bool {
        let mut page = 0u8;
        // SAFETY: mincore only reads the page tables of the page at `addr` and writes one
        // byte into `page`; it fails with ENOMEM where nothing is mapped.
        unsafe { libc::mincore(addr.cast(), PAGE_SIZE, &mut page) == 0 }
    }

    #[test]
    fn ram_is_2_mib_aligned_and_unmapped_with_its_last_clone() {
        let memory = create_guest_memory(3 * HUGE_PAGE_SIZE + PAGE_SIZE).expect("map");
        let addr = memory.iter().next().expect("a region").as_ptr();
        assert_eq!(addr as usize % HUGE_PAGE_SIZE, 0);
        let clone = memory.clone();
        drop(memory);
        assert!(is_mapped(addr), "still used by the clone");
        write_bytes(&clone, 0, b"ok").expect("write through the clone");
        drop(clone);
        assert!(!is_mapped(addr), "the last clone unmaps it");
    }

    #[test]
    fn shared_ram_is_a_memfd_another_mapping_sees_and_counts_as_resident() {
        let memory =
            create_guest_memory_backed(3 * HUGE_PAGE_SIZE, MemoryBacking::Shared).expect("map");
        let region = memory.iter().next().expect("a region");
        assert_eq!(region.as_ptr() as usize % HUGE_PAGE_SIZE, 0);
        let file = region.file_offset().expect("a file behind the region");
        assert_eq!(file.start(), 0);
        assert_eq!(
            file.file().metadata().expect("stat").len(),
            3 * HUGE_PAGE_SIZE as u64
        );
        assert_eq!(resident_bytes(&memory), 0);
        write_bytes(&memory, 5 * PAGE_SIZE as u64, b"seen").expect("write");
        // What a vhost-user backend does: map the fd itself, and see the guest's bytes.
        let mut other = [0u8; 4];
        std::os::unix::fs::FileExt::read_exact_at(file.file(), &mut other, 5 * PAGE_SIZE as u64)
            .expect("read through the fd");
        assert_eq!(&other, b"seen");
        assert_eq!(resident_bytes(&memory), PAGE_SIZE as u64);
        let private = create_guest_memory(PAGE_SIZE).expect("map");
        assert!(
            private
                .iter()
                .next()
                .expect("region")
                .file_offset()
                .is_none()
        );
    }

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
