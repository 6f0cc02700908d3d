//! The cgroup controllers this crate uses, and their names in v1 and v2.

use std::fmt;

/// A cgroup controller this crate uses, named as in cgroup v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    /// `memory`: limits, peak usage, OOM kills.
    Memory,
    /// `cpu`: CFS quota and shares (v2 weight).
    Cpu,
    /// `cpuacct`: CPU time used (v1 only; v2 always has `cpu.stat`).
    Cpuacct,
    /// `pids`: process count limit and usage.
    Pids,
    /// `blkio` (v2 `io`): I/O weight.
    Blkio,
    /// `cpuset`: which CPUs and memory nodes.
    Cpuset,
    /// `freezer` (v2: `cgroup.freeze`, in every cgroup).
    Freezer,
    /// `devices`: which device nodes may be opened (v1 only; v2 filters devices with a BPF
    /// program attached to the cgroup instead).
    Devices,
}

impl Controller {
    /// Every controller, in the order hierarchies are created.
    pub const ALL: [Controller; 8] = [
        Controller::Memory,
        Controller::Cpu,
        Controller::Cpuacct,
        Controller::Pids,
        Controller::Blkio,
        Controller::Cpuset,
        Controller::Freezer,
        Controller::Devices,
    ];

    /// The name in v1 mount options and file prefixes.
    pub fn v1_name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
            Controller::Pids => "pids",
            Controller::Blkio => "blkio",
            Controller::Cpuset => "cpuset",
            Controller::Freezer => "freezer",
            Controller::Devices => "devices",
        }
    }

    /// The name in v2 `cgroup.controllers`; `None` for what v2 gives every cgroup without a
    /// controller (CPU accounting in `cpu.stat`, `cgroup.freeze`).
    pub fn v2_name(self) -> Option<&'static str> {
        match self {
            Controller::Memory => Some("memory"),
            Controller::Cpu => Some("cpu"),
            Controller::Pids => Some("pids"),
            Controller::Blkio => Some("io"),
            Controller::Cpuset => Some("cpuset"),
            Controller::Cpuacct | Controller::Freezer | Controller::Devices => None,
        }
    }

    pub(crate) fn from_v1_name(name: &str) -> Option<Controller> {
        Controller::ALL.into_iter().find(|c| c.v1_name() == name)
    }
}

impl fmt::Display for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.v1_name())
    }
}
