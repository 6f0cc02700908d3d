//! Resource limits (setrlimit(2)) of the container process.

use serde::{Deserialize, Serialize};

use crate::Error;

/// One limit; `resource` is a `libc::RLIMIT_*` number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    pub resource: i32,
    pub soft: u64,
    pub hard: u64,
}

/// setrlimit's resource type: glibc's own, a plain int in musl (the static `capsule` for the
/// lab and guests).
#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

const NAMES: &[(&str, Resource)] = &[
    ("AS", libc::RLIMIT_AS),
    ("CORE", libc::RLIMIT_CORE),
    ("CPU", libc::RLIMIT_CPU),
    ("DATA", libc::RLIMIT_DATA),
    ("FSIZE", libc::RLIMIT_FSIZE),
    ("LOCKS", libc::RLIMIT_LOCKS),
    ("MEMLOCK", libc::RLIMIT_MEMLOCK),
    ("MSGQUEUE", libc::RLIMIT_MSGQUEUE),
    ("NICE", libc::RLIMIT_NICE),
    ("NOFILE", libc::RLIMIT_NOFILE),
    ("NPROC", libc::RLIMIT_NPROC),
    ("RSS", libc::RLIMIT_RSS),
    ("RTPRIO", libc::RLIMIT_RTPRIO),
    ("RTTIME", libc::RLIMIT_RTTIME),
    ("SIGPENDING", libc::RLIMIT_SIGPENDING),
    ("STACK", libc::RLIMIT_STACK),
];

/// Parses `nofile`, `NOFILE` or `RLIMIT_NOFILE` (the names of `docker run --ulimit` and OCI).
pub fn parse_rlimit_resource(name: &str) -> Result<i32, Error> {
    let upper = name.to_ascii_uppercase();
    let short = upper.strip_prefix("RLIMIT_").unwrap_or(&upper);
    NAMES
        .iter()
        .find(|(n, _)| *n == short)
        .map(|(_, r)| *r as i32)
        .ok_or_else(|| {
            let known: Vec<_> = NAMES.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
            Error::Invalid(format!(
                "unknown rlimit {name:?}: expected one of {}",
                known.join(", ")
            ))
        })
}

/// Name of a resource number, for messages.
pub(crate) fn resource_name(resource: i32) -> &'static str {
    NAMES
        .iter()
        .find(|(_, r)| *r as i32 == resource)
        .map_or("unknown", |(n, _)| n)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_in_docker_and_oci_spellings() {
        assert_eq!(
            parse_rlimit_resource("nofile").unwrap(),
            libc::RLIMIT_NOFILE as i32
        );
        assert_eq!(
            parse_rlimit_resource("RLIMIT_NPROC").unwrap(),
            libc::RLIMIT_NPROC as i32
        );
        let err = parse_rlimit_resource("bogus").unwrap_err().to_string();
        assert!(err.contains("nofile"), "{err}");
        assert_eq!(resource_name(libc::RLIMIT_CORE as i32), "CORE");
    }
}
