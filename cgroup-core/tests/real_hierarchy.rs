//! Tests on this host's real cgroup hierarchy. They need root (and some a hybrid host, or
//! cpuset and io controllers); without it they print what they need and pass, unless
//! CI=true, where skipping would hide a broken setup (`tests::require`).
//!
//! Every test uses its own name (`test-<pid>-<case>`) and removes its cgroup on every path,
//! panics included, so nothing of ours is left under `capsule/`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cgroup_core::{Cgroup, Controller, CpuQuota, Error, Layout, Limits, PARENT, detect};

fn have_root() -> bool {
    tests::require(
        nix::unistd::geteuid().is_root(),
        "root (it creates cgroups)",
    )
}

fn name(case: &str) -> String {
    format!("test-{}-{case}", std::process::id())
}

/// Every directory a cgroup called `name` could have on this host.
fn all_dirs(layout: &Layout, name: &str) -> Vec<PathBuf> {
    let mut mounts: Vec<&Path> = layout.v1().map(|v1| v1.mount_points()).unwrap_or_default();
    mounts.extend(layout.v2().map(|v2| v2.path()));
    mounts
        .into_iter()
        .map(|m| m.join(PARENT).join(name))
        .collect()
}

fn assert_gone(layout: &Layout, name: &str) {
    for dir in all_dirs(layout, name) {
        assert!(!dir.exists(), "{} is left behind", dir.display());
    }
    assert!(!Cgroup::list(layout).unwrap().iter().any(|n| n == name));
}

/// Removes the cgroup if a test panics before removing it itself.
struct Guard(Option<Cgroup>);

impl Guard {
    fn get(&self) -> &Cgroup {
        self.0.as_ref().expect("cgroup still there")
    }

    fn remove(mut self) -> Result<(), Error> {
        self.0.take().expect("cgroup still there").remove()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(cgroup) = self.0.take() {
            let _ = cgroup.remove();
        }
    }
}

/// Kills and reaps the child if a test panics while it runs.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn pid(&self) -> i32 {
        i32::try_from(self.0.id()).expect("pid fits in i32")
    }
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// The directory holding `file` among the cgroup's directories.
fn dir_with(cgroup: &Cgroup, file: &str) -> PathBuf {
    cgroup
        .paths()
        .into_iter()
        .find(|dir| dir.join(file).exists())
        .unwrap_or_else(|| panic!("no {file} in {:?}", cgroup.paths()))
}

#[test]
fn create_writes_the_limits() {
    if !have_root() {
        return;
    }
    let layout = detect().unwrap();
    let name = name("limits");
    let limits = Limits {
        memory: Some(64 << 20),
        pids: Some(32),
        cpu_quota: Some(CpuQuota {
            quota_us: 50_000,
            period_us: 100_000,
        }),
        cpu_shares: Some(512),
        ..Limits::default()
    };
    let cgroup = Guard(Some(Cgroup::create(&layout, &name, &limits).unwrap()));
    match &layout {
        Layout::V1(v1) | Layout::Hybrid(v1, _) => {
            let dir = |c: Controller| v1.mount(c).unwrap().join(PARENT).join(&name);
            assert_eq!(
                read(dir(Controller::Memory).join("memory.limit_in_bytes")),
                "67108864"
            );
            assert_eq!(read(dir(Controller::Pids).join("pids.max")), "32");
            assert_eq!(read(dir(Controller::Cpu).join("cpu.cfs_quota_us")), "50000");
            assert_eq!(
                read(dir(Controller::Cpu).join("cpu.cfs_period_us")),
                "100000"
            );
            assert_eq!(read(dir(Controller::Cpu).join("cpu.shares")), "512");
            for always in [Controller::Cpuacct, Controller::Freezer] {
                assert!(
                    dir(always).is_dir(),
                    "{always} joined for stats and freezing"
                );
            }
            if let Layout::Hybrid(_, v2) = &layout {
                assert!(v2.path().join(PARENT).join(&name).is_dir());
            }
        }
        Layout::V2(v2) => {
            let dir = v2.path().join(PARENT).join(&name);
            assert_eq!(read(dir.join("memory.max")), "67108864");
            assert_eq!(read(dir.join("pids.max")), "32");
            assert_eq!(read(dir.join("cpu.max")), "50000 100000");
            // runc's conversion of 512 shares.
            assert_eq!(read(dir.join("cpu.weight")), "20");
        }
    }
    assert_eq!(
        cgroup.get().paths().len(),
        all_dirs(&layout, &name)
            .iter()
            .filter(|d| d.is_dir())
            .count()
    );
    cgroup.remove().unwrap();
    assert_gone(&layout, &name);
}

