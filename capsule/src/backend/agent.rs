//! The host's side of the guest agent (`guest_init::agent`): connect through the vsock
//! device's Unix socket, hand the guest its workload, relay the command's stdio, signals and
//! terminal size, and take its exit report.
//!
//! The guest is untrusted: every frame it sends is bounded before it is read
//! (`guest_init::agent::wire`), a malformed one ends the session with
//! [`AgentError::Protocol`], and its output is written out before the next frame is read, so
//! a reader that stops reading holds up the guest (through vsock's credit), never capsule's
//! memory.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use guest_init::agent::{
    Decoder, ExitReport, GuestMessage, HostMessage, MAX_DATA, ProtocolError, RunRequest, VERSION,
    WindowSize,
};

/// How long to wait between connection attempts while nothing listens in the guest yet.
pub const CONNECT_RETRY: Duration = Duration::from_millis(2);

/// The most input waiting for the connection before capsule stops reading its stdin.
const STDIN_BACKLOG: usize = 1 << 20;

/// The longest reply to `CONNECT` the handshake reads (`OK 4294967295\n` is 14 bytes).
const MAX_REPLY: usize = 32;

/// The most `Error` messages of the guest kept for the Outcome.
const MAX_GUEST_ERRORS: usize = 8;

/// What went wrong talking to the guest agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The vsock device's Unix socket refused the connection (the VMM's side is gone).
    #[error("cannot connect to the vsock device's socket {}: {source}", .path.display())]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Nothing answered on the agent's port in time.
    #[error("the guest agent did not accept a connection on vsock port {port} within {:.1}s (a guest kernel without vsock, or an init that does not serve the agent: rebuild the guest with `cargo xtask guest`)", .waited.as_secs_f64())]
    NoAgent {
        /// The port.
        port: u32,
        /// How long capsule tried.
        waited: Duration,
    },
    /// The vsock device answered the handshake with something other than `OK <port>`.
    #[error("the vsock device answered {reply:?} to CONNECT {port}")]
    Handshake {
        /// The port asked for.
        port: u32,
        /// What came back.
        reply: String,
    },
    /// The guest sent what the protocol does not allow, or the connection broke.
    #[error("the guest agent sent {0}")]
    Protocol(#[from] ProtocolError),
    /// The launch was stopped (the VM ended) before the session began.
    #[error("the microVM ended before the guest agent answered")]
    Cancelled,
}

/// How long a session whose connection was lost (no exit report) waits for the machine to end
/// by itself before it ends the launch.
const LOST_CONNECTION_GRACE: Duration = Duration::from_secs(5);

impl AgentError {
    /// Whether the connection broke or closed mid-session without the guest breaking the
    /// protocol: what a guest kernel that panics, halts or powers off does to it.
    pub fn is_lost_connection(&self) -> bool {
        matches!(
            self,
            AgentError::Protocol(
                ProtocolError::Io(_) | ProtocolError::Closed | ProtocolError::Truncated { .. }
            )
        )
    }

    /// Whether the guest sent what the protocol does not allow (rather than the connection
    /// failing, which a VM that ends does to it too).
    pub fn is_from_guest(&self) -> bool {
        matches!(self, AgentError::Protocol(_)) && !self.is_lost_connection()
    }
}

