//! The block device against a driver-side mock of its queue: one test per request kind and
//! per rejection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use virtio_queue::mock::MockSplitQueue;

use super::request::{RequestHeader, Segment, config_field, feature, kind};
use super::{Block, QUEUE_SIZE, SEG_MAX};
use crate::disk::{DiskError, DiskImage};
use crate::virtio::test_utils::{
    BUFFERS, Counter, OUTSIDE, activation, add_chain, read, readable, used, writable, write,
};
use crate::virtio::{GuestMemory, VirtioDevice};

/// Bytes of the test disk: 64 sectors.
const DISK_LEN: usize = 64 * 512;

/// What the test disk saw, shared with the test while the device owns the disk.
#[derive(Debug, Default)]
struct Seen {
    data: Vec<u8>,
    flushes: usize,
    discards: Vec<(u64, u64)>,
    zeroes: Vec<(u64, u64, bool)>,
}

/// An in-memory disk image.
#[derive(Debug)]
struct MemDisk {
    seen: Arc<Mutex<Seen>>,
    discard: bool,
}

impl MemDisk {
    /// A disk of `len` bytes, each byte its offset mod 251 (so misplaced data shows).
    fn new(len: usize, discard: bool) -> (Box<Self>, Arc<Mutex<Seen>>) {
        let seen = Arc::new(Mutex::new(Seen {
            data: (0..len).map(|i| (i % 251) as u8).collect(),
            ..Seen::default()
        }));
        (
            Box::new(Self {
                seen: seen.clone(),
                discard,
            }),
            seen,
        )
    }

    fn range(&self, offset: u64, len: usize) -> Result<std::ops::Range<usize>, DiskError> {
        let capacity = self.capacity();
        usize::try_from(offset)
            .ok()
            .and_then(|start| Some(start..start.checked_add(len)?))
            .filter(|r| r.end as u64 <= capacity)
            .ok_or(DiskError::OutOfRange {
                offset,
                len: len as u64,
                capacity,
            })
    }
}

impl DiskImage for MemDisk {
    fn capacity(&self) -> u64 {
        self.seen.lock().unwrap().data.len() as u64
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        let r = self.range(offset, buf.len())?;
        buf.copy_from_slice(&self.seen.lock().unwrap().data[r]);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), DiskError> {
        let r = self.range(offset, buf.len())?;
        self.seen.lock().unwrap().data[r].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DiskError> {
        self.seen.lock().unwrap().flushes += 1;
        Ok(())
    }

    fn supports_discard(&self) -> bool {
        self.discard
    }

    fn discard(&mut self, offset: u64, len: u64) -> Result<(), DiskError> {
        self.seen.lock().unwrap().discards.push((offset, len));
        Ok(())
    }

    fn write_zeroes(&mut self, offset: u64, len: u64, unmap: bool) -> Result<(), DiskError> {
        let r = self.range(offset, len as usize)?;
        let mut seen = self.seen.lock().unwrap();
        seen.data[r].fill(0);
        seen.zeroes.push((offset, len, unmap));
        Ok(())
    }
}

const HEADER: u64 = BUFFERS;
const STATUS: u64 = BUFFERS + 0x100;
const DATA: u64 = BUFFERS + 0x1000;
/// What the status byte holds before the device answers.
const UNTOUCHED: u8 = 0xaa;
const OK: u8 = 0;
const IOERR: u8 = 1;
const UNSUPP: u8 = 2;

/// A device over a [`MemDisk`], activated with every feature it offers, and its queue.
struct Rig<'m> {
    memory: &'m GuestMemory,
    queue: MockSplitQueue<'m, GuestMemory>,
    device: Block,
    seen: Arc<Mutex<Seen>>,
    interrupts: Arc<Counter>,
    next: u16,
}

impl<'m> Rig<'m> {
    fn new(memory: &'m GuestMemory, read_only: bool, discard: bool) -> Self {
        let (disk, seen) = MemDisk::new(DISK_LEN, discard);
        Self {
            seen,
            ..Self::over(memory, disk, read_only, "disk0", QUEUE_SIZE)
        }
    }

