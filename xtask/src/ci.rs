//! `cargo xtask ci`: everything CI checks, in order, stopping at the first failure.

use anyhow::{Context, Result};

use crate::rootfs;
use crate::util::{self, progress};

pub fn run() -> Result<()> {
    const STEPS: usize = 7;
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

    step(4, "busybox rootfs for the tests");
    let rootfs = rootfs::busybox().context("building the busybox test rootfs")?;

    step(5, "tests (unit, integration and doc tests)");
    // CI itself (the `CI` variable and the rest of the environment) is passed on untouched.
    util::run(
        util::cargo()
            .args(["test", "--workspace"])
            .env("CAPSULE_BIN", &capsule_bin)
            .env("CAPSULE_TEST_ROOTFS", &rootfs),
        "a test failed; rerun it with `CAPSULE_BIN=target/debug/capsule CAPSULE_TEST_ROOTFS=$(cargo xtask rootfs busybox) cargo test -p <crate> <name>`",
    )?;

    step(6, "fuzzing the policy checker (30 s, stable toolchain)");
    // Bounded so CI time stays predictable: it catches panics that reach the checker from
    // scripts unlike the examples, not deep ones; longer runs are `cargo xtask fuzz --seconds N`.
    crate::fuzz::run(30).context("fuzzing the policy checker failed")?;

    step(
        7,
        "the nested lab (QEMU TCG with an emulated SVM CPU, a real KVM inside)",
    );
    crate::lab::run(None).context("the nested lab failed")?;

    println!("xtask ci: all checks passed");
    Ok(())
}
