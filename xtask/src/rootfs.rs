//! `cargo xtask rootfs busybox`: a busybox root filesystem from Debian's `busybox-static`.
//!
//! The package is fetched with `apt-get download` and unpacked with `dpkg-deb -x`: it is never
//! installed on the host. Its SHA-256 is checked against the hash in apt's signed index. The
//! rootfs is built in a temporary directory next to its final place and swapped in atomically;
//! a manifest records what it was built from, so a second run with the same package is a no-op.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};

use crate::apt;
use crate::util::{self, progress};

const PACKAGE: &str = "busybox-static";

/// Bump when the layout built below changes, so existing rootfs trees are rebuilt.
const LAYOUT: u32 = 1;

const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
user:x:1000:1000:user:/home/user:/bin/sh
";

const GROUP: &str = "\
root:x:0:
wheel:x:10:user
nogroup:x:65534:
user:x:1000:
";

/// Builds (or reuses) `<target>/capsule/rootfs/busybox` and returns its absolute path.
pub fn busybox() -> Result<PathBuf> {
    let capsule = util::capsule_dir();
    let downloads = capsule.join("downloads");
    let rootfs_parent = capsule.join("rootfs");
    fs::create_dir_all(&downloads).with_context(|| format!("creating {}", downloads.display()))?;
    fs::create_dir_all(&rootfs_parent)
        .with_context(|| format!("creating {}", rootfs_parent.display()))?;
    // Unprivileged test users must be able to reach the rootfs.
    for dir in [&capsule, &rootfs_parent] {
        set_mode(dir, 0o755)?;
    }

    let deb = apt::download(PACKAGE, &downloads)?;
    let deb_path = &deb.path;
    let version = apt::field(deb_path, "Version")?;

    let rootfs = rootfs_parent.join("busybox");
    let manifest_path = rootfs_parent.join("busybox.manifest");
    let manifest = format!(
        "package {PACKAGE}\nversion {version}\ndeb {}\nsha256 {}\nlayout {LAYOUT}\n",
        deb.filename, deb.sha256
    );
    let current = fs::read_to_string(&manifest_path).unwrap_or_default();
    if current == manifest && rootfs.join("bin/busybox").is_file() {
        progress!(
            "rootfs {} is up to date ({PACKAGE} {version})",
            rootfs.display()
        );
        return Ok(rootfs);
    }

    progress!("building {} from {PACKAGE} {version}", rootfs.display());
    let pid = std::process::id();
    let tmp = rootfs_parent.join(format!(".busybox.tmp-{pid}"));
    let unpacked = downloads.join(format!(".{PACKAGE}.unpacked-{pid}"));
    let built = build_tree(deb_path, &unpacked, &tmp);
    util::remove_dir_if_exists(&unpacked)?;
    if let Err(e) = built {
        // Best effort: the error that matters is the build error.
        let _ = util::remove_dir_if_exists(&tmp);
        return Err(e);
    }

    swap_into_place(&tmp, &rootfs)?;
    let manifest_tmp = rootfs_parent.join(format!(".busybox.manifest.tmp-{pid}"));
    write_file(&manifest_tmp, &manifest, 0o644)?;
    fs::rename(&manifest_tmp, &manifest_path)
        .with_context(|| format!("renaming {} into place", manifest_path.display()))?;
    progress!("rootfs ready: {}", rootfs.display());
    Ok(rootfs)
}

