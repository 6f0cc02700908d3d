//! Runs a Plan as a container: namespaces from `ns-core`, limits from `cgroup-core`.
//!
//! Resources are created in a fixed order (state directory, cgroups, container process) and
//! removed in reverse on every path: a `Resources` guard undoes whatever exists when it is
//! dropped, so an early return cannot leak.

use std::time::Instant;

use std::path::{Path, PathBuf};

use cgroup_core::{Cgroup, CpuQuota, Layout, Limits};
use ns_core::{ContainerSpec, ExitStatus, IdMaps, MountKind};
use plan::{Host, MountType, Outcome, Peaks, Plan, Problem, Timings};

use super::{Backend, Stdin};
use crate::signals::StopHandle;
use crate::state::{self, Launch};
use crate::{Error, process};

/// `capsule-init` (package `guest-init`, static musl), built by build.rs: the container's PID 1
/// when the Plan asks for an init, run from a sealed memfd so that nothing of the host's
/// `capsule` binary is reachable from the container (`ns_core::init`).
const CAPSULE_INIT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/capsule-init"));

/// The container backend: namespaces from `ns-core`, limits from `cgroup-core`.
#[derive(Debug)]
pub struct Container {
    /// The host's cgroup hierarchy; `None` when it has no usable one.
    cgroups: Option<Layout>,
}

impl Container {
    /// The backend on a host with the `cgroups` hierarchy (`cgroup_core::detect`).
    pub fn new(cgroups: Option<Layout>) -> Container {
        Container { cgroups }
    }

    /// The host's cgroup hierarchy, as this backend uses it.
    pub fn cgroups(&self) -> Option<&Layout> {
        self.cgroups.as_ref()
    }
}

