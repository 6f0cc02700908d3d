//! The sandbox's side of a kata launch: the guest's cgroup v2 hierarchy, the container's root,
//! and the container itself, built with ns-core and limited with cgroup-core.
//!
//! Order of creation, undone in reverse on every path: the container's cgroup (its limits
//! applied), the container (ns-core, with capsule-init itself as its PID 1), and after it
//! ends, its statistics (`memory.events`' `oom_kill`) read before the cgroup and the state
//! ns-core left in the state directory are removed.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use cgroup_core::{Cgroup, Layout};
use nix::errno::Errno;
use nix::mount::{MsFlags, mount};
use ns_core::{ExitStatus, Init, Mount, MountKind, Running, Signaller};

use super::{CONTAINER_ROOTFS, CONTAINER_STATE, GuestContainer, KataRoot};

/// Where the guest's cgroup v2 hierarchy is mounted, and where the container sees its own.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The controllers cgroup-core can limit with, enabled in the guest root's
/// `cgroup.subtree_control` where the guest kernel has them (cgroup-v2.rst, "Controlling
/// Controllers").
const CONTROLLERS: &[&str] = &["cpuset", "cpu", "io", "memory", "pids"];

/// The name the container sees as its PID 1's `argv[0]`, as with the container backend.
const INIT_NAME: &str = "capsule-init";

/// What failed building or running the container in the guest.
#[derive(Debug, thiserror::Error)]
pub enum KataError {
    /// A mount the sandbox needs was refused.
    #[error("mounting {what} on {target}: {source}")]
    Mount {
        /// What was mounted (`cgroup2`, `/dev/vda (ext4)`).
        what: String,
        /// Where.
        target: String,
        /// mount(2)'s errno.
        source: Errno,
    },
    /// A file or directory of the sandbox could not be made, read or removed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done (`reading`, `creating`).
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The container's cgroup could not be created, limited, read or removed; a limit the
    /// guest kernel cannot give is [`cgroup_core::Error::InvalidLimits`].
    #[error("the container's cgroup: {0}")]
    Cgroup(#[from] cgroup_core::Error),
    /// ns-core could not create the container.
    #[error(transparent)]
    Container(#[from] ns_core::Error),
}

/// How the container ended: its PID 1's status as a shell reports it, and whether the OOM
/// killer killed anything in its cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KataExit {
    /// The exit code, 128 + the signal that killed it, 127 when the command does not exist,
    /// 126 when it cannot be executed, 125 when the container could not be built.
    pub code: i32,
    /// The signal that killed the container's PID 1.
    pub signal: Option<i32>,
    /// The OOM killer killed a process of the container (`oom_kill` in `memory.events`).
    pub oom_killed: bool,
    /// Why the command did not run (125, 126, 127), as one sentence for the host's Outcome.
    pub error: Option<String>,
}

/// The guest's side of kata launches: its cgroup hierarchy and the program that becomes each
/// container's PID 1.
#[derive(Debug)]
pub struct Sandbox {
    cgroups: Layout,
    init: Vec<u8>,
}

impl Sandbox {
    /// A sandbox on the cgroup hierarchy `cgroups`, running `init_program` (the bytes of
    /// capsule-init, a static ELF executable) as each container's PID 1 from a sealed memfd.
    pub fn new(cgroups: Layout, init_program: Vec<u8>) -> Sandbox {
        Sandbox {
            cgroups,
            init: init_program,
        }
    }

    /// The sandbox in a guest whose PID 1 is capsule-init: mounts cgroup2 at `/sys/fs/cgroup`
    /// (Debian's cloud kernel is cgroup v2 only), enables in its root every controller of
    /// [`CONTROLLERS`] the kernel has (one it lacks is left out here, and refused with the
    /// limit that needs it by [`Sandbox::spawn`]), and takes capsule-init's own bytes from
    /// `/proc/self/exe`.
    ///
    /// # Errors
    ///
    /// [`KataError::Mount`] when cgroup2 cannot be mounted, [`KataError::Io`] when a file of
    /// it or `/proc/self/exe` cannot be read, [`KataError::Cgroup`] when the hierarchy is not
    /// found afterwards.
    pub fn in_guest() -> Result<Sandbox, KataError> {
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        match mount(
            Some("cgroup2"),
            CGROUP_ROOT,
            Some("cgroup2"),
            flags,
            None::<&str>,
        ) {
            Ok(()) | Err(Errno::EBUSY) => {}
            Err(source) => {
                return Err(KataError::Mount {
                    what: "cgroup2".into(),
                    target: CGROUP_ROOT.into(),
                    source,
                });
            }
        }
        let root = Path::new(CGROUP_ROOT);
        let available = read(&root.join("cgroup.controllers"))?;
        let control = root.join("cgroup.subtree_control");
        for controller in CONTROLLERS {
            if available.split_whitespace().any(|c| c == *controller) {
                // One at a time: a write naming several fails whole when one is refused.
                // A refusal shows as the controller missing from subtree_control, which
                // cgroup-core reports with the limit that needs it.
                let _ = std::fs::write(&control, format!("+{controller}"));
            }
        }
        let cgroups = cgroup_core::detect()?;
        let init = std::fs::read("/proc/self/exe").map_err(|source| KataError::Io {
            what: "reading",
            path: "/proc/self/exe".into(),
            source,
        })?;
        Ok(Sandbox::new(cgroups, init))
    }

