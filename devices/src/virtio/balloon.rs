//! virtio-balloon for free page reporting only (virtio 1.2 §5.5,
//! VIRTIO_BALLOON_F_FREE_PAGE_REPORTING): the guest's kernel hands the device ranges of its
//! free memory on `reporting_vq`, and the device gives their host pages back (private RAM:
//! `MADV_DONTNEED`; RAM shared with a vhost-user backend: `MADV_REMOVE`, which frees the
//! memfd's pages for both processes). A page the guest touched once and freed would otherwise
//! stay resident on the host for the VM's life: the boot's own (the initramfs it unpacked, the
//! kernel's init sections), and whatever a workload allocated and let go.
//!
//! The balloon proper is never inflated: `num_pages` stays 0, so the guest never gives pages
//! on `inflateq` or takes them back on `deflateq` (a driver that does anyway gets its
//! buffers back untouched). No statistics queue, no free page hinting, no page poisoning: a
//! guest that poisons or zeroes its free pages (`init_on_free`) turns reporting off itself,
//! as Linux's driver does without VIRTIO_BALLOON_F_PAGE_POISON.
//!
//! Ours because rust-vmm has no balloon crate (Firecracker's and Cloud Hypervisor's live in
//! their VMMs), and reporting alone is one queue of (address, length) pairs.
//!
//! The guest reports free blocks of at least its `page_reporting_order` (Linux: a pageblock,
//! 2 MiB on x86_64, which is also the host's transparent huge page), 32 at most per request,
//! a few seconds after they became free; a reported page the guest allocates again reads as
//! zeros (or, where the kernel image is mapped from its file, as the file), which the driver
//! allows (§5.5.6.7: the device may discard a reported page's contents).

use virtio_bindings::virtio_ids::VIRTIO_ID_BALLOON;
use virtio_queue::QueueT;
use vm_memory::{GuestAddress, GuestMemoryBackend as _, GuestMemoryRegion};

use super::chain;
use super::mmio::state::VIRTIO_F_VERSION_1;
use super::{
    ActivateError, Activation, GuestMemory, Queue, QueueError, VirtioDevice, VirtioInterrupt,
};

/// VIRTIO_BALLOON_F_FREE_PAGE_REPORTING (§5.5.3; Linux's `VIRTIO_BALLOON_F_REPORTING`).
pub const VIRTIO_BALLOON_F_FREE_PAGE_REPORTING: u64 = 1 << 5;

/// `inflateq` and `deflateq`: offered, as every balloon has them, never asked to carry pages.
const BALLOON_QUEUE_SIZE: u16 = 64;
/// `reporting_vq`: Linux refuses one smaller than its 32 ranges per request
/// (`PAGE_REPORTING_CAPACITY`).
const REPORTING_QUEUE_SIZE: u16 = 128;
/// The queues when only reporting is negotiated (§5.5.2: statsq and free_page_vq exist only
/// with their features, and the later queues take their places).
const INFLATEQ: usize = 0;
const DEFLATEQ: usize = 1;
const REPORTING_VQ: usize = 2;

/// The page size reports come in multiples of, and the host's.
const PAGE_SIZE: u64 = 4096;

/// The configuration space (§5.5.4): `num_pages` (always 0: never inflate) and `actual`, the
/// driver's count of pages in the balloon, both le32.
const CONFIG_LEN: usize = 8;
const ACTUAL_OFFSET: u64 = 4;

const NAME: &str = "virtio-balloon";

/// What the device holds once the driver set it up.
#[derive(Debug)]
struct Active {
    memory: GuestMemory,
    queues: [Queue; 3],
    interrupt: VirtioInterrupt,
}

/// The balloon device: free page reporting only.
#[derive(Debug, Default)]
pub struct Balloon {
    /// The driver's `actual` field, as it last wrote it.
    actual: u32,
    active: Option<Active>,
    /// Bytes of guest memory given back to the host since the device was made.
    reported: u64,
}

impl Balloon {
    /// A device waiting for its driver.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes of free guest memory the guest reported and the host dropped so far (a range
    /// reported twice counts twice).
    pub fn reported_bytes(&self) -> u64 {
        self.reported
    }
}

