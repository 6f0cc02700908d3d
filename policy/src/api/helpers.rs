//! Helpers for the decisions most policies make. Each is a few setters in a row, so what it
//! does is written here once and shows in `capsule plan`.

use plan::{Capabilities, IdMap, IdMaps, SeccompProfile};
use rhai::plugin::*;

use crate::script_plan::ScriptPlan;
use plan::Host;
use plan::Isolation;
use plan::SubIds;
use plan::{Mount, MountType};

/// Scratch space a hardened container gets at `/tmp`, its root being read-only.
const HARDENED_TMP: u64 = 64 << 20;

/// Ids a hardened container maps: 0 to 65535 covers every id an image's files use
/// (`nobody` is 65534), as podman's and systemd-nspawn's 64K ranges do.
pub(crate) const HARDENED_IDS: u32 = 65_536;

/// The first host id of a hardened container's range when `/etc/subuid` and `/etc/subgid`
/// have no `capsule` line: the first id after systemd's container ranges (524288 to
/// 1879048191, which systemd-nspawn `--private-users=pick` allocates from) and far above
/// useradd's (100000 onwards, 65536 a user), so it collides with neither: systemd's
/// UIDS-GIDS.md marks the ids right after its container ranges unused. Every hardened
/// container without subordinate ranges shares it.
pub(crate) const FALLBACK_HOST_ID: u32 = 0x7000_0000;

#[export_module]
pub mod helpers {
    use crate::api::values::Refusal;
    use crate::script_plan::ScriptPlan;
    use plan::Host;
    use plan::Isolation;
    use plan::Kvm;

    /// Locks a Plan down: no capabilities, a read-only root, the strict seccomp profile, no
    /// privilege gain through setuid binaries and, for a container, a 64M tmpfs at `/tmp`
    /// unless something is mounted there already, and a user namespace unless the Plan maps
    /// ids already: root inside is an unprivileged host id. With capsule run as root, the
    /// container's ids 0 to 65535 map to the `capsule` ranges of `/etc/subuid` and
    /// `/etc/subgid` (`host.subuid`, `host.subgid`; at most 65536 ids), else to host ids
    /// 1879048192 to 1879113727 (see "The hardened container" below);
    /// rootless, to your own ids, as every rootless launch is.
    ///
    /// ```rhai
    /// p.hardened(host);
    /// ```
    pub fn hardened(ctx: NativeCallContext, p: &mut ScriptPlan, host: Host) {
        super::harden(&ctx, p, &host);
    }

    /// Refuses: `hardened` needs `host` (`p.hardened(host)`) to choose the user namespace.
    #[rhai_fn(name = "hardened", return_raw)]
    pub fn hardened_without_host(p: &mut ScriptPlan) -> Result<(), Refusal> {
        let _ = p;
        Err("hardened() needs the host facts to choose the user namespace: write p.hardened(host) (in a module function, take host as a parameter)".into())
    }

    /// Code you do not trust: a microVM when the host has hardware KVM (`host.kvm ==
    /// "hardware"`), otherwise a hardened container (see `hardened`). A Plan already set
    /// to `"microvm"` is left alone.
    ///
    /// ```rhai
    /// p.untrusted(host);
    /// ```
    pub fn untrusted(ctx: NativeCallContext, p: &mut ScriptPlan, host: Host) {
        if p.plan.isolation == Isolation::Microvm {
            return;
        }
        if host.kvm == Kvm::Hardware {
            p.plan.isolation = Isolation::Microvm;
            p.record(&ctx, "isolation", "\"microvm\"".to_owned());
        } else {
            p.plan.isolation = Isolation::Container;
            p.record(&ctx, "isolation", "\"container\"".to_owned());
            super::harden(&ctx, p, &host);
        }
    }
}

/// What `hardened()` sets, recorded at the helper's call.
fn harden(ctx: &NativeCallContext, p: &mut ScriptPlan, host: &Host) {
    p.plan.process.capabilities = Capabilities::default();
    p.record(ctx, "process.capabilities", "[]".to_owned());
    p.plan.root.readonly = true;
    p.record(ctx, "root.readonly", "true".to_owned());
    p.plan.seccomp = SeccompProfile::Strict;
    p.record(ctx, "seccomp", "\"strict\"".to_owned());
    p.plan.process.no_new_privileges = true;
    p.record(ctx, "process.noNewPrivileges", "true".to_owned());
    if p.plan.isolation != Isolation::Container {
        return;
    }
    let has_tmp = p
        .plan
        .mounts
        .iter()
        .any(|m| m.destination.as_os_str() == "/tmp");
    if !has_tmp {
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
    // Rootless, the backend maps the caller's own ids, the only ones it may map.
    if p.plan.user_namespace.is_none() && !host.rootless {
        let maps = hardened_id_maps(host.subids);
        let IdMap { host_id, size, .. } = maps.uids[0];
        p.record(ctx, "userNamespace", format!("0:{host_id}:{size}"));
        p.plan.user_namespace = Some(maps);
    }
}

/// Container ids 0 to `size - 1` on the `capsule` subordinate ranges, or on
/// [`FALLBACK_HOST_ID`] when the host has none.
fn hardened_id_maps(subids: Option<SubIds>) -> IdMaps {
    let map = |start: u32, count: u32| {
        vec![IdMap {
            container_id: 0,
            host_id: start,
            size: count.min(HARDENED_IDS),
        }]
    };
    match subids {
        Some(s) => IdMaps {
            uids: map(s.uid.start, s.uid.count),
            gids: map(s.gid.start, s.gid.count),
        },
        None => IdMaps {
            uids: map(FALLBACK_HOST_ID, HARDENED_IDS),
            gids: map(FALLBACK_HOST_ID, HARDENED_IDS),
        },
    }
}

#[cfg(test)]
mod tests {
    use plan::SubIdRange;

    use super::*;

    #[test]
    fn subordinate_ranges_win_and_are_capped() {
        let range = |start, count| SubIdRange { start, count };
        let maps = hardened_id_maps(Some(SubIds {
            uid: range(100_000, 1 << 20),
            gid: range(200_000, 1000),
        }));
        assert_eq!(
            (maps.uids[0].host_id, maps.uids[0].size),
            (100_000, HARDENED_IDS)
        );
        assert_eq!((maps.gids[0].host_id, maps.gids[0].size), (200_000, 1000));
        let fallback = hardened_id_maps(None);
        assert_eq!(fallback.uids, fallback.gids);
        assert_eq!(
            (fallback.uids[0].container_id, fallback.uids[0].host_id),
            (0, 0x7000_0000)
        );
        assert!(fallback.maps_uid(65_534) && !fallback.maps_uid(65_536));
    }
}
