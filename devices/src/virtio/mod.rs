//! Virtio devices (VIRTIO 1.2) behind the virtio-mmio transport.
//!
//! The seam: a device model implements [`VirtioDevice`]; the transport (virtio-mmio, §4.2)
//! owns the registers, the device status and feature negotiation, checks the driver's queue
//! set-up against guest memory, and on DRIVER_OK hands the device an [`Activation`]: the
//! negotiated features, the queues, guest memory and its interrupt. From then on the device
//! does its work on the VMM's event-loop thread, when a queue's notification arrives
//! ([`VirtioDevice::queue_notified`]) or a host file descriptor it asked for is ready
//! ([`VirtioDevice::host_ready`]); a vCPU thread only ever touches the registers.
//!
//! Everything the guest controls (descriptor addresses and lengths, indexes, request
//! headers) is untrusted: a bad request fails (VIRTIO_BLK_S_IOERR, say), a broken queue puts
//! the device in DEVICE_NEEDS_RESET ([`VirtioDevice::queue_notified`] returns
//! [`QueueError`]), and neither panics or hangs the VMM. What the host side stands on going
//! away for good (a vhost-user backend that exited) is [`BackendLost`]: no reset by the guest
//! brings it back, so the event loop ends the run with it.
//!
//! - [`mmio`]: the virtio-mmio transport (its register state machine builds without std);
//! - [`balloon`]: virtio-balloon, only for the guest's free page reporting;
//! - [`block`]: virtio-blk over a disk image (its request parser builds without std);
//! - [`console`]: virtio-console, the guest's `hvc0`;
//! - [`rng`]: virtio-rng, the entropy device;
//! - [`fs`]: virtio-fs, a host directory served by a vhost-user backend (virtiofsd), over
//!   [`vhost_user`], the frontend side of the vhost-user protocol;
//! - [`vsock`]: virtio-vsock, stream sockets to host processes through a Unix socket.
//!
//! Without the `std` feature only the no_std parts of the modules are here.

#[cfg(feature = "std")]
pub mod balloon;
pub mod block;
#[cfg(feature = "std")]
mod chain;
#[cfg(feature = "std")]
pub mod console;
#[cfg(feature = "std")]
pub mod fs;
#[cfg(feature = "std")]
mod memory;
pub mod mmio;
#[cfg(feature = "std")]
pub mod rng;
#[cfg(test)]
pub(crate) mod test_device;
#[cfg(test)]
mod test_utils;
#[cfg(feature = "std")]
pub mod vhost_user;
#[cfg(feature = "std")]
pub mod vsock;

#[cfg(feature = "std")]
use std::fmt::Debug;
#[cfg(feature = "std")]
use std::os::fd::RawFd;
#[cfg(feature = "std")]
use std::sync::Arc;
#[cfg(feature = "std")]
use std::sync::atomic::{AtomicU32, Ordering};

#[cfg(feature = "std")]
use virtio_bindings::virtio_mmio::{VIRTIO_MMIO_INT_CONFIG, VIRTIO_MMIO_INT_VRING};
#[cfg(feature = "std")]
use vmm_sys_util::eventfd::EventFd;

#[cfg(feature = "std")]
pub use memory::RegionOwner;

#[cfg(feature = "std")]
use crate::Interrupt;

#[cfg(feature = "std")]
/// Guest memory as the devices and the VMM see it (vm-memory's mmap-backed regions, each
/// keeping the VMM's mapping alive: [`RegionOwner`]; cheap to clone).
pub type GuestMemory = vm_memory::GuestMemoryMmap<RegionOwner>;

#[cfg(feature = "std")]
/// A split virtqueue (virtio 1.2 §2.7), rust-vmm's `virtio-queue`.
pub use virtio_queue::Queue;

#[cfg(feature = "std")]
/// A virtio device model, as the transport drives it.
///
/// The life of a device (virtio 1.2 §3.1): the transport offers [`device_features`] and
/// [`queue_max_sizes`], the driver negotiates and sets the queues up, then
/// [`activate`](VirtioDevice::activate) once on DRIVER_OK; [`reset`](VirtioDevice::reset)
/// when the driver writes 0 to the status (the device may be activated again after).
///
/// [`device_features`]: VirtioDevice::device_features
/// [`queue_max_sizes`]: VirtioDevice::queue_max_sizes
pub trait VirtioDevice: Send + Debug {
    /// The device ID (virtio 1.2 §5: 2 for block, 3 for console, 4 for entropy, ...;
    /// `virtio_bindings::virtio_ids`).
    fn device_type(&self) -> u32;

    /// The feature bits the device offers, VIRTIO_F_VERSION_1 (bit 32) included: the
    /// transport refuses a driver that does not accept it.
    fn device_features(&self) -> u64;

    /// The largest size of each queue, one entry per queue (a power of 2, at most 32768).
    fn queue_max_sizes(&self) -> &[u16];

