//! The flags that describe one launch, named as `docker run` / `podman run` name them.

use std::path::PathBuf;

use clap::Args;
use plan::{
    CapMask, Capabilities, Disk, IdMap, IdMaps, Isolation, Mount, MountType, Plan, Rlimit,
    SeccompProfile, VmSpec, parse_capability, parse_cpus, parse_duration, parse_size,
};

use crate::InRoot;

/// The flags that describe one launch, as `docker run` spells them.
#[derive(Debug, Args)]
#[group(id = "launch", multiple = true)]
pub struct LaunchArgs {
    /// container, microvm or kata.
    #[arg(long, default_value = "container", value_parser = parse_isolation)]
    isolation: Isolation,
    /// The directory that becomes the root filesystem; under --isolation microvm also a disk
    /// image (raw or qcow2) holding an ext4 root.
    #[arg(long, value_name = "DIR|IMAGE")]
    rootfs: Option<PathBuf>,
    /// Memory limit, e.g. 256M.
    #[arg(long, short = 'm', value_parser = parse_size)]
    memory: Option<u64>,
    /// Memory plus swap, e.g. 512M; -1 for unlimited swap (default: twice --memory).
    #[arg(long, value_parser = parse_swap, allow_hyphen_values = true)]
    memory_swap: Option<i64>,
    /// CPUs of time, e.g. 1.5.
    #[arg(long, value_parser = parse_cpus)]
    cpus: Option<f64>,
    /// Relative CPU weight (2-262144).
    #[arg(long)]
    cpu_shares: Option<u64>,
    /// Maximum number of processes.
    #[arg(long, visible_alias = "pids-limit")]
    pids: Option<u64>,
    /// Relative block IO weight (10-1000).
    #[arg(long)]
    blkio_weight: Option<u16>,
    /// CPUs the container may use, e.g. 0-1.
    #[arg(long, value_name = "LIST")]
    cpuset_cpus: Option<String>,
    /// Memory nodes the container may use, e.g. 0.
    #[arg(long, value_name = "LIST")]
    cpuset_mems: Option<String>,
    #[arg(long)]
    hostname: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to copy it from this environment).
    #[arg(long, short = 'e', value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Working directory inside the container.
    #[arg(long, short = 'w', value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// User as name|uid[:group|gid], resolved in the root filesystem's /etc/passwd.
    #[arg(long, short = 'u')]
    user: Option<String>,
    /// Add a supplementary group: a name of the image's /etc/group, or a gid (repeatable).
    #[arg(long, value_name = "GROUP")]
    group_add: Vec<String>,
    /// Mount the root filesystem read-only (otherwise writes go to a discarded overlay).
    #[arg(long)]
    read_only: bool,
    /// Add a capability (NET_ADMIN, or ALL).
    #[arg(long, value_name = "CAP")]
    cap_add: Vec<String>,
    /// Drop a capability (CHOWN, or ALL).
    #[arg(long, value_name = "CAP")]
    cap_drop: Vec<String>,
    /// Seccomp profile: default (Docker's default allow-list), strict (minus ptrace, bpf, namespaces, mounts, ...) or unconfined.
    #[arg(long, value_parser = parse_seccomp)]
    seccomp: Option<SeccompProfile>,
    /// Run the command as PID 1, without capsule's minimal init.
    #[arg(long)]
    no_init: bool,
    /// Bind mount SRC:DST[:ro].
    #[arg(long, short = 'v', value_name = "SRC:DST[:ro]")]
    volume: Vec<String>,
    /// Mount a tmpfs at PATH[:size=64m].
    #[arg(long, value_name = "PATH[:size=N]")]
    tmpfs: Vec<String>,
    /// Resource limit TYPE=SOFT[:HARD], e.g. nofile=1024:2048.
    #[arg(long, value_name = "TYPE=SOFT[:HARD]")]
    ulimit: Vec<String>,
    /// Map ids CONTAINER:HOST:SIZE in a new user namespace (repeatable; as podman).
    #[arg(long, value_name = "CONTAINER:HOST:SIZE", value_parser = parse_idmap)]
    uidmap: Vec<IdMap>,
    /// Map group ids CONTAINER:HOST:SIZE in the user namespace (repeatable).
    #[arg(long, value_name = "CONTAINER:HOST:SIZE", value_parser = parse_idmap)]
    gidmap: Vec<IdMap>,
    /// microVM: the guest kernel, an ELF vmlinux (PVH) or a bzImage; default: the one
    /// `cargo xtask guest` fetched.
    #[arg(long, value_name = "FILE")]
    kernel: Option<PathBuf>,
    /// microVM: the base initramfs holding capsule-init (default: `cargo xtask guest`'s).
    #[arg(long, value_name = "FILE")]
    initrd: Option<PathBuf>,
    /// microVM: show the guest kernel's boot log.
    #[arg(long)]
    kernel_log: bool,
    /// microVM: parameters appended to capsule's guest kernel command line (QEMU's -append).
    #[arg(long, value_name = "PARAMS")]
    kernel_cmdline: Option<String>,
    /// kata: how the root directory reaches the container: `disk` (an ext4 image of it on a
    /// read-only virtio-blk disk, the default) or `virtiofs` (shared by a virtiofsd).
    #[arg(long, value_name = "HOW")]
    root_via: Option<RootViaArg>,
    /// microVM: attach a disk image (raw or qcow2) as /dev/vdb, /dev/vdc, ... in the order
    /// given; `:ro` makes it read-only. A path that itself ends in `:ro` or `:rw` is written
    /// with its mode after it: `--disk 'backup:ro:rw'`.
    #[arg(long, value_name = "PATH[:ro]", value_parser = parse_disk)]
    disk: Vec<Disk>,
    /// Stop the workload after this long, e.g. 30, 30s, 500ms or 2m (exit status 124).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    timeout: Option<f64>,
    /// The command and its arguments.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