/// Connects to guest port `port` through the vsock device's Unix socket `uds` with
/// Firecracker's hybrid handshake (`CONNECT <port>\n`, answered `OK <host port>\n`). While the
/// guest resets the connection (nothing listens yet: the kernel is booting), tries again every
/// [`CONNECT_RETRY`] until `deadline`, or until `cancelled` says the VM has ended.
///
/// # Errors
///
/// [`AgentError::Connect`] when the socket refuses, [`AgentError::NoAgent`] at the deadline,
/// [`AgentError::Handshake`] for a reply that is not `OK`, [`AgentError::Cancelled`].
pub fn connect(
    uds: &Path,
    port: u32,
    deadline: Instant,
    cancelled: &dyn Fn() -> bool,
) -> Result<UnixStream, AgentError> {
    let start = Instant::now();
    loop {
        if cancelled() {
            return Err(AgentError::Cancelled);
        }
        let mut stream = UnixStream::connect(uds).map_err(|source| AgentError::Connect {
            path: uds.to_owned(),
            source,
        })?;
        stream
            .write_all(format!("CONNECT {port}\n").as_bytes())
            .map_err(|source| AgentError::Connect {
                path: uds.to_owned(),
                source,
            })?;
        // Bounded by the deadline: a device that never answers must not hold the launch.
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = stream.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        match read_reply(&mut stream) {
            Ok(Some(reply)) if reply.starts_with("OK ") => {
                let _ = stream.set_read_timeout(None);
                return Ok(stream);
            }
            Ok(Some(reply)) => return Err(AgentError::Handshake { port, reply }),
            // A reset, or a close without a reply: nothing listens in the guest yet.
            Ok(None) => {}
            Err(e) if is_reset(&e) => {}
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut => {
            }
            Err(source) => {
                return Err(AgentError::Connect {
                    path: uds.to_owned(),
                    source,
                });
            }
        }
        if Instant::now() >= deadline {
            return Err(AgentError::NoAgent {
                port,
                waited: start.elapsed(),
            });
        }
        std::thread::sleep(CONNECT_RETRY);
    }
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof
    )
}

/// The reply line, read a byte at a time so nothing of the session after it is consumed;
/// `None` when the connection closed first.
fn read_reply(stream: &mut UnixStream) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let mut byte = [0u8];
    loop {
        if stream.read(&mut byte)? == 0 {
            return Ok(None);
        }
        if byte[0] == b'\n' {
            return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
        }
        line.push(byte[0]);
        if line.len() > MAX_REPLY {
            return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
        }
    }
}

/// Where the session's streams are: the command's input (`None`: it has none, `-i` not
/// given), and where its output goes.
pub struct SessionIo {
    /// Read until its end, in chunks of up to [`MAX_DATA`], on a thread of its own (which a
    /// read that never returns leaves behind when the session ends).
    pub stdin: Option<Box<dyn Read + Send>>,
    /// The command's stdout (with a terminal: all of its output).
    pub stdout: Box<dyn Write + Send>,
    /// The command's stderr.
    pub stderr: Box<dyn Write + Send>,
}

impl std::fmt::Debug for SessionIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionIo")
            .field("stdin", &self.stdin.is_some())
            .finish_non_exhaustive()
    }
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnd {
    /// The guest's exit report.
    pub report: ExitReport,
    /// When the guest's `Hello` arrived.
    pub hello_at: Instant,
    /// The guest's `Error` messages (setup failures), at most [`MAX_GUEST_ERRORS`].
    pub errors: Vec<String>,
}

/// The controls of a session that run on other threads: signals and terminal resizes.
/// Cheap to clone; what is sent before the session starts waits for it.
#[derive(Debug, Clone, Default)]
pub struct Controls(Arc<Outgoing>);

impl Controls {
    /// Controls for a session yet to start.
    pub fn new() -> Controls {
        Controls::default()
    }

    /// Whether the guest has said `Hello`: from then on a signal reaches its command.
    pub fn connected(&self) -> bool {
        self.0.lock().connected
    }

    /// Sends `signal` to the guest's command.
    pub fn signal(&self, signal: i32) {
        self.0.push_control(HostMessage::Signal(signal));
    }

    /// Tells the guest's terminal its new size.
    pub fn resize(&self, size: WindowSize) {
        self.0.push_control(HostMessage::Resize(size));
    }
}

/// What waits for the connection: controls (signals, resizes) go before input, so a signal
/// is not held up behind a backlog of stdin.
#[derive(Debug, Default)]
struct Outgoing {
    queues: Mutex<Queues>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct Queues {
    control: VecDeque<HostMessage>,
    input: VecDeque<HostMessage>,
    input_bytes: usize,
    /// The guest said `Hello`.
    connected: bool,
    /// The session is over: the writer stops, input is dropped.
    closed: bool,
}

impl Outgoing {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push_control(&self, message: HostMessage) {
        self.lock().control.push_back(message);
        self.changed.notify_all();
    }

    /// Queues input, waiting while [`STDIN_BACKLOG`] bytes wait already; false once closed.
    fn push_input(&self, message: HostMessage) -> bool {
        let len = match &message {
            HostMessage::Stdin(data) => data.len(),
            _ => 0,
        };
        let mut queues = self.lock();
        while !queues.closed && queues.input_bytes >= STDIN_BACKLOG {
            queues = self.changed.wait(queues).unwrap_or_else(|p| p.into_inner());
        }
        if queues.closed {
            return false;
        }
        queues.input_bytes += len;
        queues.input.push_back(message);
        self.changed.notify_all();
        true
    }

