//! Spawning a container: the one place that knows the parent/child protocol.
//!
//! | step | parent (the caller)                                  | child (PID 1 of the new pid namespace)                    |
//! |------|------------------------------------------------------|-----------------------------------------------------------|
//! | 1    | validate; build every path, argv, env and filter     |                                                           |
//! | 2    | `clone` into new pid, mount, uts, ipc, net (+ user)  | blocks on the `go` pipe                                   |
//! | 3    | write uid/gid maps; `attach(pid)` (cgroups)          |                                                           |
//! | 4    | write `go` (an error instead kills the child)        | cgroup namespace, hostname, mounts, `pivot_root`          |
//! | 4b   | seal the init's bytes in a memfd, hand it over       |                                                           |
//! | 5    |                                                      | rlimits, bounding set, groups/gid/uid, caps, no_new_privs, cwd |
//! | 6    |                                                      | fresh signal state; seccomp; `execve` the command or the init |
//! | 7    | read reports until EOF, then `waitpid`               | `Failed` / `ExecFailed`; the init reports `Exited`        |
//!
//! Reports are fixed 16-byte records ([`Report`]) on a close-on-exec pipe: the pipe closes
//! when the command executes (or, with an init, when the init exits), so EOF means "nothing
//! more to say". The init is the caller's program ([`Init`]), executed from its descriptor and
//! given the pipe at [`REPORT_FD`] (see [`crate::init`] for its side); when the caller gave its
//! bytes, the parent seals them in a memfd after `go`, while the child builds its root, and
//! hands it over ([`crate::handoff`]). The child runs between `clone` and `execve` of a program
//! that may have other threads, so it only makes plain libc calls on data prepared here, and
//! never allocates.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use crate::Error;
use crate::credentials::{CredentialStep, Credentials, set_ids};
use crate::error::AttachError;
use crate::handoff;
use crate::idmapped_root;
use crate::init::{CONTAINER_ARG, Init, REPORT_FD, Report, reset_signals, set_signal_mask};
use crate::mounts::{self, Planner, Step};
use crate::rootfs::{self, Layers};
use crate::spec::ContainerSpec;
use crate::sys::{cpath, cstring, errno};

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExitStatus {
    /// exit(2) with this code.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

impl ExitStatus {
    /// The shell's convention: the exit code, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(code) => code,
            ExitStatus::Signaled(sig) => 128 + sig,
        }
    }

    fn from_wait_status(status: i32) -> Self {
        if libc::WIFSIGNALED(status) {
            ExitStatus::Signaled(libc::WTERMSIG(status))
        } else {
            ExitStatus::Exited(libc::WEXITSTATUS(status))
        }
    }
}

/// A container whose command has been released; [`Running::wait`] collects it.
#[derive(Debug)]
pub struct Running {
    pid: i32,
    /// A pidfd of the container's PID 1 (pidfd_open(2)), for [`Running::signaller`].
    pidfd: OwnedFd,
    reports: OwnedFd,
    explain: Explain,
    waited: bool,
}

