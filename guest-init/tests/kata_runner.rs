//! The kata sandbox's runner (`guest_init::kata::Sandbox`) on the host: it builds the container
//! with ns-core and limits it with cgroup-core, which are host libraries, so the assertions the
//! container suite makes of `capsule run` hold here of the runner alone, on this host's cgroup
//! layout (the guest's is v2; the lab runs the same assertions there, `tests/tests/kata.rs`).
//!
//! Needs root, a busybox root filesystem (`CAPSULE_TEST_ROOTFS`, default
//! `target/capsule/rootfs/busybox`) and the static capsule-init that capsule embeds
//! (`CAPSULE_INIT`, default `target/embedded-init/x86_64-unknown-linux-musl/release/
//! capsule-init`, built by `cargo build -p capsule`): the container's PID 1 runs in the
//! busybox root, which has no C library for a dynamic build.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cgroup_core::{Cgroup, Limits};
use guest_init::kata::{GuestContainer, KataChild, KataExit, KataRoot, Sandbox};
use ns_core::{ContainerSpec, Mount, MountKind};

/// One container at a time: the leftover check looks at the whole state directory, and an
/// OOM test beside a fork bomb measures neither.
static SERIAL: Mutex<()> = Mutex::new(());

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn path_from(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(|| workspace().join(default), PathBuf::from)
}

struct Harness {
    sandbox: Sandbox,
    rootfs: PathBuf,
    state: tempfile::TempDir,
    _serial: std::sync::MutexGuard<'static, ()>,
}

fn harness() -> Option<Harness> {
    let rootfs = path_from("CAPSULE_TEST_ROOTFS", "target/capsule/rootfs/busybox");
    let init = path_from(
        "CAPSULE_INIT",
        "target/embedded-init/x86_64-unknown-linux-musl/release/capsule-init",
    );
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let what = format!(
        "root, a busybox rootfs at {} and the static capsule-init at {}",
        rootfs.display(),
        init.display()
    );
    if !tests::require(
        root && rootfs.join("bin/busybox").is_file() && init.is_file(),
        &what,
    ) {
        return None;
    }
    let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let layout = cgroup_core::detect().expect("a cgroup hierarchy");
    Some(Harness {
        sandbox: Sandbox::new(layout, std::fs::read(&init).unwrap()),
        rootfs,
        state: tempfile::tempdir().unwrap(),
        _serial: serial,
    })
}

/// What one container printed and how it ended.
#[derive(Debug)]
struct Ran {
    exit: KataExit,
    stdout: String,
    stderr: String,
}

impl Harness {
    /// A container of `args` in the busybox root, as the host's conversion makes one (an
    /// init, the OCI defaults), with the paths of this host.
    fn container(&self, args: &[&str]) -> GuestContainer {
        let id = format!("kata-runner-{}", std::process::id());
        let mut spec = ContainerSpec::new(
            &id,
            &self.rootfs,
            args.iter().map(|a| a.to_string()).collect(),
        );
        spec.state_dir = self.state.path().to_owned();
        spec.init = true;
        spec.process.env = vec!["PATH=/usr/sbin:/usr/bin:/sbin:/bin".into()];
        GuestContainer {
            spec,
            limits: Limits::default(),
            root: KataRoot::Disk("/dev/vda".into()),
        }
    }

    fn start(&self, container: &GuestContainer) -> (KataChild, [std::fs::File; 2]) {
        let pipe = || {
            let (read, write) = nix::unistd::pipe().unwrap();
            (std::fs::File::from(read), write)
        };
        let ((out, out_write), (err, err_write)) = (pipe(), pipe());
        let null: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
        let child = self
            .sandbox
            .spawn(container, [null, out_write, err_write])
            .unwrap();
        (child, [out, err])
    }

    fn run(&self, container: &GuestContainer) -> Ran {
        let (child, [mut out, mut err]) = self.start(container);
        let exit = child.wait().unwrap();
        let (mut stdout, mut stderr) = (String::new(), String::new());
        out.read_to_string(&mut stdout).unwrap();
        err.read_to_string(&mut stderr).unwrap();
        self.assert_nothing_left(container);
        Ran {
            exit,
            stdout,
            stderr,
        }
    }

