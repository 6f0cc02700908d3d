//! Checking a Plan as a whole, against facts about the host, before anything is created.
//!
//! Every problem is collected, not just the first, and each names the field, the value and
//! what would be accepted, with advice for the flags and for a policy script ([`Problem`]).

use std::path::Path;

use crate::{
    Disk, Host, Isolation, MountType, Plan, Problem, check_rlimit, parse_rlimit_resource,
    show_rlimit_value,
};

/// The least guest RAM a microVM boots with: the kernel decompresses itself into ~60 MiB,
/// and the initramfs is unpacked into RAM.
pub const MICROVM_MIN_MEMORY: u64 = 128 << 20;

/// The most vCPUs a microVM has (the x86 xAPIC ids below the broadcast id 0xff, less the
/// I/O APIC's).
pub const MICROVM_MAX_VCPUS: u8 = 254;

/// The most disks and shared directories (each bind mount is one virtio-fs device) a
/// microVM attaches together besides its root: each virtio-mmio device takes one of the I/O
/// APIC's 19 device IRQs (5 to 23), and the root disk, the console, the entropy device, the
/// vsock device and the balloon (free page reporting) take five of them.
pub const MICROVM_MAX_DISKS_AND_SHARES: usize = 14;

/// Every problem of `plan` that its own data and the `host` facts show, in the Plan's field
/// order; empty when there is none. Pure: it reads nothing of the machine it runs on, so a
/// Plan checks the same against the same facts anywhere. What only a backend knows (the
/// cgroup hierarchy's controllers, whether the guest kernel file exists) the backend adds.
pub fn validate(plan: &Plan, host: &Host) -> Vec<Problem> {
    let mut problems = Vec::new();
    common_problems(plan, host, &mut problems);
    match plan.isolation {
        Isolation::Container => container_problems(plan, host, &mut problems),
        Isolation::Microvm => microvm_problems(plan, &mut problems),
        Isolation::Kata => kata_problems(plan, &mut problems),
    }
    problems
}

/// The least memory a kata container is given: docker's smallest limit (`linuxMinMemory`),
/// below which the workload cannot even start. The guest's own memory comes on top.
pub const KATA_MIN_MEMORY: u64 = 6 << 20;

/// What a microVM cannot do yet.
fn microvm_problems(plan: &Plan, problems: &mut Vec<Problem>) {
    let r = &plan.resources;
    if let Some(memory) = r.memory
        && memory < MICROVM_MIN_MEMORY
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
    machine_problems(plan, problems);
    if plan
        .vm
        .as_ref()
        .is_some_and(|vm| vm.root_via == crate::RootVia::Virtiofs)
    {
        problems.push(
            Problem::new(
                "vm.rootVia",
                "vm.rootVia virtiofs",
                "only a kata container's root comes over virtio-fs; a microVM boots from its root disk",
            )
            .fixes(
                "drop --root-via or use --isolation kata",
                "drop root_via() or use isolation(\"kata\")",
            ),
        );
    }
    container_only_resources(plan, problems);
    mount_shape_problems(plan, problems);
    share_problems(plan, problems);
    disk_problems(plan, problems);
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
}

