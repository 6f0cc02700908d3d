//! The init program a container runs as PID 1, and the protocol it speaks with [`spawn`].
//!
//! When a [`ContainerSpec`](crate::ContainerSpec) asks for an init, [`spawn`] takes the program
//! from its caller as an [`Init`] and, as the container's last set-up step (after `pivot_root`,
//! credentials and seccomp), executes it from its file descriptor (`execveat(2)` with
//! `AT_EMPTY_PATH`), with
//!
//! - `argv` = `NAME --container -- COMMAND ARGS...` ([`CONTAINER_ARG`]), where NAME is the
//!   [`Init`]'s name: no host path;
//! - the container's environment, exactly;
//! - fds 0, 1 and 2 the container's stdio, fd [`REPORT_FD`] the write end of the report pipe
//!   (without close-on-exec), and no other descriptor;
//! - every signal at its default action and none blocked.
//!
//! The init then runs COMMAND as its child, searched in the `PATH` of its own environment as
//! execvp(3) does, with the signal state above and without fd [`REPORT_FD`]; forwards every
//! signal it can catch to it; reaps every process that exits; and when COMMAND ends, writes
//! [`Report::exited`] with its wait status and exits with the shell's status for it. If COMMAND
//! cannot be executed, the child writes [`Report::exec_failed`] and exits 127 (not found) or 126.
//!
//! The program itself is never a path in the container: the container cannot see, replace or
//! open for writing the file behind `/proc/1/exe` (runc's CVE-2019-5736).
//!
//! [`spawn`]: crate::spawn

use std::ffi::{CStr, CString};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use crate::Error;
use crate::sys::cstring;

/// The descriptor on which the init finds the report pipe.
pub const REPORT_FD: RawFd = 3;

/// The init's first argument: tells a program with other roles (capsule's `capsule-init` is
/// also a microVM guest's PID 1) that it runs as a container's init.
pub const CONTAINER_ARG: &str = "--container";

/// The program to run as a container's PID 1 (an ELF executable, not a `#!` script), reached
/// through a file descriptor so that no path of the host reaches the container.
#[derive(Debug)]
pub struct Init<'a> {
    name: CString,
    program: Program<'a>,
}

#[derive(Debug)]
enum Program<'a> {
    Open(OwnedFd),
    Bytes(&'a [u8]),
}

impl Init<'static> {
    /// Uses `program`, an executable file opened by the caller (`O_RDONLY` or `O_PATH`, with
    /// `O_CLOEXEC` so that it reaches nothing else), named `name` in the container's
    /// `/proc/1/cmdline`.
    ///
    /// # Errors
    /// [`Error::NulInPath`] if `name` holds a NUL byte.
    pub fn new(name: &str, program: OwnedFd) -> Result<Init<'static>, Error> {
        Ok(Init {
            name: cstring(name)?,
            program: Program::Open(program),
        })
    }
}

impl<'a> Init<'a> {
    /// Runs `program` (the bytes of a static ELF executable) from a sealed anonymous memory
    /// file (memfd_create(2), sealed against writes, growth and shrinking: memfd_create(2)
    /// "File sealing"), as runc and crun run their own init since CVE-2019-5736. The container
    /// sees it as `/proc/1/exe` -> `/memfd:NAME (deleted)`. [`spawn`](crate::spawn) makes the
    /// copy while the container sets itself up, so it adds nothing to the start-up time when
    /// a second CPU is free.
    ///
    /// # Errors
    /// [`Error::NulInPath`] if `name` holds a NUL byte.
    pub fn sealed(name: &str, program: &'a [u8]) -> Result<Init<'a>, Error> {
        Ok(Init {
            name: cstring(name)?,
            program: Program::Bytes(program),
        })
    }

    /// The name the container sees as `argv[0]` of its PID 1.
    pub fn name(&self) -> &CStr {
        &self.name
    }

    /// The caller's open program, if it is one.
    pub(crate) fn open_fd(&self) -> Option<RawFd> {
        match &self.program {
            Program::Open(fd) => Some(fd.as_raw_fd()),
            Program::Bytes(_) => None,
        }
    }

    /// The program's bytes, if they are still to be sealed.
    pub(crate) fn bytes(&self) -> Option<&'a [u8]> {
        match self.program {
            Program::Open(_) => None,
            Program::Bytes(bytes) => Some(bytes),
        }
    }
}

