use serde::{Deserialize, Serialize};

use crate::workload::{invalid, no_nul};
use crate::{Result, Workload};

/// How the guest's init boots, and what it runs. Travels as JSON at
/// [`CONFIG_PATH`](crate::CONFIG_PATH).
///
/// Every field has a default; but for one of `workload` and `agent`. Unknown fields are
/// refused, so a host and an init that disagree about the format fail loudly instead of
/// silently dropping a setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GuestConfig {
    /// The workload, when it travels in the archive: a guest without the agent (a kernel
    /// without vsock, QEMU's benchmark guests), which runs it on the console and reports
    /// through the exit port. `None` with [`GuestConfig::agent`]: the agent's `Run` brings it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
    /// Serve the launch through the guest agent ([`agent`](crate::agent)): listen on vsock
    /// port [`AGENT_PORT`](crate::AGENT_PORT) and take the workload, stdin, signals and the
    /// terminal from the host there. Needs the vsock modules in [`GuestConfig::modules`]
    /// ([`AGENT_MODULES`](crate::AGENT_MODULES)) on a kernel that builds them as modules.
    #[serde(default)]
    pub agent: bool,
    /// Kernel module files (`virtio.ko`) in [`MODULES_DIR`](crate::MODULES_DIR), loaded in
    /// this order before anything else; one that is already loaded is fine.
    #[serde(default)]
    pub modules: Vec<String>,
    /// Where the root filesystem is.
    #[serde(default)]
    pub root: GuestRoot,
    /// Mount the root filesystem read-only: a disk root without the overlay.
    #[serde(default)]
    pub readonly_root: bool,
    /// Where the command's stdin, stdout and stderr are.
    #[serde(default)]
    pub console: GuestConsole,
    /// The init prints no notes of its own (errors are always printed).
    #[serde(default)]
    pub quiet: bool,
    /// Host directories shared over virtio-fs, mounted inside the root once it is entered.
    #[serde(default)]
    pub shares: Vec<Share>,
    /// Fresh tmpfs mounts inside the root, as a container's `--tmpfs`.
    #[serde(default)]
    pub tmpfs: Vec<Tmpfs>,
}

/// A host directory the guest mounts from a virtio-fs device (`mount -t virtiofs TAG DST`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Share {
    /// The device's tag (virtio 1.2 §5.11.4: at most 36 bytes).
    pub tag: String,
    /// Where it appears inside the root, absolute; the mount point is created if missing.
    pub destination: String,
    /// Mounted with MS_RDONLY (the host's daemon refuses writes too).
    #[serde(default)]
    pub readonly: bool,
}

/// A fresh tmpfs inside the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tmpfs {
    /// Where it appears inside the root, absolute; the mount point is created if missing.
    pub destination: String,
    /// Its size in bytes; `None` is the kernel's default (half of RAM).
    #[serde(default)]
    pub size: Option<u64>,
    /// Mounted with MS_RDONLY.
    #[serde(default)]
    pub readonly: bool,
}

/// Where the guest's root filesystem is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum GuestRoot {
    /// In the initramfs: the tree the per-launch archive carries at
    /// [`ROOTFS_DIR`](crate::ROOTFS_DIR), or the initramfs itself when it carries none.
    #[default]
    Initramfs,
    /// An ext4 file system on this block device ([`ROOT_DEVICE`](crate::ROOT_DEVICE)),
    /// mounted read-only: the lower layer of an overlay whose upper layer is a tmpfs in guest
    /// RAM, so the command can write and the image never changes; alone with
    /// [`GuestConfig::readonly_root`]. JSON: `{"disk": "/dev/vda"}`.
    Disk(String),
    /// The host directory of the virtio-fs device with this tag, as the lower layer of the
    /// same overlay as [`GuestRoot::Disk`] (alone with [`GuestConfig::readonly_root`]).
    /// JSON: `{"share": "root"}`.
    Share(String),
    /// A fresh, empty tmpfs: the root of a sandbox that builds containers rather than running
    /// a command in its root (kata), since pivot_root(2) refuses to move the initramfs, and
    /// a container's mount namespace must be able to. JSON: `"sandbox"`.
    Sandbox,
}

