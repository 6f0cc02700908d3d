//! Running the command: a child that becomes the configured user and executes it, while PID 1
//! supervises it ([`supervise`]).

use std::ffi::{CStr, CString};

use guest_init::Workload;
use nix::errno::Errno;
use nix::unistd::{chdir, execve};
use ns_core::Credentials;

use crate::supervise::{shell_status, supervise};
use crate::{Failure, SETUP_FAILED};

/// The search path for a command name without a `/` when the command's environment has no
/// `PATH` (the default of Debian's and Docker's).
pub use plan::DEFAULT_PATH;

/// Shell convention: the command could not be found.
const NOT_FOUND: u8 = 127;

/// Shell convention: the command was found but could not be executed.
const NOT_EXECUTABLE: u8 = 126;

/// The command with every string already a C string, so that nothing can fail for want of a
/// conversion after the fork.
pub struct Command {
    name: String,
    argv: Vec<CString>,
    envp: Vec<CString>,
    search_path: String,
    cwd: CString,
    credentials: Credentials,
}

impl Command {
    pub fn new(workload: &Workload) -> Result<Self, Failure> {
        let c_string = |s: &str| {
            CString::new(s).map_err(|_| Failure::message(format!("{s:?} contains a NUL byte")))
        };
        let process = &workload.process;
        let name = process
            .args
            .first()
            .cloned()
            .ok_or_else(|| Failure::message("the config names no command"))?;
        let cwd = process.cwd.to_str().unwrap_or_default();
        Ok(Self {
            search_path: search_path(&process.env).to_owned(),
            argv: process
                .args
                .iter()
                .map(|a| c_string(a))
                .collect::<Result<_, _>>()?,
            envp: process
                .env
                .iter()
                .map(|e| c_string(e))
                .collect::<Result<_, _>>()?,
            cwd: c_string(cwd)?,
            credentials: Credentials::new(process, workload.seccomp).map_err(|e| {
                Failure::message(format!("preparing the command's credentials: {e}"))
            })?,
            name,
        })
    }
}

/// Runs `command` in a child and acts as PID 1 until it exits ([`supervise`]); returns its
/// exit status as a shell reports it.
pub fn run_command(command: &Command) -> Result<u8, Failure> {
    supervise(|| run_child(command))
        .map(shell_status)
        .map_err(|e| Failure::new("forking to run", &command.name, e))
}

/// The child: becomes the configured user and executes the command; exits with 125 if the
/// setup fails, 126 or 127 if the command cannot be executed.
pub fn run_child(command: &Command) -> ! {
    let status = match become_user(command) {
        Err(failure) => {
            eprintln!("capsule-init: {failure}");
            SETUP_FAILED
        }
        Ok(()) => {
            // execve returns only when it fails.
            let Err(errno) = find_and_exec(&command.name, &command.search_path, |path| {
                execve(path, &command.argv, &command.envp)
            });
            eprintln!(
                "capsule-init: cannot run {:?}: {}",
                command.name,
                failure_reason(&command.name, &command.search_path, errno)
            );
            failure_status(errno)
        }
    };
    // Not exit(): the child must not run the parent's exit-time cleanups.
    // SAFETY: _exit ends the process at once; no memory of ours is involved.
    unsafe { libc::_exit(status.into()) }
}

fn become_user(command: &Command) -> Result<(), Failure> {
    restore_signals();
    command.credentials.apply().map_err(|(step, what, errno)| {
        Failure::message(format!(
            "setting the command's credentials ({step:?} {what}): {}",
            Errno::from_raw(errno)
        ))
    })?;
    chdir(command.cwd.as_c_str())
        .map_err(|e| Failure::new("changing directory to", command.cwd.to_string_lossy(), e))?;
    // Last, so the steps above are not filtered; execve is allowed by every profile.
    command
        .credentials
        .install_seccomp()
        .map_err(|errno| Failure::new("installing", "the seccomp filter", Errno::from_raw(errno)))
}

/// Gives a child of the init the signal state the init itself started with, that of a fresh
/// process (the kernel starts a guest's PID 1 so, and ns-core a container's init): nothing
/// blocked, and `SIGPIPE`, the one signal Rust's runtime ignores, at its default action. The
/// command then starts as from a shell. Two system calls: resetting all 64 signals would cost
/// a filter run each under a container's seccomp filter.
pub fn restore_signals() {
    // SAFETY: SIG_DFL installs no handler; the empty set is plain data initialised here.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
}

