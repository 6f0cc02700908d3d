//! `cargo xtask`: capsule's CI, lab and release steps as Rust subcommands, each downloaded
//! artifact checked.

mod apt;
mod bench;
mod bench_disk;
mod bench_kata;
mod bench_microvm;
mod ci;
mod demo;
mod emulator_fault;
mod fuzz;
mod guest;
mod lab;
mod policy_doc;
mod rootfs;
mod util;
mod virtiofsd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "capsule's build, test, benchmark and demo tasks"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build a root filesystem under target/capsule/rootfs and print its absolute path.
    Rootfs {
        #[command(subcommand)]
        kind: RootfsKind,
    },
    /// Run everything CI checks: fmt, clippy, build, the no_std build of `devices`, test rootfs,
    /// tests, 60 s of fuzzing (shared among the targets), the nested lab.
    Ci,
    /// Benchmarks (need root).
    Bench {
        #[command(subcommand)]
        kind: BenchKind,
    },
    /// Run a workload in a capsule container and show its Outcome (needs root).
    Demo,
    /// Download the microVM guest's kernel and modules, build the base initramfs with
    /// capsule-init, and print the directory that holds them.
    Guest,
    /// Build virtiofsd (the Rust daemon from crates.io, the version capsule is tested with)
    /// into ~/.cache/capsule/tools/bin, where capsule finds it for microVMs' shared
    /// directories; skipped when it is there. Prints its path.
    Virtiofsd,
    /// Boot the nested lab (QEMU TCG with an emulated SVM CPU, a real KVM inside) and run its
    /// cases, or only those whose name contains FILTER.
    Lab {
        filter: Option<String>,
        /// Run this shell command in the lab instead of the cases, and print its output
        /// (repeatable; `capsule`, `$CAPSULE_GUEST_DIR` and `/rootfs/busybox` are there).
        #[arg(long, value_name = "CMD", conflicts_with = "filter")]
        exec: Vec<String>,
    },
    /// Run every fuzz target (the policy checker `check`, seeded with examples/*.rhai; the
    /// virtio-mmio transport `mmio`; ...) for a bounded time each on the stable toolchain;
    /// installs cargo-fuzz if missing.
    Fuzz {
        /// How long libFuzzer runs each target, after its build.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Run only this target.
        #[arg(long, value_name = "NAME")]
        target: Option<String>,
    },
    /// Regenerate docs/policy.md, the policy language reference, from the registered functions.
    PolicyDoc,
}

#[derive(Debug, Subcommand)]
enum RootfsKind {
    /// busybox from Debian's busybox-static package (downloaded, never installed).
    Busybox,
}

#[derive(Debug, Subcommand)]
enum BenchKind {
    /// `capsule run` of /bin/true against `crun run` and `runc run` of the same rootfs.
    Container {
        /// Timed runs per tool.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Only these tools (repeatable; default: all three).
        #[arg(long = "tool", value_enum)]
        tools: Vec<bench::Tool>,
    },
    /// Boot-to-exit of /bin/true in a capsule microVM against QEMU's microvm machine, both
    /// inside one nested lab boot (no root needed).
    Microvm(bench_microvm::Options),
    /// Disk I/O (fio: sequential 1 MiB, random 4 KiB at queue depth 1 and 32) in a capsule
    /// microVM against QEMU's microvm with virtio-blk-device, and L1's own reads as the
    /// ceiling, in one nested lab boot.
    Disk(bench_disk::Options),
    /// Start-to-exit of /bin/true as a container, a microVM and kata; one idle kata
    /// sandbox's memory; the guest agent's stdout throughput against the serial console's; in
    /// one nested lab boot.
    Kata(bench_kata::Options),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Rootfs {
            kind: RootfsKind::Busybox,
        } => rootfs::busybox().map(|path| println!("{}", path.display())),
        Cmd::Ci => ci::run(),
        Cmd::Bench {
            kind: BenchKind::Container { runs, tools },
        } => bench::container(runs, &tools),
        Cmd::Bench {
            kind: BenchKind::Microvm(options),
        } => bench_microvm::microvm(&options),
        Cmd::Bench {
            kind: BenchKind::Disk(options),
        } => bench_disk::disk(&options),
        Cmd::Bench {
            kind: BenchKind::Kata(options),
        } => bench_kata::kata(&options),
        Cmd::Demo => demo::run(),
        Cmd::Guest => {
            guest::build().map(|g| println!("{}", g.kernel.parent().unwrap_or(&g.kernel).display()))
        }
        Cmd::Virtiofsd => virtiofsd::install().map(|path| println!("{}", path.display())),
        Cmd::Lab { exec, .. } if !exec.is_empty() => lab::exec(&exec),
        Cmd::Lab { filter, .. } => lab::run(filter.as_deref()),
        Cmd::Fuzz { seconds, target } => fuzz::run(seconds, target.as_deref()),
        Cmd::PolicyDoc => policy_doc::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
