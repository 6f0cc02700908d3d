//! A microVM's root filesystem on a disk: the ext4 image of a rootfs directory, built with
//! `mkfs.ext4 -d` (e2fsprogs) and cached, or the Plan's own image file.
//!
//! Images live in [`cache_dir`], one per tree, named by the SHA-256 of one walk over the
//! tree's metadata (`tree.rs`): a launch whose tree is unchanged reuses the image after that
//! walk alone (a few milliseconds for a busybox root), and any change builds a new one
//! (`build.rs`). A build writes a temporary file and renames it into place, so a launch never
//! sees half an image, and a lock per image keeps two launches from building the same one at
//! once. The last [`KEEP`] images used stay, and any used within [`KEEP_USED_WITHIN`]; older
//! ones are removed after each build.
//!
//! Measured on the development host (2 cores, release build, warm page cache): the busybox
//! root (288 entries, 2 MiB) builds in 21 to 33 ms and is found again in 1.0 to 1.6 ms; a
//! 1.1 GiB tree of 60 600 entries (a copy of `/usr/share`, `/usr/bin`, `/usr/include`)
//! builds in 19.5 s, 15.5 s of it `mkfs.ext4 -d` and 4 s the fix-up, into a 1.15 GiB image
//! (5% free), and is found again in 200 ms, what `find -printf` with the same fields takes.
//!
//! The guest mounts the image read-only (as the lower layer of an overlay whose upper layer
//! is in guest RAM, or alone with `--read-only`), so the image never changes once built.

mod build;
mod tree;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use nix::fcntl::{Flock, FlockArg};
use plan::Plan;

pub(crate) use tree::{Tree, scan};

/// How many images stay in the cache however old they are.
pub const KEEP: usize = 4;

/// An image used this recently stays in the cache, however many there are: a launch that
/// looked it up may not have opened it yet.
pub const KEEP_USED_WITHIN: Duration = Duration::from_secs(3600);

/// A tree changed this recently may change again within the same timestamp tick, unseen by
/// the key (the coarsest common file system clock, FAT's, ticks every 2 s): its image serves
/// this launch only.
const SETTLED: Duration = Duration::from_secs(2);

/// Bump when the images built change (features, fix-ups), so old ones are not reused.
const LAYOUT: u32 = 1;

/// The disk a microVM's root is on.
#[derive(Debug)]
pub struct RootDisk {
    path: PathBuf,
    built: bool,
    /// A one-off image (its tree changed while it was built): removed when dropped.
    temporary: bool,
}

impl RootDisk {
    /// The image file to attach as `/dev/vda`, read-only: ext4, raw or qcow2.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this launch built the image (for the Outcome's timings), rather than reusing
    /// one or taking the Plan's.
    pub fn built(&self) -> bool {
        self.built
    }
}

impl Drop for RootDisk {
    fn drop(&mut self) {
        if self.temporary {
            // The VMM holds it open while the guest runs; a failure leaves a file that the
            // next build's pruning removes.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What building or finding a root image can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An entry of the tree cannot be read.
    #[error("cannot read {} for the root image: {source}", .path.display())]
    ScanRoot {
        /// The entry.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file system mounted inside the tree: `mkfs.ext4 -d` would copy it in whole (a
    /// `/proc` left mounted in a chroot would never end).
    #[error("{} is a mount point inside the root filesystem {}: unmount it, or copy what it holds into the tree", .path.display(), .root.display())]
    OtherFileSystem {
        /// The mount point.
        path: PathBuf,
        /// The tree's root.
        root: PathBuf,
    },
    /// A timestamp outside ext4's range.
    #[error("{} has {which} time {seconds} (seconds since 1970), outside what ext4 stores (1901-12-13 to 2446-05-10); set it with touch", .path.display())]
    TimestampRange {
        /// The file.
        path: PathBuf,
        /// `"access"` or `"modification"`.
        which: &'static str,
        /// The time.
        seconds: i64,
    },
    /// A name with a newline: the fix-up script of `debugfs` commands cannot name it.
    #[error("{:?} has a newline in its name, which capsule's ext4 image builder cannot name; rename it", .path)]
    NewlineInName {
        /// The file.
        path: PathBuf,
    },
    /// A kind of file ext4 does not have.
    #[error("{} is of a kind ext4 cannot hold (mode {mode:o})", .path.display())]
    FileType {
        /// The file.
        path: PathBuf,
        /// Its `st_mode`.
        mode: u32,
    },
    /// `mkfs.ext4` or `debugfs` could not be started.
    #[error(
        "cannot run {tool} to build the root image: {source}; install e2fsprogs (apt-get install e2fsprogs)"
    )]
    ToolMissing {
        /// The program.
        tool: &'static str,
        /// Why.
        source: io::Error,
    },
    /// `mkfs.ext4` or `debugfs` failed.
    #[error("{tool} failed to build the image of {}: {message}", .root.display())]
    Tool {
        /// The program.
        tool: &'static str,
        /// The tree.
        root: PathBuf,
        /// What it said.
        message: String,
    },
    /// A file of the cache could not be made, renamed or locked.
    #[error("{what} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

impl Error {
    fn io(what: &'static str, path: &Path, source: io::Error) -> Self {
        Error::Io {
            what,
            path: path.to_owned(),
            source,
        }
    }
}

/// Where images are cached: `$XDG_CACHE_HOME/capsule/images` when that is an absolute path
/// (the XDG Base Directory spec ignores a relative one), else `~/.cache/capsule/images`.
pub fn cache_dir() -> PathBuf {
    let xdg = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute());
    let cache = xdg.unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
        home.join(".cache")
    });
    cache.join("capsule/images")
}

