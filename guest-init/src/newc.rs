//! A streaming writer of newc ("SVR4 new ASCII") cpio archives, the format the kernel unpacks
//! into its initramfs.
//!
//! Written here rather than with the `cpio` crate because that crate takes entry names as
//! `&str`, while a root filesystem may hold names that are not UTF-8 (the kernel takes any
//! bytes), and because it pads an entry's data only when exactly the promised size was written:
//! a file that shrinks while it is copied would leave a silently corrupt archive, which is an
//! error here.
//!
//! ```
//! use guest_init::newc::{Meta, NewcWriter};
//!
//! let mut archive = NewcWriter::new(Vec::new());
//! archive.directory("dev", Meta::root(0o755))?;
//! archive.char_device("dev/console", Meta::root(0o600), 5, 1)?;
//! archive.file("hello", Meta::root(0o644), b"hi\n")?;
//! let (bytes, len) = archive.finish()?;
//! assert_eq!(bytes.len() as u64, len);
//! assert_eq!(len % 4, 0);
//! # Ok::<(), guest_init::Error>(())
//! ```

use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::{Error, Result};

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// The kernel's `PATH_MAX`: its unpacker skips longer names and symlink targets.
const PATH_MAX: usize = 4096;

const TRAILER: &[u8] = b"TRAILER!!!";

/// Large enough that a copy of a big file is a few reads and writes, and that the writes bypass
/// a `BufWriter` of the usual sizes.
const COPY_BUFFER: usize = 128 * 1024;

/// The metadata of one entry besides its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits, including setuid, setgid and sticky (`0o4755`).
    pub perm: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Seconds since the epoch; newc has 32 bits for it.
    pub mtime: u32,
}

impl Meta {
    /// Owned by root, with mtime 0 so that archives of the same inputs are identical.
    pub const fn root(perm: u32) -> Self {
        Self {
            perm,
            uid: 0,
            gid: 0,
            mtime: 0,
        }
    }

    /// The permission bits, owner and mtime of a file on the host.
    pub fn of(metadata: &Metadata) -> Self {
        Self {
            perm: metadata.mode() & 0o7777,
            uid: metadata.uid(),
            gid: metadata.gid(),
            // Clamped: newc cannot express times before 1970 or after 2106.
            mtime: u32::try_from(metadata.mtime().max(0)).unwrap_or(u32::MAX),
        }
    }
}

/// Writes entries in the order it is given them, then a trailer on [`NewcWriter::finish`].
///
/// Each entry is at least one `write` call on `W`: hand it a `BufWriter` (or a `Vec`), not a
/// bare `File`. Directories must be written before their contents; the kernel does not create
/// missing parents.
#[derive(Debug)]
pub struct NewcWriter<W: Write> {
    out: W,
    written: u64,
    next_ino: u32,
    /// A header and its name, reused across entries.
    header: Vec<u8>,
    /// For file copies; allocated by the first one.
    buffer: Vec<u8>,
}

