//! Random guest packets and host traffic into virtio-vsock: whatever a guest puts on its tx
//! queue (any header, any length, any descriptor layout) and rx queue, while host processes
//! connect, write handshake lines and data, read and hang up, the device neither panics nor
//! hangs, every used element names a descriptor inside its queue and fits its buffer, its
//! host fd goes quiet after it is served (a ready socket it does not consume would make the
//! event loop spin), and dropping it removes its socket file.
//!
//!   cargo xtask fuzz --target vsock --seconds 60
//!
//! runs, on the stable toolchain,
//!
//!   cd devices/fuzz && cargo fuzz run vsock --sanitizer none --debug-assertions \
//!       corpus/vsock -- -max_total_time=60 -timeout=10

#![no_main]

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use devices::NoInterrupt;
use devices::virtio::vsock::{MAX_PKT_DATA, RXQ, TXQ, Vsock};
use devices::virtio::{Activation, GuestMemory, Queue, VirtioDevice, VirtioInterrupt};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

/// Guest RAM: room for a 64 KiB packet past the rings, and random addresses outside it.
const MEMORY_SIZE: usize = 192 << 10;
/// Every queue's size here: small, so the rings wrap.
const SIZE: u16 = 16;
/// The rings: rx, tx, event, each a descriptor table, an avail ring and a used ring.
const RINGS: [u64; 3] = [0, 0x400, 0x800];
const BUFFERS: u64 = 0x1000;
const HDR: u32 = 44;
const GUEST_CID: u64 = 3;

#[derive(Debug, Arbitrary)]
struct Packet {
    /// Whether the source CID is the guest's (else `src_cid`).
    from_guest: bool,
    src_cid: u64,
    /// Whether the destination CID is the host's (else `dst_cid`).
    to_host: bool,
    dst_cid: u64,
    /// The guest's port, one of four.
    src_port: u8,
    /// Whether the host port is one the device hands out (else a listener's, 1 to 4).
    host_initiated: bool,
    dst_port: u8,
    /// `len` as the header claims it; the data below is what is there.
    len: u32,
    claim_true_len: bool,
    type_: u16,
    op: u8,
    flags: u32,
    buf_alloc: u32,
    fwd_cnt: u32,
    data: Vec<u8>,
    /// 0: header and data in one descriptor; 1: two (Linux); 2: the header split; 3: a
    /// device-writable descriptor.
    layout: u8,
}

#[derive(Debug, Arbitrary)]
enum Op {
    Tx(Packet),
    /// Raw descriptors on the tx ring: addr offset, len, flags, next.
    RawTx(Vec<(u16, u16, u16, u16)>),
    /// `count` rx buffers of `HDR + size` bytes, in one descriptor or two.
    Rx {
        count: u8,
        size: u16,
        split: bool,
    },
    Notify(u8),
    /// A host process connects and writes `line` (a `CONNECT`, or anything).
    HostConnect {
        port: Option<u8>,
        line: Vec<u8>,
    },
    HostWrite {
        conn: u8,
        data: Vec<u8>,
    },
    HostRead {
        conn: u8,
    },
    HostShutdown {
        conn: u8,
        write_only: bool,
    },
    HostClose {
        conn: u8,
    },
    /// A host listener at `<uds>_P` for P in 1..=4.
    Listen(u8),
    HostReady,
    Reset,
    Activate,
}

#[derive(Debug, Arbitrary)]
struct Input {
    acked: u64,
    ops: Vec<Op>,
}

/// The driver's side: where the next chains go.
struct Rings {
    memory: GuestMemory,
    offered: [u16; 3],
    next_buffer: u64,
}

impl Rings {
    fn queue(ring: u64) -> Queue {
        let mut queue = Queue::new(SIZE).expect("a power of 2");
        queue.set_size(SIZE);
        queue.set_desc_table_address(Some(ring as u32), Some(0));
        queue.set_avail_ring_address(Some(ring as u32 + 0x100), Some(0));
        queue.set_used_ring_address(Some(ring as u32 + 0x200), Some(0));
        queue.set_ready(true);
        queue
    }

    /// Room for `len` bytes in the buffer area (it wraps, as a guest's pages are reused).
    fn buffer(&mut self, len: usize) -> u64 {
        let len = len as u64;
        let end = MEMORY_SIZE as u64;
        if self.next_buffer + len > end {
            self.next_buffer = BUFFERS;
        }
        let at = self.next_buffer;
        self.next_buffer = (at + len + 7) & !7;
        at
    }