#[test]
fn a_real_process_from_add_to_kill() {
    if !have_root() {
        return;
    }
    let layout = detect().unwrap();
    let limits = Limits {
        memory: Some(128 << 20),
        pids: Some(16),
        ..Limits::default()
    };
    lifecycle(&layout, &name("lifecycle"), &limits);
}

/// On a hybrid host, the v1 hierarchies alone are a pure v1 host: freezing through
/// `freezer.state` and killing by freeze, signal, thaw.
#[test]
fn pure_v1_view_of_a_hybrid_host() {
    if !have_root() {
        return;
    }
    let Some(layout) = view(|fs_type| fs_type == "cgroup") else {
        tests::require(
            false,
            "a hybrid cgroup host (v1 controllers beside cgroup2)",
        );
        return;
    };
    assert_eq!(layout.describe(), "v1");
    let limits = Limits {
        memory: Some(128 << 20),
        pids: Some(16),
        ..Limits::default()
    };
    lifecycle(&layout, &name("v1-view"), &limits);
}

/// On a hybrid host, the unified mount alone is a v2 host whose root gives no controllers: no
/// limits, but membership, `cgroup.freeze`, `cgroup.kill` and `cpu.stat` all work.
#[test]
fn v2_view_without_controllers() {
    if !have_root() {
        return;
    }
    let Some(layout) = view(|fs_type| fs_type == "cgroup2") else {
        tests::require(
            false,
            "a hybrid cgroup host (v1 controllers beside cgroup2)",
        );
        return;
    };
    assert_eq!(layout.describe(), "v2");
    lifecycle(&layout, &name("v2-view"), &Limits::default());
}