fn parse_isolation(s: &str) -> Result<Isolation, String> {
    match s {
        "container" => Ok(Isolation::Container),
        "microvm" => Ok(Isolation::Microvm),
        "kata" => Ok(Isolation::Kata),
        _ => Err(format!("{s:?}: expected container, microvm or kata")),
    }
}

fn parse_idmap(s: &str) -> Result<IdMap, String> {
    let numbers: Vec<u32> = s.split(':').filter_map(|n| n.parse().ok()).collect();
    match numbers[..] {
        [container_id, host_id, size] if s.split(':').count() == 3 && size > 0 => Ok(IdMap {
            container_id,
            host_id,
            size,
        }),
        _ => Err(format!(
            "{s:?}: expected CONTAINER:HOST:SIZE, e.g. 0:100000:65536"
        )),
    }
}

/// `PATH[:ro]`, `PATH:rw`: only a final `:ro` or `:rw` is the mode, so every other `:` is
/// part of the path.
fn parse_disk(spec: &str) -> Result<Disk, String> {
    let (path, read_only) = match spec.rsplit_once(':') {
        Some((path, "ro")) => (path, true),
        Some((path, "rw")) => (path, false),
        _ => (spec, false),
    };
    if path.is_empty() {
        return Err(format!(
            "{spec:?}: expected PATH[:ro], the disk image's path with :ro for a read-only disk"
        ));
    }
    Ok(Disk {
        path: absolute(PathBuf::from(path)),
        read_only,
    })
}

fn parse_swap(s: &str) -> Result<i64, String> {
    if s == "-1" {
        return Ok(-1);
    }
    let bytes = parse_size(s).map_err(|e| e.to_string())?;
    i64::try_from(bytes).map_err(|_| format!("{s:?} is out of range"))
}

