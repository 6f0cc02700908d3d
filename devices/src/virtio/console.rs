//! virtio-console (virtio 1.2 §5.3): one port (no VIRTIO_CONSOLE_F_MULTIPORT), the guest's
//! `hvc0`.
//!
//! - transmitq (queue 1, guest -> host): each buffer goes to an [`OutputSink`], taken only
//!   while the sink has room. When it is full the device stops taking buffers, so the
//!   guest's ring fills and the guest waits (backpressure, never a blocked VMM); the sink's
//!   room eventfd, one of [`VirtioDevice::host_fds`], resumes it.
//! - receiveq (queue 0, host -> guest): an optional host input (stdin) is read by a small
//!   thread, only when it is readable (epoll, so a blocking stdin is never read when empty
//!   and never set O_NONBLOCK, as it is shared with the user's shell), into a bounded buffer
//!   the device copies into the guest's receive buffers; end of file stops the reading. A
//!   thread rather than the event loop, because the loop's watch of a host fd is fixed
//!   ([`VirtioDevice::host_fds`]): a readable stdin the guest has no buffers for would wake
//!   it over and over.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use virtio_queue::QueueT;
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use super::chain;
use super::{
    ActivateError, Activation, GuestMemory, HostError, Queue, QueueError, VirtioDevice,
    VirtioInterrupt,
};
use crate::output::OutputSink;

/// receiveq: host to guest.
pub const RECEIVEQ: usize = 0;
/// transmitq: guest to host.
pub const TRANSMITQ: usize = 1;
/// transmitq's size.
pub const QUEUE_SIZE: u16 = 256;
/// receiveq's size: Linux fills it with a page for each entry as the port opens, so each
/// entry is 4 KiB of guest RAM for the VM's life; 32 pages hold more input than anything
/// types, and a pipe's input waits in `INPUT_CAPACITY` meanwhile.
pub const RECEIVEQ_SIZE: u16 = 32;

/// How much input waits for the guest's receive buffers before the input thread stops
/// reading.
const INPUT_CAPACITY: usize = 4096;

/// How much of a transmit buffer is copied out of guest memory at a time.
const TX_PIECE: usize = 4096;

/// VIRTIO_RING_F_EVENT_IDX: `used_event` and `avail_event` (§2.7.10).
const EVENT_IDX: u64 = 1 << virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;

/// VIRTIO_F_VERSION_1 and EVENT_IDX.
const FEATURES: u64 = 1 << virtio_bindings::virtio_config::VIRTIO_F_VERSION_1 | EVENT_IDX;

/// The device's name in log lines and errors.
const NAME: &str = "virtio-console";

/// Why a console could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The input's eventfds, epoll or thread could not be set up.
    #[error("cannot watch the console's input")]
    Input(#[source] io::Error),
}

/// A virtio console with one port: output to an [`OutputSink`], input from an optional host
/// file.
pub struct Console {
    output: OutputSink,
    input: Option<Input>,
    active: Option<Active>,
    /// The transmit buffer the sink had no room for yet.
    pending: Option<PendingTx>,
}

struct Active {
    memory: GuestMemory,
    receiveq: Queue,
    transmitq: Queue,
    interrupt: VirtioInterrupt,
}

/// A transmit buffer partly taken: its head and the readable pieces left.
struct PendingTx {
    head: u16,
    pieces: VecDeque<(u64, u32)>,
}

impl fmt::Debug for Console {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Console")
            .field("output", &self.output)
            .field("input", &self.input.is_some())
            .field("active", &self.active.is_some())
            .field("pending", &self.pending.as_ref().map(|p| p.head))
            .finish()
    }
}

impl Console {
    /// A console writing to `output` and, if given, reading `input` (a dup of stdin, say; the
    /// console owns and closes it).
    ///
    /// Errors: the input thread could not be started.
    pub fn new(output: OutputSink, input: Option<OwnedFd>) -> Result<Console, ConsoleError> {
        let input = input
            .map(Input::start)
            .transpose()
            .map_err(ConsoleError::Input)?;
        Ok(Console {
            output,
            input,
            active: None,
            pending: None,
        })
    }

