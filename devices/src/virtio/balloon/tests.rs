//! The balloon against virtio-queue's mock driver and real host memory: reported pages leave
//! the host (mincore), others stay, and a bad report is refused without touching anything.

use std::sync::Arc;

use virtio_queue::desc::RawDescriptor;
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend as _};

use super::*;
use crate::virtio::test_device::CountingLine;

const WRITE: u16 = virtio_bindings::virtio_ring::VRING_DESC_F_WRITE as u16;
const NEXT: u16 = virtio_bindings::virtio_ring::VRING_DESC_F_NEXT as u16;
const MEMORY_SIZE: usize = 8 << 20;
/// Where the mock rings live (below) and where the reported pages are (above).
const PAGES: u64 = 4 << 20;

fn memory() -> GuestMemory {
    GuestMemory::from_ranges(&[(GuestAddress(0), MEMORY_SIZE)]).expect("memory")
}

/// An activated balloon whose reporting_vq is `mock` (the two balloon queues too, unused).
fn activated(
    memory: &GuestMemory,
    mock: &MockSplitQueue<GuestMemory>,
) -> (Balloon, Arc<CountingLine>) {
    let line = Arc::new(CountingLine::default());
    let mut balloon = Balloon::new();
    let queue = || mock.create_queue().expect("queue");
    balloon
        .activate(Activation {
            memory: memory.clone(),
            queues: vec![queue(), queue(), queue()],
            interrupt: VirtioInterrupt::new(line.clone()),
            acked_features: VIRTIO_F_VERSION_1 | VIRTIO_BALLOON_F_FREE_PAGE_REPORTING,
        })
        .expect("activate");
    (balloon, line)
}

/// Puts one chain of device-writable `ranges` on the mock's available ring.
fn report(mock: &MockSplitQueue<GuestMemory>, ranges: &[(u64, u32)]) {
    let descriptors: Vec<RawDescriptor> = ranges
        .iter()
        .enumerate()
        .map(|(i, &(addr, len))| {
            let last = i + 1 == ranges.len();
            let flags = WRITE | if last { 0 } else { NEXT };
            RawDescriptor::from(SplitDescriptor::new(addr, len, flags, i as u16 + 1))
        })
        .collect();
    mock.add_desc_chains(&descriptors, 0).expect("chain");
}

/// How many of the `count` pages from `addr` are resident on the host.
#[allow(unsafe_code)]
fn resident(memory: &GuestMemory, addr: u64, count: usize) -> usize {
    let host = memory
        .get_host_address(GuestAddress(addr))
        .expect("host address");
    let mut pages = vec![0u8; count];
    // SAFETY: mincore reads the page table of our own mapping and writes `count` bytes.
    let rc = unsafe { libc::mincore(host.cast(), count * PAGE_SIZE as usize, pages.as_mut_ptr()) };
    assert_eq!(rc, 0);
    pages.iter().filter(|&&p| p & 1 != 0).count()
}

fn touch(memory: &GuestMemory, addr: u64, len: usize) {
    memory
        .write_slice(&vec![0xa5; len], GuestAddress(addr))
        .expect("write");
}

#[test]
fn reported_pages_leave_the_host_and_read_as_zeros() {
    let memory = memory();
    let mock = MockSplitQueue::new(&memory, 16);
    let (mut balloon, line) = activated(&memory, &mock);
    touch(&memory, PAGES, 8 * PAGE_SIZE as usize);
    assert_eq!(resident(&memory, PAGES, 8), 8);
    // Pages 1-2 and 5 freed; 0, 3, 4, 6 and 7 still the guest's.
    report(
        &mock,
        &[
            (PAGES + PAGE_SIZE, 2 * PAGE_SIZE as u32),
            (PAGES + 5 * PAGE_SIZE, PAGE_SIZE as u32),
        ],
    );
    balloon.queue_notified(REPORTING_VQ).expect("served");
    assert_eq!(resident(&memory, PAGES, 8), 5);
    assert_eq!(balloon.reported_bytes(), 3 * PAGE_SIZE);
    let mut page = [0u8; 4096];
    memory
        .read_slice(&mut page, GuestAddress(PAGES + PAGE_SIZE))
        .expect("read");
    assert!(
        page.iter().all(|&b| b == 0),
        "a reported page reads as zeros"
    );
    memory
        .read_slice(&mut page, GuestAddress(PAGES + 3 * PAGE_SIZE))
        .expect("read");
    assert!(
        page.iter().all(|&b| b == 0xa5),
        "an unreported page keeps its bytes"
    );
    // The chain is returned (used length 0) and the driver told.
    assert_eq!(mock.used().idx().load(), 1);
    assert_eq!(line.count(), 1);
}

