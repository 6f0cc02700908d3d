//! Harness for capsule's integration tests: find the `capsule` binary and a root filesystem,
//! run launches, and prove that nothing was left behind.
//!
//! Tests need root, the binary (`CAPSULE_BIN`, default `target/debug/capsule`) and a busybox
//! root filesystem (`CAPSULE_TEST_ROOTFS`, default `target/capsule/rootfs/busybox`);
//! `cargo xtask ci` provides all three. Without them a test is skipped with a message, except
//! under `CI=true`, where a missing requirement fails the test.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};

pub mod elf;

/// Launches in one test binary run one at a time, so "nothing left behind" can be checked
/// globally after each.
static SERIAL: Mutex<()> = Mutex::new(());

/// What a test needs, plus the lock that keeps launches from overlapping.
#[derive(Debug)]
pub struct Env {
    pub capsule: PathBuf,
    pub rootfs: PathBuf,
    _serial: MutexGuard<'static, ()>,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_owned()
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether a test may go on: `present` says its requirement (`what`, e.g. "root" or
/// "/dev/kvm") is met. A missing one skips the test with a message, except under `CI=true`,
/// where it fails it: CI must provide what the tests need. Every crate's tests use this one
/// rule (as a dev-dependency on this crate).
pub fn require(present: bool, what: &str) -> bool {
    if !present {
        assert!(
            !in_ci(),
            "this test needs {what}, and CI=true forbids skipping it"
        );
        eprintln!("skipped: this test needs {what}");
    }
    present
}

/// Returns the test environment, or `None` after printing why the test is skipped. Under
/// `CI=true` a missing requirement panics instead (see [`require`]).
pub fn env() -> Option<Env> {
    let capsule = std::env::var_os("CAPSULE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/debug/capsule"));
    let rootfs = std::env::var_os("CAPSULE_TEST_ROOTFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/capsule/rootfs/busybox"));
    let missing = if !nix_is_root() {
        Some("root (namespaces and cgroups)".to_owned())
    } else if !capsule.is_file() {
        Some(format!(
            "the capsule binary at {} (cargo build -p capsule)",
            capsule.display()
        ))
    } else if !rootfs.join("bin/busybox").is_file() {
        Some(format!(
            "a busybox rootfs at {} (cargo xtask rootfs busybox)",
            rootfs.display()
        ))
    } else {
        None
    };
    if let Some(what) = missing {
        require(false, &what);
        return None;
    }
    let serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Some(Env {
        capsule,
        rootfs,
        _serial: serial,
    })
}

/// The test environment from [`env`], or returns from the test: a skip, or under `CI=true` a
/// failure (`env` panics there).
#[macro_export]
macro_rules! env_or_skip {
    () => {
        match $crate::env() {
            Some(env) => env,
            None => return,
        }
    };
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The result of one `capsule run`, with its Outcome when one was written.
#[derive(Debug)]
pub struct Launch {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub outcome: serde_json::Value,
}

impl Env {
    /// `capsule run --rootfs <busybox> FLAGS -- CMD`, then checks nothing was left behind.
    pub fn run(&self, flags: &[&str], cmd: &[&str]) -> Launch {
        let mut args = vec!["--rootfs".to_owned(), self.rootfs.display().to_string()];
        args.extend(flags.iter().map(|s| s.to_string()));
        self.run_raw(&args, cmd)
    }

    /// `capsule run FLAGS -- CMD` exactly as given, then checks nothing was left behind.
    pub fn run_raw(&self, flags: &[String], cmd: &[&str]) -> Launch {
        let args = flags
            .iter()
            .map(OsStr::new)
            .chain(std::iter::once(OsStr::new("--")))
            .chain(cmd.iter().map(OsStr::new));
        self.run_args(args)
    }

    /// `capsule run --outcome FILE ARGS`, then checks nothing was left behind.
    pub fn run_args<I, S>(&self, args: I) -> Launch
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let outcome_path = dir.path().join("outcome.json");
        let output = Command::new(&self.capsule)
            .arg("run")
            .arg("--outcome")
            .arg(&outcome_path)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("capsule runs");
        let launch = to_launch(output, &outcome_path);
        assert_nothing_left();
        launch
    }

    pub fn command(&self) -> Command {
        Command::new(&self.capsule)
    }

    /// `capsule run --isolation ISOLATION --rootfs ROOTFS`, for a test to add its flags, `--`,
    /// command and stdio to.
    pub fn run_command(&self, isolation: &str) -> Command {
        let mut command = self.command();
        command
            .args(["run", "--isolation", isolation, "--rootfs"])
            .arg(&self.rootfs);
        command
    }

    /// A private copy of the busybox rootfs (`cp -a`), for a test that changes the image.
    pub fn copy_rootfs(&self) -> RootfsCopy {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("cp")
            .arg("-a")
            .arg(&self.rootfs)
            .arg(dir.path().join("rootfs"))
            .status()
            .expect("cp runs");
        assert!(status.success(), "cp -a {}", self.rootfs.display());
        RootfsCopy { dir }
    }

    /// `capsule run --rootfs ROOTFS FLAGS -- CMD`, then checks nothing was left behind.
    pub fn run_on(&self, rootfs: &Path, flags: &[&str], cmd: &[&str]) -> Launch {
        let mut args = vec!["--rootfs".to_owned(), rootfs.display().to_string()];
        args.extend(flags.iter().map(|s| s.to_string()));
        self.run_raw(&args, cmd)
    }

    /// [`Env::run_on`] with `--isolation ISOLATION` first, the Launch printed to the test's
    /// output: the lab's console shows it when the test fails.
    pub fn run_isolated_on(
        &self,
        rootfs: &Path,
        isolation: &str,
        flags: &[&str],
        cmd: &[&str],
    ) -> Launch {
        let mut all = vec!["--isolation", isolation];
        all.extend_from_slice(flags);
        let launch = self.run_on(rootfs, &all, cmd);
        eprintln!("{launch:?}");
        launch
    }
}

