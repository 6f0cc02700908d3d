//! One launch's cgroup, across every hierarchy it uses.
//!
//! Our cgroups live under a `capsule` directory at the root of each hierarchy
//! (`/sys/fs/cgroup/memory/capsule/<name>` on v1, `/sys/fs/cgroup/capsule/<name>` on v2). The
//! `capsule` parents are ours too: we create them, fill in what v1 cpuset needs and enable v2
//! controllers in them. We never remove them, since another launch may be creating a child
//! there at the same moment. Nothing outside them is ever written.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::controller::Controller;
use crate::detect::Layout;
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::{PARENT, fs, v1, v2, wait};

/// v1 controllers joined whatever the limits: memory, cpuacct and pids for [`Stats`], freezer
/// for [`Cgroup::freeze`] and [`Cgroup::kill`], devices for [`Cgroup::allow_only_devices`].
/// Joined where mounted, skipped where not.
const ALWAYS_V1: [Controller; 5] = [
    Controller::Memory,
    Controller::Cpuacct,
    Controller::Pids,
    Controller::Freezer,
    Controller::Devices,
];

/// v2 controllers enabled whatever the limits, for [`Stats`]; skipped where the host lacks them.
const ALWAYS_V2: [Controller; 3] = [Controller::Memory, Controller::Cpu, Controller::Pids];

/// Resource use of a cgroup. Read it after the workload exits and before [`Cgroup::remove`].
/// `None` means this host does not report that number.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Highest memory use: v1 `memory.max_usage_in_bytes`, v2 `memory.peak`.
    pub memory_peak_bytes: Option<u64>,
    /// CPU time used: v1 `cpuacct.usage`, v2 `usage_usec` of `cpu.stat` times 1000.
    pub cpu_usage_ns: Option<u64>,
    /// Processes and threads now: `pids.current`.
    pub pids_current: Option<u64>,
    /// Most processes and threads at once: `pids.peak` (Linux 6.1+).
    pub pids_peak: Option<u64>,
    /// Processes the OOM killer killed: v1 `oom_kill` in `memory.oom_control`, v2 `oom_kill`
    /// in `memory.events`.
    pub oom_kills: u64,
}

/// One launch's cgroup: a directory named after the launch in every hierarchy it uses.
///
/// Nothing is removed on drop: call [`Cgroup::remove`], or [`Cgroup::open`] it again later (as
/// `capsule gc` does after a crash) and remove it then.
#[derive(Debug)]
pub struct Cgroup {
    name: String,
    /// Each v1 controller's directory; co-mounted controllers share one.
    v1: BTreeMap<Controller, PathBuf>,
    /// The directory in the unified hierarchy.
    v2: Option<PathBuf>,
    /// On pure v2 the unified directory holds the controllers; on hybrid hosts it only gives
    /// membership, freezing and killing.
    unified_controllers: bool,
}

impl Cgroup {
    /// Creates `capsule/<name>` in every hierarchy the limits and the statistics need and
    /// applies `limits`.
    ///
    /// The limits are [validated](Layout::validate) first, so nothing is created for limits the
    /// host cannot give. A name that already exists anywhere is an error and that directory is
    /// left alone. On any error, what this call created is removed again.
    ///
    /// Errors: [`Error::InvalidName`] for a `name` that is not one directory name,
    /// [`Error::InvalidLimits`] listing every problem, [`Error::AlreadyExists`],
    /// [`Error::Unavailable`] for a controller or interface file the host lacks, and
    /// [`Error::CreateDir`], [`Error::Read`] or [`Error::Write`] naming the file the kernel
    /// refused.
    pub fn create(layout: &Layout, name: &str, limits: &Limits) -> Result<Cgroup> {
        check_name(name)?;
        layout.validate(limits).map_err(Error::InvalidLimits)?;
        let mut created = Vec::new();
        let result = build(layout, name, limits, &mut created);
        if result.is_err() {
            for dir in created.iter().rev() {
                if let Err(err) = std::fs::remove_dir(dir) {
                    tracing::warn!(dir = %dir.display(), %err, "cannot undo cgroup creation");
                }
            }
        }
        result
    }

