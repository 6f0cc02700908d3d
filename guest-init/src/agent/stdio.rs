//! The command's stdin, stdout and stderr under the agent: pipes, or a pseudo-terminal's slave
//! for `-t`; and the agent's ends of them.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::WindowSize;

/// The command's three stdio descriptors, handed to the [`Runner`](super::Runner) to start
/// the workload with (close-on-exec, so only what [`ChildStdio::install`] puts on 0, 1 and 2
/// reaches the command).
#[derive(Debug)]
pub struct ChildStdio {
    /// The command's stdin: a pipe's read end (at its end at once without `-i`), or the
    /// terminal.
    pub stdin: OwnedFd,
    /// The command's stdout: a pipe's write end, or the terminal.
    pub stdout: OwnedFd,
    /// The command's stderr: a pipe's write end, or the terminal (stderr joins stdout, as
    /// `docker run -t`).
    pub stderr: OwnedFd,
    /// The three are a terminal's slave: the command must lead a session of its own with it
    /// as the controlling terminal.
    pub terminal: bool,
}

impl ChildStdio {
    /// Makes these the calling process's stdin, stdout and stderr and, for a terminal, starts
    /// a session with the terminal as its controlling one (setsid(2), `TIOCSCTTY`), so the
    /// terminal's job control and `^C` reach the command. For the child between fork and exec:
    /// two to five system calls, no allocation.
    ///
    /// # Errors
    ///
    /// The errno of the call that failed.
    pub fn install(&self) -> Result<(), nix::errno::Errno> {
        use nix::errno::Errno;
        for (fd, target) in [(&self.stdin, 0), (&self.stdout, 1), (&self.stderr, 2)] {
            // SAFETY: dup2 onto 0-2 replaces what they held; the caller is the child about to
            // exec, whose stdio these become.
            if unsafe { libc::dup2(fd.as_raw_fd(), target) } < 0 {
                return Err(Errno::last());
            }
        }
        if self.terminal {
            // SAFETY: plain system calls on this process and its descriptor 0.
            unsafe {
                if libc::setsid() < 0 {
                    return Err(Errno::last());
                }
                if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(Errno::last());
                }
            }
        }
        Ok(())
    }
}

/// The agent's ends: where the command's output is read and its input written.
#[derive(Debug)]
pub(super) struct AgentStdio {
    /// The command's stdout, or the terminal's master (all of its output).
    pub stdout: File,
    /// The command's stderr; `None` with a terminal.
    pub stderr: Option<File>,
    /// Where `Stdin` bytes go: a pipe's write end, the terminal's master, or `None` for a
    /// pipe without `-i`.
    pub stdin: Option<File>,
    /// The terminal's master, for `Resize` and the end of input.
    pub terminal: bool,
}

/// Pipes (and, without `stdin`, a stdin pipe whose write end is closed at once, so the command
/// reads its end at once), or a terminal of `size`. The agent's ends are non-blocking.
pub(super) fn create(
    stdin: bool,
    terminal: Option<WindowSize>,
) -> io::Result<(AgentStdio, ChildStdio)> {
    if let Some(size) = terminal {
        let (master, slave) = open_pty(size)?;
        // Kept without `-i` too: the agent ends the input with the terminal's EOF character,
        // so the command reads the end of its input but still has a terminal on stdin.
        let stdin = Some(master.try_clone()?);
        let child = ChildStdio {
            stdin: slave.try_clone()?,
            stdout: slave.try_clone()?,
            stderr: slave,
            terminal: true,
        };
        let agent = AgentStdio {
            stdout: master,
            stderr: None,
            stdin,
            terminal: true,
        };
        return Ok((agent, child));
    }
    let (stdin_read, stdin_write) = pipe()?;
    let (stdout_read, stdout_write) = pipe()?;
    let (stderr_read, stderr_write) = pipe()?;
    let agent = AgentStdio {
        stdout: stdout_read,
        stderr: Some(stderr_read),
        // Dropped without `-i`: the command reads the end of its stdin at once.
        stdin: stdin.then_some(stdin_write),
        terminal: false,
    };
    let child = ChildStdio {
        stdin: stdin_read.into(),
        stdout: stdout_write.into(),
        stderr: stderr_write.into(),
        terminal: false,
    };
    set_nonblocking(&agent.stdout)?;
    if let Some(stderr) = &agent.stderr {
        set_nonblocking(stderr)?;
    }
    if let Some(stdin) = &agent.stdin {
        set_nonblocking(stdin)?;
    }
    Ok((agent, child))
}

/// Sets the terminal's window size (the kernel sends the foreground process group SIGWINCH
/// when it changes).
pub(super) fn set_window_size(master: &File, size: WindowSize) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which lives across the call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The terminal's end-of-file character (`VEOF`, `^D` unless changed), which a reader in
/// canonical mode takes as the end of its input on an empty line.
pub(super) fn eof_char(master: &File) -> u8 {
    // SAFETY: tcgetattr writes one termios into the zeroed value it is given.
    unsafe {
        let mut termios: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(master.as_raw_fd(), &mut termios) == 0 {
            termios.c_cc[libc::VEOF]
        } else {
            4
        }
    }
}

/// A new pseudo-terminal of `size`: its master (non-blocking) and its slave, opened through
/// the master (`TIOCGPTPEER`, Linux 4.13), so no path in /dev/pts is looked up.
fn open_pty(size: WindowSize) -> io::Result<(File, OwnedFd)> {
    // SAFETY: open returns a new descriptor or -1; the path is a NUL-terminated literal.
    let master = unsafe {
        libc::open(
            c"/dev/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    };
    if master < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `master` is a descriptor we just opened and own.
    let master = unsafe { File::from_raw_fd(master) };
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from the pointer, which lives across the call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: TIOCGPTPEER returns a new descriptor for the slave or -1; it takes open flags.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `slave` is a descriptor the ioctl just opened for us.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    set_window_size(&master, size)?;
    Ok((master, slave))
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> io::Result<(File, File)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both are new descriptors that nothing else owns.
    Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

/// Sets O_NONBLOCK on a descriptor of ours.
pub(super) fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor the caller owns; F_GETFL/F_SETFL touch no memory.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
