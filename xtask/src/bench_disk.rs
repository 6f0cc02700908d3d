//! `cargo xtask bench disk`: the same guest kernel reading and writing the same raw image
//! under capsule and under QEMU's `microvm` machine with `virtio-blk-device`, alternating, in
//! one nested lab boot, with the lab's (L1's) own reads of the file as the ceiling.
//!
//! Both guests boot `cargo xtask guest`'s kernel with 512 MiB and one vCPU, their root on a
//! read-only virtio-blk disk (an ext4 image of the busybox rootfs plus Debian's fio and its
//! libraries, built here once) and the data image, a 256 MiB raw file in L1's tmpfs, as their
//! second disk (`/dev/vdb`). Both open the image through the host page cache (capsule's raw
//! disk uses `pread`/`pwrite` on a file opened without O_DIRECT; QEMU gets `cache=writeback`,
//! its default, which is the same), and fio in the guest uses O_DIRECT, so the guest's page
//! cache is out of the measurement. fio runs four jobs, one after the other: sequential write
//! and read in 1 MiB blocks, then 4 KiB random reads at queue depth 1 (psync) and 32
//! (libaio), each random job for a fixed time. The ceiling is the same fio jobs run in L1 on
//! the file itself (buffered: tmpfs has no O_DIRECT).
//!
//! Inside the lab absolute figures are those of an L2 guest under TCG: only the ratios to
//! QEMU and to the ceiling, measured in the same boot, mean anything.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::bench::{quantile, write_results};
use crate::bench_microvm::{disk_root_config, qemu_files, qemu_microvm_argv, write_qemu_initrd};
use crate::lab::{self, Extra, case_output};
use crate::util::{self, progress};
use crate::{guest, rootfs};

/// `cargo xtask bench disk`'s flags.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Rounds; each runs capsule, QEMU and the ceiling once (medians are reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Seconds each random-read job runs.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
}

/// The data image's size: big enough that a sequential pass is not over in a blink under TCG,
/// small enough for L1's RAM next to two guests.
const DATA_MIB: u64 = 256;
/// Guest RAM of both guests: fio and its libraries run from the root disk's overlay.
const MEMORY: &str = "512M";

const LAB_DATA: &str = "/tmp/bench-data.raw";
const LAB_ROOT_IMAGE: &str = "bench/fio-root.ext4";
const LAB_QEMU_INITRD: &str = "bench/qemu-disk-initrd.cpio";
const LAB_FIO: &str = "usr/bin/fio";
const LAB_OUTCOME: &str = "/tmp/bench-disk-outcome.json";

const TOOLS: [&str; 3] = ["capsule", "qemu", "ceiling"];
/// The figure the ratios are to.
const REFERENCE: &str = "qemu";

/// One fio job: its name, and whether its figure is bandwidth (MiB/s) or IOPS.
const JOBS: [(&str, Figure); 4] = [
    ("seq-write-1m", Figure::WriteMibPerSec),
    ("seq-read-1m", Figure::ReadMibPerSec),
    ("rand-read-4k-qd1", Figure::ReadIops),
    ("rand-read-4k-qd32", Figure::ReadIops),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Figure {
    ReadMibPerSec,
    WriteMibPerSec,
    ReadIops,
}

impl Figure {
    fn unit(self) -> &'static str {
        match self {
            Figure::ReadMibPerSec | Figure::WriteMibPerSec => "MiB/s",
            Figure::ReadIops => "IOPS",
        }
    }

    /// The figure out of a fio `--terse-version=3` line's fields (1-based in fio's
    /// documentation: 7 read KiB/s, 8 read IOPS, 48 write KiB/s).
    fn of(self, fields: &[&str]) -> Option<f64> {
        let field = |n: usize| fields.get(n - 1)?.parse::<f64>().ok();
        match self {
            Figure::ReadMibPerSec => Some(field(7)? / 1024.0),
            Figure::WriteMibPerSec => Some(field(48)? / 1024.0),
            Figure::ReadIops => field(8),
        }
    }
}

