//! What a policy knows about the host: plain data, detected once per launch or read from a
//! JSON file so that tests and `capsule plan` for another machine get the same answer every
//! time (`capsule plan --host-facts FILE.json`, a hidden flag).

use std::path::Path;

use kvm_core::KvmFlavour;
use ns_core::SubIdRange;
use serde::{Deserialize, Serialize};

use super::PolicyError;

/// The host facts a script reads as `host.kvm`, `host.cpus`, ...
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct HostFacts {
    /// `"hardware"`, `"pvm"` or `"none"`: whether stock guest kernels boot here.
    pub kvm: Kvm,
    /// `"v1"`, `"v2"`, `"hybrid"` or `"none"`.
    pub cgroups: String,
    /// CPUs this process may run on.
    pub cpus: u32,
    /// Bytes of RAM.
    pub memory_total: u64,
    /// Bytes of RAM available to new workloads without swapping (`MemAvailable`).
    pub memory_free: u64,
    /// `"x86_64"`, as Rust names architectures.
    pub arch: String,
    /// The running kernel's release, e.g. `"6.1.0-18-amd64"`.
    pub kernel: String,
    /// Whether capsule runs without root (no cgroup limits, only your own ids).
    pub rootless: bool,
    /// The host ids set aside for hardened containers' user namespaces: the first lines of
    /// the [`SUBID_OWNER`] user in `/etc/subuid` and `/etc/subgid` (subuid(5)); `null` when
    /// either file has none.
    pub subids: Option<SubIds>,
}

/// The user whose `/etc/subuid` and `/etc/subgid` lines hold the ids of hardened
/// containers run by root, as podman reads those of `containers` for `--userns=auto`. It
/// needs no account: `usermod --add-subuids` needs one, so write the lines by hand, e.g.
/// `capsule:2000000000:65536` in both files.
pub const SUBID_OWNER: &str = "capsule";

/// A range of host user ids and one of group ids, from `/etc/subuid` and `/etc/subgid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubIds {
    pub uid: SubIdRange,
    pub gid: SubIdRange,
}

impl SubIds {
    /// The [`SUBID_OWNER`] ranges of this host, when both files have one.
    pub fn detect() -> Option<SubIds> {
        Some(SubIds {
            uid: SubIdRange::read(Path::new("/etc/subuid"), SUBID_OWNER)?,
            gid: SubIdRange::read(Path::new("/etc/subgid"), SUBID_OWNER)?,
        })
    }
}

/// The host's KVM, as a script compares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kvm {
    Hardware,
    Pvm,
    None,
}

impl Kvm {
    pub fn as_str(self) -> &'static str {
        match self {
            Kvm::Hardware => "hardware",
            Kvm::Pvm => "pvm",
            Kvm::None => "none",
        }
    }
}

impl From<KvmFlavour> for Kvm {
    fn from(flavour: KvmFlavour) -> Self {
        match flavour {
            KvmFlavour::Hardware => Kvm::Hardware,
            KvmFlavour::Pvm => Kvm::Pvm,
            KvmFlavour::None => Kvm::None,
        }
    }
}

impl From<Kvm> for KvmFlavour {
    fn from(kvm: Kvm) -> Self {
        match kvm {
            Kvm::Hardware => KvmFlavour::Hardware,
            Kvm::Pvm => KvmFlavour::Pvm,
            Kvm::None => KvmFlavour::None,
        }
    }
}

impl HostFacts {
    /// The facts of this host. A fact that cannot be read reads as 0 or `""` rather than
    /// failing the launch: a policy that depends on it will refuse on its own terms.
    pub fn detect() -> Self {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        HostFacts {
            kvm: kvm_core::detect_flavour().into(),
            cgroups: cgroup_core::detect()
                .map(|layout| layout.describe().to_owned())
                .unwrap_or_else(|_| "none".to_owned()),
            cpus: std::thread::available_parallelism()
                .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
                .unwrap_or(1),
            memory_total: meminfo_bytes(&meminfo, "MemTotal"),
            memory_free: meminfo_bytes(&meminfo, "MemAvailable"),
            arch: std::env::consts::ARCH.to_owned(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
            rootless: !nix::unistd::geteuid().is_root(),
            subids: SubIds::detect(),
        }
    }

    /// Facts written as JSON, every field required, for reproducible plans.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| PolicyError::HostFacts {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// The host a Plan is validated against: these facts where a policy could have changed
    /// its mind on them (rootless, KVM), the real cgroup hierarchy for the limits.
    pub fn validation_host(&self) -> crate::Host {
        crate::Host {
            rootless: self.rootless,
            cgroups: cgroup_core::detect().ok(),
            kvm: self.kvm.into(),
        }
    }
}

/// A `/proc/meminfo` line's value in bytes (the file counts kB, meaning KiB).
fn meminfo_bytes(meminfo: &str, key: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(key)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib.saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_counts_kib() {
        let text = "MemTotal:       16384 kB\nMemFree:   1 kB\nMemAvailable:    2048 kB\n";
        assert_eq!(meminfo_bytes(text, "MemTotal"), 16 << 20);
        assert_eq!(meminfo_bytes(text, "MemAvailable"), 2 << 20);
        assert_eq!(meminfo_bytes(text, "SwapTotal"), 0);
    }

    #[test]
    fn facts_round_trip_through_json_and_refuse_unknown_fields() {
        let facts = HostFacts::detect();
        let json = serde_json::to_string(&facts).unwrap();
        assert_eq!(serde_json::from_str::<HostFacts>(&json).unwrap(), facts);
        let bad = json.replacen('{', "{\"gpu\":true,", 1);
        assert!(serde_json::from_str::<HostFacts>(&bad).is_err());
    }
}
