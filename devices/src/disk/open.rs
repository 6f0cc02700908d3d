//! From a path to a disk: format detection, the backing chain, and the refusals, each one
//! sentence naming the file.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use super::qcow2::Qcow2Image;
use super::qcow2::header::{CLUSTER_BITS, Header};
use super::raw::RawImage;
use super::{DiskError, DiskImage, ImageFormat};

/// The most images a backing chain may hold, the top one included; a longer chain is refused
/// (each image holds a file descriptor and its own metadata cache).
pub const MAX_CHAIN_LEN: usize = 16;

/// What [`inspect`] learns from an image's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Detected from the file's content.
    pub format: ImageFormat,
    /// The virtual disk's size, bytes (a multiple of 512).
    pub virtual_size: u64,
    /// The qcow2 backing file, resolved as QEMU does: an absolute name as it is, a relative one
    /// against the directory of the image's path (not the working directory).
    pub backing_file: Option<PathBuf>,
}

/// One image of a backing chain, inspected.
#[derive(Debug, Clone)]
pub(super) struct Layer {
    pub(super) path: PathBuf,
    pub(super) info: ImageInfo,
    /// The parsed header, for qcow2.
    pub(super) qcow2: Option<Header>,
    /// The backing file's format, as the header declares it (`None`: detect it).
    backing_format: Option<ImageFormat>,
}

/// Reads `path`'s header and, for qcow2, its whole backing chain's, without opening anything
/// for I/O.
///
/// # Errors
///
/// - [`DiskError::Io`]: the file (or a backing file's header) cannot be read, e.g. it does not
///   exist.
/// - [`DiskError::Format`]: `path` is a directory, an empty raw file, a raw file not a whole
///   number of 512-byte sectors, a qcow2 header capsule cannot use
///   ([`Header::check_supported`]: encryption, dirty or corrupt bit, external data file,
///   compression other than zlib, extended L2, unknown feature bits), a backing file that does
///   not exist (both files named), a backing format other than raw and qcow2, a chain longer
///   than [`MAX_CHAIN_LEN`] or one that loops.
pub fn inspect(path: &Path) -> Result<ImageInfo, DiskError> {
    Ok(chain(path)?.swap_remove(0).info)
}

/// Opens the image at `path` for I/O, detecting its format by content; qcow2 backing files are
/// opened read-only. With `read_only` the image's own file is opened `O_RDONLY` and writes
/// fail with [`DiskError::ReadOnly`].
///
/// # Errors
///
/// As [`inspect`], and [`DiskError::Io`] when the file cannot be opened (e.g. opened
/// read-write without write permission).
pub fn open(path: &Path, read_only: bool) -> Result<Box<dyn DiskImage>, DiskError> {
    let chain = chain(path)?;
    Ok(match chain[0].info.format {
        ImageFormat::Raw => Box::new(RawImage::open(path, read_only)?),
        ImageFormat::Qcow2 => Box::new(Qcow2Image::open(&chain, read_only)?),
    })
}

/// `path` and every image below it, top first.
fn chain(path: &Path) -> Result<Vec<Layer>, DiskError> {
    let mut chain = vec![layer(path, None)?];
    let mut seen = vec![canonical(path)?];
    loop {
        let top = chain.last().expect("the chain starts with one image");
        let Some(backing) = top.info.backing_file.clone() else {
            return Ok(chain);
        };
        let image = &top.path;
        let format = top.backing_format;
        if fs::metadata(&backing).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
            return Err(format_error(
                image,
                format!("its backing file {} does not exist", backing.display()),
            ));
        }
        let real = canonical(&backing)?;
        if seen.contains(&real) {
            return Err(format_error(
                image,
                format!("its backing chain loops back to {}", backing.display()),
            ));
        }
        if chain.len() == MAX_CHAIN_LEN {
            return Err(format_error(
                path,
                format!("its backing chain is longer than {MAX_CHAIN_LEN} images"),
            ));
        }
        seen.push(real);
        chain.push(layer(&backing, format)?);
    }
}

fn canonical(path: &Path) -> Result<PathBuf, DiskError> {
    fs::canonicalize(path).map_err(|source| io_error(path, source))
}

