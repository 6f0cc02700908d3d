//! Random queue contents into virtio-blk: whatever a guest puts in the descriptor table, the
//! available ring and the buffers (headers, segments, data), with the disk read-only or not
//! and discard offered or not, the device neither panics nor hangs, every used element names
//! a descriptor inside the queue, and a read-only disk is never written.
//!
//!   cargo xtask fuzz --target blk_request --seconds 60
//!
//! runs, on the stable toolchain,
//!
//!   cd devices/fuzz && cargo fuzz run blk_request --sanitizer none --debug-assertions \
//!       corpus/blk_request -- -max_total_time=60 -timeout=10

#![no_main]

use std::sync::{Arc, Mutex};

use devices::NoInterrupt;
use devices::disk::{DiskError, DiskImage};
use devices::virtio::GuestMemory;
use devices::virtio::block::Block;
use devices::virtio::{Activation, Queue, VirtioDevice, VirtioInterrupt};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress};

/// Guest RAM: small, so random addresses land inside and outside it alike.
const MEMORY_SIZE: usize = 64 << 10;
/// Where the queue's parts sit (the transport checked them; the contents are the fuzz's).
const DESC_TABLE: u64 = 0;
const AVAIL_RING: u64 = 0x1000;
const USED_RING: u64 = 0x2000;
const BUFFERS: u64 = 0x3000;
/// The disk: 32 sectors.
const DISK_LEN: usize = 32 * 512;

#[derive(Debug, Arbitrary)]
struct Input {
    /// log2 of the queue size, taken mod 5 (1 to 16 descriptors).
    size_log: u8,
    read_only: bool,
    discard: bool,
    /// Features the driver accepted (masked by what the device offers).
    acked: u64,
    /// Descriptor table entries: addr, len, flags, next.
    descriptors: Vec<(u16, u16, u16, u16)>,
    /// Available ring entries (head indexes).
    avail: Vec<u16>,
    /// The available index the driver publishes.
    avail_idx: u16,
    /// Bytes written into guest RAM at an offset past the rings (headers, segments, data).
    buffers: Vec<(u16, Vec<u8>)>,
    /// How many notifications arrive.
    notifies: u8,
}

#[derive(Debug)]
struct MemDisk {
    data: Arc<Mutex<Vec<u8>>>,
    discard: bool,
}

impl MemDisk {
    fn range(&self, offset: u64, len: usize) -> Result<std::ops::Range<usize>, DiskError> {
        let start = usize::try_from(offset).ok();
        start
            .and_then(|s| Some(s..s.checked_add(len)?))
            .filter(|r| r.end <= DISK_LEN)
            .ok_or(DiskError::OutOfRange {
                offset,
                len: len as u64,
                capacity: DISK_LEN as u64,
            })
    }
}

impl DiskImage for MemDisk {
    fn capacity(&self) -> u64 {
        DISK_LEN as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        let r = self.range(offset, buf.len())?;
        buf.copy_from_slice(&self.data.lock().unwrap()[r]);
        Ok(())
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), DiskError> {
        let r = self.range(offset, buf.len())?;
        self.data.lock().unwrap()[r].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), DiskError> {
        Ok(())
    }
    fn supports_discard(&self) -> bool {
        self.discard
    }
    fn discard(&mut self, offset: u64, len: u64) -> Result<(), DiskError> {
        self.range(offset, len as usize).map(|_| ())
    }
}

fuzz_target!(|input: Input| {
    let memory =
        GuestMemory::from_ranges(&[(GuestAddress(0), MEMORY_SIZE)]).expect("anonymous memory");
    let size = 1u16 << (input.size_log % 5);

    for (i, &(addr, len, flags, next)) in
        input.descriptors.iter().take(usize::from(size)).enumerate()
    {
        // Buffers start past the rings (a guest may well point its buffers at its own rings,
        // but then the used-ring check below would read its data) and spread over twice the
        // RAM: half of them outside it.
        let mut raw = (BUFFERS + u64::from(addr) * 2).to_le_bytes().to_vec();
        raw.extend(u32::from(len).to_le_bytes());
        raw.extend(flags.to_le_bytes());
        raw.extend(next.to_le_bytes());
        memory
            .write_slice(&raw, GuestAddress(DESC_TABLE + 16 * i as u64))
            .unwrap();
    }
    for (i, &head) in input.avail.iter().take(usize::from(size)).enumerate() {
        memory
            .write_obj(head, GuestAddress(AVAIL_RING + 4 + 2 * i as u64))
            .unwrap();
    }
    memory
        .write_obj(input.avail_idx, GuestAddress(AVAIL_RING + 2))
        .unwrap();
    for (offset, bytes) in &input.buffers {
        let addr = BUFFERS + u64::from(*offset) % (MEMORY_SIZE as u64 - BUFFERS);
        let room = (MEMORY_SIZE as u64 - addr) as usize;
        memory
            .write_slice(&bytes[..bytes.len().min(room)], GuestAddress(addr))
            .unwrap();
    }

    let data = Arc::new(Mutex::new(vec![0x5a; DISK_LEN]));
    let disk = MemDisk {
        data: data.clone(),
        discard: input.discard,
    };
    let mut device = Block::new(Box::new(disk), input.read_only, "fuzz");
    let mut queue = Queue::new(size).expect("a power of 2 up to 16");
    queue.set_size(size);
    queue.set_desc_table_address(Some(DESC_TABLE as u32), Some(0));
    queue.set_avail_ring_address(Some(AVAIL_RING as u32), Some(0));
    queue.set_used_ring_address(Some(USED_RING as u32), Some(0));
    queue.set_ready(true);
    device
        .activate(Activation {
            memory: memory.clone(),
            queues: vec![queue],
            interrupt: VirtioInterrupt::new(Arc::new(NoInterrupt)),
            acked_features: input.acked & device.device_features(),
        })
        .expect("one queue");

    for _ in 0..input.notifies % 4 + 1 {
        if device.queue_notified(0).is_err() {
            // DEVICE_NEEDS_RESET: the transport would stop here.
            break;
        }
    }

    let used_idx: u16 = memory.read_obj(GuestAddress(USED_RING + 2)).unwrap();
    for i in 0..used_idx.min(size) {
        let id: u32 = memory
            .read_obj(GuestAddress(USED_RING + 4 + 8 * u64::from(i)))
            .unwrap();
        assert!(
            id < u32::from(size),
            "used element {i} names descriptor {id}"
        );
    }
    if input.read_only {
        assert!(
            data.lock().unwrap().iter().all(|&b| b == 0x5a),
            "read-only disk written"
        );
    }
});