/// What a container inside a microVM cannot have: the machine's limits (vCPUs, timeout),
/// then what has no way into the guest's container yet.
fn kata_problems(plan: &Plan, problems: &mut Vec<Problem>) {
    let r = &plan.resources;
    if let Some(memory) = r.memory
        && memory < KATA_MIN_MEMORY
    {
        problems.push(
            Problem::new(
                "resources.memory",
                format!("resources.memory {memory}"),
                "a container needs at least 6M (docker's least; the guest's own memory comes on top)",
            )
            .fixes("give --memory 6M or more", "give memory(\"6M\") or more"),
        );
    }
    machine_problems(plan, problems);
    // The guest has ceil(cpus) vCPUs, numbered from 0, and one memory node, 0.
    let vcpus = r.cpus.map_or(1.0, f64::ceil).max(1.0);
    if let Some(list) = &r.cpuset_cpus {
        match highest_in_list(list) {
            Some(highest) if f64::from(highest) < vcpus => {}
            Some(highest) => problems.push(
                Problem::new(
                    "resources.cpusetCpus",
                    format!("resources.cpusetCpus {list}"),
                    format!(
                        "names CPU {highest}, and the guest has CPUs 0 to {} only (--cpus sizes it)",
                        vcpus - 1.0
                    ),
                )
                .fixes(
                    format!("give --cpus {} or more", highest + 1),
                    format!("give cpus({}) or more", highest + 1),
                ),
            ),
            None => problems.push(Problem::new(
                "resources.cpusetCpus",
                format!("resources.cpusetCpus {list}"),
                "expected a cpuset(7) list such as 0-2,4",
            )),
        }
    }
    if let Some(list) = &r.cpuset_mems
        && highest_in_list(list) != Some(0)
    {
        problems.push(
            Problem::new(
                "resources.cpusetMems",
                format!("resources.cpusetMems {list}"),
                "the guest has one memory node, 0",
            )
            .fixes(
                "give --cpuset-mems 0 or drop it",
                "give cpuset_mems(\"0\") or drop it",
            ),
        );
    }
    // Bind mounts are the guest's virtio-fs shares, which the sandbox binds into the
    // container; tmpfs mounts are the container's own.
    mount_shape_problems(plan, problems);
    share_problems(plan, problems);
    if !plan.disks.is_empty() {
        problems.push(
            Problem::new(
                "disks",
                "disks",
                "a container inside a microVM sees only its own /dev (the OCI default devices), so a disk would reach the guest and not the container",
            )
            .fixes(
                "drop --disk or use --isolation microvm",
                "drop disk() or use isolation(\"microvm\")",
            ),
        );
    }
    // The shares take interrupt lines as disks do.
    disk_problems(plan, problems);
    // The guest's ids are the guest's own: a rootless host launch builds its container as
    // the guest's root all the same.
    user_namespace_problems(plan, false, problems);
}

/// The highest number of a cpuset(7) list (`0-2,4` -> 4); `None` when it is not one.
fn highest_in_list(list: &str) -> Option<u32> {
    let mut highest = None;
    for part in list.split(',') {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        let (first, last): (u32, u32) = (first.trim().parse().ok()?, last.trim().parse().ok()?);
        if first > last {
            return None;
        }
        highest = highest.max(Some(last));
    }
    highest
}

/// What a microVM's machine cannot be, for the microVM and for kata alike: more vCPUs than
/// it has, a timeout that fits no duration.
fn machine_problems(plan: &Plan, problems: &mut Vec<Problem>) {
    if let Some(cpus) = plan.resources.cpus
        && cpus.ceil() > f64::from(MICROVM_MAX_VCPUS)
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
}

/// The limits a plain microVM has no place for (inside a kata guest they are the container's
/// cgroup's).
fn container_only_resources(plan: &Plan, problems: &mut Vec<Problem>) {
    let r = &plan.resources;
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
                    "a microVM is sized by memory and cpus only (a container inside one, isolation \"kata\", takes limits)",
                )
                .fixes(
                    format!("drop {flag}, or use --isolation kata or container"),
                    format!("drop {function}(), or use isolation(\"kata\") or isolation(\"container\")"),
                ),
            );
        }
    }
}

/// What a microVM's mounts cannot be: a destination with `..` (capsule-init makes the mount
/// point, which must stay inside the root) or a relative source (virtiofsd shares it).
fn share_problems(plan: &Plan, problems: &mut Vec<Problem>) {
    for (i, mount) in plan.mounts.iter().enumerate() {
        let field = format!("mounts[{i}]");
        let subject = format!("mounts {}", mount.destination.display());
        // capsule-init creates the mount point inside the root: a `..` would leave it.
        if mount
            .destination
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            problems.push(Problem::new(
                &field,
                &subject,
                "a microVM's mount destination must not contain ..",
            ));
        }
        if let Some(source) = &mount.source
            && !source.is_absolute()
        {
            problems.push(Problem::new(
                &field,
                format!("{subject} (source {})", source.display()),
                "expected an absolute source path (a relative one would depend on where capsule runs)",
            ));
        }
    }
}

