//! v1 `memory`: limit, memory+swap limit, peak usage and OOM kills.

use std::path::Path;

use crate::cgroup::Stats;
use crate::error::Result;
use crate::fs;
use crate::limits::Limits;

/// Writes the memory limit, then the memory+swap limit. The order matters: the kernel refuses a
/// `memsw` limit below the memory limit with `EINVAL`, and a new cgroup starts with both
/// unlimited, so raising neither first would fail.
pub(crate) fn apply(limits: &Limits, dir: &Path) -> Result<()> {
    if let Some(memory) = limits.memory {
        fs::write(&dir.join("memory.limit_in_bytes"), &memory.to_string())?;
    }
    if let Some(swap) = limits.memory_swap {
        let file = dir.join("memory.memsw.limit_in_bytes");
        // -1 (unlimited) is the default, so a kernel without swap accounting already gives it.
        if swap != -1 || file.exists() {
            fs::write(&file, &swap.to_string())?;
        }
    }
    Ok(())
}

/// Peak usage from `memory.max_usage_in_bytes`, OOM kills from the `oom_kill` line of
/// `memory.oom_control` (Linux 4.13+).
pub(crate) fn stats(dir: &Path, stats: &mut Stats) -> Result<()> {
    stats.memory_peak_bytes = fs::read_u64_opt(&dir.join("memory.max_usage_in_bytes"))?;
    let file = dir.join("memory.oom_control");
    if let Some(text) = fs::read_opt(&file)? {
        stats.oom_kills = fs::keyed_u64(&file, &text, "oom_kill")?.unwrap_or(0);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{fixture, read};

    const FILES: &[&str] = &["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"];

    #[test]
    fn memory_and_swap() {
        let dir = fixture(FILES);
        let limits = Limits {
            memory: Some(256 << 20),
            memory_swap: Some(512 << 20),
            ..Limits::default()
        };
        apply(&limits, dir.path()).unwrap();
        assert_eq!(read(&dir, "memory.limit_in_bytes"), "268435456");
        assert_eq!(read(&dir, "memory.memsw.limit_in_bytes"), "536870912");
    }

    #[test]
    fn unlimited_swap_is_minus_one() {
        let dir = fixture(FILES);
        let limits = Limits {
            memory: Some(64 << 20),
            memory_swap: Some(-1),
            ..Limits::default()
        };
        apply(&limits, dir.path()).unwrap();
        assert_eq!(read(&dir, "memory.limit_in_bytes"), "67108864");
        assert_eq!(read(&dir, "memory.memsw.limit_in_bytes"), "-1");
    }

    #[test]
    fn unlimited_swap_without_swap_accounting_is_fine() {
        let dir = fixture(&["memory.limit_in_bytes"]);
        let limits = Limits {
            memory: Some(64 << 20),
            memory_swap: Some(-1),
            ..Limits::default()
        };
        apply(&limits, dir.path()).unwrap();
        assert!(!dir.path().join("memory.memsw.limit_in_bytes").exists());
    }

    #[test]
    fn nothing_asked_nothing_written() {
        let dir = fixture(FILES);
        apply(&Limits::default(), dir.path()).unwrap();
        assert_eq!(read(&dir, "memory.limit_in_bytes"), "");
    }

    #[test]
    fn stats_from_fixture() {
        let dir = fixture(&[]);
        std::fs::write(dir.path().join("memory.max_usage_in_bytes"), "10735616\n").unwrap();
        std::fs::write(
            dir.path().join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        let mut stats = Stats::default();
        super::stats(dir.path(), &mut stats).unwrap();
        assert_eq!(stats.memory_peak_bytes, Some(10_735_616));
        assert_eq!(stats.oom_kills, 2);
    }

    #[test]
    fn stats_without_the_files() {
        let dir = fixture(&[]);
        let mut stats = Stats::default();
        super::stats(dir.path(), &mut stats).unwrap();
        assert_eq!(stats, Stats::default());
    }
}
