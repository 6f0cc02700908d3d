//! v1 `pids`: process limit and counts. The files are the same as v2's.

use std::path::Path;

use crate::cgroup::Stats;
use crate::error::Result;
use crate::limits::Limits;

/// Writes `pids.max`.
pub(crate) fn apply(limits: &Limits, dir: &Path) -> Result<()> {
    crate::v2::pids::apply(limits, dir)
}

/// `pids.current`, and `pids.peak` where the kernel has it (6.1+).
pub(crate) fn stats(dir: &Path, stats: &mut Stats) -> Result<()> {
    crate::v2::pids::stats(dir, stats)
}
