//! The plan: which system calls, and with which arguments, the filter of one profile allows
//! for one capability set on one kernel. Plain data ([`Plan`]) that the BPF compiler
//! ([`super::bpf`]) turns into a program and the tests check without installing anything
//! (`Plan::decide`, built for tests only, is the model the compiled program must agree with).

use std::collections::{BTreeMap, BTreeSet};

use caps::{Capability, CapsHashSet};

use super::SeccompError;
use super::profile::{
    ALLOW, ALLOW_AMD64, ALLOW_SINCE_4_8, CAP_GATED, CLONE_NAMESPACE_FLAGS, PERSONALITY_ALLOWED,
    STRICT_DENIED,
};
use super::table::{max_number, number, required};

/// A one-argument condition, as in Docker's `args` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ArgCheck {
    /// Low 32 bits of argument `arg` equal `value`.
    Eq32 { arg: u8, value: u32 },
    /// Low 32 bits of argument `arg` differ from `value`.
    Ne32 { arg: u8, value: u32 },
    /// `argument & mask == 0` on all 64 bits (Docker's `SCMP_CMP_MASKED_EQ` with value 0).
    MaskedZero { arg: u8, mask: u64 },
}

impl ArgCheck {
    #[cfg(test)]
    pub(super) fn holds(self, args: &[u64; 6]) -> bool {
        match self {
            ArgCheck::Eq32 { arg, value } => args[usize::from(arg)] as u32 == value,
            ArgCheck::Ne32 { arg, value } => args[usize::from(arg)] as u32 != value,
            ArgCheck::MaskedZero { arg, mask } => args[usize::from(arg)] & mask == 0,
        }
    }
}

/// What the filter does with one call (the model the BPF program implements).
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// `SECCOMP_RET_ALLOW`.
    Allow,
    /// `SECCOMP_RET_ERRNO` with this errno.
    Errno(i32),
}

/// The whole profile resolved for one capability set and kernel.
#[derive(Debug)]
pub(super) struct Plan {
    /// Allowed whatever the arguments.
    pub(super) always: BTreeSet<i64>,
    /// Allowed when any of its checks holds (only for numbers not in `always`).
    pub(super) conditional: BTreeMap<i64, Vec<ArgCheck>>,
    /// Answered with `ENOSYS` (Docker's `clone3` rule without `CAP_SYS_ADMIN`).
    pub(super) enosys: BTreeSet<i64>,
    /// Highest x86_64 number the profile knows: anything above gets `ENOSYS`.
    pub(super) max_known: i64,
}

impl Plan {
    /// Docker's profile for a process whose bounding set is `caps`, on a kernel of version
    /// `kernel` (`(major, minor)`; `None` when unknown, which keeps the `minKernel: 4.8`
    /// group closed), or the strict one when `strict`. Fails only if a rule names a system
    /// call the x86_64 table lacks ([`SeccompError::UnknownSyscall`]).
    pub(super) fn new(
        caps: &CapsHashSet,
        kernel: Option<(u32, u32)>,
        strict: bool,
    ) -> Result<Self, SeccompError> {
        let mut always = BTreeSet::new();
        let mut add = |names: &[&str]| {
            always.extend(names.iter().filter_map(|name| number(name)));
        };
        add(ALLOW);
        if kernel.is_some_and(|version| version >= (4, 8)) {
            add(ALLOW_SINCE_4_8);
        }
        add(ALLOW_AMD64);
        for (cap, names) in CAP_GATED {
            if caps.contains(cap) {
                add(names);
            }
        }

        let mut conditional: BTreeMap<i64, Vec<ArgCheck>> = BTreeMap::new();
        conditional.insert(
            required("socket")?,
            vec![ArgCheck::Ne32 {
                arg: 0,
                value: libc::AF_VSOCK as u32,
            }],
        );
        conditional.insert(
            required("personality")?,
            PERSONALITY_ALLOWED
                .iter()
                .map(|&value| ArgCheck::Eq32 { arg: 0, value })
                .collect(),
        );
        let mut enosys = BTreeSet::new();
        if strict {
            for name in STRICT_DENIED.iter().chain(&["clone", "clone3"]) {
                always.remove(&required(name)?);
            }
        }
        if strict || !caps.contains(&Capability::CAP_SYS_ADMIN) {
            conditional.insert(
                required("clone")?,
                vec![ArgCheck::MaskedZero {
                    arg: 0,
                    mask: CLONE_NAMESPACE_FLAGS,
                }],
            );
            enosys.insert(required("clone3")?);
        }
        // A call both granted outright (e.g. by a capability) and conditionally is granted.
        conditional.retain(|nr, _| !always.contains(nr));

        let max_known = max_number();
        Ok(Plan {
            always,
            conditional,
            enosys,
            max_known,
        })
    }

