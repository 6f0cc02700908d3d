//! Writes a per-launch archive, for trying `capsule-init` by hand: append it to the base
//! initramfs (`cargo xtask guest`) and boot the pair with any VMM that stops on a write to the
//! exit port, e.g. QEMU:
//!
//! ```text
//! cargo run -p guest-init --example launch_archive -- /tmp/launch.cpio --rootfs ROOTFS -- sh -c 'exit 3'
//! cat ~/.cache/capsule/guest/initramfs.cpio /tmp/launch.cpio > /tmp/initrd
//! qemu-system-x86_64 -accel tcg -m 512 -nographic -no-reboot \
//!     -kernel ~/.cache/capsule/guest/vmlinuz -initrd /tmp/initrd -append 'console=ttyS0 quiet' \
//!     -device isa-debug-exit,iobase=0x501,iosize=1     # exits with status * 2 + 1
//! ```
//!
//! Options before `--`: `--rootfs DIR`, `--uid N`, `--gid N`, `--env K=V`, `--cwd DIR`,
//! `--hostname NAME`, `--module FILE.ko`, `--readonly`, `--quiet`.

use std::path::PathBuf;
use std::process::ExitCode;

use guest_init::{GuestConfig, Workload, write_launch_archive};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("launch_archive: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = args
        .next()
        .ok_or("usage: launch_archive OUT [OPTIONS] -- COMMAND...")?;
    let mut config = GuestConfig::new(Vec::new());
    let mut workload = Workload::new(Vec::new());
    let mut rootfs = None;
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--" => break,
            "--rootfs" => rootfs = Some(PathBuf::from(value()?)),
            "--uid" => workload.process.user.uid = value()?.parse()?,
            "--gid" => workload.process.user.gid = value()?.parse()?,
            "--env" => workload.process.env.push(value()?),
            "--cwd" => workload.process.cwd = value()?.into(),
            "--hostname" => workload.hostname = Some(value()?),
            "--module" => config.modules.push(value()?),
            "--readonly" => config.readonly_root = true,
            "--quiet" => config.quiet = true,
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    workload.process.args = args.collect();
    config.workload = Some(workload);
    let mut file = std::io::BufWriter::new(std::fs::File::create(&out)?);
    let start = std::time::Instant::now();
    let bytes = write_launch_archive(&mut file, &config, rootfs.as_deref())?;
    eprintln!(
        "launch_archive: wrote {out} ({bytes} bytes) in {:.1} ms",
        start.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}
