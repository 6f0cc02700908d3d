//! The guest agent's end in PID 1: listen on vsock port `AGENT_PORT`, serve the host's one
//! connection with `guest_init::agent::serve`, and run the workload it brings the way the
//! archive's workload runs (`run.rs`), its stdio on the agent's pipes or terminal.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use guest_init::agent::{self, ChildStdio, ExitReport, Runner, Running};
use guest_init::{AGENT_PORT, Workload};
use nix::errno::Errno;

use crate::supervise::{reap, shell_status};
use crate::{Failure, SETUP_FAILED, kata, run, set_hostname};

/// How many connections may wait to be accepted: the host makes one.
const BACKLOG: libc::c_int = 1;

/// Serves the launch over vsock and returns the workload's status for the exit port.
pub fn serve() -> Result<u8, Failure> {
    // As under `supervise`: PID 1 takes its signals only when it asks for them (here SIGCHLD,
    // through a signalfd), and the command restores a fresh signal state.
    block_all_signals();
    let listener = listen(AGENT_PORT)
        .map_err(|e| Failure::message(format!("listening on vsock port {AGENT_PORT}: {e}")))?;
    let conn = accept(&listener)
        .map_err(|e| Failure::message(format!("accepting the host's agent connection: {e}")))?;
    // The listener stays open for the session but is not served again: a second connection
    // (a user's tool trying Firecracker's handshake) is answered `OK` by the guest kernel and
    // waits in the backlog, rather than being reset as if the guest had no agent.
    // The agent needs only a byte stream with a descriptor: a connected AF_VSOCK socket reads
    // and writes as a Unix stream socket does.
    let conn = UnixStream::from(conn);
    let report = agent::serve(conn, &mut GuestRunner)
        .map_err(|e| Failure::message(format!("the agent session: {e}")))?;
    drop(listener);
    Ok(u8::try_from(report.code).unwrap_or(SETUP_FAILED))
}

/// The workload as `run.rs` runs the archive's: a forked child that becomes the configured
/// user and executes the command.
struct GuestRunner;

impl Runner for GuestRunner {
    /// The command, or a kata launch's container (`kata.rs`).
    type Running = Box<dyn Running>;

    fn spawn(&mut self, workload: &Workload, stdio: ChildStdio) -> Result<Self::Running, String> {
        if let Some(container) = &workload.container {
            return Ok(Box::new(
                kata::Container::spawn(container, stdio).map_err(|f| f.to_string())?,
            ));
        }
        set_hostname(workload).map_err(|f| f.to_string())?;
        let command = run::Command::new(workload).map_err(|f| f.to_string())?;
        let sigchld = sigchld_fd().map_err(|e| format!("creating a signalfd for SIGCHLD: {e}"))?;
        // SAFETY: the init has a single thread, so the forked child is a complete copy in
        // which every function, allocation included, is as safe to call as before the fork.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("forking the command: {}", Errno::last()));
        }
        if pid == 0 {
            if let Err(errno) = stdio.install() {
                eprintln!("capsule-init: attaching the command's stdio: {errno}");
                // SAFETY: _exit ends the child at once.
                unsafe { libc::_exit(SETUP_FAILED.into()) }
            }
            run::run_child(&command);
        }
        Ok(Box::new(GuestCommand {
            pid,
            sigchld,
            status: None,
        }))
    }

    fn before_exit_report(&mut self) {
        // The host stops the VM on the report: what the command wrote to a disk must be
        // out of the page cache first.
        nix::unistd::sync();
    }
}

/// The forked command.
struct GuestCommand {
    pid: libc::pid_t,
    /// Readable when a SIGCHLD is pending (blocked, so it queues there).
    sigchld: OwnedFd,
    status: Option<i32>,
}

impl Running for GuestCommand {
    fn pid(&self) -> u32 {
        self.pid.unsigned_abs()
    }

    fn signal(&mut self, signal: i32) {
        if self.status.is_none() {
            // SAFETY: kill touches no memory; the pid is our unreaped child, so not reused.
            unsafe { libc::kill(self.pid, signal) };
        }
    }

    fn exit_fd(&self) -> BorrowedFd<'_> {
        self.sigchld.as_fd()
    }

    fn try_wait(&mut self) -> io::Result<Option<ExitReport>> {
        // Drain the signalfd (several SIGCHLDs may have merged into one), then reap every
        // child that exited: orphans re-parented to PID 1 too.
        let mut info = [0u8; 128];
        // SAFETY: reads into a buffer of its length; the descriptor is non-blocking.
        while unsafe {
            libc::read(
                self.sigchld.as_raw_fd(),
                info.as_mut_ptr().cast(),
                info.len(),
            )
        } > 0
        {}
        if self.status.is_none() {
            self.status = reap(self.pid);
        }
        Ok(self.status.map(|status| ExitReport {
            code: i32::from(shell_status(status)),
            signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
            oom_killed: false,
        }))
    }
}

fn block_all_signals() {
    // SAFETY: plain libc calls on a signal set initialised here.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
}

