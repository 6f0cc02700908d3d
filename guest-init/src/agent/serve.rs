//! The guest's side of a session: [`serve`] one connection, starting the workload through a
//! [`Runner`].
//!
//! One thread, one poll(2) loop over non-blocking descriptors: the connection, the command's
//! output (pipes, or a terminal's master), its input, and the [`Running`] workload's exit
//! descriptor. Everything held is bounded: output is read only while less than one frame
//! waits for the connection (the host's vsock credit is the backpressure), and the connection
//! is read only while less than [`STDIN_LIMIT`] of input waits for the command.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use super::message::{ExitReport, GuestMessage, HostMessage};
use super::stdio::{self, AgentStdio, ChildStdio};
use super::wire::{Decoder, HEADER_LEN, ProtocolError};
use super::{MAX_DATA, VERSION};
use crate::Workload;

/// The most input waiting for the command before the agent stops reading the connection.
pub const STDIN_LIMIT: usize = 256 << 10;

/// The status of a workload whose setup failed in the guest (`docker run`'s own failures).
const SETUP_FAILED: i32 = 125;

/// How the agent starts a workload: capsule-init's own command (user, capabilities, seccomp,
/// rlimits, working directory, exec, with the 127/126 rules), or a kata launch's container.
pub trait Runner {
    /// The started workload.
    type Running: Running;

    /// Starts `workload` with `stdio` as its stdin, stdout and stderr (the child calls
    /// [`ChildStdio::install`] between fork and exec). A failure of the command itself (not
    /// found, not executable) is better reported as the workload's exit status (127, 126)
    /// with a line on its stderr; `Err` is for a setup that failed before there was a command,
    /// reported as the message and status 125.
    ///
    /// # Errors
    ///
    /// What failed, as one line.
    fn spawn(&mut self, workload: &Workload, stdio: ChildStdio) -> Result<Self::Running, String>;

    /// Called once the workload has ended and its output has been sent, just before the exit
    /// report: the host stops the VM when it has the report, so what must outlive the guest
    /// (the disks' page cache: sync(2)) is written here.
    fn before_exit_report(&mut self) {}
}

/// A started workload.
pub trait Running {
    /// Its pid (in the guest's pid namespace), for `Started`.
    fn pid(&self) -> u32;
    /// Sends it `signal` (1 to 64); one it cannot receive any more is no error.
    fn signal(&mut self, signal: i32);
    /// A descriptor that polls readable when [`Running::try_wait`] may have news (a pidfd,
    /// a signalfd for SIGCHLD); `try_wait` must clear its readiness.
    fn exit_fd(&self) -> BorrowedFd<'_>;
    /// How it ended, once it has; `None` while it runs. Never blocks.
    ///
    /// # Errors
    ///
    /// When it cannot be waited for.
    fn try_wait(&mut self) -> io::Result<Option<ExitReport>>;
}

/// A boxed workload, so a [`Runner`] can start more than one kind (capsule-init's command, or
/// kata's container) behind one `Running` type.
impl<T: Running + ?Sized> Running for Box<T> {
    fn pid(&self) -> u32 {
        (**self).pid()
    }

    fn signal(&mut self, signal: i32) {
        (**self).signal(signal);
    }

    fn exit_fd(&self) -> BorrowedFd<'_> {
        (**self).exit_fd()
    }

    fn try_wait(&mut self) -> io::Result<Option<ExitReport>> {
        (**self).try_wait()
    }
}

/// Serves one session on `conn` (any byte stream: an accepted AF_VSOCK socket in the guest,
/// a Unix socket in tests; made non-blocking here): the Hello exchange, the host's `Run`, the
/// workload started through `runner`, its output and input relayed and its exit reported.
/// Returns the exit report that was sent.
///
/// A setup failure in the guest (the terminal, the pipes, `runner`'s spawn) is reported to
/// the host (`Error`, then `Exited` with 125) and returned as that report.
///
/// # Errors
///
/// A protocol error (a host of another major version, a message out of order, a broken
/// connection): the workload, if it runs, is killed, and the host is told when it can be.
pub fn serve<C, R>(mut conn: C, runner: &mut R) -> Result<ExitReport, ProtocolError>
where
    C: Read + Write + AsFd,
    R: Runner,
{
    stdio::set_nonblocking(&conn.as_fd().as_raw_fd())?;
    let mut out = Outbox::default();
    GuestMessage::Hello(VERSION).encode(&mut out.buf);
    let mut decoder = Decoder::for_guest();
    match next_message(&mut conn, &mut decoder, &mut out)? {
        HostMessage::Hello(v) if v.major == VERSION.major => {}
        HostMessage::Hello(peer) => {
            let error = ProtocolError::Version {
                peer,
                ours: VERSION,
            };
            return Err(refuse(&mut conn, &mut out, error));
        }
        other => {
            let error = unexpected(&other, "before Hello");
            return Err(refuse(&mut conn, &mut out, error));
        }
    }
    let request = match next_message(&mut conn, &mut decoder, &mut out)? {
        HostMessage::Run(request) => request,
        other => {
            let error = unexpected(&other, "before Run");
            return Err(refuse(&mut conn, &mut out, error));
        }
    };
    let started = stdio::create(request.stdin, request.terminal)
        .map_err(|e| format!("creating the command's stdio: {e}"))
        .and_then(|(agent, child)| Ok((agent, runner.spawn(&request.workload, child)?)));
    let (agent, mut running) = match started {
        Ok(started) => started,
        Err(message) => {
            GuestMessage::Error(message).encode(&mut out.buf);
            let report = ExitReport {
                code: SETUP_FAILED,
                signal: None,
                oom_killed: false,
            };
            return finish(&mut conn, &mut out, runner, report);
        }
    };
    GuestMessage::Started { pid: running.pid() }.encode(&mut out.buf);
    let mut session = Session::new(agent, request.stdin);
    match session.relay(&mut conn, &mut decoder, &mut out, &mut running) {
        Ok(report) => finish(&mut conn, &mut out, runner, report),
        Err(error) => {
            running.signal(libc::SIGKILL);
            Err(refuse(&mut conn, &mut out, error))
        }
    }
}