/// What the parent keeps to turn a child's report into a sentence.
#[derive(Debug)]
struct Explain {
    steps: Vec<(&'static str, String)>,
    rlimits: Vec<i32>,
    command: String,
    candidates: Vec<String>,
    cwd: String,
    user: crate::User,
}

/// Everything the child needs, prepared before `clone`.
struct Prepared {
    steps: Vec<Step>,
    merged: CString,
    hostname: CString,
    cwd: CString,
    _argv: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    envp: Vec<*const libc::c_char>,
    candidates: Vec<CString>,
    credentials: Credentials,
    init: Option<InitExec>,
    userns: bool,
    /// The child's end of the socket that brings the idmapped root, or -1.
    idmap_socket: RawFd,
    /// `/dev/null`, opened by the parent, for the command's stdin; -1 to keep the caller's.
    null_stdin: RawFd,
    /// The parent's close-on-exec copies of the descriptors that become the command's stdin,
    /// stdout and stderr; -1 each to keep the caller's.
    stdio: [RawFd; 3],
    /// `spec.terminal`: stdin becomes the controlling terminal of a new session.
    terminal: bool,
}

/// How the child executes the init: its descriptor (or -1 until it arrives on `socket`, the
/// child's end of the handoff) and its argument vector (`NAME --container -- COMMAND ARGS...`).
struct InitExec {
    fd: RawFd,
    socket: RawFd,
    _argv: Vec<CString>,
    argv: Vec<*const libc::c_char>,
}

/// The steps of the child, in order, for reports.
#[derive(Debug, Clone, Copy)]
#[repr(u32)]
enum Stage {
    CgroupNamespace = 1,
    Hostname,
    IdmappedRoot,
    Mounts,
    Pivot,
    Rlimits,
    BoundingSet,
    Groups,
    Gid,
    Uid,
    Capabilities,
    NoNewPrivs,
    Cwd,
    Seccomp,
    Init,
    Stdin,
    Terminal,
}

impl From<CredentialStep> for Stage {
    fn from(step: CredentialStep) -> Stage {
        match step {
            CredentialStep::Rlimits => Stage::Rlimits,
            CredentialStep::BoundingSet => Stage::BoundingSet,
            CredentialStep::Groups => Stage::Groups,
            CredentialStep::Gid => Stage::Gid,
            CredentialStep::Uid => Stage::Uid,
            CredentialStep::Capabilities => Stage::Capabilities,
            CredentialStep::NoNewPrivs => Stage::NoNewPrivs,
        }
    }
}

const STAGES: &[(Stage, &str)] = &[
    (Stage::CgroupNamespace, "enter a new cgroup namespace"),
    (Stage::Hostname, "set the hostname"),
    (
        Stage::IdmappedRoot,
        "receive the idmapped root from the launcher",
    ),
    (Stage::Mounts, "mount"),
    (Stage::Pivot, "pivot_root into"),
    (Stage::Rlimits, "set rlimit"),
    (
        Stage::BoundingSet,
        "drop from the bounding set capability number",
    ),
    (Stage::Groups, "set supplementary groups"),
    (Stage::Gid, "set gid"),
    (Stage::Uid, "set uid"),
    (Stage::Capabilities, "set capabilities"),
    (Stage::NoNewPrivs, "set no_new_privs"),
    (Stage::Cwd, "change to the working directory"),
    (Stage::Seccomp, "install the seccomp filter"),
    (Stage::Init, "execute the init program"),
    (Stage::Stdin, "put in place the standard stream number"),
    (
        Stage::Terminal,
        "make stdin the controlling terminal of a new session",
    ),
];

/// Creates the container and starts its command. With `spec.init`, `init` is the program
/// that runs as PID 1 with the command as its child (see [`crate::init`]); it is unused
/// otherwise. `attach` runs in the parent while the child waits, with the child's pid, before
/// the child runs anything of its own (the place to add it to cgroups). On any error the
/// child is killed and reaped before this returns.
///
/// # Errors
/// [`Error::Invalid`] for a spec that cannot work (every problem at once, including an init
/// asked for but not given); [`Error::Host`] when a kernel call in the parent fails;
/// [`Error::Attach`] with the message of a failing `attach`.
pub fn spawn<F>(spec: &ContainerSpec, init: Option<&Init>, attach: F) -> Result<Running, Error>
where
    F: FnOnce(i32) -> Result<(), AttachError>,
{
    spawn_inner(spec, init, None, attach)
}

/// [`spawn`] with `stdio` (stdin, stdout, stderr, in that order) as the command's standard
/// streams instead of the caller's own: for a caller that serves several streams at once (a
/// guest agent relaying each over its own connection) and cannot lend its own descriptors.
/// `spec.null_stdin` still puts `/dev/null` on stdin.
///
/// # Errors
/// As [`spawn`]; [`Error::Host`] when a descriptor cannot be duplicated.
pub fn spawn_with_stdio<F>(
    spec: &ContainerSpec,
    init: Option<&Init>,
    stdio: [BorrowedFd<'_>; 3],
    attach: F,
) -> Result<Running, Error>
where
    F: FnOnce(i32) -> Result<(), AttachError>,
{
    spawn_inner(spec, init, Some(stdio), attach)
}

fn spawn_inner<F>(
    spec: &ContainerSpec,
    init: Option<&Init>,
    stdio: Option<[BorrowedFd<'_>; 3]>,
    attach: F,
) -> Result<Running, Error>
where
    F: FnOnce(i32) -> Result<(), AttachError>,
{
    validate(spec, init.is_some())?;
    let init = init.filter(|_| spec.init);
    let layers = Layers::new(&spec.state_dir);
    let overlay = rootfs::needs_overlay(spec);
    // Only a privileged launcher can idmap the root for the child's user namespace.
    let privileged = nix::unistd::geteuid().is_root();
    let idmap = spec.user_namespace.is_some() && privileged;
    let owner = spec
        .user_namespace
        .as_ref()
        .and_then(|maps| maps.host_root());
    layers.create(overlay, idmap, owner.filter(|_| privileged))?;
    let (mut prepared, explain) = prepare(spec, init, &layers, overlay, idmap)?;
    let sealing = init.and_then(Init::bytes);
    let handoff = (idmap || sealing.is_some())
        .then(handoff::channel)
        .transpose()?;
    let child_end = handoff.as_ref().map_or(-1, |(_, child)| child.as_raw_fd());
    prepared.idmap_socket = if idmap { child_end } else { -1 };
    if let Some(init) = &mut prepared.init {
        init.socket = child_end;
    }

    let null_stdin = spec
        .null_stdin
        .then(|| std::fs::File::open("/dev/null"))
        .transpose()
        .map_err(|e| {
            Error::host(
                "cannot open /dev/null for the command's stdin",
                Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            )
        })?;
    prepared.null_stdin = null_stdin.as_ref().map_or(-1, |f| f.as_raw_fd());
    // Copies above the report pipe's REPORT_FD, so that placing the pipe there in the child
    // cannot overwrite one; close-on-exec, so none outlives the execve but as 0, 1 or 2.
    let stdio = stdio
        .map(|fds| {
            fds.map(|fd| {
                nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(REPORT_FD + 1))
                    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
                    .map(|copy| unsafe { OwnedFd::from_raw_fd(copy) })
                    .map_err(|e| {
                        Error::host("cannot duplicate a standard stream for the command", e)
                    })
            })
        })
        .map(|copies| copies.into_iter().collect::<Result<Vec<_>, _>>())
        .transpose()?;
    if let Some(copies) = &stdio {
        for (slot, fd) in prepared.stdio.iter_mut().zip(copies) {
            *slot = fd.as_raw_fd();
        }
    }

    let (go_read, go_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::host("cannot create a pipe", e))?;
    let (report_read, report_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::host("cannot create a pipe", e))?;

    let mut flags = libc::CLONE_NEWPID
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWNET
        | libc::SIGCHLD;
    if spec.user_namespace.is_some() {
        flags |= libc::CLONE_NEWUSER;
    }
    // SAFETY: with a null stack, clone(2) behaves as fork(2): the child gets a copy of our
    // memory. The child runs only `child_main`, which makes async-signal-safe calls on data
    // prepared above and leaves through execve or _exit, never returning into Rust code.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags as libc::c_ulong,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    if pid < 0 {
        let err = Errno::last();
        return Err(match err {
            Errno::EPERM | Errno::EUSERS | Errno::ENOSPC if spec.user_namespace.is_some() => {
                Error::host(
                    "cannot create a user namespace (is kernel.unprivileged_userns_clone or user.max_user_namespaces disabled?)",
                    err,
                )
            }
            _ => Error::host("cannot clone the container process", err),
        });
    }
    if pid == 0 {
        child_main(
            &prepared,
            go_read.as_raw_fd(),
            go_write.as_raw_fd(),
            report_read.as_raw_fd(),
            report_write.as_raw_fd(),
        );
    }
    let pid = pid as i32;
    drop(go_read);
    drop(report_write);

    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; the child
    // is ours and not reaped, so the pid names it.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        let err = Errno::last();
        // SAFETY: plain syscalls on the pid we created and have not reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        return Err(Error::host(
            "cannot open a pidfd of the container (pidfd_open(2) needs Linux 5.3)",
            err,
        ));
    }
    let running = Running {
        pid,
        // SAFETY: pidfd_open returned a new descriptor that nothing else owns.
        pidfd: unsafe { OwnedFd::from_raw_fd(pidfd as i32) },
        reports: report_read,
        explain,
        waited: false,
    };
    // From here, dropping `running` on an error kills and reaps the child.
    if let Some(maps) = &spec.user_namespace {
        crate::idmap::write_id_maps(maps, pid, nix::unistd::geteuid().is_root())?;
    }
    attach(pid).map_err(Error::Attach)?;
    if let (Some((launcher, _)), true) = (&handoff, idmap) {
        let tree = idmapped_root::tree(&spec.rootfs, pid, !overlay)?;
        handoff::send(launcher, tree.as_ref(), "the idmapped root")?;
    }
    nix::unistd::write(&go_write, b"g")
        .map_err(|e| Error::host("cannot release the container process", e))?;
    // While the child builds its root: the copy is off the start-up path.
    if let (Some((launcher, _)), Some(init), Some(bytes)) = (&handoff, init, sealing) {
        let sealed = crate::init::seal(init.name(), bytes)?;
        if let Err(e) = handoff::send(launcher, Some(&sealed), "the init program") {
            // A child that has already failed is gone: `wait` reads why.
            if !matches!(
                e,
                Error::Host {
                    source: Errno::EPIPE | Errno::ECONNRESET,
                    ..
                }
            ) {
                return Err(e);
            }
        }
    }
    Ok(running)
}

