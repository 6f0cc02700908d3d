//! `capsule run --isolation container` against real namespaces and cgroups. Each test fails
//! if the feature it names breaks, and every launch is followed by a check that nothing
//! (cgroup, state directory, mount, process) was left behind.

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tests::{assert_nothing_left, elf, env_or_skip, leftovers};

#[test]
fn exit_status_is_the_workloads() {
    let env = env_or_skip!();
    assert_eq!(env.run(&[], &["true"]).code, 0);
    assert_eq!(env.run(&[], &["sh", "-c", "exit 3"]).code, 3);
    let killed = env.run(&[], &["sh", "-c", "kill -9 $$"]);
    assert_eq!(killed.code, 137, "{killed:?}");
    assert_eq!(killed.outcome["signal"], 9);
    // Without the init the command is PID 1 and its status reaches capsule directly.
    assert_eq!(env.run(&["--no-init"], &["sh", "-c", "exit 5"]).code, 5);
}

#[test]
fn runtime_failures_exit_125_126_127_with_a_sentence() {
    let env = env_or_skip!();
    let missing = env.run(&[], &["no-such-command"]);
    assert_eq!(missing.code, 127, "{missing:?}");
    assert!(
        missing
            .stderr
            .contains("command \"no-such-command\" not found"),
        "{}",
        missing.stderr
    );
    let not_exec = env.run(&[], &["/etc/passwd"]);
    assert_eq!(not_exec.code, 126, "{not_exec:?}");
    assert!(
        not_exec.stderr.contains("cannot be executed"),
        "{}",
        not_exec.stderr
    );
    let refused = env.run(&["--memory", "1M"], &["true"]);
    assert_eq!(refused.code, 125, "{refused:?}");
    assert!(
        refused.stderr.contains("resources.memory"),
        "{}",
        refused.stderr
    );
}

#[test]
fn bad_input_is_refused_before_anything_is_created() {
    let env = env_or_skip!();
    let no_rootfs = env.run_raw(
        &["--rootfs".into(), "/nonexistent/rootfs".into()],
        &["true"],
    );
    assert_eq!(no_rootfs.code, 125);
    assert!(
        no_rootfs.stderr.contains("root.path /nonexistent/rootfs"),
        "{}",
        no_rootfs.stderr
    );
    let user = env.run(&["--user", "nosuchuser"], &["true"]);
    assert_eq!(user.code, 125);
    assert!(
        user.stderr.contains("unknown user \"nosuchuser\""),
        "{}",
        user.stderr
    );
    // Every problem is reported at once.
    let limits = env.run(&["--cpuset-cpus", "999", "--memory", "1M"], &["true"]);
    assert_eq!(limits.code, 125);
    assert!(limits.stderr.contains("cpuset"), "{}", limits.stderr);
    assert!(limits.stderr.contains("memory"), "{}", limits.stderr);
}

#[test]
fn pid_namespace_shows_only_the_containers_processes() {
    let env = env_or_skip!();
    let with_init = env.run(&[], &["sh", "-c", "echo $$; ls /proc | grep -c '^[0-9]'"]);
    let lines: Vec<&str> = with_init.stdout.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&"2"),
        "the init is PID 1, the command PID 2: {with_init:?}"
    );
    let visible: u32 = lines[1].parse().unwrap();
    assert!(
        visible <= 4,
        "only init, sh, ls and grep should be visible, saw {visible}"
    );
    let without_init = env.run(&["--no-init"], &["sh", "-c", "echo $$"]);
    assert_eq!(without_init.stdout.trim(), "1");
}

#[test]
fn hostname_is_isolated() {
    let env = env_or_skip!();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let launch = env.run(&["--hostname", "box-1"], &["hostname"]);
    assert_eq!(launch.stdout.trim(), "box-1");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host
    );
}

#[test]
fn network_namespace_has_only_loopback() {
    let env = env_or_skip!();
    let launch = env.run(&[], &["ls", "/sys/class/net"]);
    assert_eq!(launch.stdout.trim(), "lo", "{launch:?}");
}

