//! The image's files keep their owners inside a user namespace.
//!
//! Root in a container with a user namespace is an unprivileged host id, so the image's files,
//! owned by host root, would show as `nobody`. An idmapped mount (mount_setattr(2) with
//! `MOUNT_ATTR_IDMAP`) shows them through the container's mapping instead: host root's files
//! belong to the container's root. Making one needs `CAP_SYS_ADMIN` over the file system, which
//! the child, root only in its own namespace, lacks; so the launcher clones the root's mount
//! tree with the child's mapping once the maps are written, and hands the detached tree to the
//! child ([`crate::handoff`]), which attaches it where the plain bind would go.
//!
//! Where the kernel or the file system cannot idmap (before Linux 5.12, or a file system
//! without idmapped-mount support), the launcher says so in the same message and the child
//! binds the source as before.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;

use crate::Error;
use crate::sys::cpath;

/// A detached clone of the mount tree at `source`, showing its files through the user
/// namespace of process `pid` (read-only too if `readonly`); `None` where the kernel or the
/// file system cannot idmap it.
pub(crate) fn tree(source: &Path, pid: i32, readonly: bool) -> Result<Option<OwnedFd>, Error> {
    let userns = std::fs::File::open(format!("/proc/{pid}/ns/user")).map_err(|e| {
        Error::host(
            "cannot open the container's user namespace",
            Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        )
    })?;
    let source_c = cpath(source)?;
    // SAFETY: the path is NUL-terminated; the flags are open_tree(2)'s.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            source_c.as_ptr(),
            (libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC) as libc::c_int | libc::AT_RECURSIVE,
        )
    };
    if fd < 0 {
        return unsupported(source, "clone", Errno::last());
    }
    // SAFETY: open_tree(2) returned a new descriptor that we own from here.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let mut attr_set = libc::MOUNT_ATTR_IDMAP;
    if readonly {
        attr_set |= libc::MOUNT_ATTR_RDONLY;
    }
    let attr = libc::mount_attr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: `attr` is a valid mount_attr of the size passed; the path is empty.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc != 0 {
        return unsupported(source, "idmap", Errno::last());
    }
    Ok(Some(tree))
}

/// The errors that mean "this kernel or file system cannot", after which the plain bind
/// serves; anything else is a real failure.
fn unsupported(source: &Path, step: &str, err: Errno) -> Result<Option<OwnedFd>, Error> {
    match err {
        Errno::ENOSYS | Errno::EINVAL | Errno::EPERM | Errno::EOPNOTSUPP => {
            tracing::debug!(
                "no idmapped root for {}: {step}: {err}; binding it unmapped",
                source.display()
            );
            Ok(None)
        }
        _ => Err(Error::host(
            format!("cannot {step} the root filesystem {}", source.display()),
            err,
        )),
    }
}