/// Checks the spec as a whole and reports every problem at once.
fn validate(spec: &ContainerSpec, has_init: bool) -> Result<(), Error> {
    let mut problems = Vec::new();
    if spec.init && !has_init {
        problems.push(
            "the spec asks for an init as PID 1 but no init program was given (pass an ns_core::Init, or set init to false)"
                .to_owned(),
        );
    }
    match std::fs::metadata(&spec.rootfs) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => problems.push(format!(
            "rootfs {} is not a directory",
            spec.rootfs.display()
        )),
        Err(e) => problems.push(format!("rootfs {}: {e}", spec.rootfs.display())),
    }
    if spec.process.args.is_empty() || spec.process.args[0].is_empty() {
        problems.push("no command given".to_owned());
    }
    if !spec.process.cwd.is_absolute() {
        problems.push(format!(
            "working directory {:?} is not absolute",
            spec.process.cwd
        ));
    }
    if let Some(host) = &spec.hostname {
        if host.is_empty() || host.len() > 64 {
            problems.push(format!("hostname {host:?} must be 1 to 64 bytes long"));
        }
    }
    for mount in &spec.mounts {
        if !mount.destination.is_absolute() {
            problems.push(format!(
                "mount destination {:?} is not absolute",
                mount.destination
            ));
        }
    }
    if let Some(maps) = &spec.user_namespace {
        if !maps.maps_uid(spec.process.user.uid) {
            problems.push(format!(
                "uid {} is not mapped in the user namespace",
                spec.process.user.uid
            ));
        }
        if !maps.maps_gid(spec.process.user.gid) {
            problems.push(format!(
                "gid {} is not mapped in the user namespace",
                spec.process.user.gid
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(problems.join("; ")))
    }
}

fn prepare(
    spec: &ContainerSpec,
    init: Option<&Init>,
    layers: &Layers,
    overlay: bool,
    idmap: bool,
) -> Result<(Prepared, Explain), Error> {
    let userns = spec.user_namespace.is_some();
    let mut planner = Planner::default();
    rootfs::plan(spec, layers, overlay, idmap, &mut planner)?;
    planner.defaults(userns)?;
    planner.extra(spec)?;
    planner.workdir(
        &spec.process.cwd,
        (spec.process.user.uid, spec.process.user.gid),
    )?;
    for path in &spec.masked_paths {
        planner.mask(&path.to_string_lossy())?;
    }
    for path in &spec.readonly_paths {
        planner.readonly(&path.to_string_lossy())?;
    }
    if spec.readonly_rootfs && overlay {
        planner.root_readonly();
    }

    let argv_owned = spec
        .process
        .args
        .iter()
        .map(|a| cstring(a))
        .collect::<Result<Vec<_>, _>>()?;
    let envp_owned = spec
        .process
        .env
        .iter()
        .map(|e| cstring(e))
        .collect::<Result<Vec<_>, _>>()?;
    let command = spec.process.args[0].clone();
    let candidates: Vec<String> = if command.contains('/') {
        vec![command.clone()]
    } else {
        spec.search_path()
            .split(':')
            .filter(|dir| !dir.is_empty())
            .map(|dir| format!("{}/{command}", dir.trim_end_matches('/')))
            .collect()
    };
    let credentials = Credentials::new(&spec.process, spec.seccomp)?;
    // An unprivileged writer of gid_map had to deny setgroups(2).
    let credentials = if !userns || nix::unistd::geteuid().is_root() {
        credentials
    } else {
        credentials.keep_groups()
    };

    let init = init
        .map(|init| -> Result<InitExec, Error> {
            let mut owned = vec![
                init.name().to_owned(),
                cstring(CONTAINER_ARG)?,
                cstring("--")?,
            ];
            owned.extend(argv_owned.iter().cloned());
            let mut argv: Vec<_> = owned.iter().map(|a| a.as_ptr()).collect();
            argv.push(std::ptr::null());
            Ok(InitExec {
                fd: init.open_fd().unwrap_or(-1),
                socket: -1,
                _argv: owned,
                argv,
            })
        })
        .transpose()?;
    let mut argv: Vec<_> = argv_owned.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<_> = envp_owned.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());

    let explain = Explain {
        steps: planner
            .steps
            .iter()
            .map(|s| (s.what, s.subject.clone()))
            .collect(),
        rlimits: credentials.rlimits().iter().map(|r| r.resource).collect(),
        command,
        candidates: candidates.clone(),
        cwd: spec.process.cwd.display().to_string(),
        user: spec.process.user.clone(),
    };
    let prepared = Prepared {
        steps: planner.steps,
        merged: cpath(&layers.merged)?,
        hostname: cstring(spec.hostname.as_deref().unwrap_or(&spec.id))?,
        cwd: cpath(&spec.process.cwd)?,
        _argv: argv_owned,
        argv,
        _envp: envp_owned,
        envp,
        candidates: candidates
            .iter()
            .map(|c| cstring(c))
            .collect::<Result<_, _>>()?,
        credentials,
        init,
        userns,
        idmap_socket: -1,
        null_stdin: -1,
        stdio: [-1; 3],
        terminal: spec.terminal,
    };
    Ok((prepared, explain))
}

