//! What a launch may use, and the check of those limits against what the host can give.
//!
//! [`Layout::validate`] runs before anything is created and reports every problem at once, so a
//! user fixes a plan in one go rather than one error per run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::controller::Controller;
use crate::detect::Layout;
use crate::error::LimitError;
use crate::fs;

/// Resource limits of one launch. `None` leaves the kernel's default (unlimited, or inherited).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Memory limit in bytes: v1 `memory.limit_in_bytes`, v2 `memory.max`.
    pub memory: Option<u64>,
    /// Memory plus swap in bytes, as `docker run --memory-swap`; `-1` means unlimited swap.
    /// v1 `memory.memsw.limit_in_bytes`; v2 `memory.swap.max`, which counts swap alone, gets
    /// `memory_swap - memory`.
    pub memory_swap: Option<i64>,
    /// CFS bandwidth: v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`, v2 `cpu.max`.
    pub cpu_quota: Option<CpuQuota>,
    /// Relative CPU weight in v1 units (2..=262144, default 1024): v1 `cpu.shares`, v2
    /// `cpu.weight` after conversion.
    pub cpu_shares: Option<u64>,
    /// Most processes and threads at once: `pids.max`.
    pub pids: Option<u64>,
    /// Relative I/O weight, 10..=1000 as `docker run --blkio-weight`: v1 `blkio.weight` (or
    /// `blkio.bfq.weight`), v2 `io.weight` (or `io.bfq.weight`).
    pub io_weight: Option<u16>,
    /// CPUs the launch may run on, in kernel list format (`0-1,3`).
    pub cpuset_cpus: Option<String>,
    /// NUMA memory nodes the launch may allocate from, in kernel list format.
    pub cpuset_mems: Option<String>,
}

impl Limits {
    /// The controllers these limits need, in creation order.
    pub fn controllers(&self) -> Vec<Controller> {
        let mut needed = BTreeSet::new();
        if self.memory.is_some() || self.memory_swap.is_some() {
            needed.insert(Controller::Memory);
        }
        if self.cpu_quota.is_some() || self.cpu_shares.is_some() {
            needed.insert(Controller::Cpu);
        }
        if self.pids.is_some() {
            needed.insert(Controller::Pids);
        }
        if self.io_weight.is_some() {
            needed.insert(Controller::Blkio);
        }
        if self.cpuset_cpus.is_some() || self.cpuset_mems.is_some() {
            needed.insert(Controller::Cpuset);
        }
        needed.into_iter().collect()
    }
}

/// A CFS bandwidth limit: at most `quota_us` of CPU time every `period_us` (so 50000/100000 is
/// half a CPU, 200000/100000 two CPUs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuQuota {
    /// CPU time per period, in microseconds.
    pub quota_us: u64,
    /// The period, in microseconds.
    pub period_us: u64,
}

/// Docker's smallest memory limit (`linuxMinMemory`): below it the workload cannot even start.
pub const MIN_MEMORY: u64 = 6 * 1024 * 1024;
/// Bounds of `cpu.cfs_period_us` / the `cpu.max` period (kernel/sched/core.c).
pub const CPU_PERIOD_US: std::ops::RangeInclusive<u64> = 1_000..=1_000_000;
/// The smallest CFS quota the kernel accepts.
pub const MIN_CPU_QUOTA_US: u64 = 1_000;
/// Bounds of v1 `cpu.shares` as runc and docker accept them.
pub const CPU_SHARES: std::ops::RangeInclusive<u64> = 2..=262_144;
/// Bounds of `docker run --blkio-weight`.
pub const IO_WEIGHT: std::ops::RangeInclusive<u16> = 10..=1000;
/// Where `cpu/online` and `node/online` live.
pub const SYS_DEVICES_SYSTEM: &str = "/sys/devices/system";

/// The largest CPU or node number a list may name; the kernel's `NR_CPUS` tops out at 8192, and
/// the bound keeps a list like `0-4000000000` from becoming a huge set.
const MAX_LIST_NUMBER: u32 = 65_535;

impl Layout {
    /// Checks `limits` against this host, collecting every problem rather than stopping at the
    /// first: controllers the host lacks, values the kernel would refuse (memory under 6 MiB, a
    /// CFS quota under 1 ms, weights out of range, `pids` 0), swap limits without swap
    /// accounting, and CPUs or memory nodes that are not online.
    pub fn validate(&self, limits: &Limits) -> Result<(), Vec<LimitError>> {
        check(
            limits,
            &HostFacts::probe(self, Path::new(SYS_DEVICES_SYSTEM)),
        )
    }
}

