//! v1 `cpu`: CFS bandwidth and shares.

use std::path::Path;

use crate::error::Result;
use crate::fs;
use crate::limits::Limits;

/// Writes the period before the quota, as runc does: the kernel checks the quota against the
/// period in force when the quota is written.
pub(crate) fn apply(limits: &Limits, dir: &Path) -> Result<()> {
    if let Some(quota) = limits.cpu_quota {
        fs::write(&dir.join("cpu.cfs_period_us"), &quota.period_us.to_string())?;
        fs::write(&dir.join("cpu.cfs_quota_us"), &quota.quota_us.to_string())?;
    }
    if let Some(shares) = limits.cpu_shares {
        fs::write(&dir.join("cpu.shares"), &shares.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::CpuQuota;
    use crate::test_util::{fixture, read};

    #[test]
    fn quota_period_and_shares() {
        let dir = fixture(&["cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.shares"]);
        let limits = Limits {
            cpu_quota: Some(CpuQuota {
                quota_us: 50_000,
                period_us: 100_000,
            }),
            cpu_shares: Some(512),
            ..Limits::default()
        };
        apply(&limits, dir.path()).unwrap();
        assert_eq!(read(&dir, "cpu.cfs_period_us"), "100000");
        assert_eq!(read(&dir, "cpu.cfs_quota_us"), "50000");
        assert_eq!(read(&dir, "cpu.shares"), "512");
    }

    #[test]
    fn missing_file_names_path_and_value() {
        let dir = fixture(&[]);
        let limits = Limits {
            cpu_shares: Some(512),
            ..Limits::default()
        };
        let msg = apply(&limits, dir.path()).unwrap_err().to_string();
        assert!(msg.starts_with("failed to write \"512\" to "), "{msg}");
        assert!(msg.contains("cpu.shares"), "{msg}");
    }
}
