//! The root filesystem: the source directory bound read-only, or an overlay whose upper layer
//! lives in the launch's state directory, then `pivot_root` into it.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::mounts::Planner;
use crate::spec::ContainerSpec;
use crate::sys::errno;

/// Where the pieces of one launch's root filesystem live on the host.
#[derive(Debug)]
pub(crate) struct Layers {
    pub merged: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
}

impl Layers {
    pub fn new(state_dir: &Path) -> Self {
        Layers {
            merged: state_dir.join("rootfs"),
            upper: state_dir.join("upper"),
            work: state_dir.join("work"),
        }
    }

    /// Creates the directories in the parent, where allocation and good errors are cheap.
    pub fn create(&self, writable: bool) -> Result<(), Error> {
        let dirs: &[&Path] = if writable {
            &[&self.merged, &self.upper, &self.work]
        } else {
            &[&self.merged]
        };
        for dir in dirs {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::host(
                    format!("cannot create {}", dir.display()),
                    nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                )
            })?;
        }
        Ok(())
    }
}

/// Adds the ops that mount the root filesystem at `layers.merged`.
pub(crate) fn plan(spec: &ContainerSpec, layers: &Layers, p: &mut Planner) -> Result<(), Error> {
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
    if spec.readonly_rootfs {
        p.push_host_mount(
            Some(&source),
            &merged,
            None,
            libc::MS_BIND | libc::MS_REC | libc::MS_RDONLY,
            None,
            "bind the root filesystem",
        )?;
    } else {
        // Overlay options are separated by commas; a path holding one cannot be expressed.
        for dir in [&spec.rootfs, &layers.upper, &layers.work] {
            if dir.to_string_lossy().contains([',', ':']) {
                return Err(Error::Invalid(format!(
                    "{} contains ',' or ':', which overlayfs options cannot carry; use another path or a read-only root",
                    dir.display()
                )));
            }
        }
        let mut data = format!(
            "lowerdir={source},upperdir={},workdir={}",
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
