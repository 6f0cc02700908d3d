//! `cargo xtask ci`: everything CI checks, in order, stopping at the first failure.

use anyhow::{Context, Result};

use crate::rootfs;
use crate::util::{self, progress};

/// The target the no_std build of `devices` is checked on: one without `std`.
const NO_STD_TARGET: &str = "x86_64-unknown-none";

pub fn run() -> Result<()> {
    const STEPS: usize = 8;
    let step = |n: usize, what: &str| progress!("ci [{n}/{STEPS}] {what}");

    step(1, "formatting");
    util::run(
        util::cargo().args(["fmt", "--all", "--", "--check"]),
        "code is not formatted; run `cargo fmt --all` and commit the result",
    )?;

    step(2, "clippy");
    util::run(
        util::cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
        "fix the clippy findings above (`cargo clippy --workspace --all-targets`)",
    )?;

    step(3, "build");
    util::run(
        util::cargo().args(["build", "--workspace"]),
        "fix the compile errors above",
    )?;
    let capsule_bin = util::target_dir().join("debug").join("capsule");
    if !capsule_bin.is_file() {
        anyhow::bail!(
            "`cargo build --workspace` succeeded but {} is missing; the `capsule` binary of package `capsule` is needed by the tests",
            capsule_bin.display()
        );
    }

    step(4, "the no_std build of devices (x86_64-unknown-none)");
    // The register state machines and wire formats must stay usable without std (a
    // firmware, another VMM); building for a target that has no std proves it.
    util::ensure_rust_target(NO_STD_TARGET)?;
    util::run(
        util::cargo().args([
            "build",
            "-p",
            "devices",
            "--no-default-features",
            "--target",
            NO_STD_TARGET,
        ]),
        "a std-only item reached the no_std part of `devices`; put it behind `#[cfg(feature = \"std\")]` (see devices/src/lib.rs, \"no_std\")",
    )?;

    step(5, "busybox rootfs and virtiofsd for the tests");
    let rootfs = rootfs::busybox().context("building the busybox test rootfs")?;
    let virtiofsd = crate::virtiofsd::install().context("building virtiofsd for the tests")?;

    step(6, "tests (unit, integration and doc tests)");
    // CI itself (the `CI` variable and the rest of the environment) is passed on untouched.
    util::run(
        util::cargo()
            .args(["test", "--workspace"])
            .env("CAPSULE_BIN", &capsule_bin)
            .env("CAPSULE_TEST_ROOTFS", &rootfs)
            .env("CAPSULE_VIRTIOFSD", &virtiofsd),
        "a test failed; rerun it with `CAPSULE_BIN=target/debug/capsule CAPSULE_TEST_ROOTFS=$(cargo xtask rootfs busybox) cargo test -p <crate> <name>`",
    )?;

    step(
        7,
        &format!(
            "fuzzing every target ({} s in all, stable toolchain)",
            crate::fuzz::CI_TOTAL_SECS
        ),
    );
    // Bounded so CI time stays predictable: it catches shallow panics, not deep ones; longer
    // runs are `cargo xtask fuzz --seconds N`.
    crate::fuzz::run_ci().context("fuzzing failed")?;

    step(
        8,
        "the nested lab (QEMU TCG with an emulated SVM CPU, a real KVM inside)",
    );
    crate::lab::run(None).context("the nested lab failed")?;

    println!("xtask ci: all checks passed");
    Ok(())
}
