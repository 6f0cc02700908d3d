//! `cargo xtask bench microvm`: boot-to-exit of `/bin/true` in a capsule microVM against
//! QEMU's `microvm` machine, both on the real (nested) KVM of one lab boot.
//!
//! This project's hosts have PVM, which cannot boot stock kernels, so both VMMs run inside the
//! nested lab (see `lab.rs`), where absolute times are those of an L2 guest under TCG: only the
//! ratio to QEMU measured in the same boot means anything.
//!
//! Both boot the same kernel (`cargo xtask guest`'s) with capsule's command line, 256 MiB and
//! one vCPU, and the same initrd content: the base initramfs (capsule-init and the virtio
//! modules) followed by a per-launch archive of the busybox rootfs and a guest config for
//! `/bin/true`. capsule packs that archive itself on every launch; for QEMU xtask packs it once
//! on the host with the same `guest_init::write_launch_archive` and appends it to a copy of
//! the base initramfs. capsule-init writes the command's status to port 0x501, where capsule
//! stops the VM; QEMU gets `isa-debug-exit` at 0x501, which exits with `(status << 1) | 1`,
//! so a QEMU run that really ran `/bin/true` exits 1 and any other status fails the bench.
//!
//! Each lab case is one round; a round runs every tool once (the static `bench_driver`
//! example, see there for how a run is timed), round 0 being the discarded warm-up. QEMU runs
//! with `rtc=on`, the reference the goal is stated against. `--qemu-default` adds a QEMU with
//! the machine's default, which under KVM has no RTC: it measured 2.3x slower than `rtc=on`
//! (7.6 s against 3.3 s), likely because its ACPI tables do not say that the CMOS RTC is
//! absent and Linux waits for one (see kvm-core's `IAPC_CMOS_RTC_NOT_PRESENT`), so it is no
//! fair peer and only costs lab time by default.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use guest_init::{GuestConfig, KERNEL_CMDLINE, KERNEL_CMDLINE_QUIET};
use serde_json::json;

use crate::bench::{quantile, write_results};
use crate::emulator_fault::RELAUNCH_MARKER;
use crate::guest;
use crate::lab::{self, BUSYBOX_ROOTFS, Extra, GUEST_DIR, case_output};
use crate::rootfs;
use crate::util::{self, progress};

/// capsule's quiet kernel command line, which QEMU's guest gets too.
fn quiet_cmdline() -> String {
    format!("{KERNEL_CMDLINE} {KERNEL_CMDLINE_QUIET}")
}

/// The guest RAM of both, as `capsule --memory` and `qemu -m` read it.
const MEMORY: &str = "256M";

/// QEMU's files outside its binary and libraries: microvm's qboot BIOS and the option ROMs
/// that load `-kernel`, a bzImage or a PVH ELF (what `strace -e openat` showed QEMU opening
/// for this machine).
const QEMU_FIRMWARE: &[&str] = &["bios-microvm.bin", "linuxboot_dma.bin", "pvh.bin"];

const DRIVER_TARGET: &str = "x86_64-unknown-linux-musl";

/// Where things are inside the lab.
const LAB_CAPSULE: &str = "/bin/capsule";
pub(crate) const LAB_QEMU: &str = "usr/bin/qemu-system-x86_64";
pub(crate) const LAB_DRIVER: &str = "bench/bench_driver";
const LAB_PLAN: &str = "bench/plan.json";
const LAB_INITRD: &str = "bench/qemu-initrd.cpio";
/// capsule's Outcome of the latest run, in the lab's RAM.
const LAB_OUTCOME: &str = "/tmp/bench-outcome.json";

const MARKER: &str = "CAPSULE-BENCH";

/// The tool the ratios are to.
const REFERENCE: &str = "qemu-rtc-on";
/// QEMU's microvm with its default devices (`--qemu-default`).
const QEMU_DEFAULT: &str = "qemu-default";
/// QEMU (`rtc=on`) booting the busybox root from a virtio-blk disk as capsule does, not from
/// its initramfs: against [`REFERENCE`], the cost of a root on a disk in the same VMM.
const QEMU_DISK_ROOT: &str = "qemu-disk-root";
const LAB_DISK_INITRD: &str = "bench/qemu-disk-root-initrd.cpio";
const LAB_ROOT_IMAGE: &str = "bench/busybox-root.ext4";

