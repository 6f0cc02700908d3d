//! One walk of a root filesystem tree: the cache key of its image, what sizes the image, and
//! what `mkfs.ext4 -d` leaves for the fix-up to carry.
//!
//! The key is a SHA-256 over each entry's metadata, never its contents: path, type and mode,
//! owner, size, mtime and ctime in nanoseconds, inode number, device number and symlink target.
//! Reading the contents would cost a read of the whole tree on every launch (seconds for a 1
//! GiB root, against a few milliseconds of `stat` calls), and any change of a file through
//! the file system moves its ctime, which no user can set back: a write, a chmod, a chown, an
//! xattr, a link. What the key misses is a change that keeps every one of those: a write to the
//! underlying block device behind the file system's back, a file system that does not keep
//! ctime (some FUSE and network file systems), or a write within the same timestamp tick as the
//! walk (coarse clocks: 1 to 4 ms, 1 s on ext3, 2 s on FAT), which [`Tree::newest_change`] lets
//! the cache refuse to trust.

use std::collections::HashSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::Error;

/// The smallest and largest seconds ext4 stores with 256-byte inodes: a signed 32-bit count
/// and two epoch bits (`Documentation/filesystems/ext4/inodes.rst`, "Inode Timestamps"),
/// 1901-12-13 to 2446-05-10.
const EXT4_MIN_SECONDS: i64 = i32::MIN as i64;
const EXT4_MAX_SECONDS: i64 = (1 << 34) + i32::MIN as i64 - 1;

/// An ext4 block, the unit the image is sized in.
pub const BLOCK: u64 = 4096;

/// A symlink target this long or longer takes a block; shorter ones live in the inode.
const FAST_SYMLINK_MAX: u64 = 59;

/// What one walk of the tree found.
#[derive(Debug, Clone)]
pub struct Tree {
    /// The tree's root directory.
    pub root: PathBuf,
    /// SHA-256 over the metadata of every entry, in name order (see the module doc).
    pub key: [u8; 32],
    /// Distinct inodes, the root included (hard links count once).
    pub inodes: u64,
    /// ext4 blocks the entries' data needs: files' allocated blocks (holes stay holes),
    /// directories' entries, long symlink targets.
    pub data_blocks: u64,
    /// The latest mtime or ctime of any entry, in nanoseconds since the epoch.
    pub newest_change: i128,
    /// Entries whose timestamps `mkfs.ext4 -d` cannot store as they are (e2fsprogs 1.47.0
    /// keeps the low 32 bits of the seconds only), in walk order.
    pub timestamps: Vec<Timestamps>,
    /// The root directory's own mode, owner and times, which `mkfs.ext4 -d` does not copy.
    pub root_meta: Timestamps,
    pub root_mode: u32,
    pub root_uid: u32,
    pub root_gid: u32,
    /// The names directly under the root.
    pub top_level: HashSet<OsString>,
}

/// An entry's access and modification times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timestamps {
    /// The path inside the image, starting with `/`.
    pub path: Vec<u8>,
    pub atime: (i64, u32),
    pub mtime: (i64, u32),
}

impl Timestamps {
    /// Whether `mkfs.ext4 -d` stored them exactly: whole seconds that fit 32 bits.
    fn mkfs_keeps(&self) -> bool {
        [self.atime, self.mtime]
            .iter()
            .all(|(s, ns)| *ns == 0 && i32::try_from(*s).is_ok())
    }
}