/// fio's command line for `filename`: the four jobs, one after another (`--stonewall`).
fn fio_args(filename: &str, direct: bool, seconds: u64) -> Vec<String> {
    let mut args: Vec<String> = [
        "--output-format=terse",
        "--terse-version=3",
        &format!("--filename={filename}"),
        &format!("--size={DATA_MIB}M"),
        &format!("--direct={}", u8::from(direct)),
        "--name=seq-write-1m",
        "--rw=write",
        "--bs=1M",
        "--ioengine=psync",
        "--end_fsync=1",
        "--name=seq-read-1m",
        "--stonewall",
        "--rw=read",
        "--bs=1M",
        "--ioengine=psync",
    ]
    .map(str::to_owned)
    .to_vec();
    for (name, depth, engine) in [
        ("rand-read-4k-qd1", 1, "psync"),
        ("rand-read-4k-qd32", 32, "libaio"),
    ] {
        args.extend([
            format!("--name={name}"),
            "--stonewall".to_owned(),
            "--rw=randread".to_owned(),
            "--bs=4k".to_owned(),
            format!("--iodepth={depth}"),
            format!("--ioengine={engine}"),
            "--time_based".to_owned(),
            format!("--runtime={seconds}"),
        ]);
    }
    args
}

/// `cargo xtask bench disk`.
pub fn disk(options: &Options) -> Result<()> {
    let &Options { runs, seconds } = options;
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let qemu = util::ensure_program(
        "qemu-system-x86_64",
        "qemu-system-x86",
        "the lab runs it, and the bench runs it inside",
    )?;
    let fio = util::ensure_program("fio", "fio", "the guests' and the lab's disk workload")?;
    let guest = guest::build()?;
    let busybox = rootfs::busybox()?;
    let bench_dir = util::capsule_dir().join("bench");
    fs::create_dir_all(&bench_dir).with_context(|| format!("creating {}", bench_dir.display()))?;

    let fio_files = lab::program_files(&fio, LAB_FIO)?;
    let root_image = bench_dir.join("fio-root.ext4");
    build_root_image(
        &busybox,
        &fio_files,
        &bench_dir.join("fio-root"),
        &root_image,
    )?;
    let guest_fio: Vec<String> = fio_args("/dev/vdb", true, seconds);
    let qemu_initrd = bench_dir.join("qemu-disk-initrd.cpio");
    let mut fio_argv = vec!["/usr/bin/fio".to_owned()];
    fio_argv.extend(guest_fio.iter().cloned());
    write_qemu_initrd(
        &guest.initramfs,
        &qemu_guest_config(fio_argv),
        None,
        &qemu_initrd,
    )?;

    let mut files = vec![
        (LAB_ROOT_IMAGE.to_owned(), root_image),
        (LAB_QEMU_INITRD.to_owned(), qemu_initrd),
    ];
    files.extend(qemu_files(&qemu)?);
    files.extend(fio_files);

    let mut cases = vec![(
        "bench-disk".to_owned(),
        format!(
            "[ -c /dev/kvm ] && dd if=/dev/zero of={LAB_DATA} bs=1M count={DATA_MIB} 2>/dev/null \
             && /{LAB_FIO} --version"
        ),
    )];
    for round in 0..=runs {
        // The order rotates, so neither VMM always runs on a cache the other warmed.
        for i in 0..TOOLS.len() {
            let tool = TOOLS[(i + round) % TOOLS.len()];
            let name = if round == 0 {
                format!("bench-disk-warmup-{tool}")
            } else {
                format!("bench-disk-{tool}-{round}")
            };
            cases.push((name, tool_command(tool, &guest_fio, seconds)));
        }
    }
    progress!(
        "one lab boot: 1 warm-up round and {runs} timed rounds, each running capsule, QEMU and \
         the ceiling once ({} s of random reads per job)",
        seconds
    );
    let lab = lab::run_extra(&Extra { files, cases })?;
    let consoles = lab.passed_console()?;
    let mut samples: Vec<(&str, &str, f64)> = Vec::new();
    let mut overheads = Vec::new();
    for round in 1..=runs {
        for tool in TOOLS {
            let output = case_output(&consoles, &format!("bench-disk-{tool}-{round}"));
            for (job, value) in parse_fio(&output)? {
                samples.push((tool, job, value));
            }
            if tool == "capsule" {
                overheads.extend(vmm_overhead(&output));
            }
        }
    }
    report(&samples, &overheads, runs, &bench_dir.join("disk.json"))
}