    /// Reads `data.len()` bytes of the device configuration space at `offset` (virtio 1.2
    /// §4.2.2: the registers from 0x100). Bytes past the space's end read as 0.
    fn read_config(&self, offset: u64, data: &mut [u8]);

    /// Writes the device configuration space. A write the device does not allow (a read-only
    /// field, the wrong width, past the end) is ignored, with a debug log line.
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        let _ = data;
        tracing::debug!(
            device = self.device_type(),
            offset,
            "config write ignored: read-only"
        );
    }

    /// Starts the device on DRIVER_OK with what the driver set up.
    ///
    /// Errors: what the device cannot start with (a backing file that went away, say); the
    /// transport then sets DEVICE_NEEDS_RESET.
    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError>;

    /// Queue `index` has new available buffers (its QueueNotify ioeventfd fired, or the
    /// transport saw the write). Runs on the event-loop thread.
    ///
    /// Errors: the queue itself is broken (its rings outside guest memory, an index past its
    /// size); the transport then sets DEVICE_NEEDS_RESET. A bad *request* is not an error
    /// here: it completes with the device's failure status.
    fn queue_notified(&mut self, index: usize) -> Result<(), QueueError>;

    /// Host file descriptors the device waits on besides its queues (a console's input, the
    /// "room again" event of its output), each watched for readability by the event loop.
    fn host_fds(&self) -> Vec<RawFd> {
        Vec::new()
    }

    /// `fd`, one of [`VirtioDevice::host_fds`], is readable (or hung up). Runs on the
    /// event-loop thread, whether the device is live or not (before DRIVER_OK, after a
    /// reset): the device must consume the readiness (read the fd, drop what it cannot use
    /// yet), else the level-triggered loop reports the fd again at once. An fd that hung up
    /// with nothing left to read, or hung up and made this call fail, is no longer watched
    /// after it.
    ///
    /// Errors: [`HostError::Queue`] puts a live device in DEVICE_NEEDS_RESET;
    /// [`HostError::BackendLost`] ends the event loop, and with it the run.
    fn host_ready(&mut self, fd: RawFd) -> Result<(), HostError> {
        let _ = fd;
        Ok(())
    }

    /// The driver reset the device: drop the queues and whatever the activation gave.
    fn reset(&mut self);

    /// Offered once, when the device is attached: the queues' notification eventfds, one per
    /// queue in index order (KVM signals queue `i`'s on the driver's QueueNotify write of
    /// `i`). A device whose queues are served outside the VMM (a vhost-user frontend hands
    /// them to its backend as each ring's kick, VHOST_USER_SET_VRING_KICK: no hop through
    /// the VMM) keeps clones and returns `true`; the event loop then leaves them alone and
    /// [`VirtioDevice::queue_notified`] is never called. The default leaves them to the event
    /// loop.
    ///
    /// Errors: cloning an eventfd failed; the device is not attached.
    fn adopt_queue_events(&mut self, events: &[EventFd]) -> std::io::Result<bool> {
        let _ = events;
        Ok(false)
    }

    /// Whether another process maps guest memory for this device (a vhost-user backend):
    /// then the VMM maps all guest RAM shared, from files it can hand over (kvm-core's
    /// `MemoryBacking::Shared`). The default: no.
    fn shares_guest_memory(&self) -> bool {
        false
    }
}

#[cfg(feature = "std")]
/// [`VirtioDevice::read_config`] over a configuration space held as bytes: `data.len()`
/// bytes from `offset`, those past the end (or all, for an offset past it) read as 0.
pub(crate) fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    if let Some(bytes) = config.get(start..) {
        let n = bytes.len().min(data.len());
        data[..n].copy_from_slice(&bytes[..n]);
    }
}

#[cfg(feature = "std")]
/// What a device gets on DRIVER_OK.
#[derive(Debug)]
pub struct Activation {
    /// Guest memory, where the queues and their buffers are.
    pub memory: GuestMemory,
    /// The queues the driver set up, checked valid against `memory`, in index order (one per
    /// [`VirtioDevice::queue_max_sizes`] entry; a queue the driver left unready is here with
    /// `ready() == false`).
    pub queues: Vec<Queue>,
    /// The device's interrupt, with its InterruptStatus register.
    pub interrupt: VirtioInterrupt,
    /// The features both sides accepted.
    pub acked_features: u64,
}

#[cfg(feature = "std")]
impl Activation {
    /// Takes the device's `N` queues, in index order, each using VIRTIO_RING_F_EVENT_IDX
    /// (virtio 1.2 §2.7.10) as the driver acked it.
    ///
    /// Errors: the transport handed over another number of queues; `names` lists them for the
    /// message, as the device's section of the spec does (`"rx, tx, event"`).
    pub fn take_queues<const N: usize>(
        &mut self,
        device: &str,
        names: &str,
    ) -> Result<[Queue; N], ActivateError> {
        let event_idx =
            self.acked_features & (1 << virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX) != 0;
        let mut queues =
            <[Queue; N]>::try_from(std::mem::take(&mut self.queues)).map_err(|queues| {
                ActivateError {
                    device: device.into(),
                    reason: format!("expected {N} queue(s) ({names}), got {}", queues.len()),
                }
            })?;
        for queue in &mut queues {
            virtio_queue::QueueT::set_event_idx(queue, event_idx);
        }
        Ok(queues)
    }
}

