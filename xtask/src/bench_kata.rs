//! `cargo xtask bench kata`: what a container costs under each isolation, in one nested lab
//! boot: start-to-exit of `/bin/true` as a container, a microVM and kata (a container inside
//! a microVM), the memory one idle kata sandbox costs beyond its workload, and the guest
//! agent's stdout throughput against the serial console's.
//!
//! The start-to-exit runs go through the microVM benchmark's driver (`bench_driver`: one
//! round runs every tool once, in an order that rotates per round, timing spawn to reaping
//! with a monotonic clock); round 0 is a discarded warm-up. The container runs in L1 with
//! L1's cgroup2, the microVM and kata in L2 on L1's KVM (TCG-emulated SVM): only ratios
//! measured in the same boot mean anything.
//!
//! Throughput: `dd` in the guest writes N bytes to its stdout (through the agent, over vsock)
//! or to `/dev/ttyS0` (the serial console: one trapped port write per byte); each run's time
//! less the median of the same VM running `/bin/true` is the time the bytes took.
//!
//! The idle sandbox: kata runs a shell that sleeps; meanwhile the lab sums the resident memory
//! of capsule (the VMM: its own pages and every guest page the guest touched and has not
//! handed back through free page reporting) and of any virtiofsd it started, and the workload
//! reads what its container's cgroup holds (`memory.current`: its processes, the page cache
//! of the files they read, their kernel objects). The sandbox's cost beyond its workload is
//! the difference.

use std::fs;

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::bench::{quantile, write_results};
use crate::bench_microvm::{
    LAB_DRIVER, Sample, build_driver, median_of, parse_samples, report_relaunches,
};
use crate::lab::{self, BUSYBOX_ROOTFS, Extra};
use crate::util::{self, progress};
use crate::{guest, rootfs};

/// `cargo xtask bench kata`'s flags.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Timed runs per tool.
    #[arg(long, default_value_t = 10)]
    runs: usize,
}

const LAB_CAPSULE: &str = "/bin/capsule";
const LAB_PLAN: &str = "bench/kata-plan.json";
const LAB_OUTCOME: &str = "/tmp/bench-kata-outcome.json";

/// The microVM's RAM (kata sizes its VM from the Plan).
const MICROVM_MEMORY: &str = "256M";

/// Bytes each throughput run moves: enough that the transfer, not the boot, dominates the
/// agent's run; the serial console moves a thousandth as much in the time.
const AGENT_BYTES: u64 = 64 << 20;
const SERIAL_BYTES: u64 = 64 << 10;

/// When (into the idle sandbox's run) its memory is read, late enough for the guest's first
/// free page reports (Linux sends them 2 s after the pages became free; the lab's boot takes
/// about 3 s).
const IDLE_READ_AFTER_S: u32 = 12;
/// How long the idle sandbox's workload sleeps on after it read its cgroup, so that the
/// sandbox is still there while the lab reads its memory.
const IDLE_LINGER_S: u32 = 3;
const IDLE_MARKER: &str = "CAPSULE-BENCH-IDLE";

/// The issue's goals, printed next to the figures (not checked).
const GOAL_KATA_RATIO: f64 = 1.2;
const GOAL_SANDBOX_MIB: f64 = 64.0;
const GOAL_THROUGHPUT_RATIO: f64 = 10.0;

const CONTAINER: &str = "container";
const MICROVM: &str = "microvm";
const KATA: &str = "kata";
/// kata with the container's root shared over virtio-fs instead of the ext4 disk.
const KATA_VIRTIOFS_ROOT: &str = "kata-virtiofs-root";
const AGENT_STDOUT: &str = "agent-stdout";
const SERIAL_CONSOLE: &str = "serial-console";
const TOOLS: [&str; 6] = [
    CONTAINER,
    MICROVM,
    KATA,
    KATA_VIRTIOFS_ROOT,
    AGENT_STDOUT,
    SERIAL_CONSOLE,
];