/// The container side. Never returns: it executes the command or exits.
fn child_main(p: &Prepared, go_read: i32, go_write: i32, report_read: i32, report_fd: i32) -> ! {
    let fail = |stage: Stage, index: u32, err: i32| -> ! {
        Report {
            kind: Report::FAILED,
            stage: stage as u32,
            index,
            value: err,
        }
        .write_to(report_fd);
        // SAFETY: _exit ends the process without running Rust or libc atexit code.
        unsafe { libc::_exit(125) }
    };
    // SAFETY: plain libc calls on file descriptors this process owns and on data prepared in
    // the parent (see the module doc); none of them allocates.
    unsafe {
        // The container's PID 1 drops a signal it has no handler for unless the signal is
        // blocked: blocked from here to the init's sigwaitinfo (across its execve), a SIGTERM
        // capsule forwards during set-up waits for the init instead of vanishing.
        set_signal_mask(u64::MAX);
        libc::close(go_write);
        libc::close(report_read);
        let mut byte = 0u8;
        loop {
            let n = libc::read(go_read, (&mut byte as *mut u8).cast(), 1);
            if n == 1 {
                break;
            }
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            // The parent closed the pipe without a go: it failed or died.
            libc::_exit(125);
        }
        libc::close(go_read);

        // A new user namespace starts with our host ids, which its maps may not cover: become
        // its root, or every file created (even on a tmpfs) fails with EOVERFLOW.
        if p.userns
            && (set_ids(libc::SYS_setresgid, 0) != 0 || set_ids(libc::SYS_setresuid, 0) != 0)
        {
            fail(Stage::Uid, 0, errno());
        }
        // After the parent's cgroup attach, so the namespace's root is the container's cgroup.
        if libc::unshare(libc::CLONE_NEWCGROUP) != 0 {
            fail(Stage::CgroupNamespace, 0, errno());
        }
        if libc::sethostname(p.hostname.as_ptr(), p.hostname.as_bytes().len()) != 0 {
            fail(Stage::Hostname, 0, errno());
        }
        let tree = if p.idmap_socket >= 0 {
            match handoff::receive(p.idmap_socket) {
                Ok(tree) => tree,
                Err(e) => fail(Stage::IdmappedRoot, 0, e),
            }
        } else {
            None
        };
        if let Err((i, e)) = mounts::run(&p.steps, tree) {
            fail(Stage::Mounts, i, e);
        }
        if let Err(e) = rootfs::pivot(&p.merged) {
            fail(Stage::Pivot, 0, e);
        }
        // Before the rlimits, which may leave no room for another descriptor. The parent
        // sealed the init while this process built its root, so it is here by now.
        let init_fd = match &p.init {
            Some(init) => match receive_init(init).and_then(|fd| pass_report_pipe(fd, report_fd)) {
                Ok(fd) => fd,
                Err(e) => fail(Stage::Init, 0, e),
            },
            None => -1,
        };
        if let Err((step, index, e)) = p.credentials.apply() {
            fail(Stage::from(step), index, e);
        }
        // As the final user, so a directory it cannot enter is an error, as with runc.
        if libc::chdir(p.cwd.as_ptr()) != 0 {
            fail(Stage::Cwd, 0, errno());
        }
        // The credential change above cleared any earlier death signal; if capsule dies, the
        // container's PID 1 dies, and with it the whole pid namespace.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        for (number, &fd) in p.stdio.iter().enumerate() {
            if fd >= 0 && libc::dup2(fd, number as i32) < 0 {
                fail(Stage::Stdin, number as u32, errno());
            }
        }
        if p.null_stdin >= 0 && libc::dup2(p.null_stdin, 0) < 0 {
            fail(Stage::Stdin, 0, errno());
        }
        if p.terminal && (libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0) {
            fail(Stage::Terminal, 0, errno());
        }
        // No descriptor of the caller's but stdio (and the init's report pipe) reaches the
        // container.
        let first_closed = if p.init.is_some() { REPORT_FD + 1 } else { 3 };
        libc::syscall(
            libc::SYS_close_range,
            first_closed as u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        // The workload starts as from a shell, not with the signals capsule ignores or blocks;
        // an init keeps them blocked until it waits for them, and unblocks them for the
        // command it forks.
        reset_signals(p.init.is_some());
        if let Err(e) = p.credentials.install_seccomp() {
            fail(Stage::Seccomp, 0, e);
        }
        match &p.init {
            Some(init) => {
                libc::syscall(
                    libc::SYS_execveat,
                    init_fd,
                    c"".as_ptr(),
                    init.argv.as_ptr(),
                    p.envp.as_ptr(),
                    libc::AT_EMPTY_PATH,
                );
                fail(Stage::Init, 0, errno())
            }
            None => exec(p, report_fd),
        }
    }
}

