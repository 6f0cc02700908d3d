//! The host side (after Firecracker's `unix/muxer.rs`): the device's Unix socket in the
//! hybrid convention, the connections to host sockets, and which of them has a packet for
//! the guest.
//!
//! The event loop watches one fd of a device, fixed when the device is added, while
//! connections come and go; so the muxer keeps an epoll of its own (the listener, every
//! handshake and every connection's socket) and that epoll's fd is the device's one host fd.
//! Each connection is watched only for what it can act on now (readable while the guest may
//! take data and none is known to wait, writable while guest data waits), so a ready socket
//! the guest cannot take yet never makes the loop spin.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
use virtio_vsock::packet::VsockPacket;
use vm_memory::bitmap::BitmapSlice;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use super::connection::Connection;
use super::handshake::{Handshake, Progress};
use super::packet::{
    HOST_CID, Header, OP_CREDIT_REQUEST, OP_CREDIT_UPDATE, OP_REQUEST, OP_RESPONSE, OP_RST, OP_RW,
    OP_SHUTDOWN, Ports, TYPE_STREAM, write_header,
};
use super::{MAX_CONNECTIONS, MAX_PKT_DATA, NAME, VsockError};

/// RSTs for guest packets that belong to no connection, waiting for rx buffers. When this
/// many wait the device takes no more tx packets until the guest gives rx buffers, so a
/// guest that sends without ever receiving cannot grow the queue.
const MAX_LOOSE_RSTS: usize = 64;

/// The host ports given to host-initiated connections start here, as in Firecracker, far
/// from the well-known ports a guest's own connections name.
const FIRST_LOCAL_PORT: u32 = 1 << 30;

/// Events taken from the muxer's epoll per [`Muxer::handle_host_events`]; more stay ready
/// and the event loop calls again (level-triggered).
const EVENTS_PER_CALL: usize = 32;

/// The longest socket path: `sun_path` is 108 bytes with its NUL.
pub const MAX_PATH: usize = 107;

/// The host side of the device.
#[derive(Debug)]
pub struct Muxer {
    uds_path: PathBuf,
    listener: UnixListener,
    epoll: Epoll,
    conns: HashMap<Ports, Connection>,
    by_fd: HashMap<RawFd, Ports>,
    handshakes: HashMap<RawFd, Handshake>,
    /// Connections with a packet for the guest, in turn.
    rxq: VecDeque<Ports>,
    /// RSTs owed for packets without a connection, with the packet's `type`.
    loose_rsts: VecDeque<(Ports, u16)>,
    next_local_port: u32,
    /// Guest data on its way to a host socket.
    scratch: Vec<u8>,
}

impl Muxer {
    /// Binds the device's socket at `uds_path` and creates the muxer's epoll.
    pub fn bind(uds_path: PathBuf) -> Result<Self, VsockError> {
        let len = uds_path.as_os_str().len();
        if len > MAX_PATH {
            return Err(VsockError::PathTooLong {
                path: uds_path,
                len,
                max: MAX_PATH,
            });
        }
        if uds_path.symlink_metadata().is_ok() {
            return Err(VsockError::PathExists { path: uds_path });
        }
        let dir = uds_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.is_dir() {
            return Err(VsockError::NoDirectory { path: uds_path });
        }
        let epoll = Epoll::new().map_err(VsockError::Epoll)?;
        let listener = UnixListener::bind(&uds_path).map_err(|source| VsockError::Bind {
            path: uds_path.clone(),
            source,
        })?;
        // From here on the socket file is ours: dropping the muxer removes it.
        let muxer = Self {
            uds_path,
            listener,
            epoll,
            conns: HashMap::new(),
            by_fd: HashMap::new(),
            handshakes: HashMap::new(),
            rxq: VecDeque::new(),
            loose_rsts: VecDeque::new(),
            next_local_port: FIRST_LOCAL_PORT,
            scratch: vec![0; MAX_PKT_DATA],
        };
        muxer
            .listener
            .set_nonblocking(true)
            .map_err(|source| VsockError::Bind {
                path: muxer.uds_path.clone(),
                source,
            })?;
        watch(
            &muxer.epoll,
            ControlOperation::Add,
            muxer.listener.as_raw_fd(),
            EventSet::IN,
        )
        .map_err(VsockError::Epoll)?;
        Ok(muxer)
    }

