//! How the workload is isolated: the kind of isolation, syscalls, network, user namespace,
//! the microVM's kernel, and a time limit.

use plan::{IdMap, IdMaps};
use rhai::plugin::*;

use crate::script_plan::ScriptPlan;

#[export_module]
pub mod isolation {
    use plan::{IdMap, SeccompProfile};
    use rhai::INT;

    use crate::api::values::{Refusal, absolute_path, choice, refuse, seconds};
    use crate::script_plan::{ScriptPlan, written};
    use plan::Isolation;
    use plan::{Network, VmSpec};

    /// `"container"` (namespaces and cgroups on this kernel), `"microvm"` (its own kernel on
    /// KVM) or `"kata"` (a container inside a microVM: the container's namespaces and limits
    /// built in a guest of its own, sized by `memory` and `cpus`).
    #[rhai_fn(return_raw)]
    pub fn isolation(
        ctx: NativeCallContext,
        p: &mut ScriptPlan,
        kind: &str,
    ) -> Result<(), Refusal> {
        let kinds = [Isolation::Container, Isolation::Microvm, Isolation::Kata];
        p.plan.isolation = kinds[choice("isolation", kind, &["container", "microvm", "kata"])?];
        p.record(&ctx, "isolation", format!("{kind:?}"));
        Ok(())
    }

    /// The syscall filter: `"default"` (Docker's default allow-list), `"strict"` (Docker's
    /// minus ptrace, bpf, perf, namespace creation, the mount API and the other calls listed
    /// under "The strict seccomp profile" below, whatever the capabilities) or
    /// `"unconfined"` (none).
    #[rhai_fn(return_raw)]
    pub fn seccomp(
        ctx: NativeCallContext,
        p: &mut ScriptPlan,
        profile: &str,
    ) -> Result<(), Refusal> {
        let profiles = [
            SeccompProfile::Default,
            SeccompProfile::Strict,
            SeccompProfile::Unconfined,
        ];
        p.plan.seccomp =
            profiles[choice("seccomp", profile, &["default", "strict", "unconfined"])?];
        p.record(&ctx, "seccomp", format!("{profile:?}"));
        Ok(())
    }

    /// The network: `"none"` (a namespace of its own with only loopback) is the one mode
    /// this build has.
    #[rhai_fn(return_raw)]
    pub fn network(ctx: NativeCallContext, p: &mut ScriptPlan, mode: &str) -> Result<(), Refusal> {
        if mode != "none" {
            return Err(refuse(
                "network",
                &Dynamic::from(mode.to_owned()),
                "this build has only \"none\" (its own namespace with loopback); host and bridged networks come with the virtio issue",
            ));
        }
        p.plan.network = Network::None;
        p.record(&ctx, "network", format!("{mode:?}"));
        Ok(())
    }

    /// Maps `size` user ids from `host_id` on the host to `container_id` inside a new user
    /// namespace (`podman run --uidmap`); repeat for several ranges. Needs root.
    #[rhai_fn(return_raw)]
    pub fn map_uids(
        ctx: NativeCallContext,
        p: &mut ScriptPlan,
        container_id: INT,
        host_id: INT,
        size: INT,
    ) -> Result<(), Refusal> {
        super::push_id_map(
            &ctx,
            p,
            |maps| &mut maps.uids,
            id_map(container_id, host_id, size)?,
        );
        Ok(())
    }

    /// Maps `size` group ids from `host_id` to `container_id`, as `map_uids` does for users.
    #[rhai_fn(return_raw)]
    pub fn map_gids(
        ctx: NativeCallContext,
        p: &mut ScriptPlan,
        container_id: INT,
        host_id: INT,
        size: INT,
    ) -> Result<(), Refusal> {
        super::push_id_map(
            &ctx,
            p,
            |maps| &mut maps.gids,
            id_map(container_id, host_id, size)?,
        );
        Ok(())
    }

