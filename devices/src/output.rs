//! Bounded, never-blocking output to a host file (the launch's stdout).
//!
//! A guest that writes faster than the host's reader reads (or a reader that stops reading
//! altogether: a FIFO held open, a stopped pager) must not stop the VMM: a device that wrote
//! to stdout itself would block in `write(2)` on the event-loop or a vCPU thread, and with it
//! the launch's timeout and signal handling (Firecracker fixed the same, PRs #2381 and
//! #2461). So one writer thread owns the host file and does the blocking writes, fed through
//! a buffer of fixed capacity; the devices' side ([`OutputSink::try_write`]) takes what fits
//! and never blocks. O_NONBLOCK on the host's stdout is no answer: the file description is
//! shared with the user's shell, which would then see EAGAIN itself.
//!
//! - The virtio console takes a guest buffer only while the sink has room and leaves the
//!   rest in the guest's ring (backpressure: the guest waits); the sink's "room again"
//!   eventfd ([`OutputSink::room_fd`]) tells it when to go on.
//! - The 16550 has no flow control Linux honours, so its [`LossyWriter`] drops what does not
//!   fit, counting it.
//! - Dropping the last handle never waits for the reader: the thread writes what is left
//!   and ends, or, stuck behind a reader that never reads, ends with the process.
//!   [`OutputSink::flush_for`] waits a bounded time for the last bytes on a normal exit.
//! - If the host file fails (EPIPE: the reader went away), output is dropped from then on,
//!   so the guest is not held up by a reader that no longer exists.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

/// The buffer's capacity unless told otherwise: 64 KiB, a pipe's worth.
pub const DEFAULT_CAPACITY: usize = 64 << 10;

/// The most bytes the writer thread hands to one `write(2)`.
const WRITE_CHUNK: usize = 16 << 10;

