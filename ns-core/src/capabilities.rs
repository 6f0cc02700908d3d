//! Applies the five capability sets of the container process ([`Capabilities`], data of the
//! `plan` crate) with raw `capset(2)` and `prctl(2)` calls on bitmasks prepared in the parent,
//! because `caps`' own setters work on hash sets and the child must not allocate.

use plan::{CapMask, Capabilities};

/// `cap_user_header_t` and `cap_user_data_t` of capset(2), version 3 (two 32-bit words).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Drops every capability missing from the bounding set. Needs CAP_SETPCAP, so it runs before
/// the user change. `last_cap` is the host's `/proc/sys/kernel/cap_last_cap`.
pub(crate) fn drop_bounding(caps: &Capabilities, last_cap: u8) -> Result<(), (u32, i32)> {
    for cap in 0..=last_cap {
        if caps.bounding.0 & (1u64 << cap) != 0 {
            continue;
        }
        // SAFETY: PR_CAPBSET_DROP takes a capability number and touches no memory of ours.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
        if rc != 0 {
            return Err((u32::from(cap), crate::sys::errno()));
        }
    }
    Ok(())
}

/// Sets effective, permitted and inheritable, then raises the ambient set.
pub(crate) fn apply_sets(caps: &Capabilities) -> Result<(), (u32, i32)> {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let word = |m: CapMask, i: u32| (m.0 >> (32 * i)) as u32;
    let data: [CapData; 2] = [0, 1].map(|i| CapData {
        effective: word(caps.effective, i),
        permitted: word(caps.permitted, i),
        inheritable: word(caps.inheritable, i),
    });
    // SAFETY: header and data are the version-3 layouts capset(2) expects, live for the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc != 0 {
        return Err((u32::MAX, crate::sys::errno()));
    }
    for cap in 0..64u32 {
        if caps.ambient.0 & (1u64 << cap) == 0 {
            continue;
        }
        // SAFETY: PR_CAP_AMBIENT_RAISE takes a capability number and touches no memory.
        let rc = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                libc::c_ulong::from(cap),
                0,
                0,
            )
        };
        if rc != 0 {
            return Err((cap, crate::sys::errno()));
        }
    }
    Ok(())
}

/// The calling process's bounding set: the capabilities it could give a child at all.
pub(crate) fn own_bounding() -> CapMask {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapBnd:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .map_or(CapMask(u64::MAX), CapMask)
}

/// The highest capability number this kernel knows.
pub(crate) fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}