/// Copies `program` into a new sealed, close-on-exec memfd named `name`.
///
/// # Errors
/// [`Error::Host`] if the kernel refuses the memfd (Linux before 3.17) or a write or seal
/// fails.
pub(crate) fn seal(name: &CStr, program: &[u8]) -> Result<OwnedFd, Error> {
    let mut file = std::fs::File::from(memfd(name)?);
    file.write_all(program).map_err(|e| {
        Error::host(
            "cannot write the init program into its memfd",
            Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        )
    })?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on a descriptor we own, with an integer argument.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(Error::host(
            "cannot seal the init program's memfd",
            Errno::last(),
        ));
    }
    Ok(file.into())
}

/// A close-on-exec memfd that can be sealed and executed.
fn memfd(name: &CStr) -> Result<OwnedFd, Error> {
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // MFD_EXEC (Linux 6.3) says outright that the file is to be executed, which the
    // vm.memfd_noexec sysctl may require; older kernels refuse the unknown flag.
    let mut fd = -1;
    for flags in [flags | libc::MFD_EXEC, flags] {
        // SAFETY: `name` is a NUL-terminated string that outlives the call.
        fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
        if fd >= 0 || Errno::last() != Errno::EINVAL {
            break;
        }
    }
    if fd < 0 {
        return Err(Error::host(
            "cannot create a memfd for the init program",
            Errno::last(),
        ));
    }
    // SAFETY: memfd_create returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// One record on the report pipe: 16 bytes in the host's byte order, written with one
/// write(2) so that records never interleave (pipe(7): writes up to `PIPE_BUF` are atomic).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// [`Report::FAILED`], [`Report::EXEC_FAILED`] or [`Report::EXITED`].
    pub kind: u32,
    /// For `FAILED`: which set-up step failed (private to ns-core).
    pub stage: u32,
    /// For `FAILED`: which item of the step (a mount, an rlimit...).
    pub index: u32,
    /// An errno for `FAILED` and `EXEC_FAILED`; the raw wait(2) status for `EXITED`.
    pub value: i32,
}

impl Report {
    /// The size of one record in bytes.
    pub const SIZE: usize = std::mem::size_of::<Report>();
    /// A step of the container's set-up failed (written by ns-core's child only).
    pub const FAILED: u32 = 1;
    /// The command could not be executed; `value` is the errno of execve(2).
    pub const EXEC_FAILED: u32 = 2;
    /// The command ended; `value` is its wait status (so a signal stays a signal).
    pub const EXITED: u32 = 3;

    /// The command could not be executed, for `errno`.
    pub fn exec_failed(errno: i32) -> Report {
        Report {
            kind: Report::EXEC_FAILED,
            value: errno,
            ..Report::default()
        }
    }

    /// The command ended with the raw wait(2) `status`.
    pub fn exited(status: i32) -> Report {
        Report {
            kind: Report::EXITED,
            value: status,
            ..Report::default()
        }
    }

    /// Writes the record to `fd` with one write(2). Async-signal-safe and allocation-free, so
    /// a child between fork and exec may call it. A failed write only loses the report: the
    /// reader then falls back to the exit status.
    pub fn write_to(&self, fd: RawFd) {
        // SAFETY: `self` is plain old data, readable for `SIZE` bytes.
        unsafe { libc::write(fd, (self as *const Report).cast(), Report::SIZE) };
    }

    /// Reads one record from `fd`, retrying on EINTR; `None` at end of file or on a short or
    /// failed read.
    pub fn read_from(fd: RawFd) -> Option<Report> {
        let mut record = Report::default();
        loop {
            // SAFETY: `record` is plain old data, writable for `SIZE` bytes.
            let n = unsafe { libc::read(fd, (&mut record as *mut Report).cast(), Report::SIZE) };
            if n < 0 && Errno::last() == Errno::EINTR {
                continue;
            }
            return (n == Report::SIZE as isize).then_some(record);
        }
    }
}

/// Gives the calling thread the signal state of a fresh process: every signal at its default
/// action (an ignored one stays ignored across execve(2), and Rust's runtime ignores
/// `SIGPIPE`) and none blocked, or with `keep_blocked`, every signal still blocked (for an
/// init, which takes them with sigwaitinfo). Async-signal-safe and allocation-free.
pub(crate) fn reset_signals(keep_blocked: bool) {
    // The raw system call: the C libraries' sigaction refuses the real-time signals they
    // reserve for themselves (32 and 33 in glibc, 32 to 34 in musl), which a caller may still
    // have ignored.
    let default = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=SIGNAL_MAX {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: `default` is a valid kernel sigaction for the size passed; the old
            // action is not asked for.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    &default as *const KernelSigaction,
                    std::ptr::null_mut::<KernelSigaction>(),
                    std::mem::size_of::<u64>(),
                )
            };
        }
    }
    set_signal_mask(if keep_blocked { u64::MAX } else { 0 });
}

