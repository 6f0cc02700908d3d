//! The host's side of the guest agent against the real guest engine
//! (`guest_init::agent::serve`) over a Unix socketpair: the workload runs on this host through
//! a test [`Runner`] (`std::process::Command`), everything else is the code a microVM runs.

use std::io::{self, Cursor, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capsule::backend::agent::{AgentError, Controls, SessionEnd, SessionIo, connect, run_session};
use guest_init::Workload;
use guest_init::agent::{
    ChildStdio, ExitReport, ProtocolError, RunRequest, Runner, Running, WindowSize, serve,
};
use sha2::{Digest, Sha256};

/// Runs the workload on this host: the real engine's seam, with `Command` for the fork and
/// exec and a pidfd for the exit.
struct HostRunner;

struct HostChild {
    child: Child,
    pidfd: OwnedFd,
}

impl Runner for HostRunner {
    type Running = HostChild;

    fn spawn(&mut self, workload: &Workload, stdio: ChildStdio) -> Result<HostChild, String> {
        let args = &workload.process.args;
        let mut command = Command::new(&args[0]);
        command.args(&args[1..]).env_clear();
        for var in &workload.process.env {
            if let Some((key, value)) = var.split_once('=') {
                command.env(key, value);
            }
        }
        // SAFETY: install only dup2s, setsid and ioctl: async-signal-safe, no allocation.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                stdio.install().map_err(io::Error::from)
            });
        }
        let child = command
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", args[0]))?;
        // SAFETY: pidfd_open returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id(), 0) };
        if fd < 0 {
            return Err(format!("pidfd_open: {}", io::Error::last_os_error()));
        }
        // SAFETY: a new descriptor that nothing else owns.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Ok(HostChild { child, pidfd })
    }
}

impl Running for HostChild {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&mut self, signal: i32) {
        // SAFETY: kill touches no memory; the child is not reaped while we hold it.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    fn exit_fd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    fn try_wait(&mut self) -> io::Result<Option<ExitReport>> {
        use std::os::unix::process::ExitStatusExt;
        Ok(self.child.try_wait()?.map(|status| ExitReport {
            code: status
                .code()
                .or_else(|| status.signal().map(|s| 128 + s))
                .unwrap_or(125),
            signal: status.signal(),
            oom_killed: false,
        }))
    }
}

/// What a [`Capture`] does once the command says "ready".
type Action = Box<dyn FnOnce() + Send>;

