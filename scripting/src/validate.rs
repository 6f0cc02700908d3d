//! Checking a Plan as a whole before anything is created.
//!
//! Every problem is collected, not just the first, and each names the field, the value and
//! what would be accepted.

use cgroup_core::{CpuQuota, Layout, Limits};

use crate::Error;
use crate::plan::{Isolation, MountType, Plan};

/// The host facts a Plan is checked against.
#[derive(Debug)]
pub struct Host {
    pub rootless: bool,
    /// None when the host has no usable cgroup hierarchy (and the Plan asks for no limits).
    pub cgroups: Option<Layout>,
}

impl Host {
    pub fn detect() -> Self {
        Host {
            rootless: !nix::unistd::geteuid().is_root(),
            cgroups: cgroup_core::detect().ok(),
        }
    }
}

/// The period docker uses to turn `--cpus` into a CFS quota.
const CPU_PERIOD_US: u64 = 100_000;

/// Translates the Plan's resources into cgroup limits.
pub(crate) fn limits(plan: &Plan) -> Limits {
    let r = &plan.resources;
    Limits {
        memory: r.memory,
        memory_swap: r.memory_swap,
        cpu_quota: r.cpus.map(|cpus| CpuQuota {
            quota_us: (cpus * CPU_PERIOD_US as f64).round() as u64,
            period_us: CPU_PERIOD_US,
        }),
        cpu_shares: r.cpu_shares,
        pids: r.pids,
        io_weight: r.io_weight,
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
    }
}

