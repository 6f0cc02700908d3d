//! What the seccomp tests share: capability sets, syscall numbers and arguments to probe.

use caps::{Capability, CapsHashSet};

use super::table::number;

/// A capability set of exactly `list`.
pub(super) fn caps_of(list: &[Capability]) -> CapsHashSet {
    list.iter().copied().collect()
}

/// The x86_64 number of `name`, which the table must hold.
pub(super) fn nr(name: &str) -> i64 {
    number(name).unwrap_or_else(|| panic!("{name} not in the x86_64 table"))
}

/// The capabilities Docker gives a container by default.
pub(super) fn docker_default_caps() -> CapsHashSet {
    use Capability::*;
    caps_of(&[
        CAP_CHOWN,
        CAP_DAC_OVERRIDE,
        CAP_FSETID,
        CAP_FOWNER,
        CAP_MKNOD,
        CAP_NET_RAW,
        CAP_SETGID,
        CAP_SETUID,
        CAP_SETFCAP,
        CAP_SETPCAP,
        CAP_NET_BIND_SERVICE,
        CAP_SYS_CHROOT,
        CAP_KILL,
        CAP_AUDIT_WRITE,
    ])
}

/// None, Docker's defaults, `CAP_SYS_ADMIN` alone, and all: the sets every property is
/// checked for.
pub(super) fn cap_sets() -> [CapsHashSet; 4] {
    [
        CapsHashSet::new(),
        docker_default_caps(),
        caps_of(&[Capability::CAP_SYS_ADMIN]),
        caps::all(),
    ]
}

/// Argument vectors (the same value in `args[0]` and `args[1]`) on both sides of every
/// argument rule: `clone`'s namespace flags, `socket`'s `AF_VSOCK` with and without high
/// bits, `personality`'s allowed personas.
pub(super) fn probes() -> Vec<[u64; 6]> {
    [
        0u64,
        libc::SIGCHLD as u64,
        libc::AF_INET as u64,
        libc::AF_VSOCK as u64,
        (1 << 32) | libc::AF_VSOCK as u64,
        0x8,
        0x2_0008,
        0xffff_ffff,
        0x1_ffff_ffff,
        libc::CLONE_NEWUSER as u64,
        (libc::CLONE_NEWNET | libc::CLONE_VM) as u64,
        u64::MAX,
    ]
    .iter()
    .map(|&a| [a, a, 0, 0, 0, 0])
    .collect()
}

/// Syscall numbers probed: every known one and beyond, x32 ones, and -1.
pub(super) fn probe_numbers() -> impl Iterator<Item = i64> {
    (0..600).chain([0x4000_0000, 0x4000_0001, 0x4000_0000 + 435, 0x7fff_ffff, -1])
}
