//! The virtio-blk device: requests from its queue to a [`DiskImage`], synchronously, on the
//! event-loop thread.

use std::fmt;

use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use super::request::{
    self, BlockConfig, Descriptor, DiscardConfig, DiskInfo, GuestBytes, ID_BYTES,
    MAX_SEGMENT_SECTORS, MAX_SEGMENTS, Request, SECTOR_SIZE, Status, config_field, feature,
};
use crate::disk::{DiskError, DiskImage};
use crate::virtio::chain;
use crate::virtio::{
    ActivateError, Activation, GuestMemory, Queue, QueueError, VirtioDevice, VirtioInterrupt,
};

/// The request queue's size. One queue: requests are served one at a time by synchronous
/// I/O on the one event-loop thread, so more queues (VIRTIO_BLK_F_MQ) would add bookkeeping
/// and no concurrency.
pub const QUEUE_SIZE: u16 = 256;

/// The most data descriptors in a request (`seg_max`): the queue size less the header and
/// the status descriptors.
pub const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;

/// The largest bounce buffer between guest memory and the image, bytes. Guest buffers are
/// scattered pages and `DiskImage` takes a byte slice, so data is copied through one buffer
/// per device (vm-memory hands out volatile slices, never `&mut [u8]`, for memory the guest
/// may change underneath); a longer request goes through it in pieces. 256 KiB makes a 1 MiB
/// request four image calls and keeps the device's memory small.
const BOUNCE_MAX: usize = 256 << 10;

/// `discard_sector_alignment`: 4 KiB, the block of the file systems that hold images (a
/// smaller discard cannot punch a hole).
const DISCARD_ALIGNMENT_SECTORS: u32 = 8;

/// A virtio-blk device (virtio 1.2 §5.2) over a disk image.
///
/// Offers VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX, VIRTIO_BLK_F_FLUSH, SEG_MAX, BLK_SIZE
/// (512), RO for a read-only disk, and DISCARD with WRITE_ZEROES when the image
/// [supports discard](DiskImage::supports_discard). Requests: IN, OUT, FLUSH, GET_ID,
/// DISCARD, WRITE_ZEROES; anything else completes with VIRTIO_BLK_S_UNSUPP.
pub struct Block {
    backend: Backend,
    read_only: bool,
    features: u64,
    config: [u8; config_field::LEN],
    active: Option<Active>,
}

/// What a request needs besides the queue: the image and the device's identity.
struct Backend {
    image: Box<dyn DiskImage>,
    id: [u8; ID_BYTES],
    name: String,
    bounce: Vec<u8>,
    chain: Vec<virtio_queue::desc::split::Descriptor>,
    descriptors: Vec<Descriptor>,
}

/// What the driver set up, from DRIVER_OK to reset.
#[derive(Debug)]
struct Active {
    memory: GuestMemory,
    queue: Queue,
    interrupt: VirtioInterrupt,
    disk: DiskInfo,
}

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Block")
            .field("name", &self.backend.name)
            .field("image", &self.backend.image)
            .field("read_only", &self.read_only)
            .field("features", &format_args!("{:#x}", self.features))
            .field("active", &self.active)
            .finish()
    }
}

