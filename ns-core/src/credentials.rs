//! What a workload process keeps of its privileges: resource limits, the
//! capability bounding set, its user and groups, its capability sets,
//! no_new_privs and the seccomp filter.
//!
//! Prepared once in the parent ([`Credentials::new`], which allocates and
//! compiles the filter) and applied in the child between fork and exec
//! ([`Credentials::apply`], [`Credentials::install_seccomp`]), which
//! allocates nothing: the container child and the microVM guest's init both
//! run the same steps in the same order.

use crate::seccomp::BpfProgram;

use crate::capabilities;
use crate::rlimits;
use crate::sys::errno;
use plan::{Process, SeccompProfile};

use crate::{Capabilities, Error, Rlimit};

/// A step of [`Credentials::apply`], for the error it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialStep {
    /// `setrlimit` of the limit at the error's index.
    Rlimits,
    /// Dropping the capability numbered by the error's index from the bounding set.
    BoundingSet,
    /// `setgroups`.
    Groups,
    /// `setresgid` to the gid in the error's index.
    Gid,
    /// `setresuid` to the uid in the error's index.
    Uid,
    /// `capset` (the index is the capability that failed, if known).
    Capabilities,
    /// `PR_SET_NO_NEW_PRIVS`.
    NoNewPrivs,
}

/// Which step failed, on what (an index, a capability, an id), with which errno.
pub type CredentialError = (CredentialStep, u32, i32);

/// The privileges a workload keeps, ready to apply without allocating.
#[derive(Debug)]
pub struct Credentials {
    rlimits: Vec<Rlimit>,
    caps: Capabilities,
    last_cap: u8,
    groups: Vec<libc::gid_t>,
    set_groups: bool,
    uid: u32,
    gid: u32,
    no_new_privs: bool,
    filter: Option<BpfProgram>,
}

impl Credentials {
    /// Prepares the credentials of `process` (its user, capabilities, rlimits and
    /// no_new_privs) with the `seccomp` profile (compiled here, for the bounding set of its
    /// capabilities).
    ///
    /// # Errors
    ///
    /// [`Error::Plan`] for an rlimit name setrlimit(2) does not know; [`Error::Seccomp`] when
    /// the filter cannot be built.
    pub fn new(process: &Process, seccomp: SeccompProfile) -> Result<Credentials, Error> {
        let (user, caps): (_, Capabilities) = (&process.user, process.capabilities);
        let rlimits = process
            .rlimits
            .iter()
            .map(|r| {
                Ok(Rlimit {
                    resource: plan::parse_rlimit_resource(&r.kind)?,
                    soft: r.soft,
                    hard: r.hard,
                })
            })
            .collect::<Result<Vec<_>, plan::Error>>()?;
        // As runc does, a capability this process cannot hold (outside its own bounding set,
        // e.g. in a sandbox that dropped it) is left out rather than failing capset(2): so
        // `--cap-add ALL` means every capability there is to give.
        let available = capabilities::own_bounding();
        let kept = caps.within(available);
        if kept != caps {
            tracing::warn!(
                missing =
                    format_args!("{:#x}", (caps.bounding.0 | caps.permitted.0) & !available.0),
                "capabilities outside capsule's own bounding set are left out"
            );
        }
        let caps = kept;
        Ok(Credentials {
            rlimits,
            caps,
            last_cap: capabilities::last_cap(),
            groups: user.additional_gids.clone(),
            set_groups: true,
            uid: user.uid,
            gid: user.gid,
            no_new_privs: process.no_new_privileges,
            filter: crate::seccomp::compile(seccomp, &caps.bounding.to_set())?,
        })
    }

    /// Leaves the supplementary groups alone: an unprivileged writer of a
    /// user namespace's gid_map had to deny setgroups(2).
    pub fn keep_groups(mut self) -> Credentials {
        self.set_groups = false;
        self
    }

    /// The limits, for naming one in an error.
    pub fn rlimits(&self) -> &[Rlimit] {
        &self.rlimits
    }

    /// Applies limits, bounding set, groups, gid, uid, capability sets and
    /// no_new_privs, in that order (each step needs the privileges the
    /// later ones give up). Allocates nothing.
    pub fn apply(&self) -> Result<(), CredentialError> {
        // Before privileges drop, so hard limits can still be raised.
        rlimits::apply(&self.rlimits).map_err(|(i, e)| (CredentialStep::Rlimits, i, e))?;
        // Needs CAP_SETPCAP, so before the user change.
        capabilities::drop_bounding(&self.caps, self.last_cap)
            .map_err(|(cap, e)| (CredentialStep::BoundingSet, cap, e))?;
        // SAFETY: the calls below take plain integers or a pointer to `groups`,
        // which lives for the call; none of them allocates.
        unsafe {
            // Keep the permitted set across setuid; capset below chooses what remains.
            libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0);
            if self.set_groups
                && libc::syscall(libc::SYS_setgroups, self.groups.len(), self.groups.as_ptr()) != 0
            {
                return Err((CredentialStep::Groups, 0, errno()));
            }
            if set_ids(libc::SYS_setresgid, self.gid) != 0 {
                return Err((CredentialStep::Gid, self.gid, errno()));
            }
            if set_ids(libc::SYS_setresuid, self.uid) != 0 {
                return Err((CredentialStep::Uid, self.uid, errno()));
            }
        }
        capabilities::apply_sets(&self.caps)
            .map_err(|(cap, e)| (CredentialStep::Capabilities, cap, e))?;
        // SAFETY: prctl with integer arguments.
        if self.no_new_privs && unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err((CredentialStep::NoNewPrivs, 0, errno()));
        }
        Ok(())
    }

    /// Installs the seccomp filter, if the profile has one; last before exec,
    /// so the steps before it are not filtered. Allocates nothing; the error is the errno.
    pub fn install_seccomp(&self) -> Result<(), i32> {
        match &self.filter {
            Some(filter) => crate::seccomp::install_raw(filter),
            None => Ok(()),
        }
    }
}

/// setresuid(2) or setresgid(2) (`call`) with `id` as real, effective and saved id, as the
/// raw system call. glibc's wrappers change every thread of the process (the "setxid"
/// broadcast, as POSIX asks): in a child cloned from a multi-threaded launcher they wait
/// forever for threads that exist only in the parent. The kernel's call changes the calling
/// thread, the child's only one.
///
/// # Safety
///
/// `call` must be `SYS_setresuid` or `SYS_setresgid`.
pub(crate) unsafe fn set_ids(call: libc::c_long, id: u32) -> libc::c_long {
    // SAFETY: both calls take three integer ids and touch no memory.
    unsafe { libc::syscall(call, id, id, id) }
}