    /// Mounts the container's root in the guest: `container.root` read-only at
    /// [`CONTAINER_ROOTFS`], and a tmpfs for its state (the overlay's upper layer, in guest
    /// RAM) at [`CONTAINER_STATE`]. Once per guest, before [`Sandbox::spawn`].
    ///
    /// # Errors
    ///
    /// [`KataError::Io`] when a mount point cannot be made, [`KataError::Mount`] when a mount
    /// is refused (no such device, not ext4, no such virtio-fs tag).
    pub fn mount_root(container: &GuestContainer) -> Result<(), KataError> {
        let (source, fstype) = match &container.root {
            KataRoot::Disk(device) => (device.as_str(), "ext4"),
            KataRoot::Virtiofs(tag) => (tag.as_str(), "virtiofs"),
        };
        let mounts = [
            (source, CONTAINER_ROOTFS, fstype, MsFlags::MS_RDONLY, ""),
            (
                "tmpfs",
                CONTAINER_STATE,
                "tmpfs",
                MsFlags::empty(),
                // Traversable, not listable: the root the container's user namespace maps
                // (a guest uid other than 0) must reach the layers ns-core attaches below it.
                "mode=0711",
            ),
        ];
        for (source, target, fstype, flags, data) in mounts {
            std::fs::create_dir_all(target).map_err(|e| KataError::Io {
                what: "creating",
                path: target.into(),
                source: e,
            })?;
            mount(Some(source), target, Some(fstype), flags, Some(data)).map_err(|e| {
                KataError::Mount {
                    what: format!("{source} ({fstype})"),
                    target: target.into(),
                    source: e,
                }
            })?;
        }
        Ok(())
    }

    /// Builds and starts `container`: its cgroup with its limits, then the container with
    /// `stdio` (stdin, stdout, stderr) as its streams and capsule-init as its PID 1. The
    /// container sees its own cgroup at `/sys/fs/cgroup`, read-only, as with crun and runc.
    /// `stdio` is closed here once the container holds its copies, so a pipe's reader sees
    /// EOF when the container's last writer ends.
    ///
    /// # Errors
    ///
    /// [`KataError::Cgroup`] for limits the guest kernel cannot give or a cgroup it refuses,
    /// [`KataError::Container`] when ns-core cannot create the container. Nothing is left
    /// behind.
    pub fn spawn(
        &self,
        container: &GuestContainer,
        stdio: [OwnedFd; 3],
    ) -> Result<KataChild, KataError> {
        let mut spec = container.spec.clone();
        spec.mounts.insert(
            0,
            Mount {
                destination: CGROUP_ROOT.into(),
                kind: MountKind::Kernel {
                    fstype: "cgroup2".into(),
                    options: None,
                },
                readonly: true,
            },
        );
        let init = spec
            .init
            .then(|| Init::sealed(INIT_NAME, &self.init))
            .transpose()?;
        let cgroup = Cgroup::create(&self.cgroups, &spec.id, &container.limits)?;
        let [stdin, stdout, stderr] = &stdio;
        let spawned = ns_core::spawn_with_stdio(
            &spec,
            init.as_ref(),
            [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()],
            |pid| Ok(cgroup.add_task(pid)?),
        );
        let cleanup = |cgroup: Cgroup| {
            // What failed is the error to report; a cgroup left over is `capsule gc`'s, but a
            // guest ends with its launch anyway.
            let _ = cgroup.remove();
            let _ = clear_dir(&spec.state_dir);
        };
        let running = match spawned {
            Ok(running) => running,
            Err(e) => {
                cleanup(cgroup);
                return Err(e.into());
            }
        };
        let signaller = match running.signaller() {
            Ok(signaller) => signaller,
            Err(e) => {
                drop(running);
                cleanup(cgroup);
                return Err(e.into());
            }
        };
        Ok(KataChild {
            pid: running.pid(),
            running: Some(running),
            signaller,
            cgroup: Some(cgroup),
            state_dir: spec.state_dir.clone(),
        })
    }
}

/// A running kata container; [`KataChild::wait`] collects it, or [`KataChild::try_wait`] in
/// an event loop once [`KataChild::exit_fd`] polls readable. Dropped without either, it kills
/// the container and removes its cgroup and state.
#[derive(Debug)]
pub struct KataChild {
    pid: i32,
    running: Option<Running>,
    /// The container PID 1's pidfd, for signals and [`KataChild::exit_fd`].
    signaller: Signaller,
    cgroup: Option<Cgroup>,
    state_dir: PathBuf,
}

impl KataChild {
    /// The container's PID 1 in the guest's pid namespace.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends `signal` to the container's PID 1 (capsule-init forwards it to the command, or
    /// the command is PID 1 itself), through its pidfd: a container that has ended refuses it
    /// (`ESRCH`) rather than a process that reused its pid receiving it.
    ///
    /// # Errors
    ///
    /// `ESRCH` once the container has ended, `EINVAL` for a number that is no signal.
    pub fn signal(&self, signal: i32) -> Result<(), Errno> {
        self.signaller.send(signal)
    }

