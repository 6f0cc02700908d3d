//! capsule's launch Plans and what carries them out.
//!
//! A [`Plan`] is plain serde data, the single source of truth of a launch: which isolation,
//! which root filesystem, which process, limits and privileges. [`validate`] checks a Plan as
//! a whole against the host before anything is created; a backend ([`backend::container`])
//! runs it and returns an [`Outcome`]. Launch state that outlives the process lives in a
//! [`state`] directory per launch, so [`state::gc`] can clean up after a crash.
//!
//! A [`policy`] script (`.rhai`) computes Plans from facts about the host and the workload,
//! and points its errors, validation problems included ([`Problem`]), at its own lines.
//!
//! The `capsule` command line ([`cli`]) is a thin shell over these.

pub mod backend;
pub mod cli;
mod error;
mod outcome;
mod plan;
mod plans;
pub mod policy;
mod problem;
pub mod state;
mod units;
mod users;
mod validate;

pub use error::{Error, ExitCode};
pub use outcome::{Outcome, Peaks, Timings};
pub use plan::{
    Isolation, Mount, MountType, Network, Plan, Process, Resources, Rlimit, Root, VmSpec,
};
pub use plans::Plans;
pub use problem::Problem;
pub use units::{parse_cpus, parse_duration, parse_size};
pub use users::resolve_user;
pub use validate::{Host, validate};
