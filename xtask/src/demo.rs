//! `cargo xtask demo`: the same workload as a capsule container and as a capsule microVM,
//! with its output, its Outcome and what each cost.
//!
//! The microVM boots a stock Debian kernel, which needs hardware KVM: on such a host it runs
//! here, next to the container; on a PVM host (no VT-x/AMD-V) it runs inside the nested lab,
//! whose emulated CPU makes every figure there many times slower than on hardware.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::lab::{self, Extra};
use crate::util::{self, progress};
use crate::{guest, rootfs};

const SCRIPT: &str = r#"echo "hello from $(hostname): $(uname -r), $(nproc) cpu(s), pid $$""#;

/// The flags both launches share: the same Plan but for its isolation.
const FLAGS: &[&str] = &["--memory", "256M", "--hostname", "demo"];

/// Markers around the microVM's part of the lab console.
const BEGIN: &str = "CAPSULE-DEMO begin";
const END: &str = "CAPSULE-DEMO end";

pub fn run() -> Result<()> {
    util::require_root("cargo xtask demo")?;
    let capsule = util::build_release_capsule()?;
    let rootfs = rootfs::busybox()?;
    guest::build()?;

    println!(
        "== the same workload, twice: capsule run --isolation container|microvm {} -- sh -c '{SCRIPT}'",
        FLAGS.join(" ")
    );
    println!();
    let container = launch(&capsule, &rootfs, "container")?;
    println!();
    if Path::new("/sys/module/kvm_pvm").exists() {
        println!(
            "== microvm: this host's KVM is PVM, which cannot boot a stock kernel; running it in the nested lab (TCG: its times are not this host's)"
        );
        microvm_in_lab()?;
    } else {
        launch(&capsule, &rootfs, "microvm")?;
    }
    println!();
    println!(
        "== the container took {:.1} ms from `capsule run` to exit on this host",
        container
    );
    progress!("demo done");
    Ok(())
}

/// Runs the workload under `isolation` on this host; prints its output and Outcome, returns
/// the wall time in ms.
fn launch(capsule: &Path, rootfs: &Path, isolation: &str) -> Result<f64> {
    let outcome_path = util::capsule_dir().join(format!("demo-{isolation}.json"));
    match fs::remove_file(&outcome_path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", outcome_path.display())),
    }
    let mut cmd = Command::new(capsule);
    cmd.args(["run", "--isolation", isolation, "--rootfs"])
        .arg(rootfs)
        .args(FLAGS)
        .arg("--outcome")
        .arg(&outcome_path)
        .args(["--", "/bin/sh", "-c", SCRIPT]);
    let line = util::describe(&cmd);
    println!("== {isolation}: {line}");
    let start = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{line}`"))?;
    let wall = start.elapsed().as_secs_f64() * 1000.0;
    if !status.success() {
        bail!("`{line}` failed ({status}); its error is printed above");
    }
    let text = fs::read_to_string(&outcome_path).with_context(|| {
        format!(
            "capsule exited successfully but wrote no Outcome to {}",
            outcome_path.display()
        )
    })?;
    print_outcome(&text)?;
    println!("== {isolation}: wall time of `capsule run`: {wall:.1} ms");
    Ok(wall)
}

fn print_outcome(json: &str) -> Result<()> {
    let outcome: serde_json::Value =
        serde_json::from_str(json).context("the Outcome is not valid JSON")?;
    println!("-- Outcome:");
    println!(
        "{}",
        serde_json::to_string_pretty(&outcome).context("formatting the Outcome")?
    );
    Ok(())
}

/// Boots the lab with one case that runs the workload as a microVM and prints its output
/// and Outcome between markers, then shows that part of the console.
fn microvm_in_lab() -> Result<()> {
    let case = format!(
        "echo {BEGIN}; capsule run --isolation microvm --rootfs /rootfs/busybox {} --outcome /tmp/demo.json -- /bin/sh -c '{}' && cat /tmp/demo.json; rc=$?; echo {END}; exit $rc",
        FLAGS.join(" "),
        SCRIPT,
    );
    let run = lab::run_extra(&Extra {
        files: Vec::new(),
        cases: vec![("demo-microvm".into(), case)],
    })?;
    let console = run.console_text()?;
    let part = between(&console, BEGIN, END).unwrap_or_default();
    // The lab's own kernel may log onto the same console ("[    4.84] kvm ..."): not ours.
    let mut lines = part
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.starts_with('['));
    let output: Vec<&str> = lines.by_ref().take_while(|l| !l.starts_with('{')).collect();
    println!("{}", output.join("\n"));
    let rest: Vec<&str> = lines.collect();
    print_outcome(&format!("{{\n{}", rest.join("\n")))?;
    if !run.results.iter().all(|r| r.passed) {
        bail!(
            "the microVM launch in the lab failed; its console is {}",
            run.last_console().display()
        );
    }
    Ok(())
}

/// The text strictly between the last `begin` marker line and the `end` marker after it.
fn between<'a>(text: &'a str, begin: &str, end: &str) -> Option<&'a str> {
    let start = text.rfind(begin)? + begin.len();
    let rest = &text[start..];
    let stop = rest.find(end)?;
    Some(rest[..stop].trim_start_matches(['\r', '\n']))
}