/// The issue's targets, printed next to the figures for context (not checked).
const GOAL_RATIO: f64 = 0.5;
const GOAL_OVERHEAD_MIB: f64 = 5.0;

/// One timed run, as the driver printed it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub(crate) tool: String,
    pub(crate) round: usize,
    pub(crate) ms: f64,
    pub(crate) maxrss_kib: u64,
    /// capsule's prepare and create phases: everything before the vCPUs start.
    pub(crate) setup_ms: Option<f64>,
    pub(crate) total_ms: Option<f64>,
    pub(crate) boot_ms: Option<f64>,
    pub(crate) memory_bytes: Option<u64>,
    pub(crate) vmm_overhead_bytes: Option<u64>,
}

/// `cargo xtask bench microvm`'s flags.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Timed runs per tool.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Also QEMU with microvm's default devices (under KVM no RTC; about twice as slow).
    #[arg(long)]
    qemu_default: bool,
    /// After the timed rounds, boot each tool once more with the guest kernel's log
    /// (timestamped) and write both logs to target/capsule/bench/, to see where boot time
    /// goes.
    #[arg(long)]
    kernel_log: bool,
    /// Kernel parameters for capsule's guest only (`capsule run --kernel-cmdline`), to
    /// measure what they are worth; the report says that QEMU's guest did not get them.
    #[arg(long, value_name = "PARAMS")]
    capsule_cmdline: Option<String>,
}

/// `cargo xtask bench microvm`.
pub fn microvm(options: &Options) -> Result<()> {
    let &Options {
        runs,
        qemu_default,
        kernel_log,
        ..
    } = options;
    let capsule_cmdline = options.capsule_cmdline.as_deref();
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let qemu = util::ensure_program(
        "qemu-system-x86_64",
        "qemu-system-x86",
        "the lab runs it, and the bench runs it inside",
    )?;
    let qemu_version = util::output(
        Command::new(&qemu).arg("--version"),
        "qemu-system-x86_64 --version failed",
    )?
    .lines()
    .next()
    .unwrap_or_default()
    .to_owned();
    let guest = guest::build()?;
    let rootfs = rootfs::busybox()?;
    let bench_dir = util::capsule_dir().join("bench");
    fs::create_dir_all(&bench_dir).with_context(|| format!("creating {}", bench_dir.display()))?;

    let initrd = bench_dir.join("qemu-initrd.cpio");
    write_qemu_initrd(&guest.initramfs, &guest_config(), Some(&rootfs), &initrd)?;
    let disk_initrd = bench_dir.join("qemu-disk-root-initrd.cpio");
    write_qemu_initrd(
        &guest.initramfs,
        &disk_root_config(guest_config()),
        None,
        &disk_initrd,
    )?;
    let root_image = bench_dir.join("busybox-root.ext4");
    rootfs::ext4_image(&rootfs, &root_image, "64M")?;
    let plan = bench_dir.join("plan.json");
    let tools = tool_names(qemu_default);
    fs::write(
        &plan,
        serde_json::to_vec_pretty(&driver_plan(&tools, capsule_cmdline))?,
    )
    .with_context(|| format!("writing {}", plan.display()))?;
    let mut files = vec![
        (LAB_DRIVER.to_owned(), build_driver()?),
        (LAB_PLAN.to_owned(), plan),
        (LAB_INITRD.to_owned(), initrd),
        (LAB_DISK_INITRD.to_owned(), disk_initrd),
        (LAB_ROOT_IMAGE.to_owned(), root_image),
    ];
    let qemu_files = qemu_files(&qemu)?;
    progress!(
        "QEMU goes into the lab with {} files (binary, libraries, loader, firmware)",
        qemu_files.len()
    );
    files.extend(qemu_files);
    // The first case names the lab's directory (`lab-bench-microvm`) and shows at once whether
    // QEMU found its libraries.
    let mut cases = vec![(
        "bench-microvm".to_owned(),
        format!("[ -c /dev/kvm ] && /{LAB_QEMU} --version"),
    )];
    cases.extend((0..=runs).map(|round| {
        let name = if round == 0 {
            "bench-microvm-warmup".to_owned()
        } else {
            format!("bench-microvm-round-{round}")
        };
        (name, format!("/{LAB_DRIVER} /{LAB_PLAN} {round}"))
    }));
    if kernel_log {
        cases.extend(KERNEL_LOG_TOOLS.iter().map(|tool| {
            (
                format!("{KERNEL_LOG_CASE}-{tool}"),
                kernel_log_command(tool),
            )
        }));
    }

    progress!(
        "one lab boot: 1 warm-up round and {runs} timed rounds, each running {} once",
        tools.join(", ")
    );
    let lab = lab::run_extra(&Extra { files, cases })?;
    let consoles = lab.passed_console()?;
    let console = lab.outputs(&consoles);

    if kernel_log {
        for tool in KERNEL_LOG_TOOLS {
            let path = bench_dir.join(format!("kernel-log-{tool}.txt"));
            let log = case_output(&consoles, &format!("{KERNEL_LOG_CASE}-{tool}"));
            fs::write(&path, log + "\n").with_context(|| format!("writing {}", path.display()))?;
            progress!("{tool}'s boot with the kernel log: {}", path.display());
        }
    }

    let samples = parse_samples(&console)?;
    report_relaunches(&console);
    for tool in &tools {
        let n = samples.iter().filter(|s| s.tool == *tool).count();
        if n != runs {
            bail!(
                "the console holds {n} timed runs of {tool}, not {runs}; see {}",
                lab.last_console().display()
            );
        }
    }
    report(
        &samples,
        &tools,
        runs,
        &qemu_version,
        &guest.kernel_version,
        capsule_cmdline,
        &bench_dir.join("microvm.json"),
    )
}