    fn queue_error(queue: usize, reason: String) -> QueueError {
        QueueError {
            device: NAME.into(),
            queue,
            reason,
        }
    }

    /// Moves transmit buffers to the sink until the ring is empty or the sink is full.
    fn transmit(&mut self) -> Result<(), QueueError> {
        let Some(active) = self.active.as_mut() else {
            return Ok(());
        };
        let error = |e: String| Self::queue_error(TRANSMITQ, e);
        let queue_error = |e: virtio_queue::Error| error(e.to_string());
        let Active {
            memory,
            transmitq: queue,
            interrupt,
            ..
        } = active;
        let mut completed = false;
        let mut descriptors = Vec::new();
        let full = 'ring: loop {
            queue.disable_notification(memory).map_err(queue_error)?;
            loop {
                if self.pending.is_none() {
                    let Some(chain) = chain::pop(queue, memory).map_err(error)? else {
                        break;
                    };
                    let head = chain.head_index();
                    match tx_pieces(chain, usize::from(queue.size()), memory, &mut descriptors) {
                        Ok(pieces) => self.pending = Some(PendingTx { head, pieces }),
                        Err(reason) => {
                            tracing::debug!(
                                device = NAME,
                                head,
                                "transmit buffer dropped: {reason}"
                            );
                            queue.add_used(memory, head, 0).map_err(queue_error)?;
                            completed = true;
                            continue;
                        }
                    }
                }
                let Some(pending) = self.pending.as_mut() else {
                    break;
                };
                if !send(pending, memory, &self.output) {
                    // Backpressure: notifications stay off; the room event resumes us.
                    break 'ring true;
                }
                queue
                    .add_used(memory, pending.head, 0)
                    .map_err(queue_error)?;
                self.pending = None;
                completed = true;
            }
            if !queue.enable_notification(memory).map_err(queue_error)? {
                break false;
            }
        };
        if full {
            tracing::trace!(device = NAME, "output full: transmit buffers wait");
        }
        if completed && queue.needs_notification(memory).map_err(queue_error)? {
            interrupt.signal_used_queue_or_log(NAME);
        }
        Ok(())
    }

    /// Copies waiting input into receive buffers until either runs out.
    fn receive(&mut self) -> Result<(), QueueError> {
        let (Some(active), Some(input)) = (self.active.as_mut(), self.input.as_ref()) else {
            return Ok(());
        };
        let error = |e: String| Self::queue_error(RECEIVEQ, e);
        let queue_error = |e: virtio_queue::Error| error(e.to_string());
        let Active {
            memory,
            receiveq: queue,
            interrupt,
            ..
        } = active;
        let mut state = input.shared.lock();
        if state.buf.is_empty() {
            return Ok(());
        }
        let mut completed = false;
        let mut descriptors = Vec::new();
        loop {
            queue.disable_notification(memory).map_err(queue_error)?;
            while !state.buf.is_empty() {
                let Some(chain) = chain::pop(queue, memory).map_err(error)? else {
                    break;
                };
                let head = chain.head_index();
                let used = match chain::walk(chain, usize::from(queue.size()), &mut descriptors) {
                    Ok(()) => fill_rx(&descriptors, memory, &mut state.buf),
                    Err(e) => Err(e.to_string()),
                }
                .unwrap_or_else(|reason| {
                    tracing::debug!(
                        device = NAME,
                        head,
                        "receive buffer returned empty: {reason}"
                    );
                    0
                });
                queue.add_used(memory, head, used).map_err(queue_error)?;
                completed = true;
            }
            // Input left and no buffers: ask to hear of new ones (and take any that raced in).
            let more = queue.enable_notification(memory).map_err(queue_error)?;
            if state.buf.is_empty() || !more {
                break;
            }
        }
        drop(state);
        input.shared.room.notify_all();
        if completed && queue.needs_notification(memory).map_err(queue_error)? {
            interrupt.signal_used_queue_or_log(NAME);
        }
        Ok(())
    }
}

