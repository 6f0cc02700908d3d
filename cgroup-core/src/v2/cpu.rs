//! v2 `cpu`: `cpu.max`, `cpu.weight`, and CPU time from `cpu.stat`.

use std::path::Path;

use crate::cgroup::Stats;
use crate::error::Result;
use crate::fs;
use crate::limits::Limits;

/// Writes `cpu.max` (`"quota period"`) and `cpu.weight`.
pub(crate) fn apply(limits: &Limits, dir: &Path) -> Result<()> {
    if let Some(quota) = limits.cpu_quota {
        fs::write(
            &dir.join("cpu.max"),
            &format!("{} {}", quota.quota_us, quota.period_us),
        )?;
    }
    if let Some(shares) = limits.cpu_shares {
        fs::write(
            &dir.join("cpu.weight"),
            &shares_to_weight(shares).to_string(),
        )?;
    }
    Ok(())
}

/// Maps v1 shares (2..=262144) linearly onto v2 weight (1..=10000). The formula is runc's
/// `ConvertCPUSharesToCgroupV2Value`: `1 + ((shares - 2) * 9999) / 262142`.
/// It sends the default 1024 shares to 39, not the v2 default 100; we keep it anyway so a
/// plan gives the same weight here as under runc.
pub(crate) fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// `usage_usec` of `cpu.stat`, which every v2 cgroup has even without the cpu controller.
pub(crate) fn stats(dir: &Path, stats: &mut Stats) -> Result<()> {
    let file = dir.join("cpu.stat");
    if let Some(text) = fs::read_opt(&file)? {
        stats.cpu_usage_ns =
            fs::keyed_u64(&file, &text, "usage_usec")?.map(|us| us.saturating_mul(1000));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::CpuQuota;
    use crate::test_util::{fixture, read};

    #[test]
    fn weight_conversion_matches_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }

    #[test]
    fn cpu_max_is_quota_then_period() {
        let dir = fixture(&["cpu.max", "cpu.weight"]);
        let limits = Limits {
            cpu_quota: Some(CpuQuota {
                quota_us: 25_000,
                period_us: 50_000,
            }),
            cpu_shares: Some(2048),
            ..Limits::default()
        };
        apply(&limits, dir.path()).unwrap();
        assert_eq!(read(&dir, "cpu.max"), "25000 50000");
        assert_eq!(read(&dir, "cpu.weight"), "79");
    }
}
