//! The seccomp profiles: which system calls a container may make.
//!
//! # What it is
//!
//! An allow-list filter equivalent to Docker's default profile: every system call not
//! named here fails with `EPERM`; a few are allowed only with certain arguments, and some
//! groups are allowed only when the container's bounding set holds the capability that the
//! kernel would demand anyway (so adding `CAP_SYS_ADMIN` to a container also opens
//! `mount`, `unshare`, `setns`, ..., as `docker run --cap-add` does).
//!
//! # Where it comes from
//!
//! The syscall names, the groups and the argument conditions are transcribed from Moby's
//! `profiles/seccomp/default.json` (read at moby/moby commit `00f3d189`, whose layout
//! postdates the `socket`/`AF_VSOCK` rule, `CAP_BPF`/`CAP_PERFMON` groups and the
//! `clone3` → `ENOSYS` rule), brought up to the later upstream changes that the stored copy
//! predates:
//!
//! * moby PR #46762 (Docker 25.0, 2023-11): `io_uring_setup`/`_enter`/`_register` removed
//!   from the allow-list;
//! * moby PR #47341 (2024-02, kernel 5.17–6.6): `cachestat`, `fchmodat2`, `futex_wake`,
//!   `futex_wait`, `futex_requeue`, `map_shadow_stack` allowed;
//! * moby PR #50077 (2025-05, kernel 6.8–6.13, libseccomp 2.6): `listmount`, `statmount`,
//!   `mseal`, `uretprobe`, `getxattrat`, `listxattrat`, `setxattrat`, `removexattrat`
//!   allowed, and PR #50097 put `lsm_get_self_attr`, `lsm_set_self_attr`,
//!   `lsm_list_modules` behind `CAP_SYS_ADMIN`.
//!
//! The Rust data in `profile.rs` keeps Docker's structure (one list per JSON block, in the same
//! order) so the two can be compared side by side.
//!
//! # What differs from Docker
//!
//! * **x86_64 only.** Docker compiles the profile for the native arch plus its
//!   sub-architectures (x86 and x32 on amd64) with libseccomp. This module generates the
//!   BPF program itself, for x86_64 alone, laid out like libseccomp's (a binary search
//!   over syscall numbers; see `bpf.rs` for why it is not seccompiler's). A
//!   system call made through another ABI (the i386 `int 0x80` entry, whose
//!   `seccomp_data.arch` is `AUDIT_ARCH_I386`) fails the program's arch check, whose action
//!   is `SECCOMP_RET_KILL_PROCESS`: the process is killed. x32 calls (x86_64 arch,
//!   number with bit 30 set) are above every known number and get `ENOSYS` (see below).
//!   Docker names that do not exist on x86_64 (`chown32`,
//!   `_llseek`, `socketcall`, the `*_time64` family, ...) simply have no entry in the x86_64
//!   table (a test in `profile.rs` lists them, so that every Docker name is accounted for); the per-arch blocks for ppc64le, arm,
//!   s390 and riscv64 are left out entirely.
//! * **Numbers.** Syscall numbers come from `libc::SYS_*`. The few that libc 0.2.191 does
//!   not export yet (kernel 6.5+ calls) are written out in `table.rs` from the kernel's
//!   `arch/x86/entry/syscalls/syscall_64.tbl`, a frozen ABI.
//! * **Unknown newer calls get `ENOSYS`.** Like runc's generated prelude (what Docker
//!   actually runs), any x86_64 system call numbered above the highest number this profile
//!   knows returns `ENOSYS` rather than `EPERM`, so a newer libc falls back to an older
//!   call instead of failing.
//! * **`int` arguments are compared on 32 bits.** `socket`'s family and `personality`'s
//!   persona are `int`/`unsigned int` in the kernel, which ignores the upper half of the
//!   register; the filter therefore compares the low 32 bits (libseccomp compares all 64,
//!   which lets `0x1_0000_0028` through as `AF_VSOCK`).
//! * **`minKernel: 4.8`** (`ptrace`, `process_vm_readv`, `process_vm_writev`) is checked
//!   against `/proc/sys/kernel/osrelease` when the filter is compiled; if it cannot be
//!   read, the group stays closed (they remain available with `CAP_SYS_PTRACE`).
//!
//! # The strict profile
//!
//! [`SeccompProfile::Strict`] is the default profile with the kernel interfaces behind most
//! container escapes and local privilege escalations of recent years taken away, whatever
//! capabilities the container holds (a capability added to a strict container does not
//! reopen them; use the default profile for a debugger or a nested container runtime).
//! Each fails with `EPERM`, as Docker's denials do, except `clone3`, which gets `ENOSYS` so
//! that glibc falls back to `clone`, whose flags the filter can read:
//!
//! * **ptrace and its relatives** (`ptrace`, `process_vm_readv`, `process_vm_writev`,
//!   `process_madvise`, `pidfd_getfd`, `kcmp`): another process's memory, registers and
//!   files. CVE-2019-13272 (`PTRACE_TRACEME` kept the wrong credentials: root through
//!   pkexec), CVE-2022-30594 (`PTRACE_SEIZE` could set the flag that suspends seccomp),
//!   and before Linux 4.8 a tracer could rewrite a call after seccomp had checked it.
//! * **`bpf`**: the eBPF verifier is a large, often-broken proof checker running in the
//!   kernel: CVE-2021-3490 (ALU32 bounds), CVE-2021-31440, CVE-2022-23222 (pointer
//!   arithmetic on `*_OR_NULL` types), each a root exploit. Docker opens it with `CAP_BPF`.
//! * **`perf_event_open`**: CVE-2013-2094 (`perf_swevent_init`), CVE-2023-5717 and
//!   CVE-2023-6931 (out-of-bounds writes through sibling-group reads). Docker opens it with
//!   `CAP_PERFMON`.
//! * **namespace creation** (`unshare`, `setns`, `clone` with any `CLONE_NEW*` flag): a new
//!   user namespace hands an unprivileged process every capability over kernel code written
//!   for root: CVE-2022-0185 (`fsconfig` heap overflow), CVE-2022-0492 (cgroup v1
//!   `release_agent`), CVE-2021-22555, CVE-2023-32233 and CVE-2024-1086 (netfilter, reached
//!   through `CAP_NET_ADMIN` in a user namespace), CVE-2023-0386 (overlayfs copy-up of a
//!   setuid file from a user namespace's mount). Docker opens them with `CAP_SYS_ADMIN`.
//! * **the mount API** (`mount`, `umount2`, `fsopen`, `fsconfig`, `fsmount`, `fspick`,
//!   `move_mount`, `open_tree`, `mount_setattr`): CVE-2022-0185 is in `fsconfig`'s legacy
//!   parameter parsing; a mount can also hide or replace what the runtime set up (masked
//!   paths, read-only binds). Docker opens them with `CAP_SYS_ADMIN`.
//! * **`open_by_handle_at`**: opens any inode of a mounted filesystem by its handle, past
//!   the container's root: the 2014 "shocker" escape from Docker 0.x. Docker opens it with
//!   `CAP_DAC_READ_SEARCH`. (`name_to_handle_at` stays: a handle alone opens nothing.)
//! * **kernel code and hardware** (`init_module`, `finit_module`, `delete_module`, `iopl`,
//!   `ioperm`): loading kernel code or talking to I/O ports is being the kernel. Docker
//!   opens them with `CAP_SYS_MODULE` and `CAP_SYS_RAWIO`.
//! * **`modify_ldt`**: 16-bit segments for Wine and DOS emulators, a path through the
//!   entry code's corner cases: CVE-2015-3290 (espfix with NMIs) and CVE-2017-17053 (a
//!   use-after-free of the LDT on a failed fork). Docker allows it on amd64.
//!
//! The default profile already denies, and the strict one keeps denied: `keyctl`,
//! `add_key` and `request_key` (CVE-2016-0728, a keyring reference-count overflow);
//! `userfaultfd` (the tool that turns kernel races into reliable exploits, unprivileged use
//! off since Linux 5.11); `io_uring_setup`, `io_uring_enter` and `io_uring_register`
//! (CVE-2022-29582, CVE-2023-2598; Google found most kernel exploits submitted to its kCTF
//! in 2022 went through io_uring, and Docker 25.0 dropped it); `kexec_load`,
//! `kexec_file_load`, `pivot_root`, `swapon` and every call Docker never listed.
//!
//! # Layout
//!
//! * `profile.rs`: Docker's profile as names, block by block, and [`STRICT_DENIED`];
//! * `table.rs`: the x86_64 system call table, names to numbers;
//! * `plan.rs`: the profile resolved for one capability set and kernel, as plain data;
//! * `bpf.rs`: the compiler from a plan to a classic-BPF program.
//!
//! [`compile`] resolves the plan and compiles it in the parent; [`install_raw`] attaches the
//! program in the child, between fork and exec, without allocating.

