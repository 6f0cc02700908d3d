//! Images made and checked by QEMU's own tools (`qemu-img`, `qemu-io` from Debian's
//! `qemu-utils`): what they write we read, what we write they read, and `qemu-img check` finds
//! every image we wrote clean (no errors, no leaked clusters). Without the tools a test is
//! skipped, except under `CI=true` (`::tests::require`).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use super::*;

fn have_qemu() -> bool {
    let found = Command::new("qemu-img")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    ::tests::require(found, "qemu-img and qemu-io (apt-get install qemu-utils)")
}

/// Runs a tool and returns its stdout, failing the test with its stderr if it fails.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .expect("spawn qemu tool");
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// `qemu-img create -f qcow2 -o OPTIONS PATH SIZE`, plus `extra` arguments (e.g. `-b`).
fn create(path: &Path, options: &str, size: &str, extra: &[&str]) {
    let mut args = vec!["create", "-q", "-f", "qcow2", "-o", options];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[s(path), size]);
    run("qemu-img", &args);
}

/// `qemu-io -c CMD` on a qcow2 image.
fn qemu_io(path: &Path, cmds: &[&str]) {
    let mut args = vec!["-f", "qcow2"];
    for c in cmds {
        args.extend_from_slice(&["-c", c]);
    }
    args.push(s(path));
    run("qemu-io", &args);
}

/// The virtual disk as QEMU reads it: `qemu-img convert -O raw`.
fn qemu_read(path: &Path) -> Vec<u8> {
    let out = path.with_extension("converted");
    run("qemu-img", &["convert", "-O", "raw", s(path), s(&out)]);
    let bytes = fs::read(&out).expect("read converted image");
    fs::remove_file(&out).expect("remove converted image");
    bytes
}

