//! `capsule-init --container -- COMMAND ARGS...`: PID 1 of a container that ns-core set up,
//! speaking the protocol of `ns_core::init`: runs COMMAND as its child, forwards every signal
//! it can catch to it, reaps every process that exits, and reports COMMAND's wait status on
//! fd `REPORT_FD` before exiting with the shell's status for it.
//!
//! Everything else (namespaces, root, credentials, seccomp, working directory, environment) is
//! already the container's when this starts, so there is nothing to set up, and nothing to
//! say on stderr: the parent turns the reports into messages.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStringExt;

use nix::errno::Errno;
use nix::unistd::execv;
use ns_core::init::{REPORT_FD, Report};

use crate::SETUP_FAILED;
use crate::run::{DEFAULT_PATH, failure_status, find_and_exec, restore_signals};

/// Runs as the container's init with `args` (what follows `--container`); never returns.
pub fn run(args: &[OsString]) -> ! {
    let Some((dashes, command)) = args.split_first() else {
        usage()
    };
    if dashes != "--" {
        usage()
    }
    let Ok(argv) = command
        .iter()
        .map(|a| CString::new(a.clone().into_vec()))
        .collect::<Result<Vec<_>, _>>()
    else {
        usage()
    };
    let Some(name) = command.first().and_then(|n| n.to_str()) else {
        usage()
    };
    let path = std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_owned());

    // SAFETY: plain libc calls on local data and on descriptors and pids of this process.
    unsafe {
        // The pipe stays the init's: the command must not be able to forge reports.
        libc::fcntl(REPORT_FD, libc::F_SETFD, libc::FD_CLOEXEC);
        // Blocked, every signal queues up for sigwaitinfo, even one that arrives before the
        // loop starts; PID 1 ignores signals it has no handler for, so none is lost.
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
        let command = libc::fork();
        if command < 0 {
            eprintln!(
                "capsule-init: cannot fork to run {name:?}: {}",
                Errno::last()
            );
            libc::_exit(SETUP_FAILED.into());
        }
        if command == 0 {
            restore_signals();
            // execv returns only when it fails.
            let Err(errno) = find_and_exec(name, &path, |file| execv(file, &argv));
            Report::exec_failed(errno as i32).write_to(REPORT_FD);
            libc::_exit(failure_status(errno).into());
        }
        loop {
            let sig = libc::sigwaitinfo(&all, std::ptr::null_mut());
            if sig == libc::SIGCHLD {
                if let Some(status) = reap(command) {
                    Report::exited(status).write_to(REPORT_FD);
                    let code = if libc::WIFSIGNALED(status) {
                        128 + libc::WTERMSIG(status)
                    } else {
                        libc::WEXITSTATUS(status)
                    };
                    libc::_exit(code);
                }
            } else if sig > 0 {
                // ESRCH: the command exited and its SIGCHLD is queued behind this signal.
                libc::kill(command, sig);
            }
        }
    }
}

/// Reaps every child that has exited, the command and orphans re-parented to PID 1; returns
/// the command's raw wait status once it has exited.
fn reap(command: libc::pid_t) -> Option<i32> {
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

fn usage() -> ! {
    eprintln!("usage: capsule-init --container -- COMMAND [ARGS...] (run by capsule, not by hand)");
    std::process::exit(SETUP_FAILED.into())
}