fn parse_seccomp(s: &str) -> Result<SeccompProfile, String> {
    match s {
        "default" => Ok(SeccompProfile::Default),
        "strict" => Ok(SeccompProfile::Strict),
        "unconfined" => Ok(SeccompProfile::Unconfined),
        _ => Err(format!("{s:?}: expected default, strict or unconfined")),
    }
}

impl LaunchArgs {
    /// The Plan these flags describe. Names (users, capabilities, rlimits) are resolved here,
    /// so a bad one is refused before anything is created.
    pub fn to_plan(&self) -> Result<Plan, String> {
        let rootfs = self
            .rootfs
            .clone()
            .ok_or("--rootfs DIR is required: the directory that becomes / (cargo xtask rootfs busybox builds one)")?;
        let rootfs = std::path::absolute(&rootfs).unwrap_or(rootfs);
        if self.command.is_empty() {
            return Err("no command given: put it after --, e.g. capsule run --rootfs DIR -- /bin/sh -c 'echo hi'".into());
        }
        let mut plan = Plan::container(&rootfs, self.command.clone());
        plan.isolation = self.isolation;
        plan.root.readonly = self.read_only;
        plan.hostname = self.hostname.clone();
        plan.init = !self.no_init;
        if let Some(seccomp) = self.seccomp {
            plan.seccomp = seccomp;
        }
        if let Some(dir) = &self.workdir {
            plan.process.cwd = dir.clone();
        }
        if let Some(user) = &self.user {
            plan.process.user =
                plan::resolve_user(user, &rootfs, &InRoot).map_err(|e| e.to_string())?;
        }
        for group in &self.group_add {
            let gid = plan::resolve_group(group, &rootfs, &InRoot)
                .map_err(|e| format!("--group-add: {e}"))?;
            plan.process.user.additional_gids.push(gid);
        }
        plan.process.user.additional_gids.sort_unstable();
        plan.process.user.additional_gids.dedup();
        for kv in &self.env {
            let kv = match kv.split_once('=') {
                Some(_) => kv.clone(),
                None => match std::env::var(kv) {
                    Ok(value) => format!("{kv}={value}"),
                    Err(_) => continue,
                },
            };
            let key = kv.split('=').next().unwrap_or_default();
            plan.process
                .env
                .retain(|e| e.split('=').next() != Some(key));
            plan.process.env.push(kv);
        }
        plan.process.capabilities = self.capabilities(plan.process.user.uid)?;
        for spec in &self.ulimit {
            let rlimit = parse_ulimit(spec)?;
            plan.process.rlimits.retain(|r| r.kind != rlimit.kind);
            plan.process.rlimits.push(rlimit);
        }
        for spec in &self.volume {
            plan.mounts.push(parse_volume(spec)?);
        }
        for spec in &self.tmpfs {
            plan.mounts.push(parse_tmpfs(spec)?);
        }
        if !self.uidmap.is_empty() || !self.gidmap.is_empty() {
            plan.user_namespace = Some(IdMaps {
                uids: self.uidmap.clone(),
                gids: self.gidmap.clone(),
            });
        }
        plan.disks = self.disk.clone();
        plan.timeout = self.timeout;
        if self.kernel.is_some()
            || self.initrd.is_some()
            || self.kernel_log
            || self.kernel_cmdline.is_some()
            || self.root_via.is_some()
        {
            plan.vm = Some(VmSpec {
                kernel: self.kernel.clone().map(absolute),
                initrd: self.initrd.clone().map(absolute),
                cmdline: self.kernel_cmdline.clone(),
                kernel_log: self.kernel_log,
                root_via: match self.root_via {
                    Some(RootViaArg::Virtiofs) => plan::RootVia::Virtiofs,
                    Some(RootViaArg::Disk) | None => plan::RootVia::Disk,
                },
            });
        }
        let r = &mut plan.resources;
        r.memory = self.memory;
        r.memory_swap = self.memory_swap;
        r.cpus = self.cpus;
        r.cpu_shares = self.cpu_shares;
        r.pids = self.pids;
        r.io_weight = self.blkio_weight;
        r.cpuset_cpus = self.cpuset_cpus.clone();
        r.cpuset_mems = self.cpuset_mems.clone();
        plan.derive_defaults();
        Ok(plan)
    }

