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