/// Where the command's stdin, stdout and stderr are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestConsole {
    /// The kernel's console (`/dev/console`, the serial port).
    #[default]
    Serial,
    /// The virtio console's first port ([`VIRTIO_CONSOLE`](crate::VIRTIO_CONSOLE)); the serial
    /// port keeps the kernel's log.
    Virtio,
}

impl GuestConfig {
    /// Runs `args` from the archive, without the agent ([`Workload::new`]).
    pub fn new(args: Vec<String>) -> Self {
        Self::with(Some(Workload::new(args)), false)
    }

    /// Boots without a workload and serves it through the agent.
    pub fn with_agent() -> Self {
        Self::with(None, true)
    }

    fn with(workload: Option<Workload>, agent: bool) -> Self {
        Self {
            workload,
            agent,
            modules: Vec::new(),
            root: GuestRoot::Initramfs,
            readonly_root: false,
            console: GuestConsole::Serial,
            quiet: false,
            shares: Vec::new(),
            tmpfs: Vec::new(),
        }
    }

    /// Parses and validates the JSON the init reads.
    pub fn from_json(json: &[u8]) -> Result<Self> {
        let config: Self = serde_json::from_slice(json)?;
        config.validate()?;
        Ok(config)
    }

    /// Validates and serializes the config as the init expects it.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        self.validate()?;
        Ok(serde_json::to_vec(self)?)
    }

    /// Checks everything the init would otherwise only find out half-way through its setup:
    /// strings it must pass to the kernel (no NUL bytes), the shapes of `env` and `cwd`, module
    /// names that stay inside [`MODULES_DIR`](crate::MODULES_DIR), kernel limits.
    pub fn validate(&self) -> Result<()> {
        match (&self.workload, self.agent) {
            (Some(workload), false) => workload.validate()?,
            (None, true) => {}
            (Some(_), true) => {
                return Err(invalid(
                    "workload",
                    "comes from the agent's Run message when agent is set",
                ));
            }
            (None, false) => {
                return Err(invalid(
                    "workload",
                    "is needed without the agent (set one of workload and agent)",
                ));
            }
        }
        if let GuestRoot::Disk(device) = &self.root {
            no_nul(device, || "root.disk".to_owned())?;
            let name = device.strip_prefix("/dev/").unwrap_or_default();
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(invalid(
                    "root.disk",
                    "must be a device under /dev, e.g. /dev/vda",
                ));
            }
        }
        if let GuestRoot::Share(tag) = &self.root {
            check_tag(tag, || "root.share".to_owned())?;
        }
        for (i, share) in self.shares.iter().enumerate() {
            check_tag(&share.tag, || format!("shares[{i}].tag"))?;
            check_destination(&share.destination, || format!("shares[{i}].destination"))?;
        }
        for (i, tmpfs) in self.tmpfs.iter().enumerate() {
            check_destination(&tmpfs.destination, || format!("tmpfs[{i}].destination"))?;
        }
        for (i, module) in self.modules.iter().enumerate() {
            no_nul(module, || format!("modules[{i}]"))?;
            if module.is_empty() || module == "." || module == ".." || module.contains('/') {
                return Err(invalid(
                    format!("modules[{i}]"),
                    "must be a file name in the modules directory",
                ));
            }
        }
        Ok(())
    }
}

/// A virtio-fs tag: 1 to 36 bytes (the config space's field), no NUL.
fn check_tag(tag: &str, field: impl Fn() -> String) -> Result<()> {
    no_nul(tag, &field)?;
    if tag.is_empty() || tag.len() > 36 {
        return Err(invalid(field(), "must be 1 to 36 bytes"));
    }
    Ok(())
}