    /// Writes descriptors (the chain's) at table slots from the chain's turn and offers it.
    fn offer(&mut self, queue: usize, descriptors: &[(u64, u32, u16)]) {
        let ring = RINGS[queue];
        let count = self.offered[queue];
        let first = (count.wrapping_mul(2)) % SIZE;
        for (i, &(addr, len, flags)) in descriptors.iter().take(2).enumerate() {
            let index = (first + i as u16) % SIZE;
            let last = i + 1 == descriptors.len().min(2);
            let flags = if last { flags & !1 } else { flags | 1 };
            let mut raw = addr.to_le_bytes().to_vec();
            raw.extend(len.to_le_bytes());
            raw.extend(flags.to_le_bytes());
            raw.extend(((index + 1) % SIZE).to_le_bytes());
            let _ = self
                .memory
                .write_slice(&raw, GuestAddress(ring + 16 * u64::from(index)));
        }
        let slot = u64::from(count % SIZE);
        let _ = self
            .memory
            .write_obj(first, GuestAddress(ring + 0x100 + 4 + 2 * slot));
        let _ = self
            .memory
            .write_obj(count.wrapping_add(1), GuestAddress(ring + 0x100 + 2));
        self.offered[queue] = count.wrapping_add(1);
    }

    fn tx(&mut self, packet: &Packet) {
        let data = &packet.data[..packet.data.len().min(MAX_PKT_DATA + 16)];
        let len = if packet.claim_true_len {
            data.len() as u32
        } else {
            packet.len
        };
        let mut header = Vec::with_capacity(HDR as usize);
        let src_cid = if packet.from_guest {
            GUEST_CID
        } else {
            packet.src_cid
        };
        let dst_cid = if packet.to_host { 2 } else { packet.dst_cid };
        let dst_port = if packet.host_initiated {
            (1 << 30) + u32::from(packet.dst_port % 4)
        } else {
            u32::from(packet.dst_port % 4) + 1
        };
        header.extend(src_cid.to_le_bytes());
        header.extend(dst_cid.to_le_bytes());
        header.extend((1000 + u32::from(packet.src_port % 4)).to_le_bytes());
        header.extend(dst_port.to_le_bytes());
        header.extend(len.to_le_bytes());
        header.extend(packet.type_.to_le_bytes());
        header.extend(u16::from(packet.op % 9).to_le_bytes());
        header.extend(packet.flags.to_le_bytes());
        header.extend(packet.buf_alloc.to_le_bytes());
        header.extend(packet.fwd_cnt.to_le_bytes());
        let at = self.buffer(header.len() + data.len());
        let _ = self.memory.write_slice(&header, GuestAddress(at));
        let _ = self
            .memory
            .write_slice(data, GuestAddress(at + u64::from(HDR)));
        let data_len = data.len() as u32;
        let descriptors: Vec<(u64, u32, u16)> = match packet.layout % 4 {
            0 => vec![(at, HDR + data_len, 0)],
            1 => vec![(at, HDR, 0), (at + u64::from(HDR), data_len, 0)],
            2 => vec![(at, 20, 0), (at + 20, HDR - 20 + data_len, 0)],
            _ => vec![(at, HDR + data_len, 2)],
        };
        self.offer(TXQ, &descriptors);
    }
}

/// Host peer `conn`, counted round the ones there are.
fn pick(hosts: &mut [UnixStream], conn: u8) -> Option<&mut UnixStream> {
    let len = hosts.len().max(1);
    hosts.get_mut(usize::from(conn) % len)
}

static RUN: AtomicU64 = AtomicU64::new(0);

/// Serves the device's host fd until it is quiet; it must get there.
fn pump(device: &mut Vsock, watch: &Epoll, fd: i32) {
    let mut events = [EpollEvent::default(); 1];
    for _ in 0..64 {
        if watch.wait(0, &mut events).expect("epoll") == 0 {
            return;
        }
        let _ = device.host_ready(fd);
    }
    panic!("the device's host fd stays ready after 64 rounds: the event loop would spin");
}

fn check_used(memory: &GuestMemory, queue: usize) {
    let used = RINGS[queue] + 0x200;
    let idx: u16 = memory.read_obj(GuestAddress(used + 2)).expect("in memory");
    for i in 0..idx.min(SIZE) {
        let elem = used + 4 + 8 * u64::from(i);
        let id: u32 = memory.read_obj(GuestAddress(elem)).expect("in memory");
        let len: u32 = memory.read_obj(GuestAddress(elem + 4)).expect("in memory");
        assert!(
            id < u32::from(SIZE),
            "used element {i} names descriptor {id}"
        );
        assert!(
            len <= HDR + MAX_PKT_DATA as u32,
            "used element {i} claims {len} bytes"
        );
        if queue == TXQ {
            assert_eq!(len, 0, "the device writes nothing into tx buffers");
        }
    }
}