#[test]
fn capabilities_match_the_plan() {
    let env = env_or_skip!();
    let default = env.run(&[], &["grep", "Cap", "/proc/self/status"]);
    // The OCI default set, as docker reports it.
    assert!(
        default.stdout.contains("CapEff:\t00000000a80425fb"),
        "{}",
        default.stdout
    );
    assert!(
        default.stdout.contains("CapBnd:\t00000000a80425fb"),
        "{}",
        default.stdout
    );
    let custom = env.run(
        &["--cap-drop", "ALL", "--cap-add", "NET_ADMIN"],
        &["grep", "Cap", "/proc/self/status"],
    );
    assert!(
        custom.stdout.contains("CapEff:\t0000000000001000"),
        "{}",
        custom.stdout
    );
    assert!(
        custom.stdout.contains("CapBnd:\t0000000000001000"),
        "{}",
        custom.stdout
    );
    let user = env.run(
        &["--user", "user"],
        &["grep", "CapEff", "/proc/self/status"],
    );
    assert!(
        user.stdout.contains("CapEff:\t0000000000000000"),
        "a non-root user keeps no effective caps: {}",
        user.stdout
    );
}

#[test]
fn seccomp_denies_syscalls_outside_the_profile() {
    let env = env_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let probe = dir.path().join("keyctl");
    std::fs::write(&probe, elf::keyctl_probe()).unwrap();
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let volume = format!("{}:/probe:ro", dir.path().display());
    let confined = env.run(&["-v", &volume], &["/probe/keyctl"]);
    assert_eq!(
        confined.code, 1,
        "keyctl must fail with EPERM: {confined:?}"
    );
    let unconfined = env.run(
        &["-v", &volume, "--seccomp", "unconfined"],
        &["/probe/keyctl"],
    );
    assert_eq!(
        unconfined.code, 0,
        "keyctl must not fail with EPERM: {unconfined:?}"
    );
}

#[test]
fn memory_limit_oom_kills_and_the_outcome_says_so() {
    let env = env_or_skip!();
    let launch = env.run(
        &["--memory", "32M", "--memory-swap", "32M"],
        &["sh", "-c", "head -c 67108864 /dev/zero | tail > /dev/null"],
    );
    assert_eq!(launch.outcome["oomKilled"], true, "{launch:?}");
    assert_eq!(launch.outcome["violations"][0], "memory");
    let fits = env.run(
        &["--memory", "32M", "--memory-swap", "32M"],
        &["sh", "-c", "head -c 8388608 /dev/zero | tail > /dev/null"],
    );
    assert_eq!(fits.code, 0, "{fits:?}");
    assert_eq!(fits.outcome["oomKilled"], false);
    assert!(
        fits.outcome["peaks"]["memoryBytes"].as_u64().unwrap() > 8 << 20,
        "{:?}",
        fits.outcome
    );
}

#[test]
fn pids_limit_makes_fork_fail() {
    let env = env_or_skip!();
    let script = "for i in $(seq 1 32); do sleep 2 & done; wait";
    let limited = env.run(&["--pids", "16"], &["sh", "-c", script]);
    assert!(limited.stderr.contains("can't fork"), "{limited:?}");
    let free = env.run(
        &[],
        &[
            "sh",
            "-c",
            "for i in $(seq 1 32); do sleep 0.1 & done; wait",
        ],
    );
    assert!(!free.stderr.contains("can't fork"), "{free:?}");
}

#[test]
fn overlay_writes_do_not_reach_the_source_directory() {
    let env = env_or_skip!();
    let launch = env.run(
        &[],
        &[
            "sh",
            "-c",
            "echo hi > /written && rm /bin/true && cat /written",
        ],
    );
    assert_eq!(launch.stdout.trim(), "hi", "{launch:?}");
    assert!(!env.rootfs.join("written").exists());
    assert!(env.rootfs.join("bin/true").exists());
    let readonly = env.run(&["--read-only"], &["sh", "-c", "echo hi > /written"]);
    assert_ne!(readonly.code, 0);
    assert!(
        readonly.stderr.contains("Read-only file system"),
        "{readonly:?}"
    );
}

