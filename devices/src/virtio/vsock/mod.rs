//! virtio-vsock (virtio 1.2 §5.10): stream sockets between the guest and host processes,
//! the host side a Unix socket in Firecracker's hybrid convention (Firecracker's
//! `docs/vsock.md`), so tools written for Firecracker and Cloud Hypervisor work unchanged.
//!
//! - Host to guest: a host process connects to the device's socket (`uds_path`), writes
//!   `CONNECT <port>\n`, and once the guest accepts reads `OK <host port>\n` and then the
//!   stream; if nothing in the guest listens on `port` its socket is closed at once.
//! - Guest to host: a guest connection to host port P (CID 2) reaches the Unix socket
//!   `<uds_path>_P`; nothing listening there gives the guest a RST.
//!
//! Credit flow control (§5.10.6.3) bounds what the VMM holds: host data is read only into
//! the guest's rx buffers and only up to its credit, guest data waits in at most
//! [`BUF_ALLOC`] bytes per connection, at most [`MAX_CONNECTIONS`] connections.
//!
//! - [`packet`]: the header's values (ops, flags, type) and how an rx header is filled;
//!   parsing is rust-vmm's `virtio-vsock`;
//! - `handshake`: the `CONNECT <port>` line;
//! - `connection`: one connection's state, credit and host socket;
//! - `muxer`: the listener, the connections and the epoll the event loop watches;
//! - [`Vsock`]: the device and its three queues.

mod connection;
mod device;
mod handshake;
mod muxer;
pub mod packet;

use std::path::PathBuf;

pub use connection::BUF_ALLOC;
pub use device::Vsock;

/// rx: host to guest.
pub const RXQ: usize = 0;
/// tx: guest to host.
pub const TXQ: usize = 1;
/// event: transport events (the device sends none: it is never migrated).
pub const EVQ: usize = 2;
/// tx's and event's size.
pub const QUEUE_SIZE: u16 = 256;
/// rx's size: Linux fills it with a 4 KiB buffer for each entry as the driver probes, guest
/// RAM held for the VM's life. Most of what the host sends is small (credit updates, the
/// agent's signals and window sizes); a stream into the guest (stdin, a host program on a
/// `CONNECT`ed socket) has 64 buffers, 256 KiB, in flight and goes as fast as the guest
/// refills them.
pub const RX_QUEUE_SIZE: u16 = 64;

/// The most data one packet carries, either way: Linux's `VIRTIO_VSOCK_MAX_PKT_BUF_SIZE`
/// (64 KiB), the largest its driver sends; a tx packet claiming more is dropped.
pub const MAX_PKT_DATA: usize = 64 << 10;

/// The most connections (and host processes still writing their connect line) at once:
/// with [`BUF_ALLOC`] each, a guest can make the VMM hold at most 32 MiB of its data. The
/// guest agent needs a few.
pub const MAX_CONNECTIONS: usize = 128;

/// The device's name in log lines and errors.
const NAME: &str = "virtio-vsock";

/// Why a vsock device could not be made.
#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    /// The guest CID is reserved (0, 1, 2) or not a 32-bit CID below `u32::MAX`.
    #[error("vsock guest CID {cid} is reserved or out of range: give one from 3 to 4294967294")]
    ReservedCid {
        /// The CID given.
        cid: u64,
    },
    /// The socket path does not fit a Unix socket address.
    #[error(
        "vsock socket {}: {len} bytes, longer than a Unix socket path may be ({max}): choose a shorter path",
        path.display()
    )]
    PathTooLong {
        /// The path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
        /// The longest allowed.
        max: usize,
    },
    /// Something exists at the socket path.
    #[error("vsock socket {}: the path exists: remove it or choose another", path.display())]
    PathExists {
        /// The path.
        path: PathBuf,
    },
    /// The socket path's directory does not exist.
    #[error("vsock socket {}: its directory does not exist: create it first", path.display())]
    NoDirectory {
        /// The path.
        path: PathBuf,
    },
    /// Binding the socket failed.
    #[error("vsock socket {}: cannot bind it", path.display())]
    Bind {
        /// The path.
        path: PathBuf,
        /// What bind(2) said.
        #[source]
        source: std::io::Error,
    },
    /// The device's epoll could not be set up.
    #[error("vsock: cannot set up its epoll")]
    Epoll(#[source] std::io::Error),
}

#[cfg(test)]
mod tests;
