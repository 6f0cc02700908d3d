//! Host directories in a microVM over virtio-fs (`-v HOSTDIR:/dst[:ro]`, served by one
//! virtiofsd per directory) and `--tmpfs`, with a real guest kernel: reads and writes both
//! ways, `:ro` enforced, no way out of the shared directory, a missing virtiofsd refused
//! before boot, and nothing left behind (no virtiofsd, no socket, no launch directory: every
//! `Env::run` checks), the guest failing included.
//!
//! Like `microvm.rs`, these boot Debian's stock kernel, so they are `#[ignore]`d on this
//! project's PVM hosts and `cargo xtask lab` runs them on the lab's nested KVM (the lab
//! carries virtiofsd and exports `$CAPSULE_VIRTIOFSD`).

use std::path::Path;

use tests::{Env, Launch, assert_nothing_left, lab_env};

fn microvm(env: &Env, flags: &[&str], script: &str) -> Launch {
    env.run_isolated_on(&env.rootfs, "microvm", flags, &["sh", "-c", script])
}

fn volume(dir: &Path, destination: &str, readonly: bool) -> String {
    format!(
        "{}:{destination}{}",
        dir.to_str().expect("utf-8 path"),
        if readonly { ":ro" } else { "" }
    )
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn the_guest_reads_host_files_and_the_host_sees_what_the_guest_writes() {
    let env = lab_env();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("hello"), "from the host\n").expect("write");
    let launch = microvm(
        &env,
        &["-v", &volume(dir.path(), "/data", false)],
        "cat /data/hello && echo from the guest > /data/out && mkdir /data/made",
    );
    assert_eq!(launch.code, 0, "{}", launch.stderr);
    assert_eq!(launch.stdout, "from the host\n");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out")).expect("the guest's file"),
        "from the guest\n"
    );
    assert!(dir.path().join("made").is_dir());
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn a_read_only_share_refuses_writes_with_erofs() {
    let env = lab_env();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("kept"), "as it was").expect("write");
    let launch = microvm(
        &env,
        &["-v", &volume(dir.path(), "/data", true)],
        "cat /data/kept; echo; echo x > /data/new 2>&1; echo x > /data/kept 2>&1; rm /data/kept 2>&1; true",
    );
    assert_eq!(launch.code, 0, "{}", launch.stderr);
    assert!(
        launch.stdout.starts_with("as it was\n"),
        "{}",
        launch.stdout
    );
    // The shell reports a failed redirection on its own stderr, before `2>&1` applies.
    let both = format!("{}{}", launch.stdout, launch.stderr);
    assert_eq!(both.matches("Read-only file system").count(), 3, "{both}");
    assert!(!dir.path().join("new").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("kept")).expect("still there"),
        "as it was"
    );
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn the_guest_cannot_reach_outside_the_shared_directory() {
    let env = lab_env();
    let parent = tempfile::tempdir().expect("tempdir");
    let secret = parent.path().join("secret");
    std::fs::write(&secret, "SECRET-OUTSIDE").expect("write");
    let shared = parent.path().join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::os::unix::fs::symlink("../secret", shared.join("relative")).expect("symlink");
    std::os::unix::fs::symlink(&secret, shared.join("absolute")).expect("symlink");
    std::os::unix::fs::symlink("/", shared.join("root")).expect("symlink");
    let launch = microvm(
        &env,
        &["-v", &volume(&shared, "/data", false)],
        "cat /data/relative /data/absolute /data/../secret /data/root/secret 2>/dev/null; \
         ls -a /data/.. /data/root/ 2>/dev/null; cd /data && cd .. && cat secret 2>/dev/null; true",
    );
    assert_eq!(launch.code, 0, "{}", launch.stderr);
    assert!(
        !launch.stdout.contains("SECRET-OUTSIDE"),
        "the guest read a file outside the share: {}",
        launch.stdout
    );
    // The guest can still write a symlink that points out, and it stays a link on the host.
    let launch = microvm(
        &env,
        &["-v", &volume(&shared, "/data", false)],
        "ln -s /etc/shadow /data/made && cat /data/made >/dev/null 2>&1; true",
    );
    assert_eq!(launch.code, 0, "{}", launch.stderr);
    assert_eq!(
        std::fs::read_link(shared.join("made")).expect("a symlink"),
        Path::new("/etc/shadow")
    );
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn a_missing_virtiofsd_is_refused_before_boot_with_the_fix() {
    let env = lab_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let output = env
        .run_command("microvm")
        .args(["-v", &volume(dir.path(), "/data", false), "--", "true"])
        .env("CAPSULE_VIRTIOFSD", "/nonexistent/virtiofsd")
        .output()
        .expect("capsule runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("cargo xtask virtiofsd"), "{stderr}");
    assert_nothing_left();
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn a_file_or_a_missing_directory_is_refused_with_the_reason() {
    let env = lab_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("file");
    std::fs::write(&file, "x").expect("write");
    let launch = microvm(&env, &["-v", &volume(&file, "/data", false)], "true");
    assert_eq!(launch.code, 125);
    assert!(
        launch.stderr.contains("is not a directory"),
        "{}",
        launch.stderr
    );
    let launch = microvm(
        &env,
        &["-v", &volume(&dir.path().join("missing"), "/data", false)],
        "true",
    );
    assert_eq!(launch.code, 125);
    assert!(
        launch.stderr.contains("no such directory"),
        "{}",
        launch.stderr
    );
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn nothing_is_left_when_the_guest_command_fails() {
    let env = lab_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let share = volume(dir.path(), "/data", false);
    // `Env::run` fails the test if a virtiofsd, a socket or a launch directory is left.
    let launch = microvm(&env, &["-v", &share], "touch /data/ran; exit 3");
    assert_eq!(launch.code, 3);
    assert!(dir.path().join("ran").exists());
    let launch = env.run(
        &["--isolation", "microvm", "-v", &share],
        &["/no/such/command"],
    );
    assert_eq!(launch.code, 127, "{launch:?}");
    let launch = microvm(&env, &["-v", &share, "--timeout", "3s"], "sleep 60");
    assert_eq!(launch.code, 124, "{launch:?}");
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn shares_nest_under_a_tmpfs_and_mount_read_only_where_asked() {
    let env = lab_env();
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    std::fs::write(b.path().join("b"), "b").expect("write");
    let launch = microvm(
        &env,
        &[
            "--tmpfs",
            "/mnt",
            "-v",
            &volume(b.path(), "/mnt/b", true),
            "-v",
            &volume(a.path(), "/a", false),
        ],
        "grep -E ' /(a|mnt|mnt/b) ' /proc/mounts | cut -d' ' -f2,3,4 | cut -d, -f1 | sort; cat /mnt/b/b",
    );
    assert_eq!(launch.code, 0, "{}", launch.stderr);
    assert_eq!(
        launch.stdout,
        "/a virtiofs rw\n/mnt tmpfs rw\n/mnt/b virtiofs ro\nb"
    );
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn a_virtiofsd_that_dies_mid_run_ends_the_launch_naming_its_directory() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let env = lab_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = env
        .run_command("microvm")
        .args([
            "-v",
            &volume(dir.path(), "/data", false),
            "--timeout",
            "120s",
        ])
        .args(["--", "sh", "-c", "ls /data && echo up && sleep 100"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("capsule starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read");
    assert_eq!(line, "up\n", "the guest mounted /data and runs");
    let virtiofsd = descendants(child.id())
        .into_iter()
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == "virtiofsd\n")
        })
        .expect("the launch's virtiofsd");
    // SAFETY: kill(2) on a process this test's launch started, found just above.
    assert_eq!(unsafe { libc::kill(virtiofsd, libc::SIGKILL) }, 0);
    let killed = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if killed.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the launch went on a minute after its virtiofsd died");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)
        .expect("stderr");
    assert_eq!(status.code(), Some(125), "{stderr}");
    let named = format!("the virtiofsd serving {} at /data", dir.path().display());
    assert!(stderr.contains(&named), "{stderr}");
    assert_nothing_left();
}

/// Every process below `pid`, from `/proc/PID/task/*/children`.
fn descendants(pid: u32) -> Vec<i32> {
    let mut found = Vec::new();
    let mut pending = vec![pid.to_string()];
    while let Some(parent) = pending.pop() {
        let tasks = std::fs::read_dir(format!("/proc/{parent}/task"))
            .into_iter()
            .flatten();
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace() {
                found.extend(child.parse::<i32>());
                pending.push(child.to_owned());
            }
        }
    }
    found
}
