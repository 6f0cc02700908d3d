//! The container process: namespaces, uid/gid maps, the root filesystem, mounts, `/dev`,
//! capabilities, seccomp and rlimits, and the spawn protocol that puts them together.
//!
//! A caller describes one container in a [`ContainerSpec`] and hands it to [`spawn`] (with the
//! program to run as PID 1, an [`Init`], when the spec asks for one), which clones a process
//! into new pid, mount, uts, ipc, net and cgroup namespaces (and a user namespace when the spec
//! maps ids), lets the caller attach it to cgroups while it waits, builds its root filesystem,
//! drops its privileges and executes the command (or the init). [`Running::wait`] returns
//! the command's [`ExitStatus`], or an [`Error`] saying which step failed and why.
//!
//! This crate knows no launch plans, policies or cgroups: those belong to its callers.
//!
//! ```no_run
//! use ns_core::{ContainerSpec, spawn};
//!
//! let mut spec = ContainerSpec::new("demo", "/srv/rootfs", vec!["/bin/true".into()]);
//! spec.readonly_rootfs = true;
//! let running = spawn(&spec, None, |_pid| Ok(())).expect("spawn");
//! let status = running.wait().expect("wait");
//! assert_eq!(status.code(), 0);
//! ```

#![warn(missing_docs)]

mod capabilities;
mod credentials;
mod dev;
mod error;
mod handoff;
mod idmap;
mod idmapped_root;
mod in_root;
pub mod init;
mod mounts;
mod resolve;
mod rlimits;
mod rootfs;
pub mod seccomp;
mod spawn;
mod spec;
mod sys;

pub use credentials::{CredentialError, CredentialStep, Credentials};
pub use error::{AttachError, Error};
pub use in_root::open_in_root;
pub use init::Init;
// The process's data types are the `plan` crate's, as youki's are oci-spec's.
pub use plan::{
    CapMask, Capabilities, DEFAULT_PATH, IdMap, IdMaps, SeccompProfile, User, parse_capability,
};
pub use rlimits::Rlimit;
pub use spawn::{ExitStatus, Running, Signaller, spawn, spawn_with_stdio};
pub use spec::{ContainerSpec, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, Mount, MountKind};