/// A non-blocking, close-on-exec signalfd for SIGCHLD (blocked by [`block_all_signals`]).
fn sigchld_fd() -> io::Result<OwnedFd> {
    // SAFETY: a signal set initialised here; signalfd returns a new descriptor or -1.
    let fd = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC)
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A listening AF_VSOCK stream socket on `port` of any of the guest's CIDs.
fn listen(port: u32) -> io::Result<OwnedFd> {
    // SAFETY: socket returns a new descriptor or -1.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_vm is plain data; zeroed is its "any" value before the fields are set.
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_port = port;
    addr.svm_cid = libc::VMADDR_CID_ANY;
    // SAFETY: bind and listen read the address of the given length, which lives across the
    // call.
    let bound = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        ) == 0
            && libc::listen(socket.as_raw_fd(), BACKLOG) == 0
    };
    if !bound {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

/// The next connection, close-on-exec; retried when interrupted.
fn accept(listener: &OwnedFd) -> io::Result<OwnedFd> {
    loop {
        // SAFETY: accept4 without an address buffer returns a new descriptor or -1.
        let fd = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if fd >= 0 {
            // SAFETY: a new descriptor that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use guest_init::agent::wire::Decoder;
    use guest_init::agent::{GuestMessage, HostMessage, RunRequest, VERSION};

    use super::*;

    /// What the host side saw of one session served by the init's own runner.
    struct Seen {
        stdout: String,
        stderr: String,
        report: Option<ExitReport>,
        /// The serving process's exit code: the status it would write to the exit port.
        served: i32,
    }

    /// Serves one session with [`GuestRunner`] in a forked child (single-threaded, as PID 1
    /// is, so its blocked SIGCHLD reaches the signalfd) and plays the host with the
    /// protocol's own messages.
    fn serve_in_child(args: &[&str]) -> Seen {
        let (mut host, guest) = UnixStream::pair().expect("socketpair");
        // SAFETY: the child only runs the session and _exits; glibc's allocator is fork-safe.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            drop(host);
            block_all_signals();
            let code = match agent::serve(guest, &mut GuestRunner) {
                Ok(report) => report.code,
                Err(_) => 200,
            };
            // SAFETY: ends the forked child without running the test harness's exit.
            unsafe { libc::_exit(code) };
        }
        drop(guest);
        let mut workload = Workload::new(args.iter().map(|a| a.to_string()).collect());
        workload.process.env = vec!["PATH=/usr/bin:/bin".into()];
        let mut frames = Vec::new();
        HostMessage::Hello(VERSION).encode(&mut frames);
        HostMessage::Run(Box::new(RunRequest {
            workload,
            stdin: false,
            terminal: None,
        }))
        .encode(&mut frames);
        host.write_all(&frames).expect("send Hello and Run");
        let mut decoder = Decoder::for_host();
        let mut seen = Seen {
            stdout: String::new(),
            stderr: String::new(),
            report: None,
            served: -1,
        };
        while seen.report.is_none() {
            let Ok(Some((kind, payload))) = decoder.read_frame(&mut host) else {
                break;
            };
            match GuestMessage::decode(kind, &payload).expect("a valid message") {
                GuestMessage::Stdout(d) => seen.stdout += &String::from_utf8_lossy(&d),
                GuestMessage::Stderr(d) => seen.stderr += &String::from_utf8_lossy(&d),
                GuestMessage::Exited(report) => seen.report = Some(report),
                _ => {}
            }
        }
        // The agent holds the connection after its report until the host closes it (a VM
        // stops first); closing ends its wait at once, not after its 10 s linger.
        let closed = std::time::Instant::now();
        drop(host);
        let mut status = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            closed.elapsed() < std::time::Duration::from_secs(5),
            "the agent waited {:?} after the host closed",
            closed.elapsed()
        );
        seen.served = libc::WEXITSTATUS(status);
        seen
    }

    fn root() -> bool {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if !root {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "this test needs root (the command becomes its configured user), and CI=true forbids skipping it"
            );
            eprintln!("skipped: this test needs root");
        }
        root
    }

    #[test]
    fn the_init_runs_the_agent_s_workload_as_it_runs_the_archive_s() {
        if !root() {
            return;
        }
        let seen = serve_in_child(&["sh", "-c", "echo out; echo err >&2; exit 3"]);
        assert_eq!(
            (seen.stdout.as_str(), seen.stderr.as_str()),
            ("out\n", "err\n")
        );
        assert_eq!(seen.report.map(|r| r.code), Some(3));
        assert_eq!(seen.served, 3);

        // (Its message goes to the test harness's capture, which eprintln! writes to in a
        // forked test thread, not to the command's stderr as in the guest.)
        let seen = serve_in_child(&["no-such-command-here"]);
        assert_eq!(seen.report.map(|r| r.code), Some(127));

        let seen = serve_in_child(&["sh", "-c", "kill -TERM $$"]);
        assert_eq!(
            seen.report.map(|r| (r.code, r.signal)),
            Some((143, Some(libc::SIGTERM)))
        );
    }
}
