//! `cargo xtask fuzz`: runs each fuzz target of [`TARGETS`] (or one) for a bounded time on
//! the stable toolchain.
//!
//! cargo-fuzz defaults to AddressSanitizer, which needs nightly (`-Zsanitizer`); CI has only
//! stable. With `--sanitizer none`, cargo-fuzz 0.13 passes only stable flags (`-Cpasses=
//! sancov-module` and `-Cllvm-args=-sanitizer-coverage-*` for libFuzzer's coverage, `--cfg
//! fuzzing`), so stable builds it as is: no `RUSTC_BOOTSTRAP=1`, which would also switch on
//! the nightly paths of dependencies' build scripts. Panics still abort the target, so
//! libFuzzer reports each as a crash; what is lost is ASan, which matters little for these
//! safe-Rust targets.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result, bail};

use crate::util::{self, progress};

/// The cargo-fuzz installed when none is: the release whose flags were checked against
/// stable (see above).
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// The longest a single input may run, in seconds, before libFuzzer calls it a hang. Every
/// target's inputs are small, so anything near this is a bug; libFuzzer's default (20
/// minutes) would outlast the whole bounded run.
const INPUT_TIMEOUT_SECS: u32 = 10;

/// How long `cargo xtask ci` fuzzes in all, shared evenly among [`TARGETS`].
pub const CI_TOTAL_SECS: u64 = 60;

/// A cargo-fuzz target.
struct Target {
    /// Its name (`cargo fuzz run NAME`).
    name: &'static str,
    /// The cargo-fuzz crate, relative to the workspace root.
    dir: &'static str,
    /// Read-only seed inputs beside the grown corpus, relative to the workspace root.
    seeds: Option<&'static str>,
    /// What it feeds random input into, for the report.
    what: &'static str,
    /// Where the regression test for a crash goes.
    regression: &'static str,
}

/// Every fuzz target, in the order they run. Adding one is an entry here and a
/// `[[bin]]` in its cargo-fuzz crate.
const TARGETS: &[Target] = &[
    Target {
        name: "check",
        dir: "policy/fuzz",
        seeds: Some("examples"),
        what: "`policy::check_source`",
        regression: "policy/tests/policy_sandbox.rs",
    },
    Target {
        name: "mmio",
        dir: "devices/fuzz",
        seeds: None,
        what: "the virtio-mmio transport's registers",
        regression: "devices/src/virtio/mmio/tests.rs",
    },
    Target {
        name: "blk_request",
        dir: "devices/fuzz",
        seeds: None,
        what: "virtio-blk's requests from random queue contents",
        regression: "devices/src/virtio/block/tests.rs",
    },
    Target {
        name: "vsock",
        dir: "devices/fuzz",
        seeds: None,
        what: "virtio-vsock's packets and host traffic",
        regression: "devices/src/virtio/vsock/tests.rs",
    },
];

/// The names of the fuzz targets, for `--target`'s help and errors.
pub fn target_names() -> Vec<&'static str> {
    TARGETS.iter().map(|t| t.name).collect()
}

/// Runs `only` (a target's name) or every target, `seconds` each.
pub fn run(seconds: u64, only: Option<&str>) -> Result<()> {
    if seconds == 0 {
        bail!("--seconds must be at least 1");
    }
    let targets: Vec<&Target> = TARGETS
        .iter()
        .filter(|t| only.is_none_or(|name| t.name == name))
        .collect();
    if targets.is_empty() {
        bail!(
            "no fuzz target `{}`; the targets are: {}",
            only.unwrap_or_default(),
            target_names().join(", ")
        );
    }
    ensure_cargo_fuzz()?;
    for target in targets {
        run_target(target, seconds)?;
    }
    Ok(())
}

/// `cargo xtask ci`'s run: every target, [`CI_TOTAL_SECS`] shared among them.
pub fn run_ci() -> Result<()> {
    run((CI_TOTAL_SECS / TARGETS.len() as u64).max(1), None)
}

fn run_target(target: &Target, seconds: u64) -> Result<()> {
    let root = util::workspace_root();
    let name = target.name;
    let fuzz_dir = root.join(target.dir);
    // The corpus libFuzzer grows (git-ignored) is kept between runs, so each run starts
    // where the last one stopped; the seeds are read-only beside it.
    let corpus = fuzz_dir.join("corpus").join(name);
    std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let artifacts = fuzz_dir.join("artifacts").join(name);
    let before = files_in(&artifacts)?;

    progress!(
        "fuzzing `{name}` ({}) for {seconds} s (stable toolchain, no sanitizer)",
        target.what
    );
    let mut cmd = util::cargo();
    cmd.current_dir(&fuzz_dir)
        .args(["fuzz", "run", name, "--sanitizer", "none"])
        // Overflow and other debug assertions in our code are bugs worth a crash report.
        .arg("--debug-assertions")
        .arg(&corpus);
    if let Some(seeds) = target.seeds {
        cmd.arg(root.join(seeds));
    }
    cmd.arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECS}"));
    let result = util::run(
        &mut cmd,
        "the fuzz target crashed, hung or did not build; see libFuzzer's report above",
    );
    if let Err(e) = result {
        let found: Vec<String> = files_in(&artifacts)?
            .difference(&before)
            .map(|p| p.strip_prefix(&root).unwrap_or(p).display().to_string())
            .collect();
        let Some(first) = found.first() else {
            return Err(e);
        };
        bail!(
            "the fuzzer found an input that crashes or hangs {}: {}\n\
             reproduce it with `cd {} && cargo fuzz run {name} --sanitizer none --debug-assertions ../../{first}`, \
             fix the panic, and add the input as a regression test (as in {})",
            target.what,
            found.join(", "),
            target.dir,
            target.regression,
        );
    }
    progress!("fuzzing `{name}` found no crash in {seconds} s");
    Ok(())
}

/// Installs cargo-fuzz from crates.io unless `cargo fuzz` already runs (any version: one
/// the developer chose is kept).
fn ensure_cargo_fuzz() -> Result<()> {
    let installed = util::cargo()
        .args(["fuzz", "--version"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if installed {
        return Ok(());
    }
    progress!(
        "cargo-fuzz is not installed; installing cargo-fuzz {CARGO_FUZZ_VERSION} from crates.io (about a minute)"
    );
    util::run(
        util::cargo().args([
            "install",
            "cargo-fuzz",
            "--locked",
            "--version",
            CARGO_FUZZ_VERSION,
        ]),
        "cargo-fuzz must install from crates.io; check the network, or install it yourself with `cargo install cargo-fuzz --locked`",
    )
}

/// The files in `dir` (none if it does not exist yet).
fn files_in(dir: &Path) -> Result<BTreeSet<PathBuf>> {
    match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(e).with_context(|| format!("listing {}", dir.display())),
        Ok(entries) => entries
            .map(|entry| Ok(entry?.path()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("listing {}", dir.display())),
    }
}
