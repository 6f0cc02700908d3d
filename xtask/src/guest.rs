//! `cargo xtask guest`: the microVM guest's kernel and modules from Debian's
//! `linux-image-cloud-amd64`, downloaded with apt (verified against its signed index, never
//! installed), unpacked into `$CAPSULE_GUEST_DIR` (default `~/.cache/capsule/guest`). A
//! manifest records the package versions; a second run with the same ones does nothing.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::apt;
use crate::util::{self, progress};

/// The metapackage that follows Debian's current cloud kernel.
const KERNEL_META: &str = "linux-image-cloud-amd64";

/// Bump when the artifacts written below change, so existing ones are rebuilt.
const LAYOUT: u32 = 1;

/// Modules the guest and the lab load themselves (virtio drivers are modules in this kernel,
/// and the lab's L1 needs KVM). In load order within each group.
pub const MODULES: &[&str] = &[
    "irqbypass",
    "kvm",
    "kvm-amd",
    "kvm-intel",
    "virtio",
    "virtio_ring",
    "virtio_mmio",
    "virtio_blk",
    "virtio_net",
    "virtio_console",
    "virtio_rng",
];

/// What `cargo xtask guest` produced.
#[derive(Debug)]
pub struct Guest {
    pub kernel: PathBuf,
    pub modules: PathBuf,
    pub kernel_version: String,
}

/// `$CAPSULE_GUEST_DIR`, else `~/.cache/capsule/guest` (where `capsule` looks too).
pub fn guest_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CAPSULE_GUEST_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/capsule/guest")
}

/// Builds (or reuses) the guest artifacts and returns where they are.
pub fn build() -> Result<Guest> {
    let downloads = util::capsule_dir().join("downloads");
    let meta = apt::download(KERNEL_META, &downloads)?;
    let image_package = kernel_package(&apt::field(&meta.path, "Depends")?)?;
    let image = apt::download(&image_package, &downloads)?;
    let version = apt::field(&image.path, "Version")?;

    let dir = guest_dir();
    let guest = Guest {
        kernel: dir.join("vmlinuz"),
        modules: dir.join("modules"),
        kernel_version: format!("{image_package} {version}"),
    };
    let manifest_path = dir.join("manifest");
    let manifest = format!(
        "kernel {image_package} {version} sha256 {}\nlayout {LAYOUT}\n",
        image.sha256
    );
    if fs::read_to_string(&manifest_path).ok().as_deref() == Some(manifest.as_str())
        && guest.kernel.is_file()
    {
        progress!(
            "guest artifacts in {} are up to date ({image_package} {version})",
            dir.display()
        );
        return Ok(guest);
    }

    progress!("unpacking {image_package} {version} into {}", dir.display());
    let unpacked = downloads.join(format!(".{image_package}.unpacked-{}", std::process::id()));
    util::remove_dir_if_exists(&unpacked)?;
    let result = install(&image.path, &unpacked, &guest);
    util::remove_dir_if_exists(&unpacked)?;
    result?;
    fs::write(&manifest_path, manifest)
        .with_context(|| format!("writing {}", manifest_path.display()))?;
    progress!("guest artifacts ready in {}", dir.display());
    Ok(guest)
}

/// The versioned image package the metapackage depends on (`linux-image-6.1.0-56-cloud-amd64`).
fn kernel_package(depends: &str) -> Result<String> {
    depends
        .split(',')
        .map(|d| d.split_whitespace().next().unwrap_or_default())
        .find(|name| name.starts_with("linux-image-") && name != &KERNEL_META)
        .map(str::to_owned)
        .with_context(|| {
            format!("{KERNEL_META} depends on no versioned linux-image package: {depends:?}")
        })
}

fn install(deb: &Path, unpacked: &Path, guest: &Guest) -> Result<()> {
    apt::unpack(deb, unpacked)?;
    let vmlinuz = find(&unpacked.join("boot"), |name| name.starts_with("vmlinuz-"))?
        .with_context(|| format!("{} holds no boot/vmlinuz-*", deb.display()))?;
    fs::create_dir_all(&guest.modules)
        .with_context(|| format!("creating {}", guest.modules.display()))?;
    copy(&vmlinuz, &guest.kernel)?;
    let module_root = unpacked.join("lib/modules");
    for name in MODULES {
        let file = format!("{name}.ko");
        let found = walk_find(&module_root, &file)?.with_context(|| {
            format!(
                "{} has no module {file} (is it compressed in this kernel?)",
                deb.display()
            )
        })?;
        copy(&found, &guest.modules.join(&file))?;
    }
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to)
        .map(drop)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))
}

fn find(dir: &Path, pred: impl Fn(&str) -> bool) -> Result<Option<PathBuf>> {
    let entries = fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    Ok(entries
        .flatten()
        .find(|e| pred(&e.file_name().to_string_lossy()))
        .map(|e| e.path()))
}

fn walk_find(dir: &Path, file: &str) -> Result<Option<PathBuf>> {
    for entry in fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
    {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            if let Some(found) = walk_find(&path, file)? {
                return Ok(Some(found));
            }
        } else if same_module(&entry.file_name().to_string_lossy(), file) {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// Module names treat `-` and `_` alike (`virtio-rng.ko` is loaded as `virtio_rng`).
fn same_module(a: &str, b: &str) -> bool {
    a.replace('-', "_") == b.replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_versioned_image_is_picked_from_depends() {
        let depends = "linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)";
        assert_eq!(
            kernel_package(depends).unwrap(),
            "linux-image-6.1.0-56-cloud-amd64"
        );
        assert!(kernel_package("libc6 (>= 2)").is_err());
        assert!(same_module("virtio-rng.ko", "virtio_rng.ko"));
        assert!(!same_module("kvm.ko", "kvm-amd.ko"));
    }
}
