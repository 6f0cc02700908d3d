use std::fmt;
use std::path::PathBuf;

use super::Diagnostic;

/// Why a policy produced no Plan, or Plans that cannot launch.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The script or a module cannot be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The script or a module is not one capsule will run (too large, not a `.rhai` file).
    #[error("{0}")]
    Refused(String),
    /// A `--host-facts` file that is not the facts' JSON.
    #[error("host facts {}: {message}; give every field of `capsule plan --host-facts` JSON (see docs/policy.md)", .path.display())]
    HostFacts {
        /// The facts file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Syntax, runtime and validation errors, each at its place in a script.
    #[error("{}", Listing(.0))]
    Script(Vec<Diagnostic>),
}

struct Listing<'a>(&'a [Diagnostic]);

impl fmt::Display for Listing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl PolicyError {
    /// The diagnostics of a script error, one per problem; empty for the other kinds.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            PolicyError::Script(list) => list,
            _ => &[],
        }
    }
}
