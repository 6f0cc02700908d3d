//! Limits on memory, CPU, processes and I/O, with `docker run`'s meanings. For a microVM,
//! `memory` and `cpus` size the machine instead (its RAM and vCPUs, as Kata sizes its VMs).

use rhai::plugin::*;

#[export_module]
pub mod resources {
    use rhai::INT;

    use crate::api::values::{Refusal, count, cpus as parse_cpus, refuse, size};
    use crate::script_plan::{ScriptPlan, written};

    /// Memory limit (`"256M"`, `"1G"`, `256.mib()`); for a microVM, its RAM (default 256M).
    #[rhai_fn(return_raw)]
    pub fn memory(
        ctx: NativeCallContext,
        p: &mut ScriptPlan,
        limit: Dynamic,
    ) -> Result<(), Refusal> {
        p.plan.resources.memory = Some(size("resources.memory", &limit)?);
        p.record(&ctx, "resources.memory", written(&limit));
        Ok(())
    }

    /// Memory plus swap (`"512M"`), or `-1` for unlimited swap (`docker run --memory-swap`).
    #[rhai_fn(return_raw)]
    pub fn memory_swap(
        ctx: NativeCallContext,
        p: &mut ScriptPlan,
        limit: Dynamic,
    ) -> Result<(), Refusal> {
        let value = if limit.as_int() == Ok(-1) {
            -1
        } else {
            let bytes = size("resources.memorySwap", &limit)?;
            i64::try_from(bytes).map_err(|_| refuse("resources.memorySwap", &limit, "too large"))?
        };
        p.plan.resources.memory_swap = Some(value);
        p.record(&ctx, "resources.memorySwap", written(&limit));
        Ok(())
    }

    /// CPUs of time per period (`1.5`, `2` or `"0.5"`); for a microVM, its vCPUs (rounded up).
    #[rhai_fn(return_raw)]
    pub fn cpus(
        ctx: NativeCallContext,
        p: &mut ScriptPlan,
        amount: Dynamic,
    ) -> Result<(), Refusal> {
        p.plan.resources.cpus = Some(parse_cpus("resources.cpus", &amount)?);
        p.record(&ctx, "resources.cpus", written(&amount));
        Ok(())
    }

    /// Relative CPU weight against other workloads, 2 to 262144 (`docker run --cpu-shares`).
    #[rhai_fn(return_raw)]
    pub fn cpu_shares(
        ctx: NativeCallContext,
        p: &mut ScriptPlan,
        shares: INT,
    ) -> Result<(), Refusal> {
        p.plan.resources.cpu_shares = Some(count("resources.cpuShares", shares)?);
        p.record(&ctx, "resources.cpuShares", shares.to_string());
        Ok(())
    }

    /// The most processes and threads the workload may have at once.
    #[rhai_fn(return_raw)]
    pub fn pids(ctx: NativeCallContext, p: &mut ScriptPlan, limit: INT) -> Result<(), Refusal> {
        p.plan.resources.pids = Some(count("resources.pids", limit)?);
        p.record(&ctx, "resources.pids", limit.to_string());
        Ok(())
    }

    /// Relative block I/O weight, 10 to 1000 (`docker run --blkio-weight`).
    #[rhai_fn(return_raw)]
    pub fn io_weight(
        ctx: NativeCallContext,
        p: &mut ScriptPlan,
        weight: INT,
    ) -> Result<(), Refusal> {
        p.plan.resources.io_weight = Some(count("resources.ioWeight", weight)?);
        p.record(&ctx, "resources.ioWeight", weight.to_string());
        Ok(())
    }

    /// The CPUs the workload may run on, as a list such as `"0-1"` or `"0,2"`.
    pub fn cpuset_cpus(ctx: NativeCallContext, p: &mut ScriptPlan, list: &str) {
        p.plan.resources.cpuset_cpus = Some(list.to_owned());
        p.record(&ctx, "resources.cpusetCpus", format!("{list:?}"));
    }

    /// The memory nodes the workload may use, as a list such as `"0"`.
    pub fn cpuset_mems(ctx: NativeCallContext, p: &mut ScriptPlan, list: &str) {
        p.plan.resources.cpuset_mems = Some(list.to_owned());
        p.record(&ctx, "resources.cpusetMems", format!("{list:?}"));
    }
}
