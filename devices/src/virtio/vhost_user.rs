//! The frontend side of a vhost-user connection (the vhost-user protocol,
//! `docs/interop/vhost-user.rst` in QEMU): a device whose queues a backend process serves
//! (virtiofsd for virtio-fs) while the VMM keeps the transport, the registers and the
//! interrupts.
//!
//! The messages are rust-vmm's `vhost` crate ([`Frontend`]); what is ours is their order and
//! what a failure means. [`VhostUserConnection::connect`] negotiates once (SET_OWNER,
//! GET_FEATURES, GET/SET_PROTOCOL_FEATURES, GET_QUEUE_NUM); on the driver's DRIVER_OK
//! [`VhostUserConnection::start`] sends SET_FEATURES, SET_MEM_TABLE (each guest memory region
//! as an fd and offset: the VMM must map guest memory shared, from a file) and, per ready
//! queue, SET_VRING_NUM/ADDR/BASE/CALL/KICK/ENABLE; on reset [`VhostUserConnection::stop`]
//! disables each ring and takes it back with GET_VRING_BASE.
//!
//! Kicks go straight from KVM to the backend (the queue's ioeventfd is the ring's kick fd);
//! calls come back through an eventfd per queue that the device watches on the event loop,
//! because the virtio-mmio driver reads InterruptStatus first and the VRING bit must be set
//! before the interrupt fires (`VirtioInterrupt::signal_used_queue`).
//!
//! A backend that stops answering is not waited on forever: every reply has
//! [`REPLY_TIMEOUT`], and a backend that hangs up shows on [`VhostUserConnection::hung_up`].

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use vhost::vhost_user::message::{
    VhostUserHeaderFlag, VhostUserProtocolFeatures, VhostUserVirtioFeatures,
};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryBackend as _, GuestMemoryRegion as _};
use vmm_sys_util::eventfd::EventFd;

use super::GuestMemory;

/// How long a backend may take to answer one request before the request fails.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// The protocol features we use when the backend offers them: MQ to ask how many queues it
/// serves, REPLY_ACK so that every request without a reply is still confirmed (a backend that
/// could not map guest memory says so at SET_MEM_TABLE, not by silence later).
const WANTED_PROTOCOL_FEATURES: VhostUserProtocolFeatures =
    VhostUserProtocolFeatures::MQ.union(VhostUserProtocolFeatures::REPLY_ACK);

/// What went wrong talking to a vhost-user backend.
#[derive(Debug, thiserror::Error)]
pub enum VhostUserError {
    /// Connecting to the backend's socket failed.
    #[error("vhost-user: connect to {socket}: {source}")]
    Connect {
        /// The backend's socket.
        socket: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A request failed: the backend refused it, went away or did not answer in
    /// [`REPLY_TIMEOUT`].
    #[error("vhost-user: {request} to {socket}: {source}")]
    Request {
        /// The backend's socket.
        socket: PathBuf,
        /// The request, as the protocol names it (`SET_MEM_TABLE`).
        request: &'static str,
        /// The `vhost` crate's error.
        source: vhost::Error,
    },
    /// The backend lacks a feature the device cannot do without.
    #[error("vhost-user: the backend at {socket} does not offer {feature}")]
    MissingFeature {
        /// The backend's socket.
        socket: PathBuf,
        /// The feature (`VIRTIO_F_VERSION_1`).
        feature: &'static str,
    },
    /// The backend serves fewer queues than the device has.
    #[error(
        "vhost-user: the backend at {socket} serves {served} queues, the device needs {needed}"
    )]
    QueueCount {
        /// The backend's socket.
        socket: PathBuf,
        /// GET_QUEUE_NUM's answer.
        served: u64,
        /// The device's queues.
        needed: usize,
    },
    /// A guest memory region has no file behind it, so the backend cannot map it.
    #[error(
        "vhost-user: guest memory at {addr:#x} is private to the VMM (it must be mapped shared from a file, as kvm-core does when a vhost-user device is attached)"
    )]
    PrivateMemory {
        /// The region's guest-physical start.
        addr: u64,
    },
    /// A ring's address is not in guest memory (the transport checked it: not reached).
    #[error("vhost-user: queue {queue}'s {ring} at {addr:#x} is not in guest memory")]
    RingAddress {
        /// The queue's index.
        queue: usize,
        /// `descriptor table`, `driver area`, `device area`.
        ring: &'static str,
        /// Its guest-physical address.
        addr: u64,
    },
}

/// VIRTIO_F_VERSION_1 (virtio 1.2 §6).
const VIRTIO_F_VERSION_1: u64 = 1 << virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;

