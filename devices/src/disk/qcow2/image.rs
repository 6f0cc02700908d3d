//! A qcow2 image and its backing chain, opened for I/O through `imago`.

use std::fmt;
use std::io;

use imago::file::File;
use imago::qcow2::Qcow2;
use imago::raw::Raw;
use imago::{DenyImplicitOpenGate, FormatAccess, FormatDriverBuilder, Storage, StorageOpenOptions};

use crate::disk::open::Layer;
use crate::disk::{DiskError, DiskImage, Extent, ImageFormat};

type Access = FormatAccess<File>;

/// A qcow2 image over its (already inspected) backing chain.
pub(in crate::disk) struct Qcow2Image {
    access: Access,
    extent: Extent,
    /// Version 3: discard can set the zero flag (version 2 has none, so nothing is offered).
    zero_flag: bool,
}

impl fmt::Debug for Qcow2Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Qcow2Image")
            .field("extent", &self.extent)
            .field("zero_flag", &self.zero_flag)
            .finish_non_exhaustive()
    }
}

impl Qcow2Image {
    /// Opens `chain[0]` (a qcow2 image) over the images below it, those read-only. Implicit
    /// opens are denied: imago opens exactly the files `chain` names.
    pub(in crate::disk) fn open(chain: &[Layer], read_only: bool) -> Result<Qcow2Image, DiskError> {
        let mut backing = None;
        for layer in chain[1..].iter().rev() {
            backing = Some(open_layer(layer, backing, false)?);
        }
        let top = &chain[0];
        let access = open_layer(top, backing, !read_only)?;
        Ok(Qcow2Image {
            access,
            extent: Extent {
                path: top.path.clone(),
                capacity: top.info.virtual_size,
                read_only,
            },
            zero_flag: top.qcow2.is_some_and(|h| h.version >= 3),
        })
    }
}

fn open_layer(layer: &Layer, backing: Option<Access>, write: bool) -> Result<Access, DiskError> {
    let path = &layer.path;
    let error = |source: io::Error| match source.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::Unsupported => DiskError::Format {
            path: path.to_owned(),
            reason: source.to_string(),
        },
        _ => DiskError::Io {
            path: path.to_owned(),
            source,
        },
    };
    let file = File::open(StorageOpenOptions::new().filename(path).write(write)).map_err(error)?;
    let gate = DenyImplicitOpenGate::default();
    Ok(match layer.info.format {
        ImageFormat::Raw => {
            FormatAccess::new(Raw::builder(file).write(write).open(gate).map_err(error)?)
        }
        ImageFormat::Qcow2 => FormatAccess::new(
            Qcow2::<File>::builder(file)
                .backing(backing)
                .write(write)
                .open(gate)
                .map_err(error)?,
        ),
    })
}

impl DiskImage for Qcow2Image {
    fn capacity(&self) -> u64 {
        self.extent.capacity
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        self.extent.check(offset, buf.len() as u64, false)?;
        self.access
            .read(buf, offset)
            .map_err(|e| self.extent.io_error(e))
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), DiskError> {
        self.extent.check(offset, buf.len() as u64, true)?;
        self.access
            .write(buf, offset)
            .map_err(|e| self.extent.io_error(e))
    }

    /// Writes the cached L2 tables and refcount blocks back, then `fdatasync`s the file.
    fn flush(&mut self) -> Result<(), DiskError> {
        if self.extent.read_only {
            return Ok(());
        }
        self.access.flush().map_err(|e| self.extent.io_error(e))?;
        self.access.sync().map_err(|e| self.extent.io_error(e))
    }

    fn supports_discard(&self) -> bool {
        !self.extent.read_only && self.zero_flag
    }

    /// Sets the zero flag on (or frees) whole clusters and writes zeros around them, so the
    /// range reads as zeros, not as the backing file.
    fn discard(&mut self, offset: u64, len: u64) -> Result<(), DiskError> {
        self.extent.check(offset, len, true)?;
        if !self.zero_flag {
            return Err(DiskError::Unsupported("discard on a qcow2 version 2 image"));
        }
        self.access
            .discard_to_zero(offset, len)
            .map_err(|e| self.extent.io_error(e))
    }

    fn write_zeroes(&mut self, offset: u64, len: u64, unmap: bool) -> Result<(), DiskError> {
        self.extent.check(offset, len, true)?;
        if !self.zero_flag {
            return crate::disk::write_zeroes_by_writing(self, offset, len);
        }
        if unmap {
            return self.discard(offset, len);
        }
        self.access
            .write_zeroes(offset, len)
            .map_err(|e| self.extent.io_error(e))
    }
}
