//! Checking a Plan as a whole before anything is created.
//!
//! Every problem is collected, not just the first, and each names the field, the value and
//! what would be accepted, with advice for the flags and for a policy script ([`Problem`]).

use cgroup_core::{CpuQuota, Layout, Limits};
use kvm_core::KvmFlavour;

use crate::Error;
use crate::plan::{Isolation, MountType, Plan};
use crate::problem::Problem;

/// The host facts a Plan is checked against.
#[derive(Debug)]
pub struct Host {
    pub rootless: bool,
    /// None when the host has no usable cgroup hierarchy (and the Plan asks for no limits).
    pub cgroups: Option<Layout>,
    /// Whether, and how, this host runs microVMs.
    pub kvm: KvmFlavour,
}

impl Host {
    pub fn detect() -> Self {
        Host {
            rootless: !nix::unistd::geteuid().is_root(),
            cgroups: cgroup_core::detect().ok(),
            kvm: kvm_core::detect_flavour(),
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
        Isolation::Microvm => microvm_problems(plan, host, &mut problems)?,
        Isolation::Kata => {
            return Err(Error::Unsupported(format!(
                "isolation \"kata\" (a container inside a microVM) {KATA_WHY}; use --isolation microvm or container"
            )));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(problems))
    }
}

/// Why `kata` is refused, for the flags and for scripts alike.
pub(crate) const KATA_WHY: &str =
    "needs the microVM's virtio devices, which this build does not have yet";

/// What a microVM cannot do yet, and the guest artifacts it needs. A host
/// that cannot boot the kernel at all is one error, not a list.
fn microvm_problems(plan: &Plan, host: &Host, problems: &mut Vec<Problem>) -> Result<(), Error> {
    let vm = plan.vm.clone().unwrap_or_default();
    let flavour = host.kvm;
    if vm.kernel.is_none() && !flavour.boots_stock_kernels() {
        return Err(Error::Unsupported(format!(
            "isolation \"microvm\" cannot boot the stock guest kernel here: {}",
            flavour.stock_kernel_refusal()
        )));
    }
    let artifacts = crate::backend::microvm::GuestArtifacts::of(&vm);
    for (field, path, flag) in [
        ("vm.kernel", &artifacts.kernel, "kernel"),
        ("vm.initrd", &artifacts.initrd, "initrd"),
    ] {
        if !path.is_file() {
            let guest = "run `cargo xtask guest` (it fetches Debian's kernel and builds capsule-init's initramfs)";
            problems.push(
                Problem::new(field, format!("{field} {}", path.display()), "no such file").fixes(
                    format!("{guest} or give --{flag} FILE"),
                    format!("{guest} or give {flag}(\"FILE\")"),
                ),
            );
        }
    }
    let r = &plan.resources;
    if let Some(memory) = r.memory
        && memory < crate::backend::microvm::MIN_MEMORY
    {
        problems.push(
            Problem::new(
                "resources.memory",
                format!("resources.memory {memory}"),
                "a microVM needs at least 128M (its kernel and initramfs live in it)",
            )
            .fixes(
                "give --memory 128M or more",
                "give memory(\"128M\") or more",
            ),
        );
    }
    if let Some(cpus) = r.cpus
        && cpus.ceil() > 254.0
    {
        problems.push(
            Problem::new(
                "resources.cpus",
                format!("resources.cpus {cpus}"),
                "a microVM has at most 254 vCPUs",
            )
            .fixes("give --cpus 254 or fewer", "give cpus(254) or fewer"),
        );
    }
    // A saved Plan's timeout never went through parse_duration; the run loop turns it into a
    // Duration, which panics on what does not fit.
    if let Some(timeout) = plan.timeout
        && !crate::units::fits_duration(timeout)
    {
        problems.push(
            Problem::new(
                "timeout",
                format!("timeout {timeout}"),
                "expected a positive number of seconds that fits a duration",
            )
            .fixes(
                "give --timeout 30s, for example",
                "give timeout(\"30s\"), for example",
            ),
        );
    }
    let container_only = [
        (
            "memorySwap",
            r.memory_swap.is_some(),
            "--memory-swap",
            "memory_swap",
        ),
        (
            "cpuShares",
            r.cpu_shares.is_some(),
            "--cpu-shares",
            "cpu_shares",
        ),
        ("pids", r.pids.is_some(), "--pids", "pids"),
        (
            "ioWeight",
            r.io_weight.is_some(),
            "--blkio-weight",
            "io_weight",
        ),
        (
            "cpusetCpus",
            r.cpuset_cpus.is_some(),
            "--cpuset-cpus",
            "cpuset_cpus",
        ),
        (
            "cpusetMems",
            r.cpuset_mems.is_some(),
            "--cpuset-mems",
            "cpuset_mems",
        ),
    ];
    for (field, set, flag, function) in container_only {
        if set {
            let field = format!("resources.{field}");
            problems.push(
                Problem::new(
                    &field,
                    &field,
                    "a microVM is sized by memory and cpus only (limits inside it come with isolation \"kata\")",
                )
                .fixes(
                    format!("drop {flag} or use --isolation container"),
                    format!("drop {function}() or use isolation(\"container\")"),
                ),
            );
        }
    }
    for (i, mount) in plan.mounts.iter().enumerate() {
        problems.push(
            Problem::new(
                format!("mounts[{i}]"),
                format!("mounts {}", mount.destination.display()),
                "a microVM cannot share host directories yet (that comes with its virtio devices)",
            )
            .fixes(
                "drop --volume/--tmpfs or use --isolation container",
                "drop bind()/tmpfs() or use isolation(\"container\")",
            ),
        );
    }
    if plan.user_namespace.is_some() {
        problems.push(
            Problem::new(
                "userNamespace",
                "userNamespace",
                "a microVM's guest has its own kernel and ids",
            )
            .fixes("drop --uidmap/--gidmap", "drop map_uids()/map_gids()"),
        );
    }
    if !plan.init {
        problems.push(
            Problem::new(
                "init",
                "init",
                "in a microVM capsule-init is always PID 1 (it reports the exit status)",
            )
            .fixes("drop --no-init", "drop init(false)"),
        );
    }
    Ok(())
}

fn container_problems(plan: &Plan, host: &Host, problems: &mut Vec<Problem>) {
    if plan.vm.is_some() {
        problems.push(
            Problem::new("vm", "vm", "the guest kernel, initrd, command line and kernel log are for isolation \"microvm\"")
                .fixes(
                    "drop --kernel/--initrd/--kernel-log/--kernel-cmdline",
                    "drop kernel()/initrd()/kernel_cmdline()/kernel_log() or use isolation(\"microvm\")",
                ),
        );
    }
    if plan.timeout.is_some() {
        problems.push(
            Problem::new("timeout", "timeout", "containers do not take a timeout yet").fixes(
                "drop --timeout or use --isolation microvm",
                "drop timeout() or use isolation(\"microvm\")",
            ),
        );
    }
    for (i, mount) in plan.mounts.iter().enumerate() {
        let field = format!("mounts[{i}]");
        let subject = format!("mounts {}", mount.destination.display());
        if !mount.destination.is_absolute() || mount.destination == std::path::Path::new("/") {
            problems.push(Problem::new(
                &field,
                &subject,
                "destination must be an absolute path other than /",
            ));
        }
        match (mount.kind, &mount.source) {
            (MountType::Bind, None) => problems.push(Problem::new(
                &field,
                &subject,
                "a bind mount needs a source",
            )),
            (MountType::Bind, Some(src)) if !src.exists() => problems.push(Problem::new(
                &field,
                &subject,
                format!("source {} does not exist on the host", src.display()),
            )),
            (MountType::Tmpfs, Some(_)) => {
                problems.push(Problem::new(&field, &subject, "a tmpfs takes no source"))
            }
            _ => {}
        }
    }
    if let Some(maps) = &plan.user_namespace {
        if maps.uids.is_empty() || maps.gids.is_empty() {
            problems.push(
                Problem::new(
                    "userNamespace",
                    "userNamespace",
                    "give both uid and gid maps",
                )
                .fixes("use --uidmap and --gidmap", "use map_uids() and map_gids()"),
            );
        } else if host.rootless {
            problems.push(
                Problem::new(
                    "userNamespace",
                    "userNamespace",
                    "a rootless launch maps only your own ids",
                )
                .fixes(
                    "drop --uidmap/--gidmap or run as root",
                    "drop map_uids()/map_gids() or run capsule as root",
                ),
            );
        } else {
            let user = &plan.process.user;
            if !maps.maps_uid(user.uid) || !maps.maps_gid(user.gid) {
                problems.push(
                    Problem::new(
                        "process.user",
                        format!("process.user {}:{}", user.uid, user.gid),
                        "not mapped by userNamespace",
                    )
                    .fixes(
                        "map it with --uidmap/--gidmap",
                        "map it with map_uids()/map_gids()",
                    ),
                );
            }
        }
    }
    let limits = limits(plan);
    if host.rootless {
        if plan.process.user.uid != 0 || plan.process.user.gid != 0 {
            problems.push(
                Problem::new(
                    "process.user",
                    format!(
                        "process.user {}:{}",
                        plan.process.user.uid, plan.process.user.gid
                    ),
                    "a rootless container maps only your own user, as root inside",
                )
                .fix("run capsule as root to use other users"),
            );
        }
        if !plan.resources.is_empty() {
            problems.push(
                Problem::new(
                    "resources",
                    "resources",
                    "limits need cgroups, which an unprivileged user can only use through a delegated cgroup v2 subtree, and this host delegates none",
                )
                .fix("run capsule as root or drop the limits"),
            );
        }
    } else {
        match &host.cgroups {
            Some(layout) => {
                if let Err(errors) = layout.validate(&limits) {
                    problems.extend(errors.iter().map(limit_problem));
                }
            }
            None => problems.push(
                Problem::new(
                    "resources",
                    "",
                    "this host has no usable cgroup hierarchy under /sys/fs/cgroup",
                )
                .fix("mount cgroup2 or the v1 controllers"),
            ),
        }
    }
}

/// A cgroup limit the host refuses, named by the Plan field it came from.
fn limit_problem(error: &cgroup_core::LimitError) -> Problem {
    let field = match error.field {
        "memory" => "resources.memory",
        "memory_swap" => "resources.memorySwap",
        "cpu_quota" => "resources.cpus",
        "cpu_shares" => "resources.cpuShares",
        "pids" => "resources.pids",
        "io_weight" => "resources.ioWeight",
        "cpuset_cpus" => "resources.cpusetCpus",
        "cpuset_mems" => "resources.cpusetMems",
        _ => "resources",
    };
    let problem = Problem::new(
        field,
        format!("resources.{}={}", error.field, error.value),
        &error.problem,
    );
    // --memory alone asks for a swap limit too (Plan::derive_defaults), which a host without
    // swap accounting cannot give.
    if error.field == "memory_swap" && error.problem.starts_with("host cannot limit swap") {
        return problem.fixes(
            "give --memory-swap -1 to leave swap unlimited",
            "give memory_swap(-1) to leave swap unlimited",
        );
    }
    problem
}

/// The most open files a process may have: /proc/sys/fs/nr_open, else the kernel's default.
fn nr_open() -> u64 {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1 << 20)
}

