//! The agent protocol's messages, typed, and their payloads ([`wire`](super::wire) frames
//! them).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::wire::{ProtocolError, encode_frame, kind, kind_name};
use crate::Workload;

/// A protocol version: sides of one major version understand each other; a minor version
/// only adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    /// Changes that the other side must know about.
    pub major: u16,
    /// Additions an older peer can ignore.
    pub minor: u16,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A terminal's size in character cells (`struct winsize`'s `ws_row`, `ws_col`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// What the host asks the guest to run: the agent's first message after `Hello`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunRequest {
    /// The process, its seccomp filter, the hostname and, for kata, the container.
    pub workload: Workload,
    /// Whether `Stdin` messages follow (`-i`); without, the command's stdin is at its end
    /// at once.
    pub stdin: bool,
    /// A terminal (`-t`) of this size: the command's stdin, stdout and stderr are the slave
    /// of a pseudo-terminal, and its output arrives as `Stdout` only.
    pub terminal: Option<WindowSize>,
}

/// How the command ended, as the guest reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitReport {
    /// The shell's status: the exit code, 128 + N for signal N, 127 (not found), 126 (not
    /// executable), 125 (the guest's setup failed).
    pub code: i32,
    /// The signal that killed the command, if one did.
    pub signal: Option<i32>,
    /// The kernel's OOM killer ended it (a kata container's memory limit).
    pub oom_killed: bool,
}

/// What the host sends.
#[derive(Debug, Clone, PartialEq)]
pub enum HostMessage {
    /// The host's version.
    Hello(Version),
    /// The workload (boxed: the other messages are small).
    Run(Box<RunRequest>),
    /// Bytes for the command's stdin, at most [`MAX_DATA`](super::MAX_DATA).
    Stdin(Vec<u8>),
    /// The host's stdin ended.
    StdinEof,
    /// A signal for the command (1 to 64).
    Signal(i32),
    /// The host's terminal changed size.
    Resize(WindowSize),
}

/// What the guest sends.
#[derive(Debug, Clone, PartialEq)]
pub enum GuestMessage {
    /// The guest's version.
    Hello(Version),
    /// The command runs, as this pid in the guest.
    Started {
        /// Its pid in the guest.
        pid: u32,
    },
    /// Bytes of the command's stdout (or terminal), at most [`MAX_DATA`](super::MAX_DATA).
    Stdout(Vec<u8>),
    /// Bytes of the command's stderr, at most [`MAX_DATA`](super::MAX_DATA).
    Stderr(Vec<u8>),
    /// The command ended.
    Exited(ExitReport),
    /// Something failed in the guest (before an `Exited` with 125).
    Error(String),
}

impl HostMessage {
    /// The message's name, for errors (`"Run"`).
    pub fn name(&self) -> &'static str {
        match self {
            HostMessage::Hello(_) => "Hello",
            HostMessage::Run(_) => "Run",
            HostMessage::Stdin(_) => "Stdin",
            HostMessage::StdinEof => "StdinEof",
            HostMessage::Signal(_) => "Signal",
            HostMessage::Resize(_) => "Resize",
        }
    }

    /// Appends the message's frame to `out`.
    ///
    /// # Panics
    ///
    /// When a `Stdin` payload exceeds [`MAX_DATA`](super::MAX_DATA) (the sender splits).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            HostMessage::Hello(v) => encode_frame(out, kind::HOST_HELLO, &version_bytes(*v)),
            HostMessage::Run(request) => {
                let json = serde_json::to_vec(request).expect("a RunRequest serialises");
                encode_frame(out, kind::RUN, &json)
            }
            HostMessage::Stdin(data) => {
                assert!(data.len() <= super::MAX_DATA, "Stdin split by the sender");
                encode_frame(out, kind::STDIN, data)
            }
            HostMessage::StdinEof => encode_frame(out, kind::STDIN_EOF, &[]),
            HostMessage::Signal(n) => encode_frame(out, kind::SIGNAL, &n.to_le_bytes()),
            HostMessage::Resize(size) => {
                let mut p = [0; 4];
                p[..2].copy_from_slice(&size.rows.to_le_bytes());
                p[2..].copy_from_slice(&size.cols.to_le_bytes());
                encode_frame(out, kind::RESIZE, &p)
            }
        }
    }

    /// The message of a frame the guest received ([`Decoder::for_guest`](super::Decoder)
    /// checked its kind and length).
    ///
    /// # Errors
    ///
    /// [`ProtocolError::BadPayload`] for a `Run` that is not a valid request, a `Signal`
    /// outside 1 to 64; [`ProtocolError::UnknownKind`] for a guest kind.
    pub fn decode(kind: u8, payload: &[u8]) -> Result<HostMessage, ProtocolError> {
        let bad = |reason: String| ProtocolError::BadPayload {
            kind: kind_name(kind),
            reason,
        };
        Ok(match kind {
            kind::HOST_HELLO => HostMessage::Hello(parse_version(payload)),
            kind::RUN => {
                let request: RunRequest =
                    serde_json::from_slice(payload).map_err(|e| bad(e.to_string()))?;
                request
                    .workload
                    .validate()
                    .map_err(|e| bad(e.to_string()))?;
                HostMessage::Run(Box::new(request))
            }
            kind::STDIN => HostMessage::Stdin(payload.to_vec()),
            kind::STDIN_EOF => HostMessage::StdinEof,
            kind::SIGNAL => {
                let n = i32::from_le_bytes(four(payload));
                if !(1..=64).contains(&n) {
                    return Err(bad(format!("signal {n} is not 1 to 64")));
                }
                HostMessage::Signal(n)
            }
            kind::RESIZE => {
                let p = four(payload);
                HostMessage::Resize(WindowSize {
                    rows: u16::from_le_bytes([p[0], p[1]]),
                    cols: u16::from_le_bytes([p[2], p[3]]),
                })
            }
            other => return Err(ProtocolError::UnknownKind(other)),
        })
    }
}

