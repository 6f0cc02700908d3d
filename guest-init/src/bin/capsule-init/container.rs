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

use nix::unistd::execv;
use ns_core::init::{REPORT_FD, Report};

use crate::SETUP_FAILED;
use crate::run::{DEFAULT_PATH, failure_status, find_and_exec, restore_signals};
use crate::supervise::{shell_status, supervise};

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

    // The pipe stays the init's: the command must not be able to forge reports.
    // SAFETY: fcntl on a descriptor number; no memory of ours is involved.
    unsafe { libc::fcntl(REPORT_FD, libc::F_SETFD, libc::FD_CLOEXEC) };
    let supervised = supervise(|| {
        restore_signals();
        // execv returns only when it fails.
        let Err(errno) = find_and_exec(name, &path, |file| execv(file, &argv));
        Report::exec_failed(errno as i32).write_to(REPORT_FD);
        // SAFETY: _exit ends the process at once; no memory of ours is involved.
        unsafe { libc::_exit(failure_status(errno).into()) }
    });
    let code = match supervised {
        Ok(status) => {
            Report::exited(status).write_to(REPORT_FD);
            shell_status(status)
        }
        Err(errno) => {
            eprintln!("capsule-init: cannot fork to run {name:?}: {errno}");
            SETUP_FAILED
        }
    };
    // SAFETY: _exit ends the process at once; no memory of ours is involved.
    unsafe { libc::_exit(code.into()) }
}

fn usage() -> ! {
    eprintln!("usage: capsule-init --container -- COMMAND [ARGS...] (run by capsule, not by hand)");
    std::process::exit(SETUP_FAILED.into())
}