#![warn(missing_docs)]

mod bpf;
mod plan;
mod profile;
mod table;
#[cfg(test)]
mod testing;

use caps::CapsHashSet;
use libc::sock_filter;

pub use profile::STRICT_DENIED;

#[cfg(not(target_arch = "x86_64"))]
compile_error!(
    "capsule's seccomp profile is written for x86_64 only (see ns-core/src/seccomp/mod.rs)"
);

/// A compiled seccomp program: classic BPF instructions in the kernel's layout
/// (`struct sock_filter` of `linux/filter.h`), at most `BPF_MAXINSNS` (4096) long.
pub type BpfProgram = Vec<sock_filter>;

/// Which filter a container gets: data of the `plan` crate, compiled here.
pub use ::plan::SeccompProfile;

/// Why a filter could not be built. The profile and the table are static data, so each
/// variant is a bug in this module rather than something a caller's input can cause; each
/// names what failed and the value.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// A system call that a rule of the profile names (`socket`, `personality`, `clone`,
    /// `clone3` or one of [`STRICT_DENIED`]) has no x86_64 number in the table.
    #[error("system call {name} is missing from the x86_64 table")]
    UnknownSyscall {
        /// The name, as in `syscall_64.tbl`.
        name: &'static str,
    },
    /// The highest known system call number leaves no room below `u32::MAX` in
    /// `seccomp_data.nr` for the range above it.
    #[error("system call number {number} does not fit the filter's 32-bit ranges")]
    NumberOutOfRange {
        /// The number.
        number: i64,
    },
    /// The jump at instruction `pc` cannot be encoded: its target label was never placed
    /// (`target` is `None`), lies behind it (classic BPF jumps only forward), or is farther
    /// than the instruction's offset field holds (255 for `jt`/`jf`).
    #[error("BPF jump at instruction {pc} to {target:?} cannot be encoded")]
    Jump {
        /// The jump's index in the program.
        pc: usize,
        /// The target's index, if its label was placed.
        target: Option<usize>,
    },
    /// The program is longer than the kernel's `BPF_MAXINSNS` (4096 instructions).
    #[error("{insns} BPF instructions, more than the kernel's 4096")]
    TooLong {
        /// The program's length in instructions.
        insns: usize,
    },
}

