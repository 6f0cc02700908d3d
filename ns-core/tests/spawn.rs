//! `ns_core::spawn` on the real kernel: needs root and a busybox root filesystem
//! (`CAPSULE_TEST_ROOTFS`, or `target/capsule/rootfs/busybox` from `cargo xtask rootfs busybox`).
//! Skipped with a message when either is missing, except under `CI=true`.

use std::path::PathBuf;

use ns_core::{ContainerSpec, Error, ExitStatus, spawn};

fn rootfs() -> Option<PathBuf> {
    let path = std::env::var_os("CAPSULE_TEST_ROOTFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/capsule/rootfs/busybox")
        });
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let what = format!("root and a busybox rootfs at {}", path.display());
    tests::require(root && path.join("bin/busybox").exists(), &what).then_some(path)
}

fn spec(rootfs: &PathBuf, args: &[&str]) -> (ContainerSpec, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let mut spec = ContainerSpec::new(
        "nscore-test",
        rootfs,
        args.iter().map(|s| s.to_string()).collect(),
    );
    spec.state_dir = state.path().to_owned();
    (spec, state)
}

#[test]
fn spawn_runs_the_command_and_returns_its_status() {
    let Some(rootfs) = rootfs() else { return };
    let (spec, _state) = spec(
        &rootfs,
        &["sh", "-c", "test \"$(hostname)\" = nscore-test && exit 7"],
    );
    let mut attached = None;
    let running = spawn(&spec, None, |pid| {
        attached = Some(pid);
        Ok(())
    })
    .unwrap();
    assert_eq!(attached, Some(running.pid()));
    assert_eq!(running.wait().unwrap(), ExitStatus::Exited(7));
}

#[test]
fn a_failing_attach_hook_kills_the_child_and_says_why() {
    let Some(rootfs) = rootfs() else { return };
    let (spec, _state) = spec(&rootfs, &["sleep", "30"]);
    let mut child = 0;
    let err = spawn(&spec, None, |pid| {
        child = pid;
        Err("no cgroup for you".into())
    })
    .unwrap_err();
    assert!(
        matches!(err, Error::Attach(ref e) if e.to_string() == "no cgroup for you"),
        "{err}"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{child}")).exists(),
        "the child was reaped"
    );
}

#[test]
fn a_setup_failure_names_the_step_and_the_path() {
    let Some(rootfs) = rootfs() else { return };
    let (mut spec, _state) = spec(&rootfs, &["true"]);
    // A missing directory is made; a file cannot be one.
    spec.process.cwd = "/etc/passwd".into();
    let err = spawn(&spec, None, |_| Ok(())).unwrap().wait().unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("working directory /etc/passwd: ENOTDIR"),
        "{message}"
    );
}

#[test]
fn an_init_asked_for_but_not_given_is_refused_before_anything_starts() {
    let rootfs = tempfile::tempdir().unwrap();
    let (mut spec, _state) = spec(&rootfs.path().to_owned(), &["true"]);
    spec.init = true;
    let err = spawn(&spec, None, |_| panic!("nothing may start")).unwrap_err();
    assert!(
        matches!(err, Error::Invalid(ref m) if m.contains("no init program was given")),
        "{err}"
    );
}

#[test]
fn spawn_with_stdio_gives_the_command_the_caller_s_streams() {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    let Some(rootfs) = rootfs() else { return };
    let (spec, _state) = spec(
        &rootfs,
        &["sh", "-c", "read line; echo out $line; echo err >&2"],
    );
    let pipe = || {
        let (read, write) = nix::unistd::pipe().unwrap();
        (std::fs::File::from(read), std::fs::File::from(write))
    };
    let ((stdin_read, mut stdin_write), (mut out_read, out_write), (mut err_read, err_write)) =
        (pipe(), pipe(), pipe());
    stdin_write.write_all(b"hi\n").unwrap();
    drop(stdin_write);
    let running = ns_core::spawn_with_stdio(
        &spec,
        None,
        [stdin_read.as_fd(), out_write.as_fd(), err_write.as_fd()],
        |_| Ok(()),
    )
    .unwrap();
    // The container holds its own copies: ours may go at once.
    drop((stdin_read, out_write, err_write));
    assert_eq!(running.wait().unwrap(), ExitStatus::Exited(0));
    let (mut out, mut err) = (String::new(), String::new());
    out_read.read_to_string(&mut out).unwrap();
    err_read.read_to_string(&mut err).unwrap();
    assert_eq!((out.as_str(), err.as_str()), ("out hi\n", "err\n"));
}

/// Runs `cat /proc/self/stat` as the container's PID 1 with `stdin` and `terminal`; returns
/// its stat line, or the spawn's error.
fn stat_of_pid_1(stdin: std::os::fd::BorrowedFd<'_>, terminal: bool) -> Result<String, Error> {
    use std::io::Read;
    use std::os::fd::AsFd;

    let rootfs = rootfs().expect("checked by the caller");
    let (mut spec, _state) = spec(&rootfs, &["cat", "/proc/self/stat"]);
    spec.terminal = terminal;
    let (out_read, out_write) = nix::unistd::pipe().unwrap();
    let running = ns_core::spawn_with_stdio(
        &spec,
        None,
        [stdin, out_write.as_fd(), out_write.as_fd()],
        |_| Ok(()),
    )?;
    drop(out_write);
    let status = running.wait()?;
    let mut out = String::new();
    std::fs::File::from(out_read)
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(status, ExitStatus::Exited(0), "{out}");
    Ok(out)
}

#[test]
fn a_terminal_becomes_the_controlling_terminal_of_the_container_s_own_session() {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;

    if rootfs().is_none() {
        return;
    }
    let pty = nix::pty::openpty(None, None).unwrap();
    let stat = stat_of_pid_1(pty.slave.as_fd(), true).expect("spawned");
    // proc(5): pid (comm) state ppid pgrp session tty_nr ...
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("comm")
        .1
        .split_whitespace()
        .collect();
    let (pgrp, session, tty_nr) = (fields[2], fields[3], fields[4]);
    assert_eq!((pgrp, session), ("1", "1"), "PID 1 leads a session: {stat}");
    let rdev = std::fs::File::from(pty.slave).metadata().unwrap().rdev();
    let (major, minor) = (libc::major(rdev) as u64, libc::minor(rdev) as u64);
    let expected = (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12);
    assert_eq!(tty_nr, expected.to_string(), "the pty controls it: {stat}");
}

#[test]
fn a_terminal_that_is_no_terminal_is_refused_with_the_step() {
    use std::os::fd::AsFd;

    if rootfs().is_none() {
        return;
    }
    let (read, _write) = nix::unistd::pipe().unwrap();
    let err = stat_of_pid_1(read.as_fd(), true).expect_err("a pipe cannot control a session");
    let message = err.to_string();
    assert!(
        message.contains("make stdin the controlling terminal of a new session")
            && message.contains("ENOTTY"),
        "{message}"
    );
}