/// The readable pieces of a transmit chain, each checked to be in guest memory.
fn tx_pieces(
    chain: virtio_queue::DescriptorChain<&GuestMemory>,
    max_len: usize,
    memory: &GuestMemory,
    descriptors: &mut Vec<Descriptor>,
) -> Result<VecDeque<(u64, u32)>, String> {
    chain::walk(chain, max_len, descriptors).map_err(|e| e.to_string())?;
    descriptors
        .iter()
        .enumerate()
        .map(|(i, d)| {
            if d.is_write_only() {
                Err(format!("descriptor {i} is device-writable"))
            } else if !memory.check_range(d.addr(), d.len() as usize) {
                Err(format!(
                    "descriptor {i} ({} bytes at {:#x}) is outside guest memory",
                    d.len(),
                    d.addr().0
                ))
            } else {
                Ok((d.addr().0, d.len()))
            }
        })
        .collect()
}

/// Offers what is left of `pending` to the sink; true when all of it was taken.
fn send(pending: &mut PendingTx, memory: &GuestMemory, output: &OutputSink) -> bool {
    let mut piece = [0u8; TX_PIECE];
    while let Some(&(addr, len)) = pending.pieces.front() {
        let n = TX_PIECE.min(len as usize);
        if memory
            .read_slice(&mut piece[..n], GuestAddress(addr))
            .is_err()
        {
            // Checked in memory when taken; guest memory does not shrink.
            tracing::debug!(device = NAME, addr, "transmit piece unreadable, skipped");
            pending.pieces.pop_front();
            continue;
        }
        let taken = output.try_write(&piece[..n]);
        // Fits: at most TX_PIECE.
        let taken_u32 = taken as u32;
        if taken_u32 == len {
            pending.pieces.pop_front();
        } else if let Some(front) = pending.pieces.front_mut() {
            *front = (addr + u64::from(taken_u32), len - taken_u32);
        }
        if taken < n {
            return false;
        }
    }
    true
}

/// Copies the front of `input` into a receive chain; returns the bytes written.
fn fill_rx(
    descriptors: &[Descriptor],
    memory: &GuestMemory,
    input: &mut VecDeque<u8>,
) -> Result<u32, String> {
    let mut written = 0u32;
    for (i, d) in descriptors.iter().enumerate() {
        if !d.is_write_only() {
            return Err(format!("descriptor {i} is device-readable"));
        }
        let n = input.len().min(d.len() as usize);
        if n == 0 {
            break;
        }
        let bytes: Vec<u8> = input.iter().take(n).copied().collect();
        memory
            .write_slice(&bytes, d.addr())
            .map_err(|e| format!("descriptor {i}: {e}"))?;
        input.drain(..n);
        // At most the chain's length, under 2^32 (§2.7.5.2).
        written = written.saturating_add(n as u32);
    }
    Ok(written)
}

impl VirtioDevice for Console {
    fn device_type(&self) -> u32 {
        virtio_bindings::virtio_ids::VIRTIO_ID_CONSOLE
    }

    fn device_features(&self) -> u64 {
        FEATURES
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[RECEIVEQ_SIZE, QUEUE_SIZE]
    }

    /// No VIRTIO_CONSOLE_F_SIZE, MULTIPORT or EMERG_WRITE: `cols`, `rows`, `max_nr_ports`
    /// and `emerg_wr` (§5.3.4) are not valid, and read as 0.
    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn activate(&mut self, mut activation: Activation) -> Result<(), ActivateError> {
        let [receiveq, transmitq] = activation.take_queues(NAME, "receiveq, transmitq")?;
        let Activation {
            memory, interrupt, ..
        } = activation;
        self.active = Some(Active {
            memory,
            receiveq,
            transmitq,
            interrupt,
        });
        self.pending = None;
        // Input that came before the driver did.
        self.receive().map_err(|e| ActivateError {
            device: NAME.into(),
            reason: e.reason,
        })
    }