/// The case command of one tool.
fn tool_command(tool: &str, guest_fio: &[String], seconds: u64) -> String {
    let fio = guest_fio.join(" ");
    match tool {
        "capsule" => format!(
            "/bin/capsule run --isolation microvm --memory {MEMORY} --rootfs /{LAB_ROOT_IMAGE} \
             --disk {LAB_DATA} --outcome {LAB_OUTCOME} -- /usr/bin/fio {fio} && cat {LAB_OUTCOME}"
        ),
        "qemu" => {
            let argv: Vec<String> = qemu_argv().into_iter().map(|a| format!("'{a}'")).collect();
            // isa-debug-exit turns the guest's status 0 into 1.
            format!("{}; [ $? = 1 ]", argv.join(" "))
        }
        _ => format!(
            "/{LAB_FIO} {}",
            fio_args(LAB_DATA, false, seconds).join(" ")
        ),
    }
}

/// QEMU's command line: the same kernel, command line, memory and disks as capsule's guest,
/// fio's command in the per-launch archive of its initrd.
fn qemu_argv() -> Vec<String> {
    let append = format!(
        "{} {}",
        guest_init::KERNEL_CMDLINE,
        guest_init::KERNEL_CMDLINE_QUIET
    );
    let mut argv = qemu_microvm_argv("microvm,rtc=on", MEMORY, &append);
    argv.extend(["-initrd".to_owned(), format!("/{LAB_QEMU_INITRD}")]);
    for (id, file, readonly) in [
        ("root", format!("/{LAB_ROOT_IMAGE}"), true),
        ("data", LAB_DATA.to_owned(), false),
    ] {
        argv.extend([
            "-drive".to_owned(),
            format!(
                "id={id},file={file},format=raw,if=none,cache=writeback{}",
                if readonly { ",readonly=on" } else { "" }
            ),
            "-device".to_owned(),
            format!("virtio-blk-device,drive={id}"),
        ]);
    }
    argv
}

/// The guest root: the busybox rootfs with fio and every library it loads, as an ext4 image
/// (rebuilt each time: a few seconds).
fn build_root_image(
    busybox: &Path,
    fio_files: &[(String, PathBuf)],
    dir: &Path,
    image: &Path,
) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    util::run(
        Command::new("cp").arg("-a").arg(busybox).arg(dir),
        "copying the busybox rootfs for the bench's guest root",
    )?;
    for (path, host) in fio_files {
        let to = dir.join(path);
        // busybox's /lib may be a symlink into /usr: copy beside what is there.
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::copy(host, &to)
            .with_context(|| format!("copying {} to {}", host.display(), to.display()))?;
    }
    rootfs::ext4_image(dir, image, "256M")?;
    progress!("guest root {}: busybox and fio", image.display());
    Ok(())
}

/// The guest config capsule writes for its own run of the same fio: the root on `/dev/vda`
/// with the same modules, but the command's output on the serial console, which QEMU's
/// `-serial stdio` prints (fio's lines are few).
fn qemu_guest_config(argv: Vec<String>) -> guest_init::GuestConfig {
    disk_root_config(guest_init::GuestConfig::new(argv))
}

