//! The image's files keep their owners inside a user namespace.
//!
//! Root in a container with a user namespace is an unprivileged host id, so the image's files,
//! owned by host root, would show as `nobody`. An idmapped mount (mount_setattr(2) with
//! `MOUNT_ATTR_IDMAP`) shows them through the container's mapping instead: host root's files
//! belong to the container's root. Making one needs `CAP_SYS_ADMIN` over the file system, which
//! the child, root only in its own namespace, lacks; so the launcher clones the root's mount
//! tree with the child's mapping once the maps are written, and hands the detached tree to the
//! child over a socket (`SCM_RIGHTS`), which attaches it where the plain bind would go.
//!
//! Where the kernel or the file system cannot idmap (before Linux 5.12, or a file system
//! without idmapped-mount support), the launcher says so in the same message and the child
//! binds the source as before.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;

use crate::Error;
use crate::resolve::Fd;
use crate::sys::{cpath, errno};

/// A connected pair of sockets, the launcher's end first.
pub(crate) fn channel() -> Result<(OwnedFd, OwnedFd), Error> {
    let mut fds = [0; 2];
    // SAFETY: socketpair(2) writes two descriptors into `fds`, which we then own.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(Error::host(
            "cannot create the idmapped root's socket",
            Errno::last(),
        ));
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

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

/// Room for one `SCM_RIGHTS` message carrying one descriptor, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct ControlBuffer([u8; 32]);

fn one_byte(byte: &mut [u8; 1]) -> libc::iovec {
    libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    }
}

/// A message of the one buffer `iov` and no control data yet.
fn message(iov: &mut libc::iovec) -> libc::msghdr {
    // SAFETY: msghdr is plain data; all-zero is "no name, no control".
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg
}

/// Sends one byte, with `tree` attached when there is one.
pub(crate) fn send(sock: &OwnedFd, tree: Option<&OwnedFd>) -> Result<(), Error> {
    let mut byte = [b't'];
    let mut iov = one_byte(&mut byte);
    let mut control = ControlBuffer([0; 32]);
    let mut msg = message(&mut iov);
    if let Some(tree) = tree {
        let fd = tree.as_raw_fd();
        // SAFETY: CMSG_SPACE/LEN only compute sizes; the buffer holds CMSG_SPACE(4) bytes
        // (24 on 64-bit), so the first header and its data fit in it.
        unsafe {
            msg.msg_control = control.0.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(size_of::<RawFd>() as u32) as _;
            let header = libc::CMSG_FIRSTHDR(&msg);
            (*header).cmsg_level = libc::SOL_SOCKET;
            (*header).cmsg_type = libc::SCM_RIGHTS;
            (*header).cmsg_len = libc::CMSG_LEN(size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(header).cast::<RawFd>(), fd);
        }
    }
    // SAFETY: `msg` points at live buffers for the duration of the call.
    if unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) } != 1 {
        return Err(Error::host(
            "cannot hand the idmapped root to the container",
            Errno::last(),
        ));
    }
    Ok(())
}

/// The child's side of [`send`]: the tree, or `None` when the launcher had none. Makes no
/// allocation (it runs between `clone` and `execve`).
pub(crate) fn receive(sock: RawFd) -> Result<Option<Fd>, i32> {
    let mut byte = [0u8];
    let mut iov = one_byte(&mut byte);
    let mut control = ControlBuffer([0; 32]);
    let mut msg = message(&mut iov);
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len() as _;
    loop {
        // SAFETY: `msg` points at live buffers for the duration of the call.
        let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n == 1 {
            break;
        }
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        return Err(if n < 0 { errno() } else { libc::EPIPE });
    }
    // SAFETY: the kernel filled `msg_control` with `msg_controllen` bytes of headers, which
    // CMSG_FIRSTHDR and CMSG_DATA walk within.
    unsafe {
        let header = libc::CMSG_FIRSTHDR(&msg);
        if header.is_null()
            || (*header).cmsg_level != libc::SOL_SOCKET
            || (*header).cmsg_type != libc::SCM_RIGHTS
        {
            return Ok(None);
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(header).cast::<RawFd>());
        Ok(Some(Fd(fd)))
    }
}