/// `qemu-img check` exits 0 only with no errors and no leaked clusters (2: corruption,
/// 3: leaks).
fn assert_clean(path: &Path) {
    let out = Command::new("qemu-img")
        .args(["check", s(path)])
        .output()
        .expect("spawn qemu-img check");
    assert!(
        out.status.success(),
        "qemu-img check {}: {}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read_all(disk: &mut dyn DiskImage) -> Vec<u8> {
    let mut buf = vec![0; disk.capacity() as usize];
    disk.read_at(0, &mut buf).expect("read the whole disk");
    buf
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Writes that cross cluster boundaries at 4K, 64K and 2M, land mid-cluster, and hit
/// clusters again; applied to the image and to a model of the disk.
fn write_mix(disk: &mut dyn DiskImage, model: &mut [u8]) {
    let writes: [(u64, usize, u8); 6] = [
        (0, 512, 1),
        (4096 - 512, 8192, 2),
        (65536 + 1024, 70_000 - 70_000 % 512, 3),
        ((2 << 20) - 4096, 12_288, 4),
        (5 << 20, 1 << 20, 5),
        (4096, 1024, 6),
    ];
    for (offset, len, seed) in writes {
        let data = pattern(len, seed);
        disk.write_at(offset, &data).expect("write");
        model[offset as usize..offset as usize + len].copy_from_slice(&data);
    }
}

const CLUSTER_SIZES: [&str; 3] = ["4k", "64k", "2M"];

#[test]
fn qcow2_written_by_qemu_reads_back_for_each_cluster_size() {
    if !have_qemu() {
        return;
    }
    let dir = TempDir::new().expect("tempdir");
    for cluster in CLUSTER_SIZES {
        let path = dir.path().join(format!("q-{cluster}.qcow2"));
        create(&path, &format!("cluster_size={cluster}"), "8M", &[]);
        qemu_io(&path, &["write -P 0xab 1M 64k", "write -P 0xcd 5000k 8k"]);
        let mut disk = open(&path, true).expect("open");
        assert_eq!(disk.capacity(), 8 << 20);
        let ours = read_all(disk.as_mut());
        assert_eq!(ours, qemu_read(&path), "cluster size {cluster}");
        assert_eq!(ours[(1 << 20) + 10], 0xab);
        assert_eq!(ours[5000 * 1024], 0xcd);
        assert!(ours[..1 << 20].iter().all(|&b| b == 0));
    }
}

#[test]
fn qcow2_written_by_us_reads_back_in_qemu_and_checks_clean() {
    if !have_qemu() {
        return;
    }
    let dir = TempDir::new().expect("tempdir");
    for cluster in CLUSTER_SIZES {
        let path = dir.path().join(format!("w-{cluster}.qcow2"));
        create(&path, &format!("cluster_size={cluster}"), "8M", &[]);
        let mut model = vec![0; 8 << 20];
        {
            let mut disk = open(&path, false).expect("open");
            write_mix(disk.as_mut(), &mut model);
            disk.flush().expect("flush");
            assert_eq!(read_all(disk.as_mut()), model, "our read-back, {cluster}");
        }
        assert_eq!(
            qemu_read(&path),
            model,
            "qemu's read-back, cluster size {cluster}"
        );
        assert_clean(&path);
    }
}

#[test]
fn qcow2_version_2_reads_and_writes() {
    if !have_qemu() {
        return;
    }
    let dir = TempDir::new().expect("tempdir");
    let base = dir.path().join("base.qcow2");
    create(&base, "compat=0.10", "8M", &[]);
    qemu_io(&base, &["write -P 0x33 0 8M"]);
    let path = dir.path().join("v2.qcow2");
    create(&path, "compat=0.10", "8M", &["-b", s(&base), "-F", "qcow2"]);
    let mut model = vec![0x33; 8 << 20];
    {
        let mut disk = open(&path, false).expect("open");
        write_mix(disk.as_mut(), &mut model);
        // Version 2 has no zero flag: over a backing file, zeros must be written.
        assert!(!disk.supports_discard());
        assert!(matches!(
            disk.discard(0, 512),
            Err(DiskError::Unsupported(_))
        ));
        disk.write_zeroes(1 << 20, 128 << 10, true)
            .expect("write zeroes");
        model[1 << 20..(1 << 20) + (128 << 10)].fill(0);
        disk.flush().expect("flush");
        assert_eq!(read_all(disk.as_mut()), model);
    }
    assert_eq!(qemu_read(&path), model);
    assert_clean(&path);
}

#[test]
fn qcow2_v3_zero_clusters_read_as_zeros() {
    if !have_qemu() {
        return;
    }
    let dir = TempDir::new().expect("tempdir");
    let base = dir.path().join("base.qcow2");
    let top = dir.path().join("top.qcow2");
    create(&base, "cluster_size=64k", "1M", &[]);
    qemu_io(&base, &["write -P 0x11 0 1M"]);
    create(
        &top,
        "cluster_size=64k",
        "1M",
        &["-b", s(&base), "-F", "qcow2"],
    );
    // Over a backing file, `write -z` must set the zero flag: unallocated would show 0x11.
    qemu_io(&top, &["write -z 64k 128k"]);
    let map = run("qemu-img", &["map", "--output=json", s(&top)]);
    assert!(map.contains("\"zero\": true"), "qemu-img map: {map}");
    let ours = read_all(open(&top, true).expect("open").as_mut());
    assert!(ours[64 << 10..192 << 10].iter().all(|&b| b == 0));
    assert!(ours[..64 << 10].iter().all(|&b| b == 0x11));
    assert!(ours[192 << 10..].iter().all(|&b| b == 0x11));
}

#[test]
fn qcow2_compressed_clusters_read_back() {
    if !have_qemu() {
        return;
    }
    let dir = TempDir::new().expect("tempdir");
    let raw = dir.path().join("src.raw");
    let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i / 700) as u8).collect();
    fs::write(&raw, &data).expect("write raw");
    let compressed = dir.path().join("c.qcow2");
    run(
        "qemu-img",
        &[
            "convert",
            "-c",
            "-f",
            "raw",
            "-O",
            "qcow2",
            s(&raw),
            s(&compressed),
        ],
    );
    assert!(fs::metadata(&compressed).expect("stat").len() < data.len() as u64 / 2);
    assert_eq!(
        read_all(open(&compressed, true).expect("open").as_mut()),
        data
    );
}

