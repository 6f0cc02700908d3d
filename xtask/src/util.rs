//! Helpers shared by the subcommands: where things live, and running external commands with
//! errors that say what failed and what to do about it.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Prints one progress line on stderr (stdout stays free for results such as a path).
macro_rules! progress {
    ($($arg:tt)*) => {
        eprintln!("xtask: {}", format_args!($($arg)*))
    };
}
pub(crate) use progress;

/// The workspace root: the parent of the xtask crate.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` if set, else `<root>/target`.
pub fn target_dir() -> PathBuf {
    let root = workspace_root();
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// `<target>/capsule`: everything xtask builds, downloads and measures.
pub fn capsule_dir() -> PathBuf {
    target_dir().join("capsule")
}

/// A `cargo` command that runs in the workspace root, using the cargo that runs us.
pub fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root());
    cmd
}

/// Installs the Rust standard library for `target` (`rustup target add`) unless this
/// toolchain has it already.
pub fn ensure_rust_target(target: &str) -> Result<()> {
    let hint = format!(
        "building for {target} needs its standard library; install it for this toolchain (rustup target add {target})"
    );
    let installed = output(
        Command::new("rustup").args(["target", "list", "--installed"]),
        &hint,
    )?;
    if installed.lines().any(|line| line.trim() == target) {
        return Ok(());
    }
    progress!("the Rust target {target} is missing; installing it");
    run(
        Command::new("rustup").args(["target", "add", target]),
        &hint,
    )
}

/// The first `program` on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

/// `program`'s path, first installing Debian's `package` with apt-get when it is missing, as
/// `.ci/run` does: a fresh machine runs every xtask command without a setup step of its own.
/// `why` says what needs it, for the progress line and the error.
pub fn ensure_program(program: &str, package: &str, why: &str) -> Result<PathBuf> {
    if let Some(path) = which(program) {
        return Ok(path);
    }
    progress!("{program} is missing ({why}); installing Debian's {package}");
    let hint = format!("{program} is missing ({why}): install it with `apt-get install {package}`");
    run(Command::new("apt-get").arg("update"), &hint)?;
    run(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive"),
        &hint,
    )?;
    which(program).ok_or_else(|| anyhow::anyhow!("apt-get installed {package}, but {hint}"))
}

/// Renders a command line for messages: `program arg arg`.
pub fn describe(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program());
    // The cargo that runs us is a long toolchain path; `cargo` says the same.
    let mut line = if program.file_name() == Some(OsStr::new("cargo")) {
        "cargo".to_string()
    } else {
        program.to_string_lossy().into_owned()
    };
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&quote(arg));
    }
    line
}

fn quote(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs `cmd` with its stdout and stderr on our stderr (xtask's stdout carries only results,
/// such as the rootfs path); a spawn failure or a nonzero exit becomes an error that names the
/// command and carries `hint` (what to do about it).
pub fn run(cmd: &mut Command, hint: &str) -> Result<()> {
    let line = describe(cmd);
    progress!("running {line}");
    let status = cmd
        .stdout(std::io::stderr())
        .status()
        .with_context(|| format!("could not start `{line}`: {hint}"))?;
    if !status.success() {
        bail!("`{line}` failed ({status}): {hint}");
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout; on failure the error includes its stderr and `hint`.
pub fn output(cmd: &mut Command, hint: &str) -> Result<String> {
    let line = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{line}`: {hint}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!(
            "`{line}` failed ({}): {hint}\n{}",
            out.status,
            stderr.trim_end()
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{line}` printed invalid UTF-8"))
}

/// Fails with a clear message unless the effective user is root.
pub fn require_root(what: &str) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "{what} needs root (namespaces, cgroups and mounts); run it as root, e.g. `sudo -E cargo xtask ...`"
        );
    }
    Ok(())
}

/// Builds the release `capsule` binary and returns its path.
pub fn build_release_capsule() -> Result<PathBuf> {
    run(
        cargo().args(["build", "--release", "-p", "capsule", "--bin", "capsule"]),
        "the capsule CLI (package `capsule`) must build in release mode; fix the compile errors above",
    )?;
    let bin = target_dir().join("release").join("capsule");
    if !bin.is_file() {
        bail!(
            "cargo built successfully but {} does not exist; is the `capsule` binary still in package `capsule`?",
            bin.display()
        );
    }
    Ok(bin)
}

/// Removes a directory tree; one that is already gone is fine.
pub fn remove_dir_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The SHA-256 of a file, in lowercase hex.
pub fn sha256(path: &Path) -> Result<String> {
    let out = output(
        Command::new("sha256sum").arg(path),
        "sha256sum (coreutils) is needed to check downloads and artifacts",
    )?;
    match out.split_whitespace().next() {
        Some(hash) if hash.len() == 64 => Ok(hash.to_ascii_lowercase()),
        _ => bail!("unexpected sha256sum output: {out:?}"),
    }
}