/// Sends the exit report after `before_exit_report`, and waits until the host has it all.
fn finish<C: Write + AsFd, R: Runner>(
    conn: &mut C,
    out: &mut Outbox,
    runner: &mut R,
    report: ExitReport,
) -> Result<ExitReport, ProtocolError> {
    runner.before_exit_report();
    GuestMessage::Exited(report).encode(&mut out.buf);
    out.flush(conn)?;
    Ok(report)
}

/// Tells the host what went wrong, as far as the connection still works, and hands the error
/// back.
fn refuse<C: Write + AsFd>(conn: &mut C, out: &mut Outbox, error: ProtocolError) -> ProtocolError {
    if !matches!(error, ProtocolError::Io(_) | ProtocolError::Closed) {
        GuestMessage::Error(format!("the guest agent refused the session: {error}"))
            .encode(&mut out.buf);
        let _ = out.flush(conn);
    }
    error
}

fn unexpected(message: &HostMessage, when: &'static str) -> ProtocolError {
    ProtocolError::Unexpected {
        kind: message.name(),
        when,
    }
}

/// Waits for the host's next message, sending what `out` holds meanwhile.
fn next_message<C: Read + Write + AsFd>(
    conn: &mut C,
    decoder: &mut Decoder,
    out: &mut Outbox,
) -> Result<HostMessage, ProtocolError> {
    loop {
        out.write_some(conn)?;
        if let Some((kind, payload)) = decoder.read_frame(conn)? {
            return HostMessage::decode(kind, &payload);
        }
        let mut events = libc::POLLIN;
        if out.pending() > 0 {
            events |= libc::POLLOUT;
        }
        poll(&mut [pollfd(conn.as_fd().as_raw_fd(), events)], -1)?;
    }
}

/// Frames waiting for the connection.
#[derive(Debug, Default)]
struct Outbox {
    buf: Vec<u8>,
    /// How much of `buf`'s front is written.
    sent: usize,
}

impl Outbox {
    fn pending(&self) -> usize {
        self.buf.len() - self.sent
    }

