//! `cargo xtask guest`: the microVM guest's kernel and modules from Debian's
//! `linux-image-cloud-amd64`, downloaded with apt (verified against its signed index, never
//! installed), unpacked into `$CAPSULE_GUEST_DIR` (default `~/.cache/capsule/guest`), and the
//! base initramfs `initramfs.cpio`: a static `capsule-init` as `/init` and the guest's virtio
//! modules. Besides the bzImage `vmlinuz`, the ELF `vmlinux` decompressed from its payload,
//! which boots through PVH. A manifest records the package and the init's hash; a second run
//! with the same ones does nothing.

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

/// Bump when the artifacts written below change, so existing ones are rebuilt (6:
/// virtio_balloon joined the guest's modules, for free page reporting).
const LAYOUT: u32 = 6;

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
    /// The bzImage, as Debian ships it.
    pub kernel: PathBuf,
    /// The ELF vmlinux inside [`Guest::kernel`], for the PVH boot.
    pub vmlinux: PathBuf,
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
        vmlinux: dir.join("vmlinux"),
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
    if current == manifest
        && guest.kernel.is_file()
        && guest.vmlinux.is_file()
        && guest.initramfs.is_file()
    {
        progress!(
            "guest artifacts in {} are up to date ({image_package} {version}): {}, {}, {}",
            dir.display(),
            guest.kernel.display(),
            guest.vmlinux.display(),
            guest.initramfs.display()
        );
        return Ok(guest);
    }

    // A new capsule-init alone only needs a new initramfs.
    let kernel_current = current.lines().any(|l| l == kernel_line)
        && current.lines().any(|l| l == layout_line)
        && guest.kernel.is_file()
        && guest.vmlinux.is_file()
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
        "guest artifacts ready: {}, {}, {}",
        guest.kernel.display(),
        guest.vmlinux.display(),
        guest.initramfs.display()
    );
    Ok(guest)
}

