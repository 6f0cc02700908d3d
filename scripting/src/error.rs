use std::fmt;

use crate::problem::Problem;

/// The exit codes of `docker run` for failures of the runtime rather than the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// The runtime itself failed, or the Plan was refused.
    Runtime = 125,
    /// The command exists but cannot be executed.
    NotExecutable = 126,
    /// The command does not exist.
    NotFound = 127,
}

/// Everything a launch can fail with, each with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Plan was refused before anything was created; one line per problem.
    #[error("the plan is invalid:\n{}", Problems(.0))]
    Invalid(Vec<Problem>),
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Container(#[from] ns_core::Error),
    #[error(transparent)]
    Cgroup(#[from] cgroup_core::Error),
    #[error(transparent)]
    Vm(#[from] kvm_core::Error),
    #[error("{0}")]
    Guest(String),
    #[error("{what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Container(ns_core::Error::CommandNotFound { .. }) => ExitCode::NotFound,
            Error::Container(ns_core::Error::CommandNotExecutable { .. }) => {
                ExitCode::NotExecutable
            }
            _ => ExitCode::Runtime,
        }
    }

    pub(crate) fn io(what: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.to_owned(),
            source,
        }
    }
}

/// An ns-core refusal without its "invalid container spec" preamble, which the author of a
/// flag or a script did not write.
pub(crate) fn ns_message(error: ns_core::Error) -> String {
    match error {
        ns_core::Error::Invalid(message) => message,
        other => other.to_string(),
    }
}
