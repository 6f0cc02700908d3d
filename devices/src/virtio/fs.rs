//! virtio-fs (virtio 1.2 §5.11): a host directory the guest mounts (`mount -t virtiofs TAG
//! /dst`), served by a vhost-user backend (virtiofsd) over FUSE requests on the queues.
//!
//! The VMM keeps the transport, the configuration space (the tag) and the interrupt; the
//! backend process reads the queues and the guest's buffers itself
//! ([`super::vhost_user`]). Two queues: the high-priority queue (FUSE_INTERRUPT,
//! FUSE_FORGET) and one request queue.

use std::os::fd::RawFd;
use std::path::Path;

use virtio_bindings::virtio_ids::VIRTIO_ID_FS;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use super::vhost_user::{VhostUserConnection, VhostUserError};
use super::{
    ActivateError, Activation, BackendLost, HostError, QueueError, VirtioDevice, VirtioInterrupt,
};

/// The tag's field in the configuration space (virtio 1.2 §5.11.4): UTF-8, NUL-padded, not
/// NUL-terminated when it takes all 36 bytes.
pub const TAG_LEN: usize = 36;

/// The request queues the device has (`num_request_queues`), besides the high-priority one.
const REQUEST_QUEUES: u32 = 1;

/// Each queue's largest size: virtiofsd's own limit (its `QUEUE_SIZE`), as Cloud Hypervisor
/// and QEMU offer it.
const QUEUE_SIZE: u16 = 1024;

/// The high-priority queue and the request queue.
const QUEUE_SIZES: [u16; 1 + REQUEST_QUEUES as usize] = [QUEUE_SIZE; 1 + REQUEST_QUEUES as usize];

/// The feature bits passed through from the backend to the driver: the rest of what a
/// backend may offer (VHOST_USER_F_PROTOCOL_FEATURES, logging) is between it and us.
const PASSED_FEATURES: u64 = (1 << virtio_bindings::virtio_config::VIRTIO_F_VERSION_1)
    | (1 << VIRTIO_RING_F_EVENT_IDX)
    | (1 << VIRTIO_RING_F_INDIRECT_DESC);