    fn run_args(&self, args: &[&str]) -> Ran {
        self.run(&self.container(args))
    }

    /// No cgroup of the container in any hierarchy, nothing in its state directory, no
    /// process of it.
    fn assert_nothing_left(&self, container: &GuestContainer) {
        let layout = cgroup_core::detect().unwrap();
        assert!(
            Cgroup::open(&layout, &container.spec.id).unwrap().is_none(),
            "the cgroup {} is left",
            container.spec.id
        );
        let left: Vec<_> = std::fs::read_dir(self.state.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "state left: {left:?}");
    }
}

fn exited(code: i32) -> KataExit {
    KataExit {
        code,
        signal: None,
        oom_killed: false,
        error: None,
    }
}

#[test]
fn exit_codes_are_the_command_s_and_a_shell_s() {
    let Some(h) = harness() else { return };
    assert_eq!(h.run_args(&["true"]).exit, exited(0));
    assert_eq!(h.run_args(&["sh", "-c", "exit 3"]).exit, exited(3));
    let killed = h.run_args(&["sh", "-c", "kill -9 $$"]).exit;
    assert_eq!((killed.code, killed.signal), (137, Some(9)), "{killed:?}");
    assert!(!killed.oom_killed);

    let missing = h.run_args(&["no-such-command"]).exit;
    assert_eq!(missing.code, 127, "{missing:?}");
    assert!(
        missing
            .error
            .unwrap()
            .contains("\"no-such-command\" not found")
    );
    let not_executable = h.run_args(&["/etc/passwd"]).exit;
    assert_eq!(not_executable.code, 126, "{not_executable:?}");
    assert!(not_executable.error.unwrap().contains("cannot be executed"));
    let mut bad_cwd = h.container(&["true"]);
    bad_cwd.spec.process.cwd = "/etc/passwd".into();
    let setup = h.run(&bad_cwd).exit;
    assert_eq!(setup.code, 125, "{setup:?}");
    assert!(setup.error.unwrap().contains("/etc/passwd"));
}

#[test]
fn the_container_has_its_own_pids_hostname_and_capabilities() {
    let Some(h) = harness() else { return };
    let mut container = h.container(&[
        "sh",
        "-c",
        "echo $$; tr '\\0' ' ' < /proc/1/cmdline; echo; hostname; grep CapEff /proc/self/status",
    ]);
    container.spec.hostname = Some("kata-box".into());
    let ran = h.run(&container);
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{ran:?}");
    // capsule-init is the container's PID 1, the command PID 2.
    assert_eq!(lines[0], "2", "{ran:?}");
    assert!(
        lines[1].starts_with("capsule-init --container -- sh"),
        "{ran:?}"
    );
    assert_eq!(lines[2], "kata-box");
    // The OCI default set, as docker reports it.
    assert_eq!(lines[3], "CapEff:\t00000000a80425fb");
}

#[test]
fn seccomp_refuses_calls_outside_the_profile_with_eperm() {
    let Some(h) = harness() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let probe = dir.path().join("keyctl");
    std::fs::write(&probe, tests::elf::keyctl_probe()).unwrap();
    std::fs::set_permissions(&probe, PermissionsExt::from_mode(0o755)).unwrap();
    let mut container = h.container(&["/probe/keyctl"]);
    container.spec.mounts.push(Mount {
        destination: "/probe".into(),
        kind: MountKind::Bind {
            source: dir.path().to_owned(),
        },
        readonly: true,
    });
    assert_eq!(
        h.run(&container).exit.code,
        1,
        "keyctl must fail with EPERM"
    );
    container.spec.seccomp = ns_core::SeccompProfile::Unconfined;
    assert_eq!(
        h.run(&container).exit.code,
        0,
        "keyctl must not fail with EPERM"
    );
}

#[test]
fn memory_beyond_the_limit_is_reported_as_an_oom_kill() {
    let Some(h) = harness() else { return };
    let limited = |script: &str| {
        let mut container = h.container(&["sh", "-c", script]);
        container.limits = Limits {
            memory: Some(32 << 20),
            memory_swap: Some(32 << 20),
            ..Limits::default()
        };
        h.run(&container).exit
    };
    let oom = limited("head -c 67108864 /dev/zero | tail > /dev/null");
    assert!(oom.oom_killed, "{oom:?}");
    assert_eq!(oom.code, 137, "{oom:?}");
    let fits = limited("head -c 8388608 /dev/zero | tail > /dev/null");
    assert_eq!(fits, exited(0));
}

