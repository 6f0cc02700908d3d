//! The device: its configuration space, its three queues and how they meet the muxer.

use std::path::{Path, PathBuf};

use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ids::VIRTIO_ID_VSOCK;
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use virtio_queue::{QueueOwnedT, QueueT};
use virtio_vsock::packet::{PKT_HEADER_SIZE, VsockPacket};

use super::muxer::Muxer;
use super::packet::HOST_CID;
use super::{EVQ, MAX_PKT_DATA, NAME, QUEUE_SIZE, RX_QUEUE_SIZE, RXQ, TXQ, VsockError};
use crate::virtio::{
    ActivateError, Activation, GuestMemory, HostError, Queue, QueueError, VirtioDevice,
    VirtioInterrupt,
};
use crate::virtio::{chain, read_config_bytes};

/// VIRTIO_RING_F_EVENT_IDX: `used_event` and `avail_event` (§2.7.10).
const EVENT_IDX: u64 = 1 << VIRTIO_RING_F_EVENT_IDX;

/// VIRTIO_F_VERSION_1 and EVENT_IDX; no VIRTIO_VSOCK_F_SEQPACKET (streams only).
const FEATURES: u64 = 1 << VIRTIO_F_VERSION_1 | EVENT_IDX;

/// A virtio-vsock device: the guest `guest_cid`, the host side a Unix socket.
#[derive(Debug)]
pub struct Vsock {
    guest_cid: u64,
    muxer: Muxer,
    active: Option<Active>,
}

#[derive(Debug)]
struct Active {
    memory: GuestMemory,
    rxq: Queue,
    txq: Queue,
    interrupt: VirtioInterrupt,
}

impl Vsock {
    /// A device for the guest `guest_cid` whose host side listens on the Unix socket
    /// `uds_path` (bound now; removed when the device is dropped).
    ///
    /// Errors: [`VsockError::ReservedCid`] (0, 1, 2, `u32::MAX` and above);
    /// [`VsockError::PathTooLong`] (over 107 bytes, `sun_path`); [`VsockError::PathExists`];
    /// [`VsockError::NoDirectory`]; [`VsockError::Bind`]; [`VsockError::Epoll`].
    pub fn new(guest_cid: u64, uds_path: impl Into<PathBuf>) -> Result<Vsock, VsockError> {
        if guest_cid <= HOST_CID || guest_cid >= u64::from(u32::MAX) {
            return Err(VsockError::ReservedCid { cid: guest_cid });
        }
        Ok(Vsock {
            guest_cid,
            muxer: Muxer::bind(uds_path.into())?,
            active: None,
        })
    }

    /// The host side's Unix socket.
    pub fn uds_path(&self) -> &Path {
        self.muxer.uds_path()
    }

    /// The guest's CID.
    pub fn guest_cid(&self) -> u64 {
        self.guest_cid
    }

    /// Serves both queues until neither can move: tx packets make rx packets (responses,
    /// RSTs, credit), and rx buffers make room for tx packets that wait for one.
    fn process(&mut self) -> Result<(), QueueError> {
        loop {
            let tx_waits = self.process_tx()?;
            self.process_rx()?;
            if !(tx_waits && self.muxer.can_take_tx()) {
                return Ok(());
            }
        }
    }

