//! What a policy and validation know about the host: plain data, detected once per launch by
//! the launcher or read from a JSON file, so that tests and `capsule plan` for another machine
//! get the same answer every time (`capsule plan --host-facts FILE.json`, a hidden flag).

use serde::{Deserialize, Serialize};

use crate::SubIdRange;

/// The host facts a script reads as `host.kvm`, `host.cpus`, ..., and Plans are validated
/// against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Host {
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
    /// The most open files a process may have (`/proc/sys/fs/nr_open`); setrlimit(2) refuses
    /// more. Absent from a facts file, the kernel's default, 1048576.
    #[serde(default = "default_nr_open")]
    pub nr_open: u64,
}

/// The kernel's default `fs.nr_open`.
fn default_nr_open() -> u64 {
    1 << 20
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
    /// The `/etc/subuid` range.
    pub uid: SubIdRange,
    /// The `/etc/subgid` range.
    pub gid: SubIdRange,
}

/// The host's KVM, as a script compares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kvm {
    /// Hardware virtualization (VMX or SVM): stock guest kernels boot.
    Hardware,
    /// PVM (`kvm_pvm`), a software KVM: stock 64-bit guest kernels hang on it.
    Pvm,
    /// No usable `/dev/kvm`.
    None,
}

impl Kvm {
    /// The name a script compares against.
    pub fn as_str(self) -> &'static str {
        match self {
            Kvm::Hardware => "hardware",
            Kvm::Pvm => "pvm",
            Kvm::None => "none",
        }
    }
}
