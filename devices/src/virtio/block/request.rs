//! The virtio-blk wire format and the parse of one request (virtio 1.2 §5.2.4, §5.2.6).
//!
//! No I/O and no std: `core` only, so a firmware or another VMM can reuse it. The device
//! (`device.rs`) walks a descriptor chain into [`Descriptor`]s, hands them to [`parse`] with
//! a view of guest memory ([`GuestBytes`]), and does the I/O the resulting [`Request`] names.
//!
//! The constants are written out here rather than taken from `virtio-bindings`, whose
//! bindings need std; a test checks them against it.
//!
//! What [`parse`] accepts, in the order it checks (each failure a [`RequestError`] with the
//! value that failed):
//!
//! 1. the last descriptor is the status byte: device-writable, at least 1 byte, in guest
//!    memory. Without one the request cannot be answered ([`parse`] returns `Err`: the device
//!    returns the chain with used length 0);
//! 2. the first descriptor is the 16-byte header, device-readable, in guest memory, and not
//!    the status descriptor;
//! 3. every data descriptor (those between) is in guest memory;
//! 4. then per type: the data's direction (device-writable for IN and GET_ID, readable for
//!    the others), a read-only disk refusing OUT, DISCARD and WRITE_ZEROES, the data length
//!    (a multiple of 512 for IN and OUT, of the 16-byte segment for DISCARD and
//!    WRITE_ZEROES), the sectors within the disk, the segment flags; types the device does
//!    not offer or know complete with UNSUPP.
//!
//! The data length is bounded by the chain: at most [`MAX_DATA_LEN`] bytes (the 2^32-byte
//! limit of a chain, virtio 1.2 §2.7.5.2) and within the disk's capacity.

use core::fmt;

/// Bytes in a sector: the unit of `sector`, `capacity` and the discard fields (§5.2.4).
pub const SECTOR_SIZE: u64 = 512;

/// The largest data length of one request: a chain is shorter than 2^32 bytes (§2.7.5.2).
pub const MAX_DATA_LEN: u64 = u32::MAX as u64;

/// The device ID string's length (VIRTIO_BLK_ID_BYTES).
pub const ID_BYTES: usize = 20;

/// The most segments one DISCARD or WRITE_ZEROES request may carry; the device offers it as
/// `max_discard_seg` and `max_write_zeroes_seg`. Linux sends up to this many ranges per
/// discard; 16 keeps a request's segments in 256 bytes on the stack.
pub const MAX_SEGMENTS: usize = 16;

/// The most sectors one DISCARD or WRITE_ZEROES segment may name (`max_discard_sectors`,
/// `max_write_zeroes_sectors`): 32 MiB, so that zeroing one segment, synchronous on the event
/// loop, stays short.
pub const MAX_SEGMENT_SECTORS: u32 = 1 << 16;

/// Feature bits (§5.2.3, §6).
pub mod feature {
    /// VIRTIO_BLK_F_SEG_MAX: `seg_max` is valid.
    pub const SEG_MAX: u32 = 2;
    /// VIRTIO_BLK_F_RO: the device is read-only.
    pub const RO: u32 = 5;
    /// VIRTIO_BLK_F_BLK_SIZE: `blk_size` is valid.
    pub const BLK_SIZE: u32 = 6;
    /// VIRTIO_BLK_F_FLUSH: the flush command exists.
    pub const FLUSH: u32 = 9;
    /// VIRTIO_BLK_F_DISCARD: the discard command exists.
    pub const DISCARD: u32 = 13;
    /// VIRTIO_BLK_F_WRITE_ZEROES: the write zeroes command exists.
    pub const WRITE_ZEROES: u32 = 14;
    /// VIRTIO_RING_F_EVENT_IDX: `used_event` and `avail_event` (§2.7.10).
    pub const EVENT_IDX: u32 = 29;
    /// VIRTIO_F_VERSION_1: a modern (non-legacy) device.
    pub const VERSION_1: u32 = 32;
}

