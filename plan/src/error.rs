use std::fmt;
use std::path::PathBuf;

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
    /// Not a size such as `256M` (units of 1024, as docker reads them).
    #[error("{0:?} is not a size: expected a number with an optional unit such as 256M or 1G")]
    NotASize(String),
    /// A size with a unit other than b, k, m, g or t.
    #[error("{text:?} has an unknown unit {unit:?}: use b, k, m, g or t")]
    SizeUnit {
        /// The size as given.
        text: String,
        /// Its unit.
        unit: String,
    },
    /// A size past `u64::MAX` bytes, or negative.
    #[error("{0:?} is out of range")]
    SizeOutOfRange(String),
    /// Not a positive number of CPUs.
    #[error("{0:?} is not a CPU count: expected a positive number such as 1.5")]
    NotACpuCount(String),
    /// Not a positive duration.
    #[error("{0:?}: expected a positive duration such as 30, 30s, 500ms or 2m")]
    NotADuration(String),
    /// A duration past what a `Duration` holds.
    #[error("{0:?} is too long for a timeout")]
    DurationTooLong(String),
    /// A user name the image's `/etc/passwd` does not have.
    #[error("unknown user {name:?}: no such entry in {}/etc/passwd; give a numeric uid or a user of the image", .rootfs.display())]
    UnknownUser {
        /// The name.
        name: String,
        /// The image.
        rootfs: PathBuf,
    },
    /// A user whose `/etc/passwd` entry has no numeric uid.
    #[error("user {0:?} has a malformed entry in the image's /etc/passwd")]
    MalformedUser(String),
    /// A group name the image's `/etc/group` does not have.
    #[error("unknown group {name:?}: no such entry in {}/etc/group; give a numeric gid or a group of the image", .rootfs.display())]
    UnknownGroup {
        /// The name.
        name: String,
        /// The image.
        rootfs: PathBuf,
    },
    /// The image's `/etc/passwd` or `/etc/group` exists but cannot be read.
    #[error("cannot read the image's {file} in {}: {source}", .rootfs.display())]
    ImageFile {
        /// The file inside the image.
        file: &'static str,
        /// The image.
        rootfs: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Saved Plans that are not the JSON `capsule plan` prints.
    #[error("{what}{source}")]
    PlansJson {
        /// Which shape was being read (`"in-order group: "`), or nothing.
        what: &'static str,
        /// Where and why.
        source: serde_json::Error,
    },
    /// Saved JSON that is neither a Plan, an array of Plans nor an in-order group.
    #[error(
        "expected a Plan (an object), an array of Plans or {{\"inOrder\": [Plans]}}, as `capsule plan` prints"
    )]
    PlansShape,
    /// A group without a Plan.
    #[error("the group has no Plan to launch; give at least one")]
    EmptyGroup,
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
