//! v2 `memory`: `memory.max`, `memory.swap.max`, `memory.peak`, OOM kills.

use std::path::Path;

use crate::cgroup::Stats;
use crate::error::Result;
use crate::fs;
use crate::limits::Limits;

/// Writes `memory.max` and `memory.swap.max`. Our `memory_swap` is docker's memory+swap total,
/// while v2 limits swap alone, so it is translated as runc does (`ConvertMemorySwapToCgroupV2Value`):
/// `-1` becomes `max`, anything else `memory_swap - memory`.
pub(crate) fn apply(limits: &Limits, dir: &Path) -> Result<()> {
    if let Some(memory) = limits.memory {
        fs::write(&dir.join("memory.max"), &memory.to_string())?;
    }
    if let Some(swap) = limits.memory_swap {
        let file = dir.join("memory.swap.max");
        match swap_max(swap, limits.memory) {
            // `max` is the default, so a kernel without swap accounting already gives it.
            None if !file.exists() => {}
            None => fs::write(&file, "max")?,
            Some(bytes) => fs::write(&file, &bytes.to_string())?,
        }
    }
    Ok(())
}

/// The swap-only limit for a memory+swap total; `None` means unlimited. Validation guarantees
/// `total >= memory`; should it not hold, no swap at all is the safe reading.
fn swap_max(total: i64, memory: Option<u64>) -> Option<u64> {
    let total = u64::try_from(total).ok()?;
    Some(total.saturating_sub(memory.unwrap_or(0)))
}

/// `memory.peak` (Linux 5.19+) and the `oom_kill` count of `memory.events`.
pub(crate) fn stats(dir: &Path, stats: &mut Stats) -> Result<()> {
    stats.memory_peak_bytes = fs::read_u64_opt(&dir.join("memory.peak"))?;
    let file = dir.join("memory.events");
    if let Some(text) = fs::read_opt(&file)? {
        stats.oom_kills = fs::keyed_u64(&file, &text, "oom_kill")?.unwrap_or(0);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{fixture, read};

    const FILES: &[&str] = &["memory.max", "memory.swap.max"];

    #[test]
    fn swap_is_total_minus_memory() {
        let dir = fixture(FILES);
        let limits = Limits {
            memory: Some(64 << 20),
            memory_swap: Some(96 << 20),
            ..Limits::default()
        };
        apply(&limits, dir.path()).unwrap();
        assert_eq!(read(&dir, "memory.max"), "67108864");
        assert_eq!(read(&dir, "memory.swap.max"), "33554432");
    }

    #[test]
    fn swap_equal_to_memory_means_no_swap() {
        let dir = fixture(FILES);
        let limits = Limits {
            memory: Some(64 << 20),
            memory_swap: Some(64 << 20),
            ..Limits::default()
        };
        apply(&limits, dir.path()).unwrap();
        assert_eq!(read(&dir, "memory.swap.max"), "0");
    }

    #[test]
    fn unlimited_swap_is_max() {
        let dir = fixture(FILES);
        let limits = Limits {
            memory: Some(64 << 20),
            memory_swap: Some(-1),
            ..Limits::default()
        };
        apply(&limits, dir.path()).unwrap();
        assert_eq!(read(&dir, "memory.swap.max"), "max");
    }
}