/// [`env`] in the nested lab, which always provides capsule, the rootfs and the guest: a lab
/// test without them fails rather than skips.
pub fn lab_env() -> Env {
    env().expect("the lab provides capsule, the rootfs and the guest")
}

/// A root filesystem of a test's own, removed with the value; `dir()` holds it at `rootfs` and
/// has room beside it for the host files a test needs.
#[derive(Debug)]
pub struct RootfsCopy {
    dir: tempfile::TempDir,
}

impl RootfsCopy {
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn to_launch(output: Output, outcome_path: &Path) -> Launch {
    let outcome = std::fs::read(outcome_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null);
    Launch {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        outcome,
    }
}

/// Every capsule cgroup below the v1 and v2 roots, every launch directory, every mount whose
/// path names capsule, every process inside a capsule cgroup and every virtiofsd serving a
/// socket of capsule's.
pub fn leftovers() -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
        let mut parents: Vec<PathBuf> = hierarchies
            .flatten()
            .map(|h| h.path().join("capsule"))
            .collect();
        parents.push(PathBuf::from("/sys/fs/cgroup/capsule"));
        for parent in parents {
            if let Ok(children) = std::fs::read_dir(&parent) {
                found.extend(
                    children
                        .flatten()
                        .filter(|c| c.path().is_dir())
                        .map(|c| format!("cgroup {}", c.path().display())),
                );
            }
        }
    }
    for root in [
        PathBuf::from("/run/capsule"),
        std::env::temp_dir().join("capsule-65534"),
    ] {
        if let Ok(entries) = std::fs::read_dir(&root) {
            found.extend(
                entries
                    .flatten()
                    .map(|e| format!("state {}", e.path().display())),
            );
        }
    }
    if let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") {
        found.extend(
            mounts
                .lines()
                .filter(|l| l.contains("/capsule/") || l.contains("capsule-"))
                .map(|l| format!("mount {l}")),
        );
    }
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.flatten() {
            let cgroup = std::fs::read_to_string(p.path().join("cgroup")).unwrap_or_default();
            // A zombie holds nothing but its pid. After a killed capsule, the container's init
            // is reparented to the host's PID 1, which may take a while to reap it.
            let status = std::fs::read_to_string(p.path().join("status")).unwrap_or_default();
            if status
                .lines()
                .any(|l| l.starts_with("State:") && l.contains('Z'))
            {
                continue;
            }
            // A virtiofsd capsule started serves a socket in capsule's run directory.
            let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if status.lines().next() == Some("Name:\tvirtiofsd") && cmdline.contains("capsule") {
                found.push(format!(
                    "process {} (virtiofsd): {}",
                    p.file_name().to_string_lossy(),
                    cmdline.trim()
                ));
            }
            if cgroup.lines().any(|l| l.contains("/capsule/")) {
                found.push(format!(
                    "process {} in {}",
                    p.file_name().to_string_lossy(),
                    cgroup.trim()
                ));
            }
        }
    }
    found
}

/// The virtiofsd binary the tests run: `$CAPSULE_VIRTIOFSD`, else `cargo xtask virtiofsd`'s
/// (`~/.cache/capsule/tools/bin/virtiofsd`), else `virtiofsd` on `PATH`; `None` when none
/// is there.
pub fn virtiofsd() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::var_os("CAPSULE_VIRTIOFSD")
        .map(PathBuf::from)
        .into_iter()
        .chain([home.join(".cache/capsule/tools/bin/virtiofsd")])
        .chain(std::env::split_paths(&path).map(|dir| dir.join("virtiofsd")))
        .find(|candidate| candidate.is_file())
}

/// Fails the test if any launch left anything behind.
pub fn assert_nothing_left() {
    let left = leftovers();
    assert!(left.is_empty(), "left behind:\n{}", left.join("\n"));
}