    /// Takes the guest's tx packets; true when it stopped because RSTs wait for rx buffers.
    fn process_tx(&mut self) -> Result<bool, QueueError> {
        let Some(active) = self.active.as_mut() else {
            return Ok(false);
        };
        let error = |reason: String| queue_error(TXQ, reason);
        let queue_error = |e: virtio_queue::Error| error(e.to_string());
        let Active {
            memory,
            txq: queue,
            interrupt,
            ..
        } = active;
        let mut completed = false;
        let waits = 'ring: loop {
            queue.disable_notification(memory).map_err(queue_error)?;
            loop {
                if !self.muxer.can_take_tx() {
                    break 'ring true;
                }
                let Some(mut chain) = chain::pop(queue, memory).map_err(error)? else {
                    break;
                };
                let head = chain.head_index();
                match VsockPacket::from_tx_virtq_chain(memory, &mut chain, MAX_PKT_DATA as u32) {
                    Ok(packet) => self.muxer.on_guest_packet(&packet, self.guest_cid),
                    Err(e) => tracing::debug!(device = NAME, head, "tx packet dropped: {e}"),
                }
                queue.add_used(memory, head, 0).map_err(queue_error)?;
                completed = true;
            }
            if !queue.enable_notification(memory).map_err(queue_error)? {
                break false;
            }
        };
        if completed && queue.needs_notification(memory).map_err(queue_error)? {
            interrupt.signal_used_queue_or_log(NAME);
        }
        Ok(waits)
    }

    /// Fills the guest's rx buffers with what the muxer has, as many as there are, and
    /// signals the used queue once.
    fn process_rx(&mut self) -> Result<(), QueueError> {
        let Some(active) = self.active.as_mut() else {
            return Ok(());
        };
        if !self.muxer.has_rx_work() {
            return Ok(());
        }
        let error = |reason: String| queue_error(RXQ, reason);
        let queue_error = |e: virtio_queue::Error| error(e.to_string());
        let Active {
            memory,
            rxq: queue,
            interrupt,
            ..
        } = active;
        let mut completed = false;
        loop {
            queue.disable_notification(memory).map_err(queue_error)?;
            let mut nothing_due = false;
            while self.muxer.has_rx_work() {
                let Some(mut chain) = chain::pop(queue, memory).map_err(error)? else {
                    break;
                };
                let head = chain.head_index();
                let used =
                    match VsockPacket::from_rx_virtq_chain(memory, &mut chain, MAX_PKT_DATA as u32)
                    {
                        Ok(mut packet) if packet.data_slice().is_some() => {
                            match self.muxer.fill_rx(&mut packet, self.guest_cid) {
                                // At most PKT_HEADER_SIZE + MAX_PKT_DATA.
                                Some(len) => PKT_HEADER_SIZE as u32 + len,
                                None => {
                                    // Keep the buffer for when something is due.
                                    queue.go_to_previous_position();
                                    nothing_due = true;
                                    break;
                                }
                            }
                        }
                        Ok(_) => {
                            tracing::debug!(
                                device = NAME,
                                head,
                                "rx buffer without room for data returned empty"
                            );
                            0
                        }
                        Err(e) => {
                            tracing::debug!(device = NAME, head, "rx buffer returned empty: {e}");
                            0
                        }
                    };
                queue.add_used(memory, head, used).map_err(queue_error)?;
                completed = true;
            }
            // Work left and no buffers: ask to hear of new ones (and take any that raced in).
            let more = queue.enable_notification(memory).map_err(queue_error)?;
            if nothing_due || !self.muxer.has_rx_work() || !more {
                break;
            }
        }
        if completed && queue.needs_notification(memory).map_err(queue_error)? {
            interrupt.signal_used_queue_or_log(NAME);
        }
        Ok(())
    }
}

fn queue_error(queue: usize, reason: String) -> QueueError {
    QueueError {
        device: NAME.into(),
        queue,
        reason,
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_VSOCK
    }

    fn device_features(&self) -> u64 {
        FEATURES
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[RX_QUEUE_SIZE, QUEUE_SIZE, QUEUE_SIZE]
    }

    /// §5.10.4: `guest_cid`, le64 at offset 0; past it reads as 0.
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.guest_cid.to_le_bytes(), offset, data);
    }

    fn activate(&mut self, mut activation: Activation) -> Result<(), ActivateError> {
        let [rxq, txq, _evq] = activation.take_queues(NAME, "rx, tx, event")?;
        let Activation {
            memory, interrupt, ..
        } = activation;
        if !rxq.ready() || !txq.ready() {
            return Err(ActivateError {
                device: NAME.into(),
                reason: "the driver did not set up the rx and tx queues".into(),
            });
        }
        self.active = Some(Active {
            memory,
            rxq,
            txq,
            interrupt,
        });
        // Packets the guest queued before its DRIVER_OK reached us.
        self.process().map_err(|e| ActivateError {
            device: NAME.into(),
            reason: e.to_string(),
        })
    }

    fn queue_notified(&mut self, index: usize) -> Result<(), QueueError> {
        match index {
            RXQ | TXQ => self.process(),
            EVQ => Ok(()),
            _ => {
                tracing::debug!(
                    device = NAME,
                    index,
                    "notify of a queue that does not exist"
                );
                Ok(())
            }
        }
    }

    fn host_fds(&self) -> Vec<std::os::fd::RawFd> {
        vec![self.muxer.epoll_fd()]
    }

    fn host_ready(&mut self, fd: std::os::fd::RawFd) -> Result<(), HostError> {
        if fd != self.muxer.epoll_fd() {
            return Ok(());
        }
        self.muxer.handle_host_events(self.active.is_some());
        Ok(self.process()?)
    }

    /// Every connection ends (its host socket closed); the listener stays for the next
    /// activation.
    fn reset(&mut self) {
        self.active = None;
        self.muxer.reset();
    }
}