impl<W: Write> NewcWriter<W> {
    /// A writer of a new archive to `out`.
    pub fn new(out: W) -> Self {
        Self {
            out,
            written: 0,
            // Every entry gets its own inode number, and every non-directory a link count of
            // 1, so the kernel never takes two entries for hard links of one file.
            next_ino: 1,
            header: Vec::with_capacity(512),
            buffer: Vec::new(),
        }
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Adds the directory `name`.
    ///
    /// # Errors
    ///
    /// [`Error::BadEntry`] for a name the kernel refuses, [`Error::Write`].
    pub fn directory(&mut self, name: impl AsRef<[u8]>, meta: Meta) -> Result<()> {
        self.header(name.as_ref(), S_IFDIR | meta.perm, &meta, 2, 0, (0, 0))
    }

    /// Adds the regular file `name` holding `data`.
    ///
    /// # Errors
    ///
    /// [`Error::FileTooLarge`] past 4 GiB - 1, [`Error::BadEntry`], [`Error::Write`].
    pub fn file(&mut self, name: impl AsRef<[u8]>, meta: Meta, data: &[u8]) -> Result<()> {
        let name = name.as_ref();
        let size = u32::try_from(data.len()).map_err(|_| Error::FileTooLarge {
            path: Path::new(std::ffi::OsStr::from_bytes(name)).to_owned(),
            size: data.len() as u64,
        })?;
        self.header(name, S_IFREG | meta.perm, &meta, 1, size, (0, 0))?;
        self.put(data)?;
        self.pad(size)
    }

    /// A regular file with the contents of `path` (read as it is streamed, never whole).
    pub fn file_from_path(
        &mut self,
        name: impl AsRef<[u8]>,
        meta: Meta,
        path: &Path,
    ) -> Result<()> {
        let mut file = open_file(path)?;
        let size = file
            .metadata()
            .map_err(|source| read_error(path, source))?
            .len();
        self.copy_file(name.as_ref(), meta, &mut file, size, path)
    }

    /// Adds the symbolic link `name` to `target`.
    ///
    /// # Errors
    ///
    /// [`Error::BadEntry`] for a name or target the kernel refuses, [`Error::Write`].
    pub fn symlink(
        &mut self,
        name: impl AsRef<[u8]>,
        meta: Meta,
        target: impl AsRef<[u8]>,
    ) -> Result<()> {
        let (name, target) = (name.as_ref(), target.as_ref());
        if target.is_empty() || target.len() >= PATH_MAX || target.contains(&0) {
            return Err(bad_entry(
                name,
                "symlink target must be 1 to 4095 bytes without NUL",
            ));
        }
        // The length check above keeps it far below u32::MAX.
        let size = target.len() as u32;
        self.header(name, S_IFLNK | meta.perm, &meta, 1, size, (0, 0))?;
        self.put(target)?;
        self.pad(size)
    }

    /// A character device node: the kernel creates it while unpacking, so an archive built by
    /// an unprivileged user can still carry `/dev/console`.
    pub fn char_device(
        &mut self,
        name: impl AsRef<[u8]>,
        meta: Meta,
        major: u32,
        minor: u32,
    ) -> Result<()> {
        self.header(
            name.as_ref(),
            S_IFCHR | meta.perm,
            &meta,
            1,
            0,
            (major, minor),
        )
    }

    /// The directory tree at `dir` under `name`: `dir` itself (following it if it is a
    /// symlink), then everything below it, never following symlinks. Directories, regular files
    /// and symlinks keep their permission bits, owner and mtime; hard links become separate
    /// files. Sockets, fifos and device nodes are skipped (the guest's init gives the guest a
    /// devtmpfs `/dev`). Entries come sorted by name, so the same tree gives the same archive.
    pub fn tree(&mut self, name: impl AsRef<[u8]>, dir: &Path) -> Result<()> {
        let metadata = fs::metadata(dir).map_err(|source| read_error(dir, source))?;
        if !metadata.is_dir() {
            return Err(read_error(dir, io::ErrorKind::NotADirectory.into()));
        }
        let name = name.as_ref().to_vec();
        self.directory(&name, Meta::of(&metadata))?;
        // Directories whose contents are still to be written, as (host path, entry name); a
        // stack, so that the tree is written depth first.
        let mut pending = vec![(dir.to_path_buf(), name)];
        let mut children = Vec::new();
        let mut subdirs = Vec::new();
        while let Some((path, name)) = pending.pop() {
            for entry in fs::read_dir(&path).map_err(|source| read_error(&path, source))? {
                let entry = entry.map_err(|source| read_error(&path, source))?;
                children.push((entry.file_name(), entry));
            }
            children.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            for (file_name, entry) in children.drain(..) {
                let child_path = path.join(&file_name);
                let mut child_name = Vec::with_capacity(name.len() + 1 + file_name.len());
                child_name.extend_from_slice(&name);
                child_name.push(b'/');
                child_name.extend_from_slice(file_name.as_bytes());
                // lstat: a symlink is archived as itself.
                let metadata = entry
                    .metadata()
                    .map_err(|source| read_error(&child_path, source))?;
                let meta = Meta::of(&metadata);
                let kind = metadata.file_type();
                if kind.is_dir() {
                    self.directory(&child_name, meta)?;
                    subdirs.push((child_path, child_name));
                } else if kind.is_file() {
                    let mut file = open_file(&child_path)?;
                    self.copy_file(&child_name, meta, &mut file, metadata.len(), &child_path)?;
                } else if kind.is_symlink() {
                    let target = fs::read_link(&child_path)
                        .map_err(|source| read_error(&child_path, source))?;
                    self.symlink(&child_name, meta, target.as_os_str().as_bytes())?;
                } else {
                    #[cfg(feature = "tracing")]
                    tracing::debug!(
                        path = %child_path.display(),
                        "not archiving a socket, fifo or device node"
                    );
                }
            }
            pending.extend(subdirs.drain(..).rev());
        }
        Ok(())
    }

    /// Writes the trailer and returns the destination (flushed) and the archive's length, a
    /// multiple of 4 so that another archive can follow it.
    pub fn finish(mut self) -> Result<(W, u64)> {
        self.header(TRAILER, 0, &Meta::root(0), 1, 0, (0, 0))?;
        self.out.flush().map_err(Error::Write)?;
        debug_assert_eq!(self.written % 4, 0);
        Ok((self.out, self.written))
    }

    fn copy_file(
        &mut self,
        name: &[u8],
        meta: Meta,
        file: &mut File,
        size: u64,
        path: &Path,
    ) -> Result<()> {
        let size32 = u32::try_from(size).map_err(|_| Error::FileTooLarge {
            path: path.to_owned(),
            size,
        })?;
        self.header(name, S_IFREG | meta.perm, &meta, 1, size32, (0, 0))?;
        if self.buffer.is_empty() && size > 0 {
            self.buffer = vec![0; COPY_BUFFER];
        }
        let mut buffer = std::mem::take(&mut self.buffer);
        let copied = self.copy_exactly(file, size, &mut buffer, path);
        self.buffer = buffer;
        copied?;
        self.pad(size32)
    }

    /// Copies `size` bytes: the header already promised that many. A file that grew since its
    /// `stat` is cut at the promised size; one that shrank is an error.
    fn copy_exactly(
        &mut self,
        file: &mut File,
        size: u64,
        buffer: &mut [u8],
        path: &Path,
    ) -> Result<()> {
        let mut remaining = size;
        while remaining > 0 {
            let want = buffer
                .len()
                .min(usize::try_from(remaining).unwrap_or(usize::MAX));
            let n = match file.read(&mut buffer[..want]) {
                Ok(0) => {
                    return Err(Error::FileChanged {
                        path: path.to_owned(),
                        expected: size,
                        got: size - remaining,
                    });
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(read_error(path, source)),
            };
            self.put(&buffer[..n])?;
            remaining -= n as u64;
        }
        Ok(())
    }

    fn header(
        &mut self,
        name: &[u8],
        mode: u32,
        meta: &Meta,
        nlink: u32,
        size: u32,
        (rdev_major, rdev_minor): (u32, u32),
    ) -> Result<()> {
        if name.is_empty() || name.len() >= PATH_MAX || name.contains(&0) {
            return Err(bad_entry(name, "name must be 1 to 4095 bytes without NUL"));
        }
        let ino = self.next_ino;
        self.next_ino = self.next_ino.wrapping_add(1);
        let mut header = std::mem::take(&mut self.header);
        header.clear();
        header.extend_from_slice(b"070701");
        let name_size = name.len() as u32 + 1;
        for field in [
            ino, mode, meta.uid, meta.gid, nlink, meta.mtime, size, 0, 0, rdev_major, rdev_minor,
            name_size, 0,
        ] {
            push_hex(&mut header, field);
        }
        header.extend_from_slice(name);
        header.push(0);
        // The data starts 4-aligned: pad the 110-byte header plus the name.
        header.resize(header.len().next_multiple_of(4), 0);
        let result = self.put(&header);
        self.header = header;
        result
    }

    fn pad(&mut self, data_len: u32) -> Result<()> {
        let pad = (4 - data_len % 4) % 4;
        self.put(&[0; 3][..pad as usize])
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(Error::Write)?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

/// Eight lowercase hex digits, as every newc header field.
fn push_hex(buf: &mut Vec<u8>, value: u32) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..8).rev() {
        buf.push(DIGITS[(value >> (shift * 4)) as usize & 0xf]);
    }
}

/// Opens a regular file for reading without following a symlink that replaced it since it was
/// listed.
fn open_file(path: &Path) -> Result<File> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|source| read_error(path, source))
}

