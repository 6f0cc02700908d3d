//! The root filesystem and what is mounted on it.

use rhai::plugin::*;

use crate::api::values::{Refusal, absolute_path, refuse};
use crate::script_plan::ScriptPlan;
use plan::{Disk, Mount, MountType};

#[export_module]
pub mod filesystem {
    use crate::api::values::{Refusal, absolute_path, size};
    use crate::script_plan::ScriptPlan;
    use plan::MountType;

    /// The directory that becomes `/` (absolute); for a microVM also a disk image file (raw or
    /// qcow2) holding an ext4 root, which the guest mounts read-only under a writable overlay
    /// in its RAM (`read_only(true)`: without the overlay).
    #[rhai_fn(return_raw)]
    pub fn rootfs(ctx: NativeCallContext, p: &mut ScriptPlan, dir: &str) -> Result<(), Refusal> {
        p.plan.root.path = absolute_path("root.path", dir)?;
        p.record(&ctx, "root.path", format!("{dir:?}"));
        Ok(())
    }

    /// `true`: the root filesystem is mounted read-only. `false` (the default): writes go to a
    /// throw-away overlay and never reach the directory.
    pub fn read_only(ctx: NativeCallContext, p: &mut ScriptPlan, on: bool) {
        p.plan.root.readonly = on;
        p.record(&ctx, "root.readonly", on.to_string());
    }

    /// Bind-mounts the host directory or file `source` (absolute) at `destination`,
    /// writable (`docker run -v SRC:DST`).
    #[rhai_fn(return_raw)]
    pub fn bind(
        ctx: NativeCallContext,
        p: &mut ScriptPlan,
        source: &str,
        destination: &str,
    ) -> Result<(), Refusal> {
        super::add_bind(ctx, p, source, destination, false)
    }

    /// Bind-mounts the host directory or file `source` (absolute) at `destination`,
    /// read-only (`docker run -v SRC:DST:ro`).
    #[rhai_fn(return_raw)]
    pub fn bind_read_only(
        ctx: NativeCallContext,
        p: &mut ScriptPlan,
        source: &str,
        destination: &str,
    ) -> Result<(), Refusal> {
        super::add_bind(ctx, p, source, destination, true)
    }

    /// Attaches the disk image `path` (absolute; raw or qcow2, told apart by its content) to a
    /// microVM, writable: the first call's disk is `/dev/vdb` in the guest, the next
    /// `/dev/vdc`, and so on (`capsule run --disk PATH`). A container takes no disks.
    ///
    /// ```rhai
    /// p.disk("/srv/images/data.qcow2");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn disk(ctx: NativeCallContext, p: &mut ScriptPlan, path: &str) -> Result<(), Refusal> {
        super::add_disk(&ctx, p, path, None)
    }

    /// Attaches the disk image `path` as `disk(path)` does, with options: `#{ readonly: true }`
    /// makes it read-only (`--disk PATH:ro`). Other keys are refused.
    ///
    /// ```rhai
    /// p.disk("/srv/images/base.raw", #{ readonly: true });
    /// ```
    #[rhai_fn(name = "disk", return_raw)]
    pub fn disk_with_options(
        ctx: NativeCallContext,
        p: &mut ScriptPlan,
        path: &str,
        options: rhai::Map,
    ) -> Result<(), Refusal> {
        super::add_disk(&ctx, p, path, Some(&options))
    }

    /// Mounts an empty tmpfs at `destination`, sized by the kernel's default (half of RAM).
    pub fn tmpfs(ctx: NativeCallContext, p: &mut ScriptPlan, destination: &str) {
        super::add_mount(ctx, p, destination, MountType::Tmpfs, None, None);
    }

    /// Mounts an empty tmpfs of at most `size` (`"64M"` or `64.mib()`) at `destination`.
    #[rhai_fn(name = "tmpfs", return_raw)]
    pub fn tmpfs_sized(
        ctx: NativeCallContext,
        p: &mut ScriptPlan,
        destination: &str,
        size_limit: Dynamic,
    ) -> Result<(), Refusal> {
        let field = format!("mounts[{}]", p.plan.mounts.len());
        let bytes = size(&field, &size_limit)?;
        super::add_mount(ctx, p, destination, MountType::Tmpfs, None, Some(bytes));
        Ok(())
    }
}

/// The keys `disk(path, #{...})` takes.
const DISK_OPTIONS: &[&str] = &["readonly"];

fn add_disk(
    ctx: &NativeCallContext,
    p: &mut ScriptPlan,
    path: &str,
    options: Option<&rhai::Map>,
) -> Result<(), Refusal> {
    let field = format!("disks[{}]", p.plan.disks.len());
    let path = absolute_path(&field, path)?;
    let mut read_only = false;
    let mut written = format!("{:?}", path.display().to_string());
    if let Some(options) = options {
        for (key, value) in options {
            match key.as_str() {
                "readonly" => {
                    read_only = value
                        .as_bool()
                        .map_err(|_| refuse(&field, value, "readonly takes true or false"))?;
                }
                other => {
                    let map = Dynamic::from_map(options.clone());
                    return Err(refuse(
                        &field,
                        &map,
                        format!(
                            "unknown option {other:?}: expected {}",
                            DISK_OPTIONS.join(", ")
                        ),
                    ));
                }
            }
        }
        written = format!("{written}, {}", Dynamic::from_map(options.clone()));
    }
    p.plan.disks.push(Disk { path, read_only });
    p.record(ctx, &field, written);
    Ok(())
}

fn add_bind(
    ctx: NativeCallContext,
    p: &mut ScriptPlan,
    source: &str,
    destination: &str,
    readonly: bool,
) -> Result<(), Refusal> {
    let field = format!("mounts[{}]", p.plan.mounts.len());
    let source = absolute_path(&field, source)?;
    add_mount(ctx, p, destination, MountType::Bind, Some(source), None);
    if let Some(mount) = p.plan.mounts.last_mut() {
        mount.readonly = readonly;
    }
    Ok(())
}

fn add_mount(
    ctx: NativeCallContext,
    p: &mut ScriptPlan,
    destination: &str,
    kind: MountType,
    source: Option<std::path::PathBuf>,
    size: Option<u64>,
) {
    let field = format!("mounts[{}]", p.plan.mounts.len());
    p.plan.mounts.push(Mount {
        destination: destination.into(),
        kind,
        source,
        size,
        readonly: false,
    });
    p.record(&ctx, &field, format!("{destination:?}"));
}
