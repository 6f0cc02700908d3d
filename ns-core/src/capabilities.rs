//! The five capability sets of the container process.
//!
//! Names and numbers come from the `caps` crate; the sets are applied in the child with raw
//! `capset(2)` and `prctl(2)` calls on bitmasks prepared in the parent, because `caps`' own
//! setters work on hash sets and the child must not allocate.

use std::fmt;

use caps::Capability;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// A set of capabilities as the kernel's 64-bit mask; (de)serialised as a sorted list of
/// `CAP_*` names.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CapMask(pub u64);

/// The bounding, effective, permitted, inheritable and ambient sets (capabilities(7)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub bounding: CapMask,
    pub effective: CapMask,
    pub permitted: CapMask,
    pub inheritable: CapMask,
    pub ambient: CapMask,
}

/// The default set of the OCI runtime spec's sample config, which Docker and Podman also use.
const OCI_DEFAULT: &[Capability] = &[
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

impl CapMask {
    pub fn contains(self, cap: Capability) -> bool {
        self.0 & cap.bitmask() != 0
    }

    pub fn names(self) -> Vec<String> {
        let mut names: Vec<String> = caps::all()
            .into_iter()
            .filter(|c| self.contains(*c))
            .map(|c| c.to_string())
            .collect();
        names.sort();
        names
    }

    pub fn to_set(self) -> caps::CapsHashSet {
        caps::all()
            .into_iter()
            .filter(|c| self.contains(*c))
            .collect()
    }
}

impl fmt::Debug for CapMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Serialize for CapMask {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

impl<'de> Deserialize<'de> for CapMask {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        let mut mask = 0;
        for name in names {
            mask |= parse_capability(&name)
                .map_err(serde::de::Error::custom)?
                .bitmask();
        }
        Ok(CapMask(mask))
    }
}

/// Parses `NET_ADMIN`, `CAP_NET_ADMIN` or `cap_net_admin`.
pub fn parse_capability(name: &str) -> Result<Capability, Error> {
    caps::to_canonical(name).parse().map_err(|_| {
        Error::Invalid(format!(
            "unknown capability {name:?}: expected a name from capabilities(7) such as NET_ADMIN"
        ))
    })
}

impl Capabilities {
    /// The OCI default set in bounding, effective and permitted; inheritable and ambient empty.
    pub fn oci_default() -> Self {
        let mask = CapMask(OCI_DEFAULT.iter().fold(0, |m, c| m | c.bitmask()));
        Self::uniform(mask)
    }

    /// `mask` in bounding, effective and permitted.
    pub fn uniform(mask: CapMask) -> Self {
        Capabilities {
            bounding: mask,
            effective: mask,
            permitted: mask,
            inheritable: CapMask(0),
            ambient: CapMask(0),
        }
    }

    /// Every capability the `caps` crate knows.
    pub fn all() -> Self {
        Self::uniform(CapMask(caps::all().iter().fold(0, |m, c| m | c.bitmask())))
    }

    /// These sets less every capability outside `available`.
    pub fn within(self, available: CapMask) -> Self {
        let keep = |set: CapMask| CapMask(set.0 & available.0);
        Capabilities {
            bounding: keep(self.bounding),
            effective: keep(self.effective),
            permitted: keep(self.permitted),
            inheritable: keep(self.inheritable),
            ambient: keep(self.ambient),
        }
    }

    /// Adds `cap` to bounding, effective and permitted (as `--cap-add`).
    pub fn add(&mut self, cap: Capability) {
        for set in [&mut self.bounding, &mut self.effective, &mut self.permitted] {
            set.0 |= cap.bitmask();
        }
    }

    /// Makes `caps` (those of them in the permitted set) survive execve(2) for a user other
    /// than root, by adding them to the inheritable and ambient sets: such a process's
    /// permitted and effective sets after exec are its ambient set (capabilities(7),
    /// "Transformation of capabilities during execve()"), so without this the added
    /// capabilities are gone by the time the command runs. This is podman's `--cap-add` for a
    /// non-root `--user` (containers/podman#6884); docker leaves both sets empty, so its non-root
    /// users keep no capabilities.
    pub fn raise_ambient(&mut self, caps: CapMask) {
        let usable = caps.0 & self.permitted.0;
        self.inheritable.0 |= usable;
        self.ambient.0 |= usable;
    }

    /// Removes `cap` from every set (as `--cap-drop`).
    pub fn drop(&mut self, cap: Capability) {
        for set in [
            &mut self.bounding,
            &mut self.effective,
            &mut self.permitted,
            &mut self.inheritable,
            &mut self.ambient,
        ] {
            set.0 &= !cap.bitmask();
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_default_has_fourteen_capabilities_and_no_sys_admin() {
        let caps = Capabilities::oci_default();
        assert_eq!(caps.bounding.0.count_ones(), 14);
        assert!(!caps.effective.contains(Capability::CAP_SYS_ADMIN));
        assert!(caps.effective.contains(Capability::CAP_KILL));
        assert_eq!(caps.ambient.0, 0);
    }

    #[test]
    fn add_and_drop_touch_the_right_sets() {
        let mut caps = Capabilities::oci_default();
        caps.add(Capability::CAP_SYS_ADMIN);
        caps.drop(Capability::CAP_CHOWN);
        assert!(caps.bounding.contains(Capability::CAP_SYS_ADMIN));
        assert!(!caps.inheritable.contains(Capability::CAP_SYS_ADMIN));
        assert!(!caps.permitted.contains(Capability::CAP_CHOWN));
    }

    #[test]
    fn raise_ambient_takes_only_permitted_capabilities() {
        let mut caps = Capabilities::oci_default();
        caps.drop(Capability::CAP_NET_RAW);
        let asked = Capability::CAP_NET_BIND_SERVICE.bitmask() | Capability::CAP_NET_RAW.bitmask();
        let (effective, permitted) = (caps.effective, caps.permitted);
        caps.raise_ambient(CapMask(asked));
        let bind = CapMask(Capability::CAP_NET_BIND_SERVICE.bitmask());
        assert_eq!((caps.inheritable, caps.ambient), (bind, bind));
        assert_eq!((caps.effective, caps.permitted), (effective, permitted));
    }

    #[test]
    fn names_parse_in_every_spelling_and_round_trip_through_json() {
        for name in ["NET_ADMIN", "CAP_NET_ADMIN", "cap_net_admin"] {
            assert_eq!(parse_capability(name).unwrap(), Capability::CAP_NET_ADMIN);
        }
        assert!(parse_capability("FLY").is_err());
        let caps = Capabilities::oci_default();
        let json = serde_json::to_string(&caps).unwrap();
        assert!(json.contains("\"CAP_CHOWN\""));
        assert_eq!(serde_json::from_str::<Capabilities>(&json).unwrap(), caps);
    }
}
