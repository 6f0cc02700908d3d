//! Disk images: the bytes behind a virtio-blk device, whatever the file's format.
//!
//! A [`DiskImage`] is a virtual disk of [`DiskImage::capacity`] bytes that a block device
//! reads and writes at byte offsets; the format (raw, qcow2) is the image's business. Formats
//! are told apart by content, never by file name ([`ImageFormat::detect`]).

use std::fmt::Debug;
use std::io;
use std::path::PathBuf;

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
        const CHUNK: u64 = 1 << 20;
        let zeros = vec![0u8; CHUNK.min(len) as usize];
        let mut done = 0;
        while done < len {
            let n = CHUNK.min(len - done);
            self.write_at(offset + done, &zeros[..n as usize])?;
            done += n;
        }
        Ok(())
    }
}

/// An image file's format, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// The disk's bytes as they are.
    Raw,
    /// QEMU's copy-on-write format, version 2 or 3 (`QFI\xfb` magic).
    Qcow2,
}

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
    /// The image cannot do this operation.
    #[error("the image does not support {0}")]
    Unsupported(&'static str),
}