#[cfg(feature = "std")]
/// A device's interrupt line and its InterruptStatus register (virtio 1.2 §4.2.2), shared
/// between the device (which sets bits and triggers) and the transport (where the driver
/// reads and acknowledges them).
#[derive(Clone)]
pub struct VirtioInterrupt {
    status: Arc<AtomicU32>,
    line: Arc<dyn Interrupt>,
}

#[cfg(feature = "std")]
impl Debug for VirtioInterrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioInterrupt")
            .field("status", &self.status.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "std")]
impl VirtioInterrupt {
    /// A line with its status register cleared.
    pub fn new(line: Arc<dyn Interrupt>) -> Self {
        Self {
            status: Arc::new(AtomicU32::new(0)),
            line,
        }
    }

    /// "Used Buffer Notification": the device put buffers in a used ring.
    pub fn signal_used_queue(&self) -> std::io::Result<()> {
        self.status
            .fetch_or(VIRTIO_MMIO_INT_VRING, Ordering::SeqCst);
        self.line.trigger()
    }

    /// [`signal_used_queue`](Self::signal_used_queue) for a device that goes on when it fails:
    /// the failure (a write to the irqfd) is the host's, not the queue's, so it is logged as
    /// `device`'s.
    pub fn signal_used_queue_or_log(&self, device: &str) {
        if let Err(e) = self.signal_used_queue() {
            tracing::warn!(device, error = %e, "cannot signal the used queue");
        }
    }

    /// "Configuration Change Notification" (and how DEVICE_NEEDS_RESET is announced).
    pub fn signal_config_change(&self) -> std::io::Result<()> {
        self.status
            .fetch_or(VIRTIO_MMIO_INT_CONFIG, Ordering::SeqCst);
        self.line.trigger()
    }

    /// The InterruptStatus register's value.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    /// The driver's write to InterruptACK: clears the bits it names.
    pub fn acknowledge(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }
}

#[cfg(feature = "std")]
/// Why a device could not start.
#[derive(Debug, thiserror::Error)]
#[error("{device}: cannot activate: {reason}")]
pub struct ActivateError {
    /// The device, e.g. `virtio-blk vdb`.
    pub device: String,
    /// Why, in one phrase.
    pub reason: String,
}

#[cfg(feature = "std")]
/// A queue the device can no longer use; the transport answers with DEVICE_NEEDS_RESET.
#[derive(Debug, thiserror::Error)]
#[error("{device}: queue {queue}: {reason}")]
pub struct QueueError {
    /// The device, e.g. `virtio-blk vda`.
    pub device: String,
    /// The queue's index.
    pub queue: usize,
    /// What the guest got wrong, with the value (`avail index 513 past the queue's 256`).
    pub reason: String,
}

#[cfg(feature = "std")]
/// The device's host side is gone for good: a vhost-user backend hung up (virtiofsd exited).
/// The guest's requests to it would wait forever, and no reset brings it back.
#[derive(Debug, thiserror::Error)]
#[error("{device}: {reason}")]
pub struct BackendLost {
    /// The device, e.g. `virtio-fs share0`.
    pub device: String,
    /// What went, with where (`the vhost-user backend at /run/capsule/1/share0.sock hung up`).
    pub reason: String,
}

#[cfg(feature = "std")]
/// Why [`VirtioDevice::host_ready`] failed: the guest's doing, or the host's.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A queue the device can no longer use: DEVICE_NEEDS_RESET.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The host side is gone: the run ends.
    #[error(transparent)]
    BackendLost(#[from] BackendLost),
}

#[cfg(test)]
mod tests {
    use virtio_queue::QueueT;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::GuestAddress;

    use super::test_utils::{activation, memory};

    const EVENT_IDX: u64 = 1 << virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;

    #[test]
    fn take_queues_hands_over_each_queue_with_event_idx_as_acked_or_names_them() {
        let memory = memory();
        let (a, b) = (
            MockSplitQueue::create(&memory, GuestAddress(0), 16),
            MockSplitQueue::create(&memory, GuestAddress(0x1_0000), 16),
        );
        for acked in [0, EVENT_IDX] {
            let (mut activation, _) = activation(&memory, &[&a, &b], acked);
            let queues: [_; 2] = activation.take_queues("dev", "x, y").expect("two");
            assert!(queues.iter().all(|q| q.event_idx_enabled() == (acked != 0)));
        }
        let (mut activation, _) = activation(&memory, &[&a], 0);
        let error = activation
            .take_queues::<2>("virtio-dev", "x, y")
            .expect_err("one queue is not two");
        assert_eq!(error.device, "virtio-dev");
        assert_eq!(error.reason, "expected 2 queue(s) (x, y), got 1");
    }
}
