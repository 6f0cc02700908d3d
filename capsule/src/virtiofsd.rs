//! virtiofsd, the daemon that serves a microVM's shared host directories (the Plan's bind
//! mounts) over vhost-user: one per directory, per launch.
//!
//! Each runs in its own sandbox, virtiofsd's default `--sandbox namespace`: as root it
//! enters new mount, PID and network namespaces and pivots into the shared directory, so
//! whatever the guest asks (a symlink to `/etc`, `..` from the share's root) resolves inside
//! it; its seccomp filter (`--seccomp kill`) ends it on any other system call. A read-only
//! share is `--readonly` in the daemon too: it answers every write with EROFS whatever the
//! guest's mount says.
//!
//! The daemons start before the VM is built (the device connects and negotiates then), their
//! sockets and logs in the launch's directory under capsule's run directory, and stop on every
//! path: [`Daemons`]' drop kills each by its PID, reaps it and removes its socket and log. Each is started with PR_SET_PDEATHSIG, so a capsule killed with SIGKILL leaves no
//! daemon either (virtiofsd's sandboxed child has its own, on its parent).

use std::ffi::OsString;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use devices::virtio::VirtioDevice;
use devices::virtio::fs::Fs;
use guest_init::GuestConfig;
use plan::{MountType, Plan, Problem, RootVia};

/// The command that installs virtiofsd where capsule looks for it.
pub const INSTALL: &str = "cargo xtask virtiofsd";

/// How long a daemon may take to create its socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the daemons could not be started.
#[derive(Debug, thiserror::Error)]
pub enum VirtiofsdError {
    /// No virtiofsd binary where capsule looks.
    #[error(
        "virtiofsd is not installed (looked at $CAPSULE_VIRTIOFSD, {} and PATH): run `{INSTALL}`",
        tools_dir().join("virtiofsd").display()
    )]
    Missing,
    /// Spawning it failed.
    #[error("starting {} for {share}: {source}", .binary.display())]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The shared directory.
        share: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It exited, or made no socket in time.
    #[error("virtiofsd for {}: {reason}", .share.display())]
    Start {
        /// The shared directory.
        share: PathBuf,
        /// What happened, with its log's last lines.
        reason: String,
    },
}

/// Where `cargo xtask virtiofsd` installs tools: `~/.cache/capsule/tools/bin`.
pub fn tools_dir() -> PathBuf {
    tools_dir_in(&|name| std::env::var_os(name))
}

fn tools_dir_in(env: &dyn Fn(&str) -> Option<OsString>) -> PathBuf {
    let home = env("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/capsule/tools/bin")
}

/// The virtiofsd to run: `$CAPSULE_VIRTIOFSD`, else [`tools_dir`]'s, else `virtiofsd` on
/// `PATH`.
///
/// Errors: [`VirtiofsdError::Missing`].
pub fn find() -> Result<PathBuf, VirtiofsdError> {
    find_in(&|name| std::env::var_os(name))
}

/// [`find`] with the environment read through `env`.
fn find_in(env: &dyn Fn(&str) -> Option<OsString>) -> Result<PathBuf, VirtiofsdError> {
    if let Some(path) = env("CAPSULE_VIRTIOFSD").filter(|p| !p.is_empty()) {
        // Given explicitly: that one or none.
        let path = PathBuf::from(path);
        return path
            .is_file()
            .then_some(path)
            .ok_or(VirtiofsdError::Missing);
    }
    let path = env("PATH").unwrap_or_default();
    std::iter::once(tools_dir_in(env).join("virtiofsd"))
        .chain(std::env::split_paths(&path).map(|dir| dir.join("virtiofsd")))
        .find(|candidate| candidate.is_file())
        .ok_or(VirtiofsdError::Missing)
}

/// The Plan's tmpfs mounts, as capsule-init makes them in the guest.
pub fn guest_tmpfs(plan: &Plan) -> Vec<guest_init::Tmpfs> {
    plan.mounts
        .iter()
        .filter(|m| m.kind == MountType::Tmpfs)
        .map(|m| guest_init::Tmpfs {
            destination: m.destination.to_string_lossy().into_owned(),
            size: m.size,
            readonly: m.readonly,
        })
        .collect()
}

