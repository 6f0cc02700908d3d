//! Facts about this host, gathered once per launch: what a policy script reads as `host` and
//! what Plans are validated against ([`plan::Host`], plain data).

use std::path::Path;

use plan::{Host, Kvm, SUBID_OWNER, SubIdRange, SubIds};
use policy::PolicyError;

/// The facts of this host, whose cgroup hierarchy is `cgroups` (read once, by the
/// [`Launcher`](crate::Launcher)). A fact that cannot be read reads as 0 or `""` rather than
/// failing the launch: a policy that depends on it will refuse on its own terms.
pub fn probe(cgroups: Option<&cgroup_core::Layout>) -> Host {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    Host {
        kvm: kvm(kvm_core::detect_flavour()),
        cgroups: cgroups
            .map_or("none", |layout| layout.describe())
            .to_owned(),
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
        subids: subids(),
        nr_open: std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1 << 20),
    }
}

/// Facts written as JSON, every field required, for reproducible plans.
///
/// # Errors
///
/// [`PolicyError::Read`] when the file cannot be read, [`PolicyError::HostFacts`] when it is
/// not the facts' JSON.
pub fn load(path: &Path) -> Result<Host, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| PolicyError::HostFacts {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// The host's KVM as a script compares it.
fn kvm(flavour: kvm_core::KvmFlavour) -> Kvm {
    match flavour {
        kvm_core::KvmFlavour::Hardware => Kvm::Hardware,
        kvm_core::KvmFlavour::Pvm => Kvm::Pvm,
        kvm_core::KvmFlavour::None => Kvm::None,
    }
}

/// The KVM flavour a fact names, for the microVM backend's own questions.
pub(crate) fn flavour(kvm: Kvm) -> kvm_core::KvmFlavour {
    match kvm {
        Kvm::Hardware => kvm_core::KvmFlavour::Hardware,
        Kvm::Pvm => kvm_core::KvmFlavour::Pvm,
        Kvm::None => kvm_core::KvmFlavour::None,
    }
}

/// The [`SUBID_OWNER`] ranges of this host, when both `/etc/subuid` and `/etc/subgid` have
/// one.
fn subids() -> Option<SubIds> {
    Some(SubIds {
        uid: subid_range(Path::new("/etc/subuid"))?,
        gid: subid_range(Path::new("/etc/subgid"))?,
    })
}

/// The first [`SUBID_OWNER`] range of the file at `path`; `None` too when it cannot be read
/// (most hosts have no entry, or no file, for a dedicated user).
fn subid_range(path: &Path) -> Option<SubIdRange> {
    let text = std::fs::read_to_string(path).ok()?;
    SubIdRange::first_of(&text, SUBID_OWNER)
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
        let facts = probe(cgroup_core::detect().ok().as_ref());
        let json = serde_json::to_string(&facts).unwrap();
        assert_eq!(serde_json::from_str::<Host>(&json).unwrap(), facts);
        let bad = json.replacen('{', "{\"gpu\":true,", 1);
        assert!(serde_json::from_str::<Host>(&bad).is_err());
    }

    #[test]
    fn a_missing_subid_file_has_no_range() {
        assert_eq!(subid_range(Path::new("/nonexistent/subuid")), None);
    }
}