/// The init's descriptor: the caller's, or the sealed memfd the parent hands over.
fn receive_init(init: &InitExec) -> Result<RawFd, i32> {
    if init.fd >= 0 {
        return Ok(init.fd);
    }
    let fd = handoff::receive(init.socket)?.ok_or(libc::EPROTO)?;
    let raw = fd.0;
    // Open until execveat; this process never returns to close anything.
    std::mem::forget(fd);
    Ok(raw)
}

/// Puts the report pipe at [`REPORT_FD`], open across execve, moving the init's descriptor
/// out of the way first; returns where the init's descriptor is now.
///
/// # Safety
/// Runs only in the container child (see `child_main`).
unsafe fn pass_report_pipe(init_fd: RawFd, report_fd: RawFd) -> Result<RawFd, i32> {
    // SAFETY: fcntl and dup2 on descriptors this process owns; no pointers.
    unsafe {
        let init_fd = if init_fd == REPORT_FD {
            libc::fcntl(init_fd, libc::F_DUPFD_CLOEXEC, REPORT_FD + 1)
        } else {
            init_fd
        };
        if init_fd < 0 {
            return Err(errno());
        }
        // dup2 leaves the new descriptor without close-on-exec; onto itself it changes nothing.
        let placed = if report_fd == REPORT_FD {
            libc::fcntl(REPORT_FD, libc::F_SETFD, 0)
        } else {
            libc::dup2(report_fd, REPORT_FD)
        };
        if placed < 0 {
            return Err(errno());
        }
        Ok(init_fd)
    }
}