/// `cargo xtask bench kata`.
pub fn kata(options: &Options) -> Result<()> {
    let runs = options.runs;
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let guest = guest::build()?;
    rootfs::busybox()?;
    let bench_dir = util::capsule_dir().join("bench");
    fs::create_dir_all(&bench_dir).with_context(|| format!("creating {}", bench_dir.display()))?;
    let plan = bench_dir.join("kata-plan.json");
    fs::write(&plan, serde_json::to_vec_pretty(&driver_plan())?)
        .with_context(|| format!("writing {}", plan.display()))?;
    let files = vec![
        (LAB_DRIVER.to_owned(), build_driver()?),
        (LAB_PLAN.to_owned(), plan),
    ];
    let mut cases = vec![("bench-kata".to_owned(), "[ -c /dev/kvm ]".to_owned())];
    cases.extend((0..=runs).map(|round| {
        let name = if round == 0 {
            "bench-kata-warmup".to_owned()
        } else {
            format!("bench-kata-round-{round}")
        };
        (
            name,
            format!("{MOUNT_CGROUP2} /{LAB_DRIVER} /{LAB_PLAN} {round}"),
        )
    }));
    cases.push(("bench-kata-idle".to_owned(), idle_command()));
    progress!(
        "one lab boot: 1 warm-up round and {runs} timed rounds of {}, then one idle kata sandbox",
        TOOLS.join(", ")
    );
    let lab = lab::run_extra(&Extra { files, cases })?;
    let console = lab.passed_output()?;
    let samples = parse_samples(&console)?;
    report_relaunches(&console);
    for tool in TOOLS {
        let n = samples.iter().filter(|s| s.tool == tool).count();
        if n != runs {
            bail!(
                "the console holds {n} timed runs of {tool}, not {runs}; see {}",
                lab.last_console().display()
            );
        }
    }
    let idle = parse_idle(&console).with_context(|| {
        format!(
            "no idle sandbox figure; see {}",
            lab.last_console().display()
        )
    })?;
    report(
        &samples,
        idle,
        runs,
        &guest.kernel_version,
        &bench_dir.join("kata.json"),
    )
}

/// `capsule run` of `command` under `isolation` on the busybox rootfs, its Outcome written
/// where the driver reads it.
fn capsule_argv(isolation: &str, command: &[&str]) -> Vec<String> {
    let (isolation, root_via) = match isolation {
        KATA_VIRTIOFS_ROOT => (KATA, Some("virtiofs")),
        other => (other, None),
    };
    let mut argv: Vec<String> = [LAB_CAPSULE, "run", "--isolation", isolation]
        .map(str::to_owned)
        .to_vec();
    if isolation == MICROVM {
        argv.extend(["--memory".to_owned(), MICROVM_MEMORY.to_owned()]);
    }
    if let Some(how) = root_via {
        argv.extend(["--root-via".to_owned(), how.to_owned()]);
    }
    argv.extend([
        "--rootfs".to_owned(),
        format!("/{BUSYBOX_ROOTFS}"),
        "--outcome".to_owned(),
        LAB_OUTCOME.to_owned(),
        "--".to_owned(),
    ]);
    argv.extend(command.iter().map(|a| a.to_string()));
    argv
}

/// What the driver runs each round.
fn driver_plan() -> serde_json::Value {
    let agent_count = format!("count={}", AGENT_BYTES / 65536);
    let serial_count = format!("count={}", SERIAL_BYTES / 1024);
    let tool = |name: &str, argv: Vec<String>| json!({ "name": name, "argv": argv, "status": 0, "outcome": LAB_OUTCOME });
    json!({
        "output": "/tmp/bench-kata-run.out",
        "tools": [
            tool(CONTAINER, capsule_argv(CONTAINER, &["/bin/true"])),
            tool(MICROVM, capsule_argv(MICROVM, &["/bin/true"])),
            tool(KATA, capsule_argv(KATA, &["/bin/true"])),
            tool(KATA_VIRTIOFS_ROOT, capsule_argv(KATA_VIRTIOFS_ROOT, &["/bin/true"])),
            tool(AGENT_STDOUT, capsule_argv(MICROVM, &["/bin/dd", "if=/dev/zero", "bs=64k", &agent_count])),
            tool(SERIAL_CONSOLE, capsule_argv(MICROVM, &["/bin/dd", "if=/dev/zero", "of=/dev/ttyS0", "bs=1k", &serial_count])),
        ],
    })
}

/// The container needs L1's cgroup2, which the lab's init does not mount. Every round mounts
/// it if it is not there: after a boot QEMU froze in, the next boot starts at the round that
/// froze, not at a setup case (a ten-round run on 2026-12-01 failed so). The lab's busybox
/// has no `mountpoint`.
const MOUNT_CGROUP2: &str = "{ grep -q ' /sys/fs/cgroup cgroup2 ' /proc/mounts || mount -t cgroup2 none /sys/fs/cgroup; } &&";