/// The QEMU command line of one tool; `machine` is its `-M` value.
fn qemu_argv(machine: &str) -> Vec<String> {
    let mut argv = qemu_microvm_argv(machine, MEMORY, &quiet_cmdline());
    argv.extend(["-initrd".to_owned(), format!("/{LAB_INITRD}")]);
    argv
}

/// [`QEMU_DISK_ROOT`]'s command line: the busybox root image as a read-only virtio-blk disk.
fn qemu_disk_root_argv() -> Vec<String> {
    let mut argv = qemu_microvm_argv("microvm,rtc=on", MEMORY, &quiet_cmdline());
    argv.extend([
        "-initrd".to_owned(),
        format!("/{LAB_DISK_INITRD}"),
        "-drive".to_owned(),
        format!("id=root,file=/{LAB_ROOT_IMAGE},format=raw,if=none,readonly=on"),
        "-device".to_owned(),
        "virtio-blk-device,drive=root".to_owned(),
    ]);
    argv
}

/// `config` with the root on `/dev/vda` and the modules capsule loads for it; the command's
/// output stays on the serial console, which QEMU's `-serial stdio` prints.
pub(crate) fn disk_root_config(mut config: GuestConfig) -> GuestConfig {
    config.root = guest_init::GuestRoot::Disk(guest_init::ROOT_DEVICE.into());
    config.modules = guest_init::DISK_ROOT_MODULES
        .iter()
        .map(|m| m.to_string())
        .collect();
    config
}

fn or_nan(value: Option<f64>) -> f64 {
    value.unwrap_or(f64::NAN)
}

