//! The microVM's virtio devices with a real guest kernel: disks (raw and qcow2, read-only,
//! copy-on-write clones), the root filesystem on a disk, the entropy device, the console,
//! and a guest that writes garbage to a device's registers.
//!
//! Like `microvm.rs`, these boot Debian's stock kernel, so they are `#[ignore]`d on this
//! project's PVM hosts and `cargo xtask lab` runs them on the lab's nested KVM (where
//! `qemu-img` and `mkfs.ext4` are in the lab's initramfs).

use std::path::{Path, PathBuf};
use std::process::Command;

use tests::{Env, Launch, lab_env};

fn microvm(env: &Env, flags: &[&str], cmd: &[&str]) -> Launch {
    env.run_isolated_on(&env.rootfs, "microvm", flags, cmd)
}

/// [`microvm`] on a root of the test's own (a directory or an image).
fn microvm_on(env: &Env, root: &Path, flags: &[&str], cmd: &[&str]) -> Launch {
    env.run_isolated_on(root, "microvm", flags, cmd)
}

fn qemu_img(args: &[&str]) -> String {
    let output = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img runs (the lab carries it)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "qemu-img {args:?}: {text}");
    text
}

/// `qemu-img check` passes with no errors and no leaked clusters.
fn assert_clean(image: &Path) {
    let report = qemu_img(&["check", image.to_str().expect("utf-8")]);
    assert!(
        report.contains("No errors were found on the image."),
        "{report}"
    );
    assert!(!report.contains("leaked"), "{report}");
}

