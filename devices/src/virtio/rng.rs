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

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        let Some(queue) = activation.queues.into_iter().next().filter(Queue::ready) else {
            return Err(ActivateError {
                device: "virtio-rng".into(),
                reason: "the driver did not set up the request queue".into(),
            });
        };
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
            device: "virtio-rng".into(),
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
            active
                .interrupt
                .signal_used_queue()
                .map_err(|e| error(format!("cannot raise the interrupt: {e}")))?;
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
