//! Resource limits (setrlimit(2)) of the container process.

use serde::{Deserialize, Serialize};

/// One limit; `resource` is a `libc::RLIMIT_*` number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// The `libc::RLIMIT_*` number ([`plan::parse_rlimit_resource`] of a name).
    pub resource: i32,
    /// The soft limit, in the resource's unit.
    pub soft: u64,
    /// The hard limit, in the resource's unit.
    pub hard: u64,
}

/// setrlimit's resource type: glibc's own, a plain int in musl (the static `capsule-init`).
#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

/// Applies every limit; runs in the child before privileges are dropped, so hard limits can
/// still be raised. Returns the index of the limit that failed and errno.
pub(crate) fn apply(limits: &[Rlimit]) -> Result<(), (u32, i32)> {
    for (i, limit) in limits.iter().enumerate() {
        let value = libc::rlimit {
            rlim_cur: limit.soft,
            rlim_max: limit.hard,
        };
        // SAFETY: `value` is a valid rlimit for the duration of the call.
        let rc = unsafe { libc::setrlimit(limit.resource as Resource, &value) };
        if rc != 0 {
            return Err((i as u32, crate::sys::errno()));
        }
    }
    Ok(())
}