/// A writer the test reads back, that can act on what it sees (send a signal once the
/// command says it is ready).
#[derive(Clone, Default)]
struct Capture {
    bytes: Arc<Mutex<Vec<u8>>>,
    on_ready: Arc<Mutex<Option<Action>>>,
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }

    fn when_ready(&self, action: impl FnOnce() + Send + 'static) {
        *self.on_ready.lock().unwrap() = Some(Box::new(action));
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut bytes = self.bytes.lock().unwrap();
        bytes.extend_from_slice(buf);
        if String::from_utf8_lossy(&bytes).contains("ready")
            && let Some(action) = self.on_ready.lock().unwrap().take()
        {
            action();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn sh(script: &str) -> Workload {
    let mut workload = Workload::new(vec!["/bin/sh".into(), "-c".into(), script.into()]);
    workload.process.env = vec!["PATH=/usr/local/bin:/usr/bin:/bin".into()];
    workload
}

/// A request to run `workload` without input or a terminal.
fn request(workload: Workload) -> RunRequest {
    RunRequest {
        workload,
        stdin: false,
        terminal: None,
    }
}

/// No input, output dropped.
fn silent() -> SessionIo {
    SessionIo {
        stdin: None,
        stdout: Box::new(io::sink()),
        stderr: Box::new(io::sink()),
    }
}

struct Ran {
    end: SessionEnd,
    stdout: String,
    stderr: String,
}

/// Runs `workload` through the real engine and the real host side.
fn session(
    workload: Workload,
    stdin: Option<Box<dyn Read + Send>>,
    terminal: Option<WindowSize>,
    setup: impl FnOnce(&Capture, &Controls),
) -> Ran {
    let (host, guest) = UnixStream::pair().unwrap();
    let engine = std::thread::spawn(move || serve(guest, &mut HostRunner));
    let (stdout, stderr, controls) = (Capture::default(), Capture::default(), Controls::new());
    setup(&stdout, &controls);
    let request = RunRequest {
        workload,
        stdin: stdin.is_some(),
        terminal,
    };
    let io = SessionIo {
        stdin,
        stdout: Box::new(stdout.clone()),
        stderr: Box::new(stderr.clone()),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let end = run_session(host, request, io, &controls, deadline).unwrap();
    let sent = engine.join().unwrap().unwrap();
    assert_eq!(
        sent, end.report,
        "the engine reports what the host received"
    );
    Ran {
        end,
        stdout: stdout.text(),
        stderr: stderr.text(),
    }
}

#[test]
fn stdout_and_stderr_arrive_apart_each_in_order() {
    let ran = session(
        sh("i=0; while [ $i -lt 2000 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done; exit 3"),
        None,
        None,
        |_, _| {},
    );
    let expected = |tag: &str| (0..2000).map(|i| format!("{tag}{i}\n")).collect::<String>();
    assert_eq!(ran.stdout, expected("out"));
    assert_eq!(ran.stderr, expected("err"));
    assert_eq!(
        ran.end.report,
        ExitReport {
            code: 3,
            signal: None,
            oom_killed: false
        }
    );
    assert!(ran.end.errors.is_empty());
}

/// Hashes and counts what it is given, holding none of it.
#[derive(Clone, Default)]
struct Hashing(Arc<Mutex<(Sha256, u64)>>);

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut state = self.0.lock().unwrap();
        state.0.update(buf);
        state.1 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn two_hundred_megabytes_of_output_arrive_whole() {
    const LEN: u64 = 200_000_000;
    let line = b"0123456789abcdefghijklmnopqrstuvwxyz\n";
    let mut expected = Sha256::new();
    let mut left = LEN as usize;
    while left > 0 {
        let n = left.min(line.len());
        expected.update(&line[..n]);
        left -= n;
    }
    let (host, guest) = UnixStream::pair().unwrap();
    let engine = std::thread::spawn(move || serve(guest, &mut HostRunner));
    let out = Hashing::default();
    let workload = sh(&format!(
        "yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c {LEN}"
    ));
    let io = SessionIo {
        stdout: Box::new(out.clone()),
        ..silent()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let end = run_session(host, request(workload), io, &Controls::new(), deadline).unwrap();
    engine.join().unwrap().unwrap();
    assert_eq!(end.report.code, 0);
    let (hash, len) = std::mem::take(&mut *out.0.lock().unwrap());
    assert_eq!(len, LEN);
    assert_eq!(hash.finalize(), expected.finalize());
}

#[test]
fn stdin_flows_in_and_its_end_ends_the_command_s_input() {
    let input: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let expected = format!("{:x}", Sha256::digest(&input));
    let ran = session(
        sh("sha256sum | cut -d' ' -f1"),
        Some(Box::new(Cursor::new(input))),
        None,
        |_, _| {},
    );
    assert_eq!(ran.stdout.trim(), expected);
    assert_eq!(ran.end.report.code, 0);

    let ran = session(
        sh("cat"),
        Some(Box::new(Cursor::new(b"hi\n".to_vec()))),
        None,
        |_, _| {},
    );
    assert_eq!(ran.stdout, "hi\n");
}

#[test]
fn without_stdin_a_reader_of_stdin_ends_at_once() {
    let started = Instant::now();
    let ran = session(sh("cat; echo done $?"), None, None, |_, _| {});
    assert_eq!(ran.stdout, "done 0\n");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_terminal_session_has_a_pty_of_the_host_s_size_and_follows_resizes() {
    let ran = session(
        sh(
            "tty; stty size; trap 'stty size; exit 0' WINCH; echo ready; while :; do sleep 0.01; done",
        ),
        None,
        Some(WindowSize { rows: 24, cols: 80 }),
        |stdout, controls| {
            let controls = controls.clone();
            stdout.when_ready(move || {
                controls.resize(WindowSize {
                    rows: 50,
                    cols: 132,
                })
            });
        },
    );
    let lines: Vec<&str> = ran
        .stdout
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .collect();
    assert!(lines[0].starts_with("/dev/pts/"), "{lines:?}");
    assert_eq!(lines[1], "24 80");
    assert_eq!(lines.last(), Some(&"50 132"), "{lines:?}");
    assert_eq!(ran.stderr, "", "stderr joins stdout on a terminal");
    assert_eq!(ran.end.report.code, 0);
}

#[test]
fn a_terminal_without_stdin_reads_its_end_at_once() {
    let ran = session(
        sh("cat; echo done"),
        None,
        Some(WindowSize { rows: 24, cols: 80 }),
        |_, _| {},
    );
    assert!(ran.stdout.contains("done"), "{:?}", ran.stdout);
}

#[test]
fn a_signal_reaches_the_command() {
    let ran = session(
        sh("echo ready; exec sleep 100"),
        None,
        None,
        |stdout, controls| {
            let controls = controls.clone();
            stdout.when_ready(move || controls.signal(libc::SIGTERM));
        },
    );
    assert_eq!(
        ran.end.report,
        ExitReport {
            code: 143,
            signal: Some(libc::SIGTERM),
            oom_killed: false
        }
    );
}

#[test]
fn exit_codes_are_the_shell_s() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-executable");
    std::fs::write(&file, "#!/bin/sh\n").unwrap();
    for (script, code) in [
        ("exit 0".to_owned(), 0),
        ("exit 3".to_owned(), 3),
        ("no-such-command-here".to_owned(), 127),
        (file.display().to_string(), 126),
    ] {
        let ran = session(sh(&script), None, None, |_, _| {});
        assert_eq!(ran.end.report.code, code, "{script}: {}", ran.stderr);
    }
}

#[test]
fn a_setup_failure_in_the_guest_is_an_error_and_125() {
    let workload = Workload::new(vec!["/no/such/binary".into()]);
    let ran = session(workload, None, None, |_, _| {});
    assert_eq!(ran.end.report.code, 125);
    assert!(
        ran.end.errors[0].contains("/no/such/binary"),
        "{:?}",
        ran.end.errors
    );
}

/// A guest that says `frames` and then closes.
fn hostile(frames: Vec<u8>) -> AgentError {
    let (host, mut guest) = UnixStream::pair().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = guest.write_all(&frames);
        // Take what the host sends for a while (a close with unread data would be a reset,
        // not the end of the stream): the host must decide from the bytes alone.
        guest
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let _ = io::copy(&mut guest, &mut io::sink());
    });
    let started = Instant::now();
    let err = run_session(
        host,
        request(sh("true")),
        silent(),
        &Controls::new(),
        Instant::now() + Duration::from_secs(5),
    )
    .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the host waited for more"
    );
    writer.join().unwrap();
    err
}

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![kind, 0, 0, 0];
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(payload);
    f
}

