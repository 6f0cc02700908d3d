//! `capsule run --isolation kata`: the container suite's assertions (tests/container.rs) for a
//! container that capsule-init builds inside a microVM with ns-core and cgroup-core, plus what
//! the VM adds: its size from the Plan, its own kernel, nothing left on the host.
//!
//! A stock kernel cannot boot on a PVM host (this project's hosts), so these are `#[ignore]`d
//! there and `cargo xtask lab` runs them on the lab's nested hardware KVM, with `CAPSULE_BIN`,
//! `CAPSULE_TEST_ROOTFS` and `CAPSULE_GUEST_DIR` pointing into its initramfs. Where a container
//! test reads stderr, these read stdout and stderr together (`output`): a message may come from
//! the command or from capsule-init in the guest.

use std::os::unix::fs::PermissionsExt;

use tests::{Env, Launch, elf, lab_env};

fn kata_on(env: &Env, rootfs: &std::path::Path, flags: &[&str], cmd: &[&str]) -> Launch {
    let launch = env.run_isolated_on(rootfs, "kata", flags, cmd);
    assert_eq!(launch.outcome["isolation"], "kata", "{}", launch.outcome);
    launch
}

fn kata(flags: &[&str], cmd: &[&str]) -> Launch {
    let env = lab_env();
    kata_on(&env, &env.rootfs.clone(), flags, cmd)
}

