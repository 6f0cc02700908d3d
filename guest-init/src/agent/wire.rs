//! The agent protocol's frames: an 8-byte header, then the payload.
//!
//! ```text
//! byte 0     the message kind (guest to host 0x01..=0x06, host to guest 0x81..=0x86)
//! bytes 1-3  zero (refused otherwise)
//! bytes 4-7  the payload's length in bytes, u32 little-endian
//! ```
//!
//! Every kind has a largest payload ([`max_payload`]), checked as soon as the header is in and
//! before a byte of the payload is allocated, so a hostile peer can make the reader hold at
//! most one frame of its kind: [`MAX_RUN`](super::MAX_RUN) from the host,
//! [`MAX_DATA`](super::MAX_DATA) plus the header from the guest.

use std::io::{self, Read};

/// The header's length in bytes.
pub const HEADER_LEN: usize = 8;

/// Message kinds, guest to host.
pub mod kind {
    /// `Hello`: the guest's version.
    pub const HELLO: u8 = 0x01;
    /// `Started`: the command runs, with its pid.
    pub const STARTED: u8 = 0x02;
    /// `Stdout`: bytes the command wrote to its stdout (or its terminal).
    pub const STDOUT: u8 = 0x03;
    /// `Stderr`: bytes the command wrote to its stderr.
    pub const STDERR: u8 = 0x04;
    /// `Exited`: how the command ended.
    pub const EXITED: u8 = 0x05;
    /// `Error`: what failed in the guest, as text.
    pub const ERROR: u8 = 0x06;
    /// `Hello`: the host's version.
    pub const HOST_HELLO: u8 = 0x81;
    /// `Run`: the workload, as JSON.
    pub const RUN: u8 = 0x82;
    /// `Stdin`: bytes for the command's stdin.
    pub const STDIN: u8 = 0x83;
    /// `StdinEof`: the host's stdin ended.
    pub const STDIN_EOF: u8 = 0x84;
    /// `Signal`: a signal for the command.
    pub const SIGNAL: u8 = 0x85;
    /// `Resize`: the host terminal's new size.
    pub const RESIZE: u8 = 0x86;
}

/// The name of a message kind, for errors.
pub fn kind_name(kind: u8) -> &'static str {
    match kind {
        kind::HELLO | kind::HOST_HELLO => "Hello",
        kind::STARTED => "Started",
        kind::STDOUT => "Stdout",
        kind::STDERR => "Stderr",
        kind::EXITED => "Exited",
        kind::ERROR => "Error",
        kind::RUN => "Run",
        kind::STDIN => "Stdin",
        kind::STDIN_EOF => "StdinEof",
        kind::SIGNAL => "Signal",
        kind::RESIZE => "Resize",
        _ => "unknown",
    }
}

/// The payload lengths a kind allows: exactly `len`, or anything up to `len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadLen {
    /// Exactly this many bytes.
    Exactly(usize),
    /// At most this many bytes.
    AtMost(usize),
}

/// The payload lengths of `kind`; `None` for a kind this version does not know.
pub fn max_payload(kind: u8) -> Option<PayloadLen> {
    use PayloadLen::{AtMost, Exactly};
    Some(match kind {
        kind::HELLO | kind::HOST_HELLO => Exactly(4),
        kind::STARTED => Exactly(4),
        kind::STDOUT | kind::STDERR | kind::STDIN => AtMost(super::MAX_DATA),
        kind::EXITED => Exactly(8),
        kind::ERROR => AtMost(super::MAX_ERROR),
        kind::RUN => AtMost(super::MAX_RUN),
        kind::STDIN_EOF => Exactly(0),
        kind::SIGNAL => Exactly(4),
        kind::RESIZE => Exactly(4),
        _ => return None,
    })
}

/// What is wrong with the bytes a peer sent, or with the connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Reading or writing the connection failed.
    #[error("the agent connection failed: {0}")]
    Io(#[from] io::Error),
    /// The peer closed the connection between messages.
    #[error("the connection closed before the session ended")]
    Closed,
    /// The peer closed the connection in the middle of a message.
    #[error(
        "a truncated {kind} message: the connection closed after {got} of its {expected} bytes"
    )]
    Truncated {
        /// The kind's name (`"unknown"` when the header itself was cut).
        kind: &'static str,
        /// The bytes of the frame (header included) that arrived.
        got: usize,
        /// The frame's length, header included (the header's alone when it was cut).
        expected: usize,
    },
    /// A kind this version does not know, or one the other side sends.
    #[error("a message of unknown type 0x{0:02x}")]
    UnknownKind(u8),
    /// The header's reserved bytes were not zero.
    #[error("a {kind} message header with non-zero reserved bytes {reserved:02x?}")]
    Reserved {
        /// The kind's name.
        kind: &'static str,
        /// The reserved bytes as sent.
        reserved: [u8; 3],
    },
    /// A payload longer than its kind allows.
    #[error("a {kind} message of {len} bytes (at most {max} allowed)")]
    TooLong {
        /// The kind's name.
        kind: &'static str,
        /// The length the header announced.
        len: u32,
        /// The kind's limit.
        max: usize,
    },
    /// A fixed-size payload of the wrong size.
    #[error("a {kind} message of {len} bytes ({expected} expected)")]
    BadLength {
        /// The kind's name.
        kind: &'static str,
        /// The length the header announced.
        len: u32,
        /// The kind's size.
        expected: usize,
    },
    /// A payload whose content is not what its kind holds.
    #[error("a {kind} message that does not parse: {reason}")]
    BadPayload {
        /// The kind's name.
        kind: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The peer speaks another major version.
    #[error(
        "protocol version {peer} (this side speaks {ours}); use a guest initramfs built with this capsule (`cargo xtask guest`)"
    )]
    Version {
        /// The peer's version.
        peer: super::Version,
        /// This side's.
        ours: super::Version,
    },
    /// A message that is valid but not at this point of the session.
    #[error("a {kind} message {when}")]
    Unexpected {
        /// The kind's name.
        kind: &'static str,
        /// Where in the session it came (`"before Hello"`).
        when: &'static str,
    },
}