/// The virtio-fs tag of the Plan's `index`-th bind mount (counting bind mounts only).
pub fn tag(index: usize) -> String {
    format!("share{index}")
}

/// The virtio-fs tag of a root directory shared over virtio-fs.
pub const ROOT_TAG: &str = "root";

/// What is wrong with the Plan's shared directories on this host: each bind source must be a
/// directory (virtiofsd shares directories, not files), and virtiofsd must be installed.
pub fn problems(plan: &Plan) -> Vec<Problem> {
    problems_with(plan, &find)
}

/// [`problems`] with virtiofsd looked for through `find`.
fn problems_with(plan: &Plan, find: &dyn Fn() -> Result<PathBuf, VirtiofsdError>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut binds = 0;
    for (i, mount) in plan.mounts.iter().enumerate() {
        let (MountType::Bind, Some(source)) = (mount.kind, &mount.source) else {
            continue;
        };
        binds += 1;
        let why = match std::fs::metadata(source) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => {
                "is not a directory: a microVM shares directories over virtio-fs, not single files"
                    .to_owned()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "no such directory".to_owned(),
            Err(e) => e.to_string(),
        };
        problems.push(
            Problem::new(
                format!("mounts[{i}]"),
                format!(
                    "mounts {} (source {})",
                    mount.destination.display(),
                    source.display()
                ),
                why,
            )
            .fixes(
                "share an existing directory (its parent, for a file)",
                "bind() an existing directory (its parent, for a file)",
            ),
        );
    }
    // One problem for a missing virtiofsd, whichever shares need it: kata's root over
    // virtio-fs (validation refuses `vm.rootVia` elsewhere) and the bind mounts.
    let root_shared = plan
        .vm
        .as_ref()
        .is_some_and(|vm| vm.root_via == RootVia::Virtiofs);
    if (binds > 0 || root_shared)
        && let Err(error) = find()
    {
        let (field, subject, flag, call) = if binds > 0 {
            ("mounts", "mounts", "drop --volume", "drop bind()")
        } else {
            (
                "vm.rootVia",
                "vm.rootVia virtiofs",
                "drop --root-via virtiofs",
                "drop root_via(\"virtiofs\")",
            )
        };
        problems.push(Problem::new(field, subject, error.to_string()).fixes(
            format!("run `{INSTALL}`, set CAPSULE_VIRTIOFSD, or {flag}"),
            format!("run `{INSTALL}`, set CAPSULE_VIRTIOFSD, or {call}"),
        ));
    }
    problems
}

/// One running daemon.
#[derive(Debug)]
struct Daemon {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
    /// The host directory it serves.
    source: PathBuf,
    share: guest_init::Share,
}

/// The daemons of one launch, one per bind mount of its Plan; all stopped, and their sockets
/// and logs removed, on drop.
#[derive(Debug)]
pub struct Daemons {
    /// The root directory's, shared read-only as [`ROOT_TAG`] (a kata container's root with
    /// `vm.rootVia` virtio-fs); the guest mounts it itself, not as a share.
    root: Option<Daemon>,
    daemons: Vec<Daemon>,
}

impl Daemons {
    /// Starts one virtiofsd per bind mount of `plan`, each sharing its source at tag
    /// `share<i>`, and with `root` one more sharing that directory read-only at [`ROOT_TAG`],
    /// their sockets and logs in `dir` (the launch's directory, which the caller removes after
    /// dropping these), and waits for their sockets.
    ///
    /// Errors: [`VirtiofsdError`] (what was started is stopped again).
    pub fn start(plan: &Plan, dir: &Path, root: Option<&Path>) -> Result<Daemons, crate::Error> {
        let binds: Vec<_> = plan
            .mounts
            .iter()
            .filter(|m| m.kind == MountType::Bind)
            .collect();
        let mut daemons = Daemons {
            root: None,
            daemons: Vec::new(),
        };
        if binds.is_empty() && root.is_none() {
            return Ok(daemons);
        }
        let binary = find()?;
        if let Some(source) = root {
            let share = guest_init::Share {
                tag: ROOT_TAG.to_owned(),
                destination: "/".to_owned(),
                readonly: true,
            };
            daemons.root = Some(Daemon::start(&binary, dir, source, share)?);
        }
        for (i, mount) in binds.into_iter().enumerate() {
            let Some(source) = &mount.source else {
                continue;
            };
            let share = guest_init::Share {
                tag: tag(i),
                destination: mount.destination.to_string_lossy().into_owned(),
                readonly: mount.readonly,
            };
            let daemon = Daemon::start(&binary, dir, source, share)?;
            daemons.daemons.push(daemon);
        }
        Ok(daemons)
    }

