//! Making Plans and groups of them.

use rhai::plugin::*;

#[export_module]
pub mod create {
    use rhai::Array;

    use crate::Workload;
    use crate::api::process::set_env;
    use crate::api::values::{Refusal, absolute_path, strings};
    use crate::script_plan::{Group, ScriptPlan};
    use plan::Plan;

    /// A container Plan for the workload given on the command line: its root filesystem
    /// (`--rootfs`), command (after `--`) and environment (`-e`), with `docker run`'s
    /// defaults: an overlay over the root, the OCI default capabilities, Docker's seccomp
    /// profile, no network but loopback, `RLIMIT_NOFILE` 1024 and a minimal init.
    ///
    /// ```rhai
    /// let p = plan(workload);
    /// ```
    #[rhai_fn(name = "plan")]
    pub fn from_workload(ctx: NativeCallContext, workload: Workload) -> ScriptPlan {
        let rootfs = workload.rootfs.clone().unwrap_or_default();
        let argv = workload.argv();
        let mut plan = Plan::container(&rootfs, argv.clone());
        for (key, value) in &workload.env {
            set_env(&mut plan, key, value);
        }
        let mut p = ScriptPlan::new(plan, &ctx, "plan(workload)".to_owned());
        p.record(
            &ctx,
            "root.path",
            format!("{:?}", rootfs.display().to_string()),
        );
        p.record(&ctx, "process.args", format!("{argv:?}"));
        p
    }

    /// A container Plan running `argv` (an array of strings) in the root filesystem at
    /// `rootfs` (an absolute path), with the same defaults as `plan(workload)`.
    ///
    /// ```rhai
    /// let p = plan("/srv/rootfs/busybox", ["sh", "-c", "echo hi"]);
    /// ```
    #[rhai_fn(name = "plan", return_raw)]
    pub fn from_parts(
        ctx: NativeCallContext,
        rootfs: &str,
        argv: Array,
    ) -> Result<ScriptPlan, Refusal> {
        let root = absolute_path("root.path", rootfs)?;
        let argv = strings("process.args", &argv)?;
        let written_args = format!("{argv:?}");
        let plan = Plan::container(root, argv);
        let mut p = ScriptPlan::new(plan, &ctx, format!("plan({rootfs:?}, ...)"));
        p.record(&ctx, "root.path", format!("{rootfs:?}"));
        p.record(&ctx, "process.args", written_args);
        Ok(p)
    }

    /// A group of Plans launched one after another, in order, stopping at the first that
    /// fails. (An array of Plans as the script's value launches them all at once.)
    ///
    /// ```rhai
    /// in_order([migrate, serve])
    /// ```
    #[rhai_fn(return_raw)]
    pub fn in_order(plans: Array) -> Result<Group, Refusal> {
        let plans = plans
            .into_iter()
            .map(|item| {
                let type_name = item.type_name();
                item.try_cast::<ScriptPlan>().ok_or_else(|| {
                    format!("in_order takes an array of Plans, and one item is a {type_name}")
                        .into()
                })
            })
            .collect::<Result<Vec<_>, Refusal>>()?;
        if plans.is_empty() {
            return Err("in_order([]) has no Plan to launch; give at least one".into());
        }
        Ok(Group {
            plans,
            sequential: true,
        })
    }
}