/// QEMU booting the guest kernel as capsule does, in the lab: `machine` (`-M`), `memory`
/// (`-m`), one vCPU, the kernel capsule boots by default (entered through PVH by both) with
/// `append` as its command line, the guest's console on QEMU's stdout and `isa-debug-exit` on
/// capsule's exit port; the caller adds the initrd and devices.
pub(crate) fn qemu_microvm_argv(machine: &str, memory: &str, append: &str) -> Vec<String> {
    let mut argv: Vec<String> = vec![format!("/{LAB_QEMU}")];
    for arg in [
        "-M",
        machine,
        "-accel",
        "kvm",
        // capsule too gives the guest every CPUID feature KVM supports.
        "-cpu",
        "host",
        "-m",
        memory,
        "-smp",
        "1",
        // Only the devices named here: no default NIC, VGA, monitor or config file.
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        // A guest panic (panic=-1) then ends QEMU with status 0 and fails the run, as it
        // fails capsule's, instead of rebooting forever.
        "-no-reboot",
        // The guest's console goes where capsule's goes: the run's output file.
        "-serial",
        "stdio",
        "-kernel",
    ] {
        argv.push(arg.to_owned());
    }
    argv.push(format!("/{GUEST_DIR}/vmlinux"));
    argv.extend(["-append".to_owned(), append.to_owned()]);
    argv.extend([
        "-device".to_owned(),
        format!(
            "isa-debug-exit,iobase={:#x},iosize=1",
            guest_init::EXIT_PORT
        ),
    ]);
    argv
}

/// `--kernel-log`: the lab cases (one per tool, named `KERNEL_LOG_CASE-TOOL`) that boot
/// `/bin/true` once with the guest kernel's log, timestamped.
const KERNEL_LOG_CASE: &str = "bench-microvm-kernel-log";
const KERNEL_LOG_TOOLS: [&str; 2] = ["capsule", REFERENCE];

/// The shell command of `tool`'s kernel-log case: the timed run's command line without
/// `quiet loglevel=1` (Debian's kernel timestamps its log). The case passes when the guest
/// ran `/bin/true`.
fn kernel_log_command(tool: &str) -> String {
    if tool == "capsule" {
        return format!(
            "{LAB_CAPSULE} run --isolation microvm --memory {MEMORY} --rootfs /{BUSYBOX_ROOTFS} \
             --kernel-log -- /bin/true"
        );
    }
    let quiet = quiet_cmdline();
    let argv: Vec<String> = qemu_argv("microvm,rtc=on")
        .into_iter()
        .map(|arg| format!("'{}'", if arg == quiet { KERNEL_CMDLINE } else { &arg }))
        .collect();
    // isa-debug-exit turns the guest's status 0 into 1.
    format!("{}; [ $? = 1 ]", argv.join(" "))
}

/// The tools in the order of the plan (the driver rotates it per round).
fn tool_names(qemu_default: bool) -> Vec<&'static str> {
    let mut tools = vec!["capsule", REFERENCE, QEMU_DISK_ROOT];
    if qemu_default {
        tools.push(QEMU_DEFAULT);
    }
    tools
}

/// What the driver runs: `tools`, of [`tool_names`].
fn driver_plan(tools: &[&str], capsule_cmdline: Option<&str>) -> serde_json::Value {
    let rootfs = format!("/{BUSYBOX_ROOTFS}");
    let mut capsule = vec![
        LAB_CAPSULE,
        "run",
        "--isolation",
        "microvm",
        "--memory",
        MEMORY,
        "--rootfs",
        &rootfs,
        "--outcome",
        LAB_OUTCOME,
    ];
    if let Some(params) = capsule_cmdline {
        capsule.extend(["--kernel-cmdline", params]);
    }
    capsule.extend(["--", "/bin/true"]);
    let plan_of = |tool: &str| match tool {
        "capsule" => json!({ "name": tool, "argv": capsule, "status": 0, "outcome": LAB_OUTCOME }),
        // The guest's status 0 through isa-debug-exit: (0 << 1) | 1.
        REFERENCE => json!({ "name": tool, "argv": qemu_argv("microvm,rtc=on"), "status": 1 }),
        QEMU_DISK_ROOT => json!({ "name": tool, "argv": qemu_disk_root_argv(), "status": 1 }),
        // Under KVM, microvm's `rtc=auto` means no RTC at all.
        _ => json!({ "name": tool, "argv": qemu_argv("microvm"), "status": 1 }),
    };
    json!({
        "output": "/tmp/bench-run.out",
        "tools": tools.iter().map(|t| plan_of(t)).collect::<Vec<_>>(),
    })
}

