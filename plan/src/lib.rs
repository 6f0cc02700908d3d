//! capsule's launch Plan: everything one launch needs, as plain data, and what comes back.
//!
//! A [`Plan`] is serde data, the single source of truth of a launch: which isolation, which
//! root filesystem, which [`Process`] (one description for the container, the microVM's guest
//! and the container inside a microVM), limits and privileges. [`validate`] checks a Plan
//! against facts about the [`Host`], passed in as data, and returns every [`Problem`]; a
//! backend carries the Plan out and returns an [`Outcome`].
//!
//! The flow of a launch is one way: policy script (the `policy` crate) or flags -> Plan ->
//! validate -> backend (the `capsule` crate) -> Outcome. This crate reads nothing of the
//! machine it runs on, so policies, backends and tools share it without pulling in KVM,
//! namespaces or cgroups.

#![warn(missing_docs)]

mod capabilities;
mod error;
mod host;
mod idmap;
mod outcome;
mod plan;
mod plans;
mod problem;
mod process;
mod rlimit;
mod seccomp;
mod subid;
mod units;
mod users;
mod validate;

pub use capabilities::{CapMask, Capabilities, parse_capability};
pub use error::Error;
pub use host::{Host, Kvm, SUBID_OWNER, SubIds};
pub use idmap::{IdMap, IdMaps};
pub use outcome::{AttachedDisk, DiskFormat, Outcome, Peaks, Timings};
pub use plan::{
    Disk, Isolation, Mount, MountType, Network, Plan, Resources, Root, RootVia, VmSpec, disk_device,
};
pub use plans::Plans;
pub use problem::Problem;
pub use process::{DEFAULT_PATH, Process, Rlimit, User};
pub use rlimit::{
    RLIM_INFINITY, check_rlimit, parse_rlimit_resource, parse_rlimit_value, rlimit_name,
    rlimit_value, show_rlimit_value,
};
pub use seccomp::SeccompProfile;
pub use subid::SubIdRange;
pub use units::{parse_cpus, parse_duration, parse_size};
pub use users::{ImageFiles, home_of, resolve_group, resolve_user};
pub use validate::{
    KATA_MIN_MEMORY, MICROVM_MAX_DISKS_AND_SHARES, MICROVM_MAX_VCPUS, MICROVM_MIN_MEMORY, validate,
};
