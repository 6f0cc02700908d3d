//! cgroups for capsule launches, on cgroup v2, v1 and hybrid hosts: detect the layout, check
//! limits, create, attach, read statistics, freeze, kill and remove.
//!
//! - [`detect`] reads `/proc/self/mountinfo` into a [`Layout`] (v1, v2 or hybrid).
//! - [`Layout::validate`] checks [`Limits`] against what the host can give and lists every
//!   problem as a [`LimitError`], before anything is created.
//! - [`Cgroup`] is one launch's cgroup across all the hierarchies it uses:
//!   [`create`](Cgroup::create), [`add_task`](Cgroup::add_task), [`stats`](Cgroup::stats),
//!   [`freeze`](Cgroup::freeze), [`kill`](Cgroup::kill), [`remove`](Cgroup::remove); and for
//!   cleaning up after a crash, [`list`](Cgroup::list) and [`open`](Cgroup::open).
//!
//! Our cgroups live in a `capsule` directory at the root of each hierarchy; nothing outside it is
//! ever written. Each controller's files are handled in their own module under `v1/` and `v2/`.
//!
//! The files and values follow the kernel's `Documentation/admin-guide/cgroup-v2.rst` and
//! `Documentation/admin-guide/cgroup-v1/` (`memory.rst`, `cpuacct.rst`, `pids.rst`,
//! `blkio-controller.rst`, `cpusets.rst`, `freezer-subsystem.rst`, `devices.rst`); values
//! borrowed from runc or Docker are commented where they are used. Every fallible call
//! returns the one [`Error`], whose variants name the file and the value involved.
//!
//! This crate knows no launch plans or policies, does not talk to systemd, and does not delegate
//! cgroups to unprivileged users: it needs to be root (or own the hierarchies).
//!
//! ```no_run
//! use cgroup_core::{Cgroup, Limits, detect};
//!
//! let layout = detect()?;
//! let limits = Limits { memory: Some(256 << 20), pids: Some(64), ..Limits::default() };
//! if let Err(problems) = layout.validate(&limits) {
//!     for problem in problems {
//!         eprintln!("{problem}");
//!     }
//!     return Ok(());
//! }
//! let cgroup = Cgroup::create(&layout, "job-42", &limits)?;
//! let mut child = std::process::Command::new("sleep").arg("1").spawn().expect("spawn");
//! cgroup.add_task(i32::try_from(child.id()).expect("pid fits i32"))?;
//! child.wait().expect("wait");
//! let stats = cgroup.stats()?;
//! println!("peak memory: {:?} bytes", stats.memory_peak_bytes);
//! cgroup.remove()?;
//! # Ok::<(), cgroup_core::Error>(())
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod cgroup;
mod controller;
mod detect;
mod error;
mod fs;
mod limits;
mod v1;
mod v2;
mod wait;

#[cfg(test)]
mod test_util;

/// The directory under each hierarchy's root that holds capsule's cgroups.
pub const PARENT: &str = "capsule";

pub use cgroup::{Cgroup, Stats};
pub use controller::Controller;
pub use detect::{Layout, MOUNTINFO, V1Mounts, V2Mount, detect};
pub use error::{Error, LimitError, Result};
pub use limits::{
    CPU_PERIOD_US, CPU_SHARES, CpuQuota, IO_WEIGHT, Limits, MIN_CPU_QUOTA_US, MIN_MEMORY,
    SYS_DEVICES_SYSTEM,
};
pub use v1::devices::OCI_DEFAULT_DEVICES;
