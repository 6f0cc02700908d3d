//! The guest agent: capsule-init serving one launch over a vsock connection.
//!
//! capsule-init listens on vsock port [`AGENT_PORT`](crate::AGENT_PORT); the host connects
//! (through the vsock device's Unix socket and Firecracker's `CONNECT 1024` handshake) and the
//! two sides speak the framed protocol of [`wire`]:
//!
//! | step | guest (agent)                       | host (capsule)                          |
//! |------|-------------------------------------|-----------------------------------------|
//! | 1    | `Hello` (its version)               | `Hello` (its version)                   |
//! | 2    |                                     | `Run` (the workload, stdin, terminal)   |
//! | 3    | `Started` (the command's pid)       |                                         |
//! | 4    | `Stdout`, `Stderr` ...              | `Stdin`, `StdinEof`, `Signal`, `Resize` |
//! | 5    | `Exited` (code, signal, OOM)        |                                         |
//!
//! A side that receives a `Hello` of another major version refuses the session (the guest
//! answers `Error`). A setup failure in the guest is an `Error` followed by `Exited` with
//! status 125.
//!
//! [`serve`] is the guest's side, generic over the connection and over the way the workload
//! starts ([`Runner`]: capsule-init's own command, or the container of a kata launch), so the
//! host's tests run the real engine over a socketpair.

mod message;
mod serve;
mod stdio;
#[cfg(test)]
mod tests;
pub mod wire;

pub use message::{ExitReport, GuestMessage, HostMessage, RunRequest, Version, WindowSize};
pub use serve::{Runner, Running, STDIN_LIMIT, serve};
pub use stdio::ChildStdio;
pub use wire::{Decoder, ProtocolError};

/// The protocol version this build speaks; a peer of another major version is refused.
pub const VERSION: Version = Version { major: 1, minor: 0 };

/// The most bytes of one `Stdout`, `Stderr` or `Stdin` message: 64 KiB.
pub const MAX_DATA: usize = 64 << 10;

/// The most bytes of a `Run` message's JSON: 4 MiB, twice Linux's default `ARG_MAX` (the
/// arguments and environment a command can be given), JSON's escaping included.
pub const MAX_RUN: usize = 4 << 20;

/// The most bytes of an `Error` message's text: 4 KiB.
pub const MAX_ERROR: usize = 4 << 10;
