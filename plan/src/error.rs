use std::fmt;

use crate::Problem;

/// What building or checking a Plan can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Plan was refused before anything was created; one line per problem.
    #[error("the plan is invalid:\n{}", Problems(.0))]
    Invalid(Vec<Problem>),
    /// The Plan asks for what this build or host cannot do at all.
    #[error("{0}")]
    Unsupported(String),
    /// An rlimit name that setrlimit(2) does not know.
    #[error("unknown rlimit {name:?}: expected one of {known}")]
    UnknownRlimit {
        /// The name as given.
        name: String,
        /// The names that are known, lowercase, comma-separated.
        known: String,
    },
    /// A soft limit above its hard limit, which setrlimit(2) refuses with `EINVAL`.
    #[error("soft limit {soft} is above hard limit {hard}")]
    RlimitAboveHard {
        /// The soft limit as `ulimit` shows it.
        soft: String,
        /// The hard limit as `ulimit` shows it.
        hard: String,
    },
    /// A limit value that is neither a number nor a spelling of "no limit".
    #[error("limit {0:?}: expected a number, or -1, infinity or unlimited for no limit")]
    RlimitValue(String),
    /// A capability name that capabilities(7) does not know.
    #[error("unknown capability {0:?}: expected a name from capabilities(7) such as NET_ADMIN")]
    UnknownCapability(String),
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
