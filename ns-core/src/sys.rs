//! Small conversions between Rust paths and the C strings the container child passes to the
//! kernel. Everything the child needs is converted here, in the parent, because the child runs
//! between `clone` and `execve` of a possibly multi-threaded program and must not allocate.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::Error;

pub(crate) fn cstring(s: &str) -> Result<CString, Error> {
    CString::new(s).map_err(|_| Error::NulInPath(s.to_owned()))
}

pub(crate) fn cpath(p: &Path) -> Result<CString, Error> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| Error::NulInPath(p.display().to_string()))
}

/// The calling thread's errno after a failed libc call.
pub(crate) fn errno() -> i32 {
    nix::errno::Errno::last_raw()
}