#[test]
fn a_hostile_guest_ends_the_session_with_a_clear_error() {
    let hello = frame(0x01, &[1, 0, 0, 0]);
    let started = frame(0x02, &[1, 0, 0, 0]);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"garbage that is no frame at all".to_vec(),
            "unknown type 0x67",
        ),
        (frame(0x01, &[2, 0, 0, 0]), "protocol version 2.0"),
        (
            [
                hello.clone(),
                started.clone(),
                vec![0x03, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
            ]
            .concat(),
            "a Stdout message of 4294967295 bytes",
        ),
        (
            [
                hello.clone(),
                started.clone(),
                frame(0x03, b"abc")[..9].to_vec(),
            ]
            .concat(),
            "truncated Stdout",
        ),
        (
            [hello.clone(), frame(0x03, b"before started")].concat(),
            "Stdout message before Started",
        ),
        (
            [hello.clone(), started.clone(), frame(0x01, &[1, 0, 0, 0])].concat(),
            "Hello message after Started",
        ),
        (
            [
                hello.clone(),
                started.clone(),
                frame(0x05, &[0, 1, 0, 0, 0, 0, 0, 0]),
            ]
            .concat(),
            "exit status 256",
        ),
        (
            [hello.clone(), started.clone()].concat(),
            "closed before the session ended",
        ),
    ];
    for (bytes, expected) in cases {
        let err = hostile(bytes).to_string();
        assert!(err.starts_with("the guest agent sent "), "{err}");
        assert!(err.contains(expected), "{err:?} lacks {expected:?}");
    }
}

