//! Builds `capsule-init` (package `guest-init`) as a static x86_64 musl binary for `capsule` to
//! embed: a container's PID 1 runs from a sealed memfd holding these bytes (`ns_core::init`),
//! so nothing of the host's `capsule` binary is reachable from inside.
//!
//! The nested cargo builds into its own target directory (`<target>/embedded-init`), so it
//! does not wait on the lock of the build that runs this script, and every profile of the
//! outer build shares one copy. It runs with none of the outer build's compiler flags or
//! wrappers (clippy's, cargo-fuzz's instrumentation): the init is always a plain release
//! build.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

/// The target `capsule-init` is built for: static, so it runs in any root filesystem.
const TARGET: &str = "x86_64-unknown-linux-musl";

/// What the outer build sets that must not reach the nested one.
const OUTER_BUILD_ONLY: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_TARGET",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .parent()
        .expect("the capsule crate lives in the workspace")
        .to_owned();
    for input in ["guest-init", "ns-core", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", workspace.join(input).display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    ensure_target();
    // As cargo does, a relative CARGO_TARGET_DIR is taken from where the build started: the
    // workspace root for every build of this workspace.
    let target_dir = workspace
        .join(env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into()))
        .join("embedded-init");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build.current_dir(&workspace).args([
        "build",
        "--release",
        "-p",
        "guest-init",
        "--bin",
        "capsule-init",
        "--target",
        TARGET,
        "--target-dir",
    ]);
    build.arg(&target_dir);
    for var in OUTER_BUILD_ONLY {
        build.env_remove(var);
    }
    check(
        build.status(),
        "building capsule-init (package guest-init) for the capsule binary to embed failed; see the errors above",
    );

    let built = target_dir.join(TARGET).join("release").join("capsule-init");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo")).join("capsule-init");
    if let Err(e) = std::fs::copy(&built, &out) {
        fail(&format!(
            "cannot copy {} to {}: {e}",
            built.display(),
            out.display()
        ));
    }
}

/// Installs the musl target's standard library with rustup when this toolchain lacks it.
fn ensure_target() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    if libdir.as_deref().is_some_and(has_std) {
        return;
    }
    println!(
        "cargo:warning=installing the Rust target {TARGET} (rustup target add {TARGET}): capsule embeds a static capsule-init built for it"
    );
    check(
        Command::new("rustup")
            .args(["target", "add", TARGET])
            .status(),
        &format!(
            "capsule embeds capsule-init built for {TARGET}, and `rustup target add {TARGET}` failed; install that target's standard library for this toolchain and build again"
        ),
    );
}

fn has_std(libdir: &Path) -> bool {
    std::fs::read_dir(libdir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
    })
}

fn check(status: std::io::Result<ExitStatus>, message: &str) {
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => fail(&format!("{message} ({status})")),
        Err(e) => fail(&format!("{message} ({e})")),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}