    /// The verdict for an x86_64 call; what the compiled program must agree with.
    #[cfg(test)]
    pub(super) fn decide(&self, nr: i64, args: &[u64; 6]) -> Verdict {
        if self.enosys.contains(&nr) || !(0..=self.max_known).contains(&nr) {
            Verdict::Errno(libc::ENOSYS)
        } else if self.always.contains(&nr)
            || self
                .conditional
                .get(&nr)
                .is_some_and(|checks| checks.iter().any(|c| c.holds(args)))
        {
            Verdict::Allow
        } else {
            Verdict::Errno(libc::EPERM)
        }
    }
}

/// The running kernel's `(major, minor)`, from `/proc/sys/kernel/osrelease`.
pub(super) fn running_kernel() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    parse_kernel_release(&release)
}

/// `(major, minor)` of a kernel release string such as `6.1.0-18-amd64`.
fn parse_kernel_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::testing::{
        cap_sets, caps_of, docker_default_caps, nr, probe_numbers, probes,
    };

    #[test]
    fn kernel_release_parsing() {
        assert_eq!(parse_kernel_release("6.18.44-fc-v669\n"), Some((6, 18)));
        assert_eq!(parse_kernel_release("4.8.0"), Some((4, 8)));
        assert_eq!(parse_kernel_release("5.4"), Some((5, 4)));
        assert_eq!(parse_kernel_release("garbage"), None);
    }

    #[test]
    fn decisions_follow_docker() {
        let plan = Plan::new(&docker_default_caps(), Some((6, 1)), false).unwrap();
        let plain = [libc::SIGCHLD as u64, 0, 0, 0, 0, 0];
        let thread = [
            (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64,
            0,
            0,
            0,
            0,
            0,
        ];
        let newuser = [(libc::CLONE_NEWUSER | libc::SIGCHLD) as u64, 0, 0, 0, 0, 0];
        let zero = [0; 6];
        let eperm = Verdict::Errno(libc::EPERM);
        let enosys = Verdict::Errno(libc::ENOSYS);

        assert_eq!(plan.decide(nr("read"), &zero), Verdict::Allow);
        assert_eq!(plan.decide(nr("clone"), &plain), Verdict::Allow);
        assert_eq!(plan.decide(nr("clone"), &thread), Verdict::Allow);
        assert_eq!(plan.decide(nr("clone"), &newuser), eperm);
        for flag in [
            libc::CLONE_NEWNS,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWNET,
            libc::CLONE_NEWCGROUP,
        ] {
            assert_eq!(
                plan.decide(nr("clone"), &[flag as u64, 0, 0, 0, 0, 0]),
                eperm
            );
        }
        assert_eq!(plan.decide(nr("clone3"), &zero), enosys);
        assert_eq!(plan.decide(libc::SYS_keyctl, &zero), eperm);
        assert_eq!(plan.decide(libc::SYS_add_key, &zero), eperm);
        assert_eq!(plan.decide(libc::SYS_request_key, &zero), eperm);
        assert_eq!(plan.decide(libc::SYS_kexec_load, &zero), eperm);
        assert_eq!(plan.decide(libc::SYS_mount, &zero), eperm);
        assert_eq!(plan.decide(libc::SYS_io_uring_setup, &zero), eperm);
        assert_eq!(
            plan.decide(nr("chroot"), &zero),
            Verdict::Allow,
            "CAP_SYS_CHROOT is a Docker default"
        );
        assert_eq!(
            plan.decide(nr("ptrace"), &zero),
            Verdict::Allow,
            "kernel >= 4.8"
        );
        assert_eq!(
            plan.decide(nr("socket"), &[libc::AF_INET as u64, 0, 0, 0, 0, 0]),
            Verdict::Allow
        );
        assert_eq!(
            plan.decide(nr("socket"), &[libc::AF_VSOCK as u64, 0, 0, 0, 0, 0]),
            eperm
        );
        assert_eq!(
            plan.decide(
                nr("socket"),
                &[(1 << 32) | libc::AF_VSOCK as u64, 0, 0, 0, 0, 0]
            ),
            eperm
        );
        assert_eq!(
            plan.decide(nr("personality"), &[0xffff_ffff, 0, 0, 0, 0, 0]),
            Verdict::Allow
        );
        assert_eq!(
            plan.decide(nr("personality"), &[0x0040_0000, 0, 0, 0, 0, 0]),
            eperm
        );
        assert_eq!(plan.decide(1000, &zero), enosys);

        let old = Plan::new(&CapsHashSet::new(), Some((4, 4)), false).unwrap();
        assert_eq!(old.decide(nr("ptrace"), &zero), eperm);
        let unknown = Plan::new(&CapsHashSet::new(), None, false).unwrap();
        assert_eq!(unknown.decide(nr("ptrace"), &zero), eperm);
        let tracer = Plan::new(&caps_of(&[Capability::CAP_SYS_PTRACE]), None, false).unwrap();
        assert_eq!(tracer.decide(nr("ptrace"), &zero), Verdict::Allow);

        let admin = Plan::new(&caps_of(&[Capability::CAP_SYS_ADMIN]), Some((6, 1)), false).unwrap();
        assert_eq!(admin.decide(nr("clone"), &newuser), Verdict::Allow);
        assert_eq!(admin.decide(nr("clone3"), &zero), Verdict::Allow);
        assert_eq!(admin.decide(libc::SYS_mount, &zero), Verdict::Allow);
        assert_eq!(
            admin.decide(libc::SYS_keyctl, &zero),
            eperm,
            "keyctl is never allowed"
        );
        assert_eq!(
            admin.decide(libc::SYS_kexec_load, &zero),
            eperm,
            "kexec_load is never allowed"
        );
        let bpf = Plan::new(&caps_of(&[Capability::CAP_BPF]), Some((6, 1)), false).unwrap();
        assert_eq!(bpf.decide(libc::SYS_bpf, &zero), Verdict::Allow);
        assert_eq!(
            bpf.decide(libc::SYS_mount, &zero),
            eperm,
            "CAP_BPF opens bpf only"
        );
    }

    /// Strict takes away exactly its list (plus namespace creation through `clone` and
    /// `clone3`) from what the default allows, whatever the capabilities; the rest is the
    /// default's.
    #[test]
    fn strict_denies_its_list_whatever_the_capabilities() {
        let zero = [0; 6];
        let eperm = Verdict::Errno(libc::EPERM);
        let enosys = Verdict::Errno(libc::ENOSYS);
        let newuser = [(libc::CLONE_NEWUSER | libc::SIGCHLD) as u64, 0, 0, 0, 0, 0];
        let plain = [libc::SIGCHLD as u64, 0, 0, 0, 0, 0];
        for caps in &cap_sets() {
            let default = Plan::new(caps, Some((6, 1)), false).unwrap();
            let strict = Plan::new(caps, Some((6, 1)), true).unwrap();
            for name in STRICT_DENIED {
                assert_eq!(strict.decide(nr(name), &zero), eperm, "{name}");
            }
            for number in [
                libc::SYS_keyctl,
                libc::SYS_add_key,
                libc::SYS_request_key,
                libc::SYS_userfaultfd,
                libc::SYS_io_uring_setup,
                libc::SYS_io_uring_enter,
                libc::SYS_io_uring_register,
                libc::SYS_kexec_load,
                libc::SYS_kexec_file_load,
                libc::SYS_pivot_root,
            ] {
                assert_eq!(strict.decide(number, &zero), eperm, "{number}");
            }
            assert_eq!(strict.decide(nr("clone"), &newuser), eperm);
            assert_eq!(strict.decide(nr("clone"), &plain), Verdict::Allow);
            assert_eq!(strict.decide(nr("clone3"), &zero), enosys);
            let taken: BTreeSet<i64> = STRICT_DENIED
                .iter()
                .chain(&["clone", "clone3"])
                .map(|name| nr(name))
                .collect();
            for nr in probe_numbers() {
                if !taken.contains(&nr) {
                    for args in &probes() {
                        assert_eq!(
                            strict.decide(nr, args),
                            default.decide(nr, args),
                            "nr {nr} args {args:x?} caps {caps:?}"
                        );
                    }
                }
            }
        }
        // What the list takes away is open in the default profile on a >= 4.8 kernel with
        // all capabilities (and modify_ldt with none): the list is not a no-op.
        let all = Plan::new(&caps::all(), Some((6, 1)), false).unwrap();
        for name in STRICT_DENIED {
            assert_eq!(all.decide(nr(name), &zero), Verdict::Allow, "{name}");
        }
        let none = Plan::new(&CapsHashSet::new(), Some((6, 1)), false).unwrap();
        for name in ["ptrace", "process_vm_readv", "modify_ldt"] {
            assert_eq!(none.decide(nr(name), &zero), Verdict::Allow, "{name}");
        }
    }
}
