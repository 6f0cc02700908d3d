//! Resource limits (setrlimit(2)) by name, as `docker run --ulimit` and the OCI runtime spec
//! spell them, and their values.

use crate::Error;

/// setrlimit's resource type: glibc's own, a plain int in musl (the static `capsule-init`).
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
            Error::UnknownRlimit {
                name: name.to_owned(),
                known: known.join(", "),
            }
        })
}

/// `RLIM_INFINITY`: the value that means no limit (getrlimit(2)).
pub const RLIM_INFINITY: u64 = libc::RLIM_INFINITY;

/// Parses one value of `docker run --ulimit TYPE=SOFT[:HARD]`: a number of the resource's unit,
/// or no limit ([`RLIM_INFINITY`]) spelled `-1` (docker's go-units `ParseUlimit`, podman),
/// `infinity` (go-units) or `unlimited` (what the shell's `ulimit` prints and takes).
///
/// # Errors
///
/// [`Error::RlimitValue`] for anything else, negative numbers other than -1 included.
pub fn parse_rlimit_value(value: &str) -> Result<u64, Error> {
    match value {
        "infinity" | "unlimited" => Ok(RLIM_INFINITY),
        _ => value.parse::<i64>().ok().map_or_else(
            || value.parse::<u64>().map_err(|_| bad_value(value)),
            |n| rlimit_value(n).map_err(|_| bad_value(value)),
        ),
    }
}

/// A limit given as a signed number, as a policy script's `rlimit(name, soft, hard)` and
/// docker's API take it: `-1` is no limit ([`RLIM_INFINITY`]).
///
/// # Errors
///
/// [`Error::RlimitValue`] for a negative number other than -1.
pub fn rlimit_value(value: i64) -> Result<u64, Error> {
    match value {
        -1 => Ok(RLIM_INFINITY),
        n => u64::try_from(n).map_err(|_| bad_value(&n.to_string())),
    }
}

/// Checks a soft and hard limit pair as setrlimit(2) would (`EINVAL` when soft > hard), so the
/// mistake is named before launch.
///
/// # Errors
///
/// [`Error::RlimitAboveHard`] naming both values.
pub fn check_rlimit(soft: u64, hard: u64) -> Result<(), Error> {
    if soft > hard {
        return Err(Error::RlimitAboveHard {
            soft: show_rlimit_value(soft),
            hard: show_rlimit_value(hard),
        });
    }
    Ok(())
}

/// A limit as `ulimit` shows it: a number, or `unlimited` for [`RLIM_INFINITY`].
pub fn show_rlimit_value(value: u64) -> String {
    match value {
        RLIM_INFINITY => "unlimited".to_owned(),
        n => n.to_string(),
    }
}

fn bad_value(value: &str) -> Error {
    Error::RlimitValue(value.to_owned())
}

/// The name of a `libc::RLIMIT_*` number without its prefix (`NOFILE`), for messages.
pub fn rlimit_name(resource: i32) -> &'static str {
    NAMES
        .iter()
        .find(|(_, r)| *r as i32 == resource)
        .map_or("unknown", |(n, _)| n)
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
        assert_eq!(rlimit_name(libc::RLIMIT_CORE as i32), "CORE");
    }

    #[test]
    fn every_spelling_of_unlimited_is_rlim_infinity() {
        for value in ["-1", "infinity", "unlimited"] {
            assert_eq!(parse_rlimit_value(value).unwrap(), RLIM_INFINITY, "{value}");
        }
        assert_eq!(rlimit_value(-1).unwrap(), RLIM_INFINITY);
        assert_eq!(parse_rlimit_value("8192").unwrap(), 8192);
        assert_eq!(parse_rlimit_value(&u64::MAX.to_string()).unwrap(), u64::MAX);
        assert_eq!(rlimit_value(0).unwrap(), 0);
        for bad in ["-2", "", "1k", "Unlimited", "-"] {
            let err = parse_rlimit_value(bad).unwrap_err().to_string();
            assert!(err.contains("-1, infinity or unlimited"), "{bad}: {err}");
        }
        assert!(rlimit_value(-2).is_err());
    }

    #[test]
    fn soft_must_not_exceed_hard() {
        assert!(check_rlimit(8192, RLIM_INFINITY).is_ok());
        assert!(check_rlimit(RLIM_INFINITY, RLIM_INFINITY).is_ok());
        let err = check_rlimit(RLIM_INFINITY, 10).unwrap_err().to_string();
        assert!(
            err.contains("soft limit unlimited is above hard limit 10"),
            "{err}"
        );
    }
}