    fn queue_notified(&mut self, index: usize) -> Result<(), QueueError> {
        match index {
            RECEIVEQ => self.receive(),
            TRANSMITQ => self.transmit(),
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

    fn host_fds(&self) -> Vec<RawFd> {
        let mut fds = vec![self.output.room_fd()];
        fds.extend(self.input.as_ref().map(|i| i.shared.ready.as_raw_fd()));
        fds
    }

    fn host_ready(&mut self, fd: RawFd) -> Result<(), HostError> {
        if fd == self.output.room_fd() {
            self.output.clear_room();
            return Ok(self.transmit()?);
        }
        if let Some(input) = &self.input {
            if fd == input.shared.ready.as_raw_fd() {
                // Non-blocking: EAGAIN when already cleared.
                let _ = input.shared.ready.read();
                return Ok(self.receive()?);
            }
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
        self.pending = None;
    }
}

/// The host input: a thread reads the file when it is readable into a bounded buffer.
struct Input {
    shared: Arc<InputShared>,
    /// Tells the thread to end (on drop).
    stop: Arc<EventFd>,
}

struct InputShared {
    state: Mutex<InputState>,
    /// Wakes the thread when the buffer has room again, or on stop.
    room: Condvar,
    /// Readable when bytes (or end of file) arrived: one of the device's host fds.
    ready: EventFd,
}

#[derive(Default)]
struct InputState {
    buf: VecDeque<u8>,
    stopped: bool,
}

impl InputShared {
    fn lock(&self) -> MutexGuard<'_, InputState> {
        // Plain bytes and a flag: usable after a panic elsewhere.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Input {
    fn start(fd: OwnedFd) -> io::Result<Input> {
        let shared = Arc::new(InputShared {
            state: Mutex::new(InputState::default()),
            room: Condvar::new(),
            ready: EventFd::new(EFD_NONBLOCK)?,
        });
        let stop = Arc::new(EventFd::new(EFD_NONBLOCK)?);
        let epoll = Epoll::new()?;
        epoll.ctl(
            ControlOperation::Add,
            fd.as_raw_fd(),
            EpollEvent::new(EventSet::IN, 0),
        )?;
        epoll.ctl(
            ControlOperation::Add,
            stop.as_raw_fd(),
            EpollEvent::new(EventSet::IN, 1),
        )?;
        let thread_shared = shared.clone();
        let thread_stop = stop.clone();
        std::thread::Builder::new()
            .name("capsule-console-in".into())
            .spawn(move || read_loop(&thread_shared, &epoll, File::from(fd), &thread_stop))?;
        Ok(Input { shared, stop })
    }
}

impl Drop for Input {
    fn drop(&mut self) {
        self.shared.lock().stopped = true;
        self.shared.room.notify_all();
        let _ = self.stop.write(1);
    }
}

/// The input thread: waits for room, then for the file to be readable (or the stop), reads
/// once, and says so; ends at end of file, on an error or on stop.
fn read_loop(shared: &InputShared, epoll: &Epoll, mut file: File, stop: &EventFd) {
    let mut piece = [0u8; INPUT_CAPACITY];
    let mut events = [EpollEvent::default(); 2];
    loop {
        let room = {
            let mut state = shared.lock();
            while state.buf.len() >= INPUT_CAPACITY && !state.stopped {
                state = shared.room.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            if state.stopped {
                return;
            }
            INPUT_CAPACITY - state.buf.len()
        };
        let n = match epoll.wait(-1, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!(device = NAME, error = %e, "input: epoll failed, input stops");
                return;
            }
        };
        if events[..n].iter().any(|e| e.data() == 1) || stop.read().is_ok() {
            return;
        }
        // Readable (or hung up): one read does not block.
        let got = match file.read(&mut piece[..room]) {
            Ok(0) => {
                tracing::debug!(device = NAME, "input: end of file, input stops");
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!(device = NAME, error = %e, "input: read failed, input stops");
                return;
            }
        };
        shared.lock().buf.extend(&piece[..got]);
        if let Err(e) = shared.ready.write(1) {
            tracing::warn!(device = NAME, error = %e, "input: cannot signal");
        }
    }
}

#[cfg(test)]
mod tests;