/// A clone over `backing` (qcow2 or raw): a 512-byte write inside a cluster the base holds
/// copies the rest of the cluster from the base, the clone reads in QEMU as our model, and
/// the base's file does not change.
fn clone_copies_on_write(backing: &Path, format: &str, base_data: &[u8]) {
    let dir = backing.parent().expect("in the tempdir");
    let clone = dir.join(format!("clone-of-{format}.qcow2"));
    create(
        &clone,
        "cluster_size=64k",
        "2M",
        &["-b", s(backing), "-F", format],
    );
    let base_file = fs::read(backing).expect("read base");
    let mut model = base_data.to_vec();
    model.resize(2 << 20, 0);
    {
        let mut disk = open(&clone, false).expect("open clone");
        assert_eq!(
            read_all(disk.as_mut()),
            model,
            "the clone reads as its base"
        );
        let data = pattern(512, 9);
        disk.write_at(65536 + 4096, &data)
            .expect("partial-cluster write");
        model[65536 + 4096..65536 + 4608].copy_from_slice(&data);
        disk.flush().expect("flush");
        assert_eq!(read_all(disk.as_mut()), model);
    }
    assert_eq!(qemu_read(&clone), model);
    assert_eq!(
        fs::read(backing).expect("read base"),
        base_file,
        "the base changed"
    );
    assert_clean(&clone);
    let info = inspect(&clone).expect("inspect");
    assert_eq!(info.backing_file.as_deref(), Some(backing));
}

#[test]
fn qcow2_clone_of_a_qcow2_base() {
    if !have_qemu() {
        return;
    }
    let dir = TempDir::new().expect("tempdir");
    let base = dir.path().join("base.qcow2");
    create(&base, "cluster_size=64k", "2M", &[]);
    qemu_io(&base, &["write -P 0x5a 0 256k"]);
    clone_copies_on_write(&base, "qcow2", &qemu_read(&base));
}

#[test]
fn qcow2_clone_of_a_raw_base() {
    if !have_qemu() {
        return;
    }
    let dir = TempDir::new().expect("tempdir");
    let base = dir.path().join("base.raw");
    // Smaller than the clone: past the base's end the clone reads zeros.
    let data = pattern(1 << 20, 3);
    fs::write(&base, &data).expect("write base");
    clone_copies_on_write(&base, "raw", &data);
}

#[test]
fn qcow2_chain_of_three_resolves_relative_names_against_each_image() {
    if !have_qemu() {
        return;
    }
    let dir = TempDir::new().expect("tempdir");
    fs::create_dir(dir.path().join("sub")).expect("mkdir");
    let raw = dir.path().join("sub/base.raw");
    fs::write(&raw, pattern(1 << 20, 1)).expect("write base");
    let mid = dir.path().join("sub/mid.qcow2");
    // Relative names: QEMU resolves each against the directory of the image naming it.
    create(
        &mid,
        "cluster_size=4k",
        "1M",
        &["-b", "base.raw", "-F", "raw"],
    );
    qemu_io(&mid, &["write -P 0x77 4k 4k"]);
    let top = dir.path().join("top.qcow2");
    create(
        &top,
        "cluster_size=4k",
        "1M",
        &["-b", "sub/mid.qcow2", "-F", "qcow2"],
    );
    let mut model = qemu_read(&top);
    {
        let mut disk = open(&top, false).expect("open");
        assert_eq!(read_all(disk.as_mut()), model);
        disk.write_at(6144, &[0xee; 512]).expect("write");
        model[6144..6656].fill(0xee);
        disk.flush().expect("flush");
    }
    assert_eq!(qemu_read(&top), model);
    assert_clean(&top);
    assert_clean(&mid);
    assert_eq!(inspect(&mid).expect("inspect").backing_file, Some(raw));
}

