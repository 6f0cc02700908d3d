//! cgroup v2: one directory holds every controller; one file per controller here.
//!
//! A child may only enable controllers its parent lists in `cgroup.subtree_control`. We write
//! only our own parent's (`capsule/cgroup.subtree_control`), never the root's: what the root
//! does not give, the host cannot give.

use std::collections::BTreeSet;
use std::path::Path;

use crate::cgroup::Stats;
use crate::controller::Controller;
use crate::error::{Error, Result};
use crate::fs;
use crate::limits::Limits;

pub(crate) mod cpu;
pub(crate) mod cpuset;
pub(crate) mod freezer;
pub(crate) mod io;
pub(crate) mod memory;
pub(crate) mod pids;

/// Enables `wanted` controllers in `parent/cgroup.subtree_control` so its children get their
/// files. Controllers in `needed` must be available; the others are enabled when they are (for
/// statistics) and skipped quietly when not.
pub(crate) fn enable_controllers(
    parent: &Path,
    needed: &[Controller],
    wanted: &[Controller],
) -> Result<()> {
    let available_file = parent.join("cgroup.controllers");
    let available = fs::read(&available_file)?;
    let available: BTreeSet<&str> = available.split_whitespace().collect();
    for (&controller, name) in needed.iter().filter_map(|c| Some((c, c.v2_name()?))) {
        if !available.contains(name) {
            return Err(Error::Unavailable {
                controller,
                reason: format!("{name} is not in {}", available_file.display()),
            });
        }
    }
    let control = parent.join("cgroup.subtree_control");
    let enabled = fs::read(&control)?;
    let enabled: BTreeSet<&str> = enabled.split_whitespace().collect();
    let missing: Vec<String> = needed
        .iter()
        .chain(wanted)
        .copied()
        .collect::<BTreeSet<Controller>>()
        .into_iter()
        .filter_map(Controller::v2_name)
        .filter(|name| available.contains(name) && !enabled.contains(name))
        .map(|name| format!("+{name}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    fs::write(&control, &missing.join(" "))
}

/// Applies every limit in `dir`.
pub(crate) fn apply(limits: &Limits, dir: &Path) -> Result<()> {
    memory::apply(limits, dir)?;
    cpu::apply(limits, dir)?;
    pids::apply(limits, dir)?;
    io::apply(limits, dir)?;
    cpuset::apply(limits, dir)
}

/// Gathers statistics from `dir`; a controller that is not enabled leaves its numbers `None`.
pub(crate) fn stats(dir: &Path) -> Result<Stats> {
    let mut stats = Stats::default();
    memory::stats(dir, &mut stats)?;
    cpu::stats(dir, &mut stats)?;
    pids::stats(dir, &mut stats)?;
    Ok(stats)
}

/// Whether any process is left in `dir` or below it (`populated` in `cgroup.events`). A missing
/// directory is empty.
pub(crate) fn populated(dir: &Path) -> Result<bool> {
    let file = dir.join("cgroup.events");
    match fs::read_opt(&file)? {
        Some(text) => Ok(fs::keyed_u64(&file, &text, "populated")?.unwrap_or(0) != 0),
        None => Ok(false),
    }
}

/// Whether `dir` has `cgroup.kill` (Linux 5.14+).
pub(crate) fn can_kill(dir: &Path) -> bool {
    dir.join("cgroup.kill").exists()
}

/// SIGKILLs every process in `dir` and below it in one step, racing no fork.
pub(crate) fn kill(dir: &Path) -> Result<()> {
    fs::write(&dir.join("cgroup.kill"), "1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::CpuQuota;
    use crate::test_util::{fixture, read};

    #[test]
    fn enable_only_what_is_available_and_missing() {
        let dir = fixture(&["cgroup.subtree_control"]);
        std::fs::write(
            dir.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("cgroup.subtree_control"), "cpu\n").unwrap();
        let wanted = [Controller::Memory, Controller::Cpu, Controller::Pids];
        enable_controllers(dir.path(), &[Controller::Blkio], &wanted).unwrap();
        assert_eq!(read(&dir, "cgroup.subtree_control"), "+memory +pids +io");
    }

    #[test]
    fn needed_but_not_available() {
        let dir = fixture(&["cgroup.subtree_control"]);
        std::fs::write(dir.path().join("cgroup.controllers"), "cpu pids\n").unwrap();
        let err = enable_controllers(dir.path(), &[Controller::Memory], &[]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("host cannot give memory: memory is not in "),
            "{msg}"
        );
        assert_eq!(read(&dir, "cgroup.subtree_control"), "");
    }

    #[test]
    fn nothing_to_enable_writes_nothing() {
        // Hybrid hosts: the unified root gives no controllers and we want none from it.
        let dir = fixture(&["cgroup.controllers", "cgroup.subtree_control"]);
        enable_controllers(dir.path(), &[], &[Controller::Memory]).unwrap();
        assert_eq!(read(&dir, "cgroup.subtree_control"), "");
    }

    #[test]
    fn apply_everything() {
        let dir = fixture(&[
            "memory.max",
            "memory.swap.max",
            "cpu.max",
            "cpu.weight",
            "pids.max",
            "io.weight",
            "cpuset.cpus",
            "cpuset.mems",
        ]);
        let limits = Limits {
            memory: Some(100 << 20),
            memory_swap: Some(150 << 20),
            cpu_quota: Some(CpuQuota {
                quota_us: 150_000,
                period_us: 100_000,
            }),
            cpu_shares: Some(1024),
            pids: Some(64),
            io_weight: Some(500),
            cpuset_cpus: Some("0-1".into()),
            cpuset_mems: Some("0".into()),
        };
        apply(&limits, dir.path()).unwrap();
        assert_eq!(read(&dir, "memory.max"), "104857600");
        assert_eq!(read(&dir, "memory.swap.max"), "52428800");
        assert_eq!(read(&dir, "cpu.max"), "150000 100000");
        assert_eq!(read(&dir, "cpu.weight"), "39");
        assert_eq!(read(&dir, "pids.max"), "64");
        assert_eq!(read(&dir, "io.weight"), "default 500");
        assert_eq!(read(&dir, "cpuset.cpus"), "0-1");
        assert_eq!(read(&dir, "cpuset.mems"), "0");
    }

    #[test]
    fn stats_from_fixture() {
        let dir = fixture(&[]);
        let files = [
            ("memory.peak", "52428800\n"),
            (
                "memory.events",
                "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n",
            ),
            (
                "cpu.stat",
                "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 0\n",
            ),
            ("pids.current", "3\n"),
            ("pids.peak", "7\n"),
        ];
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let stats = stats(dir.path()).unwrap();
        assert_eq!(
            stats,
            Stats {
                memory_peak_bytes: Some(52_428_800),
                cpu_usage_ns: Some(2_500_000),
                pids_current: Some(3),
                pids_peak: Some(7),
                oom_kills: 1,
            }
        );
    }

    #[test]
    fn populated_reads_cgroup_events() {
        let dir = fixture(&[]);
        assert!(!populated(dir.path()).unwrap());
        std::fs::write(dir.path().join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        assert!(populated(dir.path()).unwrap());
    }
}
