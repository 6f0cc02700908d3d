//! The capsule launcher: the `capsule` command line and what carries a Plan out.
//!
//! A launch flows one way: a policy script (the `policy` crate) or the flags build a
//! [`plan::Plan`]; the [`Launcher`] checks it against facts about the [`host`] and hands it to
//! the [`Backend`] of its isolation ([`backend::container`], [`backend::microvm`]), which
//! returns a [`plan::Outcome`]. Launch state that outlives the process lives in a [`state`]
//! directory per launch, so [`state::gc`] can clean up after a crash.
//!
//! Only the binary installs signal handlers: its [`SignalRouter`] passes what capsule
//! receives to each running launch's [`StopHandle`], so several launches (a group's members)
//! share one process.
//!
//! The `capsule` command line ([`cli`]) is a thin shell over these.

#![warn(missing_docs)]

pub mod backend;
pub mod cli;
mod error;
pub mod host;
mod image_files;
mod process;
pub mod root_image;
pub mod signals;
pub mod state;
pub mod virtiofsd;

pub use backend::{Backend, Launcher, Stdin};
pub use error::{Error, ExitCode};
pub use image_files::InRoot;
pub use plan::Problem;
pub use signals::{SignalRouter, StopHandle};
