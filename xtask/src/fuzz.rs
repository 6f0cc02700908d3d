//! `cargo xtask fuzz`: runs the policy fuzz target (`policy/fuzz`, target `check`) for a
//! bounded time on the stable toolchain, seeded with the example scripts.
//!
//! cargo-fuzz defaults to AddressSanitizer, which needs nightly (`-Zsanitizer`); CI has only
//! stable. With `--sanitizer none`, cargo-fuzz 0.13 passes only stable flags (`-Cpasses=
//! sancov-module` and `-Cllvm-args=-sanitizer-coverage-*` for libFuzzer's coverage, `--cfg
//! fuzzing`), so stable builds it as is: no `RUSTC_BOOTSTRAP=1`, which would also switch on
//! the nightly paths of dependencies' build scripts. Panics still abort the target, so
//! libFuzzer reports each as a crash; what is lost is ASan, which matters little for this
//! safe-Rust target.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result, bail};

use crate::util::{self, progress};

/// The cargo-fuzz installed when none is: the release whose flags were checked against
/// stable (see above).
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// The fuzz target: `policy::check_source` on arbitrary text.
const TARGET: &str = "check";

/// The longest a single input may run, in seconds, before libFuzzer calls it a hang. The
/// engine's own deadline is 1 s, so anything near this is a bug; libFuzzer's default (20
/// minutes) would outlast the whole bounded run.
const INPUT_TIMEOUT_SECS: u32 = 10;

pub fn run(seconds: u64) -> Result<()> {
    if seconds == 0 {
        bail!("--seconds must be at least 1");
    }
    ensure_cargo_fuzz()?;

    let root = util::workspace_root();
    let fuzz_dir = root.join("policy").join("fuzz");
    // The corpus libFuzzer grows (git-ignored) is kept between runs, so each run starts
    // where the last one stopped; the examples are read-only seeds beside it.
    let corpus = fuzz_dir.join("corpus").join(TARGET);
    std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let seeds = root.join("examples");
    let artifacts = fuzz_dir.join("artifacts").join(TARGET);
    let before = files_in(&artifacts)?;

    progress!(
        "fuzzing `{TARGET}` for {seconds} s (stable toolchain, no sanitizer), seeded with {}",
        seeds.display()
    );
    let mut cmd = util::cargo();
    cmd.current_dir(&fuzz_dir)
        .args(["fuzz", "run", TARGET, "--sanitizer", "none"])
        // Overflow and other debug assertions in our code are bugs worth a crash report.
        .arg("--debug-assertions")
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECS}"));
    let result = util::run(
        &mut cmd,
        "the fuzz target crashed, hung or did not build; see libFuzzer's report above",
    );
    if let Err(e) = result {
        let found: Vec<String> = files_in(&artifacts)?
            .difference(&before)
            .map(|p| p.strip_prefix(&fuzz_dir).unwrap_or(p).display().to_string())
            .collect();
        let Some(first) = found.first() else {
            return Err(e);
        };
        bail!(
            "the fuzzer found an input that crashes or hangs `policy::check_source`: \
             policy/fuzz/{}\n\
             reproduce it with `cd policy/fuzz && cargo fuzz run {TARGET} --sanitizer none --debug-assertions {first}`, \
             fix the panic, and add the input as a regression test (as in policy/tests/policy_sandbox.rs)",
            found.join(", policy/fuzz/"),
        );
    }
    progress!("fuzzing found no crash in {seconds} s");
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