/// Builds the static `capsule-init` and returns its path.
fn build_init() -> Result<PathBuf> {
    util::ensure_rust_target(INIT_TARGET)?;
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
            "capsule-init (package `guest-init`) must build as a static {INIT_TARGET} binary; fix the errors above"
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
    let bzimage = fs::read(&vmlinuz).with_context(|| format!("reading {}", vmlinuz.display()))?;
    let vmlinux = extract_vmlinux(&bzimage)
        .with_context(|| format!("extracting the ELF vmlinux from {}", vmlinuz.display()))?;
    fs::write(&guest.vmlinux, &vmlinux)
        .with_context(|| format!("writing {}", guest.vmlinux.display()))?;
    progress!(
        "wrote {} ({:.1} MiB, the ELF kernel inside the bzImage)",
        guest.vmlinux.display(),
        vmlinux.len() as f64 / (1024.0 * 1024.0)
    );
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

/// Setup header fields (boot protocol 2.08+, `Documentation/arch/x86/boot.rst`).
const SETUP_SECTS: usize = 0x1f1;
const HEADER_MAGIC: usize = 0x202;
const HEADER_VERSION: usize = 0x206;
/// `payload_offset` counts from the start of the protected-mode code.
const PAYLOAD_OFFSET: usize = 0x248;
const PAYLOAD_LENGTH: usize = 0x24c;

/// The ELF vmlinux a bzImage carries as its compressed payload. Only LZ4 (what Debian's
/// cloud kernel uses) is understood; another compression is named in the error.
fn extract_vmlinux(bzimage: &[u8]) -> Result<Vec<u8>> {
    let u32_at = |offset: usize| -> Result<u32> {
        bzimage
            .get(offset..offset + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .with_context(|| format!("the file ends before the setup header's byte {offset:#x}"))
    };
    if bzimage.get(HEADER_MAGIC..HEADER_MAGIC + 4) != Some(b"HdrS") {
        bail!("no bzImage setup header (no \"HdrS\" at {HEADER_MAGIC:#x})");
    }
    let version = u32_at(HEADER_VERSION)? & 0xffff;
    if version < 0x208 {
        bail!("boot protocol {version:#x} has no payload fields (2.08+ has)");
    }
    // A zero means the historical 4.
    let setup_sects = match bzimage[SETUP_SECTS] {
        0 => 4,
        n => usize::from(n),
    };
    let start = (setup_sects + 1) * 512 + u32_at(PAYLOAD_OFFSET)? as usize;
    let length = u32_at(PAYLOAD_LENGTH)? as usize;
    let payload = bzimage.get(start..start + length).with_context(|| {
        format!(
            "the payload ({length} bytes at {start:#x}) runs past the end of the file ({} bytes)",
            bzimage.len()
        )
    })?;
    let vmlinux = unlz4_legacy(payload)?;
    if !vmlinux.starts_with(b"\x7fELF") {
        bail!(
            "the payload decompressed to {} bytes that are not an ELF",
            vmlinux.len()
        );
    }
    Ok(vmlinux)
}

/// The magic of LZ4's legacy frame (`lz4 -l`, which the kernel's build uses).
const LZ4_LEGACY_MAGIC: u32 = 0x184c_2102;
/// A legacy frame's blocks each decompress to at most this.
const LZ4_LEGACY_BLOCK_MAX: usize = 8 << 20;

/// Decompresses an LZ4 legacy frame: the magic, then blocks, each a u32 LE compressed size
/// and a raw LZ4 block. The magic may come again (concatenated frames); fewer than 4 bytes
/// left end the stream, and so do exactly 4, which the kernel's build appends as the
/// uncompressed size (checked).
fn unlz4_legacy(input: &[u8]) -> Result<Vec<u8>> {
    let Some(mut rest) = input.strip_prefix(&LZ4_LEGACY_MAGIC.to_le_bytes()) else {
        let magic = input.get(..6).unwrap_or(input);
        bail!(
            "the payload is not LZ4 in the legacy frame format (it starts with {magic:02x?}; \
             gzip is 1f 8b, xz fd 37 7a 58 5a 00, zstd 28 b5 2f fd)"
        );
    };
    let mut out = Vec::new();
    while let Some((size, after)) = rest.split_first_chunk::<4>() {
        let size = u32::from_le_bytes(*size);
        if size == LZ4_LEGACY_MAGIC {
            rest = after;
            continue;
        }
        if after.is_empty() {
            // The size the kernel's build appends is modulo 2^32.
            if size != out.len() as u32 {
                bail!(
                    "the LZ4 stream decompressed to {} bytes but its trailer says {size}",
                    out.len()
                );
            }
            break;
        }
        let at = input.len() - after.len();
        let Some((block, after)) = after.split_at_checked(size as usize) else {
            bail!(
                "the LZ4 block at byte {at} claims {size} bytes, {} are left",
                after.len()
            );
        };
        let start = out.len();
        out.resize(start + LZ4_LEGACY_BLOCK_MAX, 0);
        let len = lz4_flex::block::decompress_into(block, &mut out[start..])
            .with_context(|| format!("decompressing the LZ4 block at byte {at}"))?;
        out.truncate(start + len);
        rest = after;
    }
    Ok(out)
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

    /// A raw LZ4 block holding only `literals` (at most 14 bytes): the token's high nibble
    /// is their count, and a last sequence has no match.
    fn literal_block(literals: &[u8]) -> Vec<u8> {
        let mut block = vec![(literals.len() as u8) << 4];
        block.extend_from_slice(literals);
        block
    }

    fn legacy_stream(blocks: &[&[u8]], trailer: Option<u32>) -> Vec<u8> {
        let mut stream = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
        for literals in blocks {
            let block = literal_block(literals);
            stream.extend_from_slice(&(block.len() as u32).to_le_bytes());
            stream.extend_from_slice(&block);
        }
        if let Some(size) = trailer {
            stream.extend_from_slice(&size.to_le_bytes());
        }
        stream
    }

    #[test]
    fn a_legacy_lz4_stream_decompresses_block_by_block() {
        let stream = legacy_stream(&[b"\x7fELF", b" and more"], Some(13));
        assert_eq!(unlz4_legacy(&stream).unwrap(), b"\x7fELF and more");
        // A second frame's magic, and stray bytes shorter than a size, are skipped.
        let mut two = legacy_stream(&[b"ab"], None);
        two.extend_from_slice(&legacy_stream(&[b"cd"], None));
        two.extend_from_slice(&[0, 0]);
        assert_eq!(unlz4_legacy(&two).unwrap(), b"abcd");
    }

    #[test]
    fn a_bad_legacy_lz4_stream_is_an_error() {
        let err = unlz4_legacy(&[0x1f, 0x8b, 8, 0]).unwrap_err();
        assert!(err.to_string().contains("not LZ4"), "{err}");
        let wrong_size = legacy_stream(&[b"abc"], Some(4));
        let err = unlz4_legacy(&wrong_size).unwrap_err();
        assert!(err.to_string().contains("trailer says 4"), "{err}");
        let mut truncated = legacy_stream(&[b"abcdef"], None);
        truncated.truncate(truncated.len() - 2);
        let err = unlz4_legacy(&truncated).unwrap_err();
        assert!(
            err.to_string().contains("claims 7 bytes, 5 are left"),
            "{err}"
        );
    }

    #[test]
    fn the_vmlinux_is_the_bzimage_payload() {
        let payload = legacy_stream(&[b"\x7fELF", b"rest"], Some(8));
        let mut image = vec![0u8; 1024]; // boot sector and one setup sector
        image[SETUP_SECTS] = 1;
        image[HEADER_MAGIC..HEADER_MAGIC + 4].copy_from_slice(b"HdrS");
        image[HEADER_VERSION..HEADER_VERSION + 2].copy_from_slice(&0x020fu16.to_le_bytes());
        image[PAYLOAD_OFFSET..PAYLOAD_OFFSET + 4].copy_from_slice(&0x10u32.to_le_bytes());
        image[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4]
            .copy_from_slice(&(payload.len() as u32).to_le_bytes());
        image.resize(1024 + 0x10, 0x90);
        image.extend_from_slice(&payload);
        image.extend_from_slice(&[0; 64]); // what follows the payload in a real image
        assert_eq!(extract_vmlinux(&image).unwrap(), b"\x7fELFrest");

        let len = image.len();
        image[PAYLOAD_LENGTH..PAYLOAD_LENGTH + 4].copy_from_slice(&(len as u32).to_le_bytes());
        let err = extract_vmlinux(&image).unwrap_err();
        assert!(err.to_string().contains("runs past the end"), "{err}");
        assert!(extract_vmlinux(&[0; 100]).is_err());
    }
}
