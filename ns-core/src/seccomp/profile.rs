//! Docker's default profile, block by block: the names it allows outright, the groups it
//! opens per capability, its argument conditions, and what the strict profile takes away.
//! Names only; [`super::table`] gives the x86_64 numbers and [`super::plan`] resolves the
//! blocks for one capability set and kernel.
//!
//! The lists keep the order of Moby's `profiles/seccomp/default.json` (one list per JSON
//! block) so the two can be compared side by side; the module documentation of
//! `ns_core::seccomp` says which upstream commit and later pull requests they follow.

use caps::Capability;

/// Docker's first block: `SCMP_ACT_ALLOW` with no condition.
#[rustfmt::skip]
pub(super) const ALLOW: &[&str] = &[
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
pub(super) const ALLOW_SINCE_4_8: &[&str] = &["process_vm_readv", "process_vm_writev", "ptrace"];

/// Docker's arch blocks that apply to amd64: `arch_prctl` (amd64, x32), `modify_ldt`
/// (amd64, x32, x86). The ppc64le, arm/arm64, s390/s390x and riscv64 blocks are omitted.
pub(super) const ALLOW_AMD64: &[&str] = &["arch_prctl", "modify_ldt"];

/// Docker's `"includes": {"caps": [...]}` blocks, in the file's order.
#[rustfmt::skip]
pub(super) const CAP_GATED: &[(Capability, &[&str])] = &[
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

/// The system calls [`SeccompProfile::Strict`](super::SeccompProfile::Strict) takes away
/// from the default profile whatever the capabilities: x86_64 names as in `syscall_64.tbl`,
/// grouped (and each group's reason and CVEs given) as in "The strict profile" of
/// [`ns_core::seccomp`](super). Namespace creation through `clone` and `clone3` is not in
/// the list: the plan denies it with the `clone` rule and `ENOSYS` for `clone3`.
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
pub(super) const PERSONALITY_ALLOWED: &[u32] = &[0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// Docker's `clone` block without `CAP_SYS_ADMIN`: `clone` is allowed only when none of
/// these namespace flags is set (Docker writes the mask as 2114060288 = 0x7E020000).
pub(super) const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

#[cfg(test)]
mod tests {
    use super::super::table;
    use super::*;

    /// Names in Docker's profile that have no x86_64 system call (i386/arm/... only, or
    /// 32-bit `time64` variants): the plan skips them, never looks them up.
    #[rustfmt::skip]
    const NOT_ON_X86_64: &[&str] = &[
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
            let in_table = table::number(name).is_some();
            let absent = NOT_ON_X86_64.contains(name);
            assert!(
                in_table != absent,
                "{name}: in table {in_table}, listed absent {absent}"
            );
        }
        for name in table::names() {
            assert!(docker.contains(&name), "{name} is in no Docker group");
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
    fn argument_rules_use_dockers_values() {
        assert_eq!(CLONE_NAMESPACE_FLAGS, 2_114_060_288, "Docker's clone mask");
        assert_eq!(libc::AF_VSOCK, 40);
    }
}
