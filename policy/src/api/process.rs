//! The process: command, environment, working directory, user, privileges and rlimits.

use plan::Capabilities;
use rhai::plugin::*;

use crate::api::values::{Refusal, refuse};
use crate::script_plan::ScriptPlan;
use plan::Plan;

/// Sets `key` in the Plan's environment, replacing an earlier value.
pub(crate) fn set_env(plan: &mut Plan, key: &str, value: &str) {
    plan.process
        .env
        .retain(|e| e.split('=').next() != Some(key));
    plan.process.env.push(format!("{key}={value}"));
}

#[export_module]
pub mod process {
    use plan::{CapMask, Capabilities, parse_capability};
    use rhai::{Array, INT};

    use crate::api::values::{Refusal, refuse, strings};
    use crate::script_plan::ScriptPlan;
    use crate::script_plan::image_files;
    use plan::Rlimit;

    /// Replaces the command and its arguments (an array of strings).
    ///
    /// ```rhai
    /// p.command(["/bin/sh", "-c", "echo hello"]);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn command(ctx: NativeCallContext, p: &mut ScriptPlan, argv: Array) -> Result<(), Refusal> {
        let written = format!("{argv:?}");
        p.plan.process.args = strings("process.args", &argv)?;
        p.record(&ctx, "process.args", written);
        Ok(())
    }

    /// Sets one environment variable, replacing an earlier value of it.
    ///
    /// ```rhai
    /// p.env("RUST_LOG", "info");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn env(
        ctx: NativeCallContext,
        p: &mut ScriptPlan,
        key: &str,
        value: &str,
    ) -> Result<(), Refusal> {
        if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
            return Err(refuse(
                "process.env",
                &Dynamic::from(key.to_owned()),
                "expected a name without '=' or NUL, and a value without NUL",
            ));
        }
        super::set_env(&mut p.plan, key, value);
        p.record(&ctx, "process.env", format!("{key:?}"));
        Ok(())
    }

    /// The working directory inside the root filesystem (absolute; default `/`).
    pub fn cwd(ctx: NativeCallContext, p: &mut ScriptPlan, dir: &str) {
        p.plan.process.cwd = dir.into();
        p.record(&ctx, "process.cwd", format!("{dir:?}"));
    }

    /// The user to run as: `"name"`, `"uid"`, `"name:group"` or `"uid:gid"`, resolved in the
    /// root filesystem's own `/etc/passwd` and `/etc/group` (so set the rootfs first).
    ///
    /// ```rhai
    /// p.user("nobody");
    /// p.user("1000:1000");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn user(ctx: NativeCallContext, p: &mut ScriptPlan, spec: &str) -> Result<(), Refusal> {
        let refused = |e: String| refuse("process.user", &Dynamic::from(spec.to_owned()), e);
        let files = image_files(&ctx).ok_or_else(|| refused("no image reader".to_owned()))?;
        let user = plan::resolve_user(spec, &p.plan.root.path, files.as_ref())
            .map_err(|e| refused(e.to_string()))?;
        p.plan.process.user = user;
        p.record(&ctx, "process.user", format!("{spec:?}"));
        Ok(())
    }

    /// The hostname inside the container or guest (default: the launch's id).
    pub fn hostname(ctx: NativeCallContext, p: &mut ScriptPlan, name: &str) {
        p.plan.hostname = Some(name.to_owned());
        p.record(&ctx, "hostname", format!("{name:?}"));
    }

    /// Adds a capability (`"NET_ADMIN"`, `"CAP_NET_ADMIN"`), or every one with `"ALL"`. For a
    /// user other than root the added capabilities are ambient too, so the command keeps them
    /// (podman's `--cap-add`; docker's non-root users keep none).
    #[rhai_fn(return_raw)]
    pub fn cap_add(ctx: NativeCallContext, p: &mut ScriptPlan, name: &str) -> Result<(), Refusal> {
        // "ALL" adds every capability; a single name narrows this to its own bit.
        let mut added = Capabilities::all().permitted;
        super::edit_capabilities(&ctx, p, name, Capabilities::all(), |caps| {
            parse_capability(name).map(|cap| {
                caps.add(cap);
                added = CapMask(cap.bitmask());
            })
        })?;
        p.added_caps.0 |= added.0;
        Ok(())
    }

    /// Drops a capability (`"CHOWN"`), or every one with `"ALL"`.
    #[rhai_fn(return_raw)]
    pub fn cap_drop(ctx: NativeCallContext, p: &mut ScriptPlan, name: &str) -> Result<(), Refusal> {
        super::edit_capabilities(&ctx, p, name, Capabilities::default(), |caps| {
            parse_capability(name).map(|cap| caps.drop(cap))
        })
    }

    /// Sets a resource limit with its `ulimit` or OCI name (`"nofile"`, `"RLIMIT_NPROC"`):
    /// soft and hard values, `-1` for no limit (as `docker run --ulimit`).
    ///
    /// ```rhai
    /// p.rlimit("nofile", 1024, 4096);
    /// p.rlimit("core", 0, -1);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn rlimit(
        ctx: NativeCallContext,
        p: &mut ScriptPlan,
        name: &str,
        soft: INT,
        hard: INT,
    ) -> Result<(), Refusal> {
        let shown = Dynamic::from(name.to_owned());
        let rlimit = plan::rlimit_value(soft)
            .and_then(|soft| Rlimit::new(name, soft, plan::rlimit_value(hard)?))
            .map_err(|e| refuse("process.rlimits", &shown, e.to_string()))?;
        p.plan.process.rlimits.retain(|r| r.kind != rlimit.kind);
        p.plan.process.rlimits.push(rlimit);
        p.record(&ctx, "process.rlimits", format!("{name:?}"));
        Ok(())
    }

    /// Sets a resource limit's soft and hard values to the same number (`-1`: no limit).
    #[rhai_fn(name = "rlimit", return_raw)]
    pub fn rlimit_both(
        ctx: NativeCallContext,
        p: &mut ScriptPlan,
        name: &str,
        limit: INT,
    ) -> Result<(), Refusal> {
        rlimit(ctx, p, name, limit, limit)
    }

    /// Whether the process may gain privileges through setuid binaries (default `true`:
    /// it may not).
    pub fn no_new_privileges(ctx: NativeCallContext, p: &mut ScriptPlan, on: bool) {
        p.plan.process.no_new_privileges = on;
        p.record(&ctx, "process.noNewPrivileges", on.to_string());
    }

    /// Whether capsule's minimal init runs as PID 1, reaping zombies and forwarding signals
    /// (default `true`, like `docker run --init`). A microVM always has it.
    pub fn init(ctx: NativeCallContext, p: &mut ScriptPlan, on: bool) {
        p.plan.init = on;
        p.record(&ctx, "init", on.to_string());
    }
}

/// `"ALL"` makes the set `all`; any other name goes to `edit_one`, whose error refuses it.
fn edit_capabilities(
    ctx: &NativeCallContext,
    p: &mut ScriptPlan,
    name: &str,
    all: Capabilities,
    edit_one: impl FnOnce(&mut Capabilities) -> Result<(), plan::Error>,
) -> Result<(), Refusal> {
    let caps = &mut p.plan.process.capabilities;
    if name.eq_ignore_ascii_case("ALL") {
        *caps = all;
    } else {
        edit_one(caps).map_err(|e| {
            refuse(
                "process.capabilities",
                &Dynamic::from(name.to_owned()),
                e.to_string(),
            )
        })?;
    }
    p.record(ctx, "process.capabilities", format!("{name:?}"));
    Ok(())
}