/// Request types (§5.2.6: `type` in the header).
pub mod kind {
    /// VIRTIO_BLK_T_IN: read sectors.
    pub const IN: u32 = 0;
    /// VIRTIO_BLK_T_OUT: write sectors.
    pub const OUT: u32 = 1;
    /// VIRTIO_BLK_T_FLUSH: make completed writes durable.
    pub const FLUSH: u32 = 4;
    /// VIRTIO_BLK_T_GET_ID: the device ID string.
    pub const GET_ID: u32 = 8;
    /// VIRTIO_BLK_T_DISCARD: sectors the driver no longer needs.
    pub const DISCARD: u32 = 11;
    /// VIRTIO_BLK_T_WRITE_ZEROES: make sectors read as zeros.
    pub const WRITE_ZEROES: u32 = 13;
}

/// The segment flag of WRITE_ZEROES that lets the device deallocate
/// (VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP); every other flag bit is reserved.
pub const FLAG_UNMAP: u32 = 1;

/// The status byte the device writes last (§5.2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// VIRTIO_BLK_S_OK.
    Ok = 0,
    /// VIRTIO_BLK_S_IOERR: a device or driver error.
    IoErr = 1,
    /// VIRTIO_BLK_S_UNSUPP: a request the device does not support.
    Unsupp = 2,
}

/// The request header, `struct virtio_blk_req`'s first 16 bytes, little-endian:
/// `le32 type; le32 reserved; le64 sector;`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    /// The request type ([`kind`]).
    pub kind: u32,
    /// The first sector (512-byte units) of IN and OUT; 0 for the others.
    pub sector: u64,
}

impl RequestHeader {
    /// The header's length in bytes.
    pub const LEN: usize = 16;

    /// Decodes the header's bytes.
    pub fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        let [t0, t1, t2, t3, _, _, _, _, s0, s1, s2, s3, s4, s5, s6, s7] = bytes;
        Self {
            kind: u32::from_le_bytes([t0, t1, t2, t3]),
            sector: u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]),
        }
    }

    /// Encodes the header (the reserved field as 0), as a driver writes it.
    pub fn to_bytes(self) -> [u8; Self::LEN] {
        let mut out = [0; Self::LEN];
        out[..4].copy_from_slice(&self.kind.to_le_bytes());
        out[8..].copy_from_slice(&self.sector.to_le_bytes());
        out
    }
}

/// One range of a DISCARD or WRITE_ZEROES request, `struct virtio_blk_discard_write_zeroes`:
/// `le64 sector; le32 num_sectors; le32 flags;`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Segment {
    /// The first sector.
    pub sector: u64,
    /// How many sectors.
    pub num_sectors: u32,
    /// [`FLAG_UNMAP`] or 0.
    pub flags: u32,
}

impl Segment {
    /// A segment's length in bytes.
    pub const LEN: usize = 16;

    /// Decodes a segment's bytes.
    pub fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        let [
            s0,
            s1,
            s2,
            s3,
            s4,
            s5,
            s6,
            s7,
            n0,
            n1,
            n2,
            n3,
            f0,
            f1,
            f2,
            f3,
        ] = bytes;
        Self {
            sector: u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]),
            num_sectors: u32::from_le_bytes([n0, n1, n2, n3]),
            flags: u32::from_le_bytes([f0, f1, f2, f3]),
        }
    }

    /// Encodes the segment, as a driver writes it.
    pub fn to_bytes(self) -> [u8; Self::LEN] {
        let mut out = [0; Self::LEN];
        out[..8].copy_from_slice(&self.sector.to_le_bytes());
        out[8..12].copy_from_slice(&self.num_sectors.to_le_bytes());
        out[12..].copy_from_slice(&self.flags.to_le_bytes());
        out
    }

    /// The segment's range on the disk in bytes, `(offset, len)`.
    pub fn byte_range(self) -> (u64, u64) {
        // Cannot overflow: a sector number times 512 is checked against the capacity first.
        (
            self.sector.saturating_mul(SECTOR_SIZE),
            u64::from(self.num_sectors) * SECTOR_SIZE,
        )
    }
}