impl Block {
    /// A device over `image`; `read_only` offers VIRTIO_BLK_F_RO and refuses writes; `id` is
    /// the device ID string GET_ID answers (its first 20 bytes, NUL-padded; virtio 1.2
    /// §5.2.6) and names the device in log lines.
    pub fn new(image: Box<dyn DiskImage>, read_only: bool, id: &str) -> Block {
        let mut features = 1 << feature::VERSION_1
            | 1 << feature::EVENT_IDX
            | 1 << feature::FLUSH
            | 1 << feature::SEG_MAX
            | 1 << feature::BLK_SIZE;
        if read_only {
            features |= 1 << feature::RO;
        }
        let discard = image.supports_discard().then(|| {
            features |= 1 << feature::DISCARD | 1 << feature::WRITE_ZEROES;
            DiscardConfig {
                max_sectors: MAX_SEGMENT_SECTORS,
                max_segments: MAX_SEGMENTS as u32,
                sector_alignment: DISCARD_ALIGNMENT_SECTORS,
                may_unmap: true,
            }
        });
        let config = BlockConfig {
            capacity: image.capacity() / SECTOR_SIZE,
            seg_max: SEG_MAX,
            blk_size: SECTOR_SIZE as u32,
            discard,
        };
        let mut id_bytes = [0; ID_BYTES];
        let n = id.len().min(ID_BYTES);
        id_bytes[..n].copy_from_slice(&id.as_bytes()[..n]);
        Block {
            backend: Backend {
                image,
                id: id_bytes,
                name: format!("virtio-blk {id}"),
                bounce: Vec::new(),
                chain: Vec::new(),
                descriptors: Vec::new(),
            },
            read_only,
            features,
            config: config.to_bytes(),
            active: None,
        }
    }

    fn queue_error(&self, reason: String) -> QueueError {
        QueueError {
            device: self.backend.name.clone(),
            queue: 0,
            reason,
        }
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK
    }

    fn device_features(&self) -> u64 {
        self.features
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        crate::virtio::read_config_bytes(&self.config, offset, data);
    }

    fn activate(&mut self, mut activation: Activation) -> Result<(), ActivateError> {
        let [queue] = activation.take_queues(&self.backend.name, "requestq")?;
        let Activation {
            memory,
            interrupt,
            acked_features,
            ..
        } = activation;
        let sectors = self.backend.image.capacity() / SECTOR_SIZE;
        self.active = Some(Active {
            memory,
            queue,
            interrupt,
            disk: DiskInfo {
                capacity: sectors * SECTOR_SIZE,
                read_only: self.read_only,
                acked_features,
            },
        });
        Ok(())
    }

    fn queue_notified(&mut self, index: usize) -> Result<(), QueueError> {
        let Some(active) = self.active.as_mut() else {
            tracing::debug!(device = %self.backend.name, index, "notified before activation");
            return Ok(());
        };
        if index != 0 {
            tracing::debug!(device = %self.backend.name, index, "notify of a queue that does not exist");
            return Ok(());
        }
        match serve(active, &mut self.backend) {
            Ok(()) => Ok(()),
            Err(reason) => Err(self.queue_error(reason)),
        }
    }

    fn reset(&mut self) {
        self.active = None;
    }
}

/// Completes every available request, then signals the interrupt once if the driver wants
/// it (EVENT_IDX, §2.7.10). Errors: the queue is broken, with the reason.
fn serve(active: &mut Active, backend: &mut Backend) -> Result<(), String> {
    let Active {
        memory,
        queue,
        interrupt,
        disk,
    } = active;
    let queue_error = |e: virtio_queue::Error| format!("{e}");
    let mut completed = false;
    loop {
        queue.disable_notification(memory).map_err(queue_error)?;
        while let Some(chain) = chain::pop(queue, memory)? {
            let head = chain.head_index();
            let used = backend.process(chain, usize::from(queue.size()), memory, disk);
            queue.add_used(memory, head, used).map_err(queue_error)?;
            completed = true;
        }
        // With EVENT_IDX, re-arming the notification can race a driver that just added a
        // request: enable_notification says so and the loop takes it.
        if !queue.enable_notification(memory).map_err(queue_error)? {
            break;
        }
    }
    if completed && queue.needs_notification(memory).map_err(queue_error)? {
        interrupt.signal_used_queue_or_log(&backend.name);
    }
    Ok(())
}

/// Guest memory as the request parser sees it.
struct Memory<'m>(&'m GuestMemory);

