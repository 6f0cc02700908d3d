//! Descriptors the launcher hands to the container child over a socket (`SCM_RIGHTS`): the
//! idmapped root's mount tree before `go`, the sealed init after it. One byte per message
//! (`SOCK_SEQPACKET` keeps them apart), with or without a descriptor attached.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use crate::Error;
use crate::resolve::Fd;
use crate::sys::errno;

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
            "cannot create the socket to the container",
            Errno::last(),
        ));
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
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

/// Sends one byte, with `fd` attached when there is one; `what` names it for the error.
pub(crate) fn send(sock: &OwnedFd, fd: Option<&OwnedFd>, what: &str) -> Result<(), Error> {
    let mut byte = [b't'];
    let mut iov = one_byte(&mut byte);
    let mut control = ControlBuffer([0; 32]);
    let mut msg = message(&mut iov);
    if let Some(fd) = fd {
        let fd = fd.as_raw_fd();
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
            format!("cannot hand {what} to the container"),
            Errno::last(),
        ));
    }
    Ok(())
}

/// The child's side of [`send`]: the descriptor (close-on-exec), or `None` when the launcher
/// had none. Makes no allocation (it runs between `clone` and `execve`).
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