/// The idle sandbox case: kata's workload sleeps, reads its cgroup's `memory.current` (bytes)
/// and sleeps on; meanwhile the resident memory of every `capsule` and `virtiofsd` process in
/// L1 (only this launch's run now) is summed, in KiB.
fn idle_command() -> String {
    let workload = format!(
        "sleep {IDLE_READ_AFTER_S}; cat /sys/fs/cgroup/memory.current; sleep {IDLE_LINGER_S}"
    );
    let argv: Vec<String> = capsule_argv(KATA, &["/bin/sh", "-c", &workload])
        .iter()
        .map(|arg| format!("'{arg}'"))
        .collect();
    format!(
        "{argv} > /tmp/idle-workload & pid=$!; sleep {IDLE_READ_AFTER_S}; rss=0; \
         for p in /proc/[0-9]*; do case $(cat $p/comm 2>/dev/null) in capsule|virtiofsd) \
         r=$(sed -n 's/^Rss:[^0-9]*\\([0-9]*\\) kB/\\1/p' $p/smaps_rollup); \
         rss=$((rss + ${{r:-0}}));; esac; done; wait $pid; \
         echo \"{IDLE_MARKER} rss_kib=$rss workload_kib=$(($(cat /tmp/idle-workload) / 1024))\"",
        argv = argv.join(" "),
    )
}

/// One idle sandbox's memory, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Idle {
    /// Resident: the VMM, the guest pages the guest touched, virtiofsd.
    rss_kib: u64,
    /// What its workload's cgroup in the guest holds, part of the above.
    workload_kib: u64,
}

/// The idle sandbox's figures from the console; none when no process was found (0).
fn parse_idle(console: &str) -> Option<Idle> {
    let value = |line: &str, key: &str| -> Option<u64> {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(key))?
            .parse()
            .ok()
    };
    console
        .lines()
        .filter(|l| !l.contains("CAPSULE-LAB ") && l.contains(IDLE_MARKER))
        .find_map(|l| {
            let idle = Idle {
                rss_kib: value(l, "rss_kib=")?,
                workload_kib: value(l, "workload_kib=")?,
            };
            (idle.rss_kib > 0).then_some(idle)
        })
}

const MIB: f64 = 1024.0 * 1024.0;

