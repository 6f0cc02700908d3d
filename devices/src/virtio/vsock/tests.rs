//! The device driven as Linux's driver drives it (mock queues in guest memory, `activate`,
//! `queue_notified`, `host_ready`), against real Unix sockets on the host side.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use super::packet::{
    OP_CREDIT_REQUEST, OP_CREDIT_UPDATE, OP_REQUEST, OP_RESPONSE, OP_RST, OP_RW, OP_SHUTDOWN,
    SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM,
};
use super::{BUF_ALLOC, MAX_PKT_DATA, QUEUE_SIZE, RX_QUEUE_SIZE, RXQ, TXQ, Vsock, VsockError};
use crate::virtio::test_utils::Counter;
use crate::virtio::{Activation, GuestMemory, Queue, VirtioDevice, VirtioInterrupt};

const GUEST_CID: u64 = 3;
const HDR: usize = 44;
/// Linux's rx buffers: one descriptor, the header and 4 KiB of data.
const RX_DATA: u32 = 4096;
const RX_BUFFERS: u64 = 0x10_0000;
const RX_SLOT: u64 = 0x2000;
const TX_BUFFERS: u64 = 0x40_0000;
const TX_SLOT: u64 = 0x1_1000;
const TX_SLOTS: u16 = 128;

/// One packet as the guest sees or sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pkt {
    src_cid: u64,
    dst_cid: u64,
    src_port: u32,
    dst_port: u32,
    type_: u16,
    op: u16,
    flags: u32,
    buf_alloc: u32,
    fwd_cnt: u32,
    data: Vec<u8>,
}

impl Pkt {
    /// A guest packet from `src_port` to host port `dst_port`, 64 KiB of credit.
    fn guest(op: u16, src_port: u32, dst_port: u32) -> Self {
        Self {
            src_cid: GUEST_CID,
            dst_cid: 2,
            src_port,
            dst_port,
            type_: TYPE_STREAM,
            op,
            flags: 0,
            buf_alloc: 64 << 10,
            fwd_cnt: 0,
            data: Vec::new(),
        }
    }