/// Writes `len` bytes of data from offset 0 in 64 KiB pieces; returns the model.
fn fill(path: &Path, size: usize, len: usize) -> Vec<u8> {
    let mut model = vec![0; size];
    let mut disk = open(path, false).expect("open");
    for (i, at) in (0..len).step_by(64 << 10).enumerate() {
        let data = pattern(64 << 10, i as u8);
        disk.write_at(at as u64, &data).expect("write");
        model[at..at + data.len()].copy_from_slice(&data);
    }
    disk.flush().expect("flush");
    model
}

#[test]
fn qcow2_grows_past_the_first_refcount_block() {
    if !have_qemu() {
        return;
    }
    let dir = TempDir::new().expect("tempdir");
    // 4 KiB clusters with 16-bit refcounts: a refcount block covers 2048 clusters (8 MiB of
    // file), so 12 MiB of data needs a second block.
    let path = dir.path().join("grow.qcow2");
    create(&path, "cluster_size=4k", "16M", &[]);
    let model = fill(&path, 16 << 20, 12 << 20);
    assert!(fs::metadata(&path).expect("stat").len() > 12 << 20);
    assert_eq!(qemu_read(&path), model);
    assert_clean(&path);
}

#[test]
fn qcow2_grows_its_refcount_table() {
    if !have_qemu() {
        return;
    }
    let dir = TempDir::new().expect("tempdir");
    // 512-byte clusters with 64-bit refcounts: a refcount block covers 64 clusters (32 KiB)
    // and a refcount table cluster 64 blocks (2 MiB), so 4 MiB of data needs a second
    // table cluster: the table moves.
    let path = dir.path().join("grow.qcow2");
    create(&path, "cluster_size=512,refcount_bits=64", "8M", &[]);
    let table_clusters = || {
        qcow2::header::Header::parse(&fs::read(&path).expect("read"))
            .map(|h| h.refcount_table_clusters)
    };
    assert_eq!(table_clusters(), Ok(1));
    let model = fill(&path, 8 << 20, 4 << 20);
    assert!(
        table_clusters().expect("parse") > 1,
        "the refcount table did not grow"
    );
    assert_eq!(qemu_read(&path), model);
    assert_clean(&path);
}

#[test]
fn qcow2_discard_and_write_zeroes_read_as_zeros_over_a_backing_file() {
    if !have_qemu() {
        return;
    }
    let dir = TempDir::new().expect("tempdir");
    let base = dir.path().join("base.qcow2");
    create(&base, "cluster_size=4k", "1M", &[]);
    qemu_io(&base, &["write -P 0x42 0 1M"]);
    let top = dir.path().join("top.qcow2");
    create(
        &top,
        "cluster_size=4k",
        "1M",
        &["-b", s(&base), "-F", "qcow2"],
    );
    let mut model = vec![0x42; 1 << 20];
    {
        let mut disk = open(&top, false).expect("open");
        assert!(disk.supports_discard());
        disk.write_at(0, &[7; 64 << 10]).expect("write");
        model[..64 << 10].fill(7);
        disk.discard(8192, 16384 + 512).expect("discard");
        model[8192..8192 + 16384 + 512].fill(0);
        disk.write_zeroes(128 << 10, 10240, false)
            .expect("write zeroes");
        model[128 << 10..(128 << 10) + 10240].fill(0);
        disk.write_zeroes(256 << 10, 8192, true)
            .expect("write zeroes, unmap");
        model[256 << 10..(256 << 10) + 8192].fill(0);
        disk.flush().expect("flush");
        assert_eq!(read_all(disk.as_mut()), model);
    }
    assert_eq!(qemu_read(&top), model);
    assert_clean(&top);
}