/// A mount's destination: absolute, not the root itself, no `..` (it is created and mounted
/// on inside the root).
fn check_destination(destination: &str, field: impl Fn() -> String) -> Result<()> {
    no_nul(destination, &field)?;
    if !destination.starts_with('/') || destination.trim_matches('/').is_empty() {
        return Err(invalid(field(), "must be an absolute path below /"));
    }
    if destination.split('/').any(|part| part == "..") {
        return Err(invalid(field(), "must not contain .."));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use plan::{Capabilities, Process, Rlimit, SeccompProfile, User};

    use super::*;

    fn w(config: &mut GuestConfig) -> &mut Workload {
        config.workload.as_mut().unwrap()
    }

    fn full() -> GuestConfig {
        GuestConfig {
            workload: Some(Workload {
                process: Process {
                    args: vec!["/bin/sh".into(), "-c".into(), "exit 3".into()],
                    env: vec!["PATH=/bin".into(), "A=b=c".into()],
                    cwd: "/home/user".into(),
                    user: User {
                        uid: 1000,
                        gid: 1000,
                        additional_gids: vec![10, 20],
                    },
                    capabilities: Capabilities::oci_default(),
                    no_new_privileges: true,
                    rlimits: vec![Rlimit {
                        kind: "RLIMIT_NOFILE".into(),
                        soft: 1024,
                        hard: 2048,
                    }],
                },
                seccomp: SeccompProfile::Default,
                hostname: Some("guest".into()),
                container: None,
            }),
            agent: false,
            modules: vec!["virtio.ko".into()],
            root: GuestRoot::Disk("/dev/vda".into()),
            readonly_root: true,
            console: GuestConsole::Virtio,
            quiet: true,
            shares: vec![Share {
                tag: "share0".into(),
                destination: "/data".into(),
                readonly: true,
            }],
            tmpfs: vec![Tmpfs {
                destination: "/scratch".into(),
                size: Some(1 << 20),
                readonly: false,
            }],
        }
    }

    #[test]
    fn shares_and_tmpfs_need_a_tag_that_fits_and_a_destination_below_the_root() {
        assert!(full().validate().is_ok());
        let bad = [
            ("shares[0].tag", {
                let mut c = full();
                c.shares[0].tag = "t".repeat(37);
                c
            }),
            ("shares[0].destination", {
                let mut c = full();
                c.shares[0].destination = "data".into();
                c
            }),
            ("shares[0].destination", {
                let mut c = full();
                c.shares[0].destination = "/".into();
                c
            }),
            ("tmpfs[0].destination", {
                let mut c = full();
                c.tmpfs[0].destination = "/a/../b".into();
                c
            }),
            ("root.share", {
                let mut c = full();
                c.root = GuestRoot::Share(String::new());
                c
            }),
        ];
        for (field, config) in bad {
            let error = config.validate().expect_err(field).to_string();
            assert!(error.contains(field), "{field}: {error}");
        }
    }

    #[test]
    fn a_config_round_trips_through_json_in_camel_case() {
        let config = full();
        let json = config.to_json().unwrap();
        let text = std::str::from_utf8(&json).unwrap();
        assert!(text.contains("\"additional_gids\":[10,20]"), "{text}");
        assert!(text.contains("\"type\":\"RLIMIT_NOFILE\""), "{text}");
        assert!(text.contains("\"readonlyRoot\":true"), "{text}");
        assert!(text.contains("\"root\":{\"disk\":\"/dev/vda\"}"), "{text}");
        assert!(text.contains("\"console\":\"virtio\""), "{text}");
        assert_eq!(GuestConfig::from_json(&json).unwrap(), config);
    }

    #[test]
    fn only_args_is_required() {
        let config =
            GuestConfig::from_json(br#"{"workload":{"process":{"args":["true"]}}}"#).unwrap();
        assert_eq!(
            config.workload.as_ref().unwrap().process.cwd,
            std::path::Path::new("/")
        );
        // A process's serde defaults are a container's, but for the environment and the
        // rlimits, which the host always writes whole.
        let mut expected = GuestConfig::new(vec!["true".into()]);
        expected.workload.as_mut().unwrap().process.env.clear();
        expected.workload.as_mut().unwrap().process.rlimits.clear();
        assert_eq!(config, expected);
    }

    #[test]
    fn the_root_defaults_to_the_initramfs_and_the_console_to_the_serial_port() {
        let config =
            GuestConfig::from_json(br#"{"workload":{"process":{"args":["true"]}}}"#).unwrap();
        assert_eq!(
            (config.root, config.console),
            (GuestRoot::Initramfs, GuestConsole::Serial)
        );
        let config = GuestConfig::from_json(
            br#"{"workload":{"process":{"args":["true"]}},"root":"initramfs","console":"serial"}"#,
        )
        .unwrap();
        assert_eq!(config.root, GuestRoot::Initramfs);
        assert!(
            GuestConfig::from_json(br#"{"workload":{"process":{"args":["true"]}},"root":"disk"}"#)
                .is_err()
        );
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_refused() {
        let err =
            GuestConfig::from_json(br#"{"workload":{"process":{"args":["true"]}},"rootfs":"/x"}"#)
                .unwrap_err();
        assert!(err.to_string().contains("unknown field `rootfs`"), "{err}");
        let negative =
            br#"{"workload":{"process":{"args":["true"],"user":{"uid":-1,"gid":0,"additional_gids":[]}}}}"#;
        assert!(GuestConfig::from_json(negative).is_err());
        assert!(GuestConfig::from_json(br#"{"workload":{"process":{"args":"true"}}}"#).is_err());
        assert!(GuestConfig::from_json(b"not json").is_err());
    }

    #[test]
    fn values_the_init_cannot_use_are_refused_by_field() {
        type Change = fn(&mut GuestConfig);
        let cases: Vec<(Change, &str)> = vec![
            (|c| w(c).process.args.clear(), "args:"),
            (|c| w(c).process.args[0].clear(), "args[0]:"),
            (
                |c| w(c).process.args[2].push('\0'),
                "args[2]: must not contain NUL",
            ),
            (
                |c| w(c).process.env.push("NOVALUE".into()),
                "env[2]: must be KEY=VALUE",
            ),
            (
                |c| w(c).process.env.push("=x".into()),
                "env[2]: must be KEY=VALUE",
            ),
            (
                |c| w(c).process.cwd = "home".into(),
                "cwd: must be an absolute path",
            ),
            (|c| w(c).hostname = Some(String::new()), "hostname:"),
            (|c| w(c).hostname = Some("h".repeat(65)), "hostname:"),
            (|c| c.modules.push("../x.ko".into()), "modules[1]:"),
            (|c| c.modules.push("..".into()), "modules[1]:"),
            (|c| c.root = GuestRoot::Disk("vda".into()), "root.disk:"),
            (|c| c.root = GuestRoot::Disk("/dev/".into()), "root.disk:"),
            (
                |c| c.root = GuestRoot::Disk("/dev/../vda".into()),
                "root.disk:",
            ),
            (
                |c| c.root = GuestRoot::Disk("/dev/vda\0".into()),
                "root.disk:",
            ),
        ];
        for (change, expected) in cases {
            let mut config = full();
            change(&mut config);
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(expected), "{err:?} lacks {expected:?}");
            assert!(config.to_json().is_err());
        }
    }

    #[test]
    fn the_workload_is_in_the_archive_or_comes_through_the_agent_never_both_nor_neither() {
        let json = GuestConfig::with_agent().to_json().unwrap();
        let text = std::str::from_utf8(&json).unwrap();
        assert!(
            text.contains("\"agent\":true") && !text.contains("workload"),
            "{text}"
        );
        assert_eq!(
            GuestConfig::from_json(&json).unwrap(),
            GuestConfig::with_agent()
        );

        let mut both = full();
        both.agent = true;
        let err = both.validate().unwrap_err().to_string();
        assert!(err.contains("workload: comes from the agent"), "{err}");
        let err = GuestConfig::from_json(b"{}").unwrap_err().to_string();
        assert!(
            err.contains("workload: is needed without the agent"),
            "{err}"
        );
    }
}