/// Compiles the filter of `profile` for a process whose bounding capability set is `caps`:
/// cap-gated groups are allowed only when the capability is present, as Docker does, and
/// never those in [`STRICT_DENIED`] under the strict profile. The `minKernel: 4.8` group
/// is gated on `/proc/sys/kernel/osrelease`. Returns `None` for
/// [`SeccompProfile::Unconfined`]; fails only on a bug in the profile or the compiler (see
/// [`SeccompError`]).
pub fn compile(
    profile: SeccompProfile,
    caps: &CapsHashSet,
) -> Result<Option<BpfProgram>, SeccompError> {
    let strict = match profile {
        SeccompProfile::Unconfined => return Ok(None),
        SeccompProfile::Default => false,
        SeccompProfile::Strict => true,
    };
    bpf::build(&plan::Plan::new(caps, plan::running_kernel(), strict)?).map(Some)
}

/// Installs a compiled filter on the calling thread with `seccomp(SECCOMP_SET_MODE_FILTER)`
/// (seccomp(2)); the caller has set no_new_privs or holds `CAP_SYS_ADMIN`. Allocates nothing
/// on any path, so it may run in a forked child before exec. The error is the errno:
/// `EINVAL` for an empty or over-long program, else what the kernel said (e.g. `EACCES`
/// without no_new_privs or `CAP_SYS_ADMIN`).
pub fn install_raw(program: &[sock_filter]) -> Result<(), i32> {
    if program.is_empty() {
        return Err(libc::EINVAL);
    }
    let len = libc::c_ushort::try_from(program.len()).map_err(|_| libc::EINVAL)?;
    let fprog = libc::sock_fprog {
        len,
        filter: program.as_ptr().cast_mut(),
    };
    let flags: libc::c_ulong = 0;
    // SAFETY: seccomp(2) with SECCOMP_SET_MODE_FILTER reads `fprog` and the `len`
    // instructions it points to (copied into the kernel before returning); both are
    // borrowed and live for the whole call, `len` equals the slice's length, and
    // `sock_filter` is `#[repr(C)]` with the kernel's layout. Nothing else is touched.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const libc::sock_fprog,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{nr, probes};
    use super::*;

    #[test]
    fn default_compiles_and_is_not_empty() {
        let program = compile(SeccompProfile::Default, &CapsHashSet::new())
            .unwrap()
            .unwrap();
        // The tree has one branch per range of numbers: dozens of instructions, not the
        // hundreds of seccompiler's linear chain.
        assert!(
            program.len() > 40 && program.len() <= bpf::MAX_INSNS,
            "{} insns",
            program.len()
        );
        let all = compile(SeccompProfile::Default, &caps::all())
            .unwrap()
            .unwrap();
        assert!(all.len() <= bpf::MAX_INSNS);
    }

    #[test]
    fn strict_compiles_shorter_than_the_limit() {
        for caps in [CapsHashSet::new(), caps::all()] {
            let program = compile(SeccompProfile::Strict, &caps).unwrap().unwrap();
            assert!(program.len() > 40 && program.len() <= bpf::MAX_INSNS);
        }
    }

    #[test]
    fn unconfined_is_none() {
        assert!(
            compile(SeccompProfile::Unconfined, &caps::all())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn profile_serde_is_lowercase() {
        assert_eq!(
            serde_json::to_string(&SeccompProfile::Default).unwrap(),
            "\"default\""
        );
        assert_eq!(
            serde_json::to_string(&SeccompProfile::Strict).unwrap(),
            "\"strict\""
        );
        let p: SeccompProfile = serde_json::from_str("\"unconfined\"").unwrap();
        assert_eq!(p, SeccompProfile::Unconfined);
        assert_eq!(SeccompProfile::default(), SeccompProfile::Default);
    }

    /// The compiled default profile without capabilities: the basics pass whatever their
    /// arguments; what Docker never allows, opens only with a capability, or allows only
    /// with certain arguments is refused (for the arguments shown).
    #[test]
    fn allowed_and_denied_without_caps() {
        let program = compile(SeccompProfile::Default, &CapsHashSet::new())
            .unwrap()
            .unwrap();
        let verdict = |number: i64, args: &[u64; 6]| {
            bpf::run(&program, bpf::AUDIT_ARCH_X86_64, number, args).0
        };
        let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
        let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
        for name in [
            "read",
            "write",
            "execve",
            "exit_group",
            "getpid",
            "openat",
            "mmap",
            "arch_prctl",
        ] {
            for args in &probes() {
                assert_eq!(
                    verdict(nr(name), args),
                    libc::SECCOMP_RET_ALLOW,
                    "{name} should be allowed with {args:x?}"
                );
            }
        }
        let zero = [0; 6];
        for number in [
            libc::SYS_keyctl,
            libc::SYS_add_key,
            libc::SYS_request_key,
            libc::SYS_kexec_load,
            libc::SYS_kexec_file_load,
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_bpf,
            libc::SYS_io_uring_setup,
            libc::SYS_userfaultfd,
            libc::SYS_pivot_root,
            libc::SYS_swapon,
            libc::SYS_chroot,
        ] {
            assert_eq!(verdict(number, &zero), eperm, "{number} should be denied");
        }
        let newuser = [(libc::CLONE_NEWUSER | libc::SIGCHLD) as u64, 0, 0, 0, 0, 0];
        assert_eq!(verdict(libc::SYS_clone, &newuser), eperm);
        assert_eq!(verdict(libc::SYS_clone3, &zero), enosys);
        let vsock = [libc::AF_VSOCK as u64, 0, 0, 0, 0, 0];
        assert_eq!(verdict(libc::SYS_socket, &vsock), eperm);
        let read_implies_exec = [0x0040_0000, 0, 0, 0, 0, 0];
        assert_eq!(verdict(libc::SYS_personality, &read_implies_exec), eperm);
    }

    /// Installs the filter in a forked child and makes real calls.
    #[test]
    fn installed_filter_denies_keyctl() {
        let program = compile(SeccompProfile::Default, &CapsHashSet::new())
            .unwrap()
            .unwrap();
        // SAFETY: the child only makes async-signal-safe calls (prctl, raw syscalls, getpid,
        // waitpid, _exit) and never returns into the test harness; `program` was built
        // before the fork and is only read.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: child process; see the comment on the fork. Every call below takes
            // plain integers or pointers to live locals.
            unsafe {
                let errno = || *libc::__errno_location();
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    libc::_exit(20);
                }
                if install_raw(&program).is_err() {
                    libc::_exit(21);
                }
                if libc::getpid() <= 0 {
                    libc::_exit(22);
                }
                let null: *const libc::c_char = std::ptr::null();
                if libc::syscall(libc::SYS_clone3, null, 0usize) != -1 || errno() != libc::ENOSYS {
                    libc::_exit(23);
                }
                let ns = (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_ulong;
                if libc::syscall(libc::SYS_clone, ns, 0usize, 0usize, 0usize, 0usize) != -1
                    || errno() != libc::EPERM
                {
                    libc::_exit(24);
                }
                let plain = libc::SIGCHLD as libc::c_ulong;
                let child = libc::syscall(libc::SYS_clone, plain, 0usize, 0usize, 0usize, 0usize);
                if child == 0 {
                    libc::_exit(0);
                }
                let mut status = 0;
                if child < 0
                    || libc::waitpid(child as libc::pid_t, &mut status, 0) != child as libc::pid_t
                {
                    libc::_exit(25);
                }
                if libc::syscall(libc::SYS_socket, libc::AF_VSOCK, libc::SOCK_STREAM, 0) != -1
                    || errno() != libc::EPERM
                {
                    libc::_exit(26);
                }
                if libc::syscall(1000) != -1 || errno() != libc::ENOSYS {
                    libc::_exit(27);
                }
                let key = libc::syscall(libc::SYS_keyctl, 0, -3i64, 0);
                libc::_exit(if key == -1 && errno() == libc::EPERM {
                    1
                } else {
                    0
                });
            }
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above; `status` is a live local.
        let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(waited, pid);
        assert!(
            libc::WIFEXITED(status),
            "child did not exit normally: {status:#x}"
        );
        assert_eq!(
            libc::WEXITSTATUS(status),
            1,
            "1 = keyctl got EPERM; 2x = an earlier check failed"
        );
    }
}