    /// The next message to write, controls first; `None` once closed.
    fn pop(&self) -> Option<HostMessage> {
        let mut queues = self.lock();
        loop {
            if queues.closed {
                return None;
            }
            if let Some(message) = queues.control.pop_front() {
                return Some(message);
            }
            if let Some(message) = queues.input.pop_front() {
                if let HostMessage::Stdin(data) = &message {
                    queues.input_bytes -= data.len();
                }
                self.changed.notify_all();
                return Some(message);
            }
            queues = self.changed.wait(queues).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }
}

/// Runs a session on `conn` (connected by [`connect`]): waits for the guest's `Hello` until
/// `hello_deadline`, sends the host's and `request`, then relays until the guest's exit
/// report. `controls` carries the signals and resizes other threads send meanwhile.
///
/// # Errors
///
/// [`AgentError::Protocol`] for anything the guest sent that the protocol does not allow
/// (another major version, a message too long or of an unknown type, one out of order, a
/// truncated one) or a connection that broke before the report; [`AgentError::NoAgent`] when
/// no `Hello` came in time.
pub fn run_session(
    conn: UnixStream,
    request: RunRequest,
    io: SessionIo,
    controls: &Controls,
    hello_deadline: Instant,
) -> Result<SessionEnd, AgentError> {
    let mut reader = conn;
    let mut decoder = Decoder::for_host();
    let left = hello_deadline.saturating_duration_since(Instant::now());
    reader
        .set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .map_err(ProtocolError::Io)?;
    let hello = match read_message(&mut reader, &mut decoder) {
        Err(AgentError::Protocol(ProtocolError::Io(e)))
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            return Err(AgentError::NoAgent {
                port: guest_init::AGENT_PORT,
                waited: left,
            });
        }
        other => other?,
    };
    let hello_at = Instant::now();
    controls.0.lock().connected = true;
    reader.set_read_timeout(None).map_err(ProtocolError::Io)?;
    match hello {
        GuestMessage::Hello(v) if v.major == VERSION.major => {}
        GuestMessage::Hello(peer) => {
            return Err(ProtocolError::Version {
                peer,
                ours: VERSION,
            }
            .into());
        }
        other => return Err(unexpected(&other, "before Hello").into()),
    }
    let mut writer = reader.try_clone().map_err(ProtocolError::Io)?;
    let mut first = Vec::new();
    HostMessage::Hello(VERSION).encode(&mut first);
    HostMessage::Run(Box::new(request)).encode(&mut first);
    writer.write_all(&first).map_err(ProtocolError::Io)?;

