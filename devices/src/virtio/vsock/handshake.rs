//! The host side's connect line, Firecracker's hybrid vsock convention (Firecracker's
//! `docs/vsock.md`): a host process connects to the device's Unix socket and writes
//! `CONNECT <port>\n`; once the guest accepts, it reads `OK <host port>\n` and then the stream.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;

/// The longest connect line, newline included: `CONNECT 4294967295\n` is 19 bytes; a peer
/// that sends more without a newline is not speaking the protocol, and buffering it would
/// let it make the VMM hold bytes for nothing.
pub const MAX_LINE: usize = 32;

/// A host connection that has not finished its connect line.
#[derive(Debug)]
pub struct Handshake {
    /// The host process's connection; the connection's own once the line is read.
    pub stream: UnixStream,
    line: Vec<u8>,
}

/// Where a handshake stands after reading what the socket had.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// The line is not complete yet: wait for more.
    Waiting,
    /// `CONNECT <port>\n` arrived: connect to the guest's `port`.
    Connect(u32),
    /// The peer closed, failed, or sent something else (the reason): close it.
    Failed(String),
}

impl Handshake {
    /// A handshake on `stream` (non-blocking).
    pub fn new(stream: UnixStream) -> Self {
        Self {
            stream,
            line: Vec::with_capacity(MAX_LINE),
        }
    }

    /// Reads what the socket has, up to the newline. One byte at a time, so that the
    /// stream data a client sends right after its line stays in the socket for the guest.
    pub fn read(&mut self) -> Progress {
        let mut byte = [0u8];
        loop {
            match self.stream.read(&mut byte) {
                Ok(0) => return Progress::Failed("closed before its connect line".into()),
                Ok(_) if byte[0] == b'\n' => return parse(&self.line),
                Ok(_) if self.line.len() + 1 >= MAX_LINE => {
                    return Progress::Failed(format!("no newline in its first {MAX_LINE} bytes"));
                }
                Ok(_) => self.line.push(byte[0]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::Waiting,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Progress::Failed(format!("read failed: {e}")),
            }
        }
    }
}

/// Parses a connect line without its newline: `CONNECT ` and a decimal `u32`.
pub fn parse(line: &[u8]) -> Progress {
    let port = line
        .strip_prefix(b"CONNECT ")
        .filter(|digits| !digits.is_empty() && digits.iter().all(u8::is_ascii_digit))
        .and_then(|digits| std::str::from_utf8(digits).ok())
        .and_then(|digits| digits.parse::<u32>().ok());
    match port {
        Some(port) => Progress::Connect(port),
        None => Progress::Failed(format!(
            "expected `CONNECT <port>`, got {:?}",
            String::from_utf8_lossy(line)
        )),
    }
}

/// The line that tells the host process the guest accepted: `OK <host port>\n`.
pub fn ok_line(local_port: u32) -> String {
    format!("OK {local_port}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connect_line_gives_its_port() {
        assert_eq!(parse(b"CONNECT 1024"), Progress::Connect(1024));
        assert_eq!(parse(b"CONNECT 4294967295"), Progress::Connect(u32::MAX));
    }

    #[test]
    fn anything_else_is_refused() {
        for line in [
            &b"CONNECT"[..],
            b"CONNECT ",
            b"CONNECT 4294967296",
            b"CONNECT -1",
            b"CONNECT +1",
            b"CONNECT 12 ",
            b"connect 12",
            b"OK 12",
            b"CONNECT 1\xff",
        ] {
            assert!(
                matches!(parse(line), Progress::Failed(_)),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn data_after_the_line_stays_in_the_socket() {
        let (mut client, server) = UnixStream::pair().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut handshake = Handshake::new(server);
        io::Write::write_all(&mut client, b"CONNECT 7\nhello").unwrap();
        assert_eq!(handshake.read(), Progress::Connect(7));
        let mut rest = [0u8; 5];
        handshake.stream.read_exact(&mut rest).unwrap();
        assert_eq!(&rest, b"hello");
    }

    #[test]
    fn a_line_in_pieces_waits_then_connects() {
        let (mut client, server) = UnixStream::pair().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut handshake = Handshake::new(server);
        io::Write::write_all(&mut client, b"CONN").unwrap();
        assert_eq!(handshake.read(), Progress::Waiting);
        io::Write::write_all(&mut client, b"ECT 52\n").unwrap();
        assert_eq!(handshake.read(), Progress::Connect(52));
    }

    #[test]
    fn a_line_without_newline_is_cut_off_at_the_bound() {
        let (mut client, server) = UnixStream::pair().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut handshake = Handshake::new(server);
        io::Write::write_all(&mut client, &[b'C'; 100]).unwrap();
        assert!(matches!(handshake.read(), Progress::Failed(_)));
        assert!(handshake.line.len() < MAX_LINE);
    }
}
