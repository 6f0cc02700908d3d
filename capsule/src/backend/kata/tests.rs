use plan::{
    Capabilities, Disk, IdMap, IdMaps, Isolation, Kvm, Mount, MountType, Network, Resources,
    Rlimit, SeccompProfile, User, VmSpec,
};
use serde_json::Value;

use super::*;

fn host() -> Host {
    Host {
        kvm: Kvm::Hardware,
        cgroups: "v2".into(),
        cpus: 4,
        memory_total: 8 << 30,
        memory_free: 4 << 30,
        arch: "x86_64".into(),
        kernel: "6.1.0".into(),
        rootless: false,
        subids: None,
        nr_open: 1 << 20,
    }
}

/// A kata Plan with every field set to something other than its default, all of which kata
/// can carry out.
fn full_plan(root: &std::path::Path) -> Plan {
    let mut plan = Plan::container(root, vec!["sh".into(), "-c".into(), "exit 3".into()]);
    plan.isolation = Isolation::Kata;
    plan.root.readonly = true;
    plan.process.env = vec!["A=b".into()];
    plan.process.cwd = "/tmp".into();
    plan.process.user = User {
        uid: 1000,
        gid: 1000,
        additional_gids: vec![10],
    };
    plan.process.capabilities = Capabilities::uniform(plan::CapMask(1 << 12));
    plan.process.no_new_privileges = true;
    plan.process.rlimits = vec![Rlimit {
        kind: "RLIMIT_NOFILE".into(),
        soft: 64,
        hard: 64,
    }];
    plan.hostname = Some("box".into());
    plan.mounts = vec![
        Mount {
            destination: "/scratch".into(),
            kind: MountType::Tmpfs,
            source: None,
            size: Some(1 << 20),
            readonly: false,
        },
        Mount {
            destination: "/data".into(),
            kind: MountType::Bind,
            source: Some("/srv/data".into()),
            size: None,
            readonly: true,
        },
    ];
    plan.resources = Resources {
        memory: Some(32 << 20),
        memory_swap: Some(64 << 20),
        cpus: Some(1.5),
        cpu_shares: Some(512),
        pids: Some(16),
        io_weight: Some(100),
        cpuset_cpus: Some("0-1".into()),
        cpuset_mems: Some("0".into()),
    };
    plan.seccomp = SeccompProfile::Strict;
    plan.network = Network::None;
    plan.user_namespace = Some(IdMaps {
        uids: vec![IdMap {
            container_id: 0,
            host_id: 100_000,
            size: 65_536,
        }],
        gids: vec![IdMap {
            container_id: 0,
            host_id: 100_000,
            size: 65_536,
        }],
    });
    plan.init = false;
    plan.vm = Some(VmSpec {
        kernel: Some("/k".into()),
        initrd: Some("/i".into()),
        cmdline: Some("x=1".into()),
        kernel_log: true,
        root_via: plan::RootVia::Virtiofs,
    });
    plan.timeout = Some(30.0);
    plan
}

/// What becomes of a Plan field under kata.
enum Fate {
    /// It reaches the guest's container; the check says it arrived.
    Container(fn(&GuestContainer, &Plan) -> bool),
    /// It shapes the VM (its size, kernel, timeout); the check says how.
    Machine(fn(&Plan) -> bool),
    /// Validation refuses it, with a problem on this field, when the Plan sets it so.
    Refused(fn(&mut Plan)),
}

fn fates() -> Vec<(&'static str, Fate)> {
    use Fate::*;
    vec![
        ("isolation", Machine(|p| p.isolation == Isolation::Kata)),
        (
            "root.path",
            // The full Plan shares its root over virtio-fs (vm.rootVia); without, the disk.
            Container(|c, p| {
                let mut on_disk = p.clone();
                on_disk.vm.as_mut().unwrap().root_via = plan::RootVia::Disk;
                c.spec.rootfs == std::path::Path::new(CONTAINER_ROOTFS)
                    && c.root == KataRoot::Virtiofs(crate::virtiofsd::ROOT_TAG.into())
                    && guest_container(&on_disk, "k1").unwrap().root
                        == KataRoot::Disk("/dev/vda".into())
            }),
        ),
        ("root.readonly", Container(|c, _| c.spec.readonly_rootfs)),
        (
            "process",
            Container(|c, p| {
                let mut expected = p.process.clone();
                expected.env = c.spec.process.env.clone();
                c.spec.process == expected
                    && c.spec.process.env[0] == "A=b"
                    && c.spec.process.env.iter().any(|e| e == "HOSTNAME=box")
            }),
        ),
        (
            "hostname",
            Container(|c, _| c.spec.hostname.as_deref() == Some("box")),
        ),
        (
            "mounts",
            Container(|c, _| {
                c.spec.mounts.len() == 2
                    && c.spec.mounts[0].kind
                        == MountKind::Tmpfs {
                            size: Some(1 << 20),
                        }
                    && c.spec.mounts[1].kind
                        == MountKind::Bind {
                            source: "/capsule/shares/share0".into(),
                        }
            }),
        ),
        (
            "disks",
            Refused(|p| {
                p.disks = vec![Disk {
                    path: "/d.raw".into(),
                    read_only: true,
                }]
            }),
        ),
        (
            "resources.memory",
            Container(|c, _| c.limits.memory == Some(32 << 20)),
        ),
        (
            "resources.memorySwap",
            Container(|c, _| c.limits.memory_swap == Some(64 << 20)),
        ),
        (
            "resources.cpus",
            Container(|c, _| c.limits.cpu_quota.is_some_and(|q| q.quota_us == 150_000)),
        ),
        (
            "resources.cpuShares",
            Container(|c, _| c.limits.cpu_shares == Some(512)),
        ),
        (
            "resources.pids",
            Container(|c, _| c.limits.pids == Some(16)),
        ),
        (
            "resources.ioWeight",
            Container(|c, _| c.limits.io_weight == Some(100)),
        ),
        (
            "resources.cpusetCpus",
            Container(|c, _| c.limits.cpuset_cpus.as_deref() == Some("0-1")),
        ),
        (
            "resources.cpusetMems",
            Container(|c, _| c.limits.cpuset_mems.as_deref() == Some("0")),
        ),
        (
            "seccomp",
            Container(|c, _| c.spec.seccomp == SeccompProfile::Strict),
        ),
        // The one mode: every ns-core container has a network namespace of its own.
        ("network", Machine(|p| p.network == Network::None)),
        (
            "userNamespace",
            Container(|c, p| c.spec.user_namespace == p.user_namespace),
        ),
        ("init", Container(|c, _| !c.spec.init)),
        (
            "vm",
            Machine(|p| {
                microvm::GuestArtifacts::of(p.vm.as_ref().unwrap()).kernel
                    == std::path::Path::new("/k")
            }),
        ),
        ("timeout", Machine(|p| p.timeout == Some(30.0))),
    ]
}