/// Each job's figure from fio's terse lines.
fn parse_fio(output: &str) -> Result<Vec<(&'static str, f64)>> {
    let mut figures = Vec::new();
    for line in output.lines() {
        let fields: Vec<&str> = line.trim().split(';').collect();
        if fields.len() < 50 || fields[0] != "3" {
            continue;
        }
        let Some(&(job, figure)) = JOBS.iter().find(|(job, _)| *job == fields[2]) else {
            continue;
        };
        if fields[4] != "0" {
            bail!("fio's job {job} failed with error {}: {line}", fields[4]);
        }
        let value = figure
            .of(&fields)
            .with_context(|| format!("fio's line for {job} has no {}: {line}", figure.unit()))?;
        figures.push((job, value));
    }
    if figures.len() != JOBS.len() {
        bail!(
            "expected fio's {} jobs, found {}:\n{output}",
            JOBS.len(),
            figures.len()
        );
    }
    Ok(figures)
}

/// `vmmOverheadBytes` of capsule's Outcome, printed after fio's lines.
fn vmm_overhead(output: &str) -> Option<f64> {
    let start = output.find('{')?;
    let outcome: serde_json::Value = serde_json::from_str(output[start..].trim()).ok()?;
    outcome["peaks"]["vmmOverheadBytes"].as_f64()
}

fn report(
    samples: &[(&str, &str, f64)],
    overheads: &[f64],
    runs: usize,
    json_path: &Path,
) -> Result<()> {
    let median = |tool: &str, job: &str| {
        let mut values: Vec<f64> = samples
            .iter()
            .filter(|(t, j, _)| *t == tool && *j == job)
            .map(|(_, _, v)| *v)
            .collect();
        values.sort_by(f64::total_cmp);
        quantile(&values, 0.5)
    };
    println!("\ndisk I/O in the nested lab, medians of {runs} alternating runs (higher is better)");
    println!(
        "{:<20} {:>12} {:>12} {:>12} {:>14} {:>16}",
        "job", "capsule", "QEMU", "ceiling", "capsule/QEMU", "capsule/ceiling"
    );
    let mut rows = Vec::new();
    for (job, figure) in JOBS {
        let [capsule, qemu, ceiling] = TOOLS.map(|tool| median(tool, job));
        println!(
            "{:<20} {:>12.1} {:>12.1} {:>12.1} {:>13.2}x {:>15.2}x   ({})",
            job,
            capsule,
            qemu,
            ceiling,
            capsule / qemu,
            capsule / ceiling,
            figure.unit()
        );
        rows.push(json!({
            "job": job, "unit": figure.unit(),
            "capsule": capsule, "qemu": qemu, "ceiling": ceiling,
            "capsule_to_qemu": capsule / qemu, "capsule_to_ceiling": capsule / ceiling,
        }));
    }
    let mut sorted = overheads.to_vec();
    sorted.sort_by(f64::total_cmp);
    let overhead_mib = quantile(&sorted, 0.5) / (1024.0 * 1024.0);
    println!(
        "capsule's VMM overhead with every device attached: {overhead_mib:.2} MiB (goal: under 5 MiB)"
    );
    println!("the ratios are to {REFERENCE} and to L1's own fio on the file, in the same lab boot");
    write_results(
        json_path,
        &json!({ "runs": runs, "rows": rows, "vmm_overhead_mib": overhead_mib }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fio_terse_lines_give_each_job_s_figure() {
        let mut write = vec!["0"; 130];
        write[0] = "3";
        write[2] = "seq-write-1m";
        write[47] = "2048";
        let mut read = write.clone();
        read[2] = "seq-read-1m";
        read[47] = "0";
        read[6] = "4096";
        let mut qd1 = read.clone();
        qd1[2] = "rand-read-4k-qd1";
        qd1[7] = "1500";
        let mut qd32 = qd1.clone();
        qd32[2] = "rand-read-4k-qd32";
        qd32[7] = "9000";
        let output = [write, read, qd1, qd32]
            .map(|fields| fields.join(";"))
            .join("\nnoise\n");
        assert_eq!(
            parse_fio(&output).expect("parses"),
            [
                ("seq-write-1m", 2.0),
                ("seq-read-1m", 4.0),
                ("rand-read-4k-qd1", 1500.0),
                ("rand-read-4k-qd32", 9000.0)
            ]
        );
        assert!(parse_fio("3;fio;seq-read-1m").is_err());
    }
}