#[test]
fn qcow2_read_only_refuses_writes() {
    if !have_qemu() {
        return;
    }
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("ro.qcow2");
    create(&path, "cluster_size=64k", "1M", &[]);
    let before = fs::read(&path).expect("read");
    let mut disk = open(&path, true).expect("open");
    assert!(matches!(
        disk.write_at(0, &[1; 512]),
        Err(DiskError::ReadOnly { .. })
    ));
    assert!(!disk.supports_discard());
    drop(disk);
    assert_eq!(fs::read(&path).expect("read"), before);
}

#[test]
fn accesses_past_the_end_are_refused() {
    if !have_qemu() {
        return;
    }
    let dir = TempDir::new().expect("tempdir");
    let qcow2 = dir.path().join("a.qcow2");
    create(&qcow2, "cluster_size=64k", "1M", &[]);
    let raw = dir.path().join("a.raw");
    fs::write(&raw, vec![0; 1 << 20]).expect("write raw");
    for path in [qcow2, raw] {
        let mut disk = open(&path, false).expect("open");
        let mut buf = [0; 1024];
        for offset in [(1 << 20) - 512, u64::MAX - 100] {
            assert!(matches!(
                disk.read_at(offset, &mut buf),
                Err(DiskError::OutOfRange {
                    capacity: 1_048_576,
                    ..
                })
            ));
            assert!(matches!(
                disk.write_at(offset, &buf),
                Err(DiskError::OutOfRange { .. })
            ));
        }
    }
}

#[test]
fn format_is_detected_by_content_not_name() {
    if !have_qemu() {
        return;
    }
    let dir = TempDir::new().expect("tempdir");
    let qcow2 = dir.path().join("disk.raw");
    create(&qcow2, "cluster_size=64k", "3M", &[]);
    let raw = dir.path().join("disk.qcow2");
    fs::write(&raw, vec![0; 4096]).expect("write raw");
    assert_eq!(
        inspect(&qcow2).expect("inspect"),
        ImageInfo {
            format: ImageFormat::Qcow2,
            virtual_size: 3 << 20,
            backing_file: None
        }
    );
    assert_eq!(inspect(&raw).expect("inspect").format, ImageFormat::Raw);
    assert_eq!(
        ImageFormat::detect(b"QFI\xfb\0\0\0\x03"),
        ImageFormat::Qcow2
    );
    assert_eq!(ImageFormat::detect(b"QFI"), ImageFormat::Raw);
}

fn refusal(path: &Path) -> String {
    let inspected = inspect(path).expect_err("inspect must refuse").to_string();
    let opened = open(path, false).expect_err("open must refuse").to_string();
    assert_eq!(inspected, opened);
    inspected
}

#[test]
fn refuses_a_missing_file_and_a_directory() {
    let dir = TempDir::new().expect("tempdir");
    let missing = dir.path().join("nope.img");
    assert!(
        refusal(&missing).contains("No such file"),
        "{}",
        refusal(&missing)
    );
    assert!(refusal(dir.path()).ends_with("is a directory, not a disk image"));
}

#[test]
fn refuses_a_missing_backing_file_naming_both() {
    if !have_qemu() {
        return;
    }
    let dir = TempDir::new().expect("tempdir");
    let base = dir.path().join("base.qcow2");
    create(&base, "cluster_size=64k", "1M", &[]);
    let clone = dir.path().join("clone.qcow2");
    create(
        &clone,
        "cluster_size=64k",
        "1M",
        &["-b", s(&base), "-F", "qcow2"],
    );
    fs::remove_file(&base).expect("remove base");
    let msg = refusal(&clone);
    assert_eq!(
        msg,
        format!(
            "{}: its backing file {} does not exist",
            clone.display(),
            base.display()
        )
    );
}

