//! The packet header's values (virtio 1.2 §5.10.6) and how the device fills an rx header.
//!
//! Parsing and the header's layout are rust-vmm's `virtio-vsock` ([`VsockPacket`]); the
//! values are written out here because `virtio-bindings` has no vsock module.

use virtio_vsock::packet::VsockPacket;
use vm_memory::bitmap::BitmapSlice;

/// `type`: a stream socket, the one type this device offers (no VIRTIO_VSOCK_F_SEQPACKET).
pub const TYPE_STREAM: u16 = 1;

/// `op`: connect (§5.10.6.4).
pub const OP_REQUEST: u16 = 1;
/// `op`: the connect was accepted.
pub const OP_RESPONSE: u16 = 2;
/// `op`: the connection is refused or ended at once.
pub const OP_RST: u16 = 3;
/// `op`: one side will send and/or receive no more (`flags`: [`SHUTDOWN_RCV`], [`SHUTDOWN_SEND`]).
pub const OP_SHUTDOWN: u16 = 4;
/// `op`: stream data, `len` bytes.
pub const OP_RW: u16 = 5;
/// `op`: the sender's `buf_alloc` and `fwd_cnt` changed (§5.10.6.3).
pub const OP_CREDIT_UPDATE: u16 = 6;
/// `op`: asks the receiver for an [`OP_CREDIT_UPDATE`].
pub const OP_CREDIT_REQUEST: u16 = 7;

/// SHUTDOWN flag: the sender will receive no more.
pub const SHUTDOWN_RCV: u32 = 1;
/// SHUTDOWN flag: the sender will send no more.
pub const SHUTDOWN_SEND: u32 = 2;

/// The host's CID (§5.10.4: 2 is the host; 0, 1 and `u32::MAX` are reserved).
pub const HOST_CID: u64 = 2;

/// The endpoints of a packet the device sends: the host's port (`src_port`) and the guest's
/// (`dst_port`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ports {
    /// The host side's port.
    pub local: u32,
    /// The guest side's port.
    pub peer: u32,
}

/// What goes in an rx packet's header besides the addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// `type`.
    pub type_: u16,
    /// `op`.
    pub op: u16,
    /// `flags`.
    pub flags: u32,
    /// `len`: the data bytes that follow.
    pub len: u32,
    /// `buf_alloc`: the sender's receive buffer for this connection, bytes.
    pub buf_alloc: u32,
    /// `fwd_cnt`: the bytes the sender has consumed from that buffer, modulo 2^32.
    pub fwd_cnt: u32,
}

impl Header {
    /// A control packet (no data, no credit) of `op`, on a stream.
    pub fn control(op: u16) -> Self {
        Self {
            type_: TYPE_STREAM,
            op,
            flags: 0,
            len: 0,
            buf_alloc: 0,
            fwd_cnt: 0,
        }
    }
}

/// Writes every header field of an rx packet from the host to the guest `guest_cid`: the
/// guest's buffer holds whatever it held before, so nothing is left unset.
pub fn write_header<B: BitmapSlice>(
    packet: &mut VsockPacket<'_, B>,
    guest_cid: u64,
    ports: Ports,
    header: Header,
) {
    packet
        .set_src_cid(HOST_CID)
        .set_dst_cid(guest_cid)
        .set_src_port(ports.local)
        .set_dst_port(ports.peer)
        .set_type(header.type_)
        .set_op(header.op)
        .set_flags(header.flags)
        .set_len(header.len)
        .set_buf_alloc(header.buf_alloc)
        .set_fwd_cnt(header.fwd_cnt);
}