    let outgoing = controls.0.clone();
    let writer_thread = spawn_writer(writer, outgoing.clone());
    let stdin_thread = io.stdin.map(|stdin| spawn_stdin(stdin, outgoing.clone()));
    let result = relay(&mut reader, &mut decoder, io.stdout, io.stderr);
    outgoing.close();
    // The writer ends at once now (its last write, if any, fails with the connection); the
    // stdin thread may be blocked in a read of a terminal and is left to end with capsule.
    let _ = reader.shutdown(std::net::Shutdown::Both);
    let _ = writer_thread.map(JoinHandle::join);
    drop(stdin_thread);
    let (report, errors) = result?;
    Ok(SessionEnd {
        report,
        hello_at,
        errors,
    })
}

/// Reads the guest's messages after `Started` to the exit report, writing its output as it
/// comes.
fn relay(
    reader: &mut UnixStream,
    decoder: &mut Decoder,
    mut stdout: Box<dyn Write + Send>,
    mut stderr: Box<dyn Write + Send>,
) -> Result<(ExitReport, Vec<String>), AgentError> {
    let mut errors = Vec::new();
    let mut started = false;
    // A reader that went away (EPIPE) gets no more; the command's output is dropped then,
    // as the console's is, and the session goes on to the exit report.
    let (mut stdout_ok, mut stderr_ok) = (true, true);
    loop {
        match read_message(reader, decoder)? {
            GuestMessage::Started { .. } if !started => started = true,
            GuestMessage::Stdout(data) if started => pass_on(&mut stdout, &mut stdout_ok, &data),
            GuestMessage::Stderr(data) if started => pass_on(&mut stderr, &mut stderr_ok, &data),
            GuestMessage::Error(message) => {
                if errors.len() < MAX_GUEST_ERRORS {
                    errors.push(message);
                }
            }
            GuestMessage::Exited(report) => return Ok((report, errors)),
            other => {
                return Err(unexpected(
                    &other,
                    if started {
                        "after Started"
                    } else {
                        "before Started"
                    },
                )
                .into());
            }
        }
    }
}

/// Writes `data` out while `ok`; a failed write (EPIPE: the reader went away) clears it.
fn pass_on(out: &mut Box<dyn Write + Send>, ok: &mut bool, data: &[u8]) {
    *ok = *ok && out.write_all(data).and_then(|()| out.flush()).is_ok();
}

fn read_message(
    reader: &mut UnixStream,
    decoder: &mut Decoder,
) -> Result<GuestMessage, AgentError> {
    // A blocking stream returns a frame or an error; `None` is its read timeout.
    match decoder.read_frame(reader)? {
        Some((kind, payload)) => Ok(GuestMessage::decode(kind, &payload)?),
        None => Err(ProtocolError::Io(io::Error::from(io::ErrorKind::TimedOut)).into()),
    }
}

fn unexpected(message: &GuestMessage, when: &'static str) -> ProtocolError {
    ProtocolError::Unexpected {
        kind: message.name(),
        when,
    }
}

/// Writes what the session sends, one message at a time, until it is closed or the
/// connection fails.
fn spawn_writer(mut writer: UnixStream, outgoing: Arc<Outgoing>) -> Option<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("agent-writer".into())
        .spawn(move || {
            let mut frame = Vec::new();
            while let Some(message) = outgoing.pop() {
                frame.clear();
                message.encode(&mut frame);
                if writer.write_all(&frame).is_err() {
                    return;
                }
            }
        })
        .ok()
}

/// Reads `stdin` to its end into `Stdin` messages, then sends `StdinEof`.
fn spawn_stdin(mut stdin: Box<dyn Read + Send>, outgoing: Arc<Outgoing>) -> Option<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("agent-stdin".into())
        .spawn(move || {
            let mut buf = vec![0; MAX_DATA];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if !outgoing.push_input(HostMessage::Stdin(buf[..n].to_vec())) {
                            return;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // An unreadable stdin is an empty one from here on.
                    Err(_) => break,
                }
            }
            outgoing.push_input(HostMessage::StdinEof);
        })
        .ok()
}

/// The size of the terminal on `fd` (`TIOCGWINSZ`); `None` when it is no terminal.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<WindowSize> {
    // SAFETY: winsize is plain data; TIOCGWINSZ writes one into it.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer is to a live winsize for the duration of the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } < 0 {
        return None;
    }
    Some(WindowSize {
        rows: ws.ws_row,
        cols: ws.ws_col,
    })
}

/// capsule's terminal in raw mode for a `-t -i` session (as `docker run -it`: every key,
/// `^C` included, goes to the guest's terminal, which echoes and interprets it), restored
/// when dropped, on every path.
#[derive(Debug)]
pub struct RawTerminal {
    fd: i32,
    saved: libc::termios,
}