/// Writes one frame: the header for `kind` and `payload`, then `payload`, appended to `out`.
///
/// # Panics
///
/// When `payload` is longer than `u32::MAX`: the senders build payloads within their
/// kinds' limits.
pub fn encode_frame(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("a payload within its kind's limit");
    out.push(kind);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Reads frames from a byte stream, blocking or not, one header and payload at a time: the
/// header is checked (known kind for `accept`, zero reserved bytes, length within the kind's
/// bound) before the payload's buffer is allocated.
#[derive(Debug)]
pub struct Decoder {
    /// Which kinds this side receives.
    accept: fn(u8) -> bool,
    header: [u8; HEADER_LEN],
    header_got: usize,
    /// The current frame's kind and payload, once its header checked out.
    payload: Option<(u8, Vec<u8>, usize)>,
}

impl Decoder {
    /// A decoder for the frames the host receives (guest kinds).
    pub fn for_host() -> Decoder {
        Decoder::new(|k| k < 0x80)
    }

    /// A decoder for the frames the guest receives (host kinds).
    pub fn for_guest() -> Decoder {
        Decoder::new(|k| k >= 0x80)
    }

    fn new(accept: fn(u8) -> bool) -> Decoder {
        Decoder {
            accept,
            header: [0; HEADER_LEN],
            header_got: 0,
            payload: None,
        }
    }

    /// Reads from `r` until a frame is complete (`Some(kind, payload)`) or `r` has nothing
    /// more now (`None`: `WouldBlock` on a non-blocking stream). Never reads past the end of
    /// the current frame, so what follows stays in the stream.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::Closed`] at the end of the stream between frames,
    /// [`ProtocolError::Truncated`] inside one, a header error ([`ProtocolError::UnknownKind`],
    /// [`ProtocolError::Reserved`], [`ProtocolError::TooLong`], [`ProtocolError::BadLength`])
    /// as soon as the header is in, [`ProtocolError::Io`] for any other read error.
    pub fn read_frame(
        &mut self,
        r: &mut impl Read,
    ) -> Result<Option<(u8, Vec<u8>)>, ProtocolError> {
        loop {
            if let Some((kind, payload, got)) = &mut self.payload {
                if *got == payload.len() {
                    let (kind, payload, _) = self.payload.take().expect("checked above");
                    self.header_got = 0;
                    return Ok(Some((kind, payload)));
                }
                let expected = HEADER_LEN + payload.len();
                let n = match read_some(r, &mut payload[*got..]) {
                    Ok(Some(n)) => n,
                    Ok(None) => return Ok(None),
                    Err(e) => return Err(e),
                };
                if n == 0 {
                    return Err(ProtocolError::Truncated {
                        kind: kind_name(*kind),
                        got: HEADER_LEN + *got,
                        expected,
                    });
                }
                *got += n;
                continue;
            }
            let n = match read_some(r, &mut self.header[self.header_got..]) {
                Ok(Some(n)) => n,
                Ok(None) => return Ok(None),
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Err(if self.header_got == 0 {
                    ProtocolError::Closed
                } else {
                    ProtocolError::Truncated {
                        kind: "unknown",
                        got: self.header_got,
                        expected: HEADER_LEN,
                    }
                });
            }
            self.header_got += n;
            if self.header_got == HEADER_LEN {
                let (kind, len) = self.check_header()?;
                self.payload = Some((kind, vec![0; len], 0));
            }
        }
    }

    fn check_header(&self) -> Result<(u8, usize), ProtocolError> {
        let h = &self.header;
        let kind = h[0];
        let bound = max_payload(kind)
            .filter(|_| (self.accept)(kind))
            .ok_or(ProtocolError::UnknownKind(kind))?;
        let name = kind_name(kind);
        let reserved = [h[1], h[2], h[3]];
        if reserved != [0; 3] {
            return Err(ProtocolError::Reserved {
                kind: name,
                reserved,
            });
        }
        let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let as_usize = usize::try_from(len).unwrap_or(usize::MAX);
        match bound {
            PayloadLen::Exactly(expected) if as_usize != expected => {
                Err(ProtocolError::BadLength {
                    kind: name,
                    len,
                    expected,
                })
            }
            PayloadLen::AtMost(max) if as_usize > max => Err(ProtocolError::TooLong {
                kind: name,
                len,
                max,
            }),
            _ => Ok((kind, as_usize)),
        }
    }
}

/// One read: `Some(n)` (0 at the end of the stream), `None` when a non-blocking stream has
/// nothing now; interrupted reads are retried.
fn read_some(r: &mut impl Read, buf: &mut [u8]) -> Result<Option<usize>, ProtocolError> {
    loop {
        match r.read(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(ProtocolError::Io(e)),
        }
    }
}
