//! Disk images: the bytes behind a virtio-blk device, whatever the file's format.
//!
//! A [`DiskImage`] is a virtual disk of [`DiskImage::capacity`] bytes that a block device
//! reads and writes at byte offsets; the format (raw, qcow2) is the image's business. Formats
//! are told apart by content, never by file name ([`ImageFormat::detect`]).
//!
//! - [`inspect`] reads an image's header (and, for qcow2, its backing chain's) without opening
//!   it for I/O: [`ImageInfo`], or one [`DiskError`] sentence saying why capsule cannot use it.
//! - [`open`] gives the [`DiskImage`] for a path: [`raw`] or [`qcow2`].
//!
//! The qcow2 header logic ([`qcow2::header`]) builds on `core` alone; the rest needs std.

#[cfg(feature = "std")]
mod open;
pub mod qcow2;
#[cfg(feature = "std")]
mod raw;

#[cfg(feature = "std")]
pub use open::{ImageInfo, MAX_CHAIN_LEN, inspect, open};

#[cfg(all(test, feature = "std"))]
mod tests;

#[cfg(feature = "std")]
use std::{fmt::Debug, io, path::PathBuf};

#[cfg(feature = "std")]
/// A virtual disk: the block device's view of an image file.
///
/// Offsets and lengths are in bytes; the caller (the block device) keeps every access within
/// [`DiskImage::capacity`] and aligned to 512-byte sectors, and an implementation still
/// refuses one that is not ([`DiskError::OutOfRange`]) rather than touch other data.
pub trait DiskImage: Send + Debug {
    /// The virtual disk's size in bytes (a multiple of 512).
    fn capacity(&self) -> u64;

    /// Fills `buf` from the disk at `offset`. Never-written areas read as zeros (or as the
    /// backing image's data, for a copy-on-write image).
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError>;

    /// Writes `buf` to the disk at `offset` (allocating in a growing format).
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), DiskError>;

    /// Makes every completed write durable (fdatasync of the files behind the image).
    fn flush(&mut self) -> Result<(), DiskError>;

    /// Whether [`DiskImage::discard`] and [`DiskImage::write_zeroes`] with `unmap` can free
    /// space (VIRTIO_BLK_F_DISCARD is offered only then).
    fn supports_discard(&self) -> bool {
        false
    }

    /// Tells the image that `len` bytes at `offset` are unused; they may read back as zeros
    /// or as before. [`DiskError::Unsupported`] where [`DiskImage::supports_discard`] is false.
    fn discard(&mut self, offset: u64, len: u64) -> Result<(), DiskError> {
        let _ = (offset, len);
        Err(DiskError::Unsupported("discard"))
    }

    /// Makes `len` bytes at `offset` read as zeros, freeing their space if `unmap` and the
    /// image can (VIRTIO_BLK_T_WRITE_ZEROES). The default writes zeros.
    fn write_zeroes(&mut self, offset: u64, len: u64, unmap: bool) -> Result<(), DiskError> {
        let _ = unmap;
        write_zeroes_by_writing(self, offset, len)
    }
}

/// What every image checks an access against: its path (for errors), size and mode.
#[cfg(feature = "std")]
#[derive(Debug)]
struct Extent {
    path: PathBuf,
    capacity: u64,
    read_only: bool,
}

#[cfg(feature = "std")]
impl Extent {
    /// Refuses a write to a read-only image and an access past the disk's end.
    fn check(&self, offset: u64, len: u64, write: bool) -> Result<(), DiskError> {
        if write && self.read_only {
            return Err(DiskError::ReadOnly {
                path: self.path.clone(),
            });
        }
        match offset.checked_add(len) {
            Some(end) if end <= self.capacity => Ok(()),
            _ => Err(DiskError::OutOfRange {
                offset,
                len,
                capacity: self.capacity,
            }),
        }
    }

    fn io_error(&self, source: io::Error) -> DiskError {
        DiskError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

/// [`DiskImage::write_zeroes`] done with [`DiskImage::write_at`], 1 MiB at a time.
#[cfg(feature = "std")]
fn write_zeroes_by_writing<D: DiskImage + ?Sized>(
    disk: &mut D,
    offset: u64,
    len: u64,
) -> Result<(), DiskError> {
    const CHUNK: u64 = 1 << 20;
    let zeros = vec![0u8; CHUNK.min(len) as usize];
    let mut done = 0;
    while done < len {
        let n = CHUNK.min(len - done);
        let at = offset.checked_add(done).ok_or(DiskError::OutOfRange {
            offset,
            len,
            capacity: disk.capacity(),
        })?;
        disk.write_at(at, &zeros[..n as usize])?;
        done += n;
    }
    Ok(())
}

/// An image file's format, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// The disk's bytes as they are.
    Raw,
    /// QEMU's copy-on-write format, version 2 or 3 (`QFI\xfb` magic).
    Qcow2,
}

impl ImageFormat {
    /// The format of an image whose file starts with `first_bytes` (4 bytes suffice): qcow2
    /// for QEMU's magic, raw for anything else (an empty slice included).
    pub fn detect(first_bytes: &[u8]) -> ImageFormat {
        if first_bytes.starts_with(&qcow2::header::MAGIC) {
            ImageFormat::Qcow2
        } else {
            ImageFormat::Raw
        }
    }

    /// The name QEMU gives the format (`raw`, `qcow2`), as in `qemu-img -f`.
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Raw => "raw",
            ImageFormat::Qcow2 => "qcow2",
        }
    }
}

#[cfg(feature = "std")]
/// Everything that can go wrong with a disk image.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// Reading or writing the image file failed.
    #[error("{path}: {source}")]
    Io {
        /// The image (or backing) file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// An access outside the virtual disk.
    #[error("{len} bytes at offset {offset} are outside the disk's {capacity} bytes")]
    OutOfRange {
        /// Where the access starts, bytes.
        offset: u64,
        /// How long it is, bytes.
        len: u64,
        /// The disk's size, bytes.
        capacity: u64,
    },
    /// The image is in a format, or uses a feature of it, that capsule cannot read.
    #[error("{path}: {reason}")]
    Format {
        /// The image file.
        path: PathBuf,
        /// What is wrong or unsupported, with the value.
        reason: String,
    },
    /// A write to an image opened read-only.
    #[error("{path}: the disk is read-only")]
    ReadOnly {
        /// The image file.
        path: PathBuf,
    },
    /// The image cannot do this operation.
    #[error("the image does not support {0}")]
    Unsupported(&'static str),
}