    /// Reopens the cgroup `name` wherever it exists, or `None` if it exists nowhere. Fails
    /// with [`Error::InvalidName`] for a `name` that is not one directory name.
    pub fn open(layout: &Layout, name: &str) -> Result<Option<Cgroup>> {
        check_name(name)?;
        let mut cgroup = Cgroup::empty(layout, name);
        if let Some(mounts) = layout.v1() {
            for controller in mounts.controllers() {
                if let Some(mount) = mounts.mount(controller) {
                    let dir = mount.join(PARENT).join(name);
                    if dir.is_dir() {
                        cgroup.v1.insert(controller, dir);
                    }
                }
            }
        }
        if let Some(mount) = layout.v2() {
            cgroup.v2 = Some(mount.path().join(PARENT).join(name)).filter(|dir| dir.is_dir());
        }
        Ok((!cgroup.v1.is_empty() || cgroup.v2.is_some()).then_some(cgroup))
    }

    /// The names of our cgroups in any hierarchy, each once, sorted. Fails with
    /// [`Error::ListDir`] when a `capsule` directory cannot be listed.
    pub fn list(layout: &Layout) -> Result<Vec<String>> {
        let mut mounts: Vec<&Path> = layout.v1().map(|v1| v1.mount_points()).unwrap_or_default();
        mounts.extend(layout.v2().map(|v2| v2.path()));
        let mut names = BTreeSet::new();
        for mount in mounts {
            for dir in fs::subdirs(&mount.join(PARENT))? {
                // We only create UTF-8 names; anything else is not ours.
                if let Some(name) = dir.file_name().and_then(|n| n.to_str()) {
                    names.insert(name.to_owned());
                }
            }
        }
        Ok(names.into_iter().collect())
    }

    /// The launch name this cgroup was created or opened with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Lets the cgroup's processes create any device node but open only those `rules` allow
    /// (v1 `devices.allow` lines, e.g. [`OCI_DEFAULT_DEVICES`](crate::OCI_DEFAULT_DEVICES)).
    /// Returns `false`, changing nothing, where the host has no v1 devices controller: cgroup
    /// v2 filters devices with a BPF program attached to the cgroup, which this crate does not
    /// write yet. Fails with [`Error::Write`] naming the rule the kernel refused.
    pub fn allow_only_devices(&self, rules: &[&str]) -> Result<bool> {
        match self.v1.get(&Controller::Devices) {
            Some(dir) => v1::devices::allow_only(dir, rules).map(|()| true),
            None => Ok(false),
        }
    }

    /// Moves process `pid` (and, on v1 and v2 alike, its future children) into the cgroup in
    /// every hierarchy by writing it to `cgroup.procs`; [`Error::Write`] if the kernel refuses
    /// (`ESRCH` for a process that is gone).
    pub fn add_task(&self, pid: i32) -> Result<()> {
        for dir in self.paths() {
            fs::write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Every directory of this cgroup, each once: the v1 ones, then the unified one.
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for dir in self.v1.values().chain(&self.v2) {
            if !dirs.contains(dir) {
                dirs.push(dir.clone());
            }
        }
        dirs
    }

    /// The processes in the cgroup or its descendants, in any hierarchy, sorted. Processes in
    /// pid namespaces we cannot see into show as 0 in `cgroup.procs` and are left out.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let mut pids = BTreeSet::new();
        for dir in self.paths() {
            procs_below(&dir, &mut pids)?;
        }
        Ok(pids.into_iter().collect())
    }