    /// A device over any image, with a queue of `size`.
    fn over(
        memory: &'m GuestMemory,
        disk: Box<dyn DiskImage>,
        read_only: bool,
        id: &str,
        size: u16,
    ) -> Self {
        let mut device = Block::new(disk, read_only, id);
        let queue = MockSplitQueue::new(memory, size);
        let (act, interrupts) = activation(memory, &[&queue], device.device_features());
        device.activate(act).unwrap();
        Self {
            memory,
            queue,
            device,
            seen: Arc::default(),
            interrupts,
            next: 0,
        }
    }

    /// Makes a request available: a header of `kind` at `sector`, then `buffers` (data and
    /// status); returns its head index.
    fn offer(&mut self, kind: u32, sector: u64, buffers: &[(u64, u32, u16)]) -> u16 {
        write(
            self.memory,
            HEADER,
            &RequestHeader { kind, sector }.to_bytes(),
        );
        write(self.memory, STATUS, &[UNTOUCHED]);
        let mut chain = vec![readable(HEADER, 16)];
        chain.extend_from_slice(buffers);
        self.offer_chain(&chain)
    }

    fn offer_chain(&mut self, chain: &[(u64, u32, u16)]) -> u16 {
        let head = self.next;
        add_chain(&self.queue, head, chain);
        self.next += chain.len() as u16;
        head
    }

    /// Offers one request, notifies, and returns (status byte, used length).
    fn run(&mut self, kind: u32, sector: u64, buffers: &[(u64, u32, u16)]) -> (u8, u32) {
        let head = self.offer(kind, sector, buffers);
        self.device.queue_notified(0).unwrap();
        let (idx, id, len) = used(&self.queue, 0);
        assert_eq!((idx, id), (1, u32::from(head)), "one request used");
        (self.status(), len)
    }

    fn status(&self) -> u8 {
        read(self.memory, STATUS, 1)[0]
    }

    fn disk(&self, offset: usize, len: usize) -> Vec<u8> {
        self.seen.lock().unwrap().data[offset..offset + len].to_vec()
    }
}

fn status_desc() -> (u64, u32, u16) {
    writable(STATUS, 1)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(7) ^ seed).collect()
}

#[test]
fn read_fills_every_data_descriptor_from_the_sector() {
    let memory = crate::virtio::test_utils::memory();
    let mut rig = Rig::new(&memory, false, false);
    let (status, used_len) = rig.run(
        kind::IN,
        3,
        &[
            writable(DATA, 512),
            writable(DATA + 0x4000, 1024),
            status_desc(),
        ],
    );
    assert_eq!((status, used_len), (OK, 1536 + 1));
    let mut got = read(&memory, DATA, 512);
    got.extend(read(&memory, DATA + 0x4000, 1024));
    assert_eq!(got, rig.disk(3 * 512, 1536));
    assert_eq!(rig.interrupts.count(), 1);
}

#[test]
fn read_longer_than_the_bounce_buffer_arrives_whole() {
    let memory = crate::virtio::test_utils::memory();
    let (disk, seen) = MemDisk::new(4 << 20, false);
    let Rig {
        queue, mut device, ..
    } = Rig::over(&memory, disk, false, "big", QUEUE_SIZE);
    // 600 KiB in three 200 KiB buffers, so pieces straddle descriptors.
    let piece = 200 << 10;
    write(
        &memory,
        HEADER,
        &RequestHeader {
            kind: kind::IN,
            sector: 1,
        }
        .to_bytes(),
    );
    add_chain(
        &queue,
        0,
        &[
            readable(HEADER, 16),
            writable(0x20_0000, piece),
            writable(0x40_0000, piece),
            writable(0x60_0000, piece),
            status_desc(),
        ],
    );
    device.queue_notified(0).unwrap();
    assert_eq!(read(&memory, STATUS, 1)[0], OK);
    let mut got = Vec::new();
    for addr in [0x20_0000, 0x40_0000, 0x60_0000] {
        got.extend(read(&memory, addr, piece as usize));
    }
    assert!(got == seen.lock().unwrap().data[512..512 + 3 * piece as usize]);
}

