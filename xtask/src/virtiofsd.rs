//! `cargo xtask virtiofsd`: builds the Rust virtiofsd (crates.io's `virtiofsd`, the version
//! below, `--locked`) into `~/.cache/capsule/tools/bin`, where capsule looks for it; skipped
//! when that version is already there. It links libseccomp and libcap-ng, whose Debian `-dev`
//! packages are installed first when missing.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;

use crate::util;

/// The virtiofsd capsule is tested with.
pub const VERSION: &str = "1.14.0";

/// Installs virtiofsd (if missing or another version) and returns its path.
pub fn install() -> Result<PathBuf> {
    let root = tools_root();
    let binary = root.join("bin/virtiofsd");
    if installed_version(&binary).as_deref() == Some(VERSION) {
        return Ok(binary);
    }
    for (header, package) in [
        ("/usr/include/seccomp.h", "libseccomp-dev"),
        ("/usr/include/cap-ng.h", "libcap-ng-dev"),
    ] {
        if !std::path::Path::new(header).is_file() {
            util::progress!("{package} is missing (virtiofsd links it); installing it");
            let hint = format!("virtiofsd links it: install it with `apt-get install {package}`");
            util::run(Command::new("apt-get").arg("update"), &hint)?;
            util::run(
                Command::new("apt-get")
                    .args(["install", "-y", "--no-install-recommends", package])
                    .env("DEBIAN_FRONTEND", "noninteractive"),
                &hint,
            )?;
        }
    }
    util::progress!(
        "building virtiofsd {VERSION} into {} (about a minute)",
        root.display()
    );
    util::run(
        util::cargo()
            .args([
                "install",
                "virtiofsd",
                "--locked",
                "--version",
                VERSION,
                "--root",
            ])
            .arg(&root),
        "cargo install virtiofsd failed (it needs crates.io, libseccomp-dev and libcap-ng-dev)",
    )?;
    Ok(binary)
}

/// `~/.cache/capsule/tools`: `cargo install --root` puts the binary in its `bin`, where
/// capsule's `virtiofsd::tools_dir` looks.
fn tools_root() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/capsule/tools")
}

/// `virtiofsd --version`'s version (`virtiofsd 1.14.0`), if it runs.
fn installed_version(binary: &std::path::Path) -> Option<String> {
    let output = Command::new(binary).arg("--version").output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    text.split_whitespace().nth(1).map(str::to_owned)
}