#[test]
fn a_report_of_no_whole_pages_or_outside_ram_is_refused_and_returned() {
    let memory = memory();
    let mock = MockSplitQueue::new(&memory, 16);
    let (mut balloon, _line) = activated(&memory, &mock);
    touch(&memory, PAGES, 4 * PAGE_SIZE as usize);
    report(
        &mock,
        &[
            (PAGES + 1, PAGE_SIZE as u32),
            (PAGES + PAGE_SIZE, 100),
            (MEMORY_SIZE as u64 - PAGE_SIZE, 2 * PAGE_SIZE as u32),
            (1 << 40, PAGE_SIZE as u32),
        ],
    );
    balloon.queue_notified(REPORTING_VQ).expect("served");
    assert_eq!(resident(&memory, PAGES, 4), 4, "nothing dropped");
    assert_eq!(balloon.reported_bytes(), 0);
    assert_eq!(mock.used().idx().load(), 1, "returned all the same");
}

#[test]
fn pages_offered_on_the_balloon_queues_are_returned_untouched() {
    let memory = memory();
    let mock = MockSplitQueue::new(&memory, 16);
    let (mut balloon, _line) = activated(&memory, &mock);
    touch(&memory, PAGES, PAGE_SIZE as usize);
    report(&mock, &[(PAGES, PAGE_SIZE as u32)]);
    balloon.queue_notified(INFLATEQ).expect("served");
    assert_eq!(
        resident(&memory, PAGES, 1),
        1,
        "the balloon was never asked to inflate"
    );
    assert_eq!(balloon.reported_bytes(), 0);
}

#[test]
fn the_config_space_asks_for_no_pages_and_keeps_the_driver_s_actual() {
    let mut balloon = Balloon::new();
    assert_eq!(balloon.device_type(), 5);
    assert_ne!(
        balloon.device_features() & (1 << 5),
        0,
        "free page reporting offered"
    );
    assert_eq!(balloon.queue_max_sizes().len(), 3);
    balloon.write_config(ACTUAL_OFFSET, &7u32.to_le_bytes());
    balloon.write_config(0, &9u32.to_le_bytes());
    let mut config = [0xffu8; 8];
    balloon.read_config(0, &mut config);
    assert_eq!(
        config,
        [0, 0, 0, 0, 7, 0, 0, 0],
        "num_pages 0 (read-only), actual 7"
    );
}

#[test]
fn reported_pages_of_shared_ram_leave_its_file_too() {
    use std::os::unix::fs::{FileExt, MetadataExt};

    let file = tempfile::tempfile().expect("tempfile");
    file.set_len(MEMORY_SIZE as u64).expect("size");
    let backing = file.try_clone().expect("dup");
    let memory = GuestMemory::from_ranges_with_files(&[(
        GuestAddress(0),
        MEMORY_SIZE,
        Some(vm_memory::FileOffset::new(file, 0)),
    )])
    .expect("map the file");
    let mock = MockSplitQueue::new(&memory, 16);
    let (mut balloon, _line) = activated(&memory, &mock);
    touch(&memory, PAGES, 4 * PAGE_SIZE as usize);
    let blocks = backing.metadata().expect("stat").blocks();
    report(&mock, &[(PAGES, 4 * PAGE_SIZE as u32)]);
    balloon.queue_notified(REPORTING_VQ).expect("served");
    // What another process mapping the file (a vhost-user backend) reads, and what it holds.
    let mut page = [0xffu8; 4096];
    backing
        .read_exact_at(&mut page, PAGES)
        .expect("read the file");
    assert!(
        page.iter().all(|&b| b == 0),
        "the file's pages are gone too"
    );
    let after = backing.metadata().expect("stat").blocks();
    assert_eq!(
        blocks - after,
        4 * PAGE_SIZE / 512,
        "4 pages of blocks freed"
    );
}
