//! `cargo xtask bench container`: the whole `capsule run` of `/bin/true` against `crun run` and
//! `runc run` of an OCI bundle of the same busybox rootfs.
//!
//! All three run as children of this process inside one private mount namespace (see
//! [`enter_private_mount_namespace`]), alternating each iteration after warm-up runs, each timed
//! from spawn to wait with `Instant`.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use oci_spec::runtime::Spec;
use serde_json::json;

use crate::rootfs;
use crate::util::{self, progress};

const WARMUP_RUNS: usize = 2;

/// A container tool under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Tool {
    /// `capsule run` doing the bundle's work: read-only root, no seccomp filter, the command
    /// as PID 1 (release build)
    Capsule,
    /// `capsule run` with its defaults: overlay root, Docker's seccomp profile, an init
    CapsuleDefaults,
    /// `crun run` of an OCI bundle
    Crun,
    /// `runc run` of an OCI bundle
    Runc,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Capsule => "capsule",
            Tool::CapsuleDefaults => "capsule-defaults",
            Tool::Crun => "crun",
            Tool::Runc => "runc",
        }
    }
}

/// How to start one tool, and what it measured.
#[derive(Debug)]
struct Runner {
    tool: Tool,
    program: PathBuf,
    version: Option<String>,
    stderr_path: PathBuf,
    samples_ms: Vec<f64>,
}

impl Runner {
    fn command(&self, id: &str, rootfs: &Path, bundle: &Path) -> Command {
        let mut cmd = Command::new(&self.program);
        match self.tool {
            Tool::Capsule => {
                // The bundle's config (oci-spec's default) has a read-only root, no seccomp
                // section and runs the command as PID 1: the same work, for a fair ratio.
                cmd.args(["run", "--isolation", "container", "--read-only"])
                    .args(["--seccomp", "unconfined", "--no-init", "--rootfs"])
                    .arg(rootfs)
                    .args(["--", "/bin/true"]);
            }
            Tool::CapsuleDefaults => {
                cmd.args(["run", "--isolation", "container", "--rootfs"])
                    .arg(rootfs)
                    .args(["--", "/bin/true"]);
            }
            Tool::Crun | Tool::Runc => {
                cmd.arg("run").arg("--bundle").arg(bundle).arg(id);
            }
        }
        cmd
    }