    /// Writes what the connection takes now.
    fn write_some(&mut self, conn: &mut impl Write) -> Result<(), ProtocolError> {
        while self.pending() > 0 {
            match conn.write(&self.buf[self.sent..]) {
                Ok(0) => return Err(ProtocolError::Closed),
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        if self.sent == self.buf.len() {
            self.buf.clear();
            self.sent = 0;
        } else if self.sent > MAX_DATA {
            self.buf.drain(..self.sent);
            self.sent = 0;
        }
        Ok(())
    }

    /// Writes everything, waiting for the connection as long as it takes.
    fn flush<C: Write + AsFd>(&mut self, conn: &mut C) -> Result<(), ProtocolError> {
        loop {
            self.write_some(conn)?;
            if self.pending() == 0 {
                return Ok(());
            }
            poll(&mut [pollfd(conn.as_fd().as_raw_fd(), libc::POLLOUT)], -1)?;
        }
    }
}

/// The relay's state while the workload runs.
struct Session {
    stdout: Option<File>,
    stderr: Option<File>,
    stdin: Option<File>,
    terminal: bool,
    /// Input the command has not taken yet.
    input: Vec<u8>,
    /// The host's input ended: close the pipe once `input` is written.
    input_ended: bool,
    exited: Option<ExitReport>,
    scratch: Vec<u8>,
}

impl Session {
    fn new(agent: AgentStdio, stdin_wanted: bool) -> Session {
        let mut session = Session {
            stdout: Some(agent.stdout),
            stderr: agent.stderr,
            stdin: agent.stdin,
            terminal: agent.terminal,
            input: Vec::new(),
            input_ended: false,
            exited: None,
            scratch: vec![0; MAX_DATA],
        };
        if !stdin_wanted {
            // A terminal's input ends with its EOF character; a pipe is absent already.
            session.end_input();
        }
        session
    }

    fn relay<C: Read + Write + AsFd, W: Running>(
        &mut self,
        conn: &mut C,
        decoder: &mut Decoder,
        out: &mut Outbox,
        running: &mut W,
    ) -> Result<ExitReport, ProtocolError> {
        loop {
            if let Some(report) = self.exited
                && self.stdout.is_none()
                && self.stderr.is_none()
            {
                return Ok(report);
            }
            let room = out.pending() < MAX_DATA + HEADER_LEN;
            let read_conn = self.input.len() < STDIN_LIMIT;
            let mut fds = Vec::with_capacity(5);
            let mut conn_events = 0;
            if read_conn {
                conn_events |= libc::POLLIN;
            }
            if out.pending() > 0 {
                conn_events |= libc::POLLOUT;
            }
            fds.push(pollfd(conn.as_fd().as_raw_fd(), conn_events));
            for stream in [&self.stdout, &self.stderr].into_iter().flatten() {
                fds.push(pollfd(
                    stream.as_raw_fd(),
                    if room { libc::POLLIN } else { 0 },
                ));
            }
            if let Some(stdin) = &self.stdin
                && !self.input.is_empty()
            {
                fds.push(pollfd(stdin.as_raw_fd(), libc::POLLOUT));
            }
            if self.exited.is_none() {
                fds.push(pollfd(running.exit_fd().as_raw_fd(), libc::POLLIN));
            }
            // Once the workload has ended, what its output holds is read without waiting:
            // a stream with nothing more is done (a process it left behind may hold it open).
            let draining = self.exited.is_some() && room;
            poll(&mut fds, if draining { 0 } else { -1 })?;

            out.write_some(conn)?;
            if read_conn {
                while self.input.len() < STDIN_LIMIT {
                    let Some((kind, payload)) = decoder.read_frame(conn)? else {
                        break;
                    };
                    self.on_message(HostMessage::decode(kind, &payload)?, running)?;
                }
            }
            self.write_input();
            if self.exited.is_none() {
                self.exited = running.try_wait()?;
            }
            for stderr in [false, true] {
                if out.pending() < MAX_DATA + HEADER_LEN {
                    self.read_output(stderr, out);
                }
            }
        }
    }

    fn on_message<W: Running>(
        &mut self,
        message: HostMessage,
        running: &mut W,
    ) -> Result<(), ProtocolError> {
        match message {
            HostMessage::Stdin(data) => {
                if self.stdin.is_some() && !self.input_ended {
                    self.input.extend_from_slice(&data);
                }
            }
            HostMessage::StdinEof => self.end_input(),
            HostMessage::Signal(signal) => running.signal(signal),
            HostMessage::Resize(size) => {
                if let (true, Some(master)) = (self.terminal, &self.stdout) {
                    // The terminal may be gone with the command; nothing to resize then.
                    let _ = stdio::set_window_size(master, size);
                }
            }
            other @ (HostMessage::Hello(_) | HostMessage::Run(_)) => {
                return Err(unexpected(&other, "after Run"));
            }
        }
        Ok(())
    }

    fn end_input(&mut self) {
        if self.input_ended {
            return;
        }
        self.input_ended = true;
        if self.terminal
            && let Some(master) = &self.stdin
        {
            self.input.push(stdio::eof_char(master));
        }
        self.write_input();
    }

    /// Writes what the command's input takes now; closes a pipe whose input is all written
    /// after the host's end of input, or whose reader has gone (EPIPE: the rest is dropped).
    fn write_input(&mut self) {
        let Some(stdin) = &mut self.stdin else {
            self.input.clear();
            return;
        };
        while !self.input.is_empty() {
            match stdin.write(&self.input) {
                Ok(n) => {
                    self.input.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.input.clear();
                    self.stdin = None;
                    return;
                }
            }
        }
        if self.input_ended && !self.terminal {
            self.stdin = None;
        }
    }

    /// Reads one chunk of the command's stdout or stderr into a frame; closes the stream at
    /// its end, on a terminal's EIO (its last slave closed), or when the workload has ended
    /// and it has nothing more now.
    fn read_output(&mut self, stderr: bool, out: &mut Outbox) {
        let stream = if stderr {
            &mut self.stderr
        } else {
            &mut self.stdout
        };
        let Some(file) = stream else {
            return;
        };
        let result = loop {
            match file.read(&mut self.scratch) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other,
            }
        };
        match result {
            Ok(0) => *stream = None,
            Ok(n) => {
                let data = self.scratch[..n].to_vec();
                let message = if stderr {
                    GuestMessage::Stderr(data)
                } else {
                    GuestMessage::Stdout(data)
                };
                message.encode(&mut out.buf);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if self.exited.is_some() {
                    *stream = None;
                }
            }
            Err(_) => *stream = None,
        }
    }
}

/// A poll entry; none (fd -1) without events, as poll reports a hang-up even then and the
/// loop would spin on a stream it is not reading for want of room.
fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd: if events == 0 { -1 } else { fd },
        events,
        revents: 0,
    }
}

/// poll(2), retried when interrupted; `timeout` in milliseconds, -1 for none.
fn poll(fds: &mut [libc::pollfd], timeout: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: `fds` is a valid, exclusively borrowed array of its length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