/// The configuration space (§5.2.4, `struct virtio_blk_config`), the fields this device
/// offers; the others read as 0. Read-only to the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockConfig {
    /// The disk's size in 512-byte sectors.
    pub capacity: u64,
    /// The most data descriptors in one request (VIRTIO_BLK_F_SEG_MAX).
    pub seg_max: u32,
    /// The block size the driver should use, bytes (VIRTIO_BLK_F_BLK_SIZE).
    pub blk_size: u32,
    /// Discard and write-zeroes limits, when VIRTIO_BLK_F_DISCARD/WRITE_ZEROES are offered.
    pub discard: Option<DiscardConfig>,
}

/// The discard and write-zeroes fields of [`BlockConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscardConfig {
    /// `max_discard_sectors` and `max_write_zeroes_sectors`: per segment.
    pub max_sectors: u32,
    /// `max_discard_seg` and `max_write_zeroes_seg`: per request.
    pub max_segments: u32,
    /// `discard_sector_alignment`, sectors.
    pub sector_alignment: u32,
    /// `write_zeroes_may_unmap`: a WRITE_ZEROES with the unmap flag may free space.
    pub may_unmap: bool,
}

/// Byte offsets of the configuration fields (§5.2.4; a test checks them against
/// `virtio_bindings::virtio_blk::virtio_blk_config`).
pub mod config_field {
    use core::ops::Range;

    /// `le64 capacity`.
    pub const CAPACITY: Range<usize> = 0..8;
    /// `le32 seg_max`.
    pub const SEG_MAX: Range<usize> = 12..16;
    /// `le32 blk_size`.
    pub const BLK_SIZE: Range<usize> = 20..24;
    /// `le32 max_discard_sectors`.
    pub const MAX_DISCARD_SECTORS: Range<usize> = 36..40;
    /// `le32 max_discard_seg`.
    pub const MAX_DISCARD_SEG: Range<usize> = 40..44;
    /// `le32 discard_sector_alignment`.
    pub const DISCARD_SECTOR_ALIGNMENT: Range<usize> = 44..48;
    /// `le32 max_write_zeroes_sectors`.
    pub const MAX_WRITE_ZEROES_SECTORS: Range<usize> = 48..52;
    /// `le32 max_write_zeroes_seg`.
    pub const MAX_WRITE_ZEROES_SEG: Range<usize> = 52..56;
    /// `u8 write_zeroes_may_unmap`.
    pub const WRITE_ZEROES_MAY_UNMAP: usize = 56;
    /// The space's length up to the secure-erase fields, which this device does not offer.
    pub const LEN: usize = 60;
}

impl BlockConfig {
    /// The configuration space's bytes, little-endian as §5.2.4 lays them out.
    pub fn to_bytes(&self) -> [u8; config_field::LEN] {
        use config_field as f;
        let mut out = [0; f::LEN];
        out[f::CAPACITY].copy_from_slice(&self.capacity.to_le_bytes());
        out[f::SEG_MAX].copy_from_slice(&self.seg_max.to_le_bytes());
        out[f::BLK_SIZE].copy_from_slice(&self.blk_size.to_le_bytes());
        if let Some(d) = self.discard {
            out[f::MAX_DISCARD_SECTORS].copy_from_slice(&d.max_sectors.to_le_bytes());
            out[f::MAX_DISCARD_SEG].copy_from_slice(&d.max_segments.to_le_bytes());
            out[f::DISCARD_SECTOR_ALIGNMENT].copy_from_slice(&d.sector_alignment.to_le_bytes());
            out[f::MAX_WRITE_ZEROES_SECTORS].copy_from_slice(&d.max_sectors.to_le_bytes());
            out[f::MAX_WRITE_ZEROES_SEG].copy_from_slice(&d.max_segments.to_le_bytes());
            out[f::WRITE_ZEROES_MAY_UNMAP] = u8::from(d.may_unmap);
        }
        out
    }
}

/// One descriptor of a request's chain, as the parser sees it (§2.7.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// Guest-physical address of the buffer.
    pub addr: u64,
    /// The buffer's length, bytes.
    pub len: u32,
    /// VIRTQ_DESC_F_WRITE: the device writes this buffer (else it reads it).
    pub writable: bool,
}

/// What the parser needs of guest memory.
pub trait GuestBytes {
    /// Whether `len` bytes at `addr` are all guest memory.
    fn contains(&self, addr: u64, len: u32) -> bool;