    /// The OCI default set with `--cap-drop`, then `--cap-add`, applied; for a user other than
    /// root (`uid`), the added capabilities are ambient too, as podman gives them
    /// ([`Capabilities::raise_ambient`]).
    fn capabilities(&self, uid: u32) -> Result<Capabilities, String> {
        let mut caps = Capabilities::oci_default();
        let mut added = CapMask(0);
        for name in &self.cap_drop {
            if name.eq_ignore_ascii_case("ALL") {
                caps = Capabilities::default();
            } else {
                caps.drop(parse_capability(name).map_err(|e| format!("--cap-drop: {e}"))?);
            }
        }
        for name in &self.cap_add {
            if name.eq_ignore_ascii_case("ALL") {
                caps = Capabilities::all();
                added = caps.permitted;
            } else {
                let cap = parse_capability(name).map_err(|e| format!("--cap-add: {e}"))?;
                caps.add(cap);
                added.0 |= cap.bitmask();
            }
        }
        if uid != 0 {
            caps.raise_ambient(added);
        }
        Ok(caps)
    }
}

impl LaunchArgs {
    /// The workload a policy script reads: `--rootfs`, `-e` and the command. Every other
    /// launch flag is refused, because the script decides what it sets.
    pub fn workload(&self) -> Result<policy::Workload, String> {
        let given = [
            ("--isolation", self.isolation != Isolation::Container),
            ("--memory", self.memory.is_some()),
            ("--memory-swap", self.memory_swap.is_some()),
            ("--cpus", self.cpus.is_some()),
            ("--cpu-shares", self.cpu_shares.is_some()),
            ("--pids", self.pids.is_some()),
            ("--blkio-weight", self.blkio_weight.is_some()),
            ("--cpuset-cpus", self.cpuset_cpus.is_some()),
            ("--cpuset-mems", self.cpuset_mems.is_some()),
            ("--hostname", self.hostname.is_some()),
            ("--workdir", self.workdir.is_some()),
            ("--user", self.user.is_some()),
            ("--group-add", !self.group_add.is_empty()),
            ("--read-only", self.read_only),
            ("--cap-add", !self.cap_add.is_empty()),
            ("--cap-drop", !self.cap_drop.is_empty()),
            ("--seccomp", self.seccomp.is_some()),
            ("--no-init", self.no_init),
            ("--volume", !self.volume.is_empty()),
            ("--tmpfs", !self.tmpfs.is_empty()),
            ("--ulimit", !self.ulimit.is_empty()),
            ("--uidmap", !self.uidmap.is_empty()),
            ("--gidmap", !self.gidmap.is_empty()),
            ("--kernel", self.kernel.is_some()),
            ("--initrd", self.initrd.is_some()),
            ("--kernel-log", self.kernel_log),
            ("--kernel-cmdline", self.kernel_cmdline.is_some()),
            ("--root-via", self.root_via.is_some()),
            ("--disk", !self.disk.is_empty()),
            ("--timeout", self.timeout.is_some()),
        ];
        let refused: Vec<&str> = given
            .iter()
            .filter(|(_, set)| *set)
            .map(|(f, _)| *f)
            .collect();
        if !refused.is_empty() {
            return Err(format!(
                "{} cannot be used with a policy script: the script sets the launch (see docs/policy.md); with a script give only --rootfs, -e, --set and the command after --",
                refused.join(", ")
            ));
        }
        let mut env = std::collections::BTreeMap::new();
        for kv in &self.env {
            match kv.split_once('=') {
                Some((key, value)) => {
                    env.insert(key.to_owned(), value.to_owned());
                }
                None => {
                    if let Ok(value) = std::env::var(kv) {
                        env.insert(kv.clone(), value);
                    }
                }
            }
        }
        let (command, args) = match self.command.split_first() {
            Some((command, args)) => (command.clone(), args.to_vec()),
            None => (String::new(), Vec::new()),
        };
        Ok(policy::Workload {
            command,
            args,
            env,
            rootfs: self.rootfs.clone().map(absolute),
        })
    }
}