/// Executes the command, trying each `PATH` candidate as execvp(3) does.
///
/// # Safety
/// Runs only in the container child (see `child_main`).
unsafe fn exec(p: &Prepared, report_fd: i32) -> ! {
    let mut refused = 0;
    for candidate in &p.candidates {
        // SAFETY: argv and envp are null-terminated arrays of pointers into strings that live
        // in `p` for the life of this process.
        unsafe { libc::execve(candidate.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr()) };
        let e = errno();
        if e != libc::ENOENT && e != libc::ENOTDIR && refused == 0 {
            refused = e;
        }
    }
    let (value, code) = if refused == 0 {
        (libc::ENOENT, 127)
    } else {
        (refused, 126)
    };
    Report::exec_failed(value).write_to(report_fd);
    // SAFETY: ends the process without unwinding.
    unsafe { libc::_exit(code) }
}

/// Sends signals to a container's PID 1 through a pidfd: a signal sent after the container
/// was reaped fails with `ESRCH` instead of reaching a process that reused its pid. `Send`,
/// so the thread that receives capsule's signals can hold one while another waits.
#[derive(Debug)]
pub struct Signaller(OwnedFd);

impl Signaller {
    /// Sends `signal` (pidfd_send_signal(2)).
    ///
    /// # Errors
    ///
    /// `ESRCH` once the container has ended, `EINVAL` for a signal number that is not one.
    pub fn send(&self, signal: i32) -> Result<(), Errno> {
        // SAFETY: pidfd_send_signal takes a descriptor we own, a signal number, a null
        // siginfo and no flags.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc == 0 { Ok(()) } else { Err(Errno::last()) }
    }
}