#[test]
fn write_puts_the_data_descriptors_on_the_disk() {
    let memory = crate::virtio::test_utils::memory();
    let mut rig = Rig::new(&memory, false, false);
    let data = pattern(1024, 0x5a);
    write(&memory, DATA, &data[..512]);
    write(&memory, DATA + 0x4000, &data[512..]);
    let (status, used_len) = rig.run(
        kind::OUT,
        10,
        &[
            readable(DATA, 512),
            readable(DATA + 0x4000, 512),
            status_desc(),
        ],
    );
    assert_eq!((status, used_len), (OK, 1));
    assert_eq!(rig.disk(10 * 512, 1024), data);
}

#[test]
fn flush_reaches_the_image() {
    let memory = crate::virtio::test_utils::memory();
    let mut rig = Rig::new(&memory, false, false);
    assert_eq!(rig.run(kind::FLUSH, 0, &[status_desc()]), (OK, 1));
    assert_eq!(rig.seen.lock().unwrap().flushes, 1);
}

#[test]
fn get_id_answers_the_nul_padded_id() {
    let memory = crate::virtio::test_utils::memory();
    let mut rig = Rig::new(&memory, false, false);
    write(&memory, DATA, &[0xff; 20]);
    let (status, used_len) = rig.run(kind::GET_ID, 0, &[writable(DATA, 20), status_desc()]);
    assert_eq!((status, used_len), (OK, 21));
    assert_eq!(
        read(&memory, DATA, 20),
        b"disk0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
    );
}

#[test]
fn get_id_of_20_bytes_or_more_has_no_nul() {
    let memory = crate::virtio::test_utils::memory();
    let disk = MemDisk::new(DISK_LEN, false).0;
    let id = "0123456789abcdefghijKLMN";
    let Rig {
        queue, mut device, ..
    } = Rig::over(&memory, disk, false, id, QUEUE_SIZE);
    write(
        &memory,
        HEADER,
        &RequestHeader {
            kind: kind::GET_ID,
            sector: 0,
        }
        .to_bytes(),
    );
    add_chain(
        &queue,
        0,
        &[readable(HEADER, 16), writable(DATA, 32), status_desc()],
    );
    device.queue_notified(0).unwrap();
    assert_eq!(read(&memory, DATA, 20), b"0123456789abcdefghij");
    assert_eq!(used(&queue, 0).2, 21);
}

fn segment(sector: u64, num_sectors: u32, flags: u32) -> [u8; 16] {
    Segment {
        sector,
        num_sectors,
        flags,
    }
    .to_bytes()
}

#[test]
fn discard_and_write_zeroes_are_offered_only_when_the_image_discards() {
    let with = Block::new(MemDisk::new(DISK_LEN, true).0, false, "d");
    let without = Block::new(MemDisk::new(DISK_LEN, false).0, false, "d");
    let bits = 1 << feature::DISCARD | 1 << feature::WRITE_ZEROES;
    assert_eq!(with.device_features() & bits, bits);
    assert_eq!(without.device_features() & bits, 0);

    let mut config = [0u8; 4];
    with.read_config(config_field::MAX_DISCARD_SEG.start as u64, &mut config);
    assert_eq!(u32::from_le_bytes(config), 16);
    without.read_config(config_field::MAX_DISCARD_SEG.start as u64, &mut config);
    assert_eq!(u32::from_le_bytes(config), 0);

    // A driver that sends them anyway gets UNSUPP.
    let memory = crate::virtio::test_utils::memory();
    let mut rig = Rig::new(&memory, false, false);
    write(&memory, DATA, &segment(0, 8, 0));
    let (status, _) = rig.run(kind::DISCARD, 0, &[readable(DATA, 16), status_desc()]);
    assert_eq!(status, UNSUPP);
    assert!(rig.seen.lock().unwrap().discards.is_empty());
}

#[test]
fn discard_passes_every_segment_to_the_image() {
    let memory = crate::virtio::test_utils::memory();
    let mut rig = Rig::new(&memory, false, true);
    let mut segments = segment(2, 8, 0).to_vec();
    segments.extend(segment(20, 4, 0));
    write(&memory, DATA, &segments);
    let (status, used_len) = rig.run(kind::DISCARD, 0, &[readable(DATA, 32), status_desc()]);
    assert_eq!((status, used_len), (OK, 1));
    assert_eq!(
        rig.seen.lock().unwrap().discards,
        [(2 * 512, 8 * 512), (20 * 512, 4 * 512)]
    );
}