/// `TYPE=SOFT[:HARD]` of `docker run --ulimit`; a value may be `-1`, `infinity` or
/// `unlimited` for no limit ([`plan::parse_rlimit_value`]), and HARD defaults to SOFT.
fn parse_ulimit(spec: &str) -> Result<Rlimit, String> {
    let bad = |why: String| format!("--ulimit {spec:?}: {why}");
    let (name, values) = spec
        .split_once('=')
        .ok_or_else(|| bad("expected TYPE=SOFT[:HARD], e.g. nofile=1024:2048".into()))?;
    let (soft, hard) = values.split_once(':').unwrap_or((values, values));
    let value = |v| plan::parse_rlimit_value(v).map_err(|e| bad(e.to_string()));
    Rlimit::new(name, value(soft)?, value(hard)?).map_err(|e| bad(e.to_string()))
}

fn parse_volume(spec: &str) -> Result<Mount, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, destination, readonly) = match parts.as_slice() {
        [s, d] => (s, d, false),
        [s, d, "ro"] => (s, d, true),
        [s, d, "rw"] => (s, d, false),
        _ => {
            return Err(format!(
                "--volume {spec:?}: expected SRC:DST[:ro], with absolute paths"
            ));
        }
    };
    let source = std::path::absolute(source).map_err(|e| format!("--volume {spec:?}: {e}"))?;
    Ok(Mount {
        destination: PathBuf::from(destination),
        kind: MountType::Bind,
        source: Some(source),
        size: None,
        readonly,
    })
}