/// The Plan's fields as its JSON names them: top-level keys, and one level down in `root`
/// and `resources` (each of whose fields is its own matter); `process` is carried whole.
fn fields(plan: &Plan) -> Vec<String> {
    let Value::Object(top) = serde_json::to_value(plan).unwrap() else {
        panic!("a Plan is an object")
    };
    let mut names = Vec::new();
    for (key, value) in top {
        match (key.as_str(), value) {
            ("root" | "resources", Value::Object(inner)) => {
                names.extend(inner.keys().map(|k| format!("{key}.{k}")))
            }
            _ => names.push(key),
        }
    }
    names
}

#[test]
fn every_plan_field_reaches_the_guest_shapes_the_vm_or_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let plan = full_plan(root.path());
    assert_eq!(plan::validate(&plan, &host()), Vec::new());
    let container = guest_container(&plan, "k1").unwrap();
    let fates = fates();
    let mut known: Vec<&str> = fates.iter().map(|(name, _)| *name).collect();
    known.sort_unstable();
    let mut seen = fields(&plan);
    seen.push("disks".into());
    seen.sort_unstable();
    // A new Plan field fails here until it is carried into the guest or refused.
    assert_eq!(seen, known);
    for (name, fate) in fates {
        match fate {
            Fate::Container(arrived) => assert!(arrived(&container, &plan), "{name}"),
            Fate::Machine(shaped) => assert!(shaped(&plan), "{name}"),
            Fate::Refused(set) => {
                let mut refused = plan.clone();
                set(&mut refused);
                let problems = plan::validate(&refused, &host());
                assert!(
                    problems.iter().any(|p| p.field.starts_with(name)),
                    "{name}: {problems:?}"
                );
            }
        }
    }
}

#[test]
fn the_container_s_paths_are_the_guest_s_and_it_validates_there() {
    let root = tempfile::tempdir().unwrap();
    let container = guest_container(&full_plan(root.path()), "k1").unwrap();
    assert_eq!(
        container.spec.state_dir,
        std::path::Path::new(CONTAINER_STATE)
    );
    assert_eq!(container.spec.id, "k1");
    container.validate().unwrap();
}

#[test]
fn bind_mounts_come_from_the_guest_s_shares_in_order() {
    let root = tempfile::tempdir().unwrap();
    let mut plan = full_plan(root.path());
    plan.mounts.push(Mount {
        destination: "/logs".into(),
        kind: MountType::Bind,
        source: Some("/srv/logs".into()),
        size: None,
        readonly: false,
    });
    assert_eq!(plan::validate(&plan, &host()), Vec::new());
    let container = guest_container(&plan, "k1").unwrap();
    let mounts: Vec<_> = container
        .spec
        .mounts
        .iter()
        .map(|m| {
            (
                m.destination.display().to_string(),
                m.kind.clone(),
                m.readonly,
            )
        })
        .collect();
    let share = |tag: &str| MountKind::Bind {
        source: std::path::Path::new(CONTAINER_SHARES).join(tag),
    };
    assert_eq!(
        mounts,
        [
            (
                "/scratch".into(),
                MountKind::Tmpfs {
                    size: Some(1 << 20)
                },
                false
            ),
            ("/data".into(), share("share0"), true),
            ("/logs".into(), share("share1"), false),
        ]
    );
}

#[test]
fn the_vm_is_the_container_s_limits_plus_the_guest_s_own() {
    let mut plan = Plan::container("/", vec!["true".into()]);
    plan.isolation = Isolation::Kata;
    assert_eq!(guest_memory(&plan), microvm::DEFAULT_MEMORY);
    assert_eq!(microvm::vcpus(&plan), 1);
    plan.resources.memory = Some(32 << 20);
    plan.resources.cpus = Some(2.5);
    assert_eq!(guest_memory(&plan), (32 << 20) + GUEST_OVERHEAD);
    assert_eq!(microvm::vcpus(&plan), 3);
    plan.resources.memory = Some(u64::MAX);
    assert_eq!(guest_memory(&plan), u64::MAX);
}
