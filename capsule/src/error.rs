use crate::Problem;

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
    /// The Plan was refused ([`plan::Error::Invalid`] lists every problem) or cannot be run
    /// here at all.
    #[error(transparent)]
    Plan(#[from] plan::Error),
    /// Creating or running the container failed.
    #[error(transparent)]
    Container(#[from] ns_core::Error),
    /// Creating, filling or removing the launch's cgroups failed.
    #[error(transparent)]
    Cgroup(#[from] cgroup_core::Error),
    /// Building or running the microVM failed.
    #[error(transparent)]
    Vm(#[from] kvm_core::Error),
    /// A device of the microVM (a disk, the console) could not be set up.
    #[error("the microVM's {what}: {source}")]
    Device {
        /// The device, e.g. `disk /dev/vdb (/srv/data.qcow2)`.
        what: String,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A shared directory's virtiofsd could not be started.
    #[error(transparent)]
    Virtiofsd(#[from] crate::virtiofsd::VirtiofsdError),
    /// The guest's launch archive could not be written.
    #[error("cannot pack {} for the guest: {source}", .rootfs.display())]
    GuestArchive {
        /// The root filesystem being packed.
        rootfs: std::path::PathBuf,
        /// Why.
        source: guest_init::Error,
    },
    /// The root filesystem's disk image could not be built.
    #[error(transparent)]
    RootImage(#[from] crate::root_image::Error),
    /// A file of the launch's state could not be written or removed.
    #[error("{what} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl Error {
    /// The exit code `capsule run` ends with when the launch fails this way.
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

    /// A Plan refused for `problems`.
    pub(crate) fn invalid(problems: Vec<Problem>) -> Self {
        Error::Plan(plan::Error::Invalid(problems))
    }
}