/// What the host can give, gathered once per validation. Unreadable facts become the reason a
/// limit that needs them is refused, so validation itself never fails.
#[derive(Debug)]
pub(crate) struct HostFacts {
    /// Controllers the host cannot give, each with why.
    missing: BTreeMap<Controller, String>,
    /// Whether memory controllers are named the v2 way in messages (`io`, not `blkio`).
    v2_names: bool,
    /// `Err(why)` when swap cannot be limited.
    swap: Result<(), String>,
    cpus_online: Result<BTreeSet<u32>, String>,
    mems_online: Result<BTreeSet<u32>, String>,
}

impl HostFacts {
    pub(crate) fn probe(layout: &Layout, sys_devices: &Path) -> HostFacts {
        let mut missing = BTreeMap::new();
        let swap = match layout {
            Layout::V1(v1) | Layout::Hybrid(v1, _) => {
                for c in Controller::ALL {
                    if v1.mount(c).is_none() {
                        missing.insert(
                            c,
                            format!("no cgroup v1 hierarchy with the {c} controller is mounted"),
                        );
                    }
                }
                match v1.mount(Controller::Memory) {
                    Some(mount) => {
                        let file = mount.join("memory.memsw.limit_in_bytes");
                        if file.exists() {
                            Ok(())
                        } else {
                            Err(format!(
                                "{} does not exist (kernel booted with swapaccount=0?)",
                                file.display()
                            ))
                        }
                    }
                    None => Err("no cgroup v1 memory hierarchy is mounted".to_owned()),
                }
            }
            Layout::V2(v2) => {
                // Only the root's subtree_control says what a child of the root may enable; we
                // never change it.
                let file = v2.path().join("cgroup.subtree_control");
                match fs::read(&file) {
                    Ok(text) => {
                        let enabled: BTreeSet<&str> = text.split_whitespace().collect();
                        for c in Controller::ALL {
                            if let Some(name) = c.v2_name().filter(|n| !enabled.contains(n)) {
                                missing.insert(c, format!("{name} is not in {}", file.display()));
                            }
                        }
                    }
                    Err(err) => {
                        for c in Controller::ALL
                            .into_iter()
                            .filter(|c| c.v2_name().is_some())
                        {
                            missing.insert(c, err.to_string());
                        }
                    }
                }
                v2_swap(v2.path())
            }
        };
        HostFacts {
            missing,
            v2_names: matches!(layout, Layout::V2(_)),
            swap,
            cpus_online: read_online(&sys_devices.join("cpu/online"), None),
            // A kernel without NUMA has no node directory: everything is node 0.
            mems_online: read_online(&sys_devices.join("node/online"), Some(BTreeSet::from([0]))),
        }
    }

    /// How messages name `controller` on this host (`io` on v2, `blkio` on v1).
    fn name(&self, controller: Controller) -> &'static str {
        match self.v2_names {
            true => controller.v2_name().unwrap_or(controller.v1_name()),
            false => controller.v1_name(),
        }
    }
}

/// Whether v2 `memory.swap.max` exists. The root cgroup has no memory files, so look at a child
/// with the memory controller enabled: our own parent if it has one, else any child of the root.
/// With none to look at, assume yes (swap accounting is on by default since Linux 5.8) and let
/// creation report it.
fn v2_swap(root: &Path) -> Result<(), String> {
    let mut candidates = vec![root.join(crate::PARENT)];
    candidates.extend(fs::subdirs(root).unwrap_or_default());
    match candidates
        .into_iter()
        .find(|dir| dir.join("memory.max").exists())
    {
        Some(dir) if !dir.join("memory.swap.max").exists() => Err(format!(
            "{} does not exist (kernel booted with swapaccount=0?)",
            dir.join("memory.swap.max").display()
        )),
        _ => Ok(()),
    }
}

fn read_online(path: &Path, if_missing: Option<BTreeSet<u32>>) -> Result<BTreeSet<u32>, String> {
    match (fs::read_opt(path), if_missing) {
        (Ok(Some(text)), _) => {
            parse_list(text.trim()).map_err(|e| format!("{}: {e}", path.display()))
        }
        (Ok(None), Some(default)) => Ok(default),
        (Ok(None), None) => Err(format!("{} does not exist", path.display())),
        (Err(err), _) => Err(err.to_string()),
    }
}