/// Why an output sink could not be made.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The "room again" eventfd could not be created.
    #[error("cannot create the output's eventfd")]
    EventFd(#[source] io::Error),
    /// The writer thread could not be started.
    #[error("cannot start the output writer thread")]
    Spawn(#[source] io::Error),
}

/// The device side of a bounded output: cheap to clone (the console and the serial share
/// one per host file); the writer thread stops once the last clone is dropped and the buffer
/// is written.
#[derive(Clone)]
pub struct OutputSink {
    handle: Arc<Handle>,
}

/// Closes the sink when the last [`OutputSink`] clone goes.
struct Handle {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer thread (bytes or close) and [`OutputSink::flush_for`] (bytes written).
    changed: Condvar,
    /// Readable when room frees up after a [`OutputSink::try_write`] found too little.
    room: EventFd,
    capacity: usize,
}

#[derive(Default)]
struct State {
    /// Bytes not yet written; the front ones may be in a write right now.
    buf: VecDeque<u8>,
    /// No handle is left: write what is buffered, then end.
    closed: bool,
    /// A writer was refused room: signal `room` when some frees up.
    wants_room: bool,
    /// The host file failed: every byte is dropped from now on.
    broken: bool,
}

impl fmt::Debug for OutputSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.handle.shared.lock();
        f.debug_struct("OutputSink")
            .field("buffered", &state.buf.len())
            .field("capacity", &self.handle.shared.capacity)
            .field("broken", &state.broken)
            .finish()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain bytes and flags: still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl OutputSink {
    /// Starts a writer thread that owns `out` and a buffer of `capacity` bytes (see
    /// [`DEFAULT_CAPACITY`]).
    ///
    /// Errors: the eventfd or the thread could not be created.
    pub fn new<W: Write + Send + 'static>(out: W, capacity: usize) -> Result<Self, OutputError> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            room: EventFd::new(EFD_NONBLOCK).map_err(OutputError::EventFd)?,
            capacity,
        });
        let thread_shared = shared.clone();
        // Detached on purpose: joining would wait for a reader that may never read.
        std::thread::Builder::new()
            .name("capsule-output".into())
            .spawn(move || write_loop(&thread_shared, out))
            .map_err(OutputError::Spawn)?;
        Ok(Self {
            handle: Arc::new(Handle { shared }),
        })
    }

    /// Takes as much of `data` as fits in the buffer and returns how much that was (0 when
    /// full); never blocks. When it takes less than all, [`OutputSink::room_fd`] becomes
    /// readable once room frees up. After the host file failed it takes (and drops) all.
    pub fn try_write(&self, data: &[u8]) -> usize {
        self.push(data, true)
    }

    fn push(&self, data: &[u8], want_room: bool) -> usize {
        let shared = &self.handle.shared;
        let mut state = shared.lock();
        if state.broken {
            return data.len();
        }
        let n = data.len().min(shared.capacity - state.buf.len());
        state.buf.extend(&data[..n]);
        if n < data.len() && want_room {
            state.wants_room = true;
        }
        if n > 0 {
            shared.changed.notify_all();
        }
        n
    }

    /// The "room again" eventfd: readable after a short [`OutputSink::try_write`] once the
    /// writer thread has written some of the buffer. One waiter (the console) clears it with
    /// [`OutputSink::clear_room`].
    pub fn room_fd(&self) -> RawFd {
        self.handle.shared.room.as_raw_fd()
    }

    /// Reads the room eventfd back to not readable; true if it had fired.
    pub fn clear_room(&self) -> bool {
        // Non-blocking: EAGAIN when it had not fired.
        self.handle.shared.room.read().is_ok()
    }

    /// Waits until every byte taken so far is written to the host file, or until
    /// `deadline`. Returns true if everything was written (false at the deadline, or if the
    /// host file failed).
    pub fn flush_for(&self, deadline: Instant) -> bool {
        let shared = &self.handle.shared;
        let mut state = shared.lock();
        loop {
            if state.broken {
                return false;
            }
            if state.buf.is_empty() {
                return true;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            state = shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// A `std::io::Write` over this sink that drops what does not fit (for the 16550).
    pub fn lossy_writer(&self) -> LossyWriter {
        LossyWriter {
            sink: self.clone(),
            streak: 0,
            dropped: 0,
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.changed.notify_all();
    }
}

/// The writer thread: takes the front of the buffer, writes it (blocking), drops it from
/// the buffer, and says when room freed up.
fn write_loop(shared: &Shared, mut out: impl Write) {
    let mut chunk = Vec::with_capacity(WRITE_CHUNK);
    loop {
        {
            let mut state = shared.lock();
            while state.buf.is_empty() && !state.closed {
                state = shared
                    .changed
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner());
            }
            if state.buf.is_empty() {
                return;
            }
            chunk.clear();
            chunk.extend(state.buf.iter().take(WRITE_CHUNK));
        }
        // Outside the lock: this is the write that may block for as long as the reader likes.
        let result = out.write_all(&chunk).and_then(|()| out.flush());
        let mut state = shared.lock();
        match result {
            Ok(()) => drop(state.buf.drain(..chunk.len())),
            Err(e) => {
                tracing::warn!(error = %e, "output failed: dropping the guest's output from now on");
                state.broken = true;
                state.buf.clear();
            }
        }
        if state.wants_room {
            state.wants_room = false;
            if let Err(e) = shared.room.write(1) {
                tracing::warn!(error = %e, "cannot signal output room");
            }
        }
        shared.changed.notify_all();
    }
}

/// A `std::io::Write` that never blocks and never fails: what the sink has no room for is
/// dropped and counted, with a debug line when a run of drops ends (and when the writer
/// goes). For the 16550, which has no flow control Linux honours.
#[derive(Debug)]
pub struct LossyWriter {
    sink: OutputSink,
    /// Bytes dropped since the last that fitted.
    streak: u64,
    /// Bytes dropped in all.
    dropped: u64,
}

impl LossyWriter {
    /// How many bytes were dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn report(&mut self) {
        if self.streak > 0 {
            tracing::debug!(
                dropped = self.streak,
                total = self.dropped,
                "serial output dropped while the output was full"
            );
            self.streak = 0;
        }
    }
}

impl Write for LossyWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.sink.push(buf, false);
        let lost = (buf.len() - n) as u64;
        if lost == 0 {
            self.report();
        } else {
            self.streak += lost;
            self.dropped += lost;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LossyWriter {
    fn drop(&mut self) {
        self.report();
    }
}

#[cfg(test)]
pub(crate) mod tests;