    /// Fills `buf` from `addr`; false if it is not all guest memory.
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool;
}

/// What the device knows when it parses: the disk and the negotiated features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskInfo {
    /// The disk's size, bytes (a multiple of 512).
    pub capacity: u64,
    /// VIRTIO_BLK_F_RO was offered: OUT, DISCARD and WRITE_ZEROES fail with IOERR.
    pub read_only: bool,
    /// The features the driver accepted.
    pub acked_features: u64,
}

impl DiskInfo {
    fn has(&self, bit: u32) -> bool {
        self.acked_features & (1 << bit) != 0
    }
}

/// The segments of a DISCARD or WRITE_ZEROES request (at most [`MAX_SEGMENTS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    items: [Segment; MAX_SEGMENTS],
    len: usize,
}

impl Segments {
    /// The segments in the order the driver gave them.
    pub fn as_slice(&self) -> &[Segment] {
        &self.items[..self.len]
    }
}

/// A request that passed every check, ready for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// Read `len` bytes at byte `offset` into `data` (device-writable, in order).
    In {
        /// Where on the disk, bytes.
        offset: u64,
        /// How much, bytes (the data descriptors' total).
        len: u64,
        /// The buffers to fill.
        data: &'a [Descriptor],
    },
    /// Write the `len` bytes of `data` (device-readable) at byte `offset`.
    Out {
        /// Where on the disk, bytes.
        offset: u64,
        /// How much, bytes.
        len: u64,
        /// The buffers to write.
        data: &'a [Descriptor],
    },
    /// Make completed writes durable.
    Flush,
    /// Write the device ID string into `data` (device-writable; at most 20 bytes used).
    GetId {
        /// The buffers to fill.
        data: &'a [Descriptor],
    },
    /// Drop the ranges' contents (they may read back as before or as zeros).
    Discard(Segments),
    /// Make the ranges read as zeros; a segment with [`FLAG_UNMAP`] may also free space.
    WriteZeroes(Segments),
}

/// The parse of a request whose status byte the device can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// Where the status byte goes.
    pub status: Descriptor,
    /// The request, or why it fails (its status is [`RequestError::status`]).
    pub request: Result<Request<'a>, RequestError>,
}

/// Why a request fails, with the value that failed (descriptor indexes count from the
/// chain's head, 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// The chain has no descriptor at all.
    EmptyChain,
    /// The last descriptor, meant for the status byte, is device-readable.
    StatusNotWritable {
        /// Its index.
        index: usize,
    },
    /// The status descriptor has no room for the byte.
    StatusEmpty {
        /// Its index.
        index: usize,
    },
    /// The chain is only a status descriptor: no header.
    NoHeader,
    /// The header descriptor is device-writable.
    HeaderWritable,
    /// The header descriptor is not 16 bytes long.
    HeaderLength {
        /// Its length, bytes.
        len: u32,
    },
    /// A descriptor's buffer is (partly) outside guest memory.
    OutsideMemory {
        /// Its index.
        index: usize,
        /// Its address.
        addr: u64,
        /// Its length, bytes.
        len: u32,
    },
    /// A data descriptor has the wrong direction for the request type.
    WrongDirection {
        /// Its index.
        index: usize,
        /// The request type.
        kind: u32,
    },
    /// The data's length is not a multiple of the unit the type needs (512 for IN/OUT, 16
    /// for DISCARD/WRITE_ZEROES), or is above [`MAX_DATA_LEN`].
    DataLength {
        /// The data's total length, bytes.
        len: u64,
        /// The unit it must be a multiple of.
        unit: u64,
    },
    /// DISCARD or WRITE_ZEROES with no segment or more than [`MAX_SEGMENTS`].
    SegmentCount {
        /// How many segments the data holds.
        count: u64,
    },
    /// A segment names more than [`MAX_SEGMENT_SECTORS`] sectors.
    SegmentTooLong {
        /// Its sectors.
        num_sectors: u32,
    },
    /// A segment's flags are ones the type does not allow (any for DISCARD, any but unmap
    /// for WRITE_ZEROES).
    SegmentFlags {
        /// The flags.
        flags: u32,
    },
    /// Sectors past the disk's end.
    OutOfRange {
        /// The first sector.
        sector: u64,
        /// The length, bytes.
        len: u64,
        /// The disk's size, bytes.
        capacity: u64,
    },
    /// OUT, DISCARD or WRITE_ZEROES on a read-only disk.
    ReadOnly {
        /// The request type.
        kind: u32,
    },
    /// A type the device does not know, or whose feature was not negotiated.
    Unsupported {
        /// The request type.
        kind: u32,
    },
}