impl GuestBytes for Memory<'_> {
    fn contains(&self, addr: u64, len: u32) -> bool {
        len == 0 || self.0.check_range(GuestAddress(addr), len as usize)
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        self.0.read_slice(buf, GuestAddress(addr)).is_ok()
    }
}

/// Why a valid request failed on the way to the disk.
#[derive(Debug, thiserror::Error)]
enum IoFailure {
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error("guest memory at {addr:#x}: {source}")]
    Memory {
        addr: u64,
        source: vm_memory::GuestMemoryError,
    },
    /// The parser made the data exactly the request's length, so this is a bug here, not
    /// the guest's: the request fails rather than the VMM panic.
    #[error("the data descriptors end before the request's {len} bytes")]
    DataShort { len: u64 },
}

impl Backend {
    /// Answers one request of at most `max_len` descriptors (the queue's size: a chain is
    /// never longer, §2.7.5.3.1, though an indirect table can be); returns the used length
    /// (the bytes written to the guest: data and the status byte; 0 for a chain with no
    /// usable status byte).
    fn process(
        &mut self,
        chain: virtio_queue::DescriptorChain<&GuestMemory>,
        max_len: usize,
        memory: &GuestMemory,
        disk: &DiskInfo,
    ) -> u32 {
        if let Err(e) = chain::walk(chain, max_len, &mut self.chain) {
            tracing::debug!(device = %self.name, "request dropped: {e}");
            return 0;
        }
        let mut descriptors = std::mem::take(&mut self.descriptors);
        descriptors.clear();
        descriptors.extend(self.chain.iter().map(|d| Descriptor {
            addr: d.addr().0,
            len: d.len(),
            writable: d.is_write_only(),
        }));
        let used = self.answer(&descriptors, memory, disk);
        self.descriptors = descriptors;
        used
    }

    fn answer(&mut self, descriptors: &[Descriptor], memory: &GuestMemory, disk: &DiskInfo) -> u32 {
        let parsed = match request::parse(descriptors, &Memory(memory), disk) {
            Ok(parsed) => parsed,
            Err(e) => {
                tracing::debug!(device = %self.name, "request dropped, no status byte: {e}");
                return 0;
            }
        };
        let (status, written) = match parsed.request {
            Err(e) => {
                tracing::debug!(device = %self.name, status = ?e.status(), "request failed: {e}");
                (e.status(), 0)
            }
            Ok(request) => match self.execute(&request, memory) {
                Ok(written) => (Status::Ok, written),
                Err(e) => {
                    tracing::debug!(device = %self.name, "request failed: {e}");
                    (Status::IoErr, 0)
                }
            },
        };
        match memory.write_obj(status as u8, GuestAddress(parsed.status.addr)) {
            Ok(()) => written.saturating_add(1),
            Err(e) => {
                tracing::debug!(device = %self.name, "cannot write the status byte: {e}");
                0
            }
        }
    }

    /// Does what `request` says; returns the data bytes written to the guest.
    fn execute(&mut self, request: &Request<'_>, memory: &GuestMemory) -> Result<u32, IoFailure> {
        match *request {
            Request::In { offset, len, data } => {
                let mut cursor = DataCursor::new(data);
                self.in_pieces(len, |backend, done, buf| {
                    backend.image.read_at(offset + done, buf)?;
                    cursor.copy_to_guest(memory, buf)
                })?;
                // At most MAX_DATA_LEN, a u32.
                Ok(u32::try_from(len).unwrap_or(u32::MAX))
            }
            Request::Out { offset, len, data } => {
                let mut cursor = DataCursor::new(data);
                self.in_pieces(len, |backend, done, buf| {
                    cursor.copy_from_guest(memory, buf)?;
                    Ok(backend.image.write_at(offset + done, buf)?)
                })?;
                Ok(0)
            }
            Request::Flush => {
                self.image.flush()?;
                Ok(0)
            }
            Request::GetId { data } => {
                let room: u64 = data.iter().map(|d| u64::from(d.len)).sum();
                let n = ID_BYTES.min(usize::try_from(room).unwrap_or(usize::MAX));
                DataCursor::new(data).copy_to_guest(memory, &self.id[..n])?;
                Ok(n as u32)
            }
            Request::Discard(segments) => {
                for s in segments.as_slice() {
                    let (offset, len) = s.byte_range();
                    self.image.discard(offset, len)?;
                }
                Ok(0)
            }
            Request::WriteZeroes(segments) => {
                for s in segments.as_slice() {
                    let (offset, len) = s.byte_range();
                    self.image
                        .write_zeroes(offset, len, s.flags & request::FLAG_UNMAP != 0)?;
                }
                Ok(0)
            }
        }
    }