/// Sets the calling thread's blocked signals to `mask` (bit N-1 for signal N), with the raw
/// system call for the same reason as above. Async-signal-safe and allocation-free.
pub(crate) fn set_signal_mask(mask: u64) {
    // SAFETY: `mask` is a kernel signal set of the size passed.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &mask as *const u64,
            std::ptr::null_mut::<u64>(),
            std::mem::size_of::<u64>(),
        )
    };
}

/// The highest signal number of Linux on x86_64 (`_NSIG`, arch/x86/include/uapi/asm/signal.h).
const SIGNAL_MAX: i32 = 64;

/// `struct sigaction` as rt_sigaction(2) takes it on x86_64 (the kernel's, not the C
/// library's): handler, flags, restorer, then a 64-bit mask.
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_sixteen_bytes_and_round_trip_through_a_pipe() {
        assert_eq!(Report::SIZE, 16);
        let (read, write) = nix::unistd::pipe().unwrap();
        Report::exec_failed(libc::EACCES).write_to(write.as_raw_fd());
        Report::exited(0x0900).write_to(write.as_raw_fd());
        drop(write);
        let first = Report::read_from(read.as_raw_fd()).unwrap();
        assert_eq!(
            (first.kind, first.value),
            (Report::EXEC_FAILED, libc::EACCES)
        );
        let second = Report::read_from(read.as_raw_fd()).unwrap();
        assert_eq!((second.kind, second.value), (Report::EXITED, 0x0900));
        assert_eq!(Report::read_from(read.as_raw_fd()), None);
    }

    #[test]
    fn a_sealed_init_refuses_writes_and_keeps_its_bytes() {
        let fd = seal(c"capsule-test-init", b"\x7fELF not really").unwrap();
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        assert_eq!(std::fs::read(&path).unwrap(), b"\x7fELF not really");
        let link = std::fs::read_link(&path).unwrap();
        assert!(
            link.to_string_lossy()
                .starts_with("/memfd:capsule-test-init"),
            "{link:?}"
        );
        // The seals hold even for whoever reopens the file writable through /proc.
        let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let err = file.write_all(b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));
    }

    /// rt_sigaction(2) for `sig`: installs `new` if given, returns the action before.
    fn kernel_sigaction(sig: i32, new: Option<&KernelSigaction>) -> libc::sighandler_t {
        let mut old = KernelSigaction {
            handler: 0,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        let new = new.map_or(std::ptr::null(), |n| n as *const KernelSigaction);
        // SAFETY: both pointers are null or valid kernel sigactions of the size passed.
        unsafe { libc::syscall(libc::SYS_rt_sigaction, sig, new, &mut old as *mut _, 8usize) };
        old.handler
    }

    #[test]
    fn reset_signals_clears_ignored_signals_and_the_mask() {
        let ignore = KernelSigaction {
            handler: libc::SIG_IGN,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        // In a child, so the test harness keeps its own signal state.
        // SAFETY: the child makes only async-signal-safe calls and leaves through _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // 32 is reserved by the C library, whose sigaction(3) refuses it.
            kernel_sigaction(libc::SIGINT, Some(&ignore));
            kernel_sigaction(32, Some(&ignore));
            let all = u64::MAX;
            let mut mask = 0u64;
            // SAFETY: plain system calls on local data; _exit leaves without unwinding.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigprocmask,
                    libc::SIG_BLOCK,
                    &all,
                    0usize,
                    8usize,
                );
                reset_signals(false);
                libc::syscall(
                    libc::SYS_rt_sigprocmask,
                    libc::SIG_BLOCK,
                    0usize,
                    &mut mask,
                    8usize,
                );
                let clean = kernel_sigaction(libc::SIGINT, None) == libc::SIG_DFL
                    && kernel_sigaction(32, None) == libc::SIG_DFL
                    && mask == 0;
                libc::_exit(if clean { 0 } else { 1 });
            }
        }
        let mut status = 0;
        // SAFETY: waitpid writes only to `status`.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{status:#x}"
        );
    }
}
