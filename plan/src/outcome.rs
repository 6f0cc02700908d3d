//! What a launch reports when it ends.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Isolation;

/// The result of one launch: how the workload ended, what each phase cost, what it used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// The launch id (the container's default hostname, the name of its state directory);
    /// empty when the launch failed before it had one.
    pub id: String,
    /// How the Plan ran.
    pub isolation: Isolation,
    /// The exit code `capsule run` exits with: the workload's, 128 + signal, or 125-127.
    pub exit_code: i32,
    /// The signal that ended the workload, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// The kernel's OOM killer ended a process of the launch.
    pub oom_killed: bool,
    /// Why the launch failed before or instead of running the workload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What each phase cost.
    pub timings: Timings,
    /// What the workload used at most.
    pub peaks: Peaks,
    /// Limits the workload ran into (`"memory"` on an OOM kill).
    pub violations: Vec<String>,
    /// microVM: the disks of [`Plan::disks`](crate::Plan::disks) as the guest saw them, in
    /// order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<AttachedDisk>,
}

/// One disk a microVM attached, as the Outcome reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachedDisk {
    /// The guest's device (`/dev/vdb`, [`disk_device`](crate::disk_device)).
    pub device: String,
    /// The image file on the host.
    pub path: PathBuf,
    /// The image's format, read from its content.
    pub format: DiskFormat,
    /// The guest could not write to it.
    pub read_only: bool,
}

/// A disk image's format, as read from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// The disk's bytes as they are.
    Raw,
    /// QEMU's copy-on-write format (version 3).
    Qcow2,
}

/// Milliseconds per phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timings {
    /// Validation and preparation, until the first resource exists.
    pub prepare_ms: f64,
    /// State directory, cgroups and the container process, until the command is released.
    pub create_ms: f64,
    /// From release to the workload's exit.
    pub run_ms: f64,
    /// Removing everything the launch created.
    pub cleanup_ms: f64,
    /// The whole launch.
    pub total_ms: f64,
    /// microVM: from starting the vCPUs to the guest init's first instruction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_ms: Option<f64>,
    /// microVM: from starting the vCPUs to the guest agent's first message (its `Hello`,
    /// sent once capsule-init listens on vsock and the host has connected): when the guest
    /// is ready to run the workload. Absent without the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_ms: Option<f64>,
}

impl Timings {
    /// The phases of a launch from the times since its start at which each ended: prepared,
    /// created, ran (the workload exited) and finished (cleaned up).
    pub fn of(prepared: Duration, created: Duration, ran: Duration, finished: Duration) -> Self {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        Timings {
            prepare_ms: ms(prepared),
            create_ms: ms(created.saturating_sub(prepared)),
            run_ms: ms(ran.saturating_sub(created)),
            cleanup_ms: ms(finished.saturating_sub(ran)),
            total_ms: ms(finished),
            boot_ms: None,
            agent_ms: None,
        }
    }
}

/// Peak use as the cgroup recorded it; absent where the host does not count it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Peaks {
    /// Bytes of memory (the cgroup's peak; a microVM's: the VMM process's peak RSS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// CPU time in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_time_ms: Option<f64>,
    /// Processes and threads at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
    /// microVM: the VMM's peak RSS less the guest RAM it holds resident.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vmm_overhead_bytes: Option<u64>,
}
