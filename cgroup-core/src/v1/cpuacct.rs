//! v1 `cpuacct`: CPU time used.

use std::path::Path;

use crate::cgroup::Stats;
use crate::error::Result;
use crate::fs;

/// CPU time of every task in the cgroup and its descendants, in nanoseconds (`cpuacct.usage`).
pub(crate) fn stats(dir: &Path, stats: &mut Stats) -> Result<()> {
    stats.cpu_usage_ns = fs::read_u64_opt(&dir.join("cpuacct.usage"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::fixture;

    #[test]
    fn usage_in_nanoseconds() {
        let dir = fixture(&[]);
        std::fs::write(dir.path().join("cpuacct.usage"), "3141592653\n").unwrap();
        let mut stats = Stats::default();
        super::stats(dir.path(), &mut stats).unwrap();
        assert_eq!(stats.cpu_usage_ns, Some(3_141_592_653));
    }
}