#[test]
fn refuses_a_backing_chain_that_loops() {
    if !have_qemu() {
        return;
    }
    let dir = TempDir::new().expect("tempdir");
    let a = dir.path().join("a.qcow2");
    let b = dir.path().join("b.qcow2");
    create(&a, "cluster_size=64k", "1M", &[]);
    create(&b, "cluster_size=64k", "1M", &["-b", s(&a), "-F", "qcow2"]);
    run(
        "qemu-img",
        &["rebase", "-u", "-b", s(&b), "-F", "qcow2", s(&a)],
    );
    assert!(
        refusal(&b).contains("backing chain loops back to"),
        "{}",
        refusal(&b)
    );
}

/// Overwrites bytes of a file at `offset`.
fn patch(path: &Path, offset: usize, bytes: &[u8]) {
    let mut data = fs::read(path).expect("read");
    data[offset..offset + bytes.len()].copy_from_slice(bytes);
    fs::write(path, data).expect("write");
}

#[test]
fn refuses_qcow2_features_capsule_does_not_support() {
    if !have_qemu() {
        return;
    }
    let dir = TempDir::new().expect("tempdir");
    let made = |name: &str, options: &str| -> PathBuf {
        let path = dir.path().join(name);
        create(&path, options, "1M", &[]);
        path
    };
    let cases: Vec<(PathBuf, &str)> = vec![
        (
            made("zstd.qcow2", "compression_type=zstd"),
            "compression type is zstd (1)",
        ),
        (made("l2.qcow2", "extended_l2=on"), "extended L2 entries"),
        (
            // qemu-img takes a relative data file name against its working directory.
            made(
                "data.qcow2",
                &format!("data_file={}", s(&dir.path().join("data.raw"))),
            ),
            "external data file",
        ),
        (
            {
                let p = made("v4.qcow2", "cluster_size=64k");
                patch(&p, 4, &4u32.to_be_bytes());
                p
            },
            "version 4 is not supported",
        ),
        (
            {
                let p = made("dirty.qcow2", "cluster_size=64k");
                patch(&p, 72, &1u64.to_be_bytes());
                p
            },
            "dirty bit is set",
        ),
        (
            {
                let p = made("corrupt.qcow2", "cluster_size=64k");
                patch(&p, 72, &2u64.to_be_bytes());
                p
            },
            "corrupt bit is set",
        ),
        (
            {
                let p = made("unknown.qcow2", "cluster_size=64k");
                patch(&p, 72, &(1u64 << 40).to_be_bytes());
                p
            },
            "unknown incompatible feature bits 0x10000000000",
        ),
        (
            {
                let p = made("luks.qcow2", "cluster_size=64k");
                patch(&p, 32, &2u32.to_be_bytes());
                p
            },
            "encrypted (LUKS)",
        ),
    ];
    for (path, expected) in cases {
        let msg = refusal(&path);
        assert!(msg.starts_with(&format!("{}: ", path.display())), "{msg}");
        assert!(msg.contains(expected), "{}: {msg}", path.display());
    }
}

#[test]
fn refuses_an_empty_raw_file_and_one_not_a_sector_multiple() {
    let dir = TempDir::new().expect("tempdir");
    let empty = dir.path().join("empty.img");
    fs::write(&empty, b"").expect("write");
    assert!(refusal(&empty).ends_with("is empty (0 bytes), not a disk"));
    let odd = dir.path().join("odd.img");
    fs::write(&odd, vec![1; 1000]).expect("write");
    assert!(refusal(&odd).contains("is 1000 bytes, not a whole number of 512-byte sectors"));
}

#[test]
fn raw_reads_writes_and_flushes() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("disk.img");
    fs::write(&path, vec![0; 1 << 20]).expect("write");
    let mut model = vec![0; 1 << 20];
    {
        let mut disk = open(&path, false).expect("open");
        assert_eq!(disk.capacity(), 1 << 20);
        write_mix_small(disk.as_mut(), &mut model);
        disk.flush().expect("flush");
        assert_eq!(read_all(disk.as_mut()), model);
    }
    assert_eq!(fs::read(&path).expect("read"), model);
}