/// Checks `plan` against `host`, reporting every problem at once.
pub fn validate(plan: &Plan, host: &Host) -> Result<(), Error> {
    let mut problems = Vec::new();
    common_problems(plan, &mut problems);
    match plan.isolation {
        Isolation::Container => container_problems(plan, host, &mut problems),
        Isolation::Microvm => microvm_problems(plan, &mut problems)?,
        Isolation::Kata => {
            return Err(Error::Unsupported(
                "isolation \"kata\" (a container inside a microVM) needs the microVM's virtio devices, which this build does not have yet; use --isolation microvm or container".to_owned(),
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(problems))
    }
}

/// What a microVM cannot do yet, and the guest artifacts it needs. A host
/// that cannot boot the kernel at all is one error, not a list.
fn microvm_problems(plan: &Plan, problems: &mut Vec<String>) -> Result<(), Error> {
    let vm = plan.vm.clone().unwrap_or_default();
    let flavour = kvm_core::detect_flavour();
    if vm.kernel.is_none() && !flavour.boots_stock_kernels() {
        return Err(Error::Unsupported(format!(
            "isolation \"microvm\" cannot boot the stock guest kernel here: {}",
            flavour.stock_kernel_refusal()
        )));
    }
    let artifacts = crate::backend::microvm::GuestArtifacts::of(&vm);
    for (field, path, flag) in [
        ("vm.kernel", &artifacts.kernel, "--kernel"),
        ("vm.initrd", &artifacts.initrd, "--initrd"),
    ] {
        if !path.is_file() {
            problems.push(format!(
                "{field} {}: no such file; run `cargo xtask guest` (it fetches Debian's kernel and builds capsule-init's initramfs) or give {flag} FILE",
                path.display()
            ));
        }
    }
    let r = &plan.resources;
    if let Some(memory) = r.memory
        && memory < crate::backend::microvm::MIN_MEMORY
    {
        problems.push(format!(
            "resources.memory {memory}: a microVM needs at least 128M (its kernel and initramfs live in it)"
        ));
    }
    if let Some(cpus) = r.cpus
        && cpus.ceil() > 254.0
    {
        problems.push(format!(
            "resources.cpus {cpus}: a microVM has at most 254 vCPUs"
        ));
    }
    let container_only = [
        ("memorySwap", r.memory_swap.is_some(), "--memory-swap"),
        ("cpuShares", r.cpu_shares.is_some(), "--cpu-shares"),
        ("pids", r.pids.is_some(), "--pids"),
        ("ioWeight", r.io_weight.is_some(), "--blkio-weight"),
        ("cpusetCpus", r.cpuset_cpus.is_some(), "--cpuset-cpus"),
        ("cpusetMems", r.cpuset_mems.is_some(), "--cpuset-mems"),
    ];
    for (field, set, flag) in container_only {
        if set {
            problems.push(format!(
                "resources.{field}: a microVM is sized by memory and cpus only (limits inside it come with isolation \"kata\"); drop {flag} or use --isolation container"
            ));
        }
    }
    for mount in &plan.mounts {
        problems.push(format!(
            "mounts {}: a microVM cannot share host directories yet (that comes with its virtio devices); drop --volume/--tmpfs or use --isolation container",
            mount.destination.display()
        ));
    }
    if plan.user_namespace.is_some() {
        problems.push(
            "userNamespace: a microVM's guest has its own kernel and ids; drop --uidmap/--gidmap"
                .to_owned(),
        );
    }
    if !plan.init {
        problems.push(
            "init: in a microVM capsule-init is always PID 1 (it reports the exit status); drop --no-init".to_owned(),
        );
    }
    Ok(())
}

fn container_problems(plan: &Plan, host: &Host, problems: &mut Vec<String>) {
    if plan.vm.is_some() {
        problems.push(
            "vm: kernel, initrd and kernel log are for --isolation microvm; drop --kernel/--initrd/--kernel-log"
                .to_owned(),
        );
    }
    if plan.timeout.is_some() {
        problems.push(
            "timeout: containers do not take a timeout yet; drop --timeout or use --isolation microvm"
                .to_owned(),
        );
    }
    for mount in &plan.mounts {
        let dest = mount.destination.display();
        if !mount.destination.is_absolute() || mount.destination == std::path::Path::new("/") {
            problems.push(format!(
                "mounts {dest}: destination must be an absolute path other than /"
            ));
        }
        match (mount.kind, &mount.source) {
            (MountType::Bind, None) => {
                problems.push(format!("mounts {dest}: a bind mount needs a source"))
            }
            (MountType::Bind, Some(src)) if !src.exists() => problems.push(format!(
                "mounts {dest}: source {} does not exist on the host",
                src.display()
            )),
            (MountType::Tmpfs, Some(_)) => {
                problems.push(format!("mounts {dest}: a tmpfs takes no source"))
            }
            _ => {}
        }
    }
    if let Some(maps) = &plan.user_namespace {
        if maps.uids.is_empty() || maps.gids.is_empty() {
            problems.push(
                "userNamespace: give both uid and gid maps (--uidmap and --gidmap)".to_owned(),
            );
        } else if host.rootless {
            problems.push(
                "userNamespace: a rootless launch maps only your own ids; drop --uidmap/--gidmap or run as root".to_owned(),
            );
        } else {
            let user = &plan.process.user;
            if !maps.maps_uid(user.uid) || !maps.maps_gid(user.gid) {
                problems.push(format!(
                    "process.user {}:{}: not mapped by userNamespace; map it with --uidmap/--gidmap",
                    user.uid, user.gid
                ));
            }
        }
    }
    let limits = limits(plan);
    if host.rootless {
        if plan.process.user.uid != 0 || plan.process.user.gid != 0 {
            problems.push(format!(
                "process.user {}:{}: a rootless container maps only your own user, as root inside; run capsule as root to use other users",
                plan.process.user.uid, plan.process.user.gid
            ));
        }
        if !plan.resources.is_empty() {
            problems.push(
                "resources: limits need cgroups, which an unprivileged user can only use through a delegated cgroup v2 subtree, and this host delegates none; run capsule as root or drop the limits".to_owned(),
            );
        }
    } else {
        match &host.cgroups {
            Some(layout) => {
                if let Err(errors) = layout.validate(&limits) {
                    problems.extend(errors.iter().map(|e| format!("resources.{e}")));
                }
            }
            None => problems.push(
                "this host has no usable cgroup hierarchy under /sys/fs/cgroup; mount cgroup2 or the v1 controllers".to_owned(),
            ),
        }
    }
}

/// Checks every isolation shares: the root, the process, the hostname.
fn common_problems(plan: &Plan, problems: &mut Vec<String>) {
    let root = &plan.root.path;
    match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => problems.push(format!(
            "root.path {}: not a directory; give the directory that becomes /",
            root.display()
        )),
        Err(e) => problems.push(format!(
            "root.path {}: {e}; give an existing directory (cargo xtask rootfs busybox builds one)",
            root.display()
        )),
    }
    if plan.process.args.first().is_none_or(|a| a.is_empty()) {
        problems.push("process.args is empty: give the command to run after --".to_owned());
    }
    if !plan.process.cwd.is_absolute() {
        problems.push(format!(
            "process.cwd {:?}: must be an absolute path",
            plan.process.cwd
        ));
    }
    for env in &plan.process.env {
        if !env.contains('=') {
            problems.push(format!("process.env {env:?}: expected KEY=VALUE"));
        }
    }
    for rlimit in &plan.process.rlimits {
        if let Err(e) = ns_core::parse_rlimit_resource(&rlimit.kind) {
            problems.push(format!("process.rlimits {}: {e}", rlimit.kind));
        } else if rlimit.soft > rlimit.hard {
            problems.push(format!(
                "process.rlimits {}: soft limit {} is above hard limit {}",
                rlimit.kind, rlimit.soft, rlimit.hard
            ));
        }
    }
    if let Some(name) = &plan.hostname {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !valid {
            problems.push(format!(
                "hostname {name:?}: expected 1 to 64 letters, digits, '-' or '.'"
            ));
        }
    }
}