#[test]
fn discard_with_the_unmap_flag_is_unsupported() {
    let memory = crate::virtio::test_utils::memory();
    let mut rig = Rig::new(&memory, false, true);
    write(&memory, DATA, &segment(2, 8, 1));
    let (status, _) = rig.run(kind::DISCARD, 0, &[readable(DATA, 16), status_desc()]);
    assert_eq!(status, UNSUPP);
    assert!(rig.seen.lock().unwrap().discards.is_empty());
}

#[test]
fn write_zeroes_with_unmap_zeroes_and_may_unmap() {
    let memory = crate::virtio::test_utils::memory();
    let mut rig = Rig::new(&memory, false, true);
    write(&memory, DATA, &segment(4, 2, 1));
    let (status, _) = rig.run(kind::WRITE_ZEROES, 0, &[readable(DATA, 16), status_desc()]);
    assert_eq!(status, OK);
    assert_eq!(rig.seen.lock().unwrap().zeroes, [(4 * 512, 2 * 512, true)]);
    assert_eq!(rig.disk(4 * 512, 1024), vec![0; 1024]);
    assert_ne!(rig.disk(6 * 512, 1), [0], "the sector after is kept");
}

#[test]
fn write_zeroes_with_an_unknown_flag_is_unsupported() {
    let memory = crate::virtio::test_utils::memory();
    let mut rig = Rig::new(&memory, false, true);
    write(&memory, DATA, &segment(4, 2, 2));
    let (status, _) = rig.run(kind::WRITE_ZEROES, 0, &[readable(DATA, 16), status_desc()]);
    assert_eq!(status, UNSUPP);
    assert!(rig.seen.lock().unwrap().zeroes.is_empty());
}

#[test]
fn discard_segment_past_the_end_fails() {
    let memory = crate::virtio::test_utils::memory();
    let mut rig = Rig::new(&memory, false, true);
    write(&memory, DATA, &segment(60, 8, 0));
    let (status, _) = rig.run(kind::DISCARD, 0, &[readable(DATA, 16), status_desc()]);
    assert_eq!(status, IOERR);
    assert!(rig.seen.lock().unwrap().discards.is_empty());
}

#[test]
fn rejects_a_header_too_short() {
    let memory = crate::virtio::test_utils::memory();
    let mut rig = Rig::new(&memory, false, false);
    write(&memory, STATUS, &[UNTOUCHED]);
    let head = rig.offer_chain(&[readable(HEADER, 8), writable(DATA, 512), status_desc()]);
    rig.device.queue_notified(0).unwrap();
    assert_eq!(used(&rig.queue, 0), (1, u32::from(head), 1));
    assert_eq!(rig.status(), IOERR);
}

#[test]
fn a_status_descriptor_not_writable_leaves_the_request_unanswered() {
    let memory = crate::virtio::test_utils::memory();
    let mut rig = Rig::new(&memory, false, false);
    let (status, used_len) = rig.run(kind::IN, 0, &[writable(DATA, 512), readable(STATUS, 1)]);
    assert_eq!((status, used_len), (UNTOUCHED, 0));
}

#[test]
fn a_status_descriptor_outside_memory_leaves_the_request_unanswered() {
    let memory = crate::virtio::test_utils::memory();
    let mut rig = Rig::new(&memory, false, false);
    let head = rig.offer(kind::FLUSH, 0, &[writable(OUTSIDE, 1)]);
    rig.device.queue_notified(0).unwrap();
    assert_eq!(used(&rig.queue, 0), (1, u32::from(head), 0));
    assert_eq!(rig.seen.lock().unwrap().flushes, 0);
}

#[test]
fn write_to_a_read_only_disk_fails_and_leaves_it_unchanged() {
    let memory = crate::virtio::test_utils::memory();
    let mut rig = Rig::new(&memory, true, true);
    assert_ne!(rig.device.device_features() & 1 << feature::RO, 0);
    let before = rig.disk(0, 512);
    write(&memory, DATA, &[0u8; 512]);
    let (status, _) = rig.run(kind::OUT, 0, &[readable(DATA, 512), status_desc()]);
    assert_eq!(status, IOERR);
    assert_eq!(rig.disk(0, 512), before);
}

