//! virtio-rng, the entropy device (virtio 1.2 §5.4): one queue of driver buffers the device
//! fills with bytes from the host's `getrandom(2)`.

use virtio_bindings::virtio_ids::VIRTIO_ID_RNG;
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory as _, Permissions};

use super::mmio::state::VIRTIO_F_VERSION_1;
use super::{ActivateError, Activation, GuestMemory, QueueError, VirtioDevice, VirtioInterrupt};

/// The size of the one queue (`requestq`) offered.
pub const QUEUE_SIZE: u16 = 256;

/// The most bytes one buffer gets: §5.4.6.1 lets the device use less than the whole buffer,
/// and a guest could otherwise have the loop fill 256 descriptors each spanning its RAM.
pub const MAX_BYTES_PER_BUFFER: usize = 64 << 10;

/// What the device holds once the driver set it up.
#[derive(Debug)]
struct Active {
    memory: GuestMemory,
    queue: Queue,
    interrupt: VirtioInterrupt,
}

/// The device's name in errors and logs.
const NAME: &str = "virtio-rng";

/// The entropy device: no configuration space, no device features.
#[derive(Debug, Default)]
pub struct Rng {
    active: Option<Active>,
}

impl Rng {
    /// A device waiting for its driver.
    pub fn new() -> Self {
        Self::default()
    }
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_RNG
    }

    fn device_features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn activate(&mut self, mut activation: Activation) -> Result<(), ActivateError> {
        let [queue] = activation.take_queues(NAME, "requestq")?;
        if !queue.ready() {
            return Err(ActivateError {
                device: NAME.into(),
                reason: "the driver did not set up the request queue".into(),
            });
        }
        self.active = Some(Active {
            memory: activation.memory,
            queue,
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
        let mut used = false;
        loop {
            let chain = active
                .queue
                .iter(&active.memory)
                .map_err(|e| error(e.to_string()))?
                .next();
            let Some(chain) = chain else {
                break;
            };
            let head = chain.head_index();
            let len = fill(&active.memory, chain);
            active
                .queue
                .add_used(&active.memory, head, len)
                .map_err(|e| error(e.to_string()))?;
            used = true;
        }
        let notify = used
            && active
                .queue
                .needs_notification(&active.memory)
                .map_err(|e| error(e.to_string()))?;
        if notify {
            active.interrupt.signal_used_queue_or_log(NAME);
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
    }
}

/// Fills the chain's buffers, up to [`MAX_BYTES_PER_BUFFER`]; returns the used length. A
/// chain with a device-readable descriptor or a buffer outside guest memory is refused
/// whole (used length 0): nothing is written.
fn fill(memory: &GuestMemory, chain: DescriptorChain<&GuestMemory>) -> u32 {
    let mut buffers = Vec::new();
    for descriptor in chain {
        let (addr, len) = (GuestAddress(descriptor.addr().0), descriptor.len() as usize);
        if !descriptor.is_write_only() {
            tracing::debug!(
                addr = addr.0,
                len,
                "virtio-rng: a device-readable buffer: refused"
            );
            return 0;
        }
        if !memory.check_range(addr, len, Permissions::Write) {
            tracing::debug!(
                addr = addr.0,
                len,
                "virtio-rng: buffer outside guest memory: refused"
            );
            return 0;
        }
        buffers.push((addr, len));
    }
    let mut bytes = [0u8; 4096];
    let mut written = 0;
    for (addr, len) in buffers {
        let mut done = 0;
        while done < len && written < MAX_BYTES_PER_BUFFER {
            let n = (len - done)
                .min(bytes.len())
                .min(MAX_BYTES_PER_BUFFER - written);
            let chunk = &mut bytes[..n];
            let at = addr.checked_add(done as u64);
            let result = getrandom::fill(chunk)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    let at = at.ok_or_else(|| "address overflow".to_owned())?;
                    memory.write_slice(chunk, at).map_err(|e| e.to_string())
                });
            if let Err(error) = result {
                tracing::debug!(addr = addr.0, %error, "virtio-rng: cannot fill the buffer");
                return 0;
            }
            done += n;
            written += n;
        }
    }
    // At most MAX_BYTES_PER_BUFFER.
    written as u32
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::desc::split::Descriptor as SplitDescriptor;
    use virtio_queue::mock::MockSplitQueue;

    use super::*;
    use crate::virtio::test_device::CountingLine;

    const WRITE: u16 = virtio_bindings::virtio_ring::VRING_DESC_F_WRITE as u16;
    const MEMORY_SIZE: usize = 1 << 20;
    const BUFFER: u64 = 0x1_0000;

    fn memory() -> GuestMemory {
        GuestMemory::from_ranges(&[(GuestAddress(0), MEMORY_SIZE)]).expect("memory")
    }

    /// An activated device whose queue is `mock`, and its interrupt line.
    fn activated(
        memory: &GuestMemory,
        mock: &MockSplitQueue<GuestMemory>,
    ) -> (Rng, Arc<CountingLine>) {
        let line = Arc::new(CountingLine::default());
        let mut rng = Rng::new();
        rng.activate(Activation {
            memory: memory.clone(),
            queues: vec![mock.create_queue().expect("queue")],
            interrupt: VirtioInterrupt::new(line.clone()),
            acked_features: VIRTIO_F_VERSION_1,
        })
        .expect("activates");
        (rng, line)
    }

    fn descriptor(addr: u64, len: u32, flags: u16) -> RawDescriptor {
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags, 0))
    }

    /// Offers one chain of `descriptors` and has the device serve it; returns the used length.
    fn serve(descriptors: &[RawDescriptor]) -> (u32, GuestMemory, Arc<CountingLine>) {
        let memory = memory();
        let mock = MockSplitQueue::new(&memory, 16);
        mock.build_desc_chain(descriptors).expect("chain");
        let (mut rng, line) = activated(&memory, &mock);
        rng.queue_notified(0).expect("the queue is fine");
        assert_eq!(mock.used().idx().load(), 1, "one chain used");
        let used = mock.used().ring().ref_at(0).expect("entry").load();
        (used.len(), memory, line)
    }

    fn bytes(memory: &GuestMemory, addr: u64, len: usize) -> Vec<u8> {
        let mut data = vec![0; len];
        memory
            .read_slice(&mut data, GuestAddress(addr))
            .expect("read");
        data
    }

    #[test]
    fn writable_buffers_are_filled_with_random_bytes() {
        let (used, memory, line) = serve(&[
            descriptor(BUFFER, 64, WRITE),
            descriptor(BUFFER + 0x1000, 32, WRITE),
        ]);
        assert_eq!(used, 96);
        assert_ne!(bytes(&memory, BUFFER, 64), [0; 64]);
        assert_ne!(bytes(&memory, BUFFER + 0x1000, 32), [0; 32]);
        assert_eq!(line.count(), 1, "the driver hears of it");
    }

    #[test]
    fn a_chain_with_a_readable_buffer_is_refused_whole() {
        let (used, memory, _) = serve(&[
            descriptor(BUFFER, 64, WRITE),
            descriptor(BUFFER + 0x1000, 32, 0),
        ]);
        assert_eq!(used, 0);
        assert_eq!(bytes(&memory, BUFFER, 64), [0; 64], "nothing written");
    }

    #[test]
    fn a_buffer_beyond_guest_memory_is_refused() {
        let (used, memory, _) = serve(&[
            descriptor(BUFFER, 64, WRITE),
            descriptor(MEMORY_SIZE as u64 - 16, 32, WRITE),
        ]);
        assert_eq!(used, 0);
        assert_eq!(bytes(&memory, BUFFER, 64), [0; 64]);
    }

    #[test]
    fn a_huge_buffer_gets_at_most_the_cap() {
        let (used, _, _) = serve(&[descriptor(BUFFER, 512 << 10, WRITE)]);
        assert_eq!(used as usize, MAX_BYTES_PER_BUFFER);
    }

    #[test]
    fn an_avail_index_past_the_queue_is_a_queue_error() {
        let memory = memory();
        let mock = MockSplitQueue::new(&memory, 16);
        let (mut rng, _) = activated(&memory, &mock);
        mock.avail().idx().store(17);
        let error = rng.queue_notified(0).expect_err("broken queue");
        assert_eq!(error.queue, 0);
    }

    #[test]
    fn a_reset_device_ignores_notifications() {
        let memory = memory();
        let mock = MockSplitQueue::new(&memory, 16);
        mock.build_desc_chain(&[descriptor(BUFFER, 64, WRITE)])
            .expect("chain");
        let (mut rng, _) = activated(&memory, &mock);
        rng.reset();
        rng.queue_notified(0).expect("nothing to do");
        assert_eq!(mock.used().idx().load(), 0);
    }
}
