//! Nothing of capsule reaches a container through its PID 1 or its start state (issue 11): the
//! init is `capsule-init` executed from a sealed memfd with the container's own environment
//! and argv (as docker's `--init`, tini, is), the host binary is unreachable through
//! `/proc/1/exe` (runc's CVE-2019-5736), and the workload starts with the signal state and
//! descriptors of a fresh process (crun#2058), with or without the init.

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};

use tests::{Env, assert_nothing_left, env_or_skip};

/// `capsule run --rootfs <busybox> FLAGS -- CMD`, with `configure` applied to the command
/// first (the caller's environment, signal state, descriptors); then checks nothing was left
/// behind.
fn run_with(
    env: &Env,
    flags: &[&str],
    cmd: &[&str],
    configure: impl FnOnce(&mut Command),
) -> Output {
    let mut command = env.command();
    command
        .arg("run")
        .arg("--rootfs")
        .arg(&env.rootfs)
        .args(flags)
        .arg("--")
        .args(cmd)
        .stdin(Stdio::null());
    configure(&mut command);
    let output = command.output().expect("capsule runs");
    assert_nothing_left();
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `/proc/1/environ` or `/proc/1/cmdline` as a list of its NUL-separated strings.
fn nul_list(text: &str) -> Vec<&str> {
    text.trim_end_matches('\0').split('\0').collect()
}

#[test]
fn pid1_has_exactly_the_containers_environment() {
    let env = env_or_skip!();
    let secret = "CAPSULE_TEST_CALLER_SECRET";
    let read_environ = ["cat", "/proc/1/environ"];
    let caller = |c: &mut Command| {
        c.env(secret, "leaked");
    };
    // One hostname for both launches: HOSTNAME is in the environment.
    let flags = ["-e", "A=1", "--hostname", "pid1-test"];
    let with_init = run_with(&env, &flags, &read_environ, caller);
    // Without an init the command itself is PID 1, executed with the container's environment
    // by ns-core: the reference.
    let without_init = run_with(
        &env,
        &[&flags[..], &["--no-init"]].concat(),
        &read_environ,
        caller,
    );
    assert!(with_init.status.success(), "{with_init:?}");
    let (init_env, command_env) = (stdout(&with_init), stdout(&without_init));
    let mut got = nul_list(&init_env);
    let mut want = nul_list(&command_env);
    assert!(want.contains(&"A=1") && want.iter().any(|v| v.starts_with("PATH=")));
    assert!(
        !init_env.contains(secret),
        "the caller's environment: {got:?}"
    );
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
}

#[test]
fn pid1_cmdline_names_no_host_path() {
    let env = env_or_skip!();
    let script = "cat /proc/1/cmdline";
    let launch = run_with(&env, &[], &["sh", "-c", script], |_| {});
    assert!(launch.status.success(), "{launch:?}");
    let cmdline = stdout(&launch);
    assert_eq!(
        nul_list(&cmdline),
        ["capsule-init", "--container", "--", "sh", "-c", script]
    );
}

#[test]
fn pid1_exe_is_a_sealed_copy_not_the_host_binary() {
    let env = env_or_skip!();
    let script = "readlink /proc/1/exe; \
                  head -c 4 /proc/1/exe | od -An -c | tr -d ' '; \
                  printf x >> /proc/1/exe && echo appended; \
                  printf x 1<> /proc/1/exe && echo overwritten; \
                  true";
    let launch = run_with(&env, &[], &["sh", "-c", script], |_| {});
    let out = stdout(&launch);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        ["/memfd:capsule-init (deleted)", "177ELF"],
        "PID 1 runs an ELF file that exists nowhere but in memory, and writing to it fails: {launch:?}"
    );
    let capsule = env.capsule.canonicalize().unwrap();
    assert!(!out.contains(&*capsule.to_string_lossy()));
}

/// The parent of `capsule` ignores SIGINT and blocks SIGUSR1 (as `nohup` or a service
/// manager may); Rust's runtime in capsule ignores SIGPIPE.
fn with_signals_ignored_and_blocked(command: &mut Command) {
    // SAFETY: the closure runs between fork and exec and makes only async-signal-safe calls
    // on local data.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
}

#[test]
fn the_workload_starts_with_no_signal_ignored_or_blocked() {
    let env = env_or_skip!();
    for flags in [&[][..], &["--no-init"]] {
        let launch = run_with(
            &env,
            flags,
            &["grep", "-E", "^Sig(Ign|Blk):", "/proc/self/status"],
            with_signals_ignored_and_blocked,
        );
        assert_eq!(
            stdout(&launch),
            "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n",
            "{flags:?}: {launch:?}"
        );
        // crun#2058: a shell's trap on SIGPIPE works, and `yes | head` ends quietly.
        let script = "trap 'echo trapped' PIPE; kill -PIPE $$; yes | head -n 1";
        let launch = run_with(&env, flags, &["sh", "-c", script], |_| {});
        assert_eq!(stdout(&launch), "trapped\ny\n", "{flags:?}: {launch:?}");
        assert_eq!(String::from_utf8_lossy(&launch.stderr), "", "{flags:?}");
    }
}