/// Inspects one image: as `format` if the layer above declared it, else detected by content.
fn layer(path: &Path, format: Option<ImageFormat>) -> Result<Layer, DiskError> {
    let meta = fs::metadata(path).map_err(|source| io_error(path, source))?;
    if meta.is_dir() {
        return Err(format_error(
            path,
            "is a directory, not a disk image".into(),
        ));
    }
    let mut file = File::open(path).map_err(|source| io_error(path, source))?;
    let len = if meta.file_type().is_block_device() {
        // A block device's metadata says 0 bytes; its end is its size.
        file.seek(SeekFrom::End(0))
            .map_err(|source| io_error(path, source))?
    } else {
        meta.len()
    };
    // The smallest cluster: it holds any header (`header_length` <= cluster size).
    let mut first = Vec::new();
    read_prefix(&mut file, 1 << CLUSTER_BITS.start(), &mut first).map_err(|e| io_error(path, e))?;
    let format = format.unwrap_or_else(|| ImageFormat::detect(&first));
    let (info, qcow2, backing_format) = match format {
        ImageFormat::Raw => (raw_info(path, len)?, None, None),
        ImageFormat::Qcow2 => qcow2_info(path, &mut file, first)?,
    };
    Ok(Layer {
        path: path.to_owned(),
        info,
        qcow2,
        backing_format,
    })
}

/// Appends up to `n` bytes from the file's start to `buf` (fewer at the end of the file).
fn read_prefix(file: &mut File, n: u64, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    file.seek(SeekFrom::Start(0))?;
    file.take(n).read_to_end(buf)?;
    Ok(())
}

fn raw_info(path: &Path, len: u64) -> Result<ImageInfo, DiskError> {
    if len == 0 {
        return Err(format_error(path, "is empty (0 bytes), not a disk".into()));
    }
    if len % 512 != 0 {
        return Err(format_error(
            path,
            format!(
                "is {len} bytes, not a whole number of 512-byte sectors (pad it with \
                 `truncate -s %512`)"
            ),
        ));
    }
    Ok(ImageInfo {
        format: ImageFormat::Raw,
        virtual_size: len,
        backing_file: None,
    })
}

fn qcow2_info(
    path: &Path,
    file: &mut File,
    mut first: Vec<u8>,
) -> Result<(ImageInfo, Option<Header>, Option<ImageFormat>), DiskError> {
    let header = Header::parse(&first).map_err(|e| format_error(path, e.to_string()))?;
    header
        .check_supported()
        .map_err(|e| format_error(path, e.to_string()))?;
    // The backing file's name and the header extensions sit in the first cluster, at most
    // 2 MiB (CLUSTER_BITS), so this read is bounded whatever the header says.
    read_prefix(file, header.cluster_size(), &mut first).map_err(|e| io_error(path, e))?;
    let name = header
        .backing_file_name(&first)
        .map_err(|e| format_error(path, e.to_string()))?;
    let backing_format = match header
        .backing_format(&first)
        .map_err(|e| format_error(path, e.to_string()))?
    {
        None => None,
        Some(b"raw") => Some(ImageFormat::Raw),
        Some(b"qcow2") => Some(ImageFormat::Qcow2),
        Some(other) => {
            return Err(format_error(
                path,
                format!(
                    "its backing file's format is {}; capsule reads raw and qcow2",
                    String::from_utf8_lossy(other)
                ),
            ));
        }
    };
    let backing_file = name.map(|name| resolve_backing(path, name)).transpose()?;
    if header.size == 0 {
        return Err(format_error(
            path,
            "is a qcow2 image of 0 bytes, not a disk".into(),
        ));
    }
    let info = ImageInfo {
        format: ImageFormat::Qcow2,
        virtual_size: header.size,
        backing_file,
    };
    Ok((info, Some(header), backing_format))
}

/// Resolves a backing file name as QEMU does (`bdrv_get_full_backing_filename`): relative to
/// the directory of the image's path.
fn resolve_backing(image: &Path, name: &[u8]) -> Result<PathBuf, DiskError> {
    if name.is_empty() || name.starts_with(b"json:") {
        return Err(format_error(
            image,
            format!(
                "its backing file name {:?} is not a file name capsule can open",
                String::from_utf8_lossy(name)
            ),
        ));
    }
    let name = Path::new(OsStr::from_bytes(name));
    Ok(match image.parent() {
        Some(dir) if name.is_relative() => dir.join(name),
        _ => name.to_owned(),
    })
}

fn io_error(path: &Path, source: io::Error) -> DiskError {
    DiskError::Io {
        path: path.to_owned(),
        source,
    }
}

fn format_error(path: &Path, reason: String) -> DiskError {
    DiskError::Format {
        path: path.to_owned(),
        reason,
    }
}
