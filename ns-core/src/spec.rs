//! What a caller asks for: one container, described as plain data.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use plan::{DEFAULT_PATH, IdMaps, Process, SeccompProfile};

/// One container: its root filesystem, its process and the privileges it keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Identifies the container in error messages and as the default hostname.
    pub id: String,
    /// The directory that becomes `/`.
    pub rootfs: PathBuf,
    /// Mount `rootfs` read-only. When false, writes go to an overlay upper layer in
    /// `state_dir`, which the caller discards; the source directory is never changed.
    pub readonly_rootfs: bool,
    /// A directory private to this launch, on the host, where the root filesystem is assembled
    /// (and, when writable, the overlay's upper and work layers live).
    pub state_dir: PathBuf,
    /// The hostname inside; absent, the id.
    pub hostname: Option<String>,
    /// What runs, as the `plan` crate describes a process for every isolation. `env` is the
    /// whole environment (the caller adds its defaults); a command without `/` is searched in
    /// its `PATH`.
    pub process: Process,
    /// The process's seccomp filter.
    pub seccomp: SeccompProfile,
    /// Mounts added after the default ones, in order. Read-only ones are remounted read-only
    /// after all of them exist, so a read-only tmpfs can hold later mount points.
    pub mounts: Vec<Mount>,
    /// Paths hidden from the container (a file behind `/dev/null`, a directory behind an
    /// empty read-only tmpfs).
    pub masked_paths: Vec<PathBuf>,
    /// Paths remounted read-only.
    pub readonly_paths: Vec<PathBuf>,
    /// Map ids through a new user namespace; required when the caller is not root.
    pub user_namespace: Option<IdMaps>,
    /// The command's stdin is `/dev/null` rather than the caller's (as `docker run` without
    /// `-i`); for launches that run at once, none of which may own a terminal's input.
    pub null_stdin: bool,
    /// The command's stdin is a terminal (a pseudo-terminal's slave) for the container's PID 1
    /// to make its controlling terminal in a session of its own (setsid(2), `TIOCSCTTY`), as
    /// OCI's `process.terminal`: the terminal's `^C` and job control reach the container. It
    /// must be a terminal no other session controls (a launcher's own terminal is one): the
    /// set-up fails on it with EPERM.
    #[serde(default)]
    pub terminal: bool,
    /// Run an init as PID 1 that reaps zombies and forwards signals, with the command as its
    /// child (as `docker run --init`); the caller passes the program to [`spawn`](crate::spawn)
    /// as an [`Init`](crate::Init). When false the command itself is PID 1.
    pub init: bool,
}

/// A mount added to the container, at `destination` inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Where, inside the container (absolute).
    pub destination: PathBuf,
    /// What.
    pub kind: MountKind,
    /// Read-only (recursively for a bind mount).
    pub readonly: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
/// What a [`Mount`] mounts.
pub enum MountKind {
    /// A host path bound into the container.
    Bind {
        /// The host path.
        source: PathBuf,
    },
    /// A fresh tmpfs; `size` in bytes (the kernel's default when absent).
    Tmpfs {
        /// Bytes.
        size: Option<u64>,
    },
    /// A kernel file system such as `cgroup2`, mounted nosuid, nodev and noexec, with
    /// `options` as mount(2)'s data.
    Kernel {
        /// The file system type (`cgroup2`).
        fstype: String,
        /// mount(2)'s data.
        options: Option<String>,
    },
}

/// Paths masked by default: the OCI runtime spec's defaults, as runc and crun apply them.
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths remounted read-only by default (OCI runtime spec defaults).
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

impl ContainerSpec {
    /// A spec with the defaults of `docker run`: root, the OCI default capabilities, the
    /// default seccomp profile, masked and read-only paths, the command as PID 1 (no init), a
    /// writable (overlay) root. `state_dir` defaults to a directory under the system temp
    /// directory and should be set by callers that manage launch state.
    pub fn new(id: &str, rootfs: impl Into<PathBuf>, args: Vec<String>) -> Self {
        ContainerSpec {
            id: id.to_owned(),
            rootfs: rootfs.into(),
            readonly_rootfs: false,
            state_dir: std::env::temp_dir().join(format!("capsule-{id}")),
            hostname: None,
            process: Process::new(args),
            seccomp: SeccompProfile::Default,
            mounts: Vec::new(),
            masked_paths: DEFAULT_MASKED_PATHS.iter().map(PathBuf::from).collect(),
            readonly_paths: DEFAULT_READONLY_PATHS.iter().map(PathBuf::from).collect(),
            user_namespace: None,
            null_stdin: false,
            terminal: false,
            init: false,
        }
    }

    /// The `PATH` the command is searched in.
    pub fn search_path(&self) -> &str {
        self.process
            .env
            .iter()
            .find_map(|kv| kv.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH)
    }
}