fn read_error(path: &Path, source: io::Error) -> Error {
    Error::Read {
        path: path.to_owned(),
        source,
    }
}

fn bad_entry(name: &[u8], reason: &'static str) -> Error {
    Error::BadEntry {
        name: String::from_utf8_lossy(name).into_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_hex_fields_and_everything_is_4_aligned() {
        let mut w = NewcWriter::new(Vec::new());
        w.file("a", Meta::root(0o644), b"hello").unwrap();
        w.char_device("console", Meta::root(0o600), 5, 1).unwrap();
        let (bytes, len) = w.finish().unwrap();
        assert_eq!(bytes.len() as u64, len);
        assert_eq!(len % 4, 0);
        // magic, ino 1, mode, uid, gid, nlink 1, mtime, size 5, dev, rdev, namesize 2, check
        let expected = [
            "070701", "00000001", "000081a4", "00000000", "00000000", "00000001", "00000000",
            "00000005", "00000000", "00000000", "00000000", "00000000", "00000002", "00000000",
        ]
        .concat();
        assert_eq!(std::str::from_utf8(&bytes[..110]).unwrap(), expected);
        // 110 + "a\0" = 112, then 5 data bytes and 3 of padding.
        assert_eq!(&bytes[110..112], b"a\0");
        assert_eq!(&bytes[112..120], b"hello\0\0\0");
        let mut reader = cpio::NewcReader::new(&bytes[120..]).unwrap();
        assert_eq!(reader.entry().name(), "console");
        assert_eq!(reader.entry().mode(), 0o020_600);
        assert_eq!(
            (reader.entry().rdev_major(), reader.entry().rdev_minor()),
            (5, 1)
        );
        let mut data = Vec::new();
        reader.read_to_end(&mut data).unwrap();
        let rest = reader.finish().unwrap();
        assert!(cpio::NewcReader::new(rest).unwrap().entry().is_trailer());
    }

    #[test]
    fn names_the_kernel_would_skip_are_refused() {
        let mut w = NewcWriter::new(Vec::new());
        assert!(w.directory("", Meta::root(0o755)).is_err());
        assert!(w.directory(b"a\0b", Meta::root(0o755)).is_err());
        assert!(
            w.directory("x".repeat(PATH_MAX), Meta::root(0o755))
                .is_err()
        );
        assert!(w.symlink("l", Meta::root(0o777), "").is_err());
        assert_eq!(w.bytes_written(), 0);
        // Not UTF-8, still a fine name.
        w.directory(b"caf\xe9", Meta::root(0o755)).unwrap();
    }
}
