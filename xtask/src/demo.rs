//! `cargo xtask demo`: one workload in a capsule container, its output and its Outcome.

use std::fs;
use std::io::ErrorKind;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::rootfs;
use crate::util::{self, progress};

const SCRIPT: &str =
    r#"echo "hello from $(hostname), pid $$, $(cat /proc/self/status | grep CapEff)""#;

pub fn run() -> Result<()> {
    util::require_root("cargo xtask demo")?;
    let capsule = util::build_release_capsule()?;
    let rootfs = rootfs::busybox()?;
    let outcome_path = util::capsule_dir().join("demo-outcome.json");
    match fs::remove_file(&outcome_path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", outcome_path.display())),
    }

    let mut cmd = Command::new(&capsule);
    cmd.args(["run", "--isolation", "container", "--rootfs"])
        .arg(&rootfs)
        .args([
            "--memory",
            "64M",
            "--pids",
            "64",
            "--hostname",
            "demo",
            "--outcome",
        ])
        .arg(&outcome_path)
        .args(["--", "/bin/sh", "-c", SCRIPT]);
    let line = util::describe(&cmd);

    println!("== container: {line}");
    let start = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{line}`"))?;
    let wall = start.elapsed();
    if !status.success() {
        bail!("`{line}` failed ({status}); its error is printed above");
    }

    let text = fs::read_to_string(&outcome_path).with_context(|| {
        format!(
            "capsule exited successfully but wrote no Outcome to {}",
            outcome_path.display()
        )
    })?;
    let outcome: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", outcome_path.display()))?;
    let pretty = serde_json::to_string_pretty(&outcome).context("formatting the Outcome")?;
    println!();
    println!("== Outcome ({})", outcome_path.display());
    println!("{pretty}");
    println!();
    println!(
        "== wall time of `capsule run`: {:.1} ms",
        wall.as_secs_f64() * 1000.0
    );
    println!(
        "note: the microVM half of this demo arrives with the microVM backend (--isolation microvm)"
    );
    progress!("demo done");
    Ok(())
}