    /// Resource use so far. On hybrid hosts the numbers come from the v1 controllers; CPU time
    /// falls back to the unified `cpu.stat` when cpuacct is not mounted. Fails with
    /// [`Error::Read`] or [`Error::Parse`] naming the statistics file.
    pub fn stats(&self) -> Result<Stats> {
        if self.unified_controllers {
            return match &self.v2 {
                Some(dir) => v2::stats(dir),
                None => Ok(Stats::default()),
            };
        }
        let mut stats = v1::stats(&self.v1)?;
        if let (None, Some(dir)) = (stats.cpu_usage_ns, &self.v2) {
            v2::cpu::stats(dir, &mut stats)?;
        }
        Ok(stats)
    }

    /// Freezes every process in the cgroup and waits until the kernel reports it frozen:
    /// `cgroup.freeze` where the unified hierarchy has it, else the v1 freezer. Fails with
    /// [`Error::Unavailable`] when there is neither, [`Error::Timeout`] when the kernel does
    /// not report the state in about 2 s (the freeze is then withdrawn), or the read or write
    /// that failed.
    pub fn freeze(&self) -> Result<()> {
        match self.freezer()? {
            Freezer::V2(dir) => v2::freezer::freeze(dir),
            Freezer::V1(dir) => v1::freezer::freeze(dir),
        }
    }

    /// Lets frozen processes run again; fails as [`freeze`](Self::freeze) does.
    pub fn thaw(&self) -> Result<()> {
        match self.freezer()? {
            Freezer::V2(dir) => v2::freezer::thaw(dir),
            Freezer::V1(dir) => v1::freezer::thaw(dir),
        }
    }

    /// SIGKILLs every process in the cgroup. With `cgroup.kill` (v2 and hybrid, Linux 5.14+)
    /// the kernel does it in one step; otherwise the cgroup is frozen so nothing can fork, each
    /// process is signalled, and the cgroup is thawed so the signals are delivered. Fails with
    /// [`Error::Signal`] for a process that could not be signalled (one already gone is fine),
    /// or the write or thaw that failed.
    pub fn kill(&self) -> Result<()> {
        if let Some(dir) = self.v2.as_deref().filter(|dir| v2::can_kill(dir)) {
            return v2::kill(dir);
        }
        let frozen = match self.freeze() {
            Ok(()) => true,
            Err(err) => {
                tracing::debug!(name = %self.name, %err, "killing without freezing first");
                false
            }
        };
        let signalled = self.signal_all();
        if frozen {
            self.thaw()?;
        }
        signalled
    }

    /// Kills what is left, waits (about 2 s at most) until the cgroup is empty, then removes
    /// every directory, descendants first. Directories already gone are fine, so removing a
    /// half-removed cgroup again finishes the job. Fails with [`Error::Timeout`] when
    /// processes remain, [`Error::RemoveDir`] naming the directory the kernel kept, or what
    /// [`kill`](Self::kill) failed with.
    pub fn remove(self) -> Result<()> {
        if self.populated()? {
            self.kill()?;
        }
        if !wait::poll_until(wait::TIMEOUT, || Ok(!self.populated()?))? {
            let path = self.paths().into_iter().next().unwrap_or_default();
            return Err(Error::Timeout {
                path,
                what: "no processes left",
                waited: wait::TIMEOUT,
            });
        }
        for dir in self.paths() {
            remove_tree(&dir)?;
        }
        tracing::debug!(name = %self.name, "removed cgroup");
        Ok(())
    }

    fn empty(layout: &Layout, name: &str) -> Cgroup {
        Cgroup {
            name: name.to_owned(),
            v1: BTreeMap::new(),
            v2: None,
            unified_controllers: matches!(layout, Layout::V2(_)),
        }
    }