/// stdout and stderr, which share the console without the agent.
fn output(launch: &Launch) -> String {
    format!("{}{}", launch.stdout, launch.stderr)
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn exit_statuses_are_the_workload_s() {
    assert_eq!(kata(&[], &["true"]).code, 0);
    assert_eq!(kata(&[], &["sh", "-c", "exit 3"]).code, 3);
    let killed = kata(&[], &["sh", "-c", "kill -9 $$"]);
    assert_eq!(killed.code, 137, "{killed:?}");
    // Without an init the command is the container's PID 1.
    assert_eq!(kata(&["--no-init"], &["sh", "-c", "exit 5"]).code, 5);
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn runtime_failures_exit_125_126_127_with_a_sentence() {
    let missing = kata(&[], &["no-such-command"]);
    assert_eq!(missing.code, 127, "{missing:?}");
    assert!(
        output(&missing).contains("\"no-such-command\" not found"),
        "{missing:?}"
    );
    let not_exec = kata(&[], &["/etc/passwd"]);
    assert_eq!(not_exec.code, 126, "{not_exec:?}");
    assert!(
        output(&not_exec).contains("cannot be executed"),
        "{not_exec:?}"
    );
    // The working directory is a file: the container's set-up fails in the guest.
    let setup = kata(&["-w", "/etc/passwd"], &["true"]);
    assert_eq!(setup.code, 125, "{setup:?}");
    assert!(output(&setup).contains("/etc/passwd"), "{setup:?}");
    // Refused before boot.
    let refused = kata(&["--memory", "1M"], &["true"]);
    assert_eq!(refused.code, 125, "{refused:?}");
    assert!(refused.stderr.contains("resources.memory"), "{refused:?}");
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn the_container_has_its_own_pids_hostname_and_network() {
    let launch = kata(
        &["--hostname", "box-1"],
        &[
            "sh",
            "-c",
            "echo $$; ls /proc | grep -c '^[0-9]'; hostname; ls /sys/class/net",
        ],
    );
    let lines: Vec<&str> = launch.stdout.lines().collect();
    // capsule-init is the container's PID 1 (the sandbox's is outside its pid namespace).
    assert_eq!(lines.first(), Some(&"2"), "{launch:?}");
    let visible: u32 = lines[1].parse().unwrap();
    assert!(visible <= 4, "only init, sh, ls and grep: saw {visible}");
    assert_eq!(lines[2..], ["box-1", "lo"], "{launch:?}");
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn capabilities_match_the_plan() {
    let default = kata(&[], &["grep", "CapEff", "/proc/self/status"]);
    assert!(
        default.stdout.contains("CapEff:\t00000000a80425fb"),
        "{default:?}"
    );
    let custom = kata(
        &["--cap-drop", "ALL", "--cap-add", "NET_ADMIN"],
        &["grep", "CapEff", "/proc/self/status"],
    );
    assert!(
        custom.stdout.contains("CapEff:\t0000000000001000"),
        "{custom:?}"
    );
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn seccomp_denies_syscalls_outside_the_profile() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let probe = dir.path().join("keyctl");
    std::fs::write(&probe, elf::keyctl_probe()).unwrap();
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let volume = format!("{}:/probe:ro", dir.path().display());
    let confined = kata(&["-v", &volume], &["/probe/keyctl"]);
    assert_eq!(
        confined.code, 1,
        "keyctl must fail with EPERM: {confined:?}"
    );
    let unconfined = kata(
        &["-v", &volume, "--seccomp", "unconfined"],
        &["/probe/keyctl"],
    );
    assert_eq!(
        unconfined.code, 0,
        "keyctl must not fail with EPERM: {unconfined:?}"
    );
}

/// A host directory reaches the guest as a virtio-fs share and the container as a bind
/// mount of it: read and written both ways, read-only with `:ro`.
#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn host_directories_are_bound_in_through_virtio_fs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("from-host"), "hello\n").unwrap();
    let volume = format!("{}:/data", dir.path().display());
    let launch = kata(
        &["-v", &volume],
        &[
            "sh",
            "-c",
            "cat /data/from-host && echo back > /data/from-guest",
        ],
    );
    assert_eq!(
        (launch.code, launch.stdout.as_str()),
        (0, "hello\n"),
        "{launch:?}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("from-guest")).unwrap(),
        "back\n"
    );
    let readonly = kata(&["-v", &format!("{volume}:ro")], &["touch", "/data/x"]);
    assert_ne!(readonly.code, 0, "{readonly:?}");
    assert!(
        output(&readonly).contains("Read-only file system"),
        "{readonly:?}"
    );
    assert!(!dir.path().join("x").exists());
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn memory_limit_oom_kills_and_the_outcome_says_so() {
    let limits = ["--memory", "32M", "--memory-swap", "32M"];
    let launch = kata(
        &limits,
        &["sh", "-c", "head -c 67108864 /dev/zero | tail > /dev/null"],
    );
    assert_eq!(launch.code, 137, "{launch:?}");
    // The OOM kill comes back in the agent's exit report (`memory.events` in the guest).
    assert_eq!(launch.outcome["oomKilled"], true, "{launch:?}");
    let fits = kata(
        &limits,
        &["sh", "-c", "head -c 8388608 /dev/zero | tail > /dev/null"],
    );
    assert_eq!(fits.code, 0, "{fits:?}");
    assert_eq!(fits.outcome["oomKilled"], false);
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn pids_limit_makes_fork_fail() {
    let script = "for i in $(seq 1 32); do sleep 2 & done; wait";
    let limited = kata(&["--pids", "16"], &["sh", "-c", script]);
    assert!(output(&limited).contains("can't fork"), "{limited:?}");
    let free = kata(
        &[],
        &[
            "sh",
            "-c",
            "for i in $(seq 1 32); do sleep 0.1 & done; wait",
        ],
    );
    assert!(!output(&free).contains("can't fork"), "{free:?}");
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn the_cgroup_filesystem_shows_the_container_s_own_limits_read_only() {
    let launch = kata(
        &["--pids", "16", "--memory", "64M"],
        &[
            "sh",
            "-c",
            "cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/memory.max; touch /sys/fs/cgroup/x",
        ],
    );
    let out = output(&launch);
    let words: Vec<&str> = out.split_whitespace().take(2).collect();
    assert_eq!(words, ["16", "67108864"], "{launch:?}");
    assert!(out.contains("Read-only file system"), "{launch:?}");
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn overlay_writes_do_not_reach_the_source_directory() {
    let env = lab_env();
    let launch = kata_on(
        &env,
        &env.rootfs,
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
    let readonly = kata_on(
        &env,
        &env.rootfs,
        &["--read-only"],
        &["sh", "-c", "echo hi > /written"],
    );
    assert_ne!(readonly.code, 0);
    assert!(
        output(&readonly).contains("Read-only file system"),
        "{readonly:?}"
    );
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn the_vm_is_sized_from_the_plan_and_runs_its_own_kernel() {
    assert_eq!(kata(&["--cpus", "1.5"], &["nproc"]).stdout, "2\n");
    let launch = kata(&["--memory", "64M"], &["grep", "MemTotal", "/proc/meminfo"]);
    let kib: u64 = launch
        .stdout
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("MemTotal: N kB");
    // 64M for the container and 128M for the guest, less what the kernel keeps for itself.
    assert!((100 << 10..=192 << 10).contains(&kib), "MemTotal {kib} kB");
    // A kernel's boot id is its own (the lab's L1 runs the same kernel release as the guest).
    let host = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let guest = kata(&[], &["cat", "/proc/sys/kernel/random/boot_id"]);
    assert_eq!(guest.code, 0, "{guest:?}");
    assert_ne!(
        guest.stdout, host,
        "the container runs on the guest's kernel"
    );
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn the_sandbox_kernel_creates_no_trace_event_files() {
    let env = lab_env();
    let list = "mkdir -p /tmp/t && mount -t tracefs tracefs /tmp/t && ls /tmp/t";
    let flags = ["--cap-add", "SYS_ADMIN", "--seccomp", "unconfined"];
    let has_events = |launch: &Launch| {
        assert_eq!(launch.code, 0, "{launch:?}");
        // tracefs itself is there either way (kprobes' files, say).
        assert!(launch.stdout.contains("kprobe_events"), "{launch:?}");
        launch
            .stdout
            .split_whitespace()
            .any(|file| file == "events")
    };
    let sandbox = kata_on(&env, &env.rootfs, &flags, &["sh", "-c", list]);
    assert!(!has_events(&sandbox), "{sandbox:?}");
    // The same kernel in a plain microVM has them: the sandbox's parameter makes the difference.
    let microvm = env.run_isolated_on(&env.rootfs, "microvm", &flags, &["sh", "-c", list]);
    assert!(has_events(&microvm), "{microvm:?}");
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn uid_and_gid_maps_put_root_inside_on_a_guest_range() {
    let launch = kata(
        &["--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536"],
        &["sh", "-c", "id -u; cat /proc/self/uid_map"],
    );
    let words: Vec<&str> = launch.stdout.split_whitespace().collect();
    assert_eq!(words, ["0", "0", "100000", "65536"], "{launch:?}");
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn sigterm_to_capsule_ends_the_launch_with_143() {
    let env = lab_env();
    let mut child = env
        .run_command("kata")
        .args(["--", "sleep", "600"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("capsule starts");
    // Long enough for the guest to boot in the lab; the stop must work at any point anyway.
    std::thread::sleep(std::time::Duration::from_secs(8));
    // SAFETY: kill with the pid of our own child, which has not been reaped yet.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().expect("capsule ends");
    assert_eq!(status.code(), Some(143));
    tests::assert_nothing_left();
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn the_kata_example_launches_a_container_in_a_microvm() {
    let env = lab_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("kata.rhai");
    // Embedded, so that the test binary needs no checkout inside the lab.
    std::fs::write(&script, include_str!("../../examples/kata.rhai")).expect("write");
    let flags = [
        script.display().to_string(),
        "--rootfs".to_owned(),
        env.rootfs.display().to_string(),
    ];
    let launch = env.run_raw(&flags, &["cat", "/sys/fs/cgroup/pids.max"]);
    assert_eq!(launch.outcome["isolation"], "kata", "{}", launch.outcome);
    assert_eq!(launch.stdout, "64\n", "{launch:?}");
}
