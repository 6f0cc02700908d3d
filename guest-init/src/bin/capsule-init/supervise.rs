//! What PID 1 does once its command is set up, the same in a container (`--container`) and
//! in a microVM's guest: run the command as a child, pass it every signal PID 1 receives,
//! reap every process that exits, and return the command's wait status.

use nix::errno::Errno;

/// Forks and runs `child` in the new process (it ends in `execve` or `_exit`) while this
/// process, PID 1, supervises it. Every signal is blocked here first, so each queues up for
/// `sigwaitinfo` even before the loop starts: PID 1 has no handlers, and the kernel drops a
/// signal PID 1 does not handle. `child` starts with that mask and restores its own
/// ([`crate::run::restore_signals`]).
///
/// Returns the command's raw wait status (wait(2)) once it has exited.
///
/// # Errors
///
/// The errno of a failed fork(2).
pub fn supervise(child: impl FnOnce()) -> Result<i32, Errno> {
    // SAFETY: plain libc calls on a signal set initialised here; the init has a single
    // thread, so the forked child is a complete copy in which every function, allocation
    // included, is as safe to call as before the fork.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
        let command = libc::fork();
        if command < 0 {
            return Err(Errno::last());
        }
        if command == 0 {
            child();
            // `child` ends in execve or _exit; should it return, the child must not go on
            // as a second PID-1 loop.
            libc::_exit(crate::SETUP_FAILED.into());
        }
        loop {
            let signal = libc::sigwaitinfo(&all, std::ptr::null_mut());
            if signal == libc::SIGCHLD {
                if let Some(status) = reap(command) {
                    return Ok(status);
                }
            } else if signal > 0 {
                // ESRCH: the command exited and its SIGCHLD is queued behind this signal.
                libc::kill(command, signal);
            }
        }
    }
}

/// The status a shell reports for a raw wait status: the exit code, or 128 + the signal that
/// killed the process.
pub fn shell_status(status: i32) -> u8 {
    if libc::WIFSIGNALED(status) {
        128u8.saturating_add(libc::WTERMSIG(status) as u8)
    } else {
        libc::WEXITSTATUS(status) as u8
    }
}

/// Reaps every child that has exited, the command and orphans re-parented to PID 1; returns
/// the command's raw wait status once it has exited.
pub fn reap(command: libc::pid_t) -> Option<i32> {
    let mut exited = None;
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes only to `status`.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid == command {
            exited = Some(status);
        } else if pid == 0 || (pid < 0 && Errno::last() != Errno::EINTR) {
            return exited;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Raw wait statuses as the kernel encodes them: the code in bits 8-15, a signal in 0-6.
    #[test]
    fn statuses_are_reported_as_a_shell_does() {
        assert_eq!(shell_status(0), 0);
        assert_eq!(shell_status(3 << 8), 3);
        assert_eq!(shell_status(255 << 8), 255);
        assert_eq!(shell_status(libc::SIGKILL), 137);
        // A core dump (bit 7) does not change the signal.
        assert_eq!(shell_status(libc::SIGSEGV | 0x80), 139);
    }
}
