//! The guest agent with a real guest kernel: stdout and stderr apart, 200 MB of output whole,
//! stdin with `-i` and none without, a terminal with `-t`, signals to the guest's command, and
//! Firecracker's `CONNECT` handshake from a plain `socat` on the launch's vsock socket.
//!
//! Like `microvm.rs`, these boot Debian's stock kernel, so they are `#[ignore]`d on this
//! project's PVM hosts and `cargo xtask lab` runs them on the lab's nested KVM. A guest that
//! sends the agent garbage is tested on the host (`capsule/tests/agent_session.rs`): the
//! guest's command cannot reach PID 1's agent connection (a socket is not reopened through
//! /proc, and taking PID 1's descriptor needs CAP_SYS_PTRACE, which the command lacks).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tests::{Env, Launch, assert_nothing_left, lab_env};

fn microvm(env: &Env, flags: &[&str], cmd: &[&str]) -> Launch {
    env.run_isolated_on(&env.rootfs, "microvm", flags, cmd)
}

/// `capsule run --isolation microvm FLAGS -- CMD` with its stdio as given, not waited for.
fn spawn(env: &Env, flags: &[&str], cmd: &[&str], stdin: Stdio, stdout: Stdio) -> Child {
    spawn_as(env, "microvm", flags, cmd, stdin, stdout)
}

/// [`spawn`] under `isolation`.
fn spawn_as(
    env: &Env,
    isolation: &str,
    flags: &[&str],
    cmd: &[&str],
    stdin: Stdio,
    stdout: Stdio,
) -> Child {
    env.run_command(isolation)
        .args(flags)
        .arg("--")
        .args(cmd)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("capsule starts")
}

/// Reads lines from `reader` until one equals `line`; panics at the end of the stream.
fn wait_for_line(reader: &mut impl BufRead, line: &str) {
    let mut got = String::new();
    loop {
        got.clear();
        assert!(
            reader.read_line(&mut got).expect("read") > 0,
            "the stream ended before {line:?}"
        );
        if got.trim_end() == line {
            return;
        }
    }
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn stdout_and_stderr_arrive_apart_and_in_order() {
    let env = lab_env();
    let launch = microvm(
        &env,
        &[],
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 500 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done; exit 3",
        ],
    );
    assert_eq!(launch.code, 3);
    let expected = |tag: &str| (0..500).map(|i| format!("{tag}{i}\n")).collect::<String>();
    assert_eq!(launch.stdout, expected("out"));
    assert!(
        launch.stderr.contains(&expected("err")),
        "{}",
        launch.stderr
    );
    assert!(!launch.stdout.contains("err"));
    // The agent answers after the guest's user space starts.
    let timings = &launch.outcome["timings"];
    let (boot, agent) = (timings["bootMs"].as_f64(), timings["agentMs"].as_f64());
    assert!(
        matches!((boot, agent), (Some(b), Some(a)) if a > b),
        "{timings}"
    );
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn two_hundred_megabytes_of_output_arrive_whole() {
    const LINE: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz\n";
    // dd cuts `yes`'s stream in blocks of whole lines: busybox `head -c` moves a byte per
    // getc and putchar, which took most of this test's 75 s on the lab's emulated CPU.
    const BLOCK: usize = LINE.len() * 1000;
    const BLOCKS: usize = 5406;
    const LEN: usize = BLOCK * BLOCKS;
    const _: () = assert!(LEN >= 200_000_000);
    let env = lab_env();
    let mut child = spawn(
        &env,
        &[],
        &[
            "sh",
            "-c",
            &format!(
                "yes 0123456789abcdefghijklmnopqrstuvwxyz | \
                 dd bs={BLOCK} count={BLOCKS} iflag=fullblock status=none"
            ),
        ],
        Stdio::null(),
        Stdio::piped(),
    );
    // Compared byte for byte as it streams (stronger than a checksum, and holds none of it),
    // a read at a time against the lines from the same offset: one memcmp per read, not a
    // debug build's checked loop per byte on the lab's emulated CPU, which the VMM shares.
    const CHUNK: usize = 1 << 16;
    let expected = LINE.repeat(CHUNK / LINE.len() + 2);
    let mut stdout = child.stdout.take().expect("piped");
    let mut buf = vec![0u8; CHUNK];
    let mut at = 0usize;
    loop {
        let n = stdout.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        let from = at % LINE.len();
        if buf[..n] != expected[from..from + n] {
            let i = (0..n).find(|&i| buf[i] != expected[from + i]).unwrap_or(0);
            panic!("byte {} is {:?}", at + i, char::from(buf[i]));
        }
        at += n;
    }
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)
        .expect("stderr");
    let status = child.wait().expect("capsule ends");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(at, LEN);
    assert_nothing_left();
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn stdin_flows_in_with_i() {
    let env = lab_env();
    let mut child = spawn(&env, &["-i"], &["cat"], Stdio::piped(), Stdio::piped());
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(b"hi\n")
        .expect("write");
    let output = child.wait_with_output().expect("capsule ends");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hi\n");
    assert_nothing_left();
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn without_i_a_reader_of_stdin_ends_at_once() {
    let env = lab_env();
    // capsule's stdin stays open and silent: the command must not wait for it.
    let mut child = spawn(
        &env,
        &["--timeout", "120"],
        &["sh", "-c", "cat; echo done"],
        Stdio::piped(),
        Stdio::piped(),
    );
    let _open = child.stdin.take();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut stdout)
        .expect("read");
    let status = child.wait().expect("capsule ends");
    assert_eq!(status.code(), Some(0));
    assert_eq!(stdout, "done\n");
    assert_nothing_left();
}

/// A pseudo-terminal for capsule's stdin and stdout: (master, slave).
fn pty(rows: u16, cols: u16) -> (std::fs::File, OwnedFd) {
    let (mut master, mut slave) = (0, 0);
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors; the name and termios pointers may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &ws,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both are new descriptors that nothing else owns.
    unsafe {
        (
            std::fs::File::from_raw_fd(master),
            OwnedFd::from_raw_fd(slave),
        )
    }
}

fn lflag(fd: &OwnedFd) -> libc::tcflag_t {
    // SAFETY: termios is plain data that tcgetattr fills.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: tcgetattr writes one termios.
    assert_eq!(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) }, 0);
    t.c_lflag
}

