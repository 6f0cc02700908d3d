//! The container a kata launch builds inside the guest (`--isolation kata`): what the host
//! decided ([`GuestContainer`]) and the runner that builds it with ns-core and cgroup-core
//! ([`Sandbox`]).
//!
//! capsule-init stays PID 1 of the VM (the sandbox, in Kata's terms); the container's root
//! file system comes from the host as [`KataRoot`] (the ext4 root disk, or a virtio-fs share),
//! which the sandbox mounts read-only at [`CONTAINER_ROOTFS`]; ns-core lays the container's
//! writable overlay over it with its upper layer in [`CONTAINER_STATE`], a tmpfs in guest RAM.
//! The container's limits become a cgroup v2 of the guest's, whose `memory.events` tells an
//! OOM kill apart from any other SIGKILL.

use std::path::Path;

use cgroup_core::Limits;
use ns_core::ContainerSpec;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

mod runner;

pub use runner::{KataChild, KataError, KataExit, Sandbox};

/// Where the sandbox mounts the container's root file system in the guest (read-only): the
/// [`ContainerSpec::rootfs`] of every kata container.
pub const CONTAINER_ROOTFS: &str = "/capsule/container/rootfs";

/// Where the sandbox mounts the launch's virtio-fs shares (the Plan's bind mounts), each at
/// `CONTAINER_SHARES/TAG`, the source of the container's bind mount of it.
pub const CONTAINER_SHARES: &str = "/capsule/shares";

/// The tmpfs in guest RAM that holds the container's state (its overlay's upper and work
/// layers): the [`ContainerSpec::state_dir`] of every kata container.
pub const CONTAINER_STATE: &str = "/capsule/container/state";

/// The container capsule-init builds inside the guest with ns-core and cgroup-core, from the
/// launch's Plan: what the host decided, in the guest's terms (paths inside the guest, limits
/// as guest cgroups). Travels in the agent's first message to the guest, or without the agent
/// in the launch archive's [`GuestConfig::container`](crate::GuestConfig::container).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GuestContainer {
    /// The container as ns-core builds it: namespaces, the process (whole environment), the
    /// hostname, masked and read-only paths, seccomp, the init, mounts (a bind mount's source
    /// is a share under [`CONTAINER_SHARES`]). `rootfs` is [`CONTAINER_ROOTFS`] and
    /// `state_dir` [`CONTAINER_STATE`].
    pub spec: ContainerSpec,
    /// The container's limits, applied to its own cgroup of the guest's cgroup v2 hierarchy.
    #[serde(default)]
    pub limits: Limits,
    /// Where the root file system comes from.
    pub root: KataRoot,
}

/// Where the container's root file system comes from; the sandbox mounts it read-only at
/// [`CONTAINER_ROOTFS`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum KataRoot {
    /// An ext4 file system on this block device (the microVM's root disk,
    /// [`ROOT_DEVICE`](crate::ROOT_DEVICE)). JSON: `{"disk": "/dev/vda"}`.
    Disk(String),
    /// A virtio-fs share with this tag (the rootfs directory served by virtiofsd). JSON:
    /// `{"virtiofs": "rootfs"}`.
    Virtiofs(String),
}

impl GuestContainer {
    /// Checks what the sandbox would otherwise find out half-way: the root's source, and the
    /// two paths that must be the sandbox's own (a host that disagrees about them would have
    /// the sandbox mount over a path of its choosing).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the field (`container.root.disk`, `container.spec.rootfs`).
    pub fn validate(&self) -> Result<()> {
        let invalid = |field: &str, reason: &str| Error::InvalidConfig {
            field: format!("container.{field}"),
            reason: reason.to_owned(),
        };
        for (field, path, expected) in [
            ("spec.rootfs", &self.spec.rootfs, CONTAINER_ROOTFS),
            ("spec.state_dir", &self.spec.state_dir, CONTAINER_STATE),
        ] {
            if path != Path::new(expected) {
                return Err(invalid(field, &format!("must be {expected}")));
            }
        }
        match &self.root {
            KataRoot::Disk(device) => {
                let name = device.strip_prefix("/dev/").unwrap_or_default();
                if name.is_empty() || name.contains(['/', '\0']) || name == "." || name == ".." {
                    return Err(invalid(
                        "root.disk",
                        "must be a device under /dev, e.g. /dev/vda",
                    ));
                }
            }
            KataRoot::Virtiofs(tag) => {
                // The virtio-fs tag field is 36 bytes (VIRTIO 1.2, 5.11.4).
                if tag.is_empty() || tag.len() > 36 || tag.contains('\0') {
                    return Err(invalid("root.virtiofs", "must be a tag of 1 to 36 bytes"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn container() -> GuestContainer {
        let mut spec = ContainerSpec::new("k1", CONTAINER_ROOTFS, vec!["true".into()]);
        spec.state_dir = CONTAINER_STATE.into();
        GuestContainer {
            spec,
            limits: Limits {
                memory: Some(32 << 20),
                pids: Some(16),
                ..Limits::default()
            },
            root: KataRoot::Disk("/dev/vda".into()),
        }
    }

    #[test]
    fn a_container_round_trips_through_json() {
        let container = container();
        let json = serde_json::to_string(&container).unwrap();
        assert!(json.contains(r#""root":{"disk":"/dev/vda"}"#), "{json}");
        assert!(json.contains(r#""memory":33554432"#), "{json}");
        let back: GuestContainer = serde_json::from_str(&json).unwrap();
        assert_eq!(back, container);
        let virtiofs: KataRoot = serde_json::from_str(r#"{"virtiofs":"rootfs"}"#).unwrap();
        assert_eq!(virtiofs, KataRoot::Virtiofs("rootfs".into()));
    }

    #[test]
    fn paths_the_sandbox_does_not_own_and_bad_sources_are_refused() {
        type Change = fn(&mut GuestContainer);
        let cases: [(Change, &str); 5] = [
            (|c| c.spec.rootfs = "/".into(), "container.spec.rootfs"),
            (
                |c| c.spec.state_dir = "/tmp".into(),
                "container.spec.state_dir",
            ),
            (
                |c| c.root = KataRoot::Disk("vda".into()),
                "container.root.disk",
            ),
            (
                |c| c.root = KataRoot::Disk("/dev/../x".into()),
                "container.root.disk",
            ),
            (
                |c| c.root = KataRoot::Virtiofs(String::new()),
                "container.root.virtiofs",
            ),
        ];
        container().validate().unwrap();
        for (change, field) in cases {
            let mut c = container();
            change(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{err} lacks {field}");
        }
    }
}
