//! The Plan: everything one launch needs, as plain data.
//!
//! Field names follow the OCI runtime spec where the two overlap (`root.path`,
//! `process.args`, `process.cwd`, `process.user.uid`, `process.rlimits[].type`, `mounts[]
//! .destination`, `hostname`), so an OCI `config.json` reads naturally next to a Plan.

use std::path::PathBuf;

use crate::{IdMaps, Process, SeccompProfile};
use serde::{Deserialize, Serialize};

/// One launch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Plan {
    /// How the process is isolated.
    pub isolation: Isolation,
    /// The root filesystem.
    pub root: Root,
    /// What runs.
    pub process: Process,
    /// The hostname inside; absent, the launch id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Mounts added to the root filesystem, in order.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// Limits.
    #[serde(default)]
    pub resources: Resources,
    /// The process's seccomp filter.
    #[serde(default)]
    pub seccomp: SeccompProfile,
    /// The network the process sees.
    #[serde(default)]
    pub network: Network,
    /// uid and gid maps of a user namespace; rootless launches always get one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_namespace: Option<IdMaps>,
    /// A minimal init as PID 1 that reaps zombies and forwards signals (`docker run --init`).
    #[serde(default = "yes")]
    pub init: bool,
    /// The machine of a microVM: ignored by nothing, refused by containers when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<VmSpec>,
    /// Stop the workload after this many seconds (microVM only for now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<f64>,
}

/// What a microVM boots; guest memory and vCPUs come from `resources.memory` and
/// `resources.cpus`, as Kata sizes its VMs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VmSpec {
    /// An ELF vmlinux with a PVH note, or a bzImage; default: `vmlinux` (else `vmlinuz`)
    /// from `cargo xtask guest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<PathBuf>,
    /// The base initramfs with capsule-init; default: `initramfs.cpio` from `cargo xtask guest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<PathBuf>,
    /// Extra kernel command-line parameters, appended to capsule's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    /// Show the guest kernel's log on the console (a verbose boot is slower).
    #[serde(default)]
    pub kernel_log: bool,
}

fn yes() -> bool {
    true
}

/// How a Plan's process is isolated from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Namespaces and cgroups on the host kernel.
    Container,
    /// Its own kernel on KVM.
    Microvm,
    /// A container inside a microVM.
    Kata,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
/// The root filesystem: a directory on the host that becomes `/`.
pub struct Root {
    /// The directory (OCI `root.path`).
    pub path: PathBuf,
    /// Read-only root; otherwise writes go to a throw-away overlay layer.
    #[serde(default)]
    pub readonly: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
/// One mount added to the root filesystem (OCI `mounts[]`).
pub struct Mount {
    /// Where it appears inside, absolute.
    pub destination: PathBuf,
    /// What it is.
    #[serde(rename = "type")]
    pub kind: MountType,
    /// Host path of a bind mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<PathBuf>,
    /// Size of a tmpfs in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Mounted read-only (recursively, for a bind mount).
    #[serde(default)]
    pub readonly: bool,
}

/// The kind of a [`Mount`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    /// A host path bound in.
    Bind,
    /// A fresh tmpfs.
    Tmpfs,
}

/// Limits, with `docker run`'s meanings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Resources {
    /// Bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// Memory plus swap in bytes; -1 for unlimited swap. Absent, swap is not limited; the flags
    /// and policy scripts write docker's default, twice `memory`, into a container's Plan
    /// ([`Plan::derive_defaults`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_swap: Option<i64>,
    /// CPUs of time per period, e.g. 1.5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Relative CPU weight (`--cpu-shares`, 2..262144).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<u64>,
    /// The most processes and threads at once (`--pids-limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
    /// `--blkio-weight`, 10..1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_weight: Option<u16>,
    /// The CPUs it may run on, in cpuset(7) list format (`0-2,4`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuset_cpus: Option<String>,
    /// The memory nodes it may use, in cpuset(7) list format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuset_mems: Option<String>,
}

impl Resources {
    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        *self == Resources::default()
    }
}

/// The network a launch gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// A network namespace with only loopback.
    #[default]
    None,
}

impl Plan {
    /// Writes into the Plan what docker derives from the settings given, so that `capsule
    /// plan` shows the value a launch applies. Run once a Plan is complete, by the flags and by
    /// policy scripts (a saved Plan is taken as it is):
    ///
    /// - a container with `resources.memory` and no `memorySwap` (or docker's `0`, "unset")
    ///   may use as much swap as memory: `memorySwap` is twice `memory`, as `docker run
    ///   --memory` without `--memory-swap` (docs.docker.com, "Runtime options with Memory,
    ///   CPUs, and GPUs"). A microVM has no swap limit to set.
    pub fn derive_defaults(&mut self) {
        let r = &mut self.resources;
        if self.isolation != Isolation::Microvm && matches!(r.memory_swap, None | Some(0)) {
            r.memory_swap = r.memory.map(|memory| {
                memory
                    .checked_mul(2)
                    .and_then(|total| i64::try_from(total).ok())
                    .unwrap_or(-1)
            });
        }
    }

    /// A container Plan with `docker run`'s defaults for `args` in `rootfs`.
    pub fn container(rootfs: impl Into<PathBuf>, args: Vec<String>) -> Self {
        Plan {
            isolation: Isolation::Container,
            root: Root {
                path: rootfs.into(),
                readonly: false,
            },
            process: Process::new(args),
            hostname: None,
            mounts: Vec::new(),
            resources: Resources::default(),
            seccomp: SeccompProfile::Default,
            network: Network::None,
            user_namespace: None,
            init: true,
            vm: None,
            timeout: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_alone_allows_as_much_swap_as_memory_as_docker() {
        let mut plan = Plan::container("/", vec!["true".into()]);
        plan.resources.memory = Some(64 << 20);
        plan.derive_defaults();
        assert_eq!(plan.resources.memory_swap, Some(128 << 20));
        for (given, kept) in [(-1, -1), (96 << 20, 96 << 20), (0, 128 << 20)] {
            plan.resources.memory_swap = Some(given);
            plan.derive_defaults();
            assert_eq!(plan.resources.memory_swap, Some(kept), "{given}");
        }
        let mut plan = Plan::container("/", vec!["true".into()]);
        plan.derive_defaults();
        assert_eq!(plan.resources.memory_swap, None);
        plan.isolation = Isolation::Microvm;
        plan.resources.memory = Some(256 << 20);
        plan.derive_defaults();
        assert_eq!(plan.resources.memory_swap, None);
    }
}