#[test]
fn discard_and_write_zeroes_on_a_read_only_disk_fail() {
    let memory = crate::virtio::test_utils::memory();
    let mut rig = Rig::new(&memory, true, true);
    write(&memory, DATA, &segment(0, 1, 0));
    let (status, _) = rig.run(kind::DISCARD, 0, &[readable(DATA, 16), status_desc()]);
    assert_eq!(status, IOERR);
    let seen = rig.seen.clone();
    let head = rig.offer(kind::WRITE_ZEROES, 0, &[readable(DATA, 16), status_desc()]);
    rig.device.queue_notified(0).unwrap();
    assert_eq!(used(&rig.queue, 1).1, u32::from(head));
    assert_eq!(rig.status(), IOERR);
    let seen = seen.lock().unwrap();
    assert!(seen.discards.is_empty() && seen.zeroes.is_empty());
}

#[test]
fn a_request_beyond_the_end_fails() {
    let memory = crate::virtio::test_utils::memory();
    let mut rig = Rig::new(&memory, false, false);
    // Sectors 63 and 64 of a 64-sector disk.
    let (status, used_len) = rig.run(kind::IN, 63, &[writable(DATA, 1024), status_desc()]);
    assert_eq!((status, used_len), (IOERR, 1));
}

#[test]
fn a_sector_whose_offset_overflows_fails() {
    let memory = crate::virtio::test_utils::memory();
    let mut rig = Rig::new(&memory, false, false);
    let (status, _) = rig.run(
        kind::IN,
        u64::MAX / 256,
        &[writable(DATA, 512), status_desc()],
    );
    assert_eq!(status, IOERR);
}

#[test]
fn a_length_not_a_multiple_of_512_fails() {
    let memory = crate::virtio::test_utils::memory();
    let mut rig = Rig::new(&memory, false, false);
    let before = rig.disk(0, 1024);
    let (status, _) = rig.run(kind::OUT, 0, &[readable(DATA, 700), status_desc()]);
    assert_eq!(status, IOERR);
    assert_eq!(rig.disk(0, 1024), before);
}

#[test]
fn data_of_the_wrong_direction_fails() {
    let memory = crate::virtio::test_utils::memory();
    let mut rig = Rig::new(&memory, false, false);
    write(&memory, DATA, &[0x11; 512]);
    let (status, _) = rig.run(kind::IN, 0, &[readable(DATA, 512), status_desc()]);
    assert_eq!(status, IOERR);
    assert_eq!(
        read(&memory, DATA, 512),
        vec![0x11; 512],
        "the readable buffer is kept"
    );
}

#[test]
fn an_unknown_type_is_unsupported() {
    let memory = crate::virtio::test_utils::memory();
    let mut rig = Rig::new(&memory, false, false);
    // VIRTIO_BLK_T_GET_LIFETIME, not offered.
    let (status, used_len) = rig.run(10, 0, &[writable(DATA, 8), status_desc()]);
    assert_eq!((status, used_len), (UNSUPP, 1));
}

#[test]
fn a_data_descriptor_outside_guest_memory_fails() {
    let memory = crate::virtio::test_utils::memory();
    let mut rig = Rig::new(&memory, false, false);
    let (status, _) = rig.run(kind::IN, 0, &[writable(OUTSIDE, 512), status_desc()]);
    assert_eq!(status, IOERR);
    // Straddling the end of guest memory.
    rig.offer(
        kind::OUT,
        0,
        &[readable((16 << 20) - 256, 512), status_desc()],
    );
    rig.device.queue_notified(0).unwrap();
    assert_eq!(rig.status(), IOERR);
}