fuzz_target!(|input: Input| {
    let dir = std::env::temp_dir().join(format!(
        "capsule-vsock-fuzz-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let uds: PathBuf = dir.join("v.sock");
    let memory =
        GuestMemory::from_ranges(&[(GuestAddress(0), MEMORY_SIZE)]).expect("anonymous memory");
    let mut device = Vsock::new(GUEST_CID, &uds).expect("binds");
    let fd = device.host_fds()[0];
    let watch = Epoll::new().expect("epoll");
    watch
        .ctl(ControlOperation::Add, fd, EpollEvent::new(EventSet::IN, 0))
        .expect("watch");
    let acked = input.acked & device.device_features();
    let activate = |device: &mut Vsock| {
        let _ = device.activate(Activation {
            memory: memory.clone(),
            queues: RINGS.iter().map(|&r| Rings::queue(r)).collect(),
            interrupt: VirtioInterrupt::new(Arc::new(NoInterrupt)),
            acked_features: acked,
        });
    };
    activate(&mut device);
    let mut rings = Rings {
        memory: memory.clone(),
        offered: [0; 3],
        next_buffer: BUFFERS,
    };
    let mut hosts: Vec<UnixStream> = Vec::new();
    let mut listeners: Vec<UnixListener> = Vec::new();

    for op in input.ops.iter().take(64) {
        match op {
            Op::Tx(packet) => {
                rings.tx(packet);
                let _ = device.queue_notified(TXQ);
            }
            Op::RawTx(descriptors) => {
                let raw: Vec<(u64, u32, u16)> = descriptors
                    .iter()
                    .map(|&(addr, len, flags, _)| {
                        (BUFFERS + u64::from(addr) * 4, u32::from(len), flags)
                    })
                    .collect();
                if !raw.is_empty() {
                    rings.offer(TXQ, &raw);
                    let _ = device.queue_notified(TXQ);
                }
            }
            Op::Rx { count, size, split } => {
                for _ in 0..count % 8 {
                    let size = u32::from(*size % 8192);
                    let at = rings.buffer((HDR + size) as usize);
                    if *split {
                        rings.offer(RXQ, &[(at, HDR, 2), (at + u64::from(HDR), size, 2)]);
                    } else {
                        rings.offer(RXQ, &[(at, HDR + size, 2)]);
                    }
                }
                let _ = device.queue_notified(RXQ);
            }
            Op::Notify(queue) => {
                let _ = device.queue_notified(usize::from(*queue % 4));
            }
            Op::HostConnect { port, line } => {
                if let Ok(mut host) = UnixStream::connect(&uds) {
                    let _ = host.set_nonblocking(true);
                    let _ = match port {
                        Some(port) => host.write(format!("CONNECT {}\n", port % 4 + 1).as_bytes()),
                        None => host.write(line),
                    };
                    hosts.push(host);
                }
            }
            Op::HostWrite { conn, data } => {
                if let Some(host) = pick(&mut hosts, *conn) {
                    let _ = host.write(data);
                }
            }
            Op::HostRead { conn } => {
                if let Some(host) = pick(&mut hosts, *conn) {
                    let mut buf = [0u8; 4096];
                    let _ = host.read(&mut buf);
                }
            }
            Op::HostShutdown { conn, write_only } => {
                if let Some(host) = pick(&mut hosts, *conn) {
                    let how = if *write_only {
                        Shutdown::Write
                    } else {
                        Shutdown::Both
                    };
                    let _ = host.shutdown(how);
                }
            }
            Op::HostClose { conn } => {
                if !hosts.is_empty() {
                    hosts.swap_remove(usize::from(*conn) % hosts.len());
                }
            }
            Op::Listen(port) => {
                let path = format!("{}_{}", uds.display(), port % 4 + 1);
                if let Ok(listener) = UnixListener::bind(path) {
                    let _ = listener.set_nonblocking(true);
                    listeners.push(listener);
                }
            }
            Op::HostReady => {}
            Op::Reset => device.reset(),
            Op::Activate => activate(&mut device),
        }
        // What the event loop would do next; accepted guest connections become host peers.
        pump(&mut device, &watch, fd);
        for listener in &listeners {
            while let Ok((stream, _)) = listener.accept() {
                let _ = stream.set_nonblocking(true);
                hosts.push(stream);
            }
        }
        check_used(&memory, RXQ);
        check_used(&memory, TXQ);
    }

    drop(device);
    assert!(!uds.exists(), "the socket file outlived the device");
    drop(listeners);
    let _ = std::fs::remove_dir_all(&dir);
});
