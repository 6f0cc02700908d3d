//! The kata backend (`--isolation kata`): the Plan's container built inside a microVM of its
//! own, as Kata Containers and Firecracker's users run them. The VM is the microVM backend's
//! (the same kernel, root disk, devices and checks); capsule-init stays the guest's PID 1 and
//! builds the container there with ns-core and cgroup-core from a
//! [`GuestContainer`](guest_init::kata::GuestContainer): the container backend's own
//! conversion of the Plan, with its paths in the guest's terms and its limits as the guest's
//! cgroups.
//!
//! The VM is sized from the Plan as Kata sizes its pods: `ceil(cpus)` vCPUs, and guest RAM the
//! container's memory limit plus [`GUEST_OVERHEAD`] for the guest itself.

use std::path::Path;

use guest_init::kata::{
    CONTAINER_ROOTFS, CONTAINER_SHARES, CONTAINER_STATE, GuestContainer, KataRoot,
};
use guest_init::{GuestRoot, ROOT_DEVICE};
use ns_core::MountKind;
use plan::{Host, Outcome, Plan, Problem, RootVia};

use super::{Backend, Stdin, container, microvm};
use crate::signals::StopHandle;
use crate::{Error, state, virtiofsd};

/// Guest RAM added to the container's memory limit for the guest itself: its kernel (text,
/// data, page tables and `struct page`s), the unpacked base initramfs and the sandbox's
/// capsule-init. The container's own page cache and its overlay's upper layer (a tmpfs) are
/// charged to its cgroup, inside its limit. Measured in the lab (Debian 6.1, an idle sandbox
/// of 256 MiB, 2026-12-01): the kernel keeps 37.5 MiB for itself and the idle sandbox uses
/// 17.8 MiB more (slab, modules, the initramfs), 55.3 MiB in all. 128 MiB, which is
/// [`plan::MICROVM_MIN_MEMORY`], leaves the rest for the guest's own page cache; RAM the guest
/// never touches costs the host nothing.
pub const GUEST_OVERHEAD: u64 = 128 << 20;

/// The sandbox kernel's parameters beyond a microVM's: the initcall that fills tracefs is
/// skipped (`initcall_blacklist`, `Documentation/admin-guide/kernel-parameters.txt`). The
/// container never reaches the sandbox kernel's tracing, and without it Debian's 6.1 kernel
/// creates no files for its ~1,500 trace events (their inodes and dentries: an idle guest's
/// slab 15.1 -> 6.6 MB, the idle sandbox 69.6 -> 59.8 MiB beyond its workload in the lab,
/// 2026-12-01). Kernel lockdown closes tracefs the same way but also forbids ioperm(2), and
/// with it capsule-init's start and exit ports. A kernel without the initcall (or without
/// kallsyms) ignores the parameter.
pub const KERNEL_PARAMS: &str = "initcall_blacklist=tracer_init_tracefs";

/// The kata backend: the Plan's container inside a microVM of its own.
#[derive(Debug)]
pub struct Kata;

impl Backend for Kata {
    /// The microVM's problems: a host that cannot boot the guest kernel, the guest artifacts,
    /// a root image file, the shared directories and virtiofsd. What the container cannot
    /// have is [`plan::validate`]'s to say, and what the guest kernel's cgroups cannot give is
    /// said in the guest.
    fn problems(&self, plan: &Plan, host: &Host) -> Result<Vec<Problem>, plan::Error> {
        // Disks are refused under kata as a whole; their files are no matter then.
        let mut machine = plan.clone();
        machine.disks.clear();
        let mut problems = microvm::Microvm.problems(&machine, host)?;
        let root = &plan.root.path;
        if root_via(plan) == RootVia::Virtiofs && !root.is_dir() {
            problems.push(
                Problem::new(
                    "vm.rootVia",
                    format!("vm.rootVia virtiofs (root.path {})", root.display()),
                    "virtio-fs shares a directory, and the root is not one",
                )
                .fixes(
                    "give --rootfs a directory, or drop --root-via virtiofs",
                    "give rootfs() a directory, or drop root_via(\"virtiofs\")",
                ),
            );
        }
        Ok(problems)
    }

    fn run(
        &self,
        plan: &Plan,
        _host: &Host,
        stop: &StopHandle,
        stdin: Stdin,
    ) -> Result<Outcome, Error> {
        let id = state::new_id();
        let mut guest = microvm::Guest::of(plan, &id)?;
        // The sandbox's root is a tmpfs of its own (the container's pivot_root cannot move
        // the initramfs); the root disk and the tmpfs mounts are the container's, the shares
        // are bound into it from CONTAINER_SHARES.
        guest.config.root = GuestRoot::Sandbox;
        guest.config.readonly_root = false;
        guest.config.tmpfs.clear();
        guest.shares_at = Some(CONTAINER_SHARES);
        // The container has the Plan's hostname; the sandbox keeps the kernel's.
        guest.workload.hostname = None;
        guest.workload.container = Some(guest_container(plan, &id)?);
        if root_via(plan) == RootVia::Virtiofs {
            guest.root_share = Some(plan.root.path.clone());
        }
        guest.memory = guest_memory(plan);
        guest.kernel_params = KERNEL_PARAMS;
        microvm::run(plan, stop, stdin, &id, guest)
    }
}

/// The container of `plan` (launch `id`) as the guest builds it: the container backend's
/// conversion ([`container::plan_spec`], [`container::limits`]) with the root at
/// [`CONTAINER_ROOTFS`], read from the root disk, the state at [`CONTAINER_STATE`], and each
/// bind mount's source the virtio-fs share the sandbox mounts under [`CONTAINER_SHARES`].
///
/// # Errors
///
/// What [`container::plan_spec`] fails with.
pub fn guest_container(plan: &Plan, id: &str) -> Result<GuestContainer, Error> {
    let mut spec = container::plan_spec(plan, id)?;
    spec.rootfs = CONTAINER_ROOTFS.into();
    spec.state_dir = CONTAINER_STATE.into();
    let binds = spec.mounts.iter_mut().filter_map(|m| match &mut m.kind {
        MountKind::Bind { source } => Some(source),
        _ => None,
    });
    for (i, source) in binds.enumerate() {
        *source = Path::new(CONTAINER_SHARES).join(virtiofsd::tag(i));
    }
    Ok(GuestContainer {
        spec,
        limits: container::limits(plan),
        root: match root_via(plan) {
            RootVia::Disk => KataRoot::Disk(ROOT_DEVICE.into()),
            RootVia::Virtiofs => KataRoot::Virtiofs(virtiofsd::ROOT_TAG.into()),
        },
    })
}

/// How `plan`'s root directory reaches the container (`vm.rootVia`).
fn root_via(plan: &Plan) -> RootVia {
    plan.vm.as_ref().map_or(RootVia::Disk, |vm| vm.root_via)
}

/// The guest RAM of `plan`'s VM in bytes: the container's memory limit plus
/// [`GUEST_OVERHEAD`], or the plain microVM's default when the Plan sets no memory (the
/// container is then limited by the VM alone, as a container by its host).
pub fn guest_memory(plan: &Plan) -> u64 {
    plan.resources
        .memory
        .map_or(microvm::DEFAULT_MEMORY, |memory| {
            memory.saturating_add(GUEST_OVERHEAD)
        })
}

#[cfg(test)]
mod tests;