fn write_mix_small(disk: &mut dyn DiskImage, model: &mut [u8]) {
    for (offset, len, seed) in [
        (0usize, 512usize, 1u8),
        (4096 + 512, 8192, 2),
        (1_040_384, 8192, 3),
    ] {
        let data = pattern(len, seed);
        disk.write_at(offset as u64, &data).expect("write");
        model[offset..offset + len].copy_from_slice(&data);
    }
}

#[test]
fn raw_read_only_refuses_writes() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("ro.img");
    fs::write(&path, vec![5; 4096]).expect("write");
    let mut disk = open(&path, true).expect("open");
    assert!(matches!(
        disk.write_at(0, &[1; 512]),
        Err(DiskError::ReadOnly { .. })
    ));
    assert!(matches!(
        disk.write_zeroes(0, 512, false),
        Err(DiskError::ReadOnly { .. })
    ));
    assert!(!disk.supports_discard());
    assert_eq!(fs::read(&path).expect("read"), vec![5; 4096]);
}

#[test]
fn raw_refuses_a_write_that_would_make_it_qcow2() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("raw.img");
    fs::write(&path, vec![0; 4096]).expect("write");
    let mut disk = open(&path, false).expect("open");
    let mut sector = [0u8; 512];
    sector[..4].copy_from_slice(b"QFI\xfb");
    let err = disk.write_at(0, &sector).expect_err("must refuse");
    assert!(err.to_string().contains("qcow2 header"), "{err}");
    disk.write_at(512, &sector).expect("elsewhere it is data");
    assert_eq!(inspect(&path).expect("inspect").format, ImageFormat::Raw);
}

#[test]
fn raw_discard_punches_holes_and_write_zeroes_zeroes() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("discard.img");
    fs::write(&path, vec![0x99; 4 << 20]).expect("write");
    let blocks = |p: &Path| fs::metadata(p).expect("stat").blocks();
    let full = blocks(&path);
    let mut disk = open(&path, false).expect("open");
    assert!(disk.supports_discard(), "ext4 and tmpfs punch holes");
    disk.discard(1 << 20, 2 << 20).expect("discard");
    assert!(
        blocks(&path) < full - 2 * 2048 + 16,
        "no space freed: {full} -> {}",
        blocks(&path)
    );
    disk.write_zeroes(4096, 8192, false).expect("write zeroes");
    disk.write_zeroes(65536, 4096, true)
        .expect("write zeroes, unmap");
    disk.flush().expect("flush");
    let data = fs::read(&path).expect("read");
    let zero = |r: std::ops::Range<usize>| data[r].iter().all(|&b| b == 0);
    assert!(zero(1 << 20..3 << 20) && zero(4096..12288) && zero(65536..69632));
    assert!(data[..4096].iter().all(|&b| b == 0x99));
    assert!(data[12288..65536].iter().all(|&b| b == 0x99));
    assert!(data[3 << 20..].iter().all(|&b| b == 0x99));
}