/// The disk of `plan`'s root: its image file as it is, or the cached image of its directory
/// ([`ImageCache::root_disk`] on [`cache_dir`]).
///
/// # Errors
///
/// As [`ImageCache::root_disk`].
pub fn for_plan(plan: &Plan) -> Result<RootDisk, Error> {
    let root = &plan.root.path;
    if std::fs::metadata(root).is_ok_and(|m| m.is_file()) {
        return Ok(RootDisk {
            path: root.clone(),
            built: false,
            temporary: false,
        });
    }
    ImageCache::new(cache_dir()).root_disk(root)
}

/// A directory of root images.
#[derive(Debug, Clone)]
pub struct ImageCache {
    dir: PathBuf,
    /// How long before a lookup the tree must have last changed for its image to be cached.
    settled: Duration,
}

impl ImageCache {
    /// The cache in `dir` (created when first needed, readable by its owner only: images
    /// copy trees that may hold secrets).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ImageCache {
            dir: dir.into(),
            settled: SETTLED,
        }
    }

    /// The image of the tree at `root`: the cached one if the tree is unchanged, else a new
    /// one, built, cached and older ones pruned.
    ///
    /// # Errors
    ///
    /// [`Error::ScanRoot`] and the refusals of the walk (`tree.rs`) for a tree an ext4 image cannot
    /// carry, [`Error::ToolMissing`] and [`Error::Tool`] when e2fsprogs fails,
    /// [`Error::Io`] for the cache's own files.
    pub fn root_disk(&self, root: &Path) -> Result<RootDisk, Error> {
        let walked_at = SystemTime::now();
        let tree = scan(root)?;
        let name = image_name(&tree);
        let image = self.dir.join(format!("{name}.ext4"));
        if let Some(disk) = self.reuse(&image) {
            return Ok(disk);
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io("creating", &self.dir, e))?;
        set_private(&self.dir)?;
        let lock_path = self.dir.join(format!("{name}.lock"));
        let lock = File::create(&lock_path).map_err(|e| Error::io("creating", &lock_path, e))?;
        // Another launch building the same image: wait for it, then reuse its image.
        let _lock = Flock::lock(lock, FlockArg::LockExclusive)
            .map_err(|(_, errno)| Error::io("locking", &lock_path, errno.into()))?;
        if let Some(disk) = self.reuse(&image) {
            return Ok(disk);
        }
        // Unique in this process too: a group's members launch from threads of one process.
        static BUILDS: AtomicU64 = AtomicU64::new(0);
        let temporary = self.dir.join(format!(
            ".{name}.tmp-{}-{}",
            std::process::id(),
            BUILDS.fetch_add(1, Ordering::Relaxed)
        ));
        let building = std::time::Instant::now();
        if let Err(e) = build::build(&tree, &temporary) {
            let _ = std::fs::remove_file(&temporary);
            return Err(e);
        }
        tracing::info!(
            root = %root.display(),
            inodes = tree.inodes,
            seconds = building.elapsed().as_secs_f64(),
            "built the root image"
        );
        let unchanged = scan(root).is_ok_and(|after| after.key == tree.key);
        if !self.is_settled(&tree, walked_at) || !unchanged {
            tracing::debug!(root = %root.display(), "the tree changed while its image was built; not caching it");
            return Ok(RootDisk {
                path: temporary,
                built: true,
                temporary: true,
            });
        }
        std::fs::rename(&temporary, &image).map_err(|e| {
            let _ = std::fs::remove_file(&temporary);
            Error::io("renaming into place", &image, e)
        })?;
        self.prune();
        Ok(RootDisk {
            path: image,
            built: true,
            temporary: false,
        })
    }

    /// Whether the tree's last change is far enough before the walk that a later change cannot
    /// share its timestamps.
    fn is_settled(&self, tree: &Tree, walked_at: SystemTime) -> bool {
        let walked_at = walked_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        tree.newest_change < walked_at - self.settled.as_nanos() as i128
    }

    /// The cached image at `image`, marked used now (its mtime) so pruning keeps it.
    fn reuse(&self, image: &Path) -> Option<RootDisk> {
        let file = File::options().write(true).open(image).ok()?;
        // Best effort: a failure only makes the image look older to pruning.
        let _ = file.set_modified(SystemTime::now());
        Some(RootDisk {
            path: image.to_owned(),
            built: false,
            temporary: false,
        })
    }

    /// Removes the images beyond the [`KEEP`] last used that were not used within
    /// [`KEEP_USED_WITHIN`], with their locks, and what crashed builds left a day ago or
    /// earlier. Best effort: what cannot be removed stays.
    fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        let age = |path: &Path| {
            std::fs::metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .unwrap_or_default()
        };
        let mut images = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".ext4") {
                images.push((age(&path), path));
            } else if name.starts_with('.') && age(&path) > Duration::from_secs(86_400) {
                let _ = std::fs::remove_file(&path);
            }
        }
        images.sort();
        for (age, image) in images.into_iter().skip(KEEP) {
            if age > KEEP_USED_WITHIN {
                let _ = std::fs::remove_file(&image);
                let _ = std::fs::remove_file(image.with_extension("lock"));
            }
        }
    }
}

/// The image's file name: the key and the builder's layout, in hex.
fn image_name(tree: &Tree) -> String {
    let hex: String = tree.key.iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}-{LAYOUT}")
}

fn set_private(dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io("making private", dir, e))
}

#[cfg(test)]
mod tests;