/// The problems found so far.
struct Problems<'h> {
    host: &'h HostFacts,
    list: Vec<LimitError>,
}

impl Problems<'_> {
    fn add(&mut self, field: &'static str, value: &str, problem: String) {
        self.list.push(LimitError {
            field,
            value: value.to_owned(),
            problem,
        });
    }

    /// Records a problem if the host lacks `controller`.
    fn need(&mut self, controller: Controller, field: &'static str, value: &str) {
        if let Some(reason) = self.host.missing.get(&controller) {
            let problem = format!("host cannot give {}: {reason}", self.host.name(controller));
            self.add(field, value, problem);
        }
    }

    /// Records a problem if `list` is not a list of online CPUs or nodes.
    fn online(
        &mut self,
        field: &'static str,
        list: &str,
        what: &str,
        online: &Result<BTreeSet<u32>, String>,
    ) {
        let wanted = match parse_list(list) {
            Ok(wanted) if wanted.is_empty() => {
                return self.add(field, list, format!("must name at least one {what}"));
            }
            Ok(wanted) => wanted,
            Err(err) => return self.add(field, list, err),
        };
        match online {
            Ok(online) => {
                let offline: BTreeSet<u32> = wanted.difference(online).copied().collect();
                if !offline.is_empty() {
                    let problem = format!(
                        "{what} {} not online (online: {})",
                        format_list(&offline),
                        format_list(online)
                    );
                    self.add(field, list, problem);
                }
            }
            Err(reason) => self.add(
                field,
                list,
                format!("cannot tell which {what}s are online: {reason}"),
            ),
        }
    }
}

/// Checks `limits` against `host`; every problem found is returned.
pub(crate) fn check(limits: &Limits, host: &HostFacts) -> Result<(), Vec<LimitError>> {
    let mut p = Problems {
        host,
        list: Vec::new(),
    };

    if let Some(memory) = limits.memory {
        let value = memory.to_string();
        p.need(Controller::Memory, "memory", &value);
        if memory < MIN_MEMORY {
            let problem = format!(
                "memory limit {} is below the minimum the kernel accepts, {}",
                human(memory),
                human(MIN_MEMORY)
            );
            p.add("memory", &value, problem);
        }
    }

    if let Some(swap) = limits.memory_swap {
        let value = swap.to_string();
        p.need(Controller::Memory, "memory_swap", &value);
        match (swap, limits.memory) {
            (-1, _) => {}
            (..-1, _) => p.add(
                "memory_swap",
                &value,
                "must be -1 (unlimited swap) or memory plus swap in bytes".into(),
            ),
            (_, None) => p.add(
                "memory_swap",
                &value,
                "needs memory too: it is the memory plus swap total".into(),
            ),
            (swap, Some(memory)) if u64::try_from(swap).is_ok_and(|s| s < memory) => {
                let problem = format!(
                    "memory plus swap {} is below the memory limit {}; it must be at least memory",
                    human(swap.unsigned_abs()),
                    human(memory)
                );
                p.add("memory_swap", &value, problem);
            }
            _ => {}
        }
        // -1 is the kernel's default, so writing it needs no swap accounting.
        if let (true, Err(reason)) = (swap != -1, &host.swap) {
            p.add(
                "memory_swap",
                &value,
                format!("host cannot limit swap: {reason}"),
            );
        }
    }

    if let Some(quota) = limits.cpu_quota {
        let value = format!("{}us/{}us", quota.quota_us, quota.period_us);
        p.need(Controller::Cpu, "cpu_quota", &value);
        if quota.quota_us < MIN_CPU_QUOTA_US {
            p.add(
                "cpu_quota",
                &value,
                format!("quota must be at least {MIN_CPU_QUOTA_US}us"),
            );
        }
        if !CPU_PERIOD_US.contains(&quota.period_us) {
            let problem = format!(
                "period must be between {}us and {}us",
                CPU_PERIOD_US.start(),
                CPU_PERIOD_US.end()
            );
            p.add("cpu_quota", &value, problem);
        }
    }

    if let Some(shares) = limits.cpu_shares {
        let value = shares.to_string();
        p.need(Controller::Cpu, "cpu_shares", &value);
        if !CPU_SHARES.contains(&shares) {
            p.add(
                "cpu_shares",
                &value,
                format!(
                    "must be between {} and {}",
                    CPU_SHARES.start(),
                    CPU_SHARES.end()
                ),
            );
        }
    }

    if let Some(pids) = limits.pids {
        let value = pids.to_string();
        p.need(Controller::Pids, "pids", &value);
        if pids == 0 {
            p.add(
                "pids",
                &value,
                "must be at least 1, or the workload cannot even start".into(),
            );
        }
    }

    if let Some(weight) = limits.io_weight {
        let value = weight.to_string();
        p.need(Controller::Blkio, "io_weight", &value);
        if !IO_WEIGHT.contains(&weight) {
            p.add(
                "io_weight",
                &value,
                format!(
                    "must be between {} and {}",
                    IO_WEIGHT.start(),
                    IO_WEIGHT.end()
                ),
            );
        }
    }

    if let Some(cpus) = &limits.cpuset_cpus {
        p.need(Controller::Cpuset, "cpuset_cpus", cpus);
        p.online("cpuset_cpus", cpus, "CPU", &host.cpus_online);
    }
    if let Some(mems) = &limits.cpuset_mems {
        p.need(Controller::Cpuset, "cpuset_mems", mems);
        p.online("cpuset_mems", mems, "memory node", &host.mems_online);
    }

    if p.list.is_empty() {
        Ok(())
    } else {
        Err(p.list)
    }
}

