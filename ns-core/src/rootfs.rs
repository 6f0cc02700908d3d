//! The root filesystem: the source directory bound read-only, or an overlay whose upper layer
//! lives in the launch's state directory, then `pivot_root` into it.
//!
//! A read-only root whose image lacks a mount point (a `--tmpfs /new`, a volume on a missing
//! path, a missing working directory) is an overlay too, made read-only once the mount points
//! exist in its upper layer: the container starts, as with runc and crun, and the source
//! directory is never changed.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::mounts::Planner;
use crate::spec::ContainerSpec;
use crate::sys::errno;

/// Where the pieces of one launch's root filesystem live on the host.
#[derive(Debug)]
pub(crate) struct Layers {
    pub merged: PathBuf,
    /// Where the idmapped root is attached to serve as the overlay's lower layer.
    pub lower: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
}

impl Layers {
    pub fn new(state_dir: &Path) -> Self {
        Layers {
            merged: state_dir.join("rootfs"),
            lower: state_dir.join("lower"),
            upper: state_dir.join("upper"),
            work: state_dir.join("work"),
        }
    }

    /// Creates the directories in the parent, where allocation and good errors are cheap.
    /// The overlay's upper and work directories belong to `owner` (the host ids of the
    /// container's root), who writes them: owned by host root, overlayfs could not create its
    /// work directory as a mapped root and would mount the container's root read-only.
    pub fn create(
        &self,
        overlay: bool,
        idmap: bool,
        owner: Option<(u32, u32)>,
    ) -> Result<(), Error> {
        let dirs: &[&Path] = match (overlay, idmap) {
            (true, true) => &[&self.merged, &self.upper, &self.work, &self.lower],
            (true, false) => &[&self.merged, &self.upper, &self.work],
            (false, _) => &[&self.merged],
        };
        let failed = |what: &str, dir: &Path, e: std::io::Error| {
            Error::host(
                format!("cannot {what} {}", dir.display()),
                nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            )
        };
        for dir in dirs {
            std::fs::create_dir_all(dir).map_err(|e| failed("create", dir, e))?;
        }
        if let (true, Some((uid, gid))) = (overlay, owner) {
            for dir in [&self.upper, &self.work] {
                std::os::unix::fs::chown(dir, Some(uid), Some(gid))
                    .map_err(|e| failed("chown", dir, e))?;
            }
        }
        Ok(())
    }
}

/// Whether the root is an overlay: always when writable, and when read-only only if the image
/// lacks a mount point the launch needs (looked up inside the image, as the child will).
///
/// This only picks the faster read-only bind when it will do: if the image changes before the
/// child runs, the child's mkdir fails on the read-only bind, an error and never a write.
pub(crate) fn needs_overlay(spec: &ContainerSpec) -> bool {
    if !spec.readonly_rootfs {
        return true;
    }
    let Ok(root) = std::fs::File::open(&spec.rootfs) else {
        // Validation reports it.
        return false;
    };
    // Paths below a file system the launch mounts are made in that file system, not the image.
    let mut mounted: Vec<&Path> = vec![Path::new("/proc"), Path::new("/sys"), Path::new("/dev")];
    let mut points: Vec<&Path> = mounted.clone();
    for mount in &spec.mounts {
        if !mounted.iter().any(|m| mount.destination.starts_with(m)) {
            points.push(&mount.destination);
        }
        mounted.push(&mount.destination);
    }
    if !mounted.iter().any(|m| spec.process.cwd.starts_with(m)) {
        points.push(&spec.process.cwd);
    }
    points.iter().any(|point| {
        let Ok(path) = crate::sys::cpath(point) else {
            return true;
        };
        crate::resolve::open_path_in_root(root.as_raw_fd(), path.as_ptr()).is_err()
    })
}

/// Adds the ops that mount the root filesystem at `layers.merged`: an overlay if `overlay`,
/// else the source bound read-only; with `idmap`, the source is the launcher's idmapped tree
/// when it has one.
pub(crate) fn plan(
    spec: &ContainerSpec,
    layers: &Layers,
    overlay: bool,
    idmap: bool,
    p: &mut Planner,
) -> Result<(), Error> {
    let merged = layers.merged.to_string_lossy().into_owned();
    let source = spec.rootfs.to_string_lossy().into_owned();
    // Mounts made by the child stay in its mount namespace: nothing leaks to the host.
    p.push_host_mount(
        None,
        "/",
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
        "make / private",
    )?;
    if !overlay {
        // The launcher's idmapped tree when it made one, else the source bound read-only.
        p.root_tree(&spec.rootfs, &layers.merged, true)?;
    } else {
        // Overlay options are separated by commas; a path holding one cannot be expressed.
        for dir in [&spec.rootfs, &layers.upper, &layers.work, &layers.lower] {
            if dir.to_string_lossy().contains([',', ':']) {
                return Err(Error::Invalid(format!(
                    "{} contains ',' or ':', which overlayfs options cannot carry; use another path or a read-only root",
                    dir.display()
                )));
            }
        }
        let lower = if idmap {
            p.root_tree(&spec.rootfs, &layers.lower, false)?;
            layers.lower.to_string_lossy().into_owned()
        } else {
            source
        };
        let mut data = format!(
            "lowerdir={lower},upperdir={},workdir={}",
            layers.upper.display(),
            layers.work.display()
        );
        if spec.user_namespace.is_some() {
            // Unprivileged overlayfs cannot write trusted.* xattrs.
            data.push_str(",userxattr");
        }
        p.push_host_mount(
            Some("overlay"),
            &merged,
            Some("overlay"),
            0,
            Some(&data),
            "mount the overlay root filesystem",
        )?;
    }
    p.open_root(&layers.merged)?;
    // The image's own device nodes never open: the container's devices are the ones its /dev
    // tmpfs gets. An overlay mounted in a user namespace is nodev already (SB_I_NODEV); a
    // bind of the host's file system and an overlay mounted as root are not, and the cgroup
    // that would refuse the node's device exists only where v1's devices controller does.
    p.root_nodev();
    Ok(())
}

/// Makes `new_root` the root of the calling process's mount namespace and detaches the old
/// root, with the `pivot_root(".", ".")` idiom runc uses: no directory is needed for the old
/// root, so a read-only root works. Returns errno on failure.
pub(crate) fn pivot(new_root: &CString) -> Result<(), i32> {
    // SAFETY: NUL-terminated strings; these calls take no other memory.
    unsafe {
        if libc::chdir(new_root.as_ptr()) != 0 {
            return Err(errno());
        }
        if libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) != 0 {
            return Err(errno());
        }
        if libc::umount2(c".".as_ptr(), libc::MNT_DETACH) != 0 {
            return Err(errno());
        }
        if libc::chdir(c"/".as_ptr()) != 0 {
            return Err(errno());
        }
    }
    Ok(())
}