impl RequestError {
    /// The status the device answers with: UNSUPP for what it does not support
    /// ([`RequestError::Unsupported`], [`RequestError::SegmentFlags`], §5.2.6.2), IOERR for
    /// the rest.
    pub fn status(&self) -> Status {
        match self {
            Self::Unsupported { .. } | Self::SegmentFlags { .. } => Status::Unsupp,
            _ => Status::IoErr,
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::EmptyChain => write!(f, "empty descriptor chain"),
            Self::StatusNotWritable { index } => {
                write!(f, "status descriptor {index} is not device-writable")
            }
            Self::StatusEmpty { index } => write!(f, "status descriptor {index} has length 0"),
            Self::NoHeader => write!(f, "no header descriptor before the status"),
            Self::HeaderWritable => write!(f, "header descriptor is device-writable"),
            Self::HeaderLength { len } => {
                write!(f, "header descriptor is {len} bytes, not 16")
            }
            Self::OutsideMemory { index, addr, len } => write!(
                f,
                "descriptor {index} ({len} bytes at {addr:#x}) is outside guest memory"
            ),
            Self::WrongDirection { index, kind } => write!(
                f,
                "data descriptor {index} has the wrong direction for request type {kind}"
            ),
            Self::DataLength { len, unit } => {
                write!(
                    f,
                    "data length {len} is not a multiple of {unit} (or too long)"
                )
            }
            Self::SegmentCount { count } => {
                write!(f, "{count} segments, expected 1 to {MAX_SEGMENTS}")
            }
            Self::SegmentTooLong { num_sectors } => write!(
                f,
                "segment of {num_sectors} sectors, more than {MAX_SEGMENT_SECTORS}"
            ),
            Self::SegmentFlags { flags } => write!(f, "segment flags {flags:#x} not allowed"),
            Self::OutOfRange {
                sector,
                len,
                capacity,
            } => write!(
                f,
                "{len} bytes at sector {sector} are past the disk's {capacity} bytes"
            ),
            Self::ReadOnly { kind } => write!(f, "request type {kind} on a read-only disk"),
            Self::Unsupported { kind } => write!(f, "unsupported request type {kind}"),
        }
    }
}

impl core::error::Error for RequestError {}

/// Parses one request's chain (`descriptors`, head first) against the disk.
///
/// Errors: `Err` when the chain has no usable status descriptor (last, device-writable, at
/// least 1 byte, in guest memory): the device cannot answer and returns the chain with used
/// length 0. Otherwise [`Parsed::request`] holds the request or why it fails.
pub fn parse<'a>(
    descriptors: &'a [Descriptor],
    mem: &impl GuestBytes,
    disk: &DiskInfo,
) -> Result<Parsed<'a>, RequestError> {
    let (&status, rest) = descriptors.split_last().ok_or(RequestError::EmptyChain)?;
    let status_index = rest.len();
    if !status.writable {
        return Err(RequestError::StatusNotWritable {
            index: status_index,
        });
    }
    if status.len == 0 {
        return Err(RequestError::StatusEmpty {
            index: status_index,
        });
    }
    check_in_memory(status_index, &status, mem)?;
    Ok(Parsed {
        status,
        request: parse_request(rest, mem, disk),
    })
}

fn check_in_memory(
    index: usize,
    desc: &Descriptor,
    mem: &impl GuestBytes,
) -> Result<(), RequestError> {
    if mem.contains(desc.addr, desc.len) {
        Ok(())
    } else {
        Err(RequestError::OutsideMemory {
            index,
            addr: desc.addr,
            len: desc.len,
        })
    }
}