    fn freezer(&self) -> Result<Freezer<'_>> {
        if let Some(dir) = self
            .v2
            .as_deref()
            .filter(|dir| v2::freezer::can_freeze(dir))
        {
            return Ok(Freezer::V2(dir));
        }
        match self.v1.get(&Controller::Freezer) {
            Some(dir) => Ok(Freezer::V1(dir)),
            None => Err(Error::Unavailable {
                controller: Controller::Freezer,
                reason: format!(
                    "cgroup {} has neither cgroup.freeze nor a v1 freezer",
                    self.name
                ),
            }),
        }
    }

    /// Whether any process is left, including ones only `cgroup.events` can see.
    fn populated(&self) -> Result<bool> {
        if !self.pids()?.is_empty() {
            return Ok(true);
        }
        match &self.v2 {
            Some(dir) => v2::populated(dir),
            None => Ok(false),
        }
    }

    fn signal_all(&self) -> Result<()> {
        for pid in self.pids()? {
            match signal::kill(Pid::from_raw(pid), Signal::SIGKILL) {
                // Gone between reading cgroup.procs and now: nothing left to kill.
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(source) => return Err(Error::Signal { pid, source }),
            }
        }
        Ok(())
    }
}

enum Freezer<'a> {
    V1(&'a Path),
    V2(&'a Path),
}

/// Creates the directories and applies the limits; every directory made is pushed to `created`
/// so the caller can undo it.
fn build(
    layout: &Layout,
    name: &str,
    limits: &Limits,
    created: &mut Vec<PathBuf>,
) -> Result<Cgroup> {
    let needed = limits.controllers();
    let mut cgroup = Cgroup::empty(layout, name);

    if let Some(mounts) = layout.v1() {
        // Co-mounted controllers (cpu,cpuacct) share one hierarchy and so one directory.
        let mut hierarchies: BTreeMap<&Path, Vec<Controller>> = BTreeMap::new();
        for controller in Controller::ALL {
            let is_needed = needed.contains(&controller);
            if !is_needed && !ALWAYS_V1.contains(&controller) {
                continue;
            }
            match mounts.mount(controller) {
                Some(mount) => hierarchies.entry(mount).or_default().push(controller),
                None if is_needed => {
                    return Err(Error::Unavailable {
                        controller,
                        reason: format!(
                            "no cgroup v1 hierarchy with the {controller} controller is mounted"
                        ),
                    });
                }
                None => tracing::debug!(%controller, "not mounted; its statistics will be missing"),
            }
        }
        for (mount, controllers) in hierarchies {
            let parent = ensure_parent(mount)?;
            let has_cpuset = controllers.contains(&Controller::Cpuset);
            if has_cpuset {
                v1::cpuset::inherit(mount, &parent)?;
            }
            let dir = parent.join(name);
            make_dir(&dir, created)?;
            if has_cpuset {
                v1::cpuset::inherit(&parent, &dir)?;
            }
            for controller in controllers {
                v1::apply(controller, limits, &dir)?;
                cgroup.v1.insert(controller, dir.clone());
            }
        }
    }

    if let Some(mount) = layout.v2() {
        let parent = ensure_parent(mount.path())?;
        if cgroup.unified_controllers {
            v2::enable_controllers(&parent, &needed, &ALWAYS_V2)?;
        }
        let dir = parent.join(name);
        make_dir(&dir, created)?;
        if cgroup.unified_controllers {
            v2::apply(limits, &dir)?;
        }
        cgroup.v2 = Some(dir);
    }

    tracing::debug!(name, dirs = ?cgroup.paths(), "created cgroup");
    Ok(cgroup)
}

/// Checks that `name` is one plain directory name.
fn check_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "must not be empty"
    } else if name == "." || name == ".." {
        "must not be . or .."
    } else if name.contains('/') {
        "must not contain /"
    } else if name.contains(['\0', '\n']) {
        "must not contain NUL or newline"
    } else if name.len() > 255 {
        "must be at most 255 bytes"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

/// Creates `<mount>/capsule` unless it exists (another launch may be creating it right now).
fn ensure_parent(mount: &Path) -> Result<PathBuf> {
    let parent = mount.join(PARENT);
    match std::fs::create_dir(&parent) {
        Ok(()) => Ok(parent),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(parent),
        Err(source) => Err(Error::CreateDir {
            path: parent,
            source,
        }),
    }
}

/// Creates a launch's directory, refusing one that already exists: it belongs to another
/// launch, or to a crashed one that `capsule gc` should clear.
fn make_dir(dir: &Path, created: &mut Vec<PathBuf>) -> Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => {
            created.push(dir.to_owned());
            Ok(())
        }
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Err(Error::AlreadyExists {
            path: dir.to_owned(),
        }),
        Err(source) => Err(Error::CreateDir {
            path: dir.to_owned(),
            source,
        }),
    }
}

