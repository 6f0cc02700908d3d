//! Driver-side helpers for the device tests: guest memory, queues from virtio-queue's
//! `MockSplitQueue`, and an interrupt that counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::RawDescriptor;
use virtio_queue::desc::split::{Descriptor as SplitDescriptor, VirtqUsedElem};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress};

use super::{Activation, GuestMemory, Queue, VirtioInterrupt};
use crate::Interrupt;

/// Guest memory: 16 MiB from 0. The mock queues sit at the bottom; buffers from [`BUFFERS`].
pub(crate) fn memory() -> GuestMemory {
    GuestMemory::from_ranges(&[(GuestAddress(0), 16 << 20)]).expect("16 MiB of anonymous memory")
}

/// Where test buffers start, past any mock queue.
pub(crate) const BUFFERS: u64 = 0x10_0000;

/// An address no guest memory backs.
pub(crate) const OUTSIDE: u64 = 0x1_0000_0000;

/// An interrupt line that counts its edges.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicUsize);

impl Counter {
    pub(crate) fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Interrupt for Counter {
    fn trigger(&self) -> std::io::Result<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// What the transport would hand a device on DRIVER_OK with these mock queues.
pub(crate) fn activation(
    memory: &GuestMemory,
    queues: &[&MockSplitQueue<'_, GuestMemory>],
    acked_features: u64,
) -> (Activation, Arc<Counter>) {
    let counter = Arc::new(Counter::default());
    let activation = Activation {
        memory: memory.clone(),
        queues: queues
            .iter()
            .map(|q| q.create_queue::<Queue>().expect("mock queue is valid"))
            .collect(),
        interrupt: VirtioInterrupt::new(counter.clone()),
        acked_features,
    };
    (activation, counter)
}

/// A device-readable buffer.
pub(crate) fn readable(addr: u64, len: u32) -> (u64, u32, u16) {
    (addr, len, 0)
}

/// A device-writable buffer.
pub(crate) fn writable(addr: u64, len: u32) -> (u64, u32, u16) {
    (addr, len, VRING_DESC_F_WRITE as u16)
}

/// Puts a chain of `buffers` at descriptor `first` onward and makes it available.
pub(crate) fn add_chain(
    queue: &MockSplitQueue<'_, GuestMemory>,
    first: u16,
    buffers: &[(u64, u32, u16)],
) {
    let last = buffers.len() - 1;
    let descriptors: Vec<RawDescriptor> = buffers
        .iter()
        .enumerate()
        .map(|(i, &(addr, len, flags))| {
            let (flags, next) = if i == last {
                (flags, 0)
            } else {
                (flags | VRING_DESC_F_NEXT as u16, first + i as u16 + 1)
            };
            RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next))
        })
        .collect();
    queue
        .add_desc_chains(&descriptors, first)
        .expect("chain fits the mock queue");
}

/// The used ring's index and its element `i` (the head index and the used length).
pub(crate) fn used(queue: &MockSplitQueue<'_, GuestMemory>, i: u16) -> (u16, u32, u32) {
    let elem: VirtqUsedElem = queue
        .used()
        .ring()
        .ref_at(usize::from(i))
        .expect("index within the ring")
        .load();
    (queue.used().idx().load(), elem.id(), elem.len())
}

/// `len` bytes of guest memory at `addr`.
pub(crate) fn read(memory: &GuestMemory, addr: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    memory
        .read_slice(&mut out, GuestAddress(addr))
        .expect("test address in guest memory");
    out
}

/// Writes `bytes` to guest memory at `addr`.
pub(crate) fn write(memory: &GuestMemory, addr: u64, bytes: &[u8]) {
    memory
        .write_slice(bytes, GuestAddress(addr))
        .expect("test address in guest memory");
}
