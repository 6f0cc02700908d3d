//! v2 `cpuset`: `cpuset.cpus` and `cpuset.mems`. Unlike v1, empty files mean "the parent's", so
//! nothing needs copying down.

use std::path::Path;

use crate::error::Result;
use crate::limits::Limits;

/// Writes the requested CPUs and nodes; the file names are the same as v1's.
pub(crate) fn apply(limits: &Limits, dir: &Path) -> Result<()> {
    crate::v1::cpuset::apply(limits, dir)
}
