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
    /// Block devices a microVM attaches besides its root, in order: `/dev/vdb`, `/dev/vdc`,
    /// ... ([`disk_device`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<Disk>,
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
    /// How the root directory reaches a kata container: on the ext4 disk image capsule builds
    /// of it (the default), or shared over virtio-fs.
    #[serde(default, skip_serializing_if = "RootVia::is_disk")]
    pub root_via: RootVia,
}

/// How a kata container's root directory reaches the guest (`vm.rootVia`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootVia {
    /// An ext4 image of the directory on a read-only virtio-blk disk (built once, cached).
    #[default]
    Disk,
    /// The directory itself, shared read-only over virtio-fs by a virtiofsd.
    Virtiofs,
}

impl RootVia {
    fn is_disk(&self) -> bool {
        *self == RootVia::Disk
    }
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
/// The root filesystem: a directory on the host that becomes `/`, or (microVM only) a disk
/// image file holding an ext4 filesystem, raw or qcow2 (told apart by content). Which of the
/// two it is, the launcher sees on the host: the Plan says only where it is.
pub struct Root {
    /// The directory or image file (OCI `root.path`).
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

/// A disk image a microVM attaches as a virtio-blk device: raw or qcow2, told apart by the
/// file's content, never its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Disk {
    /// The image file on the host.
    pub path: PathBuf,
    /// The guest may not write: the device refuses writes (VIRTIO_BLK_F_RO) and the image
    /// file is opened read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// The guest's name of the `index`-th disk of [`Plan::disks`] (from 0): `/dev/vdb`,
/// `/dev/vdc`, ..., `/dev/vdz`, `/dev/vdaa`, as Linux's virtio_blk names its devices in the
/// order they are probed, `/dev/vda` being the root's.
pub fn disk_device(index: usize) -> String {
    // virtio_blk's virtblk_name_format: a bijective base-26 number, most significant first.
    let mut n = index + 1;
    let mut letters = Vec::new();
    loop {
        letters.push(b'a' + (n % 26) as u8);
        n /= 26;
        if n == 0 {
            break;
        }
        n -= 1;
    }
    letters.reverse();
    format!("/dev/vd{}", String::from_utf8_lossy(&letters))
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
            disks: Vec::new(),
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
    fn disks_are_named_after_the_root_s_vda_as_virtio_blk_names_them() {
        let names: Vec<String> = [0, 1, 24, 25, 26, 701].map(disk_device).into();
        assert_eq!(
            names,
            [
                "/dev/vdb",
                "/dev/vdc",
                "/dev/vdz",
                "/dev/vdaa",
                "/dev/vdab",
                "/dev/vdaaa"
            ]
        );
    }

    #[test]
    fn disks_read_and_write_camel_case_and_are_left_out_when_empty() {
        let mut plan = Plan::container("/", vec!["true".into()]);
        let json = serde_json::to_string(&plan).unwrap();
        assert!(!json.contains("disks"), "{json}");
        plan.disks = vec![
            Disk {
                path: "/data.qcow2".into(),
                read_only: true,
            },
            Disk {
                path: "/scratch.raw".into(),
                read_only: false,
            },
        ];
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(
            json["disks"],
            serde_json::json!([
                {"path": "/data.qcow2", "readOnly": true},
                {"path": "/scratch.raw", "readOnly": false}
            ])
        );
        assert_eq!(serde_json::from_value::<Plan>(json).unwrap(), plan);
        let short: Disk = serde_json::from_str(r#"{"path": "/d"}"#).unwrap();
        assert!(!short.read_only);
        let err = serde_json::from_str::<Disk>(r#"{"path": "/d", "readonly": true}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `readonly`"), "{err}");
    }

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
