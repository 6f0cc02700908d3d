//! One stream connection (virtio 1.2 §5.10.6): its state, the credit of both directions and
//! the host socket at its other end.
//!
//! Host to guest, the device reads the host socket straight into the guest's rx buffers, and
//! only as much as the guest's credit allows (`buf_alloc - (rx_cnt - fwd_cnt)`, §5.10.6.3):
//! no host-side buffer at all, so a guest that never reads makes the host writer block, not
//! the VMM buffer. Guest to host, data the host socket does not take at once waits in a
//! buffer of [`BUF_ALLOC`] bytes, the credit the device advertises; a guest that sends past
//! it is reset.

use std::collections::VecDeque;
use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, send};
use virtio_vsock::packet::VsockPacket;
use vm_memory::bitmap::BitmapSlice;
use vm_memory::{ReadVolatile, VolatileMemoryError, VolatileSlice};
use vmm_sys_util::epoll::EventSet;

use super::packet::{
    Header, OP_CREDIT_REQUEST, OP_CREDIT_UPDATE, OP_REQUEST, OP_RESPONSE, OP_RST, OP_RW,
    OP_SHUTDOWN, Ports, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM, write_header,
};
use super::{MAX_PKT_DATA, NAME};

/// The `buf_alloc` the device advertises per connection, and the most guest data it holds
/// for a host socket that does not drain: 256 KiB, Firecracker's figure, four of Linux's
/// largest packets (64 KiB), so a guest streaming output keeps sending while the host reads.
/// With [`MAX_CONNECTIONS`](super::MAX_CONNECTIONS) it bounds what a guest can make the VMM
/// hold.
pub const BUF_ALLOC: u32 = 256 << 10;

/// When the guest's view of the free space in our buffer falls below this, and the host has
/// taken data since the guest last heard, the device sends a CREDIT_UPDATE: Linux's driver
/// never asks (it waits for an update), so a one-way stream needs them unasked; at half
/// the buffer, one update per 128 KiB.
const CREDIT_UPDATE_THRESHOLD: u32 = BUF_ALLOC / 2;

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// A host process connected (`CONNECT <port>`); the device sends the guest a REQUEST and
    /// waits for its RESPONSE.
    LocalInit,
    /// Both sides may send (until a SHUTDOWN says otherwise).
    Established,
}

/// Control packets waiting for an rx buffer.
#[derive(Debug, Default)]
struct Pending {
    request: bool,
    response: bool,
    /// SHUTDOWN(SEND): the host will send no more.
    shutdown: bool,
    credit_update: bool,
    rst: bool,
}

/// One connection between a guest port and a host Unix socket.
#[derive(Debug)]
pub struct Connection {
    stream: UnixStream,
    state: State,
    pending: Pending,
    /// Guest data the host socket has not taken yet: at most [`BUF_ALLOC`].
    tx_buf: VecDeque<u8>,
    /// Guest bytes written to the host socket, modulo 2^32 (our `fwd_cnt`).
    fwd_cnt: u32,
    /// The `fwd_cnt` the guest last heard.
    last_fwd_cnt_sent: u32,
    /// Host bytes sent to the guest, modulo 2^32.
    rx_cnt: u32,
    /// The guest's `buf_alloc` and `fwd_cnt`, from its last packet.
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
    /// The host socket may have bytes (or its end) to read.
    host_readable: bool,
    /// The host socket's read side ended.
    host_eof: bool,
    /// The host socket hung up or failed: nothing more can be written to it.
    host_hup: bool,
    /// The host's write side was shut down after the guest's SHUTDOWN(SEND).
    host_write_shut: bool,
    guest_shut_rcv: bool,
    guest_shut_send: bool,
    /// A CREDIT_REQUEST went out and no credit came back yet.
    credit_requested: bool,
    /// The RST went out, or there is nothing to tell the guest: remove the connection.
    finished: bool,
    /// In the muxer's rx queue.
    pub queued: bool,
    /// What the muxer's epoll watches for it; `None` when not watched.
    pub watched: Option<EventSet>,
}

/// What a read of the host socket into the guest's buffer gave.
enum HostRead {
    Data(u32),
    /// Nothing now (it would block, failed, or the buffer has no room): no data this time.
    Empty,
    Eof,
}