fn report(
    samples: &[Sample],
    idle: Idle,
    runs: usize,
    kernel: &str,
    json_path: &std::path::Path,
) -> Result<()> {
    let median = |tool: &str| {
        let mut ms: Vec<f64> = samples
            .iter()
            .filter(|s| s.tool == tool)
            .map(|s| s.ms)
            .collect();
        ms.sort_by(f64::total_cmp);
        quantile(&ms, 0.5)
    };
    let [container, microvm, kata, kata_virtiofs, agent, serial] = TOOLS.map(median);
    let kata_ratio = kata / microvm;
    // What the bytes took: the run less the same VM's run of /bin/true.
    let rate = |bytes: u64, ms: f64| bytes as f64 / MIB / ((ms - microvm) / 1000.0);
    let agent_rate = rate(AGENT_BYTES, agent);
    let serial_rate = rate(SERIAL_BYTES, serial);
    let throughput_ratio = agent_rate / serial_rate;
    let idle_mib = idle.rss_kib as f64 / 1024.0;
    let workload_mib = idle.workload_kib as f64 / 1024.0;
    let beyond_workload_mib = idle_mib - workload_mib;
    let vmm_overhead_mib = median_of(
        samples
            .iter()
            .filter(|s| s.tool == KATA)
            .map(|s| s.vmm_overhead_bytes.map(|b| b as f64 / MIB)),
    );

    println!(
        "start-to-exit of /bin/true in the nested lab, {runs} runs each after 1 warm-up (ms; {kernel})"
    );
    println!("{:<20} {:>10} {:>14}", "isolation", "median", "vs microvm");
    for (tool, ms) in [
        (CONTAINER, container),
        (MICROVM, microvm),
        (KATA, kata),
        (KATA_VIRTIOFS_ROOT, kata_virtiofs),
    ] {
        println!("{tool:<20} {ms:>10.1} {:>13.2}x", ms / microvm);
    }
    println!(
        "kata/microvm: {kata_ratio:.2}x (goal: at most {GOAL_KATA_RATIO}x); kata's VMM overhead {}",
        vmm_overhead_mib.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2} MiB"))
    );
    println!(
        "kata's container root: ext4 disk {kata:.1} ms, virtio-fs {kata_virtiofs:.1} ms ({:.2}x the disk)",
        kata_virtiofs / kata
    );
    println!(
        "one idle kata sandbox: {idle_mib:.1} MiB resident (VMM + guest pages touched + virtiofsd), of which its workload's cgroup {workload_mib:.1} MiB: {beyond_workload_mib:.1} MiB beyond its workload (goal: under {GOAL_SANDBOX_MIB} MiB)"
    );
    println!(
        "guest stdout: agent over vsock {agent_rate:.2} MiB/s, serial console {serial_rate:.3} MiB/s: {throughput_ratio:.0}x (goal: at least {GOAL_THROUGHPUT_RATIO}x)"
    );
    let doc = json!({
        "benchmark": "kata",
        "runs": runs,
        "warmup_runs": 1,
        "kernel": kernel,
        "median_ms": {
            CONTAINER: container,
            MICROVM: microvm,
            KATA: kata,
            KATA_VIRTIOFS_ROOT: kata_virtiofs,
            AGENT_STDOUT: agent,
            SERIAL_CONSOLE: serial,
        },
        "kata_microvm_ratio": kata_ratio,
        "kata_vmm_overhead_mib": vmm_overhead_mib,
        "idle_sandbox_mib": idle_mib,
        "idle_sandbox_workload_mib": workload_mib,
        "idle_sandbox_beyond_workload_mib": beyond_workload_mib,
        "agent_mib_per_s": agent_rate,
        "serial_mib_per_s": serial_rate,
        "agent_serial_ratio": throughput_ratio,
        "samples_ms": TOOLS
            .iter()
            .map(|t| {
                let ms: Vec<f64> = samples.iter().filter(|s| s.tool == *t).map(|s| s.ms).collect();
                (t.to_string(), json!(ms))
            })
            .collect::<serde_json::Map<String, serde_json::Value>>(),
    });
    write_results(json_path, &doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_runs_capsule_with_its_isolation_and_outcome() {
        let plan = driver_plan();
        let tools = plan["tools"].as_array().unwrap();
        let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, TOOLS);
        for (tool, isolation) in tools
            .iter()
            .zip([CONTAINER, MICROVM, KATA, KATA, MICROVM, MICROVM])
        {
            let argv: Vec<&str> = tool["argv"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            assert_eq!(argv[..4], [LAB_CAPSULE, "run", "--isolation", isolation]);
            assert!(argv.contains(&LAB_OUTCOME));
        }
        assert!(
            tools[3]["argv"]
                .to_string()
                .contains(r#""--root-via","virtiofs""#)
        );
        let serial = tools[5]["argv"].to_string();
        assert!(serial.contains("of=/dev/ttyS0") && serial.contains("count=64"));
        assert!(tools[4]["argv"].to_string().contains("count=1024"));
    }

    #[test]
    fn the_idle_figure_is_read_from_its_own_line_only() {
        let console = format!(
            "CAPSULE-LAB result bench-kata-idle pass {IDLE_MARKER} rss_kib=1 workload_kib=1\n\
             {IDLE_MARKER} rss_kib=40960 workload_kib=2048\n"
        );
        assert_eq!(
            parse_idle(&console),
            Some(Idle {
                rss_kib: 40960,
                workload_kib: 2048
            })
        );
        assert_eq!(parse_idle("nothing"), None);
        assert_eq!(
            parse_idle(&format!("{IDLE_MARKER} rss_kib=0 workload_kib=0")),
            None
        );
        assert_eq!(parse_idle(&format!("{IDLE_MARKER} rss_kib=5")), None);
        // smaps_rollup separates a field from its value with spaces.
        assert!(idle_command().contains("Rss:[^0-9]*"));
        // The workload's command reaches the shell as one argument.
        assert!(
            idle_command()
                .contains("'/bin/sh' '-c' 'sleep 12; cat /sys/fs/cgroup/memory.current; sleep 3'")
        );
    }
}