    fn id_map(container_id: INT, host_id: INT, size: INT) -> Result<IdMap, Refusal> {
        match (
            u32::try_from(container_id),
            u32::try_from(host_id),
            u32::try_from(size),
        ) {
            (Ok(container_id), Ok(host_id), Ok(size)) if size > 0 => Ok(IdMap {
                container_id,
                host_id,
                size,
            }),
            _ => Err(refuse(
                "userNamespace",
                &Dynamic::from(format!("{container_id}:{host_id}:{size}")),
                "expected ids from 0 to 4294967295 and a positive size",
            )),
        }
    }

    /// microVM: the guest kernel (absolute path to an ELF vmlinux with a PVH note, or a
    /// bzImage); default: the one `cargo xtask guest` fetched.
    #[rhai_fn(return_raw)]
    pub fn kernel(ctx: NativeCallContext, p: &mut ScriptPlan, file: &str) -> Result<(), Refusal> {
        let path = absolute_path("vm.kernel", file)?;
        p.plan.vm.get_or_insert_with(VmSpec::default).kernel = Some(path);
        p.record(&ctx, "vm.kernel", format!("{file:?}"));
        Ok(())
    }

    /// microVM: the base initramfs holding capsule-init (absolute path); default:
    /// `cargo xtask guest`'s.
    #[rhai_fn(return_raw)]
    pub fn initrd(ctx: NativeCallContext, p: &mut ScriptPlan, file: &str) -> Result<(), Refusal> {
        let path = absolute_path("vm.initrd", file)?;
        p.plan.vm.get_or_insert_with(VmSpec::default).initrd = Some(path);
        p.record(&ctx, "vm.initrd", format!("{file:?}"));
        Ok(())
    }

    /// microVM: parameters appended to capsule's kernel command line.
    pub fn kernel_cmdline(ctx: NativeCallContext, p: &mut ScriptPlan, parameters: &str) {
        p.plan.vm.get_or_insert_with(VmSpec::default).cmdline = Some(parameters.to_owned());
        p.record(&ctx, "vm.cmdline", format!("{parameters:?}"));
    }

    /// kata: how the root directory reaches the container: `"disk"` (an ext4 image on a
    /// read-only virtio-blk disk, the default) or `"virtiofs"`.
    #[rhai_fn(return_raw)]
    pub fn root_via(ctx: NativeCallContext, p: &mut ScriptPlan, how: &str) -> Result<(), Refusal> {
        let kinds = [plan::RootVia::Disk, plan::RootVia::Virtiofs];
        p.plan.vm.get_or_insert_with(VmSpec::default).root_via =
            kinds[choice("root_via", how, &["disk", "virtiofs"])?];
        p.record(&ctx, "vm.rootVia", format!("{how:?}"));
        Ok(())
    }

    /// microVM: show the guest kernel's boot log (a verbose boot is slower).
    pub fn kernel_log(ctx: NativeCallContext, p: &mut ScriptPlan, on: bool) {
        p.plan.vm.get_or_insert_with(VmSpec::default).kernel_log = on;
        p.record(&ctx, "vm.kernelLog", on.to_string());
    }

    /// Stops the workload after this long: seconds (`30`, `2.5`) or `"500ms"`, `"30s"`,
    /// `"2m"`; the launch then exits 124. microVM only for now.
    #[rhai_fn(return_raw)]
    pub fn timeout(
        ctx: NativeCallContext,
        p: &mut ScriptPlan,
        duration: Dynamic,
    ) -> Result<(), Refusal> {
        p.plan.timeout = Some(seconds("timeout", &duration)?);
        p.record(&ctx, "timeout", written(&duration));
        Ok(())
    }
}

/// Adds `map` to the list of the user namespace's maps that `list` picks.
fn push_id_map(
    ctx: &NativeCallContext,
    p: &mut ScriptPlan,
    list: fn(&mut IdMaps) -> &mut Vec<IdMap>,
    map: IdMap,
) {
    let maps = p.plan.user_namespace.get_or_insert_with(|| IdMaps {
        uids: Vec::new(),
        gids: Vec::new(),
    });
    list(maps).push(map);
    let IdMap {
        container_id,
        host_id,
        size,
    } = map;
    p.record(
        ctx,
        "userNamespace",
        format!("{container_id}:{host_id}:{size}"),
    );
}