#[test]
fn a_guest_that_never_says_hello_times_out() {
    let (host, _guest) = UnixStream::pair().unwrap();
    let deadline = Instant::now() + Duration::from_millis(200);
    let err = run_session(
        host,
        request(sh("true")),
        silent(),
        &Controls::new(),
        deadline,
    )
    .unwrap_err();
    assert!(
        matches!(err, AgentError::NoAgent { port: 1024, .. }),
        "{err}"
    );
}

#[test]
fn the_guest_refuses_a_host_of_another_major_version() {
    let (mut host, guest) = UnixStream::pair().unwrap();
    let engine = std::thread::spawn(move || serve(guest, &mut HostRunner));
    host.write_all(&frame(0x81, &[9, 0, 0, 0])).unwrap();
    let err = engine.join().unwrap().unwrap_err();
    assert!(matches!(err, ProtocolError::Version { .. }), "{err}");
    let mut said = Vec::new();
    host.read_to_end(&mut said).unwrap();
    let text = String::from_utf8_lossy(&said);
    assert!(
        text.contains("refused the session: protocol version 9.0"),
        "{text}"
    );
}

/// A stand-in for the vsock device's Unix socket: resets the first `resets` connections (no
/// listener in the guest yet), then answers `reply`.
fn fake_device(resets: usize, reply: &'static str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vsock.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for (i, conn) in listener.incoming().enumerate() {
            let mut conn = conn.unwrap();
            let mut line = [0u8; 13];
            conn.read_exact(&mut line).unwrap();
            assert_eq!(&line, b"CONNECT 1024\n");
            if i >= resets {
                conn.write_all(reply.as_bytes()).unwrap();
                conn.write_all(b"after").unwrap();
                std::thread::sleep(Duration::from_secs(1));
                return;
            }
        }
    });
    (dir, path)
}

#[test]
fn connect_retries_while_the_guest_resets_and_keeps_what_follows_ok() {
    let (_dir, path) = fake_device(5, "OK 1073741824\n");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut stream = connect(&path, 1024, deadline, &|| false).unwrap();
    let mut after = [0u8; 5];
    stream.read_exact(&mut after).unwrap();
    assert_eq!(&after, b"after");
}

#[test]
fn connect_refuses_another_reply_and_gives_up_at_the_deadline() {
    let (_dir, path) = fake_device(0, "NO\n");
    let err = connect(
        &path,
        1024,
        Instant::now() + Duration::from_secs(5),
        &|| false,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("answered \"NO\" to CONNECT 1024"),
        "{err}"
    );

    let (_dir, path) = fake_device(usize::MAX, "");
    let err = connect(
        &path,
        1024,
        Instant::now() + Duration::from_millis(100),
        &|| false,
    )
    .unwrap_err();
    assert!(matches!(err, AgentError::NoAgent { .. }), "{err}");
    let err = connect(
        &path,
        1024,
        Instant::now() + Duration::from_secs(5),
        &|| true,
    )
    .unwrap_err();
    assert!(matches!(err, AgentError::Cancelled), "{err}");
}