    /// The socket's path.
    pub fn uds_path(&self) -> &Path {
        &self.uds_path
    }

    /// The muxer's epoll: readable when any host socket needs the device.
    pub fn epoll_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    /// Ends every connection and handshake (a device reset): every host socket is closed.
    pub fn reset(&mut self) {
        for fd in self.by_fd.keys().chain(self.handshakes.keys()) {
            unwatch(&self.epoll, *fd);
        }
        self.conns.clear();
        self.by_fd.clear();
        self.handshakes.clear();
        self.rxq.clear();
        self.loose_rsts.clear();
    }

    /// Takes the ready host sockets off the epoll (without waiting) and acts on them.
    /// `live`: the driver is up; otherwise a finished handshake is closed at once, as when
    /// nothing in the guest listens.
    pub fn handle_host_events(&mut self, live: bool) {
        let mut events = [EpollEvent::default(); EVENTS_PER_CALL];
        let ready = match self.epoll.wait(0, &mut events) {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(device = NAME, error = %e, "epoll wait failed");
                return;
            }
        };
        for event in &events[..ready] {
            // The data is the fd, which is non-negative.
            let fd = event.data() as RawFd;
            if fd == self.listener.as_raw_fd() {
                self.accept();
            } else if self.handshakes.contains_key(&fd) {
                self.handshake(fd, live);
            } else if let Some(&ports) = self.by_fd.get(&fd) {
                if let Some(conn) = self.conns.get_mut(&ports) {
                    conn.on_host_event(ports, event.event_set());
                }
                self.schedule(ports);
            }
        }
    }

    fn connection_count(&self) -> usize {
        self.conns.len() + self.handshakes.len()
    }

    /// Accepts every waiting host process; each then owes its connect line.
    fn accept(&mut self) {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!(device = NAME, error = %e, "accept failed");
                    return;
                }
            };
            if self.connection_count() >= MAX_CONNECTIONS {
                tracing::debug!(
                    device = NAME,
                    max = MAX_CONNECTIONS,
                    "host connection closed: too many connections"
                );
                continue;
            }
            let fd = stream.as_raw_fd();
            let watched = stream
                .set_nonblocking(true)
                .and_then(|()| watch(&self.epoll, ControlOperation::Add, fd, EventSet::IN));
            match watched {
                Ok(()) => {
                    self.handshakes.insert(fd, Handshake::new(stream));
                }
                Err(e) => tracing::debug!(device = NAME, error = %e, "host connection closed"),
            }
        }
    }

    /// Reads a host process's connect line; a complete one becomes a connection.
    fn handshake(&mut self, fd: RawFd, live: bool) {
        let Some(handshake) = self.handshakes.get_mut(&fd) else {
            return;
        };
        let port = match handshake.read() {
            Progress::Waiting => return,
            Progress::Failed(reason) => {
                tracing::debug!(device = NAME, "host connection closed: {reason}");
                None
            }
            Progress::Connect(_) if !live => {
                tracing::debug!(
                    device = NAME,
                    "host connection closed: the guest's driver is not up"
                );
                None
            }
            Progress::Connect(port) => Some(port),
        };
        unwatch(&self.epoll, fd);
        let Some(handshake) = self.handshakes.remove(&fd) else {
            return;
        };
        let Some(peer) = port else {
            return;
        };
        let ports = Ports {
            local: self.free_local_port(peer),
            peer,
        };
        self.insert(ports, Connection::host_initiated(handshake.stream));
    }

    /// The next host port not in use with the guest's `peer` port.
    fn free_local_port(&mut self, peer: u32) -> u32 {
        loop {
            let local = self.next_local_port;
            self.next_local_port = local.checked_add(1).unwrap_or(FIRST_LOCAL_PORT);
            // At most MAX_CONNECTIONS ports are taken: this ends.
            if !self.conns.contains_key(&Ports { local, peer }) {
                return local;
            }
        }
    }

    fn insert(&mut self, ports: Ports, conn: Connection) {
        self.by_fd.insert(conn.fd(), ports);
        self.conns.insert(ports, conn);
        self.schedule(ports);
    }

    /// Closes a connection's host socket and forgets it.
    fn remove(&mut self, ports: Ports) {
        let Some(conn) = self.conns.remove(&ports) else {
            return;
        };
        self.by_fd.remove(&conn.fd());
        if conn.watched.is_some() {
            unwatch(&self.epoll, conn.fd());
        }
        if conn.queued {
            self.rxq.retain(|queued| *queued != ports);
        }
    }

    /// After any change to a connection: what epoll watches it for, whether it waits for an
    /// rx buffer, whether it is over.
    fn schedule(&mut self, ports: Ports) {
        let Some(conn) = self.conns.get_mut(&ports) else {
            return;
        };
        if conn.finished() {
            return self.remove(ports);
        }
        let wanted = conn.wanted_events();
        if wanted != conn.watched {
            let fd = conn.fd();
            let result = match (conn.watched, wanted) {
                (None, Some(events)) => watch(&self.epoll, ControlOperation::Add, fd, events),
                (Some(_), Some(events)) => watch(&self.epoll, ControlOperation::Modify, fd, events),
                (Some(_), None) => {
                    unwatch(&self.epoll, fd);
                    Ok(())
                }
                (None, None) => Ok(()),
            };
            match result {
                Ok(()) => conn.watched = wanted,
                Err(e) => conn.reset(ports, &format!("cannot watch the host socket: {e}")),
            }
        }
        if conn.has_rx_work() && !conn.queued {
            conn.queued = true;
            self.rxq.push_back(ports);
        }
    }

    /// Room for the RSTs another tx packet may need: the device takes tx packets only then.
    pub fn can_take_tx(&self) -> bool {
        self.loose_rsts.len() < MAX_LOOSE_RSTS
    }

    /// Something waits for an rx buffer.
    pub fn has_rx_work(&self) -> bool {
        !self.loose_rsts.is_empty() || !self.rxq.is_empty()
    }

    fn loose_rst(&mut self, ports: Ports, type_: u16, reason: &str) {
        tracing::debug!(
            device = NAME,
            local = ports.local,
            peer = ports.peer,
            "RST to the guest: {reason}"
        );
        if self.loose_rsts.len() < MAX_LOOSE_RSTS {
            self.loose_rsts.push_back((ports, type_));
        }
    }

    /// A packet from the guest `guest_cid` (parsed from its tx queue).
    pub fn on_guest_packet<B: BitmapSlice>(&mut self, packet: &VsockPacket<'_, B>, guest_cid: u64) {
        if packet.src_cid() != guest_cid || packet.dst_cid() != HOST_CID {
            tracing::debug!(
                device = NAME,
                src_cid = packet.src_cid(),
                dst_cid = packet.dst_cid(),
                "tx packet dropped: not from the guest's CID to the host's"
            );
            return;
        }
        let ports = Ports {
            local: packet.dst_port(),
            peer: packet.src_port(),
        };
        let op = packet.op();
        if packet.type_() != TYPE_STREAM {
            if op != OP_RST {
                self.loose_rst(ports, packet.type_(), "not a stream socket");
            }
            return;
        }
        let Some(conn) = self.conns.get_mut(&ports) else {
            match op {
                OP_REQUEST => self.connect(ports, packet),
                OP_RST => {}
                _ => self.loose_rst(ports, TYPE_STREAM, &format!("op {op} on no connection")),
            }
            return;
        };
        conn.update_peer_credit(packet.buf_alloc(), packet.fwd_cnt());
        match op {
            OP_RESPONSE => conn.on_response(ports),
            OP_RW => {
                if let Some(data) = packet.data_slice() {
                    conn.on_data(ports, data, &mut self.scratch);
                }
            }
            OP_SHUTDOWN => conn.on_shutdown(ports, packet.flags()),
            OP_RST => return self.remove(ports),
            OP_CREDIT_UPDATE => {}
            OP_CREDIT_REQUEST => conn.on_credit_request(),
            OP_REQUEST => conn.reset(ports, "REQUEST on an open connection"),
            op => conn.reset(ports, &format!("unknown op {op}")),
        }
        self.schedule(ports);
    }

    /// The guest connects to host port P: the host socket `<uds_path>_P`.
    fn connect<B: BitmapSlice>(&mut self, ports: Ports, packet: &VsockPacket<'_, B>) {
        if self.connection_count() >= MAX_CONNECTIONS {
            return self.loose_rst(ports, TYPE_STREAM, "too many connections");
        }
        let mut path = OsString::from(self.uds_path.as_os_str());
        path.push(format!("_{}", ports.local));
        match connect_nonblocking(Path::new(&path)) {
            Ok(stream) => self.insert(
                ports,
                Connection::guest_initiated(stream, packet.buf_alloc(), packet.fwd_cnt()),
            ),
            Err(e) => self.loose_rst(
                ports,
                TYPE_STREAM,
                &format!("cannot connect to {}: {e}", Path::new(&path).display()),
            ),
        }
    }

    /// Fills the guest's rx `packet` with the next packet due; returns its data length, or
    /// `None` when nothing was due after all.
    pub fn fill_rx<B: BitmapSlice>(
        &mut self,
        packet: &mut VsockPacket<'_, B>,
        guest_cid: u64,
    ) -> Option<u32> {
        if let Some((ports, type_)) = self.loose_rsts.pop_front() {
            let header = Header {
                type_,
                ..Header::control(OP_RST)
            };
            write_header(packet, guest_cid, ports, header);
            return Some(0);
        }
        // Each connection queued now gets one turn: one with nothing after all (its socket
        // had no data) is not queued again until something changes.
        for _ in 0..self.rxq.len() {
            let ports = self.rxq.pop_front()?;
            let Some(conn) = self.conns.get_mut(&ports) else {
                continue;
            };
            conn.queued = false;
            let filled = conn.fill_rx(packet, guest_cid, ports);
            self.schedule(ports);
            if filled.is_some() {
                return filled;
            }
        }
        None
    }
}

impl Drop for Muxer {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.uds_path) {
            tracing::debug!(device = NAME, path = %self.uds_path.display(), error = %e, "cannot remove the socket");
        }
    }
}

/// Has `epoll` watch `fd` for `events`, the fd as the event's data.
fn watch(epoll: &Epoll, op: ControlOperation, fd: RawFd, events: EventSet) -> io::Result<()> {
    // An open fd is non-negative.
    epoll.ctl(op, fd, EpollEvent::new(events, fd as u64))
}

fn unwatch(epoll: &Epoll, fd: RawFd) {
    // Only fails for an fd not watched, which is what we want.
    let _ = watch(epoll, ControlOperation::Delete, fd, EventSet::empty());
}

/// Connects to a host listener without blocking: a listener whose backlog is full refuses
/// (EAGAIN) instead of stopping the event loop until it accepts.
fn connect_nonblocking(path: &Path) -> io::Result<UnixStream> {
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let addr = UnixAddr::new(path)?;
    connect(fd.as_raw_fd(), &addr)?;
    Ok(UnixStream::from(fd))
}