/// Corrupted metadata (the refcount table and block, the L1 and L2 tables of an image QEMU
/// wrote: every value in them comes from the file) ends in an error or in data, never a
/// panic: open, read the whole disk, write and flush each corrupted image.
#[test]
fn qcow2_corrupt_metadata_never_panics() {
    if !have_qemu() {
        return;
    }
    let dir = TempDir::new().expect("tempdir");
    let made = dir.path().join("made.qcow2");
    // 4 KiB clusters: refcount table 0x1000, refcount block 0x2000, L1 0x3000, L2 0x4000.
    create(&made, "cluster_size=4k", "1M", &[]);
    qemu_io(
        &made,
        &[
            "write -P 1 0 64k",
            "write -P 2 512k 8k",
            "write -c -P 3 768k 4k",
        ],
    );
    let pristine = fs::read(&made).expect("read");
    let path = dir.path().join("corrupt.qcow2");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut opened, mut failed, mut refused_io) = (0, 0, 0);
    for _ in 0..300 {
        let mut bytes = pristine.clone();
        for _ in 0..1 + next() % 3 {
            // Whole 64-bit entries, so offsets and flags change together.
            let at = (0x1000 + next() % 0x4000) as usize & !7;
            let value = match next() % 4 {
                0 => next(),
                1 => next() & 0x00ff_ffff_ffff_fe00 | 1 << 63,
                2 => (next() % 64) << 12 | 1 << 63,
                _ => u64::MAX,
            };
            bytes[at..at + 8].copy_from_slice(&value.to_be_bytes());
        }
        fs::write(&path, &bytes).expect("write corrupt image");
        let Ok(mut disk) = open(&path, false) else {
            failed += 1;
            continue;
        };
        opened += 1;
        let mut buf = vec![0; 1 << 20];
        let results = [
            disk.read_at(0, &mut buf),
            disk.write_at(4096 * (next() % 256), &[9; 4096]),
            disk.write_at(500 << 10, &[8; 16384]),
            disk.flush(),
        ];
        if results.iter().any(Result::is_err) {
            refused_io += 1;
        }
    }
    eprintln!("{failed} refused at open, {refused_io} of {opened} opened refused an access");
    // Corruption is caught both when the tables are loaded and when an entry is used.
    assert!(
        failed > 0 && refused_io > 0,
        "{failed} {refused_io} {opened}"
    );
}

/// A loop device over a file, detached on drop.
struct Loop(PathBuf);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

#[test]
fn raw_block_device_takes_its_size_from_its_end() {
    let dir = TempDir::new().expect("tempdir");
    let backing = dir.path().join("loop.img");
    fs::write(&backing, vec![0x61; 3 << 20]).expect("write");
    let attached = Command::new("losetup")
        .args(["-f", "--show", s(&backing)])
        .output()
        .ok()
        .filter(|o| o.status.success());
    if !::tests::require(attached.is_some(), "root and a free loop device (losetup)") {
        return;
    }
    let stdout = attached.expect("checked").stdout;
    let device = Loop(PathBuf::from(String::from_utf8_lossy(&stdout).trim()));
    assert_eq!(
        inspect(&device.0).expect("inspect"),
        ImageInfo {
            format: ImageFormat::Raw,
            virtual_size: 3 << 20,
            backing_file: None
        }
    );
    {
        let mut disk = open(&device.0, false).expect("open");
        assert_eq!(disk.capacity(), 3 << 20);
        assert!(!disk.supports_discard(), "block devices offer no discard");
        disk.write_at(1 << 20, &[0x62; 4096]).expect("write");
        disk.flush().expect("flush");
    }
    drop(device);
    let data = fs::read(&backing).expect("read");
    assert!(data[1 << 20..(1 << 20) + 4096].iter().all(|&b| b == 0x62));
    assert!(data[..1 << 20].iter().all(|&b| b == 0x61));
}

#[test]
fn refuses_a_backing_chain_longer_than_the_limit() {
    if !have_qemu() {
        return;
    }
    let dir = TempDir::new().expect("tempdir");
    let image = |i: usize| dir.path().join(format!("{i}.qcow2"));
    create(&image(0), "cluster_size=64k", "1M", &[]);
    for i in 1..=MAX_CHAIN_LEN {
        create(
            &image(i),
            "cluster_size=64k",
            "1M",
            &["-b", s(&image(i - 1)), "-F", "qcow2"],
        );
    }
    let longest = image(MAX_CHAIN_LEN - 1);
    assert_eq!(
        inspect(&longest).expect("16 images").backing_file,
        Some(image(MAX_CHAIN_LEN - 2))
    );
    open(&longest, false).expect("open 16 images");
    let too_long = image(MAX_CHAIN_LEN);
    assert_eq!(
        refusal(&too_long),
        format!(
            "{}: its backing chain is longer than 16 images",
            too_long.display()
        )
    );
}