/// Why a virtio-fs device could not be made.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The tag is empty, longer than [`TAG_LEN`] bytes or holds a NUL.
    #[error("virtio-fs: tag {tag:?}: {reason}")]
    Tag {
        /// The tag given.
        tag: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The backend could not be reached or negotiated with.
    #[error(transparent)]
    Backend(#[from] VhostUserError),
    /// Creating a call eventfd failed.
    #[error("virtio-fs: create a call eventfd: {0}")]
    EventFd(#[source] std::io::Error),
}

/// A virtio-fs device whose backend listens on a vhost-user socket.
#[derive(Debug)]
pub struct Fs {
    tag: String,
    /// The configuration space: `tag`, then `num_request_queues` (le32).
    config: [u8; TAG_LEN + 4],
    backend: VhostUserConnection,
    /// Per queue, what the backend signals when it used buffers (SET_VRING_CALL).
    calls: Vec<EventFd>,
    /// Per queue, what KVM signals on the driver's QueueNotify: the transport's, adopted
    /// ([`VirtioDevice::adopt_queue_events`]) and handed to the backend (SET_VRING_KICK).
    kicks: Vec<EventFd>,
    /// The interrupt while the device is live.
    interrupt: Option<VirtioInterrupt>,
}

impl Fs {
    /// A virtio-fs device the guest mounts as `tag`, served by the backend listening on
    /// `socket` (connected and negotiated now, so a backend that is not there fails the
    /// launch before the guest boots).
    ///
    /// Errors: [`FsError::Tag`]; [`FsError::Backend`] when connecting or negotiating fails;
    /// [`FsError::EventFd`].
    pub fn new(tag: &str, socket: &Path) -> Result<Self, FsError> {
        let bad_tag = |reason| FsError::Tag {
            tag: tag.to_owned(),
            reason,
        };
        if tag.is_empty() {
            return Err(bad_tag("it is empty"));
        }
        if tag.len() > TAG_LEN {
            return Err(bad_tag(
                "it is longer than the 36 bytes of the config space's field",
            ));
        }
        if tag.contains('\0') {
            return Err(bad_tag("it holds a NUL byte"));
        }
        let mut config = [0u8; TAG_LEN + 4];
        config[..tag.len()].copy_from_slice(tag.as_bytes());
        config[TAG_LEN..].copy_from_slice(&REQUEST_QUEUES.to_le_bytes());
        let backend = VhostUserConnection::connect(socket, QUEUE_SIZES.len())?;
        let calls = QUEUE_SIZES
            .iter()
            .map(|_| EventFd::new(EFD_NONBLOCK))
            .collect::<std::io::Result<_>>()
            .map_err(FsError::EventFd)?;
        Ok(Self {
            tag: tag.to_owned(),
            config,
            backend,
            calls,
            kicks: Vec::new(),
            interrupt: None,
        })
    }

    /// The tag the guest mounts.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// How the device with `tag` names itself in its errors ([`BackendLost::device`]).
    pub fn device_name(tag: &str) -> String {
        format!("virtio-fs {tag}")
    }

    fn name(&self) -> String {
        Self::device_name(&self.tag)
    }

    /// The backend hung up: the device can do nothing more.
    fn backend_gone(&self) -> BackendLost {
        BackendLost {
            device: self.name(),
            reason: format!(
                "the vhost-user backend at {} hung up",
                self.backend.socket().display()
            ),
        }
    }
}

impl VirtioDevice for Fs {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_FS
    }

    fn device_features(&self) -> u64 {
        self.backend.features() & PASSED_FEATURES
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        crate::virtio::read_config_bytes(&self.config, offset, data);
    }

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        let Activation {
            memory,
            queues,
            interrupt,
            acked_features,
        } = activation;
        if self.kicks.len() != queues.len() {
            return Err(ActivateError {
                device: self.name(),
                reason: "the transport did not hand over the queue eventfds".into(),
            });
        }
        if let Err(error) =
            self.backend
                .start(acked_features, &memory, &queues, &self.kicks, &self.calls)
        {
            // What did start must not go on touching guest memory.
            let _ = self.backend.stop();
            return Err(ActivateError {
                device: self.name(),
                reason: error.to_string(),
            });
        }
        self.interrupt = Some(interrupt);
        Ok(())
    }

    fn queue_notified(&mut self, index: usize) -> Result<(), QueueError> {
        // Not reached: the backend reads the kicks itself.
        tracing::debug!(device = %self.name(), index, "queue notification reached the VMM");
        Ok(())
    }

    fn host_fds(&self) -> Vec<RawFd> {
        use std::os::fd::AsRawFd;
        self.calls
            .iter()
            .map(AsRawFd::as_raw_fd)
            .chain([self.backend.socket_fd()])
            .collect()
    }

    fn host_ready(&mut self, fd: RawFd) -> Result<(), HostError> {
        use std::os::fd::AsRawFd;
        if fd == self.backend.socket_fd() {
            // Readable outside a request: the backend hung up (it sends nothing unasked), or
            // the reply an activation has just read (its readiness seen before it did).
            return if self.backend.hung_up() {
                Err(self.backend_gone().into())
            } else {
                Ok(())
            };
        }
        let Some(call) = self.calls.iter().find(|call| call.as_raw_fd() == fd) else {
            return Ok(());
        };
        // Non-blocking: EAGAIN when there was nothing after all.
        let _ = call.read();
        if let Some(interrupt) = &self.interrupt {
            interrupt.signal_used_queue_or_log(&self.name());
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.interrupt = None;
        if let Err(error) = self.backend.stop() {
            tracing::debug!(device = %self.name(), %error, "stopping the backend's rings failed");
        }
    }

    fn shares_guest_memory(&self) -> bool {
        true
    }

    fn adopt_queue_events(&mut self, events: &[EventFd]) -> std::io::Result<bool> {
        self.kicks = events
            .iter()
            .map(EventFd::try_clone)
            .collect::<std::io::Result<_>>()?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