#[test]
fn a_looping_chain_is_returned_unanswered_and_the_queue_goes_on() {
    let memory = crate::virtio::test_utils::memory();
    let mut rig = Rig::new(&memory, false, false);
    write(
        &memory,
        HEADER,
        &RequestHeader {
            kind: kind::FLUSH,
            sector: 0,
        }
        .to_bytes(),
    );
    write(&memory, STATUS, &[UNTOUCHED]);
    // Descriptor 1 points back at 0.
    let raw = |addr, len, flags, next| {
        virtio_queue::desc::RawDescriptor::from(virtio_queue::desc::split::Descriptor::new(
            addr, len, flags, next,
        ))
    };
    let next = virtio_bindings::virtio_ring::VRING_DESC_F_NEXT as u16;
    let write_flag = virtio_bindings::virtio_ring::VRING_DESC_F_WRITE as u16;
    rig.queue
        .add_desc_chains(
            &[
                raw(HEADER, 16, next, 1),
                raw(STATUS, 1, write_flag | next, 0),
            ],
            0,
        )
        .unwrap();
    rig.next = 2;
    let head = rig.offer(kind::FLUSH, 0, &[status_desc()]);
    rig.device.queue_notified(0).unwrap();
    assert_eq!(used(&rig.queue, 0), (2, 0, 0), "the loop: used length 0");
    assert_eq!(
        used(&rig.queue, 1),
        (2, u32::from(head), 1),
        "the next is served"
    );
    assert_eq!(rig.seen.lock().unwrap().flushes, 1);
}

#[test]
fn a_chain_longer_than_the_queue_is_returned_unanswered() {
    let memory = crate::virtio::test_utils::memory();
    let disk = MemDisk::new(DISK_LEN, false).0;
    let Rig {
        queue, mut device, ..
    } = Rig::over(&memory, disk, false, "d", 8);
    // An indirect table may hold more descriptors than the queue (virtio-queue follows it
    // for its own length): header, 10 data, status, 12 in all.
    write(
        &memory,
        HEADER,
        &RequestHeader {
            kind: kind::IN,
            sector: 0,
        }
        .to_bytes(),
    );
    write(&memory, STATUS, &[UNTOUCHED]);
    let table = BUFFERS + 0x8000;
    let entry = |i: u64, (addr, len, flags): (u64, u32, u16)| {
        let next = virtio_bindings::virtio_ring::VRING_DESC_F_NEXT as u16;
        let flags = if i < 11 { flags | next } else { flags };
        let mut raw = addr.to_le_bytes().to_vec();
        raw.extend(len.to_le_bytes());
        raw.extend(flags.to_le_bytes());
        raw.extend((i as u16 + 1).to_le_bytes());
        write(&memory, table + 16 * i, &raw);
    };
    entry(0, readable(HEADER, 16));
    for i in 1..11 {
        entry(i, writable(DATA + i * 512, 512));
    }
    entry(11, status_desc());
    let indirect = virtio_bindings::virtio_ring::VRING_DESC_F_INDIRECT as u16;
    add_chain(&queue, 0, &[(table, 12 * 16, indirect)]);
    device.queue_notified(0).unwrap();
    assert_eq!(used(&queue, 0), (1, 0, 0));
    assert_eq!(read(&memory, STATUS, 1)[0], UNTOUCHED);
}

#[test]
fn an_avail_index_past_the_queue_size_needs_a_reset() {
    let memory = crate::virtio::test_utils::memory();
    let mut rig = Rig::new(&memory, false, false);
    rig.queue.avail().idx().store(QUEUE_SIZE + 1);
    let err = rig.device.queue_notified(0).unwrap_err();
    assert_eq!(err.queue, 0);
    assert!(err.reason.contains("available ring"), "{err}");
}

#[test]
fn a_batch_of_requests_signals_the_interrupt_once() {
    let memory = crate::virtio::test_utils::memory();
    let mut rig = Rig::new(&memory, false, false);
    for _ in 0..3 {
        rig.offer(kind::FLUSH, 0, &[status_desc()]);
    }
    rig.device.queue_notified(0).unwrap();
    assert_eq!(rig.queue.used().idx().load(), 3);
    assert_eq!(rig.seen.lock().unwrap().flushes, 3);
    assert_eq!(rig.interrupts.count(), 1);
}

