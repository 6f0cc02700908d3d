//! The process a launch runs: one description shared by every isolation (the container,
//! the microVM's guest, the container inside a microVM). Field names follow the OCI runtime
//! spec's `process` object.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Capabilities, Error, check_rlimit, parse_rlimit_resource};

/// The `PATH` a process gets when its environment has none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One process: what runs, as whom, with which privileges and limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Process {
    /// The command and its arguments; a command without `/` is searched in the `PATH` of
    /// `env`.
    pub args: Vec<String>,
    /// `KEY=VALUE` pairs; the launcher adds docker's defaults for `PATH`, `HOSTNAME` and
    /// `HOME` where they are missing.
    #[serde(default)]
    pub env: Vec<String>,
    /// The working directory, absolute, inside the root filesystem.
    #[serde(default = "root_dir")]
    pub cwd: PathBuf,
    /// Who the command runs as, in the container's (or guest's) id space.
    #[serde(default)]
    pub user: User,
    /// The capability sets the command starts with.
    #[serde(default = "Capabilities::oci_default")]
    pub capabilities: Capabilities,
    /// Set no_new_privs (prctl(2) `PR_SET_NO_NEW_PRIVS`) before executing the command.
    #[serde(default = "yes")]
    pub no_new_privileges: bool,
    /// setrlimit(2) limits, by OCI name.
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
}

impl Process {
    /// `args` with `docker run`'s defaults: `PATH` ([`DEFAULT_PATH`]) in the environment,
    /// `/` as working directory, root, the OCI default capabilities, no_new_privs, and 1024
    /// open files (docker's `nofile` default).
    pub fn new(args: Vec<String>) -> Process {
        Process {
            args,
            env: vec![format!("PATH={DEFAULT_PATH}")],
            cwd: root_dir(),
            user: User::default(),
            capabilities: Capabilities::oci_default(),
            no_new_privileges: true,
            rlimits: vec![Rlimit {
                kind: "RLIMIT_NOFILE".into(),
                soft: 1024,
                hard: 1024,
            }],
        }
    }
}

fn root_dir() -> PathBuf {
    PathBuf::from("/")
}

/// A resource limit, with the OCI names (`RLIMIT_NOFILE`).
/// `soft` and `hard` are in the resource's unit; no limit is `RLIM_INFINITY` (`u64::MAX`), as
/// in the OCI runtime spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rlimit {
    /// The OCI name, `RLIMIT_NOFILE`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The soft limit.
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

impl Rlimit {
    /// The limit `name` (`nofile`, `NOFILE` or `RLIMIT_NOFILE`) with its OCI name, checked as
    /// setrlimit(2) would check it: `--ulimit` and a policy's `rlimit()` both build it here.
    ///
    /// # Errors
    ///
    /// An unknown name, or `soft` above `hard`.
    pub fn new(name: &str, soft: u64, hard: u64) -> Result<Rlimit, Error> {
        parse_rlimit_resource(name)?;
        check_rlimit(soft, hard)?;
        let upper = name.to_ascii_uppercase();
        let kind = if upper.starts_with("RLIMIT_") {
            upper
        } else {
            format!("RLIMIT_{upper}")
        };
        Ok(Rlimit { kind, soft, hard })
    }
}

fn yes() -> bool {
    true
}

/// The identity the command runs as, in the container's id space.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The user id.
    pub uid: u32,
    /// The primary group id.
    pub gid: u32,
    /// Supplementary groups (setgroups(2)); empty clears them.
    pub additional_gids: Vec<u32>,
}