    /// What the guest mounts, in the order of the devices.
    pub fn shares(&self) -> Vec<guest_init::Share> {
        self.daemons.iter().map(|d| d.share.clone()).collect()
    }

    /// Tells the guest to load virtio-fs's modules and mount the shares: at their
    /// destinations inside its root, or with `at`, at `at/TAG` (a kata sandbox's, which binds
    /// them into its container).
    pub fn add_to(&self, guest: &mut GuestConfig, at: Option<&str>) {
        if self.daemons.is_empty() && self.root.is_none() {
            return;
        }
        guest.shares = self.shares();
        if let Some(dir) = at {
            for share in &mut guest.shares {
                share.destination = format!("{dir}/{}", share.tag);
            }
        }
        guest
            .modules
            .extend(guest_init::SHARE_MODULES.iter().map(|m| m.to_string()));
    }

    /// One virtio-fs device per daemon, connected and negotiated.
    ///
    /// Errors: [`crate::Error::Device`] naming the share.
    pub fn devices(&self) -> Result<Vec<Box<dyn VirtioDevice>>, crate::Error> {
        self.root
            .iter()
            .chain(&self.daemons)
            .map(|daemon| {
                Fs::new(&daemon.share.tag, &daemon.socket)
                    .map(|fs| Box::new(fs) as Box<dyn VirtioDevice>)
                    .map_err(|source| crate::Error::Device {
                        what: format!(
                            "shared directory {}{}",
                            daemon.share.destination,
                            daemon.last_words()
                        ),
                        source: source.into(),
                    })
            })
            .collect()
    }

    /// Why `device` (as [`Fs`] names it) lost its backend mid-run, for the launch's error:
    /// which directory, how its virtiofsd ended and what it said last; none when no daemon
    /// of these serves that device.
    pub fn explain_loss(&mut self, device: &str) -> Option<String> {
        let daemon = self
            .root
            .iter_mut()
            .chain(&mut self.daemons)
            .find(|daemon| Fs::device_name(&daemon.share.tag) == device)?;
        // Its socket hangs up as it exits: give the exit a moment to be seen.
        let started = Instant::now();
        let status = loop {
            match daemon.child.try_wait() {
                Ok(None) if started.elapsed() < LOSS_EXIT_WAIT => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(status) => break status,
                Err(_) => break None,
            }
        };
        let how = status.map_or_else(
            || "closed its socket".to_owned(),
            |status| format!("ended ({status})"),
        );
        Some(format!(
            "the virtiofsd serving {} at {} {how} while the guest ran{}: the guest cannot \
             reach that directory any more, so capsule stopped the VM",
            daemon.source.display(),
            daemon.share.destination,
            daemon.last_words()
        ))
    }
}

/// How long [`Daemons::explain_loss`] waits for a daemon that hung up to exit.
const LOSS_EXIT_WAIT: Duration = Duration::from_secs(1);

impl Drop for Daemons {
    fn drop(&mut self) {
        for daemon in self.root.iter_mut().chain(&mut self.daemons) {
            daemon.stop();
        }
    }
}

