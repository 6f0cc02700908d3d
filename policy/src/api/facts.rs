//! The inputs as scripts read them: `host.kvm`, `workload.args`, ... (read-only).

use rhai::plugin::*;

#[export_module]
pub mod facts {
    use rhai::{Array, INT, Map};

    use crate::Workload;
    use plan::Host;

    /// `"hardware"` (stock guest kernels boot), `"pvm"` (software KVM: only PVM-built guest
    /// kernels boot) or `"none"`.
    #[rhai_fn(get = "kvm", pure)]
    pub fn kvm(host: &mut Host) -> String {
        host.kvm.as_str().to_owned()
    }

    /// The cgroup layout: `"v1"`, `"v2"`, `"hybrid"` or `"none"`.
    #[rhai_fn(get = "cgroups", pure)]
    pub fn cgroups(host: &mut Host) -> String {
        host.cgroups.clone()
    }

    /// The CPUs capsule may run on.
    #[rhai_fn(get = "cpus", pure)]
    pub fn cpus(host: &mut Host) -> INT {
        INT::from(host.cpus)
    }

    /// Bytes of RAM.
    #[rhai_fn(get = "memory_total", pure)]
    pub fn memory_total(host: &mut Host) -> INT {
        INT::try_from(host.memory_total).unwrap_or(INT::MAX)
    }

    /// Bytes of RAM available to new workloads without swapping.
    #[rhai_fn(get = "memory_free", pure)]
    pub fn memory_free(host: &mut Host) -> INT {
        INT::try_from(host.memory_free).unwrap_or(INT::MAX)
    }

    /// The architecture, e.g. `"x86_64"`.
    #[rhai_fn(get = "arch", pure)]
    pub fn arch(host: &mut Host) -> String {
        host.arch.clone()
    }

    /// The running kernel's release, e.g. `"6.1.0-18-amd64"`.
    #[rhai_fn(get = "kernel", pure)]
    pub fn kernel(host: &mut Host) -> String {
        host.kernel.clone()
    }

    /// Whether capsule runs without root: no cgroup limits, only your own ids.
    #[rhai_fn(get = "rootless", pure)]
    pub fn rootless(host: &mut Host) -> bool {
        host.rootless
    }

    /// The host user ids set aside for hardened containers: `#{start: 1879048192, count:
    /// 65536}` from the `capsule` line of `/etc/subuid`, `#{}` when there is none.
    #[rhai_fn(get = "subuid", pure)]
    pub fn subuid(host: &mut Host) -> Map {
        super::range_map(host.subids.map(|s| s.uid))
    }

    /// The host group ids set aside for hardened containers, from `/etc/subgid`, as
    /// `host.subuid`.
    #[rhai_fn(get = "subgid", pure)]
    pub fn subgid(host: &mut Host) -> Map {
        super::range_map(host.subids.map(|s| s.gid))
    }

    /// The first word after `--` on the command line, `""` when none was given.
    #[rhai_fn(get = "command", pure)]
    pub fn command(workload: &mut Workload) -> String {
        workload.command.clone()
    }

    /// The words after the command.
    #[rhai_fn(get = "args", pure)]
    pub fn workload_args(workload: &mut Workload) -> Array {
        workload.args.iter().cloned().map(Dynamic::from).collect()
    }

    /// The `-e KEY=VALUE` pairs, as a map.
    #[rhai_fn(get = "env", pure)]
    pub fn env(workload: &mut Workload) -> Map {
        workload
            .env
            .iter()
            .map(|(k, v)| (k.as_str().into(), Dynamic::from(v.clone())))
            .collect()
    }

    /// `--rootfs DIR` as an absolute path, `""` when none was given.
    #[rhai_fn(get = "rootfs", pure)]
    pub fn rootfs(workload: &mut Workload) -> String {
        workload
            .rootfs
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }
}

/// A subordinate id range as a script map, empty when there is none.
fn range_map(range: Option<plan::SubIdRange>) -> rhai::Map {
    range
        .map(|r| {
            rhai::Map::from([
                ("start".into(), Dynamic::from(rhai::INT::from(r.start))),
                ("count".into(), Dynamic::from(rhai::INT::from(r.count))),
            ])
        })
        .unwrap_or_default()
}