/// A raw image of `mib` MiB filled with zeros.
fn raw_image(dir: &Path, name: &str, mib: usize) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, vec![0u8; mib << 20]).expect("raw image");
    path
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The guest writes `marker` at the start of /dev/vdb and syncs it.
fn write_marker(marker: &str) -> String {
    format!("printf '{marker}' | dd of=/dev/vdb conv=fsync 2>/dev/null && sync")
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn what_the_guest_writes_to_a_raw_disk_is_in_the_file_after_exit() {
    let env = lab_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = raw_image(dir.path(), "data.raw", 16);
    let disk_arg = path_str(&disk);
    let launch = microvm(
        &env,
        &["--disk", disk_arg],
        &["sh", "-c", &write_marker("raw-marker-1")],
    );
    assert_eq!(launch.code, 0, "{launch:?}");
    let bytes = std::fs::read(&disk).expect("read back");
    assert_eq!(&bytes[..12], b"raw-marker-1");
    assert_eq!(bytes.len(), 16 << 20, "the raw file keeps its size");
    let disks = &launch.outcome["disks"];
    assert_eq!(disks[0]["device"], "/dev/vdb", "{}", launch.outcome);
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn a_qcow2_disk_grows_with_what_the_guest_writes_and_stays_consistent() {
    let env = lab_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = dir.path().join("data.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", path_str(&disk), "64M"]);
    let before = std::fs::metadata(&disk).expect("stat").len();
    // Two writes far apart: two data clusters and an L2 table allocated.
    let script = format!(
        "{} && printf 'far-marker' | dd of=/dev/vdb bs=1M seek=40 conv=fsync 2>/dev/null",
        write_marker("qcow2-marker")
    );
    let launch = microvm(&env, &["--disk", path_str(&disk)], &["sh", "-c", &script]);
    assert_eq!(launch.code, 0, "{launch:?}");
    assert!(std::fs::metadata(&disk).expect("stat").len() > before);
    assert_clean(&disk);
    let raw = dir.path().join("converted.raw");
    qemu_img(&["convert", "-O", "raw", path_str(&disk), path_str(&raw)]);
    let bytes = std::fs::read(&raw).expect("converted");
    assert_eq!(&bytes[..12], b"qcow2-marker");
    assert_eq!(&bytes[40 << 20..(40 << 20) + 10], b"far-marker");
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn a_qcow2_clone_reads_its_base_and_leaves_it_unchanged() {
    let env = lab_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let base = raw_image(dir.path(), "base.raw", 8);
    let mut base_bytes = std::fs::read(&base).expect("base");
    base_bytes[..10].copy_from_slice(b"base-bytes");
    std::fs::write(&base, &base_bytes).expect("base");
    let clone = dir.path().join("clone.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        path_str(&base),
        "-F",
        "raw",
        path_str(&clone),
    ]);
    // The guest sees the base's bytes through the clone, then overwrites them in the clone.
    let script = format!(
        "[ \"$(head -c 10 /dev/vdb)\" = base-bytes ] && {}",
        write_marker("clone-data")
    );
    let launch = microvm(&env, &["--disk", path_str(&clone)], &["sh", "-c", &script]);
    assert_eq!(launch.code, 0, "{launch:?}");
    assert_eq!(
        std::fs::read(&base).expect("base"),
        base_bytes,
        "the base changed"
    );
    assert_clean(&clone);
    let raw = dir.path().join("clone.raw");
    qemu_img(&["convert", "-O", "raw", path_str(&clone), path_str(&raw)]);
    assert_eq!(&std::fs::read(&raw).expect("clone")[..10], b"clone-data");
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn a_read_only_disk_refuses_writes() {
    let env = lab_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = raw_image(dir.path(), "ro.raw", 4);
    let arg = format!("{}:ro", path_str(&disk));
    let launch = microvm(
        &env,
        &["--disk", &arg],
        &[
            "sh",
            "-c",
            "[ \"$(cat /sys/block/vdb/ro)\" = 1 ] || exit 3; \
             printf x | dd of=/dev/vdb conv=fsync 2>/dev/null && exit 4; exit 0",
        ],
    );
    assert_eq!(launch.code, 0, "{launch:?}");
    assert!(std::fs::read(&disk).expect("read").iter().all(|b| *b == 0));
    assert_eq!(
        launch.outcome["disks"][0]["readOnly"], true,
        "{}",
        launch.outcome
    );
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn disks_are_vdb_vdc_in_the_order_given() {
    let env = lab_env();
    let dir = tempfile::tempdir().expect("tempdir");
    let first = raw_image(dir.path(), "first.raw", 2);
    let second = raw_image(dir.path(), "second.raw", 6);
    let launch = microvm(
        &env,
        &["--disk", path_str(&first), "--disk", path_str(&second)],
        &["sh", "-c", "cat /sys/block/vdb/size /sys/block/vdc/size"],
    );
    assert_eq!(launch.code, 0, "{launch:?}");
    // Sizes in 512-byte sectors.
    assert_eq!(launch.stdout, "4096\n12288\n");
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn the_root_is_a_disk_and_its_overlay_leaves_the_source_unchanged() {
    let env = lab_env();
    let copy = env.copy_rootfs();
    let launch = microvm_on(
        &env,
        &copy.root(),
        &[],
        &[
            "sh",
            "-c",
            "grep -q '^/dev/vda ' /proc/mounts || grep -q ' / overlay ' /proc/mounts || exit 3; \
             echo new > /written-by-the-guest && rm /bin/true && echo done",
        ],
    );
    assert_eq!(launch.code, 0, "{launch:?}");
    assert_eq!(launch.stdout, "done\n");
    assert!(!copy.root().join("written-by-the-guest").exists());
    assert!(copy.root().join("bin/true").exists());

    // An ext4 image as the root: the same, and the image's bytes do not change.
    let image = copy.dir().join("root.ext4");
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(copy.root())
        .arg(&image)
        .arg("64M")
        .status()
        .expect("mkfs.ext4 runs");
    assert!(status.success());
    let before = std::fs::read(&image).expect("image");
    let launch = microvm_on(
        &env,
        &image,
        &[],
        &["sh", "-c", "echo x > /new-file && cat /new-file"],
    );
    assert_eq!(launch.code, 0, "{launch:?}");
    assert_eq!(launch.stdout, "x\n");
    assert!(
        std::fs::read(&image).expect("image") == before,
        "the root image changed"
    );
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn a_root_bigger_than_guest_ram_boots() {
    let env = lab_env();
    let copy = env.copy_rootfs();
    // 600 MiB of data in a 256 MiB guest: it could never travel in the initramfs.
    let status = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=600"])
        .arg(format!("of={}", copy.root().join("big").display()))
        .status()
        .expect("dd runs");
    assert!(status.success());
    let launch = microvm_on(
        &env,
        &copy.root(),
        &["--memory", "256M"],
        &[
            "sh",
            "-c",
            "stat -c %s /big && tail -c 1 /big | od -An -tx1",
        ],
    );
    assert_eq!(launch.code, 0, "{launch:?}");
    assert_eq!(launch.stdout, format!("{}\n 00\n", 600 << 20));
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn special_files_reach_the_guest_as_the_source_has_them() {
    let env = lab_env();
    let copy = env.copy_rootfs();
    let root = copy.root();
    let sh = |script: &str| {
        let status = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(&root)
            .status()
            .expect("sh runs");
        assert!(status.success(), "{script}");
    };
    sh(
        "echo one > linked && ln linked hardlink && mkfifo fifo && mknod null-dev c 1 3 \
        && touch setuid && chmod 4755 setuid && touch \"$(printf 'name-\\377')\"",
    );
    let launch = microvm_on(
        &env,
        &root,
        &[],
        &[
            "sh",
            "-c",
            "[ \"$(stat -c %i /linked)\" = \"$(stat -c %i /hardlink)\" ] || exit 3; \
             echo two >> /hardlink; [ \"$(cat /linked)\" = \"$(printf 'one\\ntwo')\" ] || exit 4; \
             [ -p /fifo ] || exit 5; [ -c /null-dev ] || exit 6; [ -u /setuid ] || exit 7; \
             [ -e \"$(printf '/name-\\377')\" ] || exit 8",
        ],
    );
    assert_eq!(launch.code, 0, "{launch:?}");
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn the_entropy_device_gives_bytes_and_the_init_s_console_is_hvc0() {
    let env = lab_env();
    let launch = microvm(
        &env,
        // Reading PID 1's descriptors takes CAP_SYS_PTRACE (its capabilities are a superset).
        &["--cap-add", "SYS_PTRACE"],
        &[
            "sh",
            "-c",
            "cat /sys/class/misc/hw_random/rng_current; head -c 64 /dev/hwrng | wc -c; \
             readlink /proc/1/fd/1; readlink /proc/self/fd/1",
        ],
    );
    assert_eq!(launch.code, 0, "{launch:?}");
    let lines: Vec<&str> = launch.stdout.lines().collect();
    assert!(lines[0].starts_with("virtio_rng"), "{lines:?}");
    assert_eq!(lines[1].trim(), "64");
    // The init's own messages go to the virtio console; the command's stdout is the guest
    // agent's pipe.
    assert_eq!(lines[2], "/dev/hvc0");
    assert!(lines[3].starts_with("pipe:"), "{lines:?}");
}

#[test]
#[ignore = "boots a stock kernel: cargo xtask lab runs it"]
fn garbage_in_a_device_s_registers_does_not_take_the_vmm_down() {
    let env = lab_env();
    // Unbind the entropy device's driver, so /dev/mem may reach its window, write junk over
    // its registers, then keep using the console (another device).
    let launch = microvm(
        &env,
        &["--cap-add", "ALL"],
        &[
            "sh",
            "-c",
            "for d in /sys/bus/virtio/devices/*; do \
               [ \"$(cat $d/device)\" = 0x0004 ] && p=$(basename $(dirname $(readlink -f $d))); \
             done; \
             base=0x$(grep \" : $p\\$\" /proc/iomem | head -1 | sed 's/^ *\\([0-9a-f]*\\)-.*/\\1/'); \
             echo $p > /sys/bus/platform/drivers/virtio-mmio/unbind || exit 3; \
             for off in 0 4 0x14 0x20 0x30 0x38 0x44 0x50 0x64 0x70 0x80 0x84 0x100 0x104; do \
               devmem $(( base + off )) 32 0xffffffff; devmem $(( base + off )) 8 0x5a; \
             done; echo still-here",
        ],
    );
    assert_eq!(
        launch.stdout.lines().last(),
        Some("still-here"),
        "{launch:?}"
    );
    assert_eq!(launch.code, 0, "{launch:?}");
}