impl VirtioDevice for Balloon {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BALLOON
    }

    fn device_features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | VIRTIO_BALLOON_F_FREE_PAGE_REPORTING
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[BALLOON_QUEUE_SIZE, BALLOON_QUEUE_SIZE, REPORTING_QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut config = [0u8; CONFIG_LEN];
        config[ACTUAL_OFFSET as usize..].copy_from_slice(&self.actual.to_le_bytes());
        super::read_config_bytes(&config, offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        match <[u8; 4]>::try_from(data) {
            Ok(actual) if offset == ACTUAL_OFFSET => self.actual = u32::from_le_bytes(actual),
            _ => tracing::debug!(offset, len = data.len(), "{NAME}: config write ignored"),
        }
    }

    fn activate(&mut self, mut activation: Activation) -> Result<(), ActivateError> {
        let queues = activation.take_queues(NAME, "inflateq, deflateq, reporting_vq")?;
        // A driver that did not take reporting sets up only the two balloon queues; the
        // third then stays unready and is never served.
        self.active = Some(Active {
            memory: activation.memory,
            queues,
            interrupt: activation.interrupt,
        });
        Ok(())
    }

    fn queue_notified(&mut self, index: usize) -> Result<(), QueueError> {
        let Some(active) = &mut self.active else {
            return Ok(());
        };
        let error = |reason: String| QueueError {
            device: NAME.into(),
            queue: index,
            reason,
        };
        let Some(queue) = active.queues.get_mut(index).filter(|q| q.ready()) else {
            return Ok(());
        };
        let memory = &active.memory;
        let mut used = false;
        while let Some(chain) = chain::pop(queue, memory).map_err(error)? {
            let head = chain.head_index();
            if index == REPORTING_VQ {
                // The chain's length is bounded by the queue's size (virtio-queue's walk).
                for descriptor in chain {
                    self.reported += discard(memory, descriptor.addr(), descriptor.len());
                }
            } else {
                debug_assert!(index == INFLATEQ || index == DEFLATEQ);
                tracing::debug!(
                    index,
                    "{NAME}: pages offered on a balloon queue never asked for: returned"
                );
            }
            queue
                .add_used(memory, head, 0)
                .map_err(|e| error(e.to_string()))?;
            used = true;
        }
        if used
            && queue
                .needs_notification(memory)
                .map_err(|e| error(e.to_string()))?
        {
            active.interrupt.signal_used_queue_or_log(NAME);
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
    }
}

/// Gives the host pages behind `[addr, addr + len)` back; returns the bytes dropped (0 for a
/// range that is not whole pages of one region of guest RAM, which is logged and left).
// The crate's one change to how guest memory is backed: madvise(2) has no safe wrapper.
#[allow(unsafe_code)]
fn discard(memory: &GuestMemory, addr: GuestAddress, len: u32) -> u64 {
    let len = u64::from(len);
    let refuse = |why: &str| {
        tracing::debug!(addr = addr.0, len, "{NAME}: report refused: {why}");
        0
    };
    if len == 0 || addr.0 % PAGE_SIZE != 0 || len % PAGE_SIZE != 0 {
        return refuse("not whole pages");
    }
    let Some((region, offset)) = memory.to_region_addr(addr) else {
        return refuse("outside guest memory");
    };
    if offset
        .0
        .checked_add(len)
        .is_none_or(|end| end > region.len())
    {
        return refuse("past the end of its memory region");
    }
    let Ok(host) = region.get_host_address(offset) else {
        return refuse("no host address");
    };
    // Shared RAM (a memfd another process maps): drop the file's pages, for both mappings.
    let advice = if region.file_offset().is_some() {
        libc::MADV_REMOVE
    } else {
        libc::MADV_DONTNEED
    };
    // SAFETY: `[host, host + len)` lies inside one region of guest RAM, a mapping this VMM
    // owns for the VM's life (checked above). madvise only changes which pages back it: the
    // guest reads zeros (or its file's bytes) there next, which a free page reported by the
    // driver allows; no Rust reference into guest memory exists (all access is volatile).
    let rc = unsafe { libc::madvise(host.cast(), len as usize, advice) };
    if rc != 0 {
        let error = std::io::Error::last_os_error();
        tracing::debug!(addr = addr.0, len, %error, "{NAME}: madvise failed");
        return 0;
    }
    len
}

#[cfg(test)]
mod tests;