#[test]
fn the_pids_limit_makes_fork_fail() {
    let Some(h) = harness() else { return };
    let script = "for i in $(seq 1 32); do sleep 2 & done; wait";
    let mut container = h.container(&["sh", "-c", script]);
    container.limits.pids = Some(16);
    let limited = h.run(&container);
    assert!(limited.stderr.contains("can't fork"), "{limited:?}");
    let free = h.run_args(&[
        "sh",
        "-c",
        "for i in $(seq 1 32); do sleep 0.1 & done; wait",
    ]);
    assert!(!free.stderr.contains("can't fork"), "{free:?}");
}

#[test]
fn writes_go_to_the_overlay_and_never_reach_the_root() {
    let Some(h) = harness() else { return };
    let ran = h.run_args(&[
        "sh",
        "-c",
        "echo hi > /written && rm /bin/true && cat /written",
    ]);
    assert_eq!(ran.stdout, "hi\n", "{ran:?}");
    assert!(!h.rootfs.join("written").exists());
    assert!(h.rootfs.join("bin/true").exists());
    let mut readonly = h.container(&["sh", "-c", "echo hi > /written"]);
    readonly.spec.readonly_rootfs = true;
    let refused = h.run(&readonly);
    assert_ne!(refused.exit.code, 0);
    assert!(
        refused.stderr.contains("Read-only file system"),
        "{refused:?}"
    );
}

#[test]
fn a_signal_reaches_the_command_through_the_init() {
    let Some(h) = harness() else { return };
    let container = h.container(&["sleep", "30"]);
    let (child, _output) = h.start(&container);
    // Once the command runs (a signal to a namespace's PID 1 before it blocks them would be
    // dropped, the container backend's concern, not the runner's).
    let children = format!("/proc/{0}/task/{0}/children", child.pid());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_to_string(&children)
        .unwrap_or_default()
        .trim()
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the command never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.signal(libc::SIGTERM).unwrap();
    let exit = child.wait().unwrap();
    assert_eq!(
        (exit.code, exit.signal),
        (143, Some(libc::SIGTERM)),
        "{exit:?}"
    );
    h.assert_nothing_left(&container);
}

#[test]
fn a_container_dropped_unwaited_is_killed_and_removed() {
    let Some(h) = harness() else { return };
    let container = h.container(&["sleep", "30"]);
    let (child, _output) = h.start(&container);
    let pid = child.pid();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(child);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the container was reaped"
    );
    h.assert_nothing_left(&container);
}

#[test]
fn limits_the_host_cannot_give_are_refused_and_leave_nothing() {
    let Some(h) = harness() else { return };
    let mut container = h.container(&["true"]);
    container.limits.cpuset_cpus = Some("4000".into());
    let null = || -> OwnedFd { std::fs::File::open("/dev/null").unwrap().into() };
    let err = h
        .sandbox
        .spawn(&container, [null(), null(), null()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("cpuset"), "{err}");
    h.assert_nothing_left(&container);
}

#[test]
fn an_event_loop_waits_on_the_exit_descriptor_and_collects_without_blocking() {
    let Some(h) = harness() else { return };
    let container = h.container(&["sh", "-c", "sleep 0.3; exit 4"]);
    let (mut child, _output) = h.start(&container);
    assert_eq!(child.try_wait().unwrap(), None, "it sleeps yet");
    let mut pollfd = libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(&child.exit_fd()),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll reads and writes one pollfd that lives across the call.
    let ready = unsafe { libc::poll(&mut pollfd, 1, 10_000) };
    assert_eq!(
        ready, 1,
        "the pidfd polls readable once the container exits"
    );
    assert_eq!(child.try_wait().unwrap(), Some(exited(4)));
    h.assert_nothing_left(&container);
    // Collected once: the cgroup and state are gone, and so is the container.
    assert!(child.try_wait().is_err());
}