/// The `PATH` of the command's environment (the first one, as getenv finds it), else
/// [`DEFAULT_PATH`].
pub fn search_path(env: &[String]) -> &str {
    env.iter()
        .find_map(|var| var.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
}

/// Executes `name` the way execvp does: as it is if it has a `/`, else from each directory of
/// `path` in turn (an empty entry is the working directory). `exec` tries one file. A
/// directory where the file is missing is skipped; one where it is not executable is
/// remembered and skipped; any other error ends the search. Returns what `exec` returned for
/// the file that ran, or the error that explains the failure.
pub fn find_and_exec<T>(
    name: &str,
    path: &str,
    mut exec: impl FnMut(&CStr) -> Result<T, Errno>,
) -> Result<T, Errno> {
    if name.contains('/') {
        let file = CString::new(name).map_err(|_| Errno::ENOENT)?;
        return exec(&file);
    }
    let mut denied = false;
    for dir in path.split(':') {
        let candidate = if dir.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", dir.trim_end_matches('/'))
        };
        let Ok(file) = CString::new(candidate) else {
            continue;
        };
        match exec(&file) {
            Err(Errno::ENOENT | Errno::ENOTDIR) => {}
            Err(Errno::EACCES) => denied = true,
            result => return result,
        }
    }
    Err(if denied { Errno::EACCES } else { Errno::ENOENT })
}

/// 127 when the command does not exist, 126 when it exists but cannot be executed.
pub fn failure_status(errno: Errno) -> u8 {
    match errno {
        Errno::ENOENT | Errno::ENOTDIR => NOT_FOUND,
        _ => NOT_EXECUTABLE,
    }
}

/// The end of the one-line message: says which PATH was searched when that is what failed.
pub fn failure_reason(name: &str, path: &str, errno: Errno) -> String {
    if errno == Errno::ENOENT && !name.contains('/') {
        format!("not found in PATH {path}")
    } else {
        errno.desc().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::*;

    /// Stands in for execve: "runs" files with an execute bit, fails as the kernel would
    /// otherwise.
    fn fake_exec(file: &CStr) -> Result<String, Errno> {
        let path = Path::new(file.to_str().unwrap());
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {
                Ok(path.display().to_string())
            }
            Ok(_) => Err(Errno::EACCES),
            Err(e) => Err(Errno::from_raw(e.raw_os_error().unwrap())),
        }
    }

    #[test]
    fn bare_names_are_searched_in_path_order_and_slashes_are_taken_as_is() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        for (dir, mode) in [(&a, 0o644), (&b, 0o755)] {
            std::fs::create_dir(dir).unwrap();
            std::fs::write(dir.join("tool"), b"").unwrap();
            std::fs::set_permissions(dir.join("tool"), PermissionsExt::from_mode(mode)).unwrap();
        }
        let path = format!(
            "/nonexistent:{}:{}/:{}",
            a.display(),
            b.display(),
            a.display()
        );
        // a/tool is not executable, so b/tool runs (with the trailing slash folded).
        let found = find_and_exec("tool", &path, fake_exec).unwrap();
        assert_eq!(found, format!("{}/tool", b.display()));

        let direct = format!("{}/tool", a.display());
        assert_eq!(find_and_exec(&direct, &path, fake_exec), Err(Errno::EACCES));
        assert_eq!(
            find_and_exec("tool", "/nonexistent", fake_exec),
            Err(Errno::ENOENT)
        );
        // Found only without the execute bit: not executable, not missing.
        let only_a = a.display().to_string();
        assert_eq!(
            find_and_exec("tool", &only_a, fake_exec),
            Err(Errno::EACCES)
        );
    }

    #[test]
    fn failures_map_to_shell_statuses_and_messages() {
        assert_eq!(failure_status(Errno::ENOENT), 127);
        assert_eq!(failure_status(Errno::ENOTDIR), 127);
        assert_eq!(failure_status(Errno::EACCES), 126);
        assert_eq!(failure_status(Errno::ENOEXEC), 126);
        assert_eq!(
            failure_reason("tool", "/bin", Errno::ENOENT),
            "not found in PATH /bin"
        );
        assert_eq!(
            failure_reason("/bin/tool", "/bin", Errno::ENOENT),
            "No such file or directory"
        );
        assert_eq!(
            failure_reason("tool", "/bin", Errno::EACCES),
            "Permission denied"
        );
    }

    #[test]
    fn the_search_path_comes_from_the_environment() {
        let env = vec![
            "A=1".to_owned(),
            "PATH=/x:/y".to_owned(),
            "PATH=/z".to_owned(),
        ];
        assert_eq!(search_path(&env), "/x:/y");
        assert_eq!(search_path(&["PATHX=1".to_owned()]), DEFAULT_PATH);
    }
}
