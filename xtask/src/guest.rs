//! `cargo xtask guest`: the microVM guest's kernel and modules from Debian's
//! `linux-image-cloud-amd64`, downloaded with apt (verified against its signed index, never
//! installed), unpacked into `$CAPSULE_GUEST_DIR` (default `~/.cache/capsule/guest`), and the
//! base initramfs `initramfs.cpio`: a static `capsule-init` as `/init` and the guest's virtio
//! modules. A manifest records the package and the init's hash; a second run with the same
//! ones does nothing.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use guest_init::newc::{Meta, NewcWriter};

use crate::apt;
use crate::util::{self, progress};

/// The metapackage that follows Debian's current cloud kernel.
const KERNEL_META: &str = "linux-image-cloud-amd64";

/// Bump when the artifacts written below change, so existing ones are rebuilt.
const LAYOUT: u32 = 2;

/// Modules the lab's L1 kernel loads to offer KVM, in load order. The guest's own modules are
/// [`guest_init::BASE_MODULES`].
pub const LAB_MODULES: &[&str] = &["irqbypass", "kvm", "kvm-amd", "kvm-intel"];

/// Compressed modules and the command that decompresses them to stdout (Debian compresses
/// them from trixie on).
const COMPRESSED_MODULES: &[(&str, &str)] = &[(".xz", "xz"), (".zst", "zstd")];

/// The target `capsule-init` is built for: static, so it runs in an initramfs without a C
/// library.
const INIT_TARGET: &str = "x86_64-unknown-linux-musl";

/// What `cargo xtask guest` produced.
#[derive(Debug)]
pub struct Guest {
    pub kernel: PathBuf,
    /// `<name>.ko` for every module of [`LAB_MODULES`] and [`guest_init::BASE_MODULES`] the
    /// kernel has.
    pub modules: PathBuf,
    /// The base initramfs: `/init` and the guest's modules.
    pub initramfs: PathBuf,
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
    let init = build_init()?;

    let dir = guest_dir();
    let guest = Guest {
        kernel: dir.join("vmlinuz"),
        modules: dir.join("modules"),
        initramfs: dir.join("initramfs.cpio"),
        kernel_version: format!("{image_package} {version}"),
    };
    let manifest_path = dir.join("manifest");
    let kernel_line = format!("kernel {image_package} {version} sha256 {}", image.sha256);
    let layout_line = format!("layout {LAYOUT}");
    let init_line = format!("init capsule-init sha256 {}", util::sha256(&init)?);
    let manifest = format!("{kernel_line}\n{init_line}\n{layout_line}\n");
    let current = fs::read_to_string(&manifest_path).unwrap_or_default();
    if current == manifest && guest.kernel.is_file() && guest.initramfs.is_file() {
        progress!(
            "guest artifacts in {} are up to date ({image_package} {version}): {}, {}",
            dir.display(),
            guest.kernel.display(),
            guest.initramfs.display()
        );
        return Ok(guest);
    }

    // A new capsule-init alone only needs a new initramfs.
    let kernel_current = current.lines().any(|l| l == kernel_line)
        && current.lines().any(|l| l == layout_line)
        && guest.kernel.is_file()
        && guest.modules.is_dir();
    if !kernel_current {
        progress!("unpacking {image_package} {version} into {}", dir.display());
        let unpacked = downloads.join(format!(".{image_package}.unpacked-{}", std::process::id()));
        util::remove_dir_if_exists(&unpacked)?;
        let result = install(&image.path, &unpacked, &guest);
        util::remove_dir_if_exists(&unpacked)?;
        result?;
    }
    let size = write_initramfs(&guest, &init)?;
    progress!(
        "wrote {} ({} KiB: capsule-init and the guest's modules)",
        guest.initramfs.display(),
        size / 1024
    );
    fs::write(&manifest_path, manifest)
        .with_context(|| format!("writing {}", manifest_path.display()))?;
    progress!(
        "guest artifacts ready: {}, {}",
        guest.kernel.display(),
        guest.initramfs.display()
    );
    Ok(guest)
}

/// Builds the static `capsule-init` and returns its path.
fn build_init() -> Result<PathBuf> {
    util::run(
        util::cargo().args([
            "build",
            "--release",
            "--target",
            INIT_TARGET,
            "-p",
            "guest-init",
            "--bin",
            "capsule-init",
        ]),
        &format!(
            "capsule-init (package `guest-init`) must build as a static {INIT_TARGET} binary; is the target installed (rustup target add {INIT_TARGET})?"
        ),
    )?;
    let bin = util::target_dir()
        .join(INIT_TARGET)
        .join("release")
        .join("capsule-init");
    if !bin.is_file() {
        bail!(
            "cargo built successfully but {} does not exist; is the `capsule-init` binary still in package `guest-init`?",
            bin.display()
        );
    }
    Ok(bin)
}