/// Unpacks the `.deb` into `unpacked` and builds the rootfs tree in `tree`.
fn build_tree(deb: &Path, unpacked: &Path, tree: &Path) -> Result<()> {
    util::remove_dir_if_exists(unpacked)?;
    util::remove_dir_if_exists(tree)?;
    apt::unpack(deb, unpacked)?;
    let busybox_src = unpacked.join("bin/busybox");
    if !busybox_src.is_file() {
        bail!("{} has no bin/busybox", deb.display());
    }
    let list = util::output(
        Command::new(&busybox_src).arg("--list"),
        "the unpacked busybox must run on this host to list its applets",
    )?;
    let applets: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox")
        .collect();
    if let Some(bad) = applets
        .iter()
        .find(|a| a.contains('/') || **a == "." || **a == "..")
    {
        bail!("busybox --list printed a strange applet name: {bad:?}");
    }
    if applets.is_empty() {
        bail!("busybox --list printed no applets");
    }

    make_dir(tree, 0o755)?;
    for dir in [
        "bin", "proc", "sys", "dev", "root", "home", "run", "var", "etc", "usr",
    ] {
        make_dir(&tree.join(dir), 0o755)?;
    }
    make_dir(&tree.join("tmp"), 0o1777)?;
    let home = tree.join("home/user");
    make_dir(&home, 0o755)?;
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(&home, Some(1000), Some(1000))
            .with_context(|| format!("chown 1000:1000 {}", home.display()))?;
    }

    let bin = tree.join("bin");
    let busybox = bin.join("busybox");
    fs::copy(&busybox_src, &busybox)
        .with_context(|| format!("copying busybox to {}", busybox.display()))?;
    set_mode(&busybox, 0o755)?;
    for applet in &applets {
        let link = bin.join(applet);
        symlink("busybox", &link).with_context(|| format!("creating {}", link.display()))?;
    }
    // Merged /usr: every applet path (/sbin/ip, /usr/bin/env, ...) resolves through bin/.
    for (link, target) in [
        ("sbin", "bin"),
        ("usr/bin", "../bin"),
        ("usr/sbin", "../bin"),
    ] {
        let link = tree.join(link);
        symlink(target, &link).with_context(|| format!("creating {}", link.display()))?;
    }

    let etc = tree.join("etc");
    write_file(&etc.join("passwd"), PASSWD, 0o644)?;
    write_file(&etc.join("group"), GROUP, 0o644)?;
    write_file(&etc.join("hostname"), "capsule\n", 0o644)?;
    progress!("linked {} busybox applets", applets.len());
    Ok(())
}

/// Puts `tmp` at `dest`: an atomic exchange if `dest` exists (then the old tree is removed),
/// else a plain rename.
fn swap_into_place(tmp: &Path, dest: &Path) -> Result<()> {
    match fs::symlink_metadata(dest) {
        Ok(_) => {
            renameat2(AT_FDCWD, tmp, AT_FDCWD, dest, RenameFlags::RENAME_EXCHANGE)
                .with_context(|| format!("exchanging {} with {}", tmp.display(), dest.display()))?;
            // `tmp` now holds the old tree.
            util::remove_dir_if_exists(tmp)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => fs::rename(tmp, dest)
            .with_context(|| format!("renaming {} to {}", tmp.display(), dest.display())),
        Err(e) => Err(e).with_context(|| format!("inspecting {}", dest.display())),
    }
}

fn make_dir(path: &Path, mode: u32) -> Result<()> {
    fs::create_dir(path).with_context(|| format!("creating {}", path.display()))?;
    // Explicit chmod: the umask must not make the rootfs unreadable for other users.
    set_mode(path, mode)
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<()> {
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    set_mode(path, mode)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

/// An ext4 image of `tree` at `image`, `size` big (mke2fs's syntax, e.g. `256M`), without a
/// journal: a read-only root for a guest the benchmarks boot under QEMU.
pub fn ext4_image(tree: &Path, image: &Path, size: &str) -> Result<()> {
    let mke2fs = util::ensure_program("mke2fs", "e2fsprogs", "a guest root image for QEMU")?;
    let _ = fs::remove_file(image);
    util::run(
        std::process::Command::new(mke2fs)
            .args(["-q", "-F", "-t", "ext4", "-O", "^has_journal", "-d"])
            .arg(tree)
            .arg(image)
            .arg(size),
        &format!(
            "building the ext4 image {} of {}",
            image.display(),
            tree.display()
        ),
    )
}
