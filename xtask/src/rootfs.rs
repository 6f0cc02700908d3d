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

/// A `.deb` as apt's index describes it.
struct Deb {
    filename: String,
    sha256: String,
}

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

    let deb = query_deb(&downloads)?;
    let deb_path = fetch_deb(&downloads, &deb)?;
    let version = util::output(
        Command::new("dpkg-deb")
            .arg("-f")
            .arg(&deb_path)
            .arg("Version"),
        "dpkg-deb must be able to read the downloaded package; delete it and run again",
    )?
    .trim()
    .to_string();
    if version.is_empty() {
        bail!("{} has no Version field", deb_path.display());
    }

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
    let built = build_tree(&deb_path, &unpacked, &tmp);
    remove_dir_if_exists(&unpacked)?;
    if let Err(e) = built {
        // Best effort: the error that matters is the build error.
        let _ = remove_dir_if_exists(&tmp);
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

/// Asks apt which file `apt-get download` would fetch and its SHA-256, running `apt-get update`
/// once if apt does not know the package yet (a fresh machine has empty package lists).
fn query_deb(downloads: &Path) -> Result<Deb> {
    // `--print-uris` prints nothing for a file already present in the current directory, so ask
    // from an empty one.
    let query_dir = downloads.join(format!(".query-{}", std::process::id()));
    fs::create_dir_all(&query_dir).with_context(|| format!("creating {}", query_dir.display()))?;
    let result = query_deb_in(&query_dir);
    remove_dir_if_exists(&query_dir)?;
    result
}

fn query_deb_in(dir: &Path) -> Result<Deb> {
    let print_uris = || {
        let mut cmd = Command::new("apt-get");
        cmd.args(["download", "--print-uris", PACKAGE])
            .current_dir(dir);
        let line = util::describe(&cmd);
        let out = cmd.output().with_context(|| {
            format!("could not start `{line}`: is this a Debian machine with apt?")
        })?;
        anyhow::Ok((line, out))
    };
    let (mut line, mut out) = print_uris()?;
    if !out.status.success() && cannot_find_package(&String::from_utf8_lossy(&out.stderr)) {
        progress!("apt does not know {PACKAGE} yet; running apt-get update");
        util::run(
            Command::new("apt-get").arg("update"),
            "apt-get update must reach the Debian mirrors; check the network and /etc/apt/sources.list",
        )?;
        (line, out) = print_uris()?;
    }
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}): run `apt-get update` first; {PACKAGE} is in Debian main\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    // 'URI' FILENAME SIZE SHA256:HEX
    let fields: Vec<&str> = stdout
        .lines()
        .find(|l| l.starts_with('\''))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    let (Some(filename), Some(hash)) = (fields.get(1), fields.get(3)) else {
        bail!("unexpected output from `{line}`: {stdout:?}");
    };
    let Some(sha256) = hash.strip_prefix("SHA256:") else {
        bail!("apt gave no SHA256 for {PACKAGE} (got {hash:?}); check the apt sources");
    };
    if filename.contains('/') || !filename.ends_with(".deb") {
        bail!("apt named a strange file for {PACKAGE}: {filename:?}");
    }
    Ok(Deb {
        filename: (*filename).to_string(),
        sha256: sha256.to_ascii_lowercase(),
    })
}

fn cannot_find_package(stderr: &str) -> bool {
    stderr.contains("Unable to locate package")
        || stderr.contains("has no installation candidate")
        || stderr.contains("Can't select candidate")
}

/// Returns the path of the verified `.deb` in `downloads`, downloading it if needed.
fn fetch_deb(downloads: &Path, deb: &Deb) -> Result<PathBuf> {
    let path = downloads.join(&deb.filename);
    if path.is_file() && sha256(&path)? == deb.sha256 {
        progress!("using {} (SHA-256 matches apt's index)", path.display());
        return Ok(path);
    }
    let mut cmd = Command::new("apt-get");
    cmd.arg("download");
    if nix::unistd::geteuid().is_root() {
        // apt's `_apt` sandbox user cannot write into our target dir; download as root rather
        // than print a warning (this is what apt falls back to anyway).
        cmd.args(["-o", "APT::Sandbox::User=root"]);
    }
    cmd.arg(PACKAGE).current_dir(downloads);
    util::run(
        &mut cmd,
        "apt-get download busybox-static failed: run `apt-get update` first and check the network",
    )?;
    let got = sha256(&path)?;
    if got != deb.sha256 {
        bail!(
            "{} has SHA-256 {got}, apt's index says {}: delete it and run again",
            path.display(),
            deb.sha256
        );
    }
    Ok(path)
}

fn sha256(path: &Path) -> Result<String> {
    let out = util::output(
        Command::new("sha256sum").arg(path),
        "sha256sum (coreutils) is needed to check downloads",
    )?;
    match out.split_whitespace().next() {
        Some(hash) if hash.len() == 64 => Ok(hash.to_ascii_lowercase()),
        _ => bail!("unexpected sha256sum output: {out:?}"),
    }
}

/// Unpacks the `.deb` into `unpacked` and builds the rootfs tree in `tree`.
fn build_tree(deb: &Path, unpacked: &Path, tree: &Path) -> Result<()> {
    remove_dir_if_exists(unpacked)?;
    remove_dir_if_exists(tree)?;
    util::run(
        Command::new("dpkg-deb").arg("-x").arg(deb).arg(unpacked),
        "dpkg-deb must unpack the package; delete it from target/capsule/downloads and run again",
    )?;
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
            remove_dir_if_exists(tmp)
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

fn remove_dir_if_exists(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}
