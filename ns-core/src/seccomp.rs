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
//! The Rust data below keeps Docker's structure (one list per JSON block, in the same
//! order) so the two can be compared side by side.
//!
//! # What differs from Docker
//!
//! * **x86_64 only.** Docker compiles the profile for the native arch plus its
//!   sub-architectures (x86 and x32 on amd64) with libseccomp. This module generates the
//!   BPF program itself, for x86_64 alone, laid out like libseccomp's (a binary search
//!   over syscall numbers; see the BPF section below for why it is not seccompiler's). A
//!   system call made through another ABI (the i386 `int 0x80` entry, whose
//!   `seccomp_data.arch` is `AUDIT_ARCH_I386`) fails the program's arch check, whose action
//!   is `SECCOMP_RET_KILL_PROCESS`: the process is killed. x32 calls (x86_64 arch,
//!   number with bit 30 set) are above every known number and get `ENOSYS` (see below).
//!   Docker names that do not exist on x86_64 (`chown32`,
//!   `_llseek`, `socketcall`, the `*_time64` family, ...) are listed in [`NOT_ON_X86_64`]
//!   and simply have no entry in the x86_64 table; the per-arch blocks for ppc64le, arm,
//!   s390 and riscv64 are left out entirely.
//! * **Numbers.** Syscall numbers come from `libc::SYS_*`. The few that libc 0.2.191 does
//!   not export yet (kernel 6.5+ calls) are written out in [`extra`] from the kernel's
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

use std::collections::{BTreeMap, BTreeSet};

use caps::{Capability, CapsHashSet};
use libc::c_long;
use libc::sock_filter;

/// A compiled seccomp program: classic BPF instructions in the kernel's layout
/// (`struct sock_filter` of `linux/filter.h`).
pub type BpfProgram = Vec<sock_filter>;

#[cfg(not(target_arch = "x86_64"))]
compile_error!("capsule's seccomp profile is written for x86_64 only (see ns-core/src/seccomp.rs)");

pub use plan::SeccompProfile;

/// Why a filter could not be built or installed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// building the filter failed
    #[error("cannot build the seccomp filter: {0}")]
    Build(String),
    /// the kernel refused the filter
    #[error("cannot install the seccomp filter: {0}")]
    Install(String),
}

// ---------------------------------------------------------------------------------------
// Docker's profile, block by block (names only; numbers are looked up in `X86_64` below).
// ---------------------------------------------------------------------------------------

/// Docker's first block: `SCMP_ACT_ALLOW` with no condition.
#[rustfmt::skip]
const ALLOW: &[&str] = &[
    "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "cachestat", "capget",
    "capset", "chdir", "chmod", "chown", "chown32", "clock_adjtime", "clock_adjtime64",
    "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64",
    "clock_nanosleep", "clock_nanosleep_time64", "close", "close_range", "connect",
    "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create", "epoll_create1",
    "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2", "epoll_wait", "epoll_wait_old",
    "eventfd", "eventfd2", "execve", "execveat", "exit", "exit_group", "faccessat", "faccessat2",
    "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat",
    "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr",
    "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64",
    "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futex", "futex_requeue",
    "futex_time64", "futex_wait", "futex_waitv", "futex_wake", "futimesat", "getcpu", "getcwd",
    "getdents", "getdents64", "getegid", "getegid32", "geteuid", "geteuid32", "getgid",
    "getgid32", "getgroups", "getgroups32", "getitimer", "getpeername", "getpgid", "getpgrp",
    "getpid", "getppid", "getpriority", "getrandom", "getresgid", "getresgid32", "getresuid",
    "getresuid32", "getrlimit", "get_robust_list", "getrusage", "getsid", "getsockname",
    "getsockopt", "get_thread_area", "gettid", "gettimeofday", "getuid", "getuid32", "getxattr",
    "getxattrat", "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch",
    "io_cancel", "ioctl", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64",
    "ioprio_get", "ioprio_set", "io_setup", "io_submit", "ipc", "kill", "landlock_add_rule",
    "landlock_create_ruleset", "landlock_restrict_self", "lchown", "lchown32", "lgetxattr",
    "link", "linkat", "listen", "listmount", "listxattr", "listxattrat", "llistxattr", "_llseek",
    "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64", "madvise", "map_shadow_stack",
    "membarrier", "memfd_create", "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod",
    "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect", "mq_getsetattr",
    "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend",
    "mq_timedsend_time64", "mq_unlink", "mremap", "mseal", "msgctl", "msgget", "msgrcv",
    "msgsnd", "msync", "munlock", "munlockall", "munmap", "name_to_handle_at", "nanosleep",
    "newfstatat", "_newselect", "open", "openat", "openat2", "pause", "pidfd_open",
    "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free", "pkey_mprotect", "poll",
    "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2", "prlimit64",
    "process_mrelease", "pselect6", "pselect6_time64", "pwrite64", "pwritev", "pwritev2", "read",
    "readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom", "recvmmsg",
    "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr", "removexattrat", "rename",
    "renameat", "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction",
    "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend",
    "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_getaffinity",
    "sched_getattr", "sched_getparam", "sched_get_priority_max", "sched_get_priority_min",
    "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64",
    "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield",
    "seccomp", "select", "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "send",
    "sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto", "setfsgid", "setfsgid32",
    "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32", "setitimer",
    "setpgid", "setpriority", "setregid", "setregid32", "setresgid", "setresgid32", "setresuid",
    "setresuid32", "setreuid", "setreuid32", "setrlimit", "set_robust_list", "setsid",
    "setsockopt", "set_thread_area", "set_tid_address", "setuid", "setuid32", "setxattr",
    "setxattrat", "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd",
    "signalfd4", "sigprocmask", "sigreturn", "socketcall", "socketpair", "splice", "stat",
    "stat64", "statfs", "statfs64", "statmount", "statx", "symlink", "symlinkat", "sync",
    "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create",
    "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime",
    "timer_settime64", "timerfd_create", "timerfd_gettime", "timerfd_gettime64",
    "timerfd_settime", "timerfd_settime64", "times", "tkill", "truncate", "truncate64",
    "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "uretprobe", "utime", "utimensat",
    "utimensat_time64", "utimes", "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write",
    "writev",
];

/// Docker's `"includes": {"minKernel": "4.8"}` block (before 4.8, ptrace could bypass seccomp).
const ALLOW_SINCE_4_8: &[&str] = &["process_vm_readv", "process_vm_writev", "ptrace"];

/// Docker's arch blocks that apply to amd64: `arch_prctl` (amd64, x32), `modify_ldt`
/// (amd64, x32, x86). The ppc64le, arm/arm64, s390/s390x and riscv64 blocks are omitted.
const ALLOW_AMD64: &[&str] = &["arch_prctl", "modify_ldt"];