    /// Removes container `id` if the OCI runtime still has it (after `run` exits it may be gone).
    fn cleanup(&self, id: &str) -> Result<()> {
        if matches!(self.tool, Tool::Capsule | Tool::CapsuleDefaults) {
            return Ok(());
        }
        let exists = Command::new(&self.program)
            .args(["state", id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .with_context(|| format!("could not start `{} state {id}`", self.program.display()))?
            .success();
        if exists {
            util::output(
                Command::new(&self.program).args(["delete", "-f", id]),
                "the benchmark container could not be removed; remove it by hand",
            )?;
        }
        Ok(())
    }

    /// Runs the workload once; returns the wall time of spawn + wait in milliseconds.
    fn run_once(&self, id: &str, rootfs: &Path, bundle: &Path) -> Result<f64> {
        self.cleanup(id)?;
        let mut cmd = self.command(id, rootfs, bundle);
        let line = util::describe(&cmd);
        // stderr goes to a file (as cheap as /dev/null) so a failure can be shown.
        let stderr = File::create(&self.stderr_path)
            .with_context(|| format!("creating {}", self.stderr_path.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr));

        let start = Instant::now();
        let status = cmd
            .status()
            .with_context(|| format!("could not start `{line}`"))?;
        let elapsed = start.elapsed();

        if !status.success() {
            let _ = self.cleanup(id);
            let stderr = fs::read_to_string(&self.stderr_path).unwrap_or_default();
            bail!(
                "{} failed: `{line}` exited with {status}; its stderr:\n{}",
                self.tool.name(),
                stderr.trim_end()
            );
        }
        self.cleanup(id)?;
        Ok(elapsed.as_secs_f64() * 1000.0)
    }
}

/// `cargo xtask bench container`.
pub fn container(runs: usize, tools: &[Tool]) -> Result<()> {
    util::require_root("cargo xtask bench container")?;
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let requested = if tools.is_empty() {
        &[Tool::Capsule, Tool::CapsuleDefaults, Tool::Crun, Tool::Runc][..]
    } else {
        tools
    };
    let mut tools: Vec<Tool> = Vec::new();
    for &tool in requested {
        if !tools.contains(&tool) {
            tools.push(tool);
        }
    }

    let bench_dir = util::capsule_dir().join("bench");
    fs::create_dir_all(&bench_dir).with_context(|| format!("creating {}", bench_dir.display()))?;

    let mut runners = Vec::new();
    for &tool in &tools {
        let (program, version) = match tool {
            Tool::Capsule | Tool::CapsuleDefaults => (util::build_release_capsule()?, None),
            Tool::Crun | Tool::Runc => {
                let program =
                    util::ensure_program(tool.name(), tool.name(), "the comparison runs it")?;
                let version = util::output(
                    Command::new(&program).arg("--version"),
                    &format!(
                        "{0} is needed for the comparison: `apt-get install {0}`",
                        tool.name()
                    ),
                )?;
                let version = version
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                (PathBuf::from(tool.name()), Some(version))
            }
        };
        runners.push(Runner {
            tool,
            program,
            version,
            stderr_path: bench_dir.join(format!("{}.stderr", tool.name())),
            samples_ms: Vec::with_capacity(runs),
        });
    }

    let rootfs = rootfs::busybox()?;
    let bundle = write_bundle(&bench_dir.join("bundle"), &rootfs)?;

    enter_private_mount_namespace(&bench_dir)?;

    let mut n = 0usize;
    let mut next_id = || {
        n += 1;
        format!("bench-{n}")
    };
    let names: Vec<&str> = runners.iter().map(|r| r.tool.name()).collect();
    progress!(
        "{WARMUP_RUNS} warm-up runs each, then {runs} timed runs each, alternating {}",
        names.join("/")
    );
    for _ in 0..WARMUP_RUNS {
        for runner in &runners {
            runner.run_once(&next_id(), &rootfs, &bundle)?;
        }
    }
    for i in 0..runs {
        for runner in &mut runners {
            let ms = runner.run_once(&next_id(), &rootfs, &bundle)?;
            runner.samples_ms.push(ms);
        }
        if (i + 1) % 10 == 0 || i + 1 == runs {
            progress!("{}/{runs} iterations done", i + 1);
        }
    }

    report(
        &runners,
        runs,
        &rootfs,
        &bundle,
        &bench_dir.join("container.json"),
    )
}

/// Writes `bundle/config.json` for `/bin/true` in `rootfs`: oci-spec's defaults (pid, network,
/// ipc, uts, mount and cgroup namespaces; the usual mounts) with a read-only root.
fn write_bundle(bundle: &Path, rootfs: &Path) -> Result<PathBuf> {
    fs::create_dir_all(bundle).with_context(|| format!("creating {}", bundle.display()))?;
    let mut spec = Spec::default();
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(vec!["/bin/true".to_string()]));
    process.set_terminal(Some(false));
    spec.set_process(Some(process));
    let mut root = spec.root().clone().unwrap_or_default();
    root.set_path(rootfs.to_path_buf());
    root.set_readonly(Some(true));
    spec.set_root(Some(root));
    spec.set_hostname(Some("bench".to_string()));
    let config = bundle.join("config.json");
    spec.save(&config)
        .with_context(|| format!("writing {}", config.display()))?;
    Ok(bundle.to_path_buf())
}

/// Moves this process into its own mount namespace, where all tools then run.
///
/// crun 1.8.1 refuses a hybrid cgroup layout whose `unified/cgroup.controllers` lists
/// controllers; an empty file bind-mounted over it (only in this namespace) makes it use the
/// v1 hierarchies. The namespace is private, so nothing of this reaches the host.
fn enter_private_mount_namespace(bench_dir: &Path) -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNS)
        .context("unshare(CLONE_NEWNS) for a private mount namespace")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("making / recursively private in the benchmark's mount namespace")?;
    let controllers = Path::new("/sys/fs/cgroup/unified/cgroup.controllers");
    if controllers.exists() {
        let empty = bench_dir.join("empty-cgroup.controllers");
        File::create(&empty).with_context(|| format!("creating {}", empty.display()))?;
        mount(
            Some(&empty),
            controllers,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .with_context(|| format!("bind-mounting an empty file over {}", controllers.display()))?;
        progress!(
            "private mount namespace: {} hidden (hybrid cgroup layout)",
            controllers.display()
        );
    } else {
        progress!("private mount namespace entered");
    }
    Ok(())
}

