//! `capsule run --isolation microvm`: each test boots the stock Debian kernel
//! on capsule's VMM with capsule-init as PID 1.
//!
//! A stock kernel cannot boot on a PVM host (this project's hosts), so the
//! booting tests are `#[ignore]`d there and `cargo xtask lab` runs them on
//! the lab's nested hardware KVM, with `CAPSULE_BIN`, `CAPSULE_TEST_ROOTFS`
//! and `CAPSULE_GUEST_DIR` pointing into its initramfs.

use tests::{Launch, env_or_skip, lab_env};

fn microvm(flags: &[&str], cmd: &[&str]) -> Launch {
    let env = lab_env();
    env.run_isolated_on(&env.rootfs, "microvm", flags, cmd)
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn echo_reaches_stdout() {
    let launch = microvm(&[], &["echo", "hello from the guest"]);
    assert_eq!(launch.code, 0);
    assert_eq!(launch.stdout, "hello from the guest\n");
    // The VMM's own memory, beyond the guest RAM it holds for the guest.
    assert!(
        launch.outcome["peaks"]["vmmOverheadBytes"]
            .as_u64()
            .is_some_and(|bytes| bytes > 0 && bytes < 64 << 20),
        "{}",
        launch.outcome
    );
    assert!(
        launch.outcome["timings"]["bootMs"]
            .as_f64()
            .is_some_and(|ms| ms > 0.0)
    );
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn exit_statuses_come_back() {
    for status in ["0", "1", "7"] {
        let launch = microvm(&[], &["sh", "-c", &format!("exit {status}")]);
        assert_eq!(launch.code.to_string(), status);
        assert_eq!(launch.outcome["exitCode"].to_string(), status);
    }
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn a_command_killed_by_a_signal_exits_128_plus_the_signal() {
    let launch = microvm(&[], &["sh", "-c", "kill -9 $$"]);
    assert_eq!(launch.code, 137);
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn cpus_become_vcpus() {
    assert_eq!(microvm(&[], &["nproc"]).stdout, "1\n");
    assert_eq!(microvm(&["--cpus", "2"], &["nproc"]).stdout, "2\n");
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn memory_sizes_the_guest() {
    let launch = microvm(
        &["--memory", "512M"],
        &["grep", "MemTotal", "/proc/meminfo"],
    );
    assert_eq!(launch.code, 0);
    let kib: u64 = launch
        .stdout
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("MemTotal: N kB");
    // The kernel keeps its own image and reserved areas out of MemTotal.
    assert!((400 << 10..=512 << 10).contains(&kib), "MemTotal {kib} kB");
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn the_process_gets_its_user_env_cwd_and_hostname() {
    let launch = microvm(
        &[
            "--user",
            "nobody",
            "-e",
            "GREETING=hi",
            "-w",
            "/tmp",
            "--hostname",
            "vm1",
        ],
        &["sh", "-c", "echo $(id -u) $GREETING $(pwd) $(hostname)"],
    );
    assert_eq!(launch.stdout, "65534 hi /tmp vm1\n");
}

/// Without `--hostname` a guest is named by its launch id, as a container is (not the
/// kernel's `(none)`), and gets the same `HOSTNAME` and `HOME` defaults.
#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn the_defaults_are_a_container_s() {
    let launch = microvm(&[], &["sh", "-c", "echo $(hostname) $HOSTNAME $HOME"]);
    let id = launch.outcome["id"].as_str().expect("an id").to_owned();
    assert!(!id.is_empty(), "{launch:?}");
    assert_eq!(launch.stdout, format!("{id} {id} /root\n"));
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn a_read_only_root_refuses_writes() {
    let launch = microvm(&["--read-only"], &["touch", "/new-file"]);
    assert_eq!(launch.code, 1, "{launch:?}");
    assert!(
        launch.stderr.contains("Read-only file system"),
        "{launch:?}"
    );
    assert_eq!(microvm(&[], &["touch", "/new-file"]).code, 0);
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn missing_commands_exit_127() {
    let launch = microvm(&[], &["/no/such/command"]);
    assert_eq!(launch.code, 127);
    // The guest agent keeps the command's stderr apart.
    assert!(launch.stderr.contains("/no/such/command"), "{launch:?}");
    assert!(!launch.stdout.contains("/no/such/command"), "{launch:?}");
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn a_guest_that_never_exits_ends_at_the_timeout() {
    let launch = microvm(&["--timeout", "5s"], &["sleep", "600"]);
    assert_eq!(launch.code, 124);
    assert!(launch.stderr.contains("timeout"), "{}", launch.stderr);
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn a_halted_guest_ends_at_once() {
    // Firecracker #1601: `halt -f` stops every CPU with interrupts off, which never exits to
    // the VMM; without a check the launch ran until --timeout.
    let started = std::time::Instant::now();
    let launch = microvm(&["--cap-add", "ALL", "--timeout", "120s"], &["halt", "-f"]);
    assert_eq!(launch.code, 125, "{launch:?}");
    assert!(
        launch.stderr.contains("the guest halted"),
        "{}",
        launch.stderr
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn a_guest_kernel_panic_is_reported() {
    let launch = microvm(&[], &["sh", "-c", "echo c > /proc/sysrq-trigger"]);
    assert_eq!(launch.code, 125);
    assert!(launch.stderr.contains("kernel reset"), "{}", launch.stderr);
}

#[test]
fn a_missing_kernel_and_initrd_are_both_named() {
    let env = env_or_skip!();
    let launch = env.run(
        &[
            "--isolation",
            "microvm",
            "--kernel",
            "/no/such/kernel",
            "--initrd",
            "/no/such/initrd",
        ],
        &["true"],
    );
    assert_eq!(launch.code, 125, "{launch:?}");
    for expected in [
        "vm.kernel /no/such/kernel: no such file",
        "vm.initrd /no/such/initrd: no such file",
        "cargo xtask guest",
    ] {
        assert!(launch.stderr.contains(expected), "{}", launch.stderr);
    }
}

#[test]
fn a_kernel_that_is_a_directory_or_truncated_is_named_before_boot() {
    let env = env_or_skip!();
    let dir = tempfile::tempdir().expect("tempdir");
    // A bzImage header saying 3 sectors of setup and 100 paragraphs of kernel, cut short.
    let mut truncated = vec![0u8; 3 * 512 + 1000];
    truncated[0x1f1] = 2;
    truncated[0x1f4..0x1f8].copy_from_slice(&100u32.to_le_bytes());
    truncated[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    truncated[0x202..0x206].copy_from_slice(b"HdrS");
    truncated[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    let truncated_path = dir.path().join("bzImage");
    std::fs::write(&truncated_path, &truncated).expect("write");
    for (kernel, expected) in [
        (dir.path(), "it is a directory, not a kernel image"),
        (
            truncated_path.as_path(),
            "it is truncated: its header says 3136 bytes",
        ),
    ] {
        let kernel = kernel.to_str().expect("utf-8");
        let launch = env.run(&["--isolation", "microvm", "--kernel", kernel], &["true"]);
        assert_eq!(launch.code, 125, "{launch:?}");
        assert!(launch.stderr.contains(expected), "{}", launch.stderr);
    }
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn the_plan_s_privileges_limits_and_seccomp_hold_in_the_guest_too() {
    let probe =
        "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\\t' ' '; ulimit -n";
    // A container's defaults: Docker's capabilities, no_new_privs, its seccomp profile.
    let launch = microvm(&[], &["sh", "-c", probe]);
    assert_eq!(
        launch.stdout,
        "CapEff: 00000000a80425fb\nNoNewPrivs: 1\nSeccomp: 2\n1024\n"
    );
    let launch = microvm(
        &[
            "--cap-drop",
            "ALL",
            "--seccomp",
            "unconfined",
            "--ulimit",
            "nofile=99",
        ],
        &["sh", "-c", probe],
    );
    assert_eq!(
        launch.stdout,
        "CapEff: 0000000000000000\nNoNewPrivs: 1\nSeccomp: 0\n99\n"
    );
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn sigterm_to_capsule_stops_the_vm_and_exits_143() {
    let env = lab_env();
    let mut child = env
        .run_command("microvm")
        .args(["--", "sleep", "600"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("capsule starts");
    // Long enough for the guest to boot in the lab; the stop must work at any point anyway.
    std::thread::sleep(std::time::Duration::from_secs(8));
    let start = std::time::Instant::now();
    // SAFETY: kill with the pid of our own child, which has not been reaped yet.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().expect("capsule ends");
    assert_eq!(status.code(), Some(143));
    // Stopped, not waited for: the command would sleep ten minutes.
    assert!(
        start.elapsed() < std::time::Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
    tests::assert_nothing_left();
}

/// The policy example for untrusted code picks a microVM where KVM is hardware, as in the lab,
/// and the microVM backend honours the Plan it computed (its 256M of guest RAM).
#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn the_untrusted_code_example_launches_a_microvm() {
    let env = lab_env();
    // Embedded, so that the test binary needs no checkout inside the lab.
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("untrusted.rhai");
    std::fs::write(&script, include_str!("../../examples/untrusted.rhai")).expect("write");
    let flags = [
        script.display().to_string(),
        "--rootfs".to_owned(),
        env.rootfs.display().to_string(),
    ];
    let launch = env.run_raw(&flags, &["grep", "MemTotal", "/proc/meminfo"]);
    eprintln!("{launch:?}");
    assert_eq!(launch.code, 0);
    assert_eq!(launch.outcome["isolation"], "microvm", "{}", launch.outcome);
    let kib: u64 = launch
        .stdout
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("MemTotal in kB");
    assert!((200_000..=262_144).contains(&kib), "{}", launch.stdout);
}

/// The resident KiB of process `pid` (its VmRSS: for capsule, the VMM and every guest page
/// the guest holds on the host).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn memory_the_guest_frees_goes_back_to_the_host() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    const MIB: u64 = 1024;
    let env = lab_env();
    let mut child = env
        .run_command("microvm")
        .args(["-i", "--memory", "256M", "--tmpfs", "/scratch"])
        .args(["--", "sh", "-c"])
        .arg("dd if=/dev/zero of=/scratch/fill bs=1M count=100 2>/dev/null && echo full && read _ && rm /scratch/fill && echo freed && read _")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("capsule starts");
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read");
    assert_eq!(line, "full\n");
    let full = rss_kib(child.id());
    assert!(
        full > 100 * MIB,
        "the guest's 100 MiB are resident: {full} KiB"
    );
    std::io::Write::write_all(&mut stdin, b"\n").expect("go on");
    line.clear();
    stdout.read_line(&mut line).expect("read");
    assert_eq!(line, "freed\n");
    // The guest reports a freed block some 2 s after it became free (Linux's
    // PAGE_REPORTING_DELAY); the lab's emulated CPU takes longer.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut now = rss_kib(child.id());
    while full - now.min(full) < 80 * MIB && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        now = rss_kib(child.id());
    }
    std::io::Write::write_all(&mut stdin, b"\n").expect("finish");
    let status = child.wait().expect("capsule ends");
    assert_eq!(status.code(), Some(0));
    assert!(
        full - now.min(full) >= 80 * MIB,
        "of 100 MiB freed, the host got back {} KiB ({full} KiB resident before, {now} after)",
        full - now.min(full)
    );
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn free_page_reporting_hands_back_blocks_from_128_kib() {
    // Linux's own choice on x86 is 2 MiB (order 9); capsule-init lowers it to order 5.
    let launch = microvm(
        &[],
        &[
            "cat",
            "/sys/module/page_reporting/parameters/page_reporting_order",
        ],
    );
    assert_eq!(launch.code, 0, "{launch:?}");
    assert_eq!(launch.stdout, "5\n");
}