impl Daemon {
    fn start(
        binary: &Path,
        dir: &Path,
        source: &Path,
        share: guest_init::Share,
    ) -> Result<Daemon, VirtiofsdError> {
        let socket = dir.join(format!("{}.sock", share.tag));
        let log_path = dir.join(format!("{}.log", share.tag));
        let log =
            std::fs::File::create(&log_path).map_err(|source_error| VirtiofsdError::Spawn {
                binary: binary.to_owned(),
                share: source.to_owned(),
                source: source_error,
            })?;
        let mut command = Command::new(binary);
        command
            .arg("--socket-path")
            .arg(&socket)
            .arg("--shared-dir")
            .arg(source)
            .args(["--sandbox", "namespace", "--log-level", "error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if share.readonly {
            command.arg("--readonly");
        }
        // Its own process group, which its sandboxed child (forked into the new PID namespace)
        // shares: `stop` kills both at once, so neither outlives the launch by a moment.
        command.process_group(0);
        // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
        // async-signal-safe and allocates nothing.
        unsafe {
            command.pre_exec(|| {
                // A capsule that dies, however, takes its daemons with it.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|source_error| VirtiofsdError::Spawn {
                binary: binary.to_owned(),
                share: source.to_owned(),
                source: source_error,
            })?;
        let mut daemon = Daemon {
            child,
            socket,
            log: log_path,
            source: source.to_owned(),
            share,
        };
        let failed = |daemon: &mut Daemon, what: String| {
            // Read before `stop` removes the log.
            let reason = match daemon.last_lines() {
                Some(last) => format!("{what}: {last}"),
                None => what,
            };
            daemon.stop();
            VirtiofsdError::Start {
                share: source.to_owned(),
                reason,
            }
        };
        let started = Instant::now();
        while !daemon.socket.exists() {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                return Err(failed(
                    &mut daemon,
                    format!("it exited at start ({status})"),
                ));
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(failed(
                    &mut daemon,
                    format!("it made no socket within {START_TIMEOUT:?}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(daemon)
    }

    /// The end of the daemon's log, as `(virtiofsd said: ...)`, or nothing when it said
    /// nothing: why a daemon that started went away.
    fn last_words(&self) -> String {
        self.last_lines()
            .map(|last| format!(" (virtiofsd said: {last})"))
            .unwrap_or_default()
    }

    /// The log's last three lines, joined by ` / `; none when it is empty.
    fn last_lines(&self) -> Option<String> {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut last: Vec<&str> = log.lines().rev().take(3).collect();
        last.reverse();
        (!last.is_empty()).then(|| last.join(" / "))
    }

    /// Kills the daemon and its sandboxed child by their process group (not once reaped), reaps
    /// it and removes its files: the
    /// socket, the `<socket>.pid` lock virtiofsd writes beside it, and the log.
    fn stop(&mut self) {
        // Its sandboxed child, to wait for after the kill: it dies of its parent's death
        // (PR_SET_PDEATHSIG), a moment after the parent.
        let sandboxed = if let Ok(None) = self.child.try_wait() {
            let children = children_of(self.child.id());
            if let Ok(group) = i32::try_from(self.child.id()) {
                // The group is the daemon's own (`process_group(0)`), alive until it is reaped.
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(group),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            children
        } else {
            Vec::new()
        };
        let _ = self.child.wait();
        let mut pid_file = self.socket.clone().into_os_string();
        pid_file.push(".pid");
        for file in [&self.socket, Path::new(&pid_file), &self.log] {
            let _ = std::fs::remove_file(file);
        }
        for child in sandboxed {
            let mut poll = [nix::poll::PollFd::new(
                child.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            // Readable once it exited; bounded, as it dies of a SIGKILL.
            let _ = nix::poll::poll(&mut poll, nix::poll::PollTimeout::from(1000u16));
        }
    }
}

/// A pidfd (pidfd_open(2)) for each child of `pid` (`/proc/PID/task/*/children`), to wait on.
fn children_of(pid: u32) -> Vec<OwnedFd> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|children| {
            children
                .split_whitespace()
                .filter_map(|c| c.parse::<libc::pid_t>().ok())
                .collect::<Vec<_>>()
        })
        .filter_map(|child| {
            // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1;
            // no memory of ours is involved.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child, 0) };
            let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
            // SAFETY: `fd` was just returned by pidfd_open and is owned by nobody else.
            Some(unsafe { OwnedFd::from_raw_fd(fd) })
        })
        .collect()
}

#[cfg(test)]
mod tests;