/// The request without its status descriptor.
fn parse_request<'a>(
    descriptors: &'a [Descriptor],
    mem: &impl GuestBytes,
    disk: &DiskInfo,
) -> Result<Request<'a>, RequestError> {
    let (header_desc, data) = descriptors.split_first().ok_or(RequestError::NoHeader)?;
    if header_desc.writable {
        return Err(RequestError::HeaderWritable);
    }
    if header_desc.len as usize != RequestHeader::LEN {
        return Err(RequestError::HeaderLength {
            len: header_desc.len,
        });
    }
    for (i, desc) in descriptors.iter().enumerate() {
        check_in_memory(i, desc, mem)?;
    }
    let mut bytes = [0; RequestHeader::LEN];
    if !mem.read(header_desc.addr, &mut bytes) {
        return Err(RequestError::OutsideMemory {
            index: 0,
            addr: header_desc.addr,
            len: header_desc.len,
        });
    }
    let header = RequestHeader::from_bytes(bytes);
    let kind = header.kind;

    match kind {
        kind::IN | kind::OUT => {
            let writes_guest = kind == kind::IN;
            check_direction(data, writes_guest, kind)?;
            if kind == kind::OUT && disk.read_only {
                return Err(RequestError::ReadOnly { kind });
            }
            let len = data_len(data, SECTOR_SIZE)?;
            let offset = check_range(header.sector, len, disk.capacity)?;
            Ok(if writes_guest {
                Request::In { offset, len, data }
            } else {
                Request::Out { offset, len, data }
            })
        }
        kind::FLUSH => Ok(Request::Flush),
        kind::GET_ID => {
            check_direction(data, true, kind)?;
            Ok(Request::GetId { data })
        }
        kind::DISCARD | kind::WRITE_ZEROES => {
            let feature = if kind == kind::DISCARD {
                feature::DISCARD
            } else {
                feature::WRITE_ZEROES
            };
            if !disk.has(feature) {
                return Err(RequestError::Unsupported { kind });
            }
            if disk.read_only {
                return Err(RequestError::ReadOnly { kind });
            }
            check_direction(data, false, kind)?;
            let segments = read_segments(data, mem)?;
            let allowed_flags = if kind == kind::DISCARD { 0 } else { FLAG_UNMAP };
            for s in segments.as_slice() {
                if s.flags & !allowed_flags != 0 {
                    return Err(RequestError::SegmentFlags { flags: s.flags });
                }
                if s.num_sectors > MAX_SEGMENT_SECTORS {
                    return Err(RequestError::SegmentTooLong {
                        num_sectors: s.num_sectors,
                    });
                }
                check_range(s.sector, s.byte_range().1, disk.capacity)?;
            }
            Ok(if kind == kind::DISCARD {
                Request::Discard(segments)
            } else {
                Request::WriteZeroes(segments)
            })
        }
        _ => Err(RequestError::Unsupported { kind }),
    }
}

/// Every data descriptor is device-writable (`writable`) or device-readable (not).
fn check_direction(data: &[Descriptor], writable: bool, kind: u32) -> Result<(), RequestError> {
    match data.iter().position(|d| d.writable != writable) {
        // The data starts after the header, descriptor 0.
        Some(i) => Err(RequestError::WrongDirection { index: i + 1, kind }),
        None => Ok(()),
    }
}

/// The data's total length, a multiple of `unit` and at most [`MAX_DATA_LEN`].
fn data_len(data: &[Descriptor], unit: u64) -> Result<u64, RequestError> {
    // Cannot overflow: at most 2^16 descriptors of under 2^32 bytes each.
    let len: u64 = data.iter().map(|d| u64::from(d.len)).sum();
    if len % unit != 0 || len > MAX_DATA_LEN {
        return Err(RequestError::DataLength { len, unit });
    }
    Ok(len)
}

/// The byte offset of `sector` when `len` bytes from it lie within `capacity`.
fn check_range(sector: u64, len: u64, capacity: u64) -> Result<u64, RequestError> {
    sector
        .checked_mul(SECTOR_SIZE)
        .filter(|offset| offset.checked_add(len).is_some_and(|end| end <= capacity))
        .ok_or(RequestError::OutOfRange {
            sector,
            len,
            capacity,
        })
}