/// Walks the tree at `root` without following symlinks.
///
/// # Errors
///
/// [`Error::ScanRoot`] when an entry cannot be read, and one error per kind of entry an ext4
/// image cannot carry as it is: [`Error::OtherFileSystem`], [`Error::TimestampRange`],
/// [`Error::NewlineInName`], [`Error::FileType`].
pub fn scan(root: &Path) -> Result<Tree, Error> {
    let meta = std::fs::symlink_metadata(root).map_err(|source| Error::ScanRoot {
        path: root.to_owned(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(Error::ScanRoot {
            path: root.to_owned(),
            source: std::io::Error::from(std::io::ErrorKind::NotADirectory),
        });
    }
    let mut walk = Walk {
        root,
        dev: meta.dev(),
        hasher: Sha256::new(),
        seen: HashSet::new(),
        inodes: 1,
        data_blocks: 0,
        newest_change: 0,
        timestamps: Vec::new(),
    };
    walk.hasher.update(b"/\0");
    walk.entry(b"/", root, &meta)?;
    let top_level = walk.directory(&mut b"".to_vec(), root)?;
    let root_meta = times(b"/".to_vec(), &meta);
    Ok(Tree {
        root: root.to_owned(),
        key: walk.hasher.finalize().into(),
        inodes: walk.inodes,
        data_blocks: walk.data_blocks,
        newest_change: walk.newest_change,
        timestamps: walk.timestamps,
        root_meta,
        root_mode: meta.mode(),
        root_uid: meta.uid(),
        root_gid: meta.gid(),
        top_level,
    })
}

struct Walk<'a> {
    root: &'a Path,
    dev: u64,
    hasher: Sha256,
    /// Inodes with more than one link already counted.
    seen: HashSet<u64>,
    inodes: u64,
    data_blocks: u64,
    newest_change: i128,
    timestamps: Vec<Timestamps>,
}

impl Walk<'_> {
    /// Every entry of the directory `dir` (whose image path is `path`), in byte order of
    /// names, so the key does not depend on readdir's order; returns the names.
    fn directory(&mut self, path: &mut Vec<u8>, dir: &Path) -> Result<HashSet<OsString>, Error> {
        let read = |source| Error::ScanRoot {
            path: dir.to_owned(),
            source,
        };
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(read)?
            .collect::<Result<_, _>>()
            .map_err(read)?;
        entries.sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()));
        // ext4 directory entries: 8 bytes and the name, 4-aligned, plus `.` and `..`.
        let mut dirent_bytes = 24u64;
        let mut names = HashSet::new();
        for entry in &entries {
            let name = entry.file_name();
            dirent_bytes += (8 + name.len() as u64).next_multiple_of(4);
            let host = entry.path();
            if name.as_bytes().contains(&b'\n') {
                return Err(Error::NewlineInName { path: host });
            }
            let meta = entry.metadata().map_err(|source| Error::ScanRoot {
                path: host.clone(),
                source,
            })?;
            let len = path.len();
            path.push(b'/');
            path.extend_from_slice(name.as_bytes());
            self.hasher.update(&path[..]);
            self.hasher.update([0]);
            self.entry(path, &host, &meta)?;
            if meta.is_dir() {
                self.directory(path, &host)?;
            }
            path.truncate(len);
            names.insert(name);
        }
        // Directories fill their blocks to about three quarters before they grow.
        self.data_blocks += (dirent_bytes * 4 / 3).div_ceil(BLOCK).max(1);
        Ok(names)
    }

    /// Hashes one entry's metadata, counts what it takes in the image and checks that the
    /// image can carry it.
    fn entry(&mut self, path: &[u8], host: &Path, meta: &std::fs::Metadata) -> Result<(), Error> {
        if meta.dev() != self.dev {
            return Err(Error::OtherFileSystem {
                path: host.to_owned(),
                root: self.root.to_owned(),
            });
        }
        let kind = meta.file_type();
        if !(kind.is_dir()
            || kind.is_file()
            || kind.is_symlink()
            || kind.is_fifo()
            || kind.is_socket()
            || kind.is_char_device()
            || kind.is_block_device())
        {
            return Err(Error::FileType {
                path: host.to_owned(),
                mode: meta.mode(),
            });
        }
        for value in [
            u64::from(meta.mode()),
            u64::from(meta.uid()),
            u64::from(meta.gid()),
            meta.size(),
            meta.mtime() as u64,
            meta.mtime_nsec() as u64,
            meta.ctime() as u64,
            meta.ctime_nsec() as u64,
            meta.ino(),
            meta.rdev(),
        ] {
            self.hasher.update(value.to_le_bytes());
        }
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        self.newest_change = self
            .newest_change
            .max(ns(meta.mtime(), meta.mtime_nsec()))
            .max(ns(meta.ctime(), meta.ctime_nsec()));

        let stamps = times(path.to_vec(), meta);
        for (which, (seconds, _)) in [("access", stamps.atime), ("modification", stamps.mtime)] {
            if !(EXT4_MIN_SECONDS..=EXT4_MAX_SECONDS).contains(&seconds) {
                return Err(Error::TimestampRange {
                    path: host.to_owned(),
                    which,
                    seconds,
                });
            }
        }
        // A second link of an inode adds a directory entry only.
        if meta.nlink() > 1 && !kind.is_dir() && !self.seen.insert(meta.ino()) {
            return Ok(());
        }
        if !stamps.mkfs_keeps() && path != b"/" {
            self.timestamps.push(stamps);
        }
        if path != b"/" {
            self.inodes += 1;
        }
        if kind.is_symlink() {
            let target = std::fs::read_link(host).map_err(|source| Error::ScanRoot {
                path: host.to_owned(),
                source,
            })?;
            self.hasher.update(target.as_os_str().as_bytes());
            self.hasher.update([0]);
            if target.as_os_str().len() as u64 > FAST_SYMLINK_MAX {
                self.data_blocks += 1;
            }
        } else if kind.is_file() {
            // Allocated blocks, so holes stay holes; an extent block for each 128 MiB
            // (ext4 keeps 4 extents in the inode, each up to 128 MiB).
            self.data_blocks += (meta.blocks() * 512).div_ceil(BLOCK) + meta.size() / (128 << 20);
        }
        Ok(())
    }
}

