use std::io;
use std::path::PathBuf;

/// What went wrong building or reading a guest launch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A [`GuestConfig`](crate::GuestConfig) field holds a value the init could not use.
    #[error("invalid guest config: {field}: {reason}")]
    InvalidConfig {
        /// The field, as a path into the JSON (`process.env[2]`).
        field: String,
        /// What is wrong with its value.
        reason: String,
    },

    /// The config is not JSON of the expected shape (unknown field, wrong type, ...).
    #[error("guest config: {0}")]
    ConfigJson(#[from] serde_json::Error),

    /// A file or directory of the root filesystem could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },

    /// The archive's destination refused bytes.
    #[error("writing the archive: {0}")]
    Write(#[source] io::Error),

    /// newc stores sizes in 32 bits.
    #[error("{path} is {size} bytes; a newc archive holds files up to 4 GiB - 1")]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
    },

    /// A file shrank between its `stat` and the end of its copy; the header already promised
    /// the old size, so the archive cannot be completed.
    #[error("{path} shrank from {expected} to {got} bytes while it was archived")]
    FileChanged {
        /// The file.
        path: PathBuf,
        /// The size in its header, bytes.
        expected: u64,
        /// The bytes that could be read.
        got: u64,
    },

    /// An entry name or symlink target the kernel's initramfs unpacker would refuse.
    #[error("archive entry {name:?}: {reason}")]
    BadEntry {
        /// The entry name or target.
        name: String,
        /// Why the kernel would refuse it.
        reason: &'static str,
    },
}