/// Checks every isolation shares: the root, the process, the hostname.
fn common_problems(plan: &Plan, problems: &mut Vec<Problem>) {
    let root = &plan.root.path;
    let subject = format!("root.path {}", root.display());
    match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => problems.push(
            Problem::new("root.path", &subject, "not a directory")
                .fix("give the directory that becomes /"),
        ),
        Err(e) => problems.push(
            Problem::new("root.path", &subject, e.to_string())
                .fix("give an existing directory (cargo xtask rootfs busybox builds one)"),
        ),
    }
    if plan.process.args.first().is_none_or(|a| a.is_empty()) {
        problems.push(
            Problem::new("process.args", "process.args", "no command").fixes(
                "give the command to run after --",
                "give one after -- on the command line or with command([...])",
            ),
        );
    }
    if !plan.process.cwd.is_absolute() {
        problems.push(Problem::new(
            "process.cwd",
            format!("process.cwd {:?}", plan.process.cwd),
            "must be an absolute path",
        ));
    }
    for env in &plan.process.env {
        if !env.contains('=') {
            problems.push(Problem::new(
                "process.env",
                format!("process.env {env:?}"),
                "expected KEY=VALUE",
            ));
        }
    }
    for rlimit in &plan.process.rlimits {
        let subject = format!("process.rlimits {}", rlimit.kind);
        match ns_core::parse_rlimit_resource(&rlimit.kind)
            .and_then(|resource| ns_core::check_rlimit(rlimit.soft, rlimit.hard).map(|_| resource))
        {
            Err(e) => problems.push(Problem::new(
                "process.rlimits",
                &subject,
                crate::error::ns_message(e),
            )),
            // setrlimit(2) refuses more open files than fs.nr_open with EPERM, unlimited too.
            Ok(resource) if resource == libc::RLIMIT_NOFILE as i32 && rlimit.hard > nr_open() => {
                problems.push(
                    Problem::new(
                        "process.rlimits",
                        &subject,
                        format!(
                            "the kernel caps open files at fs.nr_open ({}), so nofile cannot be {}",
                            nr_open(),
                            ns_core::show_rlimit_value(rlimit.hard)
                        ),
                    )
                    .fix(format!("give nofile {} or less", nr_open())),
                )
            }
            Ok(_) => {}
        }
    }
    if let Some(name) = &plan.hostname {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !valid {
            problems.push(Problem::new(
                "hostname",
                format!("hostname {name:?}"),
                "expected 1 to 64 letters, digits, '-' or '.'",
            ));
        }
    }
}
