//! Raw images: the disk's bytes are the file's bytes (a regular file or a block device).

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use vmm_sys_util::fallocate::{FallocateMode, fallocate};

use super::qcow2::header::MAGIC;
use super::{DiskError, DiskImage, Extent, ImageFormat};

/// A raw image file: `pread`/`pwrite` at the guest's offsets, `fdatasync` for flush, and
/// `fallocate` to discard (PUNCH_HOLE) and zero (ZERO_RANGE) where the file system has them.
#[derive(Debug)]
pub(super) struct RawImage {
    file: File,
    extent: Extent,
    /// FALLOC_FL_PUNCH_HOLE works here (probed at open; never for block devices).
    punch_hole: bool,
    /// FALLOC_FL_ZERO_RANGE works here: learnt on first use, as probing it would allocate.
    zero_range: bool,
}

impl RawImage {
    /// Opens `path` (already inspected: a non-empty whole number of sectors), `O_RDONLY` if
    /// `read_only`.
    pub(super) fn open(path: &Path, read_only: bool) -> Result<RawImage, DiskError> {
        let io_error = |source| DiskError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(io_error)?;
        // The end is the size for block devices too, whose metadata says 0.
        let capacity = file.seek(SeekFrom::End(0)).map_err(io_error)?;
        let is_file = file.metadata().map_err(io_error)?.file_type().is_file();
        let writable_file = !read_only && is_file;
        // Punching a hole past the end with KEEP_SIZE changes nothing, and fails with
        // EOPNOTSUPP where the file system cannot punch at all.
        let punch_hole = writable_file
            && fallocate(&file, FallocateMode::PunchHole, true, capacity, 512).is_ok();
        Ok(RawImage {
            file,
            extent: Extent {
                path: path.to_owned(),
                capacity,
                read_only,
            },
            punch_hole,
            zero_range: writable_file,
        })
    }

    /// Refuses a write that would make the image's first bytes the qcow2 magic: the next
    /// open would detect a qcow2 image and follow a backing file name the guest chose (QEMU's
    /// raw driver refuses the same for probed images, CVE-2008-2004).
    fn guard_detection(&self, offset: u64, buf: &[u8]) -> Result<(), DiskError> {
        let magic_len = MAGIC.len() as u64;
        if offset >= magic_len {
            return Ok(());
        }
        let mut first = [0u8; MAGIC.len()];
        self.file
            .read_exact_at(&mut first, 0)
            .map_err(|e| self.extent.io_error(e))?;
        // offset < 4, so these fit in usize.
        let at = offset as usize;
        let n = buf.len().min(first.len() - at);
        first[at..at + n].copy_from_slice(&buf[..n]);
        if ImageFormat::detect(&first) == ImageFormat::Qcow2 {
            return Err(self.extent.io_error(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "refusing to write a qcow2 header to the start of a raw disk",
            )));
        }
        Ok(())
    }

    fn fallocate(&self, mode: FallocateMode, offset: u64, len: u64) -> Result<(), DiskError> {
        fallocate(&self.file, mode, true, offset, len).map_err(|e| {
            self.extent
                .io_error(io::Error::from_raw_os_error(e.errno()))
        })
    }
}

impl DiskImage for RawImage {
    fn capacity(&self) -> u64 {
        self.extent.capacity
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        self.extent.check(offset, buf.len() as u64, false)?;
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| self.extent.io_error(e))
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), DiskError> {
        self.extent.check(offset, buf.len() as u64, true)?;
        self.guard_detection(offset, buf)?;
        self.file
            .write_all_at(buf, offset)
            .map_err(|e| self.extent.io_error(e))
    }

    fn flush(&mut self) -> Result<(), DiskError> {
        self.file.sync_data().map_err(|e| self.extent.io_error(e))
    }

    fn supports_discard(&self) -> bool {
        self.punch_hole
    }

    fn discard(&mut self, offset: u64, len: u64) -> Result<(), DiskError> {
        self.extent.check(offset, len, true)?;
        if !self.punch_hole {
            return Err(DiskError::Unsupported("discard"));
        }
        self.fallocate(FallocateMode::PunchHole, offset, len)
    }

    fn write_zeroes(&mut self, offset: u64, len: u64, unmap: bool) -> Result<(), DiskError> {
        self.extent.check(offset, len, true)?;
        if self.zero_range && !unmap {
            match fallocate(&self.file, FallocateMode::ZeroRange, true, offset, len) {
                Ok(()) => return Ok(()),
                Err(e) if e.errno() == libc::EOPNOTSUPP => self.zero_range = false,
                Err(e) => {
                    return Err(self
                        .extent
                        .io_error(io::Error::from_raw_os_error(e.errno())));
                }
            }
        }
        // A punched hole reads as zeros; without `unmap` it is still allowed, only wasteful
        // of a later write's allocation.
        if self.punch_hole {
            return self.fallocate(FallocateMode::PunchHole, offset, len);
        }
        super::write_zeroes_by_writing(self, offset, len)
    }
}