/// What the Plan's own data shows wrong with a microVM's disks; the files themselves are the
/// backend's to check.
fn disk_problems(plan: &Plan, problems: &mut Vec<Problem>) {
    let disks = &plan.disks;
    let shares = plan
        .mounts
        .iter()
        .filter(|m| m.kind == MountType::Bind)
        .count();
    if disks.len() + shares > MICROVM_MAX_DISKS_AND_SHARES {
        let max = MICROVM_MAX_DISKS_AND_SHARES;
        problems.push(
            Problem::new(
                "disks",
                format!("disks and shared directories ({} and {shares})", disks.len()),
                format!(
                    "a microVM attaches at most {max} disks and shared directories together besides its root (one I/O APIC line each)"
                ),
            )
            .fixes(
                format!("give --disk and --volume at most {max} times together"),
                format!("call disk() and bind() at most {max} times together"),
            ),
        );
    }
    for (i, disk) in disks.iter().enumerate() {
        let field = format!("disks[{i}]");
        let subject = format!("{field} {}", disk.path.display());
        if !disk.path.is_absolute() {
            problems.push(Problem::new(
                &field,
                &subject,
                "expected an absolute path (a relative one would depend on where capsule runs)",
            ));
        }
        // Two writers of one image, or a writer beside a reader, see each other's writes
        // half-done and corrupt a qcow2's metadata; the root image is only ever read.
        let writable = |d: &Disk| !d.read_only;
        let earlier = disks[..i]
            .iter()
            .position(|d| d.path == disk.path && (writable(d) || writable(disk)));
        if let Some(first) = earlier {
            problems.push(
                Problem::new(
                    &field,
                    &subject,
                    format!("disks[{first}] is the same file, and one of them is writable"),
                )
                .fix("attach a file once, or every time read-only"),
            );
        } else if writable(disk) && disk.path == plan.root.path {
            problems.push(
                Problem::new(
                    &field,
                    &subject,
                    "the root image is attached read-only, so it cannot also be a writable disk",
                )
                .fixes(
                    "add :ro to the --disk",
                    "give disk(path, #{ readonly: true })",
                ),
            );
        }
    }
}

/// What is wrong with the shape of the Plan's mounts, for any isolation: the destination, and
/// a source exactly for a bind mount.
fn mount_shape_problems(plan: &Plan, problems: &mut Vec<Problem>) {
    for (i, mount) in plan.mounts.iter().enumerate() {
        let field = format!("mounts[{i}]");
        let subject = format!("mounts {}", mount.destination.display());
        if !mount.destination.is_absolute() || mount.destination == Path::new("/") {
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
            (MountType::Tmpfs, Some(_)) => {
                problems.push(Problem::new(&field, &subject, "a tmpfs takes no source"))
            }
            _ => {}
        }
    }
}

fn container_problems(plan: &Plan, host: &Host, problems: &mut Vec<Problem>) {
    if !plan.disks.is_empty() {
        problems.push(
            Problem::new(
                "disks",
                "disks",
                "disks are a microVM's virtio block devices, and a container has no devices of its own",
            )
            .fixes(
                "drop --disk or use --isolation microvm",
                "drop disk() or use isolation(\"microvm\")",
            ),
        );
    }
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
    mount_shape_problems(plan, problems);
    user_namespace_problems(plan, host.rootless, problems);
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
    }
}

/// uid and gid maps that a container can be built with: both given, the process's user
/// mapped; a rootless launch maps only its own ids.
fn user_namespace_problems(plan: &Plan, rootless: bool, problems: &mut Vec<Problem>) {
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
        } else if rootless {
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
}