/// The pidfd: it polls readable once the container's PID 1 has exited (pidfd_open(2)), so an
/// event loop can wait for the container beside other descriptors and call [`Running::wait`]
/// only when it will not block.
impl AsFd for Signaller {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Running {
    /// The container's PID 1, as the host sees it.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// What sends signals to the container's PID 1 from another thread while this one waits:
    /// the caller owns the process's signal handling and forwards what it receives.
    ///
    /// # Errors
    ///
    /// [`Error::Host`] when the pidfd cannot be duplicated (out of descriptors).
    pub fn signaller(&self) -> Result<Signaller, Error> {
        self.pidfd.try_clone().map(Signaller).map_err(|e| {
            Error::host(
                "cannot duplicate the container's pidfd",
                Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            )
        })
    }

    /// Waits for the command to end. Signals meant for it go through [`Running::signaller`].
    pub fn wait(mut self) -> Result<ExitStatus, Error> {
        let reports = self.read_reports();
        let status = self.reap()?;
        let mut exited = None;
        for r in reports {
            match r.kind {
                Report::FAILED if status == ExitStatus::Exited(125) => {
                    return Err(self.explain.failure(r));
                }
                Report::EXEC_FAILED if matches!(status, ExitStatus::Exited(126 | 127)) => {
                    return Err(self.explain.exec_failure(r.value));
                }
                Report::EXITED => {
                    let reported = ExitStatus::from_wait_status(r.value);
                    if matches!(status, ExitStatus::Exited(code) if code == reported.code()) {
                        exited = Some(reported);
                    }
                }
                _ => {}
            }
        }
        Ok(exited.unwrap_or(status))
    }