/// The guest config capsule writes for `capsule run --isolation microvm --rootfs R --
/// /bin/true` (the microVM backend's `guest_config` of that Plan).
fn guest_config() -> GuestConfig {
    // `new` has the `PATH` `capsule run` gives a guest when no `--env` is set.
    let mut config = GuestConfig::new(vec!["/bin/true".to_owned()]);
    config.quiet = true;
    config
}

/// The base initramfs, then the per-launch archive of `config` (and `rootfs`, if the root
/// travels in it): the one initrd QEMU loads, with the content capsule hands its guest as two
/// parts.
pub(crate) fn write_qemu_initrd(
    base: &Path,
    config: &GuestConfig,
    rootfs: Option<&Path>,
    path: &Path,
) -> Result<()> {
    let mut out = io::BufWriter::new(
        File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    let mut base_file = File::open(base).with_context(|| format!("opening {}", base.display()))?;
    let base_len = io::copy(&mut base_file, &mut out)
        .with_context(|| format!("copying {} to {}", base.display(), path.display()))?;
    // A cpio archive that follows another starts 4-aligned; the kernel skips zero padding.
    let pad = (4 - base_len % 4) % 4;
    out.write_all(&[0; 4][..pad as usize])?;
    let launch = guest_init::write_launch_archive(&mut out, config, rootfs)
        .context("packing the per-launch archive for QEMU's initrd")?;
    out.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    progress!(
        "QEMU's initrd {}: {base_len} bytes of base initramfs + {launch} bytes of per-launch archive",
        path.display()
    );
    Ok(())
}

/// Builds the driver as a static binary for the lab.
pub(crate) fn build_driver() -> Result<PathBuf> {
    util::ensure_rust_target(DRIVER_TARGET)?;
    util::run(
        util::cargo().args([
            "build",
            "--release",
            "--target",
            DRIVER_TARGET,
            "-p",
            "xtask",
            "--example",
            "bench_driver",
        ]),
        &format!(
            "the bench driver must build as a static {DRIVER_TARGET} binary; fix the errors above"
        ),
    )?;
    let bin = util::target_dir()
        .join(DRIVER_TARGET)
        .join("release/examples/bench_driver");
    if !bin.is_file() {
        bail!(
            "cargo built the bench driver, but {} is missing",
            bin.display()
        );
    }
    Ok(bin)
}

/// QEMU's binary, every library `ldd` names (at the same paths) with the dynamic loader, and
/// its firmware, as `(path in the lab, regular file on this host)`.
pub(crate) fn qemu_files(qemu: &Path) -> Result<Vec<(String, PathBuf)>> {
    let real = |path: &Path| {
        fs::canonicalize(path).with_context(|| format!("resolving {}", path.display()))
    };
    let mut files = lab::program_files(qemu, LAB_QEMU)?;
    // QEMU looks for firmware next to its binary (`../share/qemu`), then in its build's data
    // directory; the lab has both at /usr/share/qemu.
    let beside = real(qemu)?
        .parent()
        .and_then(Path::parent)
        .map(|prefix| prefix.join("share/qemu"));
    for name in QEMU_FIRMWARE {
        let host = [beside.clone(), Some(PathBuf::from("/usr/share/qemu"))]
            .into_iter()
            .flatten()
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
            .with_context(|| {
                format!("QEMU's firmware {name} is missing (package qemu-system-data)")
            })?;
        files.push((format!("usr/share/qemu/{name}"), real(&host)?));
    }
    Ok(files)
}

/// The timed runs on the console (round 0, the warm-up, left out).
pub(crate) fn parse_samples(console: &str) -> Result<Vec<Sample>> {
    let mut samples: Vec<Sample> = Vec::new();
    // The lab's result lines repeat the end of a case's output; only the driver's own lines
    // count.
    for line in console.lines().filter(|l| !l.contains("CAPSULE-LAB ")) {
        let Some(sample) = parse_sample(line) else {
            continue;
        };
        if sample.round == 0 {
            continue;
        }
        if samples
            .iter()
            .any(|s| s.tool == sample.tool && s.round == sample.round)
        {
            bail!(
                "the console has two runs of {} in round {}",
                sample.tool,
                sample.round
            );
        }
        samples.push(sample);
    }
    Ok(samples)
}

/// How many launches the driver ran again after the lab's emulator lost their guest
/// ([`RELAUNCH_MARKER`] lines; the lab's result lines that echo them do not count).
pub(crate) fn count_relaunches(console: &str) -> usize {
    let marker = format!("{RELAUNCH_MARKER} ");
    console
        .lines()
        .filter(|l| !l.contains("CAPSULE-LAB ") && l.contains(&marker))
        .count()
}

/// Says how many launches ran again after an emulator fault, if any did.
pub(crate) fn report_relaunches(console: &str) {
    let relaunches = count_relaunches(console);
    if relaunches > 0 {
        progress!(
            "{relaunches} launch(es) ran again after the lab's emulator lost their guest (not timed)"
        );
    }
}

/// `CAPSULE-BENCH tool=NAME round=N ms=F maxrss_kib=N [prepare_ms=F create_ms=F]
/// [total_ms=F] [boot_ms=F] [memory_bytes=N] [vmm_overhead_bytes=N]`, anywhere on the line.
fn parse_sample(line: &str) -> Option<Sample> {
    let rest = &line[line.find(&format!("{MARKER} tool="))? + MARKER.len() + 1..];
    let field = |key: &str| {
        rest.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    };
    Some(Sample {
        tool: field("tool")?.to_owned(),
        round: field("round")?.parse().ok()?,
        ms: field("ms")?.parse().ok()?,
        maxrss_kib: field("maxrss_kib")?.parse().ok()?,
        setup_ms: ["prepare_ms", "create_ms"]
            .iter()
            .map(|key| field(key).and_then(|v| v.parse::<f64>().ok()))
            .sum(),
        total_ms: field("total_ms").and_then(|v| v.parse().ok()),
        boot_ms: field("boot_ms").and_then(|v| v.parse().ok()),
        memory_bytes: field("memory_bytes").and_then(|v| v.parse().ok()),
        vmm_overhead_bytes: field("vmm_overhead_bytes").and_then(|v| v.parse().ok()),
    })
}

/// The median of the values present, if every run has one (a figure only some runs report
/// would be a median of a different set).
pub(crate) fn median_of(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let mut sorted: Vec<f64> = values.collect::<Option<_>>()?;
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    Some(quantile(&sorted, 0.5))
}

const MIB: f64 = 1024.0 * 1024.0;

fn or_na(value: Option<f64>, format: impl Fn(f64) -> String) -> String {
    value.map_or_else(|| "n/a".to_owned(), format)
}

fn report(
    samples: &[Sample],
    tools: &[&str],
    runs: usize,
    qemu_version: &str,
    kernel: &str,
    capsule_cmdline: Option<&str>,
    json_path: &Path,
) -> Result<()> {
    struct Row<'a> {
        tool: &'a str,
        median: f64,
        min: f64,
        max: f64,
        maxrss_mib: f64,
        samples: Vec<&'a Sample>,
    }
    let rows: Vec<Row> = tools
        .iter()
        .map(|&tool| {
            let of_tool: Vec<&Sample> = samples.iter().filter(|s| s.tool == tool).collect();
            let mut ms: Vec<f64> = of_tool.iter().map(|s| s.ms).collect();
            ms.sort_by(f64::total_cmp);
            Row {
                tool,
                median: quantile(&ms, 0.5),
                min: ms.first().copied().unwrap_or(f64::NAN),
                max: ms.last().copied().unwrap_or(f64::NAN),
                maxrss_mib: median_of(of_tool.iter().map(|s| Some(s.maxrss_kib as f64)))
                    .unwrap_or(f64::NAN)
                    / 1024.0,
                samples: of_tool,
            }
        })
        .collect();
    let reference = rows.iter().find(|r| r.tool == REFERENCE).map(|r| r.median);
    let ratio = |median: f64| reference.map(|q| median / q);

    println!(
        "microVM boot-to-exit of /bin/true in the nested lab, {runs} runs each after 1 warm-up (ms, spawn to exit)"
    );
    println!("{kernel}; {qemu_version}; guest {MEMORY}, 1 vCPU");
    println!(
        "{:<14} {:>9} {:>9} {:>9} {:>12} {:>15}",
        "tool", "median", "min", "max", "vs rtc=on", "maxrss MiB"
    );
    for row in &rows {
        println!(
            "{:<14} {:>9.1} {:>9.1} {:>9.1} {:>12} {:>15.1}",
            row.tool,
            row.median,
            row.min,
            row.max,
            or_na(ratio(row.median), |r| format!("{r:.2}x")),
            row.maxrss_mib,
        );
    }

    let capsule = rows.iter().find(|r| r.tool == "capsule");
    let from_outcome = |get: fn(&Sample) -> Option<f64>| {
        capsule.and_then(|row| median_of(row.samples.iter().map(|s| get(s))))
    };
    let setup_ms = from_outcome(|s| s.setup_ms);
    let boot_ms = from_outcome(|s| s.boot_ms);
    let total_ms = from_outcome(|s| s.total_ms);
    let memory_mib = from_outcome(|s| s.memory_bytes.map(|b| b as f64 / MIB));
    let overhead_mib = from_outcome(|s| s.vmm_overhead_bytes.map(|b| b as f64 / MIB));
    println!(
        "capsule's Outcome (medians): prepare+create {} (before the vCPUs start), bootMs {} (vCPUs start -> init's first instruction), totalMs {}, peak memory {}, VMM overhead {}",
        or_na(setup_ms, |v| format!("{v:.1} ms")),
        or_na(boot_ms, |v| format!("{v:.1} ms")),
        or_na(total_ms, |v| format!("{v:.1} ms")),
        or_na(memory_mib, |v| format!("{v:.1} MiB")),
        or_na(overhead_mib, |v| format!("{v:.2} MiB")),
    );
    let capsule_ratio = capsule.and_then(|row| ratio(row.median));
    println!(
        "capsule/QEMU rtc=on: {} (issue's goal: at most {GOAL_RATIO:.2}x); VMM overhead {} (goal: under {GOAL_OVERHEAD_MIB} MiB)",
        or_na(capsule_ratio, |r| format!("{r:.2}x")),
        or_na(overhead_mib, |v| format!("{v:.2} MiB")),
    );
    let disk_root = rows.iter().find(|r| r.tool == QEMU_DISK_ROOT);
    if let (Some(capsule), Some(disk_root)) = (capsule, disk_root) {
        println!(
            "the root on a disk: QEMU {:.2}x its initramfs root; capsule {:.2}x QEMU, both with the root on a disk",
            or_nan(ratio(disk_root.median)),
            capsule.median / disk_root.median
        );
    }
    if let Some(params) = capsule_cmdline {
        println!(
            "NOTE: capsule's guest also got `{params}` on its kernel command line and QEMU's did not: this ratio measures those parameters too, not the VMMs alone"
        );
    }

    let tools_json: Vec<_> = rows
        .iter()
        .map(|row| {
            json!({
                "tool": row.tool,
                "median_ms": row.median,
                "min_ms": row.min,
                "max_ms": row.max,
                "ratio_to_qemu_rtc_on": ratio(row.median),
                "median_maxrss_mib": row.maxrss_mib,
                "samples_ms": row.samples.iter().map(|s| s.ms).collect::<Vec<_>>(),
                "samples_maxrss_kib": row.samples.iter().map(|s| s.maxrss_kib).collect::<Vec<_>>(),
            })
        })
        .collect();
    let doc = json!({
        "benchmark": "microvm",
        "workload": ["/bin/true"],
        "runs": runs,
        "warmup_runs": 1,
        "kernel": kernel,
        "qemu": qemu_version,
        "cmdline": quiet_cmdline(),
        "capsule_extra_cmdline": capsule_cmdline,
        "memory": MEMORY,
        "vcpus": 1,
        "tools": tools_json,
        "capsule_outcome_medians": {
            "setup_ms": setup_ms,
            "boot_ms": boot_ms,
            "total_ms": total_ms,
            "memory_mib": memory_mib,
            "vmm_overhead_mib": overhead_mib,
        },
        "capsule_qemu_rtc_on_ratio": capsule_ratio,
    });
    write_results(json_path, &doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_parse_and_lab_result_echoes_are_ignored() {
        let console = "\x1b[2JCAPSULE-BENCH tool=capsule round=1 ms=812.40 maxrss_kib=40960 prepare_ms=2.5 create_ms=40 total_ms=800.5 boot_ms=610.2\n\
                       CAPSULE-BENCH tool=qemu-rtc-on round=1 ms=1500.00 maxrss_kib=90000\n\
                       CAPSULE-BENCH tool=capsule round=0 ms=900 maxrss_kib=1\n\
                       CAPSULE-LAB result bench-microvm-round-1 pass CAPSULE-BENCH tool=capsule round=1 ms=812.40 maxrss_kib=40960\n";
        let samples = parse_samples(console).unwrap();
        assert_eq!(samples.len(), 2);
        assert_eq!(
            samples[0],
            Sample {
                tool: "capsule".into(),
                round: 1,
                ms: 812.4,
                maxrss_kib: 40960,
                setup_ms: Some(42.5),
                total_ms: Some(800.5),
                boot_ms: Some(610.2),
                memory_bytes: None,
                vmm_overhead_bytes: None,
            }
        );
        assert_eq!(samples[1].tool, "qemu-rtc-on");
        let twice = "CAPSULE-BENCH tool=a round=1 ms=1 maxrss_kib=1\n".repeat(2);
        assert!(parse_samples(&twice).is_err());
    }

    #[test]
    fn relaunches_are_counted_from_the_driver_s_own_lines() {
        let console = "CAPSULE-BENCH-RETRY tool=kata round=1 attempt=1: capsule: the guest kernel triple-faulted\n\
                       CAPSULE-BENCH tool=kata round=1 ms=1 maxrss_kib=1\n\
                       CAPSULE-LAB result r pass CAPSULE-BENCH-RETRY tool=kata round=1 attempt=1: x\n";
        assert_eq!(count_relaunches(console), 1);
        assert_eq!(parse_samples(console).unwrap().len(), 1);
    }

    #[test]
    fn a_figure_missing_from_one_run_has_no_median() {
        assert_eq!(median_of([Some(1.0), Some(3.0)].into_iter()), Some(2.0));
        assert_eq!(median_of([Some(1.0), None].into_iter()), None);
        assert_eq!(median_of(std::iter::empty()), None);
    }

    #[test]
    fn a_case_rerun_after_a_frozen_boot_counts_once() {
        let consoles = "CAPSULE-LAB start r\nCAPSULE-BENCH tool=a round=1 ms=1 maxrss_kib=1\n\
                        CAPSULE-LAB start r\nCAPSULE-BENCH tool=a round=1 ms=2 maxrss_kib=1\n\
                        CAPSULE-LAB result r pass\n";
        let samples = parse_samples(&case_output(consoles, "r")).unwrap();
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].ms, 2.0);
    }

    #[test]
    fn the_plan_expects_each_tool_s_success_status() {
        let plan = driver_plan(&tool_names(true), None);
        let statuses: Vec<(&str, i64)> = plan["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["name"].as_str().unwrap(), t["status"].as_i64().unwrap()))
            .collect();
        assert_eq!(
            statuses,
            [
                ("capsule", 0),
                (REFERENCE, 1),
                (QEMU_DISK_ROOT, 1),
                (QEMU_DEFAULT, 1)
            ]
        );
        assert_eq!(plan["tools"][0]["outcome"], LAB_OUTCOME);
        assert_eq!(plan["tools"][1]["argv"][2], "microvm,rtc=on");
        assert!(
            plan["tools"][2]["argv"]
                .as_array()
                .unwrap()
                .contains(&json!("virtio-blk-device,drive=root"))
        );
        assert_eq!(plan["tools"][3]["argv"][2], "microvm");
        assert_eq!(tool_names(false), ["capsule", REFERENCE, QEMU_DISK_ROOT]);
    }

    #[test]
    fn qemu_exits_through_the_init_s_exit_port() {
        let argv = qemu_argv("microvm,rtc=on");
        assert!(argv.contains(&"isa-debug-exit,iobase=0x501,iosize=1".to_owned()));
        assert!(argv.contains(&quiet_cmdline()));
    }
}