#[test]
fn no_descriptor_of_the_caller_reaches_the_container() {
    let env = env_or_skip!();
    let marker = tempfile::NamedTempFile::new().unwrap();
    let marker_fd = marker.as_file().as_raw_fd();
    let inherit = |c: &mut Command| {
        // SAFETY: dup2 is async-signal-safe; the new fd 9 has no close-on-exec flag, so
        // capsule inherits it as a careless caller would pass it.
        unsafe {
            c.pre_exec(move || {
                libc::dup2(marker_fd, 9);
                Ok(())
            });
        }
    };
    // In the init's list, 3 is its report pipe; in the workload's, 3 is ls's own directory.
    let script = "ls /proc/1/fd | tr '\\n' ' '; echo; readlink /proc/1/fd/3; \
                  ls /proc/self/fd | tr '\\n' ' '";
    let launch = run_with(&env, &[], &["sh", "-c", script], inherit);
    let out = stdout(&launch);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{launch:?}");
    assert_eq!(lines[0], "0 1 2 3 ", "the init's descriptors: {launch:?}");
    assert!(lines[1].starts_with("pipe:["), "{launch:?}");
    assert_eq!(
        lines[2], "0 1 2 3 ",
        "the workload's descriptors: {launch:?}"
    );

    let launch = run_with(
        &env,
        &["--no-init"],
        &["sh", "-c", "ls /proc/self/fd | tr '\\n' ' '"],
        inherit,
    );
    assert_eq!(stdout(&launch), "0 1 2 3 ", "{launch:?}");
}

#[test]
fn exec_failures_and_signals_keep_their_statuses_through_the_init() {
    let env = env_or_skip!();
    let missing = env.run(&[], &["no-such-command"]);
    assert_eq!(missing.code, 127, "{missing:?}");
    assert!(
        missing.stderr.contains(
            "command \"no-such-command\" not found in the container (searched /usr/local/sbin/no-such-command"
        ),
        "{}",
        missing.stderr
    );
    assert!(
        !missing.stderr.contains("capsule-init"),
        "{}",
        missing.stderr
    );
    // A directory (container.rs tries a plain file).
    let directory = env.run(&[], &["/"]);
    assert_eq!(directory.code, 126, "{directory:?}");
    assert!(
        directory
            .stderr
            .contains("command \"/\" cannot be executed in the container: EACCES"),
        "{}",
        directory.stderr
    );

    let terminated = env.run(&[], &["sh", "-c", "kill -TERM $$"]);
    assert_eq!(terminated.code, 143, "{terminated:?}");
    assert_eq!(terminated.outcome["signal"], 15);
    // An exit code of 143 is not a signal.
    let exited = env.run(&[], &["sh", "-c", "exit 143"]);
    assert_eq!(exited.code, 143, "{exited:?}");
    assert_eq!(exited.outcome["signal"], serde_json::Value::Null);
}

#[test]
fn the_init_forwards_signals_sent_to_it_inside_the_container() {
    let env = env_or_skip!();
    // SIGUSR2 and SIGWINCH have no meaning for an init; the command gets them.
    let script = "trap 'echo usr2' USR2; trap 'echo winch; exit 4' WINCH; \
                  kill -USR2 1; sleep 0.2; kill -WINCH 1; sleep 5; echo not forwarded";
    let launch = env.run(&[], &["sh", "-c", script]);
    assert_eq!(launch.stdout, "usr2\nwinch\n", "{launch:?}");
    assert_eq!(launch.code, 4);
}

#[test]
fn the_init_starts_under_the_tightest_descriptor_limit() {
    let env = env_or_skip!();
    // The init's program and report pipe arrive before the rlimits apply; a limit of one
    // descriptor still runs the init and its command.
    let launch = env.run(
        &["--ulimit", "nofile=1:1"],
        &["sh", "-c", "echo $$; exit 9"],
    );
    assert_eq!((launch.code, launch.stdout.trim()), (9, "2"), "{launch:?}");
}

/// The workload can reach the init's report pipe (`/proc/1/fd/3`; or ptrace, which the
/// default profile allows) and write records of its own: capsule must still report what the
/// command did, as runc and crun do (they have no such pipe: the status is waitpid's).
#[test]
fn a_workload_cannot_forge_the_inits_reports() {
    let env = env_or_skip!();
    // Little-endian 16-byte records: kind, stage, index, value.
    let failed = r"\001\000\000\000\004\000\000\000\000\000\000\000\001\000\000\000";
    let not_found = r"\002\000\000\000\000\000\000\000\000\000\000\000\002\000\000\000";
    // "exited 0", then half a record that shifts the init's real one out of step.
    let exited_0 = r"\003\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000";
    for (record, code) in [(failed, 0), (not_found, 0), (exited_0, 7)] {
        let script = format!("printf '{record}' > /proc/1/fd/3 && echo written; exit {code}");
        let launch = env.run(&[], &["sh", "-c", &script]);
        assert_eq!(launch.stdout, "written\n", "{launch:?}");
        assert_eq!(launch.code, code, "{record}: {launch:?}");
        assert_eq!(launch.stderr, "", "{record}: {launch:?}");
    }
}