/// Adds the pids in `dir`'s `cgroup.procs` and its descendants' to `pids`.
fn procs_below(dir: &Path, pids: &mut BTreeSet<i32>) -> Result<()> {
    let file = dir.join("cgroup.procs");
    if let Some(text) = fs::read_opt(&file)? {
        pids.extend(
            fs::parse_pids(&file, &text)?
                .into_iter()
                .filter(|pid| *pid > 0),
        );
    }
    for child in fs::subdirs(dir)? {
        procs_below(&child, pids)?;
    }
    Ok(())
}

/// Removes `dir` and the cgroups below it. `rmdir` can fail with `EBUSY` for a moment after the
/// last process left, while the kernel finishes tearing it down, so that is retried.
fn remove_tree(dir: &Path) -> Result<()> {
    for child in fs::subdirs(dir)? {
        remove_tree(&child)?;
    }
    let mut busy = None;
    let removed = wait::poll_until(wait::TIMEOUT, || match std::fs::remove_dir(dir) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(err) if err.raw_os_error() == Some(libc::EBUSY) => {
            busy = Some(err);
            Ok(false)
        }
        Err(source) => Err(Error::RemoveDir {
            path: dir.to_owned(),
            source,
        }),
    })?;
    match (removed, busy) {
        (true, _) => Ok(()),
        (false, source) => Err(Error::RemoveDir {
            path: dir.to_owned(),
            source: source.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EBUSY)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::CpuQuota;

    /// Hierarchies as plain directories under a tempdir: enough to test which directories are
    /// made and removed. Control files are absent, so anything writing one fails.
    struct Fake {
        dir: tempfile::TempDir,
    }

    impl Fake {
        /// Pure v1 with cpu and cpuacct co-mounted, plus memory, pids and freezer.
        fn v1() -> (Fake, Layout) {
            let fake = Fake {
                dir: tempfile::tempdir().unwrap(),
            };
            let mut mountinfo = String::new();
            for (i, (dir, options)) in [
                ("cpu,cpuacct", "rw,cpu,cpuacct"),
                ("memory", "rw,memory"),
                ("pids", "rw,pids"),
                ("freezer", "rw,freezer"),
            ]
            .into_iter()
            .enumerate()
            {
                std::fs::create_dir(fake.path(dir)).unwrap();
                mountinfo += &format!(
                    "{i} 1 0:{i} / {} rw - cgroup cgroup {options}\n",
                    fake.path(dir).display()
                );
            }
            let layout = Layout::from_mountinfo(&mountinfo).unwrap();
            (fake, layout)
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }
    }

    #[test]
    fn create_joins_the_statistics_hierarchies_and_remove_clears_them() {
        let (fake, layout) = Fake::v1();
        let cgroup = Cgroup::create(&layout, "job", &Limits::default()).unwrap();
        // cpu is not needed, but cpuacct is and shares its hierarchy: one directory for both.
        assert_eq!(
            cgroup.paths(),
            [
                "memory/capsule/job",
                "cpu,cpuacct/capsule/job",
                "pids/capsule/job",
                "freezer/capsule/job"
            ]
            .map(|p| fake.path(p))
        );
        assert_eq!(Cgroup::list(&layout).unwrap(), ["job"]);
        assert_eq!(cgroup.pids().unwrap(), Vec::<i32>::new());
        cgroup.remove().unwrap();
        assert!(!fake.path("memory/capsule/job").exists());
        // The parents stay: another launch may be using them.
        assert!(fake.path("memory/capsule").is_dir());
        assert_eq!(Cgroup::list(&layout).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn failed_create_removes_what_it_made() {
        let (fake, layout) = Fake::v1();
        let limits = Limits {
            cpu_quota: Some(CpuQuota {
                quota_us: 50_000,
                period_us: 100_000,
            }),
            ..Limits::default()
        };
        let err = Cgroup::create(&layout, "job", &limits).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("failed to write \"100000\" to "), "{msg}");
        assert!(
            msg.ends_with(
                "cpu,cpuacct/capsule/job/cpu.cfs_period_us: No such file or directory (os error 2)"
            ),
            "{msg}"
        );
        for hierarchy in ["cpu,cpuacct", "memory", "pids", "freezer"] {
            assert!(
                !fake.path(&format!("{hierarchy}/capsule/job")).exists(),
                "{hierarchy}"
            );
        }
        assert_eq!(Cgroup::list(&layout).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn existing_name_is_refused_and_left_alone() {
        let (fake, layout) = Fake::v1();
        std::fs::create_dir_all(fake.path("pids/capsule/job")).unwrap();
        let err = Cgroup::create(&layout, "job", &Limits::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cgroup {} already exists",
                fake.path("pids/capsule/job").display()
            )
        );
        assert!(fake.path("pids/capsule/job").is_dir());
        // Directories made before the clash are gone again.
        assert!(!fake.path("memory/capsule/job").exists());
    }

    #[test]
    fn limits_the_host_cannot_give_create_nothing() {
        let (fake, layout) = Fake::v1();
        let limits = Limits {
            io_weight: Some(100),
            memory: Some(1),
            ..Limits::default()
        };
        let Error::InvalidLimits(problems) = Cgroup::create(&layout, "job", &limits).unwrap_err()
        else {
            panic!("expected InvalidLimits");
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(!fake.path("memory/capsule").exists());
    }

    #[test]
    fn open_finds_leftovers_in_any_hierarchy() {
        let (fake, layout) = Fake::v1();
        assert!(Cgroup::open(&layout, "crashed").unwrap().is_none());
        std::fs::create_dir_all(fake.path("freezer/capsule/crashed/nested")).unwrap();
        std::fs::create_dir_all(fake.path("memory/capsule/other")).unwrap();
        let cgroup = Cgroup::open(&layout, "crashed").unwrap().unwrap();
        assert_eq!(cgroup.name(), "crashed");
        assert_eq!(cgroup.paths(), [fake.path("freezer/capsule/crashed")]);
        assert_eq!(Cgroup::list(&layout).unwrap(), ["crashed", "other"]);
        // Descendants go first; a second remove finds nothing to do.
        cgroup.remove().unwrap();
        assert!(!fake.path("freezer/capsule/crashed").exists());
        Cgroup {
            name: "crashed".into(),
            v1: BTreeMap::new(),
            v2: Some(fake.path("gone")),
            unified_controllers: true,
        }
        .remove()
        .unwrap();
    }

    #[test]
    fn names_must_be_one_directory() {
        let (_fake, layout) = Fake::v1();
        for (name, reason) in [
            ("", "must not be empty"),
            ("..", "must not be . or .."),
            ("a/b", "must not contain /"),
            ("a\nb", "must not contain NUL or newline"),
        ] {
            let err = Cgroup::create(&layout, name, &Limits::default()).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("invalid cgroup name {name:?}: {reason}")
            );
        }
        assert!(Cgroup::open(&layout, "../../etc").is_err());
    }

    #[test]
    fn pids_skip_zero_and_include_descendants() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.procs"), "0\n12\n").unwrap();
        std::fs::create_dir(dir.path().join("child")).unwrap();
        std::fs::write(dir.path().join("child/cgroup.procs"), "7\n12\n").unwrap();
        let mut pids = BTreeSet::new();
        procs_below(dir.path(), &mut pids).unwrap();
        assert_eq!(pids.into_iter().collect::<Vec<_>>(), [7, 12]);
    }
}