/// One connection to a vhost-user backend, negotiated.
pub struct VhostUserConnection {
    frontend: Frontend,
    /// A second descriptor of the socket, only ever polled: whether the backend hung up.
    watch: UnixStream,
    socket: PathBuf,
    /// The backend's virtio features, VHOST_USER_F_PROTOCOL_FEATURES left out.
    features: u64,
    protocol: bool,
    /// The queues [`VhostUserConnection::start`] started, to stop on reset.
    started: Vec<usize>,
}

impl std::fmt::Debug for VhostUserConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VhostUserConnection")
            .field("socket", &self.socket)
            .field("features", &format_args!("{:#x}", self.features))
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl VhostUserConnection {
    /// Connects to the backend listening on `socket` and negotiates for a device of `queues`
    /// queues: SET_OWNER, GET_FEATURES, and with VHOST_USER_F_PROTOCOL_FEATURES
    /// GET/SET_PROTOCOL_FEATURES and (with MQ) GET_QUEUE_NUM.
    ///
    /// Errors: [`VhostUserError::Connect`], [`VhostUserError::Request`],
    /// [`VhostUserError::MissingFeature`] (no VIRTIO_F_VERSION_1),
    /// [`VhostUserError::QueueCount`].
    pub fn connect(socket: &Path, queues: usize) -> Result<Self, VhostUserError> {
        let connect_error = |source| VhostUserError::Connect {
            socket: socket.to_owned(),
            source,
        };
        let stream = UnixStream::connect(socket).map_err(connect_error)?;
        stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .map_err(connect_error)?;
        let watch = stream.try_clone().map_err(connect_error)?;
        let mut connection = Self {
            frontend: Frontend::from_stream(stream, queues as u64),
            watch,
            socket: socket.to_owned(),
            features: 0,
            protocol: false,
            started: Vec::new(),
        };
        connection.negotiate(queues)?;
        Ok(connection)
    }

    fn negotiate(&mut self, queues: usize) -> Result<(), VhostUserError> {
        self.frontend
            .set_owner()
            .map_err(self.request("SET_OWNER"))?;
        let features = self
            .frontend
            .get_features()
            .map_err(self.request("GET_FEATURES"))?;
        if features & VIRTIO_F_VERSION_1 == 0 {
            return Err(VhostUserError::MissingFeature {
                socket: self.socket.clone(),
                feature: "VIRTIO_F_VERSION_1",
            });
        }
        let protocol_bit = VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        self.protocol = features & protocol_bit != 0;
        self.features = features & !protocol_bit;
        if !self.protocol {
            return Ok(());
        }
        let offered = self
            .frontend
            .get_protocol_features()
            .map_err(self.request("GET_PROTOCOL_FEATURES"))?;
        let acked = offered & WANTED_PROTOCOL_FEATURES;
        self.frontend
            .set_protocol_features(acked)
            .map_err(self.request("SET_PROTOCOL_FEATURES"))?;
        if acked.contains(VhostUserProtocolFeatures::REPLY_ACK) {
            self.frontend.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
        }
        if acked.contains(VhostUserProtocolFeatures::MQ) {
            let served = self
                .frontend
                .get_queue_num()
                .map_err(self.request("GET_QUEUE_NUM"))?;
            if served < queues as u64 {
                return Err(VhostUserError::QueueCount {
                    socket: self.socket.clone(),
                    served,
                    needed: queues,
                });
            }
        }
        Ok(())
    }

    /// The backend's virtio feature bits (VHOST_USER_F_PROTOCOL_FEATURES, bit 30, left out:
    /// it is the protocol's, never offered to the driver).
    pub fn features(&self) -> u64 {
        self.features
    }

    /// The backend's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Starts the backend on what the driver set up: SET_FEATURES with `acked_features`,
    /// SET_MEM_TABLE with `memory`'s regions, and for each ready queue `i` of `queues`
    /// SET_VRING_NUM/ADDR/BASE, SET_VRING_CALL `calls[i]`, SET_VRING_KICK `kicks[i]`,
    /// SET_VRING_ENABLE. Ring addresses go as this process's addresses of them (the
    /// protocol's "user addresses", which the backend translates through the memory table).
    ///
    /// Errors: [`VhostUserError::PrivateMemory`], [`VhostUserError::RingAddress`],
    /// [`VhostUserError::Request`].
    pub fn start(
        &mut self,
        acked_features: u64,
        memory: &GuestMemory,
        queues: &[Queue],
        kicks: &[EventFd],
        calls: &[EventFd],
    ) -> Result<(), VhostUserError> {
        let protocol_bit = if self.protocol {
            VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
        } else {
            0
        };
        self.frontend
            .set_features(acked_features | protocol_bit)
            .map_err(self.request("SET_FEATURES"))?;
        let regions = memory
            .iter()
            .map(|region| {
                VhostUserMemoryRegionInfo::from_guest_region(region).map_err(|_| {
                    VhostUserError::PrivateMemory {
                        addr: region.start_addr().0,
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.frontend
            .set_mem_table(&regions)
            .map_err(self.request("SET_MEM_TABLE"))?;
        for (index, ((queue, kick), call)) in queues.iter().zip(kicks).zip(calls).enumerate() {
            if !queue.ready() {
                continue;
            }
            self.start_queue(index, queue, memory, kick, call)?;
            self.started.push(index);
        }
        Ok(())
    }

    fn start_queue(
        &mut self,
        index: usize,
        queue: &Queue,
        memory: &GuestMemory,
        kick: &EventFd,
        call: &EventFd,
    ) -> Result<(), VhostUserError> {
        let host_address = |ring: &'static str, addr: GuestAddress| {
            memory
                .get_host_address(addr)
                .map(|host| host as u64)
                .map_err(|_| VhostUserError::RingAddress {
                    queue: index,
                    ring,
                    addr: addr.0,
                })
        };
        let ring = VringConfigData {
            queue_max_size: queue.max_size(),
            queue_size: queue.size(),
            flags: 0,
            desc_table_addr: host_address("descriptor table", GuestAddress(queue.desc_table()))?,
            used_ring_addr: host_address("device area", GuestAddress(queue.used_ring()))?,
            avail_ring_addr: host_address("driver area", GuestAddress(queue.avail_ring()))?,
            log_addr: None,
        };
        self.frontend
            .set_vring_num(index, queue.size())
            .map_err(self.request("SET_VRING_NUM"))?;
        self.frontend
            .set_vring_addr(index, &ring)
            .map_err(self.request("SET_VRING_ADDR"))?;
        self.frontend
            .set_vring_base(index, queue.next_avail())
            .map_err(self.request("SET_VRING_BASE"))?;
        self.frontend
            .set_vring_call(index, call)
            .map_err(self.request("SET_VRING_CALL"))?;
        self.frontend
            .set_vring_kick(index, kick)
            .map_err(self.request("SET_VRING_KICK"))?;
        if self.protocol {
            // With VHOST_USER_F_PROTOCOL_FEATURES rings start disabled (the protocol's
            // "Ring states").
            self.frontend
                .set_vring_enable(index, true)
                .map_err(self.request("SET_VRING_ENABLE"))?;
        }
        Ok(())
    }

    /// Stops every started ring: SET_VRING_ENABLE 0, then GET_VRING_BASE, after which the
    /// backend no longer touches the ring (the protocol's "Ring states").
    ///
    /// Errors: the first failed request ([`VhostUserError::Request`]); the rest are still
    /// tried, and no ring counts as started afterwards.
    pub fn stop(&mut self) -> Result<(), VhostUserError> {
        let mut first_error = None;
        for index in std::mem::take(&mut self.started) {
            let result = if self.protocol {
                self.frontend
                    .set_vring_enable(index, false)
                    .map_err(self.request("SET_VRING_ENABLE"))
            } else {
                Ok(())
            }
            .and_then(|()| {
                self.frontend
                    .get_vring_base(index)
                    .map(drop)
                    .map_err(self.request("GET_VRING_BASE"))
            });
            if let Err(error) = result {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The socket's descriptor, to watch for the backend hanging up (it never sends on its
    /// own on this socket: its requests to us would need VHOST_USER_PROTOCOL_F_BACKEND_REQ,
    /// which we do not negotiate).
    pub fn socket_fd(&self) -> RawFd {
        self.watch.as_raw_fd()
    }

    /// Whether the backend closed its end of the socket (checked now, without waiting).
    pub fn hung_up(&self) -> bool {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut fds = [PollFd::new(self.watch.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(_) => fds[0]
                .revents()
                .is_some_and(|events| events.intersects(PollFlags::POLLHUP | PollFlags::POLLERR)),
            Err(_) => false,
        }
    }

    fn request(
        &self,
        request: &'static str,
    ) -> impl FnOnce(vhost::Error) -> VhostUserError + use<> {
        let socket = self.socket.clone();
        move |source| VhostUserError::Request {
            socket,
            request,
            source,
        }
    }
}