fn times(path: Vec<u8>, meta: &std::fs::Metadata) -> Timestamps {
    Timestamps {
        path,
        atime: (meta.atime(), meta.atime_nsec() as u32),
        mtime: (meta.mtime(), meta.mtime_nsec() as u32),
    }
}

/// ext4's `*_extra` field for `seconds` and `nanoseconds`: the nanoseconds shifted left by 2
/// and, in the low two bits, the epoch: how many times 2^32 to add to the signed 32-bit
/// seconds (`ext4_encode_extra_time` in `fs/ext4/ext4.h`).
pub fn extra_time((seconds, nanoseconds): (i64, u32)) -> u32 {
    let epoch = ((seconds - i64::from(seconds as i32)) >> 32) & 3;
    (nanoseconds << 2) | epoch as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_time_carries_nanoseconds_and_the_epoch_as_the_kernel_encodes_them() {
        assert_eq!(extra_time((1_700_000_000, 0)), 0);
        assert_eq!(extra_time((1_700_000_000, 1)), 4);
        assert_eq!(extra_time((1_700_000_000, 999_999_999)), 999_999_999 << 2);
        // 2100-01-01 is past 2038: epoch 1.
        assert_eq!(
            extra_time((4_102_444_800, 500_000_000)),
            (500_000_000 << 2) | 1
        );
        // 1950: negative seconds fit the signed field, epoch 0.
        assert_eq!(extra_time((-631_152_000, 0)), 0);
        assert_eq!(extra_time((EXT4_MAX_SECONDS, 0)), 3);
    }

    #[test]
    fn the_key_follows_metadata_and_names_in_byte_order() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("b"), b"1").unwrap();
        std::fs::write(tmp.path().join("a"), b"2").unwrap();
        let first = scan(tmp.path()).unwrap();
        assert_eq!(first.key, scan(tmp.path()).unwrap().key);
        assert_eq!(first.inodes, 3);
        assert_eq!(
            first.top_level,
            HashSet::from([OsString::from("a"), OsString::from("b")])
        );
        std::fs::hard_link(tmp.path().join("a"), tmp.path().join("c")).unwrap();
        let linked = scan(tmp.path()).unwrap();
        assert_ne!(linked.key, first.key);
        assert_eq!(linked.inodes, 3, "a hard link is no new inode");
    }

    #[test]
    fn what_ext4_cannot_carry_is_an_error_naming_the_file() {
        // A tmpfs keeps 64-bit seconds; ext4, where the temporary directory may be, would
        // clamp the time below before the walk sees it.
        let shm = Path::new("/dev/shm");
        let tmp = if shm.is_dir() {
            tempfile::tempdir_in(shm).unwrap()
        } else {
            tempfile::tempdir().unwrap()
        };
        let file = tmp.path().join("far");
        std::fs::write(&file, b"").unwrap();
        super::super::tests::set_times(&file, (0, 0), (1 << 35, 0));
        let clamped = std::fs::metadata(&file).unwrap().mtime() < 1 << 35;
        if !clamped {
            let err = scan(tmp.path()).unwrap_err().to_string();
            assert!(err.contains("far") && err.contains("34359738368"), "{err}");
        }
        std::fs::remove_file(&file).unwrap();

        std::fs::write(tmp.path().join("a\nb"), b"").unwrap();
        let err = scan(tmp.path()).unwrap_err();
        assert!(matches!(err, Error::NewlineInName { .. }), "{err}");
    }
}
