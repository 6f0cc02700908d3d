use ns_core::{Capabilities, Rlimit, SeccompProfile};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Linux's `HOST_NAME_MAX`.
const HOSTNAME_MAX: usize = 64;

/// Linux's `NGROUPS_MAX`: `setgroups` refuses more.
const GROUPS_MAX: usize = 65_536;

/// What the guest's init runs, and how. Travels as JSON at [`CONFIG_PATH`](crate::CONFIG_PATH).
///
/// Only `args` is required in the JSON; every other field has the default of
/// [`GuestConfig::new`]. Unknown fields are refused, so a host and an init that disagree about
/// the format fail loudly instead of silently dropping a setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GuestConfig {
    /// The command and its arguments; `args[0]` is looked up in the `PATH` of `env` when it
    /// has no `/`. Never empty.
    pub args: Vec<String>,
    /// The command's whole environment, `KEY=VALUE` each.
    #[serde(default)]
    pub env: Vec<String>,
    /// The command's working directory (absolute, inside the root filesystem).
    #[serde(default = "root_dir")]
    pub cwd: String,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    /// Supplementary groups; empty clears them.
    #[serde(default)]
    pub additional_gids: Vec<u32>,
    /// The guest's hostname; `None` keeps the kernel's.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Kernel module files (`virtio.ko`) in [`MODULES_DIR`](crate::MODULES_DIR), loaded in
    /// this order before anything else; one that is already loaded is fine.
    #[serde(default)]
    pub modules: Vec<String>,
    /// Mount the root filesystem read-only.
    #[serde(default)]
    pub readonly_root: bool,
    /// The init prints no notes of its own (errors are always printed).
    #[serde(default)]
    pub quiet: bool,
    /// The command's capability sets (all of them by default: it is root in its own VM).
    #[serde(default = "Capabilities::all")]
    pub capabilities: Capabilities,
    /// Set no_new_privs before running the command.
    #[serde(default)]
    pub no_new_privileges: bool,
    /// Resource limits of the command.
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
    /// The command's seccomp filter (none by default).
    #[serde(default = "unconfined")]
    pub seccomp: SeccompProfile,
}

fn unconfined() -> SeccompProfile {
    SeccompProfile::Unconfined
}

fn root_dir() -> String {
    "/".to_owned()
}

impl GuestConfig {
    /// Runs `args` as root in `/` with an empty environment.
    pub fn new(args: Vec<String>) -> Self {
        Self {
            args,
            env: Vec::new(),
            cwd: root_dir(),
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            hostname: None,
            modules: Vec::new(),
            readonly_root: false,
            quiet: false,
            capabilities: Capabilities::all(),
            no_new_privileges: false,
            rlimits: Vec::new(),
            seccomp: SeccompProfile::Unconfined,
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
        match self.args.first() {
            None => return Err(invalid("args", "must name a command")),
            Some(a) if a.is_empty() => return Err(invalid("args[0]", "must not be empty")),
            Some(_) => {}
        }
        for (i, arg) in self.args.iter().enumerate() {
            no_nul(arg, || format!("args[{i}]"))?;
        }
        for (i, var) in self.env.iter().enumerate() {
            no_nul(var, || format!("env[{i}]"))?;
            match var.split_once('=') {
                Some((key, _)) if !key.is_empty() => {}
                _ => return Err(invalid(format!("env[{i}]"), "must be KEY=VALUE")),
            }
        }
        no_nul(&self.cwd, || "cwd".to_owned())?;
        if !self.cwd.starts_with('/') {
            return Err(invalid("cwd", "must be an absolute path"));
        }
        if self.additional_gids.len() > GROUPS_MAX {
            return Err(invalid(
                "additionalGids",
                format!("at most {GROUPS_MAX} groups"),
            ));
        }
        if let Some(hostname) = &self.hostname {
            no_nul(hostname, || "hostname".to_owned())?;
            if hostname.is_empty() || hostname.len() > HOSTNAME_MAX {
                return Err(invalid(
                    "hostname",
                    format!("must be 1 to {HOSTNAME_MAX} bytes"),
                ));
            }
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

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::InvalidConfig {
        field: field.into(),
        reason: reason.into(),
    }
}

fn no_nul(value: &str, field: impl FnOnce() -> String) -> Result<()> {
    if value.contains('\0') {
        return Err(invalid(field(), "must not contain NUL bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> GuestConfig {
        GuestConfig {
            args: vec!["/bin/sh".into(), "-c".into(), "exit 3".into()],
            env: vec!["PATH=/bin".into(), "A=b=c".into()],
            cwd: "/home/user".into(),
            uid: 1000,
            gid: 1000,
            additional_gids: vec![10, 20],
            hostname: Some("guest".into()),
            modules: vec!["virtio.ko".into()],
            readonly_root: true,
            quiet: true,
            capabilities: Capabilities::oci_default(),
            no_new_privileges: true,
            rlimits: vec![Rlimit {
                resource: libc::RLIMIT_NOFILE as i32,
                soft: 1024,
                hard: 2048,
            }],
            seccomp: SeccompProfile::Default,
        }
    }

    #[test]
    fn a_config_round_trips_through_json_in_camel_case() {
        let config = full();
        let json = config.to_json().unwrap();
        let text = std::str::from_utf8(&json).unwrap();
        assert!(text.contains("\"additionalGids\":[10,20]"), "{text}");
        assert!(text.contains("\"readonlyRoot\":true"), "{text}");
        assert_eq!(GuestConfig::from_json(&json).unwrap(), config);
    }

    #[test]
    fn only_args_is_required() {
        let config = GuestConfig::from_json(br#"{"args":["true"]}"#).unwrap();
        assert_eq!(config, GuestConfig::new(vec!["true".into()]));
        assert_eq!(config.cwd, "/");
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_refused() {
        let err = GuestConfig::from_json(br#"{"args":["true"],"rootfs":"/x"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `rootfs`"), "{err}");
        assert!(GuestConfig::from_json(br#"{"args":["true"],"uid":-1}"#).is_err());
        assert!(GuestConfig::from_json(br#"{"args":"true"}"#).is_err());
        assert!(GuestConfig::from_json(b"not json").is_err());
    }

    #[test]
    fn values_the_init_cannot_use_are_refused_by_field() {
        type Change = fn(&mut GuestConfig);
        let cases: Vec<(Change, &str)> = vec![
            (|c| c.args.clear(), "args:"),
            (|c| c.args[0].clear(), "args[0]:"),
            (|c| c.args[2].push('\0'), "args[2]: must not contain NUL"),
            (
                |c| c.env.push("NOVALUE".into()),
                "env[2]: must be KEY=VALUE",
            ),
            (|c| c.env.push("=x".into()), "env[2]: must be KEY=VALUE"),
            (|c| c.cwd = "home".into(), "cwd: must be an absolute path"),
            (|c| c.hostname = Some(String::new()), "hostname:"),
            (|c| c.hostname = Some("h".repeat(65)), "hostname:"),
            (|c| c.modules.push("../x.ko".into()), "modules[1]:"),
            (|c| c.modules.push("..".into()), "modules[1]:"),
        ];
        for (change, expected) in cases {
            let mut config = full();
            change(&mut config);
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(expected), "{err:?} lacks {expected:?}");
            assert!(config.to_json().is_err());
        }
    }
}
