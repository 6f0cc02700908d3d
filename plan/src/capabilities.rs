//! The five capability sets of a process (capabilities(7)), as data: names and numbers come
//! from the `caps` crate; `ns-core` applies the sets.

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
    /// What the process and its children can ever gain.
    pub bounding: CapMask,
    /// What the kernel checks.
    pub effective: CapMask,
    /// What the process may make effective.
    pub permitted: CapMask,
    /// What survives execve(2) into a file's inheritable set.
    pub inheritable: CapMask,
    /// What survives execve(2) for a program without file capabilities.
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
    /// Whether `cap` is in the set.
    pub fn contains(self, cap: Capability) -> bool {
        self.0 & cap.bitmask() != 0
    }

    /// The `CAP_*` names in the set, sorted.
    pub fn names(self) -> Vec<String> {
        let mut names: Vec<String> = caps::all()
            .into_iter()
            .filter(|c| self.contains(*c))
            .map(|c| c.to_string())
            .collect();
        names.sort();
        names
    }

    /// The set as the `caps` crate's hash set.
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
    caps::to_canonical(name)
        .parse()
        .map_err(|_| Error::UnknownCapability(name.to_owned()))
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