/// Docker's `"includes": {"caps": [...]}` blocks, in the file's order.
#[rustfmt::skip]
const CAP_GATED: &[(Capability, &[&str])] = &[
    (Capability::CAP_DAC_READ_SEARCH, &["open_by_handle_at"]),
    (
        Capability::CAP_SYS_ADMIN,
        &[
            "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
            "lookup_dcookie", "lsm_get_self_attr", "lsm_list_modules", "lsm_set_self_attr",
            "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open", "quotactl",
            "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount",
            "umount2", "unshare",
        ],
    ),
    (Capability::CAP_SYS_BOOT, &["reboot"]),
    (Capability::CAP_SYS_CHROOT, &["chroot"]),
    (Capability::CAP_SYS_MODULE, &["delete_module", "init_module", "finit_module"]),
    (Capability::CAP_SYS_PACCT, &["acct"]),
    (
        Capability::CAP_SYS_PTRACE,
        &["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"],
    ),
    (Capability::CAP_SYS_RAWIO, &["iopl", "ioperm"]),
    (Capability::CAP_SYS_TIME, &["settimeofday", "stime", "clock_settime", "clock_settime64"]),
    (Capability::CAP_SYS_TTY_CONFIG, &["vhangup"]),
    (
        Capability::CAP_SYS_NICE,
        &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"],
    ),
    (Capability::CAP_SYSLOG, &["syslog"]),
    (Capability::CAP_BPF, &["bpf"]),
    (Capability::CAP_PERFMON, &["perf_event_open"]),
];

/// What [`SeccompProfile::Strict`] takes away from the default profile whatever the
/// capabilities, grouped as the module documentation explains them. Namespace creation
/// through `clone` and `clone3` is handled with the `clone` rule.
#[rustfmt::skip]
pub const STRICT_DENIED: &[&str] = &[
    // ptrace and its relatives
    "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "pidfd_getfd", "kcmp",
    // eBPF and perf
    "bpf", "perf_event_open",
    // namespace creation
    "unshare", "setns",
    // the mount API
    "mount", "umount2", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
    "mount_setattr",
    // file handles
    "open_by_handle_at",
    // kernel code and hardware
    "init_module", "finit_module", "delete_module", "iopl", "ioperm",
    // 16-bit segments
    "modify_ldt",
];