/// The segments of a DISCARD or WRITE_ZEROES request, gathered across its data descriptors.
fn read_segments(data: &[Descriptor], mem: &impl GuestBytes) -> Result<Segments, RequestError> {
    let len = data_len(data, Segment::LEN as u64)?;
    let count = len / Segment::LEN as u64;
    if count == 0 || count > MAX_SEGMENTS as u64 {
        return Err(RequestError::SegmentCount { count });
    }
    let mut bytes = [0u8; MAX_SEGMENTS * Segment::LEN];
    let mut filled = 0;
    for (i, desc) in data.iter().enumerate() {
        // Cannot go past `bytes`: the total is at most MAX_SEGMENTS segments, checked above.
        let end = filled + desc.len as usize;
        if !mem.read(desc.addr, &mut bytes[filled..end]) {
            return Err(RequestError::OutsideMemory {
                index: i + 1,
                addr: desc.addr,
                len: desc.len,
            });
        }
        filled = end;
    }
    let mut segments = Segments {
        items: [Segment::default(); MAX_SEGMENTS],
        len: count as usize,
    };
    for (item, chunk) in segments
        .items
        .iter_mut()
        .zip(bytes[..filled].chunks_exact(Segment::LEN))
    {
        let mut one = [0; Segment::LEN];
        one.copy_from_slice(chunk);
        *item = Segment::from_bytes(one);
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use core::mem::offset_of;

    use virtio_bindings::virtio_blk::{self as vb, virtio_blk_config};

    use super::*;

    #[test]
    fn constants_match_virtio_bindings() {
        assert_eq!(
            [
                feature::SEG_MAX,
                feature::RO,
                feature::BLK_SIZE,
                feature::FLUSH
            ],
            [
                vb::VIRTIO_BLK_F_SEG_MAX,
                vb::VIRTIO_BLK_F_RO,
                vb::VIRTIO_BLK_F_BLK_SIZE,
                vb::VIRTIO_BLK_F_FLUSH
            ]
        );
        assert_eq!(
            [feature::DISCARD, feature::WRITE_ZEROES],
            [vb::VIRTIO_BLK_F_DISCARD, vb::VIRTIO_BLK_F_WRITE_ZEROES]
        );
        assert_eq!(
            feature::EVENT_IDX,
            virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX
        );
        assert_eq!(
            feature::VERSION_1,
            virtio_bindings::virtio_config::VIRTIO_F_VERSION_1
        );
        assert_eq!(
            [
                kind::IN,
                kind::OUT,
                kind::FLUSH,
                kind::GET_ID,
                kind::DISCARD,
                kind::WRITE_ZEROES
            ],
            [
                vb::VIRTIO_BLK_T_IN,
                vb::VIRTIO_BLK_T_OUT,
                vb::VIRTIO_BLK_T_FLUSH,
                vb::VIRTIO_BLK_T_GET_ID,
                vb::VIRTIO_BLK_T_DISCARD,
                vb::VIRTIO_BLK_T_WRITE_ZEROES
            ]
        );
        assert_eq!(
            [
                Status::Ok as u32,
                Status::IoErr as u32,
                Status::Unsupp as u32
            ],
            [
                vb::VIRTIO_BLK_S_OK,
                vb::VIRTIO_BLK_S_IOERR,
                vb::VIRTIO_BLK_S_UNSUPP
            ]
        );
        assert_eq!(FLAG_UNMAP, vb::VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
        assert_eq!(ID_BYTES, vb::VIRTIO_BLK_ID_BYTES as usize);
    }

    #[test]
    fn config_offsets_match_virtio_blk_config() {
        use config_field as f;
        assert_eq!(f::CAPACITY.start, offset_of!(virtio_blk_config, capacity));
        assert_eq!(f::SEG_MAX.start, offset_of!(virtio_blk_config, seg_max));
        assert_eq!(f::BLK_SIZE.start, offset_of!(virtio_blk_config, blk_size));
        assert_eq!(
            f::MAX_DISCARD_SECTORS.start,
            offset_of!(virtio_blk_config, max_discard_sectors)
        );
        assert_eq!(
            f::MAX_DISCARD_SEG.start,
            offset_of!(virtio_blk_config, max_discard_seg)
        );
        assert_eq!(
            f::DISCARD_SECTOR_ALIGNMENT.start,
            offset_of!(virtio_blk_config, discard_sector_alignment)
        );
        assert_eq!(
            f::MAX_WRITE_ZEROES_SECTORS.start,
            offset_of!(virtio_blk_config, max_write_zeroes_sectors)
        );
        assert_eq!(
            f::MAX_WRITE_ZEROES_SEG.start,
            offset_of!(virtio_blk_config, max_write_zeroes_seg)
        );
        assert_eq!(
            f::WRITE_ZEROES_MAY_UNMAP,
            offset_of!(virtio_blk_config, write_zeroes_may_unmap)
        );
        assert_eq!(
            f::LEN,
            offset_of!(virtio_blk_config, max_secure_erase_sectors)
        );
    }

    #[test]
    fn header_and_segment_decode_little_endian() {
        let mut bytes = [0u8; 16];
        bytes[..4].copy_from_slice(&1u32.to_le_bytes());
        bytes[4..8].copy_from_slice(&0xdead_beefu32.to_le_bytes()); // reserved: ignored
        bytes[8..].copy_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(
            RequestHeader::from_bytes(bytes),
            RequestHeader {
                kind: kind::OUT,
                sector: 0x0102_0304_0506_0708
            }
        );
        let segment = Segment {
            sector: 7,
            num_sectors: 9,
            flags: FLAG_UNMAP,
        };
        assert_eq!(Segment::from_bytes(segment.to_bytes()), segment);
    }

    /// Guest memory of `len` bytes from 0, holding `bytes` at 0.
    struct Flat<'a>(&'a [u8], u64);

    impl GuestBytes for Flat<'_> {
        fn contains(&self, addr: u64, len: u32) -> bool {
            addr.checked_add(u64::from(len))
                .is_some_and(|end| end <= self.1)
        }
        fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
            let start = addr as usize;
            match self.0.get(start..start + buf.len()) {
                Some(src) => {
                    buf.copy_from_slice(src);
                    true
                }
                None => false,
            }
        }
    }

    fn desc(addr: u64, len: u32, writable: bool) -> Descriptor {
        Descriptor {
            addr,
            len,
            writable,
        }
    }

    const DISK: DiskInfo = DiskInfo {
        capacity: 1 << 20,
        read_only: false,
        acked_features: 0,
    };

    #[test]
    fn an_empty_chain_has_no_status() {
        let mem = Flat(&[], 0);
        assert_eq!(parse(&[], &mem, &DISK), Err(RequestError::EmptyChain));
    }

    #[test]
    fn a_zero_length_status_has_no_status() {
        let mem = Flat(&[], 4096);
        assert_eq!(
            parse(&[desc(0, 16, false), desc(100, 0, true)], &mem, &DISK),
            Err(RequestError::StatusEmpty { index: 1 })
        );
    }

    #[test]
    fn a_status_alone_has_no_header() {
        let mem = Flat(&[], 4096);
        let chain = [desc(100, 1, true)];
        let parsed = parse(&chain, &mem, &DISK).unwrap();
        assert_eq!(parsed.request, Err(RequestError::NoHeader));
        assert_eq!(RequestError::NoHeader.status(), Status::IoErr);
    }

    #[test]
    fn a_writable_header_fails() {
        let mem = Flat(&[], 4096);
        let chain = [desc(0, 16, true), desc(100, 1, true)];
        let parsed = parse(&chain, &mem, &DISK).unwrap();
        assert_eq!(parsed.request, Err(RequestError::HeaderWritable));
    }

    #[test]
    fn get_id_with_readable_data_fails() {
        let header = RequestHeader {
            kind: kind::GET_ID,
            sector: 0,
        }
        .to_bytes();
        let mem = Flat(&header, 4096);
        let chain = [desc(0, 16, false), desc(200, 20, false), desc(100, 1, true)];
        let parsed = parse(&chain, &mem, &DISK).unwrap();
        assert_eq!(
            parsed.request,
            Err(RequestError::WrongDirection {
                index: 1,
                kind: kind::GET_ID
            })
        );
    }
}