    /// Runs `step(backend, done, buf)` over `len` bytes in bounce-buffer pieces, `done` the
    /// bytes before this piece.
    fn in_pieces(
        &mut self,
        len: u64,
        mut step: impl FnMut(&mut Backend, u64, &mut [u8]) -> Result<(), IoFailure>,
    ) -> Result<(), IoFailure> {
        let piece = BOUNCE_MAX.min(usize::try_from(len).unwrap_or(BOUNCE_MAX));
        if self.bounce.len() < piece {
            self.bounce.resize(piece, 0);
        }
        let mut bounce = std::mem::take(&mut self.bounce);
        let mut done = 0;
        let result = loop {
            if done == len {
                break Ok(());
            }
            // Fits: at most `piece`, a usize.
            let n = (len - done).min(piece as u64) as usize;
            if let Err(e) = step(self, done, &mut bounce[..n]) {
                break Err(e);
            }
            done += n as u64;
        };
        self.bounce = bounce;
        result
    }
}

/// A position in a request's data descriptors, for copying through the bounce buffer.
struct DataCursor<'a> {
    data: &'a [Descriptor],
    index: usize,
    offset: u32,
}

impl<'a> DataCursor<'a> {
    fn new(data: &'a [Descriptor]) -> Self {
        Self {
            data,
            index: 0,
            offset: 0,
        }
    }

    /// Copies `buf` into the descriptors from the cursor on, and advances it.
    fn copy_to_guest(&mut self, memory: &GuestMemory, mut buf: &[u8]) -> Result<(), IoFailure> {
        while !buf.is_empty() {
            let (addr, n) = self.next_piece(buf.len())?;
            memory
                .write_slice(&buf[..n], GuestAddress(addr))
                .map_err(|source| IoFailure::Memory { addr, source })?;
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Fills `buf` from the descriptors from the cursor on, and advances it.
    fn copy_from_guest(
        &mut self,
        memory: &GuestMemory,
        mut buf: &mut [u8],
    ) -> Result<(), IoFailure> {
        while !buf.is_empty() {
            let (addr, n) = self.next_piece(buf.len())?;
            let (now, rest) = buf.split_at_mut(n);
            memory
                .read_slice(now, GuestAddress(addr))
                .map_err(|source| IoFailure::Memory { addr, source })?;
            buf = rest;
        }
        Ok(())
    }

    /// The guest address of the cursor and how many bytes (at most `want`, more than 0)
    /// follow it in its descriptor; advances past them.
    fn next_piece(&mut self, want: usize) -> Result<(u64, usize), IoFailure> {
        loop {
            let Some(desc) = self.data.get(self.index) else {
                let len = self.data.iter().map(|d| u64::from(d.len)).sum();
                return Err(IoFailure::DataShort { len });
            };
            let left = desc.len - self.offset;
            if left == 0 {
                self.index += 1;
                self.offset = 0;
                continue;
            }
            let n = want.min(left as usize);
            // Cannot overflow: the parser checked the descriptor is in guest memory.
            let addr = desc.addr + u64::from(self.offset);
            self.offset += n as u32;
            return Ok((addr, n));
        }
    }
}