    /// A descriptor that polls readable once the container's PID 1 has exited (its pidfd):
    /// [`KataChild::try_wait`] then returns at once.
    pub fn exit_fd(&self) -> BorrowedFd<'_> {
        self.signaller.as_fd()
    }

    /// How the container ended, once it has ([`KataChild::wait`]'s answer, the cgroup and
    /// state removed); `None` while it runs. Never blocks.
    ///
    /// # Errors
    ///
    /// As [`KataChild::wait`]; [`KataError::Container`] when it was already collected.
    pub fn try_wait(&mut self) -> Result<Option<KataExit>, KataError> {
        let mut pollfd = libc::pollfd {
            fd: self.signaller.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll reads and writes one pollfd that lives across the call; no timeout.
        let ready = unsafe { libc::poll(&mut pollfd, 1, 0) };
        if ready <= 0 {
            return Ok(None);
        }
        self.collect().map(Some)
    }

    /// Waits for the container to end, reads whether the OOM killer struck in its cgroup, and
    /// removes its cgroup and state. A command that could not run is an exit (125, 126, 127)
    /// with its reason, not an error.
    ///
    /// # Errors
    ///
    /// [`KataError::Container`] when waiting fails, [`KataError::Cgroup`] or
    /// [`KataError::Io`] when the cleanup does.
    pub fn wait(mut self) -> Result<KataExit, KataError> {
        self.collect()
    }

    fn collect(&mut self) -> Result<KataExit, KataError> {
        let status = match self.running.take() {
            Some(running) => running.wait(),
            None => Err(ns_core::Error::Invalid(
                "the container was already collected".into(),
            )),
        };
        let oom_killed = self
            .cgroup
            .as_ref()
            .and_then(|cgroup| cgroup.stats().ok())
            .is_some_and(|stats| stats.oom_kills > 0);
        self.release()?;
        let (code, signal, error) = match status {
            Ok(ExitStatus::Exited(code)) => (code, None, None),
            Ok(ExitStatus::Signaled(signal)) => (128 + signal, Some(signal), None),
            Err(e @ ns_core::Error::CommandNotFound { .. }) => (127, None, Some(e.to_string())),
            Err(e @ ns_core::Error::CommandNotExecutable { .. }) => {
                (126, None, Some(e.to_string()))
            }
            Err(e @ (ns_core::Error::Setup { .. } | ns_core::Error::Vanished(_))) => {
                (125, None, Some(e.to_string()))
            }
            Err(other) => return Err(other.into()),
        };
        Ok(KataExit {
            code,
            signal,
            oom_killed,
            error,
        })
    }

    /// Kills what is left (the container, anything in its cgroup), removes the cgroup, then
    /// what ns-core made in the state directory (the directory itself is the caller's).
    fn release(&mut self) -> Result<(), KataError> {
        drop(self.running.take());
        let cgroup = self.cgroup.take().map(Cgroup::remove).transpose();
        let state = clear_dir(&self.state_dir);
        cgroup?;
        state
    }
}

impl Drop for KataChild {
    fn drop(&mut self) {
        // The only way an error here could be reported is wait's, which was not called.
        let _ = self.release();
    }
}

/// Removes everything in `dir`, keeping `dir` (in the guest a tmpfs's mount point).
fn clear_dir(dir: &Path) -> Result<(), KataError> {
    let failed = |what, path: &Path| {
        let path = path.to_owned();
        move |source| KataError::Io { what, path, source }
    };
    let entries = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        entries => entries.map_err(failed("listing", dir))?,
    };
    for entry in entries {
        let path = entry.map_err(failed("listing", dir))?.path();
        let removed = if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(failed("removing", &path))?;
    }
    Ok(())
}

fn read(path: &Path) -> Result<String, KataError> {
    std::fs::read_to_string(path).map_err(|source| KataError::Io {
        what: "reading",
        path: path.to_owned(),
        source,
    })
}
