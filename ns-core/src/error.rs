use nix::errno::Errno;

/// What the caller's `attach` hook of [`crate::spawn`] may fail with: any error.
pub type AttachError = Box<dyn std::error::Error + Send + Sync>;

/// Everything that can go wrong creating or running a container.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec is inconsistent or names something that cannot exist.
    #[error("invalid container spec: {0}")]
    Invalid(String),
    /// A path in the spec holds a NUL byte and cannot be passed to the kernel.
    #[error("path {0:?} contains a NUL byte")]
    NulInPath(String),
    /// A kernel call made while preparing the container in the parent failed.
    #[error("{what}: {source}")]
    Host {
        /// What was being done.
        what: String,
        /// The errno.
        source: Errno,
    },
    /// A step inside the new container failed before the command started.
    #[error("container set-up failed: {step} {subject}: {source}")]
    Setup {
        /// The step, as a sentence fragment (`mounting`).
        step: &'static str,
        /// What it was done to (a path).
        subject: String,
        /// The errno.
        source: Errno,
    },
    /// No candidate path for the command exists in the container.
    #[error("command {command:?} not found in the container (searched {searched})")]
    CommandNotFound {
        /// The command as given.
        command: String,
        /// The paths tried, comma-separated.
        searched: String,
    },
    /// The command exists but the kernel refused to execute it.
    #[error("command {command:?} cannot be executed in the container: {source}")]
    CommandNotExecutable {
        /// The command as given.
        command: String,
        /// execve(2)'s errno.
        source: Errno,
    },
    /// The caller's hook (cgroup attach) failed while the child waited; its error.
    #[error("{0}")]
    Attach(#[source] AttachError),
    /// The container process vanished without saying why.
    #[error("the container process ended during set-up without a report (status {0})")]
    Vanished(String),
    /// The seccomp filter of the spec's profile could not be compiled.
    /// A value of the process the kernel has no name for (an rlimit).
    #[error(transparent)]
    Plan(#[from] plan::Error),
    /// The seccomp filter cannot be built.
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
}

impl Error {
    pub(crate) fn host(what: impl Into<String>, source: Errno) -> Self {
        Error::Host {
            what: what.into(),
            source,
        }
    }
}