/// Docker's `personality` blocks: allowed only with these personas (`PER_LINUX`,
/// `PER_LINUX32`, `UNAME26`, `UNAME26|PER_LINUX32`, and `0xffffffff` which only queries).
const PERSONALITY_ALLOWED: &[u32] = &[0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// Docker's `clone` block without `CAP_SYS_ADMIN`: `clone` is allowed only when none of
/// these namespace flags is set (Docker writes the mask as 2114060288 = 0x7E020000).
const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// Names in Docker's profile that have no x86_64 system call (i386/arm/... only, or
/// 32-bit `time64` variants). They are skipped, never looked up.
#[rustfmt::skip]
pub const NOT_ON_X86_64: &[&str] = &[
    "chown32", "clock_adjtime64", "clock_getres_time64", "clock_gettime64",
    "clock_nanosleep_time64", "clock_settime64", "fadvise64_64", "fchown32", "fcntl64",
    "fstat64", "fstatat64", "fstatfs64", "ftruncate64", "futex_time64", "getegid32",
    "geteuid32", "getgid32", "getgroups32", "getresgid32", "getresuid32", "getuid32",
    "io_pgetevents_time64", "ipc", "lchown32", "_llseek", "lstat64", "mmap2",
    "mq_timedreceive_time64", "mq_timedsend_time64", "_newselect", "ppoll_time64",
    "pselect6_time64", "recv", "recvmmsg_time64", "rt_sigtimedwait_time64",
    "sched_rr_get_interval_time64", "semtimedop_time64", "send", "sendfile64", "setfsgid32",
    "setfsuid32", "setgid32", "setgroups32", "setregid32", "setresgid32", "setresuid32",
    "setreuid32", "setuid32", "sigprocmask", "sigreturn", "socketcall", "stat64", "statfs64",
    "stime", "timer_gettime64", "timer_settime64", "timerfd_gettime64", "timerfd_settime64",
    "truncate64", "ugetrlimit", "umount", "utimensat_time64", "waitpid",
];

// ---------------------------------------------------------------------------------------
// x86_64 numbers.
// ---------------------------------------------------------------------------------------

/// x86_64 numbers that libc 0.2.191 does not export (for glibc targets) yet, from the kernel's
/// `arch/x86/entry/syscalls/syscall_64.tbl` (numbers never change once released).
#[allow(non_upper_case_globals)]
pub mod extra {
    use libc::c_long;
    /// Linux 4.18.
    pub const SYS_io_pgetevents: c_long = 333;
    /// Linux 6.11.
    pub const SYS_uretprobe: c_long = 335;
    /// Linux 6.5.
    pub const SYS_cachestat: c_long = 451;
    /// Linux 6.6.
    pub const SYS_map_shadow_stack: c_long = 453;
    /// Linux 6.7.
    pub const SYS_futex_wake: c_long = 454;
    /// Linux 6.7.
    pub const SYS_futex_wait: c_long = 455;
    /// Linux 6.7.
    pub const SYS_futex_requeue: c_long = 456;
    /// Linux 6.8.
    pub const SYS_statmount: c_long = 457;
    /// Linux 6.8.
    pub const SYS_listmount: c_long = 458;
    /// Linux 6.8.
    pub const SYS_lsm_get_self_attr: c_long = 459;
    /// Linux 6.8.
    pub const SYS_lsm_set_self_attr: c_long = 460;
    /// Linux 6.8.
    pub const SYS_lsm_list_modules: c_long = 461;
    /// Linux 6.13.
    pub const SYS_setxattrat: c_long = 463;
    /// Linux 6.13.
    pub const SYS_getxattrat: c_long = 464;
    /// Linux 6.13.
    pub const SYS_listxattrat: c_long = 465;
    /// Linux 6.13.
    pub const SYS_removexattrat: c_long = 466;
}

/// Builds the `(name, number)` table from `module::SYS_name` paths: the name is the
/// constant's identifier with its `SYS_` prefix removed (see [`syscall_name`]).
macro_rules! x86_64_table {
    ($($module:ident :: $sys:ident),* $(,)?) => {
        &[$((stringify!($sys), $module::$sys)),*]
    };
}

/// Every system call the profile names that exists on x86_64 (allowed, conditional or
/// cap-gated), with its number. Stored as `("SYS_name", number)`.
#[rustfmt::skip]
static X86_64: &[(&str, c_long)] = x86_64_table![
    libc::SYS_accept, libc::SYS_accept4, libc::SYS_access, libc::SYS_adjtimex, libc::SYS_alarm,
    libc::SYS_bind, libc::SYS_brk, extra::SYS_cachestat, libc::SYS_capget, libc::SYS_capset,
    libc::SYS_chdir, libc::SYS_chmod, libc::SYS_chown, libc::SYS_clock_adjtime,
    libc::SYS_clock_getres, libc::SYS_clock_gettime, libc::SYS_clock_nanosleep, libc::SYS_close,
    libc::SYS_close_range, libc::SYS_connect, libc::SYS_copy_file_range, libc::SYS_creat,
    libc::SYS_dup, libc::SYS_dup2, libc::SYS_dup3, libc::SYS_epoll_create,
    libc::SYS_epoll_create1, libc::SYS_epoll_ctl, libc::SYS_epoll_ctl_old,
    libc::SYS_epoll_pwait, libc::SYS_epoll_pwait2, libc::SYS_epoll_wait,
    libc::SYS_epoll_wait_old, libc::SYS_eventfd, libc::SYS_eventfd2, libc::SYS_execve,
    libc::SYS_execveat, libc::SYS_exit, libc::SYS_exit_group, libc::SYS_faccessat,
    libc::SYS_faccessat2, libc::SYS_fadvise64, libc::SYS_fallocate, libc::SYS_fanotify_mark,
    libc::SYS_fchdir, libc::SYS_fchmod, libc::SYS_fchmodat, libc::SYS_fchmodat2,
    libc::SYS_fchown, libc::SYS_fchownat, libc::SYS_fcntl, libc::SYS_fdatasync,
    libc::SYS_fgetxattr, libc::SYS_flistxattr, libc::SYS_flock, libc::SYS_fork,
    libc::SYS_fremovexattr, libc::SYS_fsetxattr, libc::SYS_fstat, libc::SYS_fstatfs,
    libc::SYS_fsync, libc::SYS_ftruncate, libc::SYS_futex, extra::SYS_futex_requeue,
    extra::SYS_futex_wait, libc::SYS_futex_waitv, extra::SYS_futex_wake, libc::SYS_futimesat,
    libc::SYS_getcpu, libc::SYS_getcwd, libc::SYS_getdents, libc::SYS_getdents64,
    libc::SYS_getegid, libc::SYS_geteuid, libc::SYS_getgid, libc::SYS_getgroups,
    libc::SYS_getitimer, libc::SYS_getpeername, libc::SYS_getpgid, libc::SYS_getpgrp,
    libc::SYS_getpid, libc::SYS_getppid, libc::SYS_getpriority, libc::SYS_getrandom,
    libc::SYS_getresgid, libc::SYS_getresuid, libc::SYS_getrlimit, libc::SYS_get_robust_list,
    libc::SYS_getrusage, libc::SYS_getsid, libc::SYS_getsockname, libc::SYS_getsockopt,
    libc::SYS_get_thread_area, libc::SYS_gettid, libc::SYS_gettimeofday, libc::SYS_getuid,
    libc::SYS_getxattr, extra::SYS_getxattrat, libc::SYS_inotify_add_watch,
    libc::SYS_inotify_init, libc::SYS_inotify_init1, libc::SYS_inotify_rm_watch,
    libc::SYS_io_cancel, libc::SYS_ioctl, libc::SYS_io_destroy, libc::SYS_io_getevents,
    extra::SYS_io_pgetevents, libc::SYS_ioprio_get, libc::SYS_ioprio_set, libc::SYS_io_setup,
    libc::SYS_io_submit, libc::SYS_kill, libc::SYS_landlock_add_rule,
    libc::SYS_landlock_create_ruleset, libc::SYS_landlock_restrict_self, libc::SYS_lchown,
    libc::SYS_lgetxattr, libc::SYS_link, libc::SYS_linkat, libc::SYS_listen,
    extra::SYS_listmount, libc::SYS_listxattr, extra::SYS_listxattrat, libc::SYS_llistxattr,
    libc::SYS_lremovexattr, libc::SYS_lseek, libc::SYS_lsetxattr, libc::SYS_lstat,
    libc::SYS_madvise, extra::SYS_map_shadow_stack, libc::SYS_membarrier,
    libc::SYS_memfd_create, libc::SYS_memfd_secret, libc::SYS_mincore, libc::SYS_mkdir,
    libc::SYS_mkdirat, libc::SYS_mknod, libc::SYS_mknodat, libc::SYS_mlock, libc::SYS_mlock2,
    libc::SYS_mlockall, libc::SYS_mmap, libc::SYS_mprotect, libc::SYS_mq_getsetattr,
    libc::SYS_mq_notify, libc::SYS_mq_open, libc::SYS_mq_timedreceive, libc::SYS_mq_timedsend,
    libc::SYS_mq_unlink, libc::SYS_mremap, libc::SYS_mseal, libc::SYS_msgctl, libc::SYS_msgget,
    libc::SYS_msgrcv, libc::SYS_msgsnd, libc::SYS_msync, libc::SYS_munlock,
    libc::SYS_munlockall, libc::SYS_munmap, libc::SYS_name_to_handle_at, libc::SYS_nanosleep,
    libc::SYS_newfstatat, libc::SYS_open, libc::SYS_openat, libc::SYS_openat2, libc::SYS_pause,
    libc::SYS_pidfd_open, libc::SYS_pidfd_send_signal, libc::SYS_pipe, libc::SYS_pipe2,
    libc::SYS_pkey_alloc, libc::SYS_pkey_free, libc::SYS_pkey_mprotect, libc::SYS_poll,
    libc::SYS_ppoll, libc::SYS_prctl, libc::SYS_pread64, libc::SYS_preadv, libc::SYS_preadv2,
    libc::SYS_prlimit64, libc::SYS_process_mrelease, libc::SYS_pselect6, libc::SYS_pwrite64,
    libc::SYS_pwritev, libc::SYS_pwritev2, libc::SYS_read, libc::SYS_readahead,
    libc::SYS_readlink, libc::SYS_readlinkat, libc::SYS_readv, libc::SYS_recvfrom,
    libc::SYS_recvmmsg, libc::SYS_recvmsg, libc::SYS_remap_file_pages, libc::SYS_removexattr,
    extra::SYS_removexattrat, libc::SYS_rename, libc::SYS_renameat, libc::SYS_renameat2,
    libc::SYS_restart_syscall, libc::SYS_rmdir, libc::SYS_rseq, libc::SYS_rt_sigaction,
    libc::SYS_rt_sigpending, libc::SYS_rt_sigprocmask, libc::SYS_rt_sigqueueinfo,
    libc::SYS_rt_sigreturn, libc::SYS_rt_sigsuspend, libc::SYS_rt_sigtimedwait,
    libc::SYS_rt_tgsigqueueinfo, libc::SYS_sched_getaffinity, libc::SYS_sched_getattr,
    libc::SYS_sched_getparam, libc::SYS_sched_get_priority_max,
    libc::SYS_sched_get_priority_min, libc::SYS_sched_getscheduler,
    libc::SYS_sched_rr_get_interval, libc::SYS_sched_setaffinity, libc::SYS_sched_setattr,
    libc::SYS_sched_setparam, libc::SYS_sched_setscheduler, libc::SYS_sched_yield,
    libc::SYS_seccomp, libc::SYS_select, libc::SYS_semctl, libc::SYS_semget, libc::SYS_semop,
    libc::SYS_semtimedop, libc::SYS_sendfile, libc::SYS_sendmmsg, libc::SYS_sendmsg,
    libc::SYS_sendto, libc::SYS_setfsgid, libc::SYS_setfsuid, libc::SYS_setgid,
    libc::SYS_setgroups, libc::SYS_setitimer, libc::SYS_setpgid, libc::SYS_setpriority,
    libc::SYS_setregid, libc::SYS_setresgid, libc::SYS_setresuid, libc::SYS_setreuid,
    libc::SYS_setrlimit, libc::SYS_set_robust_list, libc::SYS_setsid, libc::SYS_setsockopt,
    libc::SYS_set_thread_area, libc::SYS_set_tid_address, libc::SYS_setuid, libc::SYS_setxattr,
    extra::SYS_setxattrat, libc::SYS_shmat, libc::SYS_shmctl, libc::SYS_shmdt,
    libc::SYS_shmget, libc::SYS_shutdown, libc::SYS_sigaltstack, libc::SYS_signalfd,
    libc::SYS_signalfd4, libc::SYS_socketpair, libc::SYS_splice, libc::SYS_stat,
    libc::SYS_statfs, extra::SYS_statmount, libc::SYS_statx, libc::SYS_symlink,
    libc::SYS_symlinkat, libc::SYS_sync, libc::SYS_sync_file_range, libc::SYS_syncfs,
    libc::SYS_sysinfo, libc::SYS_tee, libc::SYS_tgkill, libc::SYS_time, libc::SYS_timer_create,
    libc::SYS_timer_delete, libc::SYS_timer_getoverrun, libc::SYS_timer_gettime,
    libc::SYS_timer_settime, libc::SYS_timerfd_create, libc::SYS_timerfd_gettime,
    libc::SYS_timerfd_settime, libc::SYS_times, libc::SYS_tkill, libc::SYS_truncate,
    libc::SYS_umask, libc::SYS_uname, libc::SYS_unlink, libc::SYS_unlinkat,
    extra::SYS_uretprobe, libc::SYS_utime, libc::SYS_utimensat, libc::SYS_utimes,
    libc::SYS_vfork, libc::SYS_vmsplice, libc::SYS_wait4, libc::SYS_waitid, libc::SYS_write,
    libc::SYS_writev,
    // minKernel 4.8 / CAP_SYS_PTRACE
    libc::SYS_process_vm_readv, libc::SYS_process_vm_writev, libc::SYS_ptrace,
    // argument-conditional
    libc::SYS_socket, libc::SYS_personality,
    // amd64 arch blocks
    libc::SYS_arch_prctl, libc::SYS_modify_ldt,
    // capability-gated
    libc::SYS_open_by_handle_at, libc::SYS_bpf, libc::SYS_clone, libc::SYS_clone3,
    libc::SYS_fanotify_init, libc::SYS_fsconfig, libc::SYS_fsmount, libc::SYS_fsopen,
    libc::SYS_fspick, libc::SYS_lookup_dcookie, extra::SYS_lsm_get_self_attr,
    extra::SYS_lsm_list_modules, extra::SYS_lsm_set_self_attr, libc::SYS_mount,
    libc::SYS_mount_setattr, libc::SYS_move_mount, libc::SYS_open_tree,
    libc::SYS_perf_event_open, libc::SYS_quotactl, libc::SYS_quotactl_fd,
    libc::SYS_setdomainname, libc::SYS_sethostname, libc::SYS_setns, libc::SYS_syslog,
    libc::SYS_umount2, libc::SYS_unshare, libc::SYS_reboot, libc::SYS_chroot,
    libc::SYS_delete_module, libc::SYS_init_module, libc::SYS_finit_module, libc::SYS_acct,
    libc::SYS_kcmp, libc::SYS_pidfd_getfd, libc::SYS_process_madvise, libc::SYS_iopl,
    libc::SYS_ioperm, libc::SYS_settimeofday, libc::SYS_clock_settime, libc::SYS_vhangup,
    libc::SYS_get_mempolicy, libc::SYS_mbind, libc::SYS_set_mempolicy,
    libc::SYS_set_mempolicy_home_node,
];

/// The syscall name of a table entry (`"SYS_read"` → `"read"`).
fn syscall_name(entry: &(&'static str, c_long)) -> &'static str {
    entry.0.strip_prefix("SYS_").unwrap_or(entry.0)
}

/// The x86_64 number of a syscall named in the profile, or `None` if it has none on x86_64.
fn number(name: &str) -> Option<i64> {
    X86_64.iter().find(|e| syscall_name(e) == name).map(|e| e.1)
}

/// Looks a name up that must exist on x86_64 (the conditional rules' own syscalls).
fn required(name: &'static str) -> Result<i64, SeccompError> {
    number(name).ok_or_else(|| SeccompError::Build(format!("{name} missing from the x86_64 table")))
}

// ---------------------------------------------------------------------------------------
// The plan: what the filter decides, as plain data (tested without installing anything).
// ---------------------------------------------------------------------------------------

/// A one-argument condition, as in Docker's `args` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArgCheck {
    /// Low 32 bits of argument `arg` equal `value`.
    Eq32 { arg: u8, value: u32 },
    /// Low 32 bits of argument `arg` differ from `value`.
    Ne32 { arg: u8, value: u32 },
    /// `argument & mask == 0` on all 64 bits (Docker's `SCMP_CMP_MASKED_EQ` with value 0).
    MaskedZero { arg: u8, mask: u64 },
}

impl ArgCheck {
    #[cfg(test)]
    fn holds(self, args: &[u64; 6]) -> bool {
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
enum Verdict {
    Allow,
    Errno(i32),
}

/// The whole profile resolved for one capability set and kernel.
#[derive(Debug)]
struct Plan {
    /// Allowed whatever the arguments.
    always: BTreeSet<i64>,
    /// Allowed when any of its checks holds (only for numbers not in `always`).
    conditional: BTreeMap<i64, Vec<ArgCheck>>,
    /// Answered with `ENOSYS` (Docker's `clone3` rule without `CAP_SYS_ADMIN`).
    enosys: BTreeSet<i64>,
    /// Highest x86_64 number the profile knows: anything above gets `ENOSYS`.
    max_known: i64,
}

impl Plan {
    /// Docker's profile for `caps` on `kernel`, or the strict one when `strict`.
    fn new(
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

        let max_known = X86_64.iter().map(|e| e.1).max().unwrap_or(0);
        Ok(Plan {
            always,
            conditional,
            enosys,
            max_known,
        })
    }

    /// The verdict for an x86_64 call; what the compiled program must agree with.
    #[cfg(test)]
    fn decide(&self, nr: i64, args: &[u64; 6]) -> Verdict {
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
fn running_kernel() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    parse_kernel_release(&release)
}

fn parse_kernel_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The system calls allowed whatever their arguments for a process whose bounding set is
/// `caps`, sorted (x86_64 numbers). Conditional rules (`socket`, `personality`, and
/// `clone` without `CAP_SYS_ADMIN`) are not in it.
pub fn allowed_syscalls(caps: &CapsHashSet) -> Vec<i64> {
    match Plan::new(caps, running_kernel(), false) {
        Ok(plan) => plan.always.into_iter().collect(),
        Err(_) => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------
// BPF: a binary search over syscall numbers, written by hand.
//
// seccompiler (0.5) only emits a linear chain of comparisons, one block per allowed
// number: ~1,600 instructions for this profile, hundreds of which every system call walks,
// and a visible cost when the filter is attached at each container launch. It has no tree
// mode, so the program is generated here the way libseccomp (runc, crun) lays it out:
//
// ```text
//   ld  arch
//   jeq AUDIT_ARCH_X86_64, +1, +0
//   ret KILL_PROCESS                  ; any other ABI (i386 `int 0x80`, ...)
//   ld  nr
//   jge ... / jge ...                 ; balanced tree over sorted number ranges
//   <leaf>                            ; ret ALLOW | ret ERRNO(EPERM) | ret ERRNO(ENOSYS)
//                                     ; | the argument checks of socket/personality/clone
// ```
//
// The ranges cover every 32-bit value, so x32 calls (bit 30 set) and negative numbers land
// in the last range, above the highest known number, and get `ENOSYS`. Classic BPF jumps
// only forward, and `jt`/`jf` are 8 bits: the tree is cut into chunks of at most 256
// instructions, each followed by its own copies of the return instructions it uses, and a
// `ja` (32-bit offset) trampoline bridges a chunk too long for an 8-bit jump. Jumps are
// written against labels and resolved (and range-checked) by `Asm::assemble`.
// ---------------------------------------------------------------------------------------

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const ALU_AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
/// `offsetof(struct seccomp_data, nr)`, `arch` and `args[0]`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
const DATA_ARGS: u32 = 16;
/// `AUDIT_ARCH_X86_64` = `EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`.
const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
/// The kernel's `BPF_MAXINSNS`.
const MAX_INSNS: usize = 4096;
/// The longest run of instructions in which every forward jump fits `jt`/`jf` (a jump
/// from the first to the last of 256 instructions skips 254).
const CHUNK_INSNS: usize = 256;

const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const RET_EPERM: u32 = libc::SECCOMP_RET_ERRNO | (libc::EPERM as u32 & libc::SECCOMP_RET_DATA);
const RET_ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | (libc::ENOSYS as u32 & libc::SECCOMP_RET_DATA);

fn build_err(what: impl Into<String>) -> SeccompError {
    SeccompError::Build(what.into())
}

/// A jump destination, placed with [`Asm::place`] and resolved by [`Asm::assemble`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Label(usize);

/// One element of a program under construction.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// Marks where a label points (takes no space).
    Place(Label),
    /// A load, ALU or return instruction.
    Stmt { code: u16, k: u32 },
    /// A conditional jump (`jt` when the comparison holds, else `jf`).
    Jump {
        code: u16,
        k: u32,
        jt: Label,
        jf: Label,
    },
    /// `BPF_JA`, whose offset is 32 bits.
    Always(Label),
}

/// A tiny assembler: instructions with symbolic forward jumps.
#[derive(Debug, Default)]
struct Asm {
    ops: Vec<Op>,
    labels: usize,
}

impl Asm {
    fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }

    fn place(&mut self, label: Label) {
        self.ops.push(Op::Place(label));
    }

    fn stmt(&mut self, code: u16, k: u32) {
        self.ops.push(Op::Stmt { code, k });
    }

    fn jump(&mut self, code: u16, k: u32, jt: Label, jf: Label) {
        self.ops.push(Op::Jump { code, k, jt, jf });
    }

    /// Instructions among `ops[from..]`.
    fn insns_since(&self, from: usize) -> usize {
        self.ops[from..]
            .iter()
            .filter(|op| !matches!(op, Op::Place(_)))
            .count()
    }

    /// Resolves the labels; fails on a label never placed, a backward jump or a
    /// conditional jump longer than 255.
    fn assemble(&self) -> Result<Vec<sock_filter>, SeccompError> {
        let mut at = vec![None; self.labels];
        let mut pc = 0usize;
        for op in &self.ops {
            match op {
                Op::Place(Label(l)) => at[*l] = Some(pc),
                _ => pc += 1,
            }
        }
        let offset = |pc: usize, Label(l): Label| -> Result<usize, SeccompError> {
            let target = at[l].ok_or_else(|| build_err("BPF label never placed"))?;
            target
                .checked_sub(pc + 1)
                .ok_or_else(|| build_err("backward BPF jump"))
        };
        let short = |pc: usize, label: Label| -> Result<u8, SeccompError> {
            u8::try_from(offset(pc, label)?).map_err(|_| build_err("BPF jump longer than 255"))
        };
        let mut program = Vec::with_capacity(pc);
        for op in &self.ops {
            let pc = program.len();
            let insn = match *op {
                Op::Place(_) => continue,
                Op::Stmt { code, k } => sock_filter {
                    code,
                    jt: 0,
                    jf: 0,
                    k,
                },
                Op::Jump { code, k, jt, jf } => sock_filter {
                    code,
                    jt: short(pc, jt)?,
                    jf: short(pc, jf)?,
                    k,
                },
                Op::Always(to) => sock_filter {
                    code: JA,
                    jt: 0,
                    jf: 0,
                    k: u32::try_from(offset(pc, to)?)
                        .map_err(|_| build_err("BPF jump too long"))?,
                },
            };
            program.push(insn);
        }
        Ok(program)
    }
}

/// What the filter does for a range of syscall numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaf<'a> {
    /// Return this `SECCOMP_RET_*` value.
    Ret(u32),
    /// Allow when any check holds, else `EPERM`.
    Checks(&'a [ArgCheck]),
}

/// The numbers from `start` up to the next range's start (or `u32::MAX`).
#[derive(Debug, Clone, Copy)]
struct Range<'a> {
    start: u32,
    leaf: Leaf<'a>,
}

/// The plan as sorted ranges covering every 32-bit syscall number, neighbours with the
/// same return merged. Follows `Plan::decide` (the test model): `enosys` first, then
/// `always`, then the conditional rules; `EPERM` for the rest up to `max_known`; `ENOSYS`
/// above.
fn ranges<'a>(plan: &'a Plan) -> Result<Vec<Range<'a>>, SeccompError> {
    let max_known = u32::try_from(plan.max_known)
        .ok()
        .filter(|&n| n < u32::MAX)
        .ok_or_else(|| build_err("syscall number out of range"))?;
    let mut out: Vec<Range<'a>> = Vec::new();
    let mut push = |start: u32, leaf: Leaf<'a>| {
        let merge = matches!(
            (out.last().map(|range| range.leaf), leaf),
            (Some(Leaf::Ret(a)), Leaf::Ret(b)) if a == b
        );
        if !merge {
            out.push(Range { start, leaf });
        }
    };
    for nr in 0..=max_known {
        let key = i64::from(nr);
        let leaf = if plan.enosys.contains(&key) {
            Leaf::Ret(RET_ENOSYS)
        } else if plan.always.contains(&key) {
            Leaf::Ret(RET_ALLOW)
        } else if let Some(checks) = plan.conditional.get(&key) {
            Leaf::Checks(checks)
        } else {
            Leaf::Ret(RET_EPERM)
        };
        push(nr, leaf);
    }
    push(max_known + 1, Leaf::Ret(RET_ENOSYS));
    Ok(out)
}

/// The return instructions of one chunk, emitted after its code when first asked for.
#[derive(Debug, Default)]
struct Returns(Vec<(u32, Label)>);

impl Returns {
    fn get(&mut self, asm: &mut Asm, action: u32) -> Label {
        if let Some(&(_, label)) = self.0.iter().find(|(a, _)| *a == action) {
            return label;
        }
        let label = asm.label();
        self.0.push((action, label));
        label
    }

    fn emit(self, asm: &mut Asm) {
        for (action, label) in self.0 {
            asm.place(label);
            asm.stmt(RET_K, action);
        }
    }
}

/// `args[arg]`'s low (`high == false`) or high 32 bits (x86_64 is little-endian).
fn arg_word(arg: u8, high: bool) -> u32 {
    DATA_ARGS + 8 * u32::from(arg) + if high { 4 } else { 0 }
}

/// Argument checks of one conditional syscall: allow when any holds, else `EPERM`.
/// The accumulator holds the syscall number on entry; both outcomes return.
fn emit_checks(asm: &mut Asm, rets: &mut Returns, checks: &[ArgCheck]) {
    let allow = rets.get(asm, RET_ALLOW);
    let eperm = rets.get(asm, RET_EPERM);
    // The argument word the accumulator holds unchanged, to skip reloading it.
    let mut loaded: Option<u32> = None;
    let load = |asm: &mut Asm, word: u32, loaded: &mut Option<u32>| {
        if *loaded != Some(word) {
            asm.stmt(LD_W_ABS, word);
            *loaded = Some(word);
        }
    };
    for (i, &check) in checks.iter().enumerate() {
        let last = i + 1 == checks.len();
        let fail = if last { eperm } else { asm.label() };
        match check {
            ArgCheck::Eq32 { arg, value } => {
                load(asm, arg_word(arg, false), &mut loaded);
                asm.jump(JEQ_K, value, allow, fail);
            }
            ArgCheck::Ne32 { arg, value } => {
                load(asm, arg_word(arg, false), &mut loaded);
                asm.jump(JEQ_K, value, fail, allow);
            }
            ArgCheck::MaskedZero { arg, mask } => {
                let halves: Vec<(bool, u32)> = [(false, mask as u32), (true, (mask >> 32) as u32)]
                    .into_iter()
                    .filter(|&(_, m)| m != 0)
                    .collect();
                if halves.is_empty() {
                    asm.ops.push(Op::Always(allow));
                }
                for (j, &(high, m)) in halves.iter().enumerate() {
                    let pass = if j + 1 == halves.len() {
                        allow
                    } else {
                        asm.label()
                    };
                    asm.stmt(LD_W_ABS, arg_word(arg, high));
                    asm.stmt(ALU_AND_K, m);
                    asm.jump(JEQ_K, 0, pass, fail);
                    if pass != allow {
                        asm.place(pass);
                    }
                }
                loaded = None;
            }
        }
        if !last {
            asm.place(fail);
        }
    }
}

/// The binary search over `ranges` (non-empty, sorted), entered at the current position
/// with the syscall number in the accumulator. Ranges that only return jump straight to
/// the chunk's shared return instructions.
fn emit_search(asm: &mut Asm, rets: &mut Returns, ranges: &[Range<'_>]) {
    match ranges {
        [] => {}
        [
            Range {
                leaf: Leaf::Ret(action),
                ..
            },
        ] => asm.stmt(RET_K, *action),
        [
            Range {
                leaf: Leaf::Checks(checks),
                ..
            },
        ] => emit_checks(asm, rets, checks),
        _ => {
            let (low, high) = ranges.split_at(ranges.len() / 2);
            let mut target = |asm: &mut Asm, side: &[Range<'_>]| match side {
                [
                    Range {
                        leaf: Leaf::Ret(action),
                        ..
                    },
                ] => (rets.get(asm, *action), false),
                _ => (asm.label(), true),
            };
            let (high_at, high_code) = target(asm, high);
            let (low_at, low_code) = target(asm, low);
            asm.jump(JGE_K, high[0].start, high_at, low_at);
            if low_code {
                asm.place(low_at);
                emit_search(asm, rets, low);
            }
            if high_code {
                asm.place(high_at);
                emit_search(asm, rets, high);
            }
        }
    }
}

/// [`emit_search`] cut into chunks short enough for 8-bit jumps: a subtree that fits in
/// [`CHUNK_INSNS`] with its return instructions is one chunk; a larger one is split at its
/// middle, with a `ja` trampoline when the lower half is too long to jump over.
fn emit_tree(asm: &mut Asm, ranges: &[Range<'_>]) {
    let start = asm.ops.len();
    let mut rets = Returns::default();
    emit_search(asm, &mut rets, ranges);
    rets.emit(asm);
    if asm.insns_since(start) <= CHUNK_INSNS || ranges.len() < 2 {
        return;
    }
    asm.ops.truncate(start);
    let (low, high) = ranges.split_at(ranges.len() / 2);
    let (high_at, low_at) = (asm.label(), asm.label());
    let jge = asm.ops.len();
    asm.jump(JGE_K, high[0].start, high_at, low_at);
    asm.place(low_at);
    let low_start = asm.ops.len();
    emit_tree(asm, low);
    if asm.insns_since(low_start) > usize::from(u8::MAX) {
        let bridge = asm.label();
        asm.ops[jge] = Op::Jump {
            code: JGE_K,
            k: high[0].start,
            jt: bridge,
            jf: low_at,
        };
        asm.ops
            .splice(jge + 1..jge + 1, [Op::Place(bridge), Op::Always(high_at)]);
    }
    asm.place(high_at);
    emit_tree(asm, high);
}

fn build(plan: &Plan) -> Result<BpfProgram, SeccompError> {
    let mut asm = Asm::default();
    let native = asm.label();
    asm.stmt(LD_W_ABS, DATA_ARCH);
    let kill = asm.label();
    asm.jump(JEQ_K, AUDIT_ARCH_X86_64, native, kill);
    asm.place(kill);
    asm.stmt(RET_K, libc::SECCOMP_RET_KILL_PROCESS);
    asm.place(native);
    asm.stmt(LD_W_ABS, DATA_NR);
    emit_tree(&mut asm, &ranges(plan)?);
    let program = asm.assemble()?;
    if program.len() > MAX_INSNS {
        return Err(build_err(format!(
            "{} BPF instructions, more than the kernel's {MAX_INSNS}",
            program.len()
        )));
    }
    Ok(program)
}

/// Compile the filter of `profile` for a process whose bounding capability set is `caps`
/// (cap-gated groups are allowed only when the cap is present, as Docker does, and never
/// those in [`STRICT_DENIED`] under the strict profile). Returns None for Unconfined.
pub fn compile(
    profile: SeccompProfile,
    caps: &CapsHashSet,
) -> Result<Option<BpfProgram>, SeccompError> {
    match profile {
        SeccompProfile::Unconfined => Ok(None),
        SeccompProfile::Default => build(&Plan::new(caps, running_kernel(), false)?).map(Some),
        SeccompProfile::Strict => build(&Plan::new(caps, running_kernel(), true)?).map(Some),
    }
}

/// Install a compiled filter on the calling thread (the caller has already set no_new_privs or holds CAP_SYS_ADMIN).
/// Must not allocate (it runs in a forked child between fork and exec): take the already compiled program.
///
/// The success path allocates nothing. A failure builds the error's message `String`
/// (the type requires one); a caller that must not allocate even then uses [`install_raw`].
pub fn install(program: &BpfProgram) -> Result<(), SeccompError> {
    install_raw(program).map_err(|errno| {
        SeccompError::Install(format!(
            "seccomp(SECCOMP_SET_MODE_FILTER): {}",
            std::io::Error::from_raw_os_error(errno)
        ))
    })
}

/// [`install`] without any allocation on any path: the error is the errno
/// (`EINVAL` for an empty or over-long program, else what the kernel said, e.g. `EACCES`
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
    use super::*;

    fn caps_of(list: &[Capability]) -> CapsHashSet {
        list.iter().copied().collect()
    }

    fn nr(name: &str) -> i64 {
        number(name).unwrap_or_else(|| panic!("{name} not in the x86_64 table"))
    }

    /// The capabilities Docker gives a container by default.
    fn docker_default_caps() -> CapsHashSet {
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

    // --- a minimal classic-BPF interpreter, to check the compiled program against the plan.

    const JGT_K: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;

    fn run_bpf(program: &[sock_filter], arch: u32, nr: i64, args: &[u64; 6]) -> u32 {
        run_bpf_counted(program, arch, nr, args).0
    }

    /// The return value and the number of instructions executed.
    fn run_bpf_counted(
        program: &[sock_filter],
        arch: u32,
        nr: i64,
        args: &[u64; 6],
    ) -> (u32, usize) {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&(nr as i32).to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let (mut acc, mut pc, mut steps) = (0u32, 0usize, 0usize);
        loop {
            let ins = &program[pc];
            pc += 1;
            steps += 1;
            let cond = |taken: bool| usize::from(if taken { ins.jt } else { ins.jf });
            match ins.code {
                LD_W_ABS => {
                    let at = ins.k as usize;
                    acc = u32::from_le_bytes(data[at..at + 4].try_into().unwrap());
                }
                ALU_AND_K => acc &= ins.k,
                JA => pc += ins.k as usize,
                JEQ_K => pc += cond(acc == ins.k),
                JGT_K => pc += cond(acc > ins.k),
                JGE_K => pc += cond(acc >= ins.k),
                RET_K => return (ins.k, steps),
                other => panic!("unexpected BPF opcode {other:#x}"),
            }
        }
    }

    fn verdict_code(v: Verdict) -> u32 {
        match v {
            Verdict::Allow => libc::SECCOMP_RET_ALLOW,
            Verdict::Errno(e) => libc::SECCOMP_RET_ERRNO | e as u32,
        }
    }

    #[test]
    fn default_compiles_and_is_not_empty() {
        let program = compile(SeccompProfile::Default, &CapsHashSet::new())
            .unwrap()
            .unwrap();
        // The tree has one branch per range of numbers: dozens of instructions, not the
        // hundreds of seccompiler's linear chain.
        assert!(
            program.len() > 40 && program.len() <= MAX_INSNS,
            "{} insns",
            program.len()
        );
        let all = compile(SeccompProfile::Default, &caps::all())
            .unwrap()
            .unwrap();
        assert!(all.len() <= MAX_INSNS);
    }

    #[test]
    fn strict_compiles_shorter_than_the_limit() {
        for caps in [CapsHashSet::new(), caps::all()] {
            let program = compile(SeccompProfile::Strict, &caps).unwrap().unwrap();
            assert!(program.len() > 40 && program.len() <= MAX_INSNS);
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

    #[test]
    fn table_has_no_duplicates() {
        let mut numbers = BTreeSet::new();
        let mut names = BTreeSet::new();
        for entry in X86_64 {
            assert!(entry.0.starts_with("SYS_"), "{}", entry.0);
            assert!(
                numbers.insert(entry.1),
                "duplicate number {} ({})",
                entry.1,
                entry.0
            );
            assert!(
                names.insert(syscall_name(entry)),
                "duplicate name {}",
                entry.0
            );
        }
    }

    #[test]
    fn every_docker_name_is_placed_exactly_once() {
        let mut docker: Vec<&str> = ALLOW
            .iter()
            .chain(ALLOW_SINCE_4_8)
            .chain(ALLOW_AMD64)
            .copied()
            .collect();
        for (_, names) in CAP_GATED {
            docker.extend(names.iter());
        }
        docker.extend(["socket", "personality", "clone", "clone3"]);
        for name in &docker {
            let in_table = number(name).is_some();
            let absent = NOT_ON_X86_64.contains(name);
            assert!(
                in_table != absent,
                "{name}: in table {in_table}, listed absent {absent}"
            );
        }
        for entry in X86_64 {
            assert!(
                docker.contains(&syscall_name(entry)),
                "{} is in no Docker group",
                entry.0
            );
        }
        for name in NOT_ON_X86_64 {
            assert!(
                docker.contains(name),
                "{name} is listed absent but in no Docker group"
            );
        }
        let mut allow = ALLOW.to_vec();
        allow.sort_unstable();
        allow.dedup();
        assert_eq!(allow.len(), ALLOW.len(), "duplicate in ALLOW");
    }

    #[test]
    fn libc_agrees_with_known_numbers() {
        assert_eq!(nr("read"), 0);
        assert_eq!(nr("clone3"), 435);
        assert_eq!(nr("fchmodat2"), 452);
        assert_eq!(nr("mseal"), 462);
        assert_eq!(CLONE_NAMESPACE_FLAGS, 2_114_060_288, "Docker's clone mask");
        assert_eq!(libc::AF_VSOCK, 40);
    }

    #[test]
    fn kernel_release_parsing() {
        assert_eq!(parse_kernel_release("6.18.44-fc-v669\n"), Some((6, 18)));
        assert_eq!(parse_kernel_release("4.8.0"), Some((4, 8)));
        assert_eq!(parse_kernel_release("5.4"), Some((5, 4)));
        assert_eq!(parse_kernel_release("garbage"), None);
    }

    #[test]
    fn allowed_and_denied_without_caps() {
        let allowed = allowed_syscalls(&CapsHashSet::new());
        assert!(
            allowed.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicates"
        );
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
            assert!(allowed.contains(&nr(name)), "{name} should be allowed");
        }
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
            libc::SYS_clone,
            libc::SYS_clone3,
            libc::SYS_socket,
            libc::SYS_personality,
            libc::SYS_chroot,
        ] {
            assert!(
                !allowed.contains(&number),
                "{number} should not be unconditionally allowed"
            );
        }
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
        assert!(
            allowed_syscalls(&caps_of(&[Capability::CAP_SYS_ADMIN])).contains(&libc::SYS_mount)
        );
        assert!(allowed_syscalls(&caps_of(&[Capability::CAP_BPF])).contains(&libc::SYS_bpf));
        assert!(!allowed_syscalls(&caps_of(&[Capability::CAP_BPF])).contains(&libc::SYS_mount));
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

    /// Checks what the kernel's `seccomp_check_filter`/`bpf_check_classic` would, for the
    /// opcodes used here: length, known opcodes, aligned loads inside `seccomp_data`, every
    /// jump target inside the program, and a return at the end.
    fn assert_valid(program: &[sock_filter]) {
        assert!(
            !program.is_empty() && program.len() <= MAX_INSNS,
            "{} insns",
            program.len()
        );
        for (pc, ins) in program.iter().enumerate() {
            let next = pc + 1;
            match ins.code {
                LD_W_ABS => assert!(ins.k % 4 == 0 && ins.k < 64, "load {} at {pc}", ins.k),
                ALU_AND_K | RET_K => {}
                JA => assert!(
                    next + (ins.k as usize) < program.len(),
                    "ja out of range at {pc}"
                ),
                JEQ_K | JGE_K | JGT_K => {
                    let far = next + usize::from(ins.jt.max(ins.jf));
                    assert!(far < program.len(), "jump out of range at {pc}");
                }
                other => panic!("unexpected BPF opcode {other:#x} at {pc}"),
            }
        }
        assert_eq!(program.last().unwrap().code, RET_K, "must end in a return");
    }

    fn cap_sets() -> [CapsHashSet; 4] {
        [
            CapsHashSet::new(),
            docker_default_caps(),
            caps_of(&[Capability::CAP_SYS_ADMIN]),
            caps::all(),
        ]
    }

    fn probes() -> Vec<[u64; 6]> {
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
    fn probe_numbers() -> impl Iterator<Item = i64> {
        (0..600).chain([0x4000_0000, 0x4000_0001, 0x4000_0000 + 435, 0x7fff_ffff, -1])
    }

    /// The program is a short binary search: few instructions, few executed per call,
    /// and valid for the kernel, for every capability set.
    #[test]
    fn compiled_program_is_a_short_valid_tree() {
        for (caps, strict) in cap_sets().iter().flat_map(|c| [(c, false), (c, true)]) {
            for kernel in [running_kernel(), Some((4, 4)), Some((6, 1))] {
                let plan = Plan::new(caps, kernel, strict).unwrap();
                let program = build(&plan).unwrap();
                assert_valid(&program);
                assert!(program.len() < 300, "{} insns for {caps:?}", program.len());
                let mut deepest = 0;
                for nr in probe_numbers() {
                    for args in &probes() {
                        deepest =
                            deepest.max(run_bpf_counted(&program, AUDIT_ARCH_X86_64, nr, args).1);
                    }
                }
                assert!(deepest < 40, "{deepest} insns executed for {caps:?}");
            }
        }
        let default = compile(SeccompProfile::Default, &docker_default_caps())
            .unwrap()
            .unwrap();
        assert!(default.len() < 300, "{} insns", default.len());
    }

    /// The chunking keeps every jump in range even when the tree is far larger than 256
    /// instructions (many alternating ranges, as a much bigger profile would give).
    #[test]
    fn large_trees_stay_valid() {
        let checks = [ArgCheck::Eq32 { arg: 0, value: 7 }];
        let ranges: Vec<Range<'_>> = (0..2000u32)
            .map(|n| Range {
                start: n,
                leaf: match n % 5 {
                    0 => Leaf::Ret(RET_ALLOW),
                    1 => Leaf::Ret(RET_EPERM),
                    2 => Leaf::Checks(&checks),
                    3 => Leaf::Ret(RET_ENOSYS),
                    _ => Leaf::Ret(libc::SECCOMP_RET_ERRNO | 99),
                },
            })
            .collect();
        let mut asm = Asm::default();
        asm.stmt(LD_W_ABS, DATA_NR);
        emit_tree(&mut asm, &ranges);
        let program = asm.assemble().unwrap();
        assert_valid(&program);
        assert!(
            program.len() > 4 * usize::from(u8::MAX),
            "{} insns",
            program.len()
        );
        for n in (0..2000u32).step_by(7).chain([1999, 2000, u32::MAX]) {
            let last = ranges[n.min(1999) as usize];
            for arg in [7u64, 8] {
                let want = match last.leaf {
                    Leaf::Ret(r) => r,
                    Leaf::Checks(_) if arg == 7 => RET_ALLOW,
                    Leaf::Checks(_) => RET_EPERM,
                };
                let got = run_bpf(
                    &program,
                    AUDIT_ARCH_X86_64,
                    i64::from(n),
                    &[arg, 0, 0, 0, 0, 0],
                );
                assert_eq!(got, want, "nr {n} arg {arg}");
            }
        }
    }

    /// The compiled BPF agrees with the plan for
    /// every syscall number and a spread of arguments, for several capability sets.
    #[test]
    fn compiled_program_matches_plan() {
        let probes = probes();
        for (caps, strict) in cap_sets().iter().flat_map(|c| [(c, false), (c, true)]) {
            let plan = Plan::new(caps, running_kernel(), strict).unwrap();
            let program = build(&plan).unwrap();
            for nr in probe_numbers() {
                for args in &probes {
                    let want = verdict_code(plan.decide(nr, args));
                    let got = run_bpf(&program, AUDIT_ARCH_X86_64, nr, args);
                    assert_eq!(
                        got, want,
                        "nr {nr} args {args:x?} caps {caps:?} strict {strict}"
                    );
                }
            }
            let i386 = 3 | 0x4000_0000; // AUDIT_ARCH_I386
            assert_eq!(
                run_bpf(&program, i386, 0, &[0; 6]),
                libc::SECCOMP_RET_KILL_PROCESS
            );
        }
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