/// Checks every isolation shares: the process, the hostname.
fn common_problems(plan: &Plan, host: &Host, problems: &mut Vec<Problem>) {
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
        match parse_rlimit_resource(&rlimit.kind)
            .and_then(|resource| check_rlimit(rlimit.soft, rlimit.hard).map(|_| resource))
        {
            Err(e) => problems.push(Problem::new("process.rlimits", &subject, e.to_string())),
            // setrlimit(2) refuses more open files than fs.nr_open with EPERM, unlimited too.
            Ok(resource)
                if resource == libc::RLIMIT_NOFILE as i32 && rlimit.hard > host.nr_open =>
            {
                problems.push(
                    Problem::new(
                        "process.rlimits",
                        &subject,
                        format!(
                            "the kernel caps open files at fs.nr_open ({}), so nofile cannot be {}",
                            host.nr_open,
                            show_rlimit_value(rlimit.hard)
                        ),
                    )
                    .fix(format!("give nofile {} or less", host.nr_open)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kvm;

    fn host() -> Host {
        Host {
            kvm: Kvm::Hardware,
            cgroups: "v2".into(),
            cpus: 2,
            memory_total: 4 << 30,
            memory_free: 2 << 30,
            arch: "x86_64".into(),
            kernel: "6.1.0".into(),
            rootless: true,
            subids: None,
            nr_open: 1 << 20,
        }
    }

    fn microvm_with(disks: &[(&str, bool)]) -> Plan {
        let mut plan = Plan::container("/srv/root", vec!["true".into()]);
        plan.isolation = Isolation::Microvm;
        plan.disks = disks
            .iter()
            .map(|(path, read_only)| Disk {
                path: path.into(),
                read_only: *read_only,
            })
            .collect();
        plan
    }

    #[test]
    fn only_a_kata_container_takes_its_root_over_virtio_fs() {
        let mut plan = microvm_with(&[]);
        plan.vm = Some(crate::VmSpec {
            root_via: crate::RootVia::Virtiofs,
            ..Default::default()
        });
        assert_eq!(
            lines(&plan),
            [
                "vm.rootVia: vm.rootVia virtiofs: only a kata container's root comes over virtio-fs; a microVM boots from its root disk; drop --root-via or use --isolation kata"
            ]
        );
        plan.isolation = Isolation::Kata;
        assert_eq!(lines(&plan), Vec::<String>::new());
    }

    fn lines(plan: &Plan) -> Vec<String> {
        validate(plan, &host())
            .iter()
            .map(|p| format!("{}: {p}", p.field))
            .collect()
    }

    #[test]
    fn a_microvm_takes_disks_read_only_and_writable() {
        let plan = microvm_with(&[("/a.raw", false), ("/b.qcow2", true), ("/b.qcow2", true)]);
        assert_eq!(lines(&plan), Vec::<String>::new());
    }

    #[test]
    fn a_container_with_disks_is_refused_with_the_reason_and_the_fix() {
        let mut plan = microvm_with(&[("/a.raw", false)]);
        plan.isolation = Isolation::Container;
        assert_eq!(
            lines(&plan),
            [
                "disks: disks: disks are a microVM's virtio block devices, and a container has no devices of its own; drop --disk or use --isolation microvm"
            ]
        );
        let script = &validate(&plan, &host())[0];
        assert_eq!(
            script.script_fix.as_deref(),
            Some("drop disk() or use isolation(\"microvm\")")
        );
    }

    #[test]
    fn more_disks_than_the_microvm_has_lines_for_are_refused() {
        let paths: Vec<String> = (0..=MICROVM_MAX_DISKS_AND_SHARES)
            .map(|i| format!("/d{i}"))
            .collect();
        let disks: Vec<(&str, bool)> = paths.iter().map(|p| (p.as_str(), true)).collect();
        assert_eq!(
            lines(&microvm_with(&disks)),
            [
                "disks: disks and shared directories (15 and 0): a microVM attaches at most 14 disks and shared directories together besides its root (one I/O APIC line each); give --disk and --volume at most 14 times together"
            ]
        );
        assert_eq!(
            lines(&microvm_with(&disks[..MICROVM_MAX_DISKS_AND_SHARES])).len(),
            0
        );
        // A shared directory takes a line as a disk does.
        let mut plan = microvm_with(&disks[..MICROVM_MAX_DISKS_AND_SHARES]);
        plan.mounts.push(crate::Mount {
            destination: "/data".into(),
            kind: MountType::Bind,
            source: Some("/srv".into()),
            size: None,
            readonly: false,
        });
        assert_eq!(lines(&plan).len(), 1, "{:?}", lines(&plan));
    }

    #[test]
    fn a_microvm_takes_bind_and_tmpfs_mounts_with_absolute_paths_and_no_dotdot() {
        let mount = |destination: &str, kind, source: Option<&str>| crate::Mount {
            destination: destination.into(),
            kind,
            source: source.map(Into::into),
            size: None,
            readonly: true,
        };
        let mut plan = microvm_with(&[]);
        plan.mounts = vec![
            mount("/data", MountType::Bind, Some("/srv/data")),
            mount("/scratch", MountType::Tmpfs, None),
        ];
        assert_eq!(lines(&plan), Vec::<String>::new());
        plan.mounts = vec![
            mount("/data/../etc", MountType::Bind, Some("/srv/data")),
            mount("/in", MountType::Bind, Some("data")),
            mount("/", MountType::Tmpfs, None),
        ];
        assert_eq!(
            lines(&plan),
            [
                "mounts[2]: mounts /: destination must be an absolute path other than /",
                "mounts[0]: mounts /data/../etc: a microVM's mount destination must not contain ..",
                "mounts[1]: mounts /in (source data): expected an absolute source path (a relative one would depend on where capsule runs)",
            ]
        );
    }

    #[test]
    fn a_relative_disk_path_is_refused() {
        assert_eq!(
            lines(&microvm_with(&[("data.raw", true)])),
            [
                "disks[0]: disks[0] data.raw: expected an absolute path (a relative one would depend on where capsule runs)"
            ]
        );
    }

    #[test]
    fn one_file_attached_twice_with_a_writer_is_refused() {
        assert_eq!(
            lines(&microvm_with(&[
                ("/a.raw", true),
                ("/b.raw", false),
                ("/a.raw", false)
            ])),
            [
                "disks[2]: disks[2] /a.raw: disks[0] is the same file, and one of them is writable; attach a file once, or every time read-only"
            ]
        );
        let mut plan = microvm_with(&[("/root.img", false)]);
        plan.root.path = "/root.img".into();
        assert_eq!(
            lines(&plan),
            [
                "disks[0]: disks[0] /root.img: the root image is attached read-only, so it cannot also be a writable disk; add :ro to the --disk"
            ]
        );
        plan.disks[0].read_only = true;
        assert_eq!(lines(&plan).len(), 0);
    }

    fn kata() -> Plan {
        let mut plan = Plan::container("/srv/root", vec!["true".into()]);
        plan.isolation = Isolation::Kata;
        plan
    }

    #[test]
    fn kata_takes_a_container_s_limits_mounts_and_no_init() {
        let mut plan = kata();
        plan.resources = crate::Resources {
            memory: Some(32 << 20),
            memory_swap: Some(64 << 20),
            cpus: Some(2.0),
            cpu_shares: Some(512),
            pids: Some(16),
            io_weight: Some(100),
            cpuset_cpus: Some("0-1".into()),
            cpuset_mems: Some("0".into()),
        };
        plan.mounts.push(crate::Mount {
            destination: "/scratch".into(),
            kind: MountType::Tmpfs,
            source: None,
            size: None,
            readonly: false,
        });
        plan.mounts.push(crate::Mount {
            destination: "/data".into(),
            kind: MountType::Bind,
            source: Some("/srv/data".into()),
            size: None,
            readonly: true,
        });
        plan.init = false;
        plan.timeout = Some(5.0);
        // Rootless or not: the container is built by the guest's root.
        assert_eq!(lines(&plan), Vec::<String>::new());
    }

    #[test]
    fn kata_refuses_what_cannot_reach_the_guest_s_container() {
        type Change = fn(&mut Plan);
        let cases: Vec<(Change, &str)> = vec![
            (
                |p| p.resources.memory = Some(1 << 20),
                "resources.memory: resources.memory 1048576: a container needs at least 6M",
            ),
            (
                |p| p.resources.cpuset_cpus = Some("0,3".into()),
                "resources.cpusetCpus: resources.cpusetCpus 0,3: names CPU 3, and the guest has CPUs 0 to 0 only (--cpus sizes it); give --cpus 4 or more",
            ),
            (
                |p| p.resources.cpuset_cpus = Some("1-0".into()),
                "resources.cpusetCpus: resources.cpusetCpus 1-0: expected a cpuset(7) list",
            ),
            (
                |p| p.resources.cpuset_mems = Some("1".into()),
                "resources.cpusetMems: resources.cpusetMems 1: the guest has one memory node, 0",
            ),
            (
                |p| p.resources.cpus = Some(255.0),
                "resources.cpus: resources.cpus 255: a microVM has at most 254 vCPUs",
            ),
            (
                |p| {
                    p.mounts.push(crate::Mount {
                        destination: "/data".into(),
                        kind: MountType::Bind,
                        source: Some("srv".into()),
                        size: None,
                        readonly: false,
                    })
                },
                "mounts[0]: mounts /data (source srv): expected an absolute source path",
            ),
            (
                |p| {
                    p.disks.push(Disk {
                        path: "/d.raw".into(),
                        read_only: true,
                    })
                },
                "disks: disks: a container inside a microVM sees only its own /dev",
            ),
            (
                |p| {
                    let map = vec![crate::IdMap {
                        container_id: 0,
                        host_id: 100_000,
                        size: 10,
                    }];
                    p.user_namespace = Some(crate::IdMaps {
                        uids: map.clone(),
                        gids: map,
                    });
                    p.process.user.uid = 1000;
                },
                "process.user: process.user 1000:0: not mapped by userNamespace",
            ),
        ];
        for (change, expected) in cases {
            let mut plan = kata();
            change(&mut plan);
            let lines = lines(&plan);
            assert_eq!(lines.len(), 1, "{lines:?}");
            assert!(
                lines[0].starts_with(expected),
                "{lines:?} lacks {expected:?}"
            );
        }
    }

    #[test]
    fn a_microvm_s_container_limits_point_at_kata() {
        let mut plan = microvm_with(&[]);
        plan.resources.pids = Some(16);
        assert_eq!(
            lines(&plan),
            [
                "resources.pids: resources.pids: a microVM is sized by memory and cpus only (a container inside one, isolation \"kata\", takes limits); drop --pids, or use --isolation kata or container"
            ]
        );
    }
}
