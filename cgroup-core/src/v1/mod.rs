//! cgroup v1: one hierarchy per controller (or per group of co-mounted controllers), one file
//! per controller here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::cgroup::Stats;
use crate::controller::Controller;
use crate::error::Result;
use crate::limits::Limits;

pub(crate) mod blkio;
pub(crate) mod cpu;
pub(crate) mod cpuacct;
pub(crate) mod cpuset;
pub(crate) mod devices;
pub(crate) mod freezer;
pub(crate) mod memory;
pub(crate) mod pids;

/// Applies the part of `limits` that belongs to `controller` in its directory `dir`.
pub(crate) fn apply(controller: Controller, limits: &Limits, dir: &Path) -> Result<()> {
    match controller {
        Controller::Memory => memory::apply(limits, dir),
        Controller::Cpu => cpu::apply(limits, dir),
        Controller::Pids => pids::apply(limits, dir),
        Controller::Blkio => blkio::apply(limits, dir),
        Controller::Cpuset => cpuset::apply(limits, dir),
        Controller::Cpuacct | Controller::Freezer | Controller::Devices => Ok(()),
    }
}

/// Gathers statistics from each controller's directory; a controller without a directory leaves
/// its numbers `None`.
pub(crate) fn stats(dirs: &BTreeMap<Controller, PathBuf>) -> Result<Stats> {
    let mut stats = Stats::default();
    if let Some(dir) = dirs.get(&Controller::Memory) {
        memory::stats(dir, &mut stats)?;
    }
    if let Some(dir) = dirs.get(&Controller::Cpuacct) {
        cpuacct::stats(dir, &mut stats)?;
    }
    if let Some(dir) = dirs.get(&Controller::Pids) {
        pids::stats(dir, &mut stats)?;
    }
    Ok(stats)
}
