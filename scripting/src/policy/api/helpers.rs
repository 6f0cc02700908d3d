//! Helpers for the decisions most policies make. Each is a few setters in a row, so what it
//! does is written here once and shows in `capsule plan`.

use ns_core::{Capabilities, SeccompProfile};
use rhai::plugin::*;

use crate::Isolation;
use crate::plan::{Mount, MountType};
use crate::policy::script_plan::ScriptPlan;

/// Scratch space a hardened container gets at `/tmp`, its root being read-only.
const HARDENED_TMP: u64 = 64 << 20;

#[export_module]
pub mod helpers {
    use crate::Isolation;
    use crate::policy::HostFacts;
    use crate::policy::host::Kvm;
    use crate::policy::script_plan::ScriptPlan;

    /// Locks a Plan down: no capabilities, a read-only root, Docker's seccomp profile, no
    /// privilege gain through setuid binaries, and (for a container) a 64M tmpfs at `/tmp`
    /// unless something is mounted there already.
    ///
    /// ```rhai
    /// p.hardened();
    /// ```
    pub fn hardened(ctx: NativeCallContext, p: &mut ScriptPlan) {
        super::harden(&ctx, p);
    }

    /// Code you do not trust: a microVM when the host has hardware KVM (`host.kvm ==
    /// "hardware"`), otherwise a hardened container (see `hardened`). A Plan already set
    /// to `"microvm"` is left alone.
    ///
    /// ```rhai
    /// p.untrusted(host);
    /// ```
    pub fn untrusted(ctx: NativeCallContext, p: &mut ScriptPlan, host: HostFacts) {
        if p.plan.isolation == Isolation::Microvm {
            return;
        }
        if host.kvm == Kvm::Hardware {
            p.plan.isolation = Isolation::Microvm;
            p.record(&ctx, "isolation", "\"microvm\"".to_owned());
        } else {
            p.plan.isolation = Isolation::Container;
            p.record(&ctx, "isolation", "\"container\"".to_owned());
            super::harden(&ctx, p);
        }
    }
}

/// What `hardened()` sets, recorded at the helper's call.
fn harden(ctx: &NativeCallContext, p: &mut ScriptPlan) {
    p.plan.process.capabilities = Capabilities::default();
    p.record(ctx, "process.capabilities", "[]".to_owned());
    p.plan.root.readonly = true;
    p.record(ctx, "root.readonly", "true".to_owned());
    p.plan.seccomp = SeccompProfile::Default;
    p.record(ctx, "seccomp", "\"default\"".to_owned());
    p.plan.process.no_new_privileges = true;
    p.record(ctx, "process.noNewPrivileges", "true".to_owned());
    let has_tmp = p
        .plan
        .mounts
        .iter()
        .any(|m| m.destination.as_os_str() == "/tmp");
    if p.plan.isolation == Isolation::Container && !has_tmp {
        let field = format!("mounts[{}]", p.plan.mounts.len());
        p.plan.mounts.push(Mount {
            destination: "/tmp".into(),
            kind: MountType::Tmpfs,
            source: None,
            size: Some(HARDENED_TMP),
            readonly: false,
        });
        p.record(ctx, &field, "\"/tmp\"".to_owned());
    }
}