impl GuestMessage {
    /// The message's name, for errors (`"Stdout"`).
    pub fn name(&self) -> &'static str {
        match self {
            GuestMessage::Hello(_) => "Hello",
            GuestMessage::Started { .. } => "Started",
            GuestMessage::Stdout(_) => "Stdout",
            GuestMessage::Stderr(_) => "Stderr",
            GuestMessage::Exited(_) => "Exited",
            GuestMessage::Error(_) => "Error",
        }
    }

    /// Appends the message's frame to `out`.
    ///
    /// # Panics
    ///
    /// When `Stdout` or `Stderr` exceeds [`MAX_DATA`](super::MAX_DATA) (the sender splits).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            GuestMessage::Hello(v) => encode_frame(out, kind::HELLO, &version_bytes(*v)),
            GuestMessage::Started { pid } => encode_frame(out, kind::STARTED, &pid.to_le_bytes()),
            GuestMessage::Stdout(data) | GuestMessage::Stderr(data) => {
                assert!(data.len() <= super::MAX_DATA, "output split by the sender");
                let k = if matches!(self, GuestMessage::Stdout(_)) {
                    kind::STDOUT
                } else {
                    kind::STDERR
                };
                encode_frame(out, k, data)
            }
            GuestMessage::Exited(report) => {
                let mut p = [0; 8];
                p[..4].copy_from_slice(&report.code.to_le_bytes());
                p[4] = report
                    .signal
                    .and_then(|s| u8::try_from(s).ok())
                    .unwrap_or(0);
                p[5] = u8::from(report.oom_killed);
                encode_frame(out, kind::EXITED, &p)
            }
            GuestMessage::Error(text) => {
                // Cut at a character boundary within the limit: the host refuses longer.
                let mut end = text.len().min(super::MAX_ERROR);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                encode_frame(out, kind::ERROR, &text.as_bytes()[..end])
            }
        }
    }

    /// The message of a frame the host received ([`Decoder::for_host`](super::Decoder)
    /// checked its kind and length).
    ///
    /// # Errors
    ///
    /// [`ProtocolError::BadPayload`] for an `Exited` with a status outside 0 to 255, a signal
    /// outside 1 to 64 or a flag other than 0 or 1, reserved bytes set, an `Error` that is not
    /// UTF-8; [`ProtocolError::UnknownKind`] for a host kind.
    pub fn decode(kind: u8, payload: &[u8]) -> Result<GuestMessage, ProtocolError> {
        let bad = |reason: String| ProtocolError::BadPayload {
            kind: kind_name(kind),
            reason,
        };
        Ok(match kind {
            kind::HELLO => GuestMessage::Hello(parse_version(payload)),
            kind::STARTED => GuestMessage::Started {
                pid: u32::from_le_bytes(four(payload)),
            },
            kind::STDOUT => GuestMessage::Stdout(payload.to_vec()),
            kind::STDERR => GuestMessage::Stderr(payload.to_vec()),
            kind::EXITED => {
                let code = i32::from_le_bytes(four(payload));
                let (signal, oom, reserved) = match payload {
                    [_, _, _, _, s, o, r1, r2] => (*s, *o, [*r1, *r2]),
                    _ => return Err(bad("not 8 bytes".into())),
                };
                if !(0..=255).contains(&code) {
                    return Err(bad(format!("exit status {code} is not 0 to 255")));
                }
                if signal > 64 || oom > 1 || reserved != [0, 0] {
                    return Err(bad(format!(
                        "signal {signal}, OOM flag {oom}, reserved {reserved:?}"
                    )));
                }
                GuestMessage::Exited(ExitReport {
                    code,
                    signal: (signal != 0).then_some(i32::from(signal)),
                    oom_killed: oom == 1,
                })
            }
            kind::ERROR => GuestMessage::Error(
                String::from_utf8(payload.to_vec()).map_err(|e| bad(e.to_string()))?,
            ),
            other => return Err(ProtocolError::UnknownKind(other)),
        })
    }
}

fn version_bytes(v: Version) -> [u8; 4] {
    let mut p = [0; 4];
    p[..2].copy_from_slice(&v.major.to_le_bytes());
    p[2..].copy_from_slice(&v.minor.to_le_bytes());
    p
}

fn parse_version(payload: &[u8]) -> Version {
    let p = four(payload);
    Version {
        major: u16::from_le_bytes([p[0], p[1]]),
        minor: u16::from_le_bytes([p[2], p[3]]),
    }
}

/// The first four bytes of a payload the decoder checked to be at least that long; zeros
/// otherwise (a caller that skipped the decoder gets a value, not a panic).
fn four(payload: &[u8]) -> [u8; 4] {
    payload
        .get(..4)
        .and_then(|p| p.try_into().ok())
        .unwrap_or_default()
}