    fn header(&self, len: u32) -> [u8; HDR] {
        let mut h = [0u8; HDR];
        h[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        h[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        h[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        h[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        h[24..28].copy_from_slice(&len.to_le_bytes());
        h[28..30].copy_from_slice(&self.type_.to_le_bytes());
        h[30..32].copy_from_slice(&self.op.to_le_bytes());
        h[32..36].copy_from_slice(&self.flags.to_le_bytes());
        h[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        h[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        h
    }

    fn parse(bytes: &[u8]) -> Self {
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        let u16_at = |at: usize| u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap());
        let len = u32_at(24) as usize;
        Self {
            src_cid: u64_at(0),
            dst_cid: u64_at(8),
            src_port: u32_at(16),
            dst_port: u32_at(20),
            type_: u16_at(28),
            op: u16_at(30),
            flags: u32_at(32),
            buf_alloc: u32_at(36),
            fwd_cnt: u32_at(40),
            data: bytes[HDR..HDR + len].to_vec(),
        }
    }
}

/// A split virtqueue of [`QUEUE_SIZE`] laid out from `base`. (virtio-queue's
/// `MockSplitQueue` puts its used ring over the upper half of its avail ring, so tests that
/// go round the ring use this.)
#[derive(Clone, Copy)]
struct Ring {
    desc: u64,
    avail: u64,
    used: u64,
}

impl Ring {
    fn at(base: u64) -> Self {
        Self {
            desc: base,
            avail: base + 0x1000,
            used: base + 0x2000,
        }
    }

    fn queue(&self) -> Queue {
        let mut queue = Queue::new(QUEUE_SIZE).unwrap();
        queue.set_size(QUEUE_SIZE);
        queue.set_desc_table_address(Some(self.desc as u32), Some((self.desc >> 32) as u32));
        queue.set_avail_ring_address(Some(self.avail as u32), Some((self.avail >> 32) as u32));
        queue.set_used_ring_address(Some(self.used as u32), Some((self.used >> 32) as u32));
        queue.set_ready(true);
        queue
    }

    fn used_idx(&self, memory: &GuestMemory) -> u16 {
        memory.read_obj(GuestAddress(self.used + 2)).unwrap()
    }

    /// The used ring's element `i`: the head index and the used length.
    fn used_elem(&self, memory: &GuestMemory, i: u16) -> (u32, u32) {
        let elem = self.used + 4 + 8 * u64::from(i % QUEUE_SIZE);
        (
            memory.read_obj(GuestAddress(elem)).unwrap(),
            memory.read_obj(GuestAddress(elem + 4)).unwrap(),
        )
    }
}

/// A driver with its queues, the device, and a watch on the device's host fd.
struct Guest<'m> {
    memory: &'m GuestMemory,
    rx: Ring,
    tx: Ring,
    device: Vsock,
    interrupt: Arc<Counter>,
    rx_offered: u16,
    rx_seen: u16,
    tx_offered: u16,
    epoll: Epoll,
    uds: PathBuf,
    _dir: tempfile::TempDir,
}

fn memory() -> GuestMemory {
    GuestMemory::from_ranges(&[(GuestAddress(0), 32 << 20)]).unwrap()
}

impl<'m> Guest<'m> {
    fn new(memory: &'m GuestMemory) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let uds = dir.path().join("v.sock");
        let mut device = Vsock::new(GUEST_CID, &uds).unwrap();
        let (rx, tx, ev) = (Ring::at(0), Ring::at(0x8000), Ring::at(0x1_0000));
        let interrupt = Arc::new(Counter::default());
        device
            .activate(Activation {
                memory: memory.clone(),
                queues: vec![rx.queue(), tx.queue(), ev.queue()],
                interrupt: VirtioInterrupt::new(interrupt.clone()),
                // No EVENT_IDX: every batch signals.
                acked_features: 1 << 32,
            })
            .unwrap();
        let epoll = Epoll::new().unwrap();
        let fds = device.host_fds();
        assert_eq!(fds.len(), 1, "one host fd: the muxer's epoll");
        epoll
            .ctl(
                ControlOperation::Add,
                fds[0],
                EpollEvent::new(EventSet::IN, 0),
            )
            .unwrap();
        Self {
            memory,
            rx,
            tx,
            device,
            interrupt,
            rx_offered: 0,
            rx_seen: 0,
            tx_offered: 0,
            epoll,
            uds,
            _dir: dir,
        }
    }

    fn host_fd(&self) -> i32 {
        self.device.host_fds()[0]
    }

    /// Makes `head` available on `queue` after `count` earlier chains (the ring wraps).
    fn make_available(ring: Ring, memory: &GuestMemory, count: u16, head: u16) {
        let slot = u64::from(count % QUEUE_SIZE);
        let avail = ring.avail;
        memory
            .write_obj(head, GuestAddress(avail + 4 + 2 * slot))
            .unwrap();
        memory
            .write_obj(count.wrapping_add(1), GuestAddress(avail + 2))
            .unwrap();
    }

    fn store(
        memory: &GuestMemory,
        ring: Ring,
        index: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) {
        let mut desc = [0u8; 16];
        desc[0..8].copy_from_slice(&addr.to_le_bytes());
        desc[8..12].copy_from_slice(&len.to_le_bytes());
        desc[12..14].copy_from_slice(&flags.to_le_bytes());
        desc[14..16].copy_from_slice(&next.to_le_bytes());
        memory
            .write_slice(&desc, GuestAddress(ring.desc + 16 * u64::from(index)))
            .unwrap();
    }

    /// Gives the device `n` rx buffers (Linux's: one descriptor, header and 4 KiB).
    fn offer_rx(&mut self, n: u16) {
        for _ in 0..n {
            if self.rx_offered.wrapping_sub(self.rx.used_idx(self.memory)) == QUEUE_SIZE {
                break;
            }
            let index = self.rx_offered % QUEUE_SIZE;
            let addr = RX_BUFFERS + u64::from(index) * RX_SLOT;
            Self::store(
                self.memory,
                self.rx,
                index,
                addr,
                HDR as u32 + RX_DATA,
                VRING_DESC_F_WRITE as u16,
                0,
            );
            Self::make_available(self.rx, self.memory, self.rx_offered, index);
            self.rx_offered = self.rx_offered.wrapping_add(1);
        }
        self.device.queue_notified(RXQ).unwrap();
    }

    /// Puts a tx chain of raw descriptors `(addr, len, flags)` (NEXT added) on the ring.
    fn offer_tx_raw(&mut self, descriptors: &[(u64, u32, u16)]) {
        let first = (self.tx_offered % TX_SLOTS) * 2;
        assert!(descriptors.len() <= 2);
        for (i, &(addr, len, flags)) in descriptors.iter().enumerate() {
            let i = i as u16;
            let last = usize::from(i) + 1 == descriptors.len();
            let flags = if last {
                flags
            } else {
                flags | VRING_DESC_F_NEXT as u16
            };
            Self::store(
                self.memory,
                self.tx,
                first + i,
                addr,
                len,
                flags,
                first + i + 1,
            );
        }
        Self::make_available(self.tx, self.memory, self.tx_offered, first);
        self.tx_offered = self.tx_offered.wrapping_add(1);
    }

    /// The tx slot the next chain's buffers go in.
    fn tx_slot(&self) -> u64 {
        TX_BUFFERS + u64::from(self.tx_offered % TX_SLOTS) * TX_SLOT
    }

    /// Sends `pkt` as Linux does: the header in one descriptor, the data in a second.
    fn send(&mut self, pkt: &Pkt) {
        self.send_claiming(pkt, pkt.data.len() as u32);
    }

    /// Sends `pkt` with `len` in its header, whatever its data.
    fn send_claiming(&mut self, pkt: &Pkt, len: u32) {
        let base = self.tx_slot();
        self.memory
            .write_slice(&pkt.header(len), GuestAddress(base))
            .unwrap();
        self.memory
            .write_slice(&pkt.data, GuestAddress(base + 0x100))
            .unwrap();
        if pkt.data.is_empty() {
            self.offer_tx_raw(&[(base, HDR as u32, 0)]);
        } else {
            self.offer_tx_raw(&[
                (base, HDR as u32, 0),
                (base + 0x100, pkt.data.len() as u32, 0),
            ]);
        }
        self.device.queue_notified(TXQ).unwrap();
    }

    /// The tx chains the device has returned.
    fn tx_used(&self) -> u16 {
        self.tx.used_idx(self.memory)
    }

    /// Every rx packet the device returned since the last call.
    fn received(&mut self) -> Vec<Pkt> {
        let used = self.rx.used_idx(self.memory);
        let mut out = Vec::new();
        while self.rx_seen != used {
            let (id, len) = self.rx.used_elem(self.memory, self.rx_seen);
            let mut bytes = vec![0u8; len as usize];
            self.memory
                .read_slice(
                    &mut bytes,
                    GuestAddress(RX_BUFFERS + u64::from(id) * RX_SLOT),
                )
                .unwrap();
            out.push(Pkt::parse(&bytes));
            self.rx_seen = self.rx_seen.wrapping_add(1);
        }
        out
    }

    /// Serves the device's host fd until it is quiet; panics if it never settles (a ready fd
    /// the device does not consume would make the event loop spin).
    fn pump(&mut self) {
        let mut events = [EpollEvent::default(); 1];
        for _ in 0..1000 {
            if self.epoll.wait(0, &mut events).unwrap() == 0 {
                return;
            }
            let fd = self.host_fd();
            self.device.host_ready(fd).unwrap();
        }
        panic!("the device's host fd stays ready");
    }

    /// Pumps until `done` holds, up to 5 s (for peers in other processes).
    fn pump_until(&mut self, mut done: impl FnMut(&mut Self) -> bool) {
        let mut events = [EpollEvent::default(); 1];
        for _ in 0..500 {
            self.pump();
            if done(self) {
                return;
            }
            let _ = self.epoll.wait(10, &mut events);
        }
        panic!("timed out");
    }

    /// A host process connects with `CONNECT port`; the guest accepts; returns the host
    /// stream and the host port the device gave it.
    fn host_connects(&mut self, port: u32, guest_port_buf_alloc: u32) -> (UnixStream, u32) {
        let mut host = UnixStream::connect(&self.uds).unwrap();
        host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        host.write_all(format!("CONNECT {port}\n").as_bytes())
            .unwrap();
        self.offer_rx(1);
        self.pump();
        let request = self.received();
        assert_eq!(request.len(), 1, "{request:?}");
        let request = &request[0];
        assert_eq!(
            (
                request.src_cid,
                request.dst_cid,
                request.dst_port,
                request.op,
                request.type_
            ),
            (2, GUEST_CID, port, OP_REQUEST, TYPE_STREAM)
        );
        assert_eq!(request.buf_alloc, BUF_ALLOC);
        let local = request.src_port;
        let mut response = Pkt::guest(OP_RESPONSE, port, local);
        response.buf_alloc = guest_port_buf_alloc;
        self.send(&response);
        let expected = format!("OK {local}\n");
        let mut line = vec![0u8; expected.len()];
        host.read_exact(&mut line).unwrap();
        assert_eq!(String::from_utf8(line).unwrap(), expected);
        (host, local)
    }

    /// The guest connects to host port `port`, where a listener waits; returns the host
    /// side's accepted stream.
    fn guest_connects(&mut self, guest_port: u32, port: u32) -> (UnixListener, UnixStream) {
        let listener = UnixListener::bind(format!("{}_{port}", self.uds.display())).unwrap();
        self.send(&Pkt::guest(OP_REQUEST, guest_port, port));
        self.offer_rx(1);
        let response = self.received();
        assert_eq!(response.len(), 1);
        assert_eq!(
            (response[0].op, response[0].src_port, response[0].dst_port),
            (OP_RESPONSE, port, guest_port)
        );
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        (listener, stream)
    }
}

/// Reads until end of file (or the 5 s timeout, which fails).
fn read_to_eof(stream: &mut UnixStream) -> Vec<u8> {
    let mut out = Vec::new();
    stream
        .read_to_end(&mut out)
        .expect("end of file, not a timeout");
    out
}

/// The device closed `stream`: end of file, or a reset when it left bytes unread.
fn assert_closed(stream: &mut UnixStream) {
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "{rest:?}"),
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
    }
}

fn data(pkts: &[Pkt]) -> Vec<u8> {
    pkts.iter()
        .filter(|p| p.op == OP_RW)
        .flat_map(|p| p.data.clone())
        .collect()
}

fn ops(pkts: &[Pkt]) -> Vec<u16> {
    pkts.iter().map(|p| p.op).collect()
}

#[test]
fn new_refuses_reserved_cids_and_bad_paths() {
    let dir = tempfile::tempdir().unwrap();
    for cid in [0, 1, 2, u64::from(u32::MAX), 1 << 40] {
        let error = Vsock::new(cid, dir.path().join("a")).unwrap_err();
        assert!(
            matches!(error, VsockError::ReservedCid { cid: c } if c == cid),
            "{error}"
        );
    }
    let taken = dir.path().join("taken");
    std::fs::write(&taken, b"").unwrap();
    let error = Vsock::new(3, &taken).unwrap_err();
    assert!(matches!(error, VsockError::PathExists { .. }), "{error}");
    assert!(error.to_string().contains("taken"), "{error}");
    let error = Vsock::new(3, dir.path().join("missing/v.sock")).unwrap_err();
    assert!(matches!(error, VsockError::NoDirectory { .. }), "{error}");
    let long = dir.path().join("x".repeat(120));
    let error = Vsock::new(3, &long).unwrap_err();
    assert!(
        matches!(error, VsockError::PathTooLong { max: 107, .. }),
        "{error}"
    );
    assert!(!long.exists());
}

#[test]
fn config_space_is_the_guest_cid_le64_and_the_socket_goes_with_the_device() {
    let memory = memory();
    let guest = Guest::new(&memory);
    let mut config = [0xffu8; 12];
    guest.device.read_config(0, &mut config);
    assert_eq!(config, [3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let mut high = [0xffu8; 4];
    guest.device.read_config(4, &mut high);
    assert_eq!(high, [0; 4]);
    assert_eq!(guest.device.device_type(), 19);
    assert_eq!(
        guest.device.queue_max_sizes(),
        &[RX_QUEUE_SIZE, QUEUE_SIZE, QUEUE_SIZE]
    );
    let uds = guest.uds.clone();
    assert_eq!(guest.device.uds_path(), uds);
    assert!(uds.exists());
    drop(guest);
    assert!(!uds.exists(), "the socket file is removed with the device");
}

#[test]
fn host_connect_handshake_then_data_both_ways_in_order() {
    let memory = memory();
    let mut guest = Guest::new(&memory);
    let (mut host, local) = guest.host_connects(1024, 64 << 10);
    assert!(local >= 1 << 30);

    host.write_all(b"hello ").unwrap();
    host.write_all(b"guest").unwrap();
    guest.offer_rx(4);
    guest.pump();
    let got = guest.received();
    assert!(
        got.iter()
            .all(|p| (p.src_port, p.dst_port) == (local, 1024))
    );
    assert_eq!(data(&got), b"hello guest");

    let mut rw = Pkt::guest(OP_RW, 1024, local);
    for chunk in [&b"hello "[..], b"host"] {
        rw.data = chunk.to_vec();
        guest.send(&rw);
    }
    let mut back = [0u8; 10];
    host.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hello host");
}

#[test]
fn data_sent_right_after_the_connect_line_reaches_the_guest() {
    let memory = memory();
    let mut guest = Guest::new(&memory);
    let mut host = UnixStream::connect(&guest.uds).unwrap();
    host.write_all(b"CONNECT 77\nearly bytes").unwrap();
    guest.offer_rx(1);
    guest.pump();
    let request = guest.received().remove(0);
    guest.send(&Pkt::guest(OP_RESPONSE, 77, request.src_port));
    guest.offer_rx(2);
    guest.pump();
    assert_eq!(data(&guest.received()), b"early bytes");
}

#[test]
fn a_guest_rst_to_the_request_closes_the_host_connection() {
    let memory = memory();
    let mut guest = Guest::new(&memory);
    let mut host = UnixStream::connect(&guest.uds).unwrap();
    host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    host.write_all(b"CONNECT 1024\n").unwrap();
    guest.offer_rx(1);
    guest.pump();
    let request = guest.received().remove(0);
    // Nothing listens on 1024 in the guest: its kernel answers RST.
    guest.send(&Pkt::guest(OP_RST, 1024, request.src_port));
    assert_eq!(read_to_eof(&mut host), b"", "closed at once, no OK line");
}

#[test]
fn a_malformed_connect_line_closes_the_host_connection() {
    let memory = memory();
    let mut guest = Guest::new(&memory);
    guest.offer_rx(2);
    for line in [&b"HELLO 1024\n"[..], &[b'C'; 40], b"CONNECT x\n"] {
        let mut host = UnixStream::connect(&guest.uds).unwrap();
        host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        host.write_all(line).unwrap();
        guest.pump();
        assert_closed(&mut host);
    }
    assert!(guest.received().is_empty(), "the guest heard of none");
}

#[test]
fn a_connect_before_the_driver_is_up_is_closed() {
    let memory = memory();
    let mut guest = Guest::new(&memory);
    guest.device.reset();
    let mut host = UnixStream::connect(&guest.uds).unwrap();
    host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    host.write_all(b"CONNECT 1024\n").unwrap();
    guest.pump();
    assert_eq!(read_to_eof(&mut host), b"");
}

#[test]
fn a_guest_request_reaches_the_listener_at_uds_port_and_data_flows() {
    let memory = memory();
    let mut guest = Guest::new(&memory);
    let (_listener, mut host) = guest.guest_connects(5555, 7000);
    let mut rw = Pkt::guest(OP_RW, 5555, 7000);
    rw.data = b"from the guest".to_vec();
    guest.send(&rw);
    let mut got = [0u8; 14];
    host.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"from the guest");
    host.write_all(b"from the host").unwrap();
    guest.offer_rx(2);
    guest.pump();
    let got = guest.received();
    assert_eq!(data(&got), b"from the host");
    assert_eq!((got[0].src_port, got[0].dst_port), (7000, 5555));
}

#[test]
fn a_guest_request_where_nothing_listens_gets_a_rst() {
    let memory = memory();
    let mut guest = Guest::new(&memory);
    guest.send(&Pkt::guest(OP_REQUEST, 5555, 7001));
    guest.offer_rx(1);
    let got = guest.received();
    assert_eq!(ops(&got), [OP_RST]);
    assert_eq!(
        (got[0].src_port, got[0].dst_port, got[0].dst_cid),
        (7001, 5555, GUEST_CID)
    );
}

#[test]
fn one_interrupt_per_batch_of_rx_buffers() {
    let memory = memory();
    let mut guest = Guest::new(&memory);
    let (mut host, _) = guest.host_connects(1024, 1 << 20);
    host.write_all(&[7u8; 8 * RX_DATA as usize]).unwrap();
    guest.pump();
    let before = guest.interrupt.count();
    guest.offer_rx(8);
    let got = guest.received();
    assert_eq!(got.len(), 8);
    assert!(got.iter().all(|p| p.data.len() == RX_DATA as usize));
    assert_eq!(guest.interrupt.count() - before, 1);
}

#[test]
fn the_device_never_sends_past_the_guests_credit() {
    let memory = memory();
    let mut guest = Guest::new(&memory);
    // The guest's socket buffer is 8 KiB.
    let (mut host, local) = guest.host_connects(1024, 8192);
    host.set_nonblocking(true).unwrap();
    let block = vec![1u8; 64 << 10];
    let mut written = 0;
    loop {
        match host.write(&block) {
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
        guest.offer_rx(16);
        guest.pump();
        assert!(written < 16 << 20, "the host writer never blocked");
    }
    let got = guest.received();
    assert_eq!(data(&got).len(), 8192, "exactly the credit");
    assert_eq!(
        ops(&got).last(),
        Some(&OP_CREDIT_REQUEST),
        "{:?}",
        ops(&got)
    );
    assert!(written > 8192, "the host wrote more than the guest took");

    // The guest's application read it all: its credit update lets the next 8 KiB through.
    let mut update = Pkt::guest(OP_CREDIT_UPDATE, 1024, local);
    update.buf_alloc = 8192;
    update.fwd_cnt = 8192;
    guest.send(&update);
    guest.pump();
    assert_eq!(data(&guest.received()).len(), 8192);
}

#[test]
fn without_rx_buffers_the_host_socket_is_not_read_and_the_loop_does_not_spin() {
    let memory = memory();
    let mut guest = Guest::new(&memory);
    let (mut host, _) = guest.host_connects(1024, 1 << 20);
    host.set_nonblocking(true).unwrap();
    let mut written = 0;
    loop {
        match host.write(&[2u8; 4096]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
        // Settles (else pump panics) although the socket stays readable.
        guest.pump();
        assert!(written < 16 << 20, "the host writer never blocked");
    }
    assert!(guest.received().is_empty());
    // Buffers come: the data follows.
    guest.offer_rx(4);
    assert_eq!(data(&guest.received()).len(), 4 * RX_DATA as usize);
}

#[test]
fn a_host_reader_that_never_reads_stops_the_device_at_its_buffer() {
    let memory = memory();
    let mut guest = Guest::new(&memory);
    let (_listener, mut host) = guest.guest_connects(5555, 7002);
    let mut rw = Pkt::guest(OP_RW, 5555, 7002);
    rw.data = vec![0u8; MAX_PKT_DATA];
    // The guest sends within the device's credit: BUF_ALLOC ahead of the fwd_cnt it heard.
    let mut sent: u32 = 0;
    let mut heard_fwd = 0u32;
    let mut sequence = 0u8;
    while sent - heard_fwd + MAX_PKT_DATA as u32 <= BUF_ALLOC {
        assert!(sent < 64 << 20, "the device's credit never ran out");
        rw.data.fill(sequence);
        sequence = sequence.wrapping_add(1);
        guest.send(&rw);
        sent += MAX_PKT_DATA as u32;
        guest.offer_rx(1);
        for p in guest.received() {
            heard_fwd = heard_fwd.max(p.fwd_cnt);
        }
    }
    // Stuck: ask for credit, and hear that the host took no more than the socket holds.
    guest.send(&Pkt::guest(OP_CREDIT_REQUEST, 5555, 7002));
    guest.offer_rx(1);
    let update = guest.received().pop().unwrap();
    assert_eq!(update.op, OP_CREDIT_UPDATE);
    let held = sent - update.fwd_cnt;
    assert!(
        held > 0 && held <= BUF_ALLOC,
        "the device holds {held} bytes"
    );

    // A guest that sends past its credit is reset, not buffered.
    guest.send(&rw);
    guest.offer_rx(1);
    assert_eq!(ops(&guest.received()), [OP_RST]);
    let mut all = Vec::new();
    host.read_to_end(&mut all).unwrap();
    // What the socket had taken arrives, in order; the rest was dropped with the connection.
    assert!(all.len() as u32 >= update.fwd_cnt);
    for (i, chunk) in all.chunks(MAX_PKT_DATA).enumerate() {
        assert!(
            chunk.iter().all(|&b| b == i as u8),
            "chunk {i} out of order"
        );
    }
}

#[test]
fn a_slow_host_reader_gets_everything_in_order_as_it_drains() {
    let memory = memory();
    let mut guest = Guest::new(&memory);
    let (_listener, mut host) = guest.guest_connects(5555, 7003);
    host.set_nonblocking(true).unwrap();
    let total = 4usize << 20;
    let mut sent = 0usize;
    let mut heard_fwd = 0u32;
    let mut received = Vec::with_capacity(total);
    let mut piece = vec![0u8; 1 << 16];
    let mut guard = 0;
    while received.len() < total {
        guard += 1;
        assert!(guard < 100_000, "stuck at {} of {total}", received.len());
        let in_flight = sent as u32 - heard_fwd;
        if sent < total && in_flight + 16384 <= BUF_ALLOC {
            let mut rw = Pkt::guest(OP_RW, 5555, 7003);
            rw.data = (sent..sent + 16384).map(|i| (i % 251) as u8).collect();
            guest.send(&rw);
            sent += 16384;
        }
        guest.offer_rx(1);
        for p in guest.received() {
            heard_fwd = p.fwd_cnt;
        }
        // The host reads a little at a time.
        match host.read(&mut piece[..7000]) {
            Ok(n) => received.extend_from_slice(&piece[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
        guest.pump();
    }
    assert!(
        received
            .iter()
            .enumerate()
            .all(|(i, &b)| b == (i % 251) as u8)
    );
}

#[test]
fn host_half_close_then_guest_close() {
    let memory = memory();
    let mut guest = Guest::new(&memory);
    let (mut host, local) = guest.host_connects(1024, 1 << 20);
    host.write_all(b"last words").unwrap();
    host.shutdown(Shutdown::Write).unwrap();
    guest.offer_rx(4);
    guest.pump();
    let got = guest.received();
    assert_eq!(data(&got), b"last words");
    let shutdown = got.last().unwrap();
    assert_eq!((shutdown.op, shutdown.flags), (OP_SHUTDOWN, SHUTDOWN_SEND));
    // The guest still sends; the host still reads.
    let mut rw = Pkt::guest(OP_RW, 1024, local);
    rw.data = b"reply".to_vec();
    guest.send(&rw);
    let mut reply = [0u8; 5];
    host.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"reply");
    // The guest closes: both directions are done, the device answers RST.
    let mut close = Pkt::guest(OP_SHUTDOWN, 1024, local);
    close.flags = SHUTDOWN_RCV | SHUTDOWN_SEND;
    guest.send(&close);
    assert_eq!(read_to_eof(&mut host), b"");
    assert_eq!(ops(&guest.received()), [OP_RST]);
}

#[test]
fn guest_half_close_then_host_close() {
    let memory = memory();
    let mut guest = Guest::new(&memory);
    let (_listener, mut host) = guest.guest_connects(5555, 7004);
    let mut rw = Pkt::guest(OP_RW, 5555, 7004);
    rw.data = b"request".to_vec();
    guest.send(&rw);
    let mut shut = Pkt::guest(OP_SHUTDOWN, 5555, 7004);
    shut.flags = SHUTDOWN_SEND;
    guest.send(&shut);
    assert_eq!(
        read_to_eof(&mut host),
        b"request",
        "the guest's SHUTDOWN(SEND) is an EOF"
    );
    host.write_all(b"response").unwrap();
    drop(host);
    guest.offer_rx(4);
    guest.pump();
    let got = guest.received();
    assert_eq!(data(&got), b"response");
    assert_eq!(ops(&got).last(), Some(&OP_RST), "{:?}", ops(&got));
}

#[test]
fn a_guest_rst_closes_the_host_socket() {
    let memory = memory();
    let mut guest = Guest::new(&memory);
    let (_listener, mut host) = guest.guest_connects(5555, 7005);
    guest.send(&Pkt::guest(OP_RST, 5555, 7005));
    assert_eq!(read_to_eof(&mut host), b"");
}

#[test]
fn a_device_reset_closes_every_host_socket() {
    let memory = memory();
    let mut guest = Guest::new(&memory);
    let (_listener, mut first) = guest.guest_connects(5555, 7006);
    let (mut second, _) = guest.host_connects(1024, 1 << 20);
    let mut pending = UnixStream::connect(&guest.uds).unwrap();
    pending
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    pending.write_all(b"CONN").unwrap();
    guest.pump();
    guest.device.reset();
    for host in [&mut first, &mut second, &mut pending] {
        assert_eq!(read_to_eof(host), b"");
    }
    assert!(guest.uds.exists(), "the listener stays for the next driver");
}

#[test]
fn dropping_the_device_closes_connections_and_removes_the_socket() {
    let memory = memory();
    let mut guest = Guest::new(&memory);
    let (mut host, _) = guest.host_connects(1024, 1 << 20);
    let uds = guest.uds.clone();
    drop(guest);
    assert_eq!(read_to_eof(&mut host), b"");
    assert!(!uds.exists());
}

#[test]
fn malformed_tx_packets_are_dropped_or_reset_never_a_panic() {
    let memory = memory();
    let mut guest = Guest::new(&memory);
    let (_listener, mut host) = guest.guest_connects(5555, 7007);
    host.set_nonblocking(true).unwrap();

    // Wrong destination or source CID: dropped, no answer.
    let mut wrong = Pkt::guest(OP_REQUEST, 1, 7007);
    wrong.dst_cid = 7;
    guest.send(&wrong);
    wrong.dst_cid = 2;
    wrong.src_cid = 9;
    guest.send(&wrong);
    // A header split across two descriptors.
    let base = guest.tx_slot();
    memory
        .write_slice(
            &Pkt::guest(OP_REQUEST, 2, 7007).header(0),
            GuestAddress(base),
        )
        .unwrap();
    guest.offer_tx_raw(&[(base, 20, 0), (base + 20, 24, 0)]);
    guest.device.queue_notified(TXQ).unwrap();
    // A len past the largest packet, and a len past its buffer.
    let mut rw = Pkt::guest(OP_RW, 5555, 7007);
    rw.data = vec![9; 16];
    guest.send_claiming(&rw, MAX_PKT_DATA as u32 + 1);
    guest.send_claiming(&rw, 17);
    // A device-writable tx descriptor.
    let base = guest.tx_slot();
    memory
        .write_slice(
            &Pkt::guest(OP_REQUEST, 3, 7007).header(0),
            GuestAddress(base),
        )
        .unwrap();
    guest.offer_tx_raw(&[(base, HDR as u32, VRING_DESC_F_WRITE as u16)]);
    guest.device.queue_notified(TXQ).unwrap();
    // A descriptor outside guest memory.
    guest.offer_tx_raw(&[(1 << 40, HDR as u32, 0)]);
    guest.device.queue_notified(TXQ).unwrap();
    assert_eq!(guest.tx_used(), 1 + 7, "every chain returned");
    guest.offer_rx(8);
    assert!(guest.received().is_empty(), "dropped without a word");
    let mut nothing = [0u8; 16];
    assert!(host.read(&mut nothing).is_err(), "no data reached the host");

    // An unknown op and a seqpacket on no connection: RST, with the packet's type.
    guest.send(&Pkt::guest(99, 6, 7007));
    let mut seqpacket = Pkt::guest(OP_REQUEST, 8, 7007);
    seqpacket.type_ = 2;
    guest.send(&seqpacket);
    // Data on no connection.
    let mut stray = Pkt::guest(OP_RW, 10, 7007);
    stray.data = b"x".to_vec();
    guest.send(&stray);
    let got = guest.received();
    assert_eq!(ops(&got), [OP_RST; 3]);
    assert_eq!(
        got.iter()
            .map(|p| (p.dst_port, p.type_))
            .collect::<Vec<_>>(),
        [(6, TYPE_STREAM), (8, 2), (10, TYPE_STREAM)]
    );
    // An unknown op on a live connection resets it.
    guest.send(&Pkt::guest(42, 5555, 7007));
    assert_eq!(ops(&guest.received()), [OP_RST]);
    host.set_nonblocking(false).unwrap();
    host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(read_to_eof(&mut host), b"");
}

#[test]
fn bad_rx_buffers_are_returned_empty() {
    let memory = memory();
    let mut guest = Guest::new(&memory);
    guest.send(&Pkt::guest(OP_REQUEST, 5555, 7999));
    // A device-readable rx buffer, then a good one.
    let index = guest.rx_offered % QUEUE_SIZE;
    Guest::store(
        &memory,
        guest.rx,
        index,
        RX_BUFFERS + u64::from(index) * RX_SLOT,
        4096,
        0,
        0,
    );
    Guest::make_available(guest.rx, &memory, guest.rx_offered, index);
    guest.rx_offered += 1;
    guest.offer_rx(1);
    let used_lens: Vec<u32> = (0..2).map(|i| guest.rx.used_elem(&memory, i).1).collect();
    assert_eq!(used_lens, [0, HDR as u32]);
}

#[test]
fn too_many_connections_are_refused() {
    let memory = memory();
    let mut guest = Guest::new(&memory);
    let _listener = UnixListener::bind(format!("{}_7100", guest.uds.display())).unwrap();
    for port in 0..super::MAX_CONNECTIONS as u32 + 1 {
        guest.send(&Pkt::guest(OP_REQUEST, 20_000 + port, 7100));
        guest.offer_rx(1);
    }
    let got = guest.received();
    assert_eq!(
        got.iter().filter(|p| p.op == OP_RESPONSE).count(),
        super::MAX_CONNECTIONS
    );
    assert_eq!(got.last().map(|p| p.op), Some(OP_RST));
}

/// Firecracker's handshake from a plain tool: `socat` as the host process.
#[test]
fn socat_connects_with_the_hybrid_handshake() {
    let Ok(socat) = which("socat") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs socat (Debian package socat)"
        );
        eprintln!("skipped: no socat");
        return;
    };
    let memory = memory();
    let mut guest = Guest::new(&memory);
    let mut child = std::process::Command::new(socat)
        .arg("-")
        .arg(format!("UNIX-CONNECT:{}", guest.uds.display()))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    stdin.write_all(b"CONNECT 1024\nping\n").unwrap();
    guest.offer_rx(4);
    let mut got = Vec::new();
    guest.pump_until(|g| {
        got.extend(g.received());
        got.iter().any(|p| p.op == OP_REQUEST)
    });
    let local = got[0].src_port;
    guest.send(&Pkt::guest(OP_RESPONSE, 1024, local));
    let mut got = Vec::new();
    guest.pump_until(|g| {
        got.extend(g.received());
        data(&got) == b"ping\n"
    });
    let mut rw = Pkt::guest(OP_RW, 1024, local);
    rw.data = b"pong\n".to_vec();
    guest.send(&rw);
    let mut rst = Pkt::guest(OP_SHUTDOWN, 1024, local);
    rst.flags = SHUTDOWN_RCV | SHUTDOWN_SEND;
    guest.send(&rst);
    drop(stdin);
    let out = reader.join().unwrap();
    assert_eq!(String::from_utf8_lossy(&out), format!("OK {local}\npong\n"));
    assert!(child.wait().unwrap().success());
}

fn which(tool: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(tool))
                .find(|path| path.is_file())
        })
        .ok_or(())
}

/// On the real event loop (behind the virtio-mmio transport, before any driver): the
/// muxer's epoll is the fd it watches, so host processes are served on the loop's thread.
#[test]
fn the_event_loop_serves_the_host_side_through_the_one_fd() {
    use crate::event_loop::EventLoop;
    use crate::virtio::mmio::MmioTransport;

    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v.sock");
    let device = Vsock::new(GUEST_CID, &uds).unwrap();
    let transport = MmioTransport::new(Box::new(device), memory(), Arc::new(Counter::default()));
    let transport = Arc::new(std::sync::Mutex::new(transport.unwrap()));
    let mut event_loop = EventLoop::new().unwrap();
    event_loop.add_virtio(&transport).unwrap();
    let running = event_loop.start(|| {}).unwrap();
    // No driver yet: a complete connect line is answered by closing, as when nothing in the
    // guest listens; a host process that has not finished its line is left waiting.
    let mut waiting = UnixStream::connect(&uds).unwrap();
    waiting.write_all(b"CONNECT").unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut host = UnixStream::connect(&uds).unwrap();
    host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    host.write_all(b"CONNECT 1024\n").unwrap();
    assert_eq!(read_to_eof(&mut host), b"");
    let mut byte = [0u8];
    let error = waiting.read(&mut byte).unwrap_err();
    assert!(
        matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{error}"
    );
    running.stop().unwrap();
    drop(transport);
    assert!(!uds.exists());
}