impl RawTerminal {
    /// Puts the terminal on `fd` in raw mode.
    ///
    /// # Errors
    ///
    /// When `fd` is no terminal or its attributes cannot be set.
    pub fn enter(fd: BorrowedFd<'_>) -> io::Result<RawTerminal> {
        let fd = fd.as_raw_fd();
        // SAFETY: termios is plain data that tcgetattr fills.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: tcgetattr writes one termios into `saved`.
        if unsafe { libc::tcgetattr(fd, &mut saved) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw only edits the termios it is given.
        unsafe { libc::cfmakeraw(&mut raw) };
        // SAFETY: tcsetattr reads the termios it is given.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(RawTerminal { fd, saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // SAFETY: restores the attributes read in `enter` on the same descriptor (capsule's
        // stdin, open for the whole process).
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

/// Sends the terminal's size on every SIGWINCH capsule receives, until dropped.
#[derive(Debug)]
pub struct ResizeWatch {
    handle: signal_hook::iterator::Handle,
    thread: Option<JoinHandle<()>>,
}

impl ResizeWatch {
    /// Watches the terminal on `fd` (capsule's stdin, kept open for the process).
    ///
    /// # Errors
    ///
    /// When the handler cannot be installed or the thread cannot start.
    pub fn start(fd: i32, controls: Controls) -> io::Result<ResizeWatch> {
        let mut signals = signal_hook::iterator::Signals::new([libc::SIGWINCH])?;
        let handle = signals.handle();
        let thread = std::thread::Builder::new()
            .name("agent-resize".into())
            .spawn(move || {
                for _ in signals.forever() {
                    // SAFETY: capsule's stdin outlives the session; the descriptor is borrowed
                    // for one ioctl.
                    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
                    if let Some(size) = window_size(fd) {
                        controls.resize(size);
                    }
                }
            })?;
        Ok(ResizeWatch {
            handle,
            thread: Some(thread),
        })
    }
}

impl Drop for ResizeWatch {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A session on a thread of its own, started while the VM boots ([`SessionThread::start`]).
#[derive(Debug)]
pub struct SessionThread {
    done: Receiver<Result<SessionEnd, AgentError>>,
    cancelled: Arc<AtomicBool>,
}

impl SessionThread {
    /// Connects through `uds` to the agent (retrying until `deadline`), then runs the session
    /// ([`run_session`]); `on_end` runs on the thread when the session ends, however it ends
    /// (the microVM stops its machine there: the exit report is the end of the launch).
    ///
    /// # Errors
    ///
    /// When the thread cannot start.
    pub fn start(
        uds: PathBuf,
        request: RunRequest,
        io: SessionIo,
        controls: Controls,
        deadline: Instant,
        on_end: impl FnOnce() + Send + 'static,
    ) -> io::Result<SessionThread> {
        let (tx, done) = mpsc::channel();
        let cancelled = Arc::new(AtomicBool::new(false));
        let stop = cancelled.clone();
        std::thread::Builder::new()
            .name("agent".into())
            .spawn(move || {
                let result = connect(&uds, guest_init::AGENT_PORT, deadline, &|| {
                    stop.load(Ordering::SeqCst)
                })
                .and_then(|conn| run_session(conn, request, io, &controls, deadline));
                if result.as_ref().is_err_and(AgentError::is_lost_connection) {
                    // The guest's kernel closed the connection without a report: it is
                    // panicking, halting or powering off, which the machine reports better
                    // than "closed" once it sees it. Give it the time to.
                    let until = Instant::now() + LOST_CONNECTION_GRACE;
                    while !stop.load(Ordering::SeqCst) && Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                on_end();
                let _ = tx.send(result);
            })?;
        Ok(SessionThread { done, cancelled })
    }

    /// Stops connection attempts: the VM has ended.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// How the session ended, waiting at most `grace` (a session stuck writing to a reader
    /// that does not read is left behind); `None` when it did not end in time.
    pub fn wait(self, grace: Duration) -> Option<Result<SessionEnd, AgentError>> {
        self.cancel();
        self.done.recv_timeout(grace).ok()
    }
}

/// capsule's terminal for a `-t` session: its size for the guest's terminal, raw mode with
/// `-i`, and a resize watch; all undone when dropped.
#[derive(Debug)]
pub struct HostTerminal {
    /// The size the guest's terminal starts with.
    pub size: WindowSize,
    _watch: ResizeWatch,
    _raw: Option<RawTerminal>,
}

impl HostTerminal {
    /// Takes over capsule's stdin terminal for a session; `raw` when stdin flows to the guest.
    ///
    /// # Errors
    ///
    /// When stdin is no terminal, or its mode or the SIGWINCH handler cannot be set.
    pub fn take(raw: bool, controls: &Controls) -> io::Result<HostTerminal> {
        let stdin = io::stdin();
        let fd = stdin.as_fd();
        let size = window_size(fd).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "stdin is not a terminal")
        })?;
        let watch = ResizeWatch::start(fd.as_raw_fd(), controls.clone())?;
        let raw = raw.then(|| RawTerminal::enter(fd)).transpose()?;
        Ok(HostTerminal {
            size,
            _watch: watch,
            _raw: raw,
        })
    }
}