    /// Every record until EOF. A workload may reach the init's end of the pipe (through
    /// `/proc/1/fd/3`, or ptrace with the default capabilities) and write what it likes, so
    /// [`Running::wait`] believes a record only where it agrees with the exit status this
    /// process reaps itself: a set-up failure is `_exit(125)`, an exec failure 126 or 127, and
    /// the init exits with the shell's status of the wait status it reports.
    fn read_reports(&self) -> Vec<Report> {
        std::iter::from_fn(|| Report::read_from(self.reports.as_raw_fd())).collect()
    }

    fn reap(&mut self) -> Result<ExitStatus, Error> {
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes only to `status`.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if rc == self.pid {
                self.waited = true;
                return Ok(ExitStatus::from_wait_status(status));
            }
            if errno() != libc::EINTR {
                return Err(Error::host("cannot wait for the container", Errno::last()));
            }
        }
    }
}

impl Drop for Running {
    /// A container that is never waited for is killed and reaped, so no process outlives its
    /// handle.
    fn drop(&mut self) {
        if !self.waited {
            // SAFETY: plain syscalls on the pid we created and have not reaped yet.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

impl Explain {
    fn failure(&self, r: Report) -> Error {
        let source = Errno::from_raw(r.value);
        let step = STAGES
            .iter()
            .find(|(s, _)| *s as u32 == r.stage)
            .map_or("set up", |(_, what)| *what);
        let (step, subject) = match r.stage {
            s if s == Stage::Mounts as u32 => self
                .steps
                .get(r.index as usize)
                .map_or((step, String::new()), |(what, subject)| {
                    (*what, subject.clone())
                }),
            s if s == Stage::Rlimits as u32 => (
                step,
                self.rlimits
                    .get(r.index as usize)
                    .map_or("?", |r| plan::rlimit_name(*r))
                    .to_owned(),
            ),
            s if s == Stage::Cwd as u32 => (step, self.cwd.clone()),
            s if s == Stage::Uid as u32 || s == Stage::Gid as u32 => {
                (step, format!("{}:{}", self.user.uid, self.user.gid))
            }
            s if s == Stage::BoundingSet as u32
                || s == Stage::Capabilities as u32
                || s == Stage::Stdin as u32 =>
            {
                (step, r.index.to_string())
            }
            _ => (step, String::new()),
        };
        Error::Setup {
            step,
            subject,
            source,
        }
    }

    fn exec_failure(&self, errno: i32) -> Error {
        if errno == libc::ENOENT {
            Error::CommandNotFound {
                command: self.command.clone(),
                searched: self.candidates.join(", "),
            }
        } else {
            Error::CommandNotExecutable {
                command: self.command.clone(),
                source: Errno::from_raw(errno),
            }
        }
    }
}