#[test]
fn filesystem_matches_the_oci_defaults() {
    let env = env_or_skip!();
    let dev = env.run(&[], &["ls", "/dev"]);
    for node in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue", "ptmx",
    ] {
        assert!(
            dev.stdout.split_whitespace().any(|n| n == node),
            "/dev lacks {node}: {}",
            dev.stdout
        );
    }
    let masked = env.run(
        &[],
        &["sh", "-c", "wc -c < /proc/keys; ls /sys/firmware | wc -l"],
    );
    assert_eq!(
        masked.stdout.split_whitespace().collect::<Vec<_>>(),
        ["0", "0"],
        "{masked:?}"
    );
    let ro = env.run(&[], &["sh", "-c", "echo 1 > /proc/sys/kernel/domainname"]);
    assert!(ro.stderr.contains("Read-only file system"), "{ro:?}");
    let sys = env.run(&["--cap-add", "SYS_ADMIN"], &["sh", "-c", "touch /sys/x"]);
    assert!(sys.stderr.contains("Read-only file system"), "{sys:?}");
}

#[test]
fn user_env_cwd_and_rlimits_reach_the_process() {
    let env = env_or_skip!();
    let launch = env.run(
        &[
            "--user",
            "user",
            "-e",
            "GREETING=hi",
            "-w",
            "/tmp",
            "--ulimit",
            "nofile=100:200",
        ],
        &["sh", "-c", "id; echo $GREETING; pwd; ulimit -n; ulimit -Hn"],
    );
    let lines: Vec<&str> = launch.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{launch:?}");
    assert!(
        lines[0].starts_with("uid=1000(user) gid=1000(user)"),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains("10(wheel)"),
        "supplementary groups from /etc/group: {}",
        lines[0]
    );
    assert_eq!(&lines[1..], ["hi", "/tmp", "100", "200"]);
}

#[test]
fn zombies_are_reaped_by_the_init() {
    let env = env_or_skip!();
    // The inner sh exits at once, orphaning a short sleep that becomes the init's zombie.
    let launch = env.run(
        &[],
        &[
            "sh",
            "-c",
            "sh -c 'sleep 0.1 &'; sleep 0.5; grep -l '^State:.*Z' /proc/[0-9]*/status | wc -l",
        ],
    );
    assert_eq!(launch.stdout.trim(), "0", "{launch:?}");
}