impl Backend for Container {
    fn problems(&self, plan: &Plan, host: &Host) -> Result<Vec<Problem>, plan::Error> {
        let mut problems = Vec::new();
        for (i, mount) in plan.mounts.iter().enumerate() {
            if let (MountType::Bind, Some(source)) = (mount.kind, &mount.source)
                && !source.exists()
            {
                problems.push(Problem::new(
                    format!("mounts[{i}]"),
                    format!("mounts {}", mount.destination.display()),
                    format!("source {} does not exist on the host", source.display()),
                ));
            }
        }
        if !host.rootless {
            match &self.cgroups {
                Some(layout) => {
                    if let Err(errors) = layout.validate(&limits(plan)) {
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
        Ok(problems)
    }

    fn run(
        &self,
        plan: &Plan,
        host: &Host,
        stop: &StopHandle,
        stdin: Stdin,
    ) -> Result<Outcome, Error> {
        run(plan, host, self.cgroups.as_ref(), stop, stdin)
    }
}

/// Runs `plan` to completion and reports how it went.
fn run(
    plan: &Plan,
    host: &Host,
    cgroups: Option<&Layout>,
    stop: &StopHandle,
    stdin: Stdin,
) -> Result<Outcome, Error> {
    let start = Instant::now();
    let id = state::new_id();
    let mut spec = to_spec(plan, &id, host)?;
    // Without -i the command's stdin is empty, as `docker run`'s; with -t it has capsule's
    // terminal as it is (stdout and stderr are capsule's).
    spec.null_stdin = !stdin.interactive;
    let init = if spec.init {
        Some(ns_core::Init::sealed("capsule-init", CAPSULE_INIT)?)
    } else {
        None
    };
    let limits = limits(plan);
    let prepared = start.elapsed();

    let mut resources = Resources::default();
    let launch = resources
        .launch
        .insert(Launch::create(&id, !host.rootless)?);
    spec.state_dir = launch.dir.clone();
    if !host.rootless {
        let layout = cgroups
            .ok_or_else(|| plan::Error::Unsupported("no cgroup hierarchy on this host".into()))?;
        let cgroup = resources
            .cgroup
            .insert(Cgroup::create(layout, &id, &limits)?);
        if !cgroup.allow_only_devices(cgroup_core::OCI_DEFAULT_DEVICES)? {
            tracing::warn!(
                "this host has no cgroup v1 devices controller: the container's device access is not filtered (its root is nodev; CAP_MKNOD in /dev still makes nodes)"
            );
        }
    }
    let cgroup = resources.cgroup.as_ref();
    if let Some(layout) = cgroups {
        let own = cgroup.map(Cgroup::paths).unwrap_or_default();
        let mut view = cgroup_view(layout, spec.user_namespace.is_some(), &own);
        view.append(&mut spec.mounts);
        spec.mounts = view;
    }
    let running = ns_core::spawn(&spec, init.as_ref(), |pid| match cgroup {
        Some(cgroup) => Ok(cgroup.add_task(pid)?),
        None => Ok(()),
    })?;
    let signaller = running.signaller()?;
    // A container that has ended refuses the signal (ESRCH): nothing to do.
    let forwarding = stop.forward_to(move |signal| {
        let _ = signaller.send(signal);
    });
    let created = start.elapsed();
    let status = running.wait();
    drop(forwarding);
    let ran = start.elapsed();

    let stats = match &resources.cgroup {
        Some(cgroup) => cgroup.stats().ok(),
        None => None,
    };
    resources.release()?;
    let status = status?;
    let finished = start.elapsed();

    let oom_killed = stats.as_ref().is_some_and(|s| s.oom_kills > 0);
    Ok(Outcome {
        id,
        isolation: plan.isolation,
        exit_code: status.code(),
        signal: match status {
            ExitStatus::Signaled(sig) => Some(sig),
            ExitStatus::Exited(_) => None,
        },
        oom_killed,
        error: None,
        timings: Timings::of(prepared, created, ran, finished),
        peaks: Peaks {
            memory_bytes: stats.as_ref().and_then(|s| s.memory_peak_bytes),
            cpu_time_ms: stats
                .as_ref()
                .and_then(|s| s.cpu_usage_ns)
                .map(|ns| ns as f64 / 1e6),
            pids: stats.as_ref().and_then(|s| s.pids_peak.or(s.pids_current)),
            vmm_overhead_bytes: None,
        },
        violations: if oom_killed {
            vec!["memory".to_owned()]
        } else {
            Vec::new()
        },
        disks: Vec::new(),
    })
}

/// What one launch created, undone in reverse order.
#[derive(Debug, Default)]
struct Resources {
    launch: Option<Launch>,
    cgroup: Option<Cgroup>,
}

impl Resources {
    /// Removes the cgroups (killing anything left in them), then the state directory.
    fn release(&mut self) -> Result<(), Error> {
        let cgroup = self.cgroup.take().map(Cgroup::remove).transpose();
        let launch = self.launch.take().map(|l| l.remove()).transpose();
        cgroup?;
        launch?;
        Ok(())
    }
}

impl Drop for Resources {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            tracing::warn!("cleanup after a failed launch: {e}; `capsule gc` retries");
        }
    }
}

/// The container part of a Plan as `ns-core` wants it, on this host.
fn to_spec(plan: &Plan, id: &str, host: &Host) -> Result<ContainerSpec, Error> {
    let mut spec = plan_spec(plan, id)?;
    if host.rootless {
        spec.user_namespace = Some(IdMaps::rootless(
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        ));
    }
    Ok(spec)
}

/// The container part of a Plan as `ns-core` wants it, wherever it is built (here, or in a
/// kata guest, which then puts its root and state where the guest has them): the root, the
/// process with its defaults, hostname, seccomp, mounts (bind sources as the Plan gives them),
/// the init and the Plan's user namespace.
pub(super) fn plan_spec(plan: &Plan, id: &str) -> Result<ContainerSpec, Error> {
    let p = &plan.process;
    let mut spec = ContainerSpec::new(id, &plan.root.path, p.args.clone());
    spec.readonly_rootfs = plan.root.readonly;
    let hostname = process::hostname(plan, id);
    spec.process = plan.process.clone();
    spec.process.env = process::environment(plan, &hostname)?;
    spec.hostname = Some(hostname);
    spec.seccomp = plan.seccomp;
    spec.mounts = plan
        .mounts
        .iter()
        .map(|m| ns_core::Mount {
            destination: m.destination.clone(),
            kind: match m.kind {
                MountType::Bind => MountKind::Bind {
                    source: m.source.clone().unwrap_or_default(),
                },
                MountType::Tmpfs => MountKind::Tmpfs { size: m.size },
            },
            readonly: m.readonly,
        })
        .collect();
    spec.init = plan.init;
    spec.user_namespace = plan.user_namespace.clone();
    Ok(spec)
}

/// `/sys/fs/cgroup` as the container sees it, read-only and rooted at its own cgroup (the
/// cgroup namespace), as crun and runc mount it: programs such as the JVM size themselves from
/// it. On v1 and hybrid hosts each v1 hierarchy that holds one of `own` (the launch's cgroup
/// directories) goes on a small tmpfs; a hierarchy without one would show the host's tree.
/// The kernel refuses v1 mounts inside a user namespace, so there only the v2 part is visible.
fn cgroup_view(layout: &Layout, userns: bool, own: &[PathBuf]) -> Vec<ns_core::Mount> {
    let root = Path::new("/sys/fs/cgroup");
    let kernel = |dest: PathBuf, fstype: &str, options: Option<String>| ns_core::Mount {
        destination: dest,
        kind: MountKind::Kernel {
            fstype: fstype.to_owned(),
            options,
        },
        readonly: true,
    };
    let v1 = layout.v1().filter(|_| !userns);
    match (v1, layout.v2()) {
        (None, Some(v2)) if v2.path() == root => vec![kernel(root.to_owned(), "cgroup2", None)],
        (v1, v2) => {
            let mut mounts = vec![ns_core::Mount {
                destination: root.to_owned(),
                kind: MountKind::Tmpfs {
                    size: Some(64 << 10),
                },
                readonly: true,
            }];
            let mut points = v1.map(|v1| v1.mount_points()).unwrap_or_default();
            points.retain(|point| own.iter().any(|dir| dir.starts_with(point)));
            for point in points {
                let controllers: Vec<&str> = v1
                    .into_iter()
                    .flat_map(|v1| v1.controllers().filter(|c| v1.mount(*c) == Some(point)))
                    .map(|c| c.v1_name())
                    .collect();
                if let Some(name) = point.file_name() {
                    mounts.push(kernel(
                        root.join(name),
                        "cgroup",
                        Some(controllers.join(",")),
                    ));
                }
            }
            if let Some(name) = v2.and_then(|v2| v2.path().file_name()) {
                mounts.push(kernel(root.join(name), "cgroup2", None));
            }
            mounts
        }
    }
}

/// The period docker uses to turn `--cpus` into a CFS quota.
const CPU_PERIOD_US: u64 = 100_000;

/// Translates the Plan's resources into cgroup limits (the host's, or a kata guest's).
pub(super) fn limits(plan: &Plan) -> Limits {
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