/// This host's layout restricted to mounts of one filesystem type, if the host is hybrid.
fn view(keep: impl Fn(&str) -> bool) -> Option<Layout> {
    if detect().unwrap().describe() != "hybrid" {
        return None;
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let kept: String = mountinfo
        .lines()
        .filter(|line| {
            line.split(" - ")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .is_some_and(&keep)
        })
        .map(|line| format!("{line}\n"))
        .collect();
    Layout::from_mountinfo(&kept)
}

/// Create, add a working process, read stats, freeze, thaw, kill, remove.
fn lifecycle(layout: &Layout, name: &str, limits: &Limits) {
    let cgroup = Guard(Some(Cgroup::create(layout, name, limits).unwrap()));

    // The shell waits for a line so it does its work only once inside the cgroup: it builds a
    // 4 MB string (memory and CPU time charged to us), reports, then sleeps.
    let script =
        "read go; x=$(head -c 4000000 /dev/zero | tr '\\0' a); echo \"ready ${#x}\"; exec sleep 30";
    let mut child = Proc(
        Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = child.pid();
    cgroup.get().add_task(pid).unwrap();
    assert_eq!(cgroup.get().pids().unwrap(), [pid]);

    writeln!(child.0.stdin.as_mut().unwrap(), "go").unwrap();
    let mut line = String::new();
    BufReader::new(child.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready 4000000");

    let stats = cgroup.get().stats().unwrap();
    assert!(stats.cpu_usage_ns.unwrap() > 0, "{stats:?}");
    if limits.memory.is_some() {
        assert!(stats.memory_peak_bytes.unwrap() >= 4_000_000, "{stats:?}");
    }
    if limits.pids.is_some() {
        assert_eq!(stats.pids_current, Some(1), "{stats:?}");
        // The shell, head and tr ran at once.
        if let Some(peak) = stats.pids_peak {
            assert!(peak >= 3, "{stats:?}");
        }
    }
    assert_eq!(stats.oom_kills, 0);

    cgroup.get().freeze().unwrap();
    let v2_freezer = cgroup
        .get()
        .paths()
        .into_iter()
        .find(|dir| dir.join("cgroup.freeze").exists());
    match &v2_freezer {
        Some(dir) => assert!(read(dir.join("cgroup.events")).contains("frozen 1")),
        None => assert_eq!(
            read(dir_with(cgroup.get(), "freezer.state").join("freezer.state")),
            "FROZEN"
        ),
    }
    cgroup.get().thaw().unwrap();
    match &v2_freezer {
        Some(dir) => assert!(read(dir.join("cgroup.events")).contains("frozen 0")),
        None => assert_eq!(
            read(dir_with(cgroup.get(), "freezer.state").join("freezer.state")),
            "THAWED"
        ),
    }

    cgroup.get().kill().unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert_eq!(cgroup.get().pids().unwrap(), Vec::<i32>::new());

    cgroup.remove().unwrap();
    assert_gone(layout, name);
}

#[test]
fn remove_kills_what_is_left_even_unreaped() {
    if !have_root() {
        return;
    }
    let layout = detect().unwrap();
    let name = name("leftover");
    let cgroup = Guard(Some(
        Cgroup::create(&layout, &name, &Limits::default()).unwrap(),
    ));
    let mut child = Proc(Command::new("sleep").arg("30").spawn().unwrap());
    cgroup.get().add_task(child.pid()).unwrap();
    let start = Instant::now();
    // The child is killed but not reaped until after remove: a zombie must not block rmdir.
    cgroup.remove().unwrap();
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(child.0.wait().unwrap().signal(), Some(libc::SIGKILL));
    assert_gone(&layout, &name);
}

#[test]
fn validate_reports_every_problem_and_create_makes_nothing() {
    if !have_root() {
        return;
    }
    let layout = detect().unwrap();
    let name = name("invalid");
    let limits = Limits {
        memory: Some(1 << 20),
        cpuset_cpus: Some("999".into()),
        ..Limits::default()
    };
    let problems = layout.validate(&limits).unwrap_err();
    let messages: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert!(
        messages.contains(
            &"memory=1048576: memory limit 1MiB is below the minimum the kernel accepts, 6MiB"
                .to_owned()
        ),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("cpuset_cpus=999: CPU 999 not online (online: ")),
        "{messages:?}"
    );
    match Cgroup::create(&layout, &name, &limits) {
        Err(Error::InvalidLimits(again)) => assert_eq!(again, problems),
        other => panic!("expected InvalidLimits, got {other:?}"),
    }
    assert_gone(&layout, &name);
}

#[test]
fn open_and_list_find_a_crashed_launch() {
    if !have_root() {
        return;
    }
    let layout = detect().unwrap();
    let name = name("crashed");
    let created = Cgroup::create(
        &layout,
        &name,
        &Limits {
            pids: Some(8),
            ..Limits::default()
        },
    )
    .unwrap();
    let paths = created.paths();
    // The launcher "crashes": its handle is gone, the directories stay.
    drop(created);
    assert!(Cgroup::list(&layout).unwrap().contains(&name));
    let reopened = Guard(Cgroup::open(&layout, &name).unwrap());
    let mut reopened_paths = reopened.get().paths();
    reopened_paths.sort();
    let mut expected = paths;
    expected.sort();
    assert_eq!(reopened_paths, expected);

    // The name is taken until removed, and the clash leaves the original intact.
    match Cgroup::create(&layout, &name, &Limits::default()) {
        Err(Error::AlreadyExists { .. }) => {}
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert!(expected.iter().all(|dir| dir.is_dir()));

    reopened.remove().unwrap();
    assert!(Cgroup::open(&layout, &name).unwrap().is_none());
    assert_gone(&layout, &name);
}

#[test]
fn cpuset_and_io_weight_accept_a_task() {
    if !have_root() {
        return;
    }
    let layout = detect().unwrap();
    let name = name("cpuset");
    let limits = Limits {
        cpuset_cpus: Some("0".into()),
        cpuset_mems: Some("0".into()),
        io_weight: Some(500),
        ..Limits::default()
    };
    if let Err(problems) = layout.validate(&limits) {
        tests::require(
            false,
            &format!("a host that gives cpuset and io: {problems:?}"),
        );
        return;
    }
    let cgroup = match Cgroup::create(&layout, &name, &limits) {
        Ok(cgroup) => Guard(Some(cgroup)),
        Err(err @ Error::Unavailable { .. }) => {
            assert_gone(&layout, &name);
            tests::require(false, &format!("a host that gives cpuset and io: {err}"));
            return;
        }
        Err(err) => panic!("{err}"),
    };
    let cpuset = dir_with(cgroup.get(), "cpuset.cpus");
    assert_eq!(read(cpuset.join("cpuset.cpus")), "0");
    assert_eq!(read(cpuset.join("cpuset.mems")), "0");
    let weight = [
        "blkio.weight",
        "blkio.bfq.weight",
        "io.weight",
        "io.bfq.weight",
    ]
    .into_iter()
    .find_map(|file| {
        cgroup
            .get()
            .paths()
            .into_iter()
            .map(|d| d.join(file))
            .find(|f| f.exists())
    })
    .expect("a weight file");
    assert!(read(weight.clone()).contains("500"), "{}", weight.display());

    // v1 cpuset refuses tasks until cpus and mems are set; they were copied from the parent.
    let child = Proc(Command::new("sleep").arg("30").spawn().unwrap());
    cgroup.get().add_task(child.pid()).unwrap();
    let allowed = std::fs::read_to_string(format!("/proc/{}/status", child.pid())).unwrap();
    assert!(
        allowed
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Cpus_allowed_list:", "0"]),
        "{allowed}"
    );
    cgroup.remove().unwrap();
    drop(child);
    assert_gone(&layout, &name);
}