/// Reads the terminal's master until the guest's `ready` prompt, for at most 120 s; returns
/// what it read. `what` names the launch in the failure.
fn read_until_ready(master: &mut std::fs::File, what: &str) -> Vec<u8> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("ready") {
        assert!(Instant::now() < deadline, "{what}: no prompt: {seen:?}");
        let n = master.read(&mut buf).expect("read the terminal");
        seen.extend_from_slice(&buf[..n]);
    }
    seen
}

/// Reads the master until the child ends (EIO once the last slave closes).
fn read_all(master: &mut std::fs::File) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).replace('\r', "")
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn a_terminal_session_has_a_pty_of_the_host_terminal_s_size() {
    let env = lab_env();
    let (mut master, slave) = pty(30, 100);
    let before = lflag(&slave);
    let child = spawn(
        &env,
        &["-t"],
        &["sh", "-c", "tty; stty size; echo err >&2"],
        Stdio::from(slave.try_clone().expect("dup")),
        Stdio::from(slave.try_clone().expect("dup")),
    );
    let output = child.wait_with_output().expect("capsule ends");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    // Without -i capsule reads no keys, so its terminal stays as it was (not raw).
    assert_eq!(lflag(&slave), before);
    drop(slave);
    let text = read_all(&mut master);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.iter().any(|l| l.starts_with("/dev/pts/")),
        "{lines:?}"
    );
    assert!(lines.contains(&"30 100"), "{lines:?}");
    // stderr joins stdout on the guest's terminal.
    assert!(lines.contains(&"err"), "{lines:?}");
    assert_nothing_left();
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn an_interactive_terminal_takes_keys_and_restores_the_host_terminal() {
    let env = lab_env();
    let (mut master, slave) = pty(24, 80);
    let before = lflag(&slave);
    assert_ne!(before & libc::ICANON, 0);
    let child = spawn(
        &env,
        &["-i", "-t"],
        &["sh", "-c", "echo ready; read line; echo got:$line; exit 4"],
        Stdio::from(slave.try_clone().expect("dup")),
        Stdio::from(slave.try_clone().expect("dup")),
    );
    // Wait for the guest's prompt, then type a line as a user would (raw mode: the Enter
    // key's \r goes to the guest's terminal, which makes it \n).
    let seen = read_until_ready(&mut master, "");
    master.write_all(b"hello\r").expect("type");
    let output = child.wait_with_output().expect("capsule ends");
    assert_eq!(output.status.code(), Some(4), "{output:?}");
    // Restored: canonical mode and echo are back once capsule ends.
    assert_eq!(lflag(&slave), before);
    drop(slave);
    let text = String::from_utf8_lossy(&seen).into_owned() + &read_all(&mut master);
    assert!(text.contains("got:hello"), "{text:?}");
    assert_nothing_left();
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn ctrl_c_on_the_terminal_interrupts_the_command_in_a_microvm_and_under_kata() {
    let env = lab_env();
    for isolation in ["microvm", "kata"] {
        let (mut master, slave) = pty(24, 80);
        // The guest's terminal controls the command's session only if it leads one with it
        // as its controlling terminal: then ^C is SIGINT to the foreground `sleep` (130);
        // else the key is nobody's and `sleep` runs its 60 s out (0).
        let child = spawn_as(
            &env,
            isolation,
            &["-i", "-t"],
            // The trap keeps the shell (PID 1 under kata, whom the kernel spares anyway).
            &[
                "sh",
                "-c",
                "trap 'echo trapped' INT; echo ready; sleep 60; echo status:$?",
            ],
            Stdio::from(slave.try_clone().expect("dup")),
            Stdio::from(slave.try_clone().expect("dup")),
        );
        let seen = read_until_ready(&mut master, isolation);
        // Past `echo`, into `sleep`: the shell forks it at once.
        std::thread::sleep(Duration::from_secs(1));
        master.write_all(b"\x03").expect("type ^C");
        let output = child.wait_with_output().expect("capsule ends");
        assert_eq!(output.status.code(), Some(0), "{isolation}: {output:?}");
        drop(slave);
        let text = String::from_utf8_lossy(&seen).into_owned() + &read_all(&mut master);
        assert!(text.contains("status:130"), "{isolation}: {text:?}");
    }
    assert_nothing_left();
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn sigterm_to_capsule_reaches_the_guest_command() {
    let env = lab_env();
    let mut child = spawn(
        &env,
        &[],
        &[
            "sh",
            "-c",
            "trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.1; done",
        ],
        Stdio::null(),
        Stdio::piped(),
    );
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    wait_for_line(&mut stdout, "ready");
    // SAFETY: kill with the pid of our own child, which has not been reaped yet.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    // The command trapped it and chose its status: the signal reached it, not the VM's stop.
    wait_for_line(&mut stdout, "got TERM");
    let status = child.wait().expect("capsule ends");
    assert_eq!(status.code(), Some(7));
    assert_nothing_left();
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn socat_speaks_firecracker_s_connect_handshake_on_the_vsock_socket() {
    let env = lab_env();
    if !tests::require(
        Command::new("socat").arg("-V").output().is_ok(),
        "socat (the lab carries it)",
    ) {
        return;
    }
    let mut child = spawn(
        &env,
        &[],
        &["sh", "-c", "echo ready; sleep 30"],
        Stdio::null(),
        Stdio::piped(),
    );
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    wait_for_line(&mut stdout, "ready");
    let socket = std::fs::read_dir("/run/capsule")
        .expect("the state root")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("vsock.sock"))
        .find(|p| p.exists())
        .expect("the launch's vsock socket");
    let mut socat = Command::new("socat")
        .args([
            "-t",
            "2",
            "-",
            &format!("UNIX-CONNECT:{}", socket.display()),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("socat runs");
    socat
        .stdin
        .take()
        .expect("piped")
        .write_all(b"CONNECT 1024\n")
        .expect("write");
    let mut reply = String::new();
    BufReader::new(socat.stdout.take().expect("piped"))
        .read_line(&mut reply)
        .expect("read the reply");
    assert!(reply.starts_with("OK "), "{reply:?}");
    let _ = socat.kill();
    let _ = socat.wait();
    // SAFETY: kill with the pid of our own child, which has not been reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().expect("capsule ends");
    assert_eq!(status.code(), Some(143));
    assert_nothing_left();
}