/// Writes the base initramfs (uncompressed newc, so that the per-launch archive can simply
/// follow it) and returns its size. Written next to its place and renamed, so a reader never
/// sees half an archive.
fn write_initramfs(guest: &Guest, init: &Path) -> Result<u64> {
    let path = &guest.initramfs;
    let tmp = path.with_extension(format!("cpio.tmp-{}", std::process::id()));
    let result = write_initramfs_to(&tmp, guest, init);
    if result.is_err() {
        // Best effort: the error that matters is the write's.
        let _ = fs::remove_file(&tmp);
    }
    let size = result.with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming {} into place", path.display()))?;
    Ok(size)
}

fn write_initramfs_to(tmp: &Path, guest: &Guest, init: &Path) -> Result<u64> {
    let file = File::create(tmp)?;
    let mut archive = NewcWriter::new(BufWriter::with_capacity(256 * 1024, file));
    let modules_dir = guest_init::MODULES_DIR.trim_start_matches('/');
    let capsule_dir = Path::new(guest_init::CONFIG_PATH)
        .parent()
        .and_then(|p| p.to_str())
        .context("CONFIG_PATH has a directory")?
        .trim_start_matches('/');
    for dir in ["dev", "proc", "sys", capsule_dir, "lib", modules_dir] {
        archive.directory(dir, Meta::root(0o755))?;
    }
    // The kernel opens /dev/console for the init before anything is mounted; the init then
    // mounts devtmpfs over /dev.
    archive.char_device("dev/console", Meta::root(0o600), 5, 1)?;
    // Without a console the kernel leaves the init's stdio closed, and Rust's runtime reopens
    // it on /dev/null before main, aborting (a kernel panic in PID 1) if it cannot.
    archive.char_device("dev/null", Meta::root(0o666), 1, 3)?;
    archive.file_from_path("init", Meta::root(0o755), init)?;
    for file in guest_init::BASE_MODULES {
        let host = guest.modules.join(file);
        if !host.is_file() {
            progress!(
                "{} has no {file} (built in, or not in this kernel): the base initramfs goes without it",
                guest.kernel_version
            );
            continue;
        }
        archive.file_from_path(format!("{modules_dir}/{file}"), Meta::root(0o644), &host)?;
    }
    let (out, size) = archive.finish()?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(size)
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
    // Modules of an older kernel must not linger.
    util::remove_dir_if_exists(&guest.modules)?;
    fs::create_dir_all(&guest.modules)
        .with_context(|| format!("creating {}", guest.modules.display()))?;
    copy(&vmlinuz, &guest.kernel)?;
    let module_root = unpacked.join("lib/modules");
    let lab_files: Vec<String> = LAB_MODULES.iter().map(|m| format!("{m}.ko")).collect();
    let guest_files = guest_init::BASE_MODULES.iter().map(|f| f.to_string());
    for file in lab_files.into_iter().chain(guest_files) {
        let Some(found) = walk_find(&module_root, &file)? else {
            progress!(
                "{} has no module {file} (built in?); skipping it",
                deb.display()
            );
            continue;
        };
        let dest = guest.modules.join(&file);
        let found_name = found.file_name().unwrap_or_default().to_string_lossy();
        match COMPRESSED_MODULES
            .iter()
            .find(|(suffix, _)| found_name.ends_with(suffix))
        {
            Some((_, tool)) => decompress(tool, &found, &dest)?,
            None => copy(&found, &dest)?,
        }
    }
    Ok(())
}

/// `tool -dc from > to`: the kernel's finit_module could take some compressed modules itself,
/// but only when the kernel was built for it, and the lab's busybox insmod cannot.
fn decompress(tool: &str, from: &Path, to: &Path) -> Result<()> {
    let out = File::create(to).with_context(|| format!("creating {}", to.display()))?;
    let mut cmd = Command::new(tool);
    cmd.arg("-dc").arg(from).stdout(out);
    let line = util::describe(&cmd);
    let status = cmd.status().with_context(|| {
        format!("could not start `{line}`: install {tool} to decompress the kernel's modules")
    })?;
    if !status.success() {
        bail!("`{line}` failed ({status}): delete the download and run again");
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
        } else if same_module(uncompressed(&entry.file_name().to_string_lossy()), file) {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// `virtio.ko` of `virtio.ko.xz`.
fn uncompressed(name: &str) -> &str {
    COMPRESSED_MODULES
        .iter()
        .find_map(|(suffix, _)| name.strip_suffix(suffix))
        .unwrap_or(name)
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
        assert_eq!(uncompressed("virtio.ko.xz"), "virtio.ko");
        assert_eq!(uncompressed("virtio.ko.zst"), "virtio.ko");
        assert_eq!(uncompressed("virtio.ko"), "virtio.ko");
    }
}