impl Connection {
    fn new(stream: UnixStream, state: State) -> Self {
        Self {
            stream,
            state,
            pending: Pending::default(),
            tx_buf: VecDeque::new(),
            fwd_cnt: 0,
            last_fwd_cnt_sent: 0,
            rx_cnt: 0,
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
            host_readable: false,
            host_eof: false,
            host_hup: false,
            host_write_shut: false,
            guest_shut_rcv: false,
            guest_shut_send: false,
            credit_requested: false,
            finished: false,
            queued: false,
            watched: None,
        }
    }

    /// A host process asked for the guest's port (after `CONNECT`): a REQUEST is due.
    pub fn host_initiated(stream: UnixStream) -> Self {
        let mut conn = Self::new(stream, State::LocalInit);
        conn.pending.request = true;
        conn
    }

    /// The guest's REQUEST reached a host listener: a RESPONSE is due.
    pub fn guest_initiated(stream: UnixStream, buf_alloc: u32, fwd_cnt: u32) -> Self {
        let mut conn = Self::new(stream, State::Established);
        conn.pending.response = true;
        conn.update_peer_credit(buf_alloc, fwd_cnt);
        conn
    }

    /// The host socket's fd, for the muxer's epoll.
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.stream.as_raw_fd()
    }

    /// The connection is over; the muxer removes it.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Ends the connection with a RST to the guest, for `reason`.
    pub fn reset(&mut self, ports: Ports, reason: &str) {
        if !self.pending.rst {
            tracing::debug!(
                device = NAME,
                local = ports.local,
                peer = ports.peer,
                "connection reset: {reason}"
            );
        }
        self.pending.rst = true;
    }

    /// The guest may receive this many more bytes (§5.10.6.3); 0 when its numbers say it has
    /// more in flight than it allocated.
    fn peer_credit(&self) -> u32 {
        let in_flight = self.rx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// Every guest packet of the connection carries its `buf_alloc` and `fwd_cnt`.
    pub fn update_peer_credit(&mut self, buf_alloc: u32, fwd_cnt: u32) {
        self.peer_buf_alloc = buf_alloc;
        self.peer_fwd_cnt = fwd_cnt;
        if self.peer_credit() > 0 {
            self.credit_requested = false;
        }
    }

    /// The guest accepted a host process's connection: the process reads `OK <port>\n`.
    pub fn on_response(&mut self, ports: Ports) {
        if self.state != State::LocalInit || self.pending.request {
            return self.reset(ports, "RESPONSE to no REQUEST");
        }
        let line = super::handshake::ok_line(ports.local);
        match send_nosignal(&self.stream, line.as_bytes()) {
            Ok(n) if n == line.len() => self.state = State::Established,
            // A fresh socket's buffer takes a line whole; anything else means it is gone.
            Ok(_) | Err(_) => self.reset(ports, "the host process did not take its OK line"),
        }
    }

    /// The guest's SHUTDOWN with `flags` ([`SHUTDOWN_RCV`], [`SHUTDOWN_SEND`]).
    pub fn on_shutdown(&mut self, ports: Ports, flags: u32) {
        if self.state != State::Established {
            return self.reset(ports, "SHUTDOWN before the connection was established");
        }
        self.guest_shut_rcv |= flags & SHUTDOWN_RCV != 0;
        self.guest_shut_send |= flags & SHUTDOWN_SEND != 0;
        self.shut_host_write();
        self.check_closed();
    }

    /// The guest asked for our credit.
    pub fn on_credit_request(&mut self) {
        self.pending.credit_update = true;
    }

    /// The guest's stream data `data`: to the host socket, or into the buffer when it does
    /// not take it all. `scratch` is the muxer's copy buffer ([`MAX_PKT_DATA`] bytes).
    pub fn on_data<B: BitmapSlice>(
        &mut self,
        ports: Ports,
        data: &VolatileSlice<'_, B>,
        scratch: &mut [u8],
    ) {
        if self.state != State::Established || self.guest_shut_send {
            return self.reset(ports, "data where the guest may not send");
        }
        let len = data.len();
        if self.host_hup {
            // The host end is gone; its unread data still reaches the guest before the RST.
            tracing::debug!(device = NAME, len, "data for a closed host socket dropped");
            self.fwd_cnt = self.fwd_cnt.wrapping_add(len as u32);
            return;
        }
        if self.tx_buf.len() + len > BUF_ALLOC as usize {
            return self.reset(ports, "the guest sent past the credit it was given");
        }
        let Some(bytes) = scratch.get_mut(..len) else {
            return self.reset(ports, "packet longer than the device's largest");
        };
        let copied = data.copy_to(bytes);
        let bytes = &bytes[..copied];
        let mut sent = 0;
        if self.tx_buf.is_empty() {
            match send_nosignal(&self.stream, bytes) {
                Ok(n) => sent = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return self.reset(ports, &format!("host socket write: {e}")),
            }
        }
        self.fwd_cnt = self.fwd_cnt.wrapping_add(sent as u32);
        self.tx_buf.extend(&bytes[sent..]);
        self.want_credit_update();
    }

    /// The host socket is ready for `events` (the muxer's epoll).
    pub fn on_host_event(&mut self, ports: Ports, events: EventSet) {
        if events.intersects(EventSet::HANG_UP | EventSet::ERROR) {
            self.host_hup = true;
            // What is left to read is read from here on, without epoll.
            self.host_readable = true;
            if self.state == State::LocalInit {
                if self.pending.request {
                    // The guest never heard of it.
                    self.finished = true;
                } else {
                    self.reset(ports, "the host process left before the guest answered");
                }
                return;
            }
            self.tx_buf.clear();
        }
        if events.contains(EventSet::IN) {
            self.host_readable = true;
        }
        if events.contains(EventSet::OUT) {
            self.flush(ports);
        }
        self.check_closed();
    }

    /// Writes buffered guest data to the host socket until it would block.
    fn flush(&mut self, ports: Ports) {
        while !self.tx_buf.is_empty() {
            let (front, _) = self.tx_buf.as_slices();
            match send_nosignal(&self.stream, front) {
                Ok(n) => {
                    self.tx_buf.drain(..n);
                    self.fwd_cnt = self.fwd_cnt.wrapping_add(n as u32);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return self.reset(ports, &format!("host socket write: {e}")),
            }
        }
        self.shut_host_write();
        self.want_credit_update();
    }

    /// Passes the guest's SHUTDOWN(SEND) on to the host once its data is written.
    fn shut_host_write(&mut self) {
        if self.guest_shut_send && self.tx_buf.is_empty() && !self.host_write_shut {
            self.host_write_shut = true;
            // A socket that is gone needs no shutdown; its hang-up ends the connection.
            let _ = self.stream.shutdown(Shutdown::Write);
        }
    }

    /// Both directions done: the RST that ends the connection (§5.10.6.4: a clean
    /// disconnect is SHUTDOWNs answered by a RST).
    fn check_closed(&mut self) {
        let to_guest_done = self.host_eof || self.guest_shut_rcv;
        let to_host_done = (self.guest_shut_send && self.tx_buf.is_empty()) || self.host_hup;
        if self.state == State::Established && to_guest_done && to_host_done {
            self.pending.rst = true;
        }
    }

    fn want_credit_update(&mut self) {
        let buffered = self.tx_buf.len() as u32;
        let guest_sees_used = self
            .fwd_cnt
            .wrapping_add(buffered)
            .wrapping_sub(self.last_fwd_cnt_sent);
        let guest_sees_free = BUF_ALLOC.saturating_sub(guest_sees_used);
        if self.fwd_cnt != self.last_fwd_cnt_sent && guest_sees_free < CREDIT_UPDATE_THRESHOLD {
            self.pending.credit_update = true;
        }
    }

    /// The host socket may have data for the guest, and the guest takes it.
    fn may_read_host(&self) -> bool {
        self.state == State::Established
            && self.host_readable
            && !self.host_eof
            && !self.guest_shut_rcv
    }

    /// Something for the guest is waiting for an rx buffer.
    pub fn has_rx_work(&self) -> bool {
        if self.finished {
            return false;
        }
        let Pending {
            request,
            response,
            shutdown,
            credit_update,
            rst,
        } = self.pending;
        rst || request
            || response
            || shutdown
            || credit_update
            || (self.may_read_host() && (self.peer_credit() > 0 || !self.credit_requested))
    }

    /// What the muxer's epoll should watch the host socket for; `None`: nothing (it hung
    /// up, and only reads without epoll are left).
    pub fn wanted_events(&self) -> Option<EventSet> {
        if self.host_hup || self.finished {
            return None;
        }
        let mut events = EventSet::empty();
        if self.state == State::Established
            && !self.host_readable
            && !self.host_eof
            && !self.guest_shut_rcv
        {
            events |= EventSet::IN;
        }
        if !self.tx_buf.is_empty() {
            events |= EventSet::OUT;
        }
        Some(events)
    }

    /// Fills the guest's rx `packet` with the next thing due; returns its data length, or
    /// `None` when nothing was due after all (the host socket had no data).
    pub fn fill_rx<B: BitmapSlice>(
        &mut self,
        packet: &mut VsockPacket<'_, B>,
        guest_cid: u64,
        ports: Ports,
    ) -> Option<u32> {
        // Data is tried once a packet: a read that gives nothing leaves the control packets.
        let mut data_tried = false;
        let (op, flags, len) = loop {
            if self.finished {
                return None;
            }
            if self.pending.rst {
                self.finished = true;
                break (OP_RST, 0, 0);
            }
            if self.pending.request {
                self.pending.request = false;
                break (OP_REQUEST, 0, 0);
            }
            if self.pending.response {
                self.pending.response = false;
                break (OP_RESPONSE, 0, 0);
            }
            if !data_tried && self.may_read_host() {
                data_tried = true;
                if self.peer_credit() == 0 && !self.credit_requested {
                    self.credit_requested = true;
                    break (OP_CREDIT_REQUEST, 0, 0);
                }
                match self.read_host(packet.data_slice(), ports) {
                    HostRead::Data(n) => break (OP_RW, 0, n),
                    HostRead::Empty => {}
                    HostRead::Eof => {
                        self.host_eof = true;
                        self.pending.shutdown = true;
                        self.check_closed();
                    }
                }
                continue;
            }
            if self.pending.shutdown {
                self.pending.shutdown = false;
                break (OP_SHUTDOWN, SHUTDOWN_SEND, 0);
            }
            if self.pending.credit_update {
                break (OP_CREDIT_UPDATE, 0, 0);
            }
            return None;
        };
        self.pending.credit_update = false;
        self.last_fwd_cnt_sent = self.fwd_cnt;
        let header = Header {
            type_: TYPE_STREAM,
            op,
            flags,
            len,
            buf_alloc: BUF_ALLOC,
            fwd_cnt: self.fwd_cnt,
        };
        write_header(packet, guest_cid, ports, header);
        Some(len)
    }

    /// Reads the host socket into the guest's buffer, at most the guest's credit.
    fn read_host<B: BitmapSlice>(
        &mut self,
        data: Option<&VolatileSlice<'_, B>>,
        ports: Ports,
    ) -> HostRead {
        let room = data.map_or(0, VolatileSlice::len).min(MAX_PKT_DATA);
        let max = room.min(self.peer_credit() as usize);
        let target = data.and_then(|d| d.subslice(0, max).ok());
        let Some(mut target) = target.filter(|_| max > 0) else {
            // No credit, or a buffer without room for data.
            return HostRead::Empty;
        };
        loop {
            match (&self.stream).read_volatile(&mut target) {
                Ok(0) => return HostRead::Eof,
                Ok(n) => {
                    // At most MAX_PKT_DATA.
                    let n = n as u32;
                    self.rx_cnt = self.rx_cnt.wrapping_add(n);
                    return HostRead::Data(n);
                }
                Err(VolatileMemoryError::IOError(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(VolatileMemoryError::IOError(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.host_readable = false;
                    return HostRead::Empty;
                }
                Err(e) => {
                    self.host_readable = false;
                    self.reset(ports, &format!("host socket read: {e}"));
                    return HostRead::Empty;
                }
            }
        }
    }
}

/// `send(2)` without blocking and without SIGPIPE: a host peer that left is an error
/// (EPIPE) here, not a signal to the whole VMM.
pub fn send_nosignal(stream: &UnixStream, bytes: &[u8]) -> io::Result<usize> {
    loop {
        match send(
            stream.as_raw_fd(),
            bytes,
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
        ) {
            Err(Errno::EINTR) => {}
            result => return result.map_err(io::Error::from),
        }
    }
}
