//! The crate's one error type.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::controller::Controller;

/// Everything that can go wrong in this crate. Each variant carries the path, value or name it is
/// about, so a log line alone says what failed where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a cgroup or sysfs file failed.
    #[error("failed to read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },
    /// Writing a value into a cgroup file failed; the kernel rejects bad values with `EINVAL`.
    #[error("failed to write {value:?} to {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The value written.
        value: String,
        /// What the kernel said.
        source: io::Error,
    },
    /// A file held something we could not understand.
    #[error("failed to parse {value:?} in {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The text that did not parse.
        value: String,
        /// What was expected.
        reason: &'static str,
    },
    /// `mkdir` of a cgroup failed.
    #[error("failed to create cgroup {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },
    /// `rmdir` of a cgroup failed.
    #[error("failed to remove cgroup {path}: {source}")]
    RemoveDir {
        /// The directory.
        path: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },
    /// Listing a directory failed.
    #[error("failed to list {path}: {source}")]
    ListDir {
        /// The directory.
        path: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },
    /// `/proc/self/mountinfo` names no cgroup filesystem we can use.
    #[error("no cgroup filesystem is mounted (according to {path})")]
    NoCgroupFs {
        /// The mountinfo file read.
        path: PathBuf,
    },
    /// The host lacks a controller (or a controller file) that the limits or the operation
    /// need.
    #[error("host cannot give {controller}: {reason}")]
    Unavailable {
        /// The controller (named the v1 way, e.g. `blkio` for v2's `io`).
        controller: Controller,
        /// Why, naming the file, directory or mount that was looked at.
        reason: String,
    },
    /// The cgroup name cannot be a single directory name.
    #[error("invalid cgroup name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// [`Cgroup::create`](crate::Cgroup::create) found the directory already there; it is left alone.
    #[error("cgroup {path} already exists")]
    AlreadyExists {
        /// The directory.
        path: PathBuf,
    },
    /// [`Layout::validate`](crate::Layout::validate) rejected the limits; every problem is listed.
    #[error("invalid limits: {}", join(.0))]
    InvalidLimits(Vec<LimitError>),
    /// The kernel did not reach a state (frozen, empty, thawed) in time.
    #[error("timed out after {waited:?} waiting for {what} in {path}")]
    Timeout {
        /// The cgroup directory.
        path: PathBuf,
        /// The state waited for, e.g. `frozen`.
        what: &'static str,
        /// How long we waited.
        waited: Duration,
    },
    /// `kill(2)` failed for a reason other than the process being gone already.
    #[error("failed to send SIGKILL to pid {pid}: {source}")]
    Signal {
        /// The process.
        pid: i32,
        /// What the kernel said.
        source: nix::errno::Errno,
    },
}

fn join(problems: &[LimitError]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One problem with one limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}={value}: {problem}")]
pub struct LimitError {
    /// The [`Limits`](crate::Limits) field, e.g. `memory`.
    pub field: &'static str,
    /// The value given.
    pub value: String,
    /// What is wrong and what would be accepted.
    pub problem: String,
}