/// Starts `capsule run FLAGS -- sleep 30` in the background and returns once its workload
/// runs, so a signal arrives after set-up.
fn start_sleeping_launch(env: &tests::Env, flags: &[&str]) -> std::process::Child {
    let child = env
        .command()
        .arg("run")
        .args(flags)
        .arg("--rootfs")
        .arg(&env.rootfs)
        .args(["--", "sleep", "30"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_launch();
    child
}

/// Waits until a launch's workload runs in its cgroup.
fn wait_for_launch() {
    let deadline = Instant::now() + Duration::from_secs(10);
    while leftovers().iter().all(|l| !l.starts_with("process")) {
        assert!(Instant::now() < deadline, "the launch never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_to_capsule_reaches_the_workload() {
    let env = env_or_skip!();
    let mut child = start_sleeping_launch(&env, &[]);
    // SAFETY: kill(2) on the pid of the child we just spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
    assert_nothing_left();
}

#[test]
fn gc_cleans_up_after_capsule_is_killed() {
    let env = env_or_skip!();
    let mut child = start_sleeping_launch(&env, &["--memory", "64M"]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !leftovers().is_empty(),
        "a killed capsule leaves its state for gc"
    );
    let gc = env.command().arg("gc").output().unwrap();
    assert!(gc.status.success(), "{gc:?}");
    assert!(String::from_utf8_lossy(&gc.stdout).contains("removed launch"));
    assert_nothing_left();
}

#[test]
fn rootless_run_as_an_unprivileged_user() {
    let env = env_or_skip!();
    use std::os::unix::process::CommandExt;
    let output = env
        .command()
        .args(["run", "--rootfs"])
        .arg(&env.rootfs)
        // With only the caller's id mapped, the image's root-owned files cannot be copied up
        // into the overlay (EOVERFLOW), so scratch writes go to a tmpfs.
        .args([
            "--tmpfs",
            "/scratch",
            "--",
            "sh",
            "-c",
            "id -u; cat /proc/self/uid_map; echo x > /scratch/w && cat /scratch/w",
        ])
        .uid(65534)
        .gid(65534)
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    let words: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(
        words,
        ["0", "0", "65534", "1", "x"],
        "root inside is nobody outside: {stdout}"
    );
    let limits = env
        .command()
        .args(["run", "--memory", "64M", "--rootfs"])
        .arg(&env.rootfs)
        .args(["--", "true"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_eq!(limits.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&limits.stderr).contains("delegated cgroup v2"));
    assert_nothing_left();
}

#[test]
fn uid_and_gid_maps_put_root_inside_on_a_host_range() {
    let env = env_or_skip!();
    let maps = ["--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536"];
    let mut flags = vec!["--read-only"];
    flags.extend(maps);
    let launch = env.run(
        &flags,
        &[
            "sh",
            "-c",
            "cat /proc/self/uid_map /proc/self/gid_map; id -u",
        ],
    );
    let words: Vec<&str> = launch.stdout.split_whitespace().collect();
    assert_eq!(
        words,
        ["0", "100000", "65536", "0", "100000", "65536", "0"],
        "{launch:?}"
    );
    let unmapped = env.run(
        &[
            "--uidmap",
            "0:100000:1",
            "--gidmap",
            "0:100000:1",
            "--user",
            "user",
        ],
        &["true"],
    );
    assert_eq!(unmapped.code, 125);
    assert!(
        unmapped.stderr.contains("not mapped by userNamespace"),
        "{}",
        unmapped.stderr
    );
}

/// `--cap-add ALL` gives every capability capsule itself may hold (runc's "unknown or
/// unavailable capabilities" are left out), not a capset(2) failure where the host's own
/// bounding set lacks one.
#[test]
fn cap_add_all_gives_what_capsule_may_hold() {
    let env = env_or_skip!();
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    let own = own
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim()
        .to_owned();
    let launch = env.run(
        &["--cap-add", "ALL", "--seccomp", "unconfined"],
        &["sh", "-c", "grep CapEff /proc/self/status"],
    );
    assert_eq!(launch.code, 0, "{launch:?}");
    assert_eq!(
        launch.stdout.trim(),
        format!("CapEff:\t{own}"),
        "{launch:?}"
    );
}

/// Only the OCI default devices open: a node the container makes for a host device (here
/// `/dev/kvm`, 10:232, with the default `CAP_MKNOD`) is refused by the devices cgroup, as runc
/// and crun refuse it, while `/dev/null` and `/dev/zero` work.
#[test]
fn host_devices_do_not_open_in_the_container() {
    let env = env_or_skip!();
    if !tests::require(
        std::path::Path::new("/sys/fs/cgroup/devices").is_dir(),
        "a cgroup v1 devices controller (v2 device filtering is not written yet)",
    ) {
        return;
    }
    let script = "mknod /dev/k c 10 232; for d in /dev/k /dev/null /dev/zero; do (exec 3<>$d && echo $d) 2>/dev/null || echo $d refused; done";
    let launch = env.run(&[], &["sh", "-c", script]);
    assert_eq!(
        launch.stdout, "/dev/k refused\n/dev/null\n/dev/zero\n",
        "{launch:?}"
    );
}

/// The root is idmapped through the container's user namespace: the image's files, owned by
/// host root, are root's inside, and a writable root is writable by the mapped root.
#[test]
fn the_image_keeps_its_owners_in_a_user_namespace() {
    let env = env_or_skip!();
    let maps = ["--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536"];
    let script = "stat -c '%u %g' /bin/busybox /root; echo x > /new; chown 1000:1000 /new; stat -c '%u %g' /new";
    let writable = env.run(&maps, &["sh", "-c", script]);
    assert_eq!(writable.stdout, "0 0\n0 0\n1000 1000\n", "{writable:?}");
    let mut flags = vec!["--read-only"];
    flags.extend(maps);
    let readonly = env.run(&flags, &["stat", "-c", "%u %g", "/bin/busybox"]);
    assert_eq!(readonly.stdout, "0 0\n", "{readonly:?}");
}

#[test]
fn a_saved_plan_runs_the_same_launch() {
    let env = env_or_skip!();
    let plan = env
        .command()
        .args([
            "plan",
            "--hostname",
            "planned",
            "--memory",
            "64M",
            "--rootfs",
        ])
        .arg(&env.rootfs)
        .args(["--", "sh", "-c", "hostname; exit 4"])
        .output()
        .unwrap();
    assert!(plan.status.success(), "{plan:?}");
    let json: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(json["resources"]["memory"], 64 << 20);
    assert_eq!(json["process"]["args"][2], "hostname; exit 4");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.json");
    std::fs::write(&path, &plan.stdout).unwrap();
    let launch = env.run_raw(&["--plan".into(), path.display().to_string()], &[]);
    assert_eq!(launch.code, 4, "{launch:?}");
    assert_eq!(launch.stdout.trim(), "planned");
    std::fs::write(&path, b"{\"isolation\": \"container\", \"bogus\": 1}").unwrap();
    let bad = env.run_raw(&["--plan".into(), path.display().to_string()], &[]);
    assert_eq!(bad.code, 125);
    assert!(
        bad.stderr.contains("unknown field `bogus`"),
        "{}",
        bad.stderr
    );
}

#[test]
fn cgroup_filesystem_shows_the_containers_own_limits_read_only() {
    let env = env_or_skip!();
    let script = "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; \
                  cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; \
                  touch /sys/fs/cgroup/x";
    let launch = env.run(&["--pids", "16", "--memory", "64M"], &["sh", "-c", script]);
    let words: Vec<&str> = launch.stdout.split_whitespace().collect();
    assert_eq!(words, ["16", "67108864"], "{launch:?}");
    assert!(
        launch.stderr.contains("Read-only file system"),
        "{launch:?}"
    );
}

#[test]
fn a_saved_plan_refuses_launch_flags_and_usage_errors_exit_125() {
    let env = env_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.json");
    let plan = env
        .command()
        .args(["plan", "--rootfs"])
        .arg(&env.rootfs)
        .args(["--", "true"])
        .output()
        .unwrap();
    std::fs::write(&path, &plan.stdout).unwrap();
    let mixed = env
        .command()
        .args(["run", "--memory", "1G", "--plan"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(mixed.status.code(), Some(125), "{mixed:?}");
    assert!(String::from_utf8_lossy(&mixed.stderr).contains("cannot be used with"));
    let unknown = env
        .command()
        .args(["run", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(125));
    assert_eq!(
        env.command().arg("--help").output().unwrap().status.code(),
        Some(0)
    );
}

#[test]
fn microvm_and_kata_on_pvm_are_refused_with_the_reason() {
    let env = env_or_skip!();
    // On a PVM host the reason is PVM itself, and the way out is the nested lab (elsewhere
    // the guests boot: tests/microvm.rs, tests/kata.rs).
    if !std::path::Path::new("/sys/module/kvm_pvm").exists() {
        return;
    }
    for isolation in ["microvm", "kata"] {
        let launch = env.run(&["--isolation", isolation], &["true"]);
        assert_eq!(launch.code, 125, "{launch:?}");
        assert!(
            launch
                .stderr
                .contains(&format!("isolation \"{isolation}\" cannot boot"))
                && launch.stderr.contains("pvm")
                && launch.stderr.contains("cargo xtask lab"),
            "{}",
            launch.stderr
        );
    }
}