/// The `p`-quantile (0..=1) of sorted samples, interpolating linearly between ranks.
pub(crate) fn quantile(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        len => {
            let pos = p * (len - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = pos.ceil() as usize;
            sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
        }
    }
}

fn report(
    runners: &[Runner],
    runs: usize,
    rootfs: &Path,
    bundle: &Path,
    json_path: &Path,
) -> Result<()> {
    struct Row<'a> {
        runner: &'a Runner,
        median: f64,
        p10: f64,
        p90: f64,
    }
    let rows: Vec<Row> = runners
        .iter()
        .map(|runner| {
            let mut sorted = runner.samples_ms.clone();
            sorted.sort_by(f64::total_cmp);
            Row {
                runner,
                median: quantile(&sorted, 0.5),
                p10: quantile(&sorted, 0.1),
                p90: quantile(&sorted, 0.9),
            }
        })
        .collect();
    let median_of = |tool: Tool| {
        rows.iter()
            .find(|r| r.runner.tool == tool)
            .map(|r| r.median)
    };
    let crun_median = median_of(Tool::Crun);
    let ratio = |median: f64| crun_median.map(|c| median / c);

    println!("container start-to-exit of /bin/true, {runs} runs each (ms)");
    println!(
        "{:<16} {:>9} {:>9} {:>9} {:>13}",
        "tool", "median", "p10", "p90", "ratio to crun"
    );
    for row in &rows {
        let ratio = ratio(row.median).map_or_else(|| "-".to_string(), |r| format!("{r:.2}x"));
        println!(
            "{:<16} {:>9.2} {:>9.2} {:>9.2} {:>13}",
            row.runner.tool.name(),
            row.median,
            row.p10,
            row.p90,
            ratio
        );
    }
    let capsule_ratio = median_of(Tool::Capsule).and_then(ratio);
    if let Some(r) = capsule_ratio {
        println!("capsule/crun median ratio (same work): {r:.2}x");
    }

    let tools: Vec<_> = rows
        .iter()
        .map(|row| {
            json!({
                "tool": row.runner.tool.name(),
                "program": row.runner.program,
                "version": row.runner.version,
                "median_ms": row.median,
                "p10_ms": row.p10,
                "p90_ms": row.p90,
                "ratio_to_crun": ratio(row.median),
                "samples_ms": row.runner.samples_ms,
            })
        })
        .collect();
    let doc = json!({
        "benchmark": "container",
        "workload": ["/bin/true"],
        "runs": runs,
        "warmup_runs": WARMUP_RUNS,
        "rootfs": rootfs,
        "bundle": bundle,
        "tools": tools,
        "capsule_crun_median_ratio": capsule_ratio,
    });
    write_results(json_path, &doc)
}

/// Writes a benchmark's results as pretty JSON and says where.
pub(crate) fn write_results(json_path: &Path, doc: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(doc).context("serializing the results")?;
    fs::write(json_path, text + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    progress!("results written to {}", json_path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_interpolate() {
        let s = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&s, 0.5), 3.0);
        assert_eq!(quantile(&s, 0.0), 1.0);
        assert_eq!(quantile(&s, 1.0), 5.0);
        assert!((quantile(&s, 0.1) - 1.4).abs() < 1e-9);
        assert_eq!(quantile(&[7.0], 0.9), 7.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
