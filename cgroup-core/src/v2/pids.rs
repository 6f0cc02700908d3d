//! `pids`: `pids.max`, `pids.current`, `pids.peak` (the same files in v1 and v2).

use std::path::Path;

use crate::cgroup::Stats;
use crate::error::Result;
use crate::fs;
use crate::limits::Limits;

/// Writes `pids.max`.
pub(crate) fn apply(limits: &Limits, dir: &Path) -> Result<()> {
    match limits.pids {
        Some(pids) => fs::write(&dir.join("pids.max"), &pids.to_string()),
        None => Ok(()),
    }
}

/// `pids.current`, and `pids.peak` where the kernel has it (6.1+).
pub(crate) fn stats(dir: &Path, stats: &mut Stats) -> Result<()> {
    stats.pids_current = fs::read_u64_opt(&dir.join("pids.current"))?;
    stats.pids_peak = fs::read_u64_opt(&dir.join("pids.peak"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{fixture, read};

    #[test]
    fn pids_max() {
        let dir = fixture(&["pids.max"]);
        apply(
            &Limits {
                pids: Some(100),
                ..Limits::default()
            },
            dir.path(),
        )
        .unwrap();
        assert_eq!(read(&dir, "pids.max"), "100");
    }

    #[test]
    fn stats_without_peak() {
        let dir = fixture(&[]);
        std::fs::write(dir.path().join("pids.current"), "4\n").unwrap();
        let mut stats = Stats::default();
        super::stats(dir.path(), &mut stats).unwrap();
        assert_eq!((stats.pids_current, stats.pids_peak), (Some(4), None));
    }
}
