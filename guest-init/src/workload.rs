//! What the guest runs: the process and its confinement, from the archive (without the agent)
//! or the agent's `Run` message.

use plan::{Process, SeccompProfile};
use serde::{Deserialize, Serialize};

use crate::kata::GuestContainer;
use crate::{Error, Result};

/// Linux's `HOST_NAME_MAX`.
const HOSTNAME_MAX: usize = 64;

/// Linux's `NGROUPS_MAX`: `setgroups` refuses more.
const GROUPS_MAX: usize = 65_536;

/// The guest's workload: the command with the privileges, limits and seccomp filter it would
/// have in a container, the guest's hostname and, for kata, the container built around it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Workload {
    /// The command, its environment (whole: the host adds the defaults), working directory,
    /// user, capabilities, no_new_privs and rlimits: the same description a container's
    /// process has (`plan::Process`).
    pub process: Process,
    /// The command's seccomp filter.
    #[serde(default)]
    pub seccomp: SeccompProfile,
    /// The guest's hostname; `None` keeps the kernel's.
    #[serde(default)]
    pub hostname: Option<String>,
    /// `--isolation kata`: the container the command runs in; `None` runs it in the guest
    /// itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<GuestContainer>,
}

impl Workload {
    /// Runs `args` with a container's defaults ([`Process::new`], Docker's seccomp profile)
    /// and the kernel's hostname.
    pub fn new(args: Vec<String>) -> Self {
        Self {
            process: Process::new(args),
            seccomp: SeccompProfile::Default,
            hostname: None,
            container: None,
        }
    }

    /// Checks everything the init would otherwise only find out half-way through its setup:
    /// strings it must pass to the kernel (no NUL bytes), the shapes of `env` and `cwd`,
    /// kernel limits.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let process = &self.process;
        match process.args.first() {
            None => return Err(invalid("args", "must name a command")),
            Some(a) if a.is_empty() => return Err(invalid("args[0]", "must not be empty")),
            Some(_) => {}
        }
        for (i, arg) in process.args.iter().enumerate() {
            no_nul(arg, || format!("args[{i}]"))?;
        }
        for (i, var) in process.env.iter().enumerate() {
            no_nul(var, || format!("env[{i}]"))?;
            match var.split_once('=') {
                Some((key, _)) if !key.is_empty() => {}
                _ => return Err(invalid(format!("env[{i}]"), "must be KEY=VALUE")),
            }
        }
        let cwd = process
            .cwd
            .to_str()
            .ok_or_else(|| invalid("cwd", "must be UTF-8"))?;
        no_nul(cwd, || "cwd".to_owned())?;
        if !cwd.starts_with('/') {
            return Err(invalid("cwd", "must be an absolute path"));
        }
        if process.user.additional_gids.len() > GROUPS_MAX {
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
        if let Some(container) = &self.container {
            container.validate()?;
        }
        Ok(())
    }
}

/// An [`Error::InvalidConfig`] for `field`.
pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::InvalidConfig {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Refuses a NUL byte in `value`, which the kernel would cut the string at.
pub(crate) fn no_nul(value: &str, field: impl FnOnce() -> String) -> Result<()> {
    if value.contains('\0') {
        return Err(invalid(field(), "must not contain NUL bytes"));
    }
    Ok(())
}