#[test]
fn event_idx_holds_the_interrupt_until_the_driver_asks() {
    let memory = crate::virtio::test_utils::memory();
    let mut rig = Rig::new(&memory, false, false);
    // used_event (after the avail ring) = 1: interrupt when the second request is used.
    let used_event = rig.queue.avail_addr().0 + 4 + 2 * u64::from(QUEUE_SIZE);
    write(&memory, used_event, &1u16.to_le_bytes());
    rig.offer(kind::FLUSH, 0, &[status_desc()]);
    rig.device.queue_notified(0).unwrap();
    assert_eq!(rig.interrupts.count(), 0);
    rig.offer(kind::FLUSH, 0, &[status_desc()]);
    rig.device.queue_notified(0).unwrap();
    assert_eq!(rig.interrupts.count(), 1);
}

#[test]
fn config_space_has_capacity_seg_max_and_blk_size() {
    let device = Block::new(MemDisk::new(DISK_LEN, false).0, false, "d");
    let mut bytes = [0u8; 24];
    device.read_config(0, &mut bytes);
    assert_eq!(u64::from_le_bytes(bytes[0..8].try_into().unwrap()), 64);
    assert_eq!(
        u32::from_le_bytes(bytes[12..16].try_into().unwrap()),
        SEG_MAX
    );
    assert_eq!(u32::from_le_bytes(bytes[20..24].try_into().unwrap()), 512);
    let features = device.device_features();
    for bit in [
        feature::VERSION_1,
        feature::FLUSH,
        feature::SEG_MAX,
        feature::BLK_SIZE,
    ] {
        assert_ne!(features & 1 << bit, 0, "bit {bit}");
    }
    assert_eq!(features & 1 << feature::RO, 0);
    // Past the end reads as zeros; a write changes nothing.
    let mut past = [0xffu8; 4];
    device.read_config(1000, &mut past);
    assert_eq!(past, [0; 4]);
    let mut device = device;
    device.write_config(0, &[0xff; 8]);
    let mut capacity = [0u8; 8];
    device.read_config(0, &mut capacity);
    assert_eq!(u64::from_le_bytes(capacity), 64);
}

#[test]
fn notifications_before_activation_and_after_reset_do_nothing() {
    let memory = crate::virtio::test_utils::memory();
    let mut rig = Rig::new(&memory, false, false);
    rig.device.reset();
    rig.offer(kind::FLUSH, 0, &[status_desc()]);
    rig.device.queue_notified(0).unwrap();
    assert_eq!(rig.queue.used().idx().load(), 0);
    assert_eq!(rig.seen.lock().unwrap().flushes, 0);
}

#[test]
fn activation_wants_exactly_one_queue() {
    let memory = crate::virtio::test_utils::memory();
    let mut device = Block::new(MemDisk::new(DISK_LEN, false).0, false, "d");
    let (act, _) = activation(&memory, &[], device.device_features());
    assert!(device.activate(act).is_err());
}

/// Counts how many times a failing image was asked, to show a failed I/O is IOERR.
#[derive(Debug)]
struct FailingDisk(Arc<AtomicUsize>);

impl DiskImage for FailingDisk {
    fn capacity(&self) -> u64 {
        DISK_LEN as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(DiskError::Io {
            path: "failing.img".into(),
            source: std::io::Error::other(format!("read {} at {offset}", buf.len())),
        })
    }
    fn write_at(&mut self, _: u64, _: &[u8]) -> Result<(), DiskError> {
        unreachable!("not written")
    }
    fn flush(&mut self) -> Result<(), DiskError> {
        Ok(())
    }
}

#[test]
fn an_image_error_is_ioerr() {
    let memory = crate::virtio::test_utils::memory();
    let calls = Arc::new(AtomicUsize::new(0));
    let disk = Box::new(FailingDisk(calls.clone()));
    let Rig {
        queue, mut device, ..
    } = Rig::over(&memory, disk, false, "d", QUEUE_SIZE);
    write(
        &memory,
        HEADER,
        &RequestHeader {
            kind: kind::IN,
            sector: 0,
        }
        .to_bytes(),
    );
    add_chain(
        &queue,
        0,
        &[readable(HEADER, 16), writable(DATA, 512), status_desc()],
    );
    device.queue_notified(0).unwrap();
    assert_eq!(read(&memory, STATUS, 1)[0], IOERR);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