/// Parses a kernel list (`0-3,8,10-11`, see "List format" in cpuset(7)).
pub(crate) fn parse_list(text: &str) -> Result<BTreeSet<u32>, String> {
    let mut set = BTreeSet::new();
    let bad = || format!("not a list like 0-1,3 (numbers up to {MAX_LIST_NUMBER})");
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let number = |s: &str| {
            s.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= MAX_LIST_NUMBER)
                .ok_or_else(bad)
        };
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => (number(part)?, number(part)?),
        };
        if first > last {
            return Err(format!("range {part} runs backwards"));
        }
        set.extend(first..=last);
    }
    Ok(set)
}

/// Formats a set back into kernel list form, merging runs into ranges.
pub(crate) fn format_list(set: &BTreeSet<u32>) -> String {
    let mut out = String::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while iter.next_if(|n| Some(*n) == last.checked_add(1)).is_some() {
            last += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        match first == last {
            true => write!(out, "{first}"),
            false => write!(out, "{first}-{last}"),
        }
        .unwrap_or(());
    }
    out
}

/// `6291456` as `6MiB`; sizes that are not a whole number of KiB stay in bytes.
fn human(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    UNITS
        .iter()
        .find(|(size, _)| bytes >= *size && bytes % size == 0)
        .map_or_else(
            || format!("{bytes}B"),
            |(size, unit)| format!("{}{unit}", bytes / size),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host that can give everything, with CPUs 0-1 and node 0 online.
    fn roomy() -> HostFacts {
        HostFacts {
            missing: BTreeMap::new(),
            v2_names: false,
            swap: Ok(()),
            cpus_online: Ok(BTreeSet::from([0, 1])),
            mems_online: Ok(BTreeSet::from([0])),
        }
    }

    fn messages(limits: &Limits, host: &HostFacts) -> Vec<String> {
        match check(limits, host) {
            Ok(()) => Vec::new(),
            Err(problems) => problems.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn sensible_limits_pass() {
        let limits = Limits {
            memory: Some(MIN_MEMORY),
            memory_swap: Some(-1),
            cpu_quota: Some(CpuQuota {
                quota_us: 1000,
                period_us: 1000,
            }),
            cpu_shares: Some(1024),
            pids: Some(1),
            io_weight: Some(10),
            cpuset_cpus: Some("0-1".into()),
            cpuset_mems: Some("0".into()),
        };
        assert_eq!(messages(&limits, &roomy()), Vec::<String>::new());
        assert_eq!(messages(&Limits::default(), &roomy()), Vec::<String>::new());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let limits = Limits {
            memory: Some(1 << 20),
            cpuset_cpus: Some("999".into()),
            ..Limits::default()
        };
        assert_eq!(
            messages(&limits, &roomy()),
            [
                "memory=1048576: memory limit 1MiB is below the minimum the kernel accepts, 6MiB",
                "cpuset_cpus=999: CPU 999 not online (online: 0-1)",
            ]
        );
    }

    #[test]
    fn out_of_range_values() {
        let limits = Limits {
            memory: Some(6_000_000),
            cpu_quota: Some(CpuQuota {
                quota_us: 999,
                period_us: 2_000_000,
            }),
            cpu_shares: Some(1),
            pids: Some(0),
            io_weight: Some(1001),
            cpuset_mems: Some("1".into()),
            ..Limits::default()
        };
        assert_eq!(
            messages(&limits, &roomy()),
            [
                "memory=6000000: memory limit 6000000B is below the minimum the kernel accepts, 6MiB",
                "cpu_quota=999us/2000000us: quota must be at least 1000us",
                "cpu_quota=999us/2000000us: period must be between 1000us and 1000000us",
                "cpu_shares=1: must be between 2 and 262144",
                "pids=0: must be at least 1, or the workload cannot even start",
                "io_weight=1001: must be between 10 and 1000",
                "cpuset_mems=1: memory node 1 not online (online: 0)",
            ]
        );
    }

    #[test]
    fn swap_rules() {
        let with = |memory, swap| Limits {
            memory,
            memory_swap: Some(swap),
            ..Limits::default()
        };
        let host = roomy();
        assert_eq!(
            messages(&with(Some(64 << 20), 32 << 20), &host),
            [
                "memory_swap=33554432: memory plus swap 32MiB is below the memory limit 64MiB; it must be at least memory"
            ]
        );
        assert_eq!(
            messages(&with(None, 32 << 20), &host),
            ["memory_swap=33554432: needs memory too: it is the memory plus swap total"]
        );
        assert_eq!(
            messages(&with(Some(64 << 20), -2), &host),
            ["memory_swap=-2: must be -1 (unlimited swap) or memory plus swap in bytes"]
        );
        assert_eq!(
            messages(&with(Some(64 << 20), 64 << 20), &host),
            Vec::<String>::new()
        );

        let no_swap = HostFacts {
            swap: Err("memory.memsw.limit_in_bytes does not exist".into()),
            ..roomy()
        };
        assert_eq!(
            messages(&with(Some(64 << 20), 128 << 20), &no_swap),
            [
                "memory_swap=134217728: host cannot limit swap: memory.memsw.limit_in_bytes does not exist"
            ]
        );
        // Unlimited swap is the default and needs no swap accounting.
        assert_eq!(
            messages(&with(Some(64 << 20), -1), &no_swap),
            Vec::<String>::new()
        );
    }

    #[test]
    fn bad_lists() {
        let cpus = |list: &str| Limits {
            cpuset_cpus: Some(list.into()),
            ..Limits::default()
        };
        assert_eq!(
            messages(&cpus("a-b"), &roomy()),
            ["cpuset_cpus=a-b: not a list like 0-1,3 (numbers up to 65535)"]
        );
        assert_eq!(
            messages(&cpus("3-1"), &roomy()),
            ["cpuset_cpus=3-1: range 3-1 runs backwards"]
        );
        assert_eq!(
            messages(&cpus(""), &roomy()),
            ["cpuset_cpus=: must name at least one CPU"]
        );
        assert_eq!(
            messages(&cpus("0-4000000000"), &roomy()),
            ["cpuset_cpus=0-4000000000: not a list like 0-1,3 (numbers up to 65535)"]
        );
    }

    #[test]
    fn lists_round_trip() {
        let set = parse_list("0-2,4,6-7\n").unwrap();
        assert_eq!(set, BTreeSet::from([0, 1, 2, 4, 6, 7]));
        assert_eq!(format_list(&set), "0-2,4,6-7");
        assert_eq!(format_list(&BTreeSet::new()), "");
        assert_eq!(parse_list("").unwrap(), BTreeSet::new());
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(6 << 20), "6MiB");
        assert_eq!(human(1536), "1536B");
        assert_eq!(human(2 << 30), "2GiB");
        assert_eq!(human(0), "0B");
    }

    /// A fake host under a tempdir: `mountinfo` pointing at tempdir hierarchies and a fake
    /// `/sys/devices/system`.
    struct FakeHost {
        dir: tempfile::TempDir,
    }

    impl FakeHost {
        fn new() -> FakeHost {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("sys/cpu")).unwrap();
            std::fs::write(dir.path().join("sys/cpu/online"), "0-3\n").unwrap();
            FakeHost { dir }
        }

        fn path(&self, rel: &str) -> std::path::PathBuf {
            self.dir.path().join(rel)
        }

        fn v2(&self, subtree_control: &str) -> Layout {
            std::fs::create_dir_all(self.path("cg")).unwrap();
            std::fs::write(self.path("cg/cgroup.subtree_control"), subtree_control).unwrap();
            let line = format!(
                "1 1 0:1 / {} rw - cgroup2 cgroup2 rw\n",
                self.path("cg").display()
            );
            Layout::from_mountinfo(&line).unwrap()
        }

        fn probe(&self, layout: &Layout) -> HostFacts {
            HostFacts::probe(layout, &self.path("sys"))
        }
    }

    #[test]
    fn v2_root_without_memory_cannot_give_memory() {
        let host = FakeHost::new();
        let layout = host.v2("cpu pids\n");
        let facts = host.probe(&layout);
        let limits = Limits {
            memory: Some(1 << 20),
            io_weight: Some(100),
            cpuset_mems: Some("0".into()),
            pids: Some(5),
            ..Limits::default()
        };
        let control = host.path("cg/cgroup.subtree_control");
        assert_eq!(
            messages(&limits, &facts),
            [
                format!(
                    "memory=1048576: host cannot give memory: memory is not in {}",
                    control.display()
                ),
                "memory=1048576: memory limit 1MiB is below the minimum the kernel accepts, 6MiB"
                    .to_owned(),
                format!(
                    "io_weight=100: host cannot give io: io is not in {}",
                    control.display()
                ),
                format!(
                    "cpuset_mems=0: host cannot give cpuset: cpuset is not in {}",
                    control.display()
                ),
            ]
        );
        // No node directory: a kernel without NUMA, node 0 only. CPUs come from cpu/online.
        assert_eq!(facts.mems_online, Ok(BTreeSet::from([0])));
        assert_eq!(facts.cpus_online, Ok(BTreeSet::from([0, 1, 2, 3])));
    }

    #[test]
    fn v2_swap_is_looked_up_in_a_child_with_memory() {
        let host = FakeHost::new();
        let layout = host.v2("memory\n");
        std::fs::create_dir_all(host.path("cg/system.slice")).unwrap();
        std::fs::write(host.path("cg/system.slice/memory.max"), "max\n").unwrap();
        let facts = host.probe(&layout);
        let swap_file = host.path("cg/system.slice/memory.swap.max");
        assert_eq!(
            facts.swap,
            Err(format!(
                "{} does not exist (kernel booted with swapaccount=0?)",
                swap_file.display()
            ))
        );
        std::fs::write(&swap_file, "max\n").unwrap();
        assert_eq!(host.probe(&layout).swap, Ok(()));
    }

    #[test]
    fn v1_missing_hierarchy() {
        let host = FakeHost::new();
        std::fs::create_dir_all(host.path("memory")).unwrap();
        let line = format!(
            "1 1 0:1 / {} rw - cgroup cgroup rw,memory\n",
            host.path("memory").display()
        );
        let layout = Layout::from_mountinfo(&line).unwrap();
        let facts = host.probe(&layout);
        let limits = Limits {
            pids: Some(10),
            memory_swap: Some(-1),
            memory: Some(8 << 20),
            ..Limits::default()
        };
        assert_eq!(
            messages(&limits, &facts),
            [
                "pids=10: host cannot give pids: no cgroup v1 hierarchy with the pids controller is mounted"
            ]
        );
        assert!(facts.swap.is_err());
    }

    #[test]
    fn validate_on_this_host_collects_both_problems() {
        // Whatever this host has, CPU 999 is not online and 1 MiB is too little memory.
        let Ok(layout) = crate::detect() else { return };
        let limits = Limits {
            memory: Some(1 << 20),
            cpuset_cpus: Some("999".into()),
            ..Limits::default()
        };
        let problems = layout.validate(&limits).unwrap_err();
        assert!(problems.iter().any(|p| p.field == "memory"), "{problems:?}");
        assert!(
            problems.iter().any(|p| p.field == "cpuset_cpus"),
            "{problems:?}"
        );
    }
}