fn parse_tmpfs(spec: &str) -> Result<Mount, String> {
    let (path, options) = spec.split_once(':').unwrap_or((spec, ""));
    let mut size = None;
    let mut readonly = false;
    for option in options.split(',').filter(|o| !o.is_empty()) {
        match option.split_once('=') {
            Some(("size", value)) => {
                size = Some(parse_size(value).map_err(|e| format!("--tmpfs: {e}"))?)
            }
            None if option == "ro" => readonly = true,
            None if option == "rw" => readonly = false,
            _ => {
                return Err(format!(
                    "--tmpfs {spec:?}: unknown option {option:?}; expected size=N, ro or rw"
                ));
            }
        }
    }
    Ok(Mount {
        destination: PathBuf::from(path),
        kind: MountType::Tmpfs,
        source: None,
        size,
        readonly,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        launch: LaunchArgs,
    }

    #[test]
    fn kernel_cmdline_goes_into_the_plan_s_vm() {
        use clap::Parser;
        let flags = Flags::try_parse_from([
            "capsule",
            "--isolation",
            "microvm",
            "--kernel-cmdline",
            "cryptomgr.notests tsc=reliable",
            "--rootfs",
            "/",
            "--",
            "true",
        ])
        .expect("flags parse");
        let plan = flags.launch.to_plan().expect("a plan");
        assert_eq!(
            plan.vm.and_then(|vm| vm.cmdline).as_deref(),
            Some("cryptomgr.notests tsc=reliable")
        );
    }

    #[test]
    fn disks_keep_their_order_and_only_a_final_ro_or_rw_is_the_mode() {
        use clap::Parser;
        let flags = Flags::try_parse_from([
            "capsule",
            "--isolation",
            "microvm",
            "--rootfs",
            "/",
            "--disk",
            "/images/data.qcow2",
            "--disk",
            "/images/base.raw:ro",
            "--disk",
            "/a:b/c.raw",
            "--disk",
            "/backup:ro:rw",
            "--disk",
            "/x.img:rw",
            "--disk",
            "relative.raw:ro",
            "--",
            "true",
        ])
        .expect("flags parse");
        let plan = flags.launch.to_plan().expect("a plan");
        let disks: Vec<(String, bool)> = plan
            .disks
            .iter()
            .map(|d| (d.path.display().to_string(), d.read_only))
            .collect();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            disks,
            [
                ("/images/data.qcow2".to_owned(), false),
                ("/images/base.raw".to_owned(), true),
                ("/a:b/c.raw".to_owned(), false),
                ("/backup:ro".to_owned(), false),
                ("/x.img".to_owned(), false),
                (cwd.join("relative.raw").display().to_string(), true),
            ]
        );
        for bad in [":ro", "", ":rw"] {
            let err = parse_disk(bad).unwrap_err();
            assert!(err.contains("expected PATH[:ro]"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_script_sets_the_disks_itself() {
        use clap::Parser;
        let flags =
            Flags::try_parse_from(["capsule", "--disk", "/d.raw", "--", "true"]).expect("parse");
        let err = flags.launch.workload().unwrap_err();
        assert!(
            err.starts_with("--disk cannot be used with a policy script"),
            "{err}"
        );
    }

    #[test]
    fn volumes_and_tmpfs_parse_like_docker() {
        let m = parse_volume("/src:/dst:ro").unwrap();
        assert_eq!(
            (m.source.unwrap(), m.destination, m.readonly),
            ("/src".into(), "/dst".into(), true)
        );
        assert!(parse_volume("/only").is_err());
        let t = parse_tmpfs("/scratch:size=64m,ro").unwrap();
        assert_eq!((t.size, t.readonly), (Some(64 << 20), true));
        assert!(parse_tmpfs("/x:mode=1").is_err());
    }

    #[test]
    fn ulimits_use_oci_names_and_default_hard_to_soft() {
        let r = parse_ulimit("nofile=100").unwrap();
        assert_eq!(
            (r.kind.as_str(), r.soft, r.hard),
            ("RLIMIT_NOFILE", 100, 100)
        );
        let r = parse_ulimit("nproc=10:20").unwrap();
        assert_eq!((r.soft, r.hard), (10, 20));
        assert!(
            parse_ulimit("bogus=1")
                .unwrap_err()
                .contains("unknown rlimit")
        );
    }

    #[test]
    fn ulimits_take_every_spelling_of_unlimited_for_every_resource() {
        let inf = plan::RLIM_INFINITY;
        for name in [
            "as",
            "core",
            "cpu",
            "data",
            "fsize",
            "locks",
            "memlock",
            "msgqueue",
            "nice",
            "nofile",
            "nproc",
            "rss",
            "rtprio",
            "rttime",
            "sigpending",
            "stack",
        ] {
            for unlimited in ["-1", "infinity", "unlimited"] {
                let r = parse_ulimit(&format!("{name}={unlimited}")).unwrap();
                assert_eq!((r.soft, r.hard), (inf, inf), "{name}={unlimited}");
                let r = parse_ulimit(&format!("{name}=8192:{unlimited}")).unwrap();
                assert_eq!((r.soft, r.hard), (8192, inf), "{name}=8192:{unlimited}");
            }
        }
        // As docker's go-units: an unlimited soft limit needs an unlimited hard one.
        let err = parse_ulimit("core=-1:100").unwrap_err();
        assert!(
            err.contains("soft limit unlimited is above hard limit 100"),
            "{err}"
        );
        let err = parse_ulimit("nofile=200:100").unwrap_err();
        assert!(
            err.contains("soft limit 200 is above hard limit 100"),
            "{err}"
        );
        let err = parse_ulimit("core=-2").unwrap_err();
        assert!(err.contains("-1, infinity or unlimited"), "{err}");
    }
}

/// `--root-via`'s values (`plan::RootVia`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RootViaArg {
    /// An ext4 image of the root directory on a read-only virtio-blk disk.
    Disk,
    /// The root directory shared over virtio-fs.
    Virtiofs,
}
