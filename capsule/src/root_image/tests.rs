//! The root image against real e2fsprogs: each test builds images from a small tree and reads
//! them back with `debugfs` (and, as root, through the kernel with a read-only loop mount in
//! a private mount namespace).

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use super::*;

/// A cache that trusts a tree changed a moment ago: the tests' trees are all new (a ctime
/// cannot be set back), and [`a_tree_changed_just_now_gets_a_one_off_image`] tests the wait.
fn cache_in(dir: &Path) -> ImageCache {
    ImageCache {
        settled: Duration::ZERO,
        ..ImageCache::new(dir)
    }
}

/// Sets the times of `path` (not following a symlink).
pub(super) fn set_times(path: &Path, atime: (i64, i64), mtime: (i64, i64)) {
    let spec = |(s, ns): (i64, i64)| nix::sys::time::TimeSpec::new(s, ns);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &spec(atime),
        &spec(mtime),
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

/// `debugfs -R COMMAND IMAGE`'s output.
fn debugfs(image: &Path, command: &str) -> String {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(command)
        .arg(image)
        .output()
        .expect("debugfs runs (e2fsprogs is installed)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn small_tree() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("bin")).unwrap();
    std::fs::write(tmp.path().join("bin/sh"), b"#!/bin/true\n").unwrap();
    tmp
}

#[test]
fn an_image_is_built_once_and_reused_while_the_tree_is_unchanged() {
    let tree = small_tree();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = cache_in(&cache_dir.path().join("images"));
    let first = cache.root_disk(tree.path()).unwrap();
    assert!(first.built());
    assert!(first.path().starts_with(cache_dir.path()));
    let inode = std::fs::metadata(first.path()).unwrap().ino();
    let again = cache.root_disk(tree.path()).unwrap();
    assert!(!again.built(), "an unchanged tree reuses its image");
    assert_eq!(again.path(), first.path());
    assert_eq!(std::fs::metadata(again.path()).unwrap().ino(), inode);
    let mode = std::fs::metadata(cache_dir.path().join("images"))
        .unwrap()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o700,
        "images copy trees that may hold secrets"
    );
    // Dropping a cached disk keeps the image.
    drop(again);
    assert!(first.path().exists());
}

#[test]
fn a_changed_mtime_or_a_new_file_builds_a_new_image() {
    let tree = small_tree();
    let cache = tempfile::tempdir().unwrap();
    let cache = cache_in(cache.path());
    let first = cache.root_disk(tree.path()).unwrap();

    let sh = tree.path().join("bin/sh");
    set_times(&sh, (1_000, 0), (1_000, 1));
    let touched = cache.root_disk(tree.path()).unwrap();
    assert!(touched.built(), "a new mtime is a change");
    assert_ne!(touched.path(), first.path());

    std::fs::write(tree.path().join("bin/new"), b"").unwrap();
    let added = cache.root_disk(tree.path()).unwrap();
    assert!(added.built(), "a new file is a change");
    assert!(debugfs(added.path(), "ls /bin").contains("new"));
    assert!(!debugfs(first.path(), "ls /bin").contains("new"));
}

#[test]
fn a_tree_changed_just_now_gets_a_one_off_image() {
    let tree = small_tree();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = ImageCache::new(cache_dir.path());
    let disk = cache.root_disk(tree.path()).unwrap();
    assert!(disk.built());
    let path = disk.path().to_owned();
    assert!(path.exists());
    drop(disk);
    assert!(!path.exists(), "a one-off image is removed with its disk");
    let cached: Vec<_> = std::fs::read_dir(cache_dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".ext4"))
        .collect();
    assert!(cached.is_empty(), "{cached:?}");
}

#[test]
fn old_images_are_pruned_and_recent_ones_kept() {
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = cache_in(cache_dir.path());
    let old = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    let mut stale = Vec::new();
    for i in 0..KEEP + 2 {
        let image = cache_dir.path().join(format!("{i:064x}-1.ext4"));
        std::fs::write(&image, b"").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&image)
            .unwrap()
            .set_modified(old + Duration::from_secs(i as u64))
            .unwrap();
        stale.push(image);
    }
    let crashed = cache_dir.path().join(".abc-1.tmp-1-0");
    std::fs::write(&crashed, b"").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&crashed)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let tree = small_tree();
    let fresh = cache.root_disk(tree.path()).unwrap();
    // The new image and the KEEP - 1 most recent old ones stay.
    let kept: Vec<bool> = stale.iter().map(|p| p.exists()).collect();
    assert_eq!(kept, [false, false, false, true, true, true]);
    assert!(fresh.path().exists());
    assert!(!crashed.exists(), "a crashed build's leftover goes");
}

/// Every kind of entry a root holds, read back from the image with debugfs: the file types,
/// hard links, owners and modes, xattrs, a non-UTF-8 name, nanosecond and post-2038 times.
#[test]
fn the_image_carries_every_kind_of_file_the_tree_has() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let r = |name: &str| root.join(name);
    std::fs::write(r("file"), b"hello").unwrap();
    std::fs::hard_link(r("file"), r("link")).unwrap();
    nix::unistd::mkfifo(&r("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o640)).unwrap();
    std::os::unix::net::UnixListener::bind(r("socket")).unwrap();
    std::fs::write(r("setuid"), b"").unwrap();
    std::fs::set_permissions(r("setuid"), PermissionsExt::from_mode(0o4755)).unwrap();
    std::fs::create_dir(r("shared")).unwrap();
    std::fs::set_permissions(r("shared"), PermissionsExt::from_mode(0o3775)).unwrap();
    symlink("file", r("symlink")).unwrap();
    symlink("x".repeat(100), r("long-symlink")).unwrap();
    let odd = std::ffi::OsStr::from_bytes(b"odd\xffname \"quoted\"");
    std::fs::write(root.join(odd), b"").unwrap();
    xattr(&r("file"), "user.note", b"capsule");
    set_times(&r("file"), (1_600_000_000, 5), (1_700_000_000, 123_456_789));
    std::fs::write(r("future"), b"").unwrap();
    set_times(
        &r("future"),
        (4_102_444_800, 1),
        (4_102_444_800, 500_000_000),
    );
    std::fs::set_permissions(&root, PermissionsExt::from_mode(0o750)).unwrap();
    let root_owned = nix::unistd::geteuid().is_root();
    if root_owned {
        nix::sys::stat::mknod(
            &r("null"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .unwrap();
        nix::sys::stat::mknod(
            &r("loop"),
            nix::sys::stat::SFlag::S_IFBLK,
            nix::sys::stat::Mode::from_bits_truncate(0o660),
            nix::sys::stat::makedev(7, 0),
        )
        .unwrap();
        nix::unistd::chown(&r("file"), Some(1234.into()), Some(4321.into())).unwrap();
        xattr(&r("file"), "trusted.level", b"7");
        // cap_net_raw+ep, as setcap writes it (VFS_CAP_REVISION_2).
        let cap = [
            0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        xattr(&r("setuid"), "security.capability", &cap);
    }
    set_times(&root, (1_650_000_000, 7), (1_650_000_000, 8));

    let tree = scan(&root).unwrap();
    let image = tmp.path().join("root.ext4");
    build::build(&tree, &image).unwrap();
    let stat = |path: &str| debugfs(&image, &format!("stat \"{path}\""));

    let (file, link) = (stat("/file"), stat("/link"));
    assert!(file.contains("Links: 2"), "{file}");
    assert_eq!(
        inode_number(&file),
        inode_number(&link),
        "hard links share an inode"
    );
    assert!(file.contains("Size: 5"), "{file}");
    assert!(
        file.contains(" mtime: 0x6553f100:1d6f3454"),
        "mtime ns: {file}"
    );
    assert!(
        file.contains(" atime: 0x5f5e1000:00000014"),
        "atime ns: {file}"
    );
    assert!(debugfs(&image, "ea_list /file").contains("user.note (7) = \"capsule\""));
    assert!(stat("/fifo").contains("Type: FIFO    Mode:  0640"));
    assert!(stat("/socket").contains("Type: socket"));
    assert!(stat("/setuid").contains("Mode:  04755"));
    assert!(stat("/shared").contains("Type: directory    Mode:  03775"));
    assert!(stat("/symlink").contains("Fast link dest: \"file\""));
    let long = stat("/long-symlink");
    assert!(
        long.contains("Type: symlink") && long.contains("Size: 100"),
        "{long}"
    );
    assert!(debugfs(&image, "ls /").contains("odd\\xffname \"quoted\""));
    // 2100-01-01 is epoch 1 in the extra field.
    assert!(
        stat("/future").contains(" mtime: 0xf4865700:77359401"),
        "{}",
        stat("/future")
    );
    let top = stat("/");
    assert!(
        top.contains("Mode:  0750"),
        "the root keeps its mode: {top}"
    );
    assert!(top.contains(" mtime: 0x62590080:00000020"), "{top}");
    let listing = debugfs(&image, "ls /");
    assert!(
        !listing.contains("lost+found"),
        "mkfs's lost+found is gone: {listing}"
    );
    for dir in ["dev", "proc", "sys"] {
        assert!(listing.contains(dir), "mount point {dir} added: {listing}");
    }
    if root_owned {
        let file = stat("/file");
        assert!(file.contains("User:  1234   Group:  4321"), "{file}");
        let null = stat("/null");
        assert!(null.contains("Type: character special"), "{null}");
        assert!(null.contains("Device major/minor number: 01:03"), "{null}");
        let loop_ = stat("/loop");
        assert!(loop_.contains("Type: block special"), "{loop_}");
        assert!(
            loop_.contains("Device major/minor number: 07:00"),
            "{loop_}"
        );
        assert!(debugfs(&image, "ea_list /file").contains("trusted.level (1) = \"7\""));
        assert!(debugfs(&image, "ea_list /setuid").contains("security.capability (20)"));
    }
    let fsck = Command::new("e2fsck")
        .args(["-fn"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(fsck.status.success(), "e2fsck: {fsck:?}");
}

#[test]
fn the_image_has_ext4_s_features_but_the_journal_whatever_the_host_s_mke2fs_conf() {
    let tree = small_tree();
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("root.ext4");
    build::build(&scan(tree.path()).unwrap(), &image).unwrap();
    let out = Command::new("dumpe2fs")
        .arg("-h")
        .arg(&image)
        .output()
        .unwrap();
    let header = String::from_utf8_lossy(&out.stdout);
    let features = header
        .lines()
        .find_map(|l| l.strip_prefix("Filesystem features:"))
        .expect("a features line");
    let mut features: Vec<&str> = features.split_whitespace().collect();
    features.sort_unstable();
    assert_eq!(
        features,
        [
            "64bit",
            "dir_index",
            "dir_nlink",
            "ext_attr",
            "extent",
            "extra_isize",
            "filetype",
            "flex_bg",
            "huge_file",
            "large_file",
            "sparse_super",
            "uninit_bg"
        ]
    );
    assert!(header.contains("Inode size:\t          256"), "{header}");
    assert!(
        header.contains("Block size:               4096"),
        "{header}"
    );
    assert!(header.contains("Reserved block count:     0"), "{header}");
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers, ["root.ext4"], "the tools' files are removed");
}

/// The kernel's view of an image: `stat` of each entry through a read-only loop mount in a
/// private mount namespace, compared with the tree's. Needs root and a loop device.
#[test]
fn the_kernel_reads_back_what_the_tree_holds() {
    if !nix::unistd::geteuid().is_root() || !Path::new("/dev/loop-control").exists() {
        eprintln!("skipped: needs root and loop devices");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("a"), b"data").unwrap();
    std::fs::hard_link(root.join("a"), root.join("b")).unwrap();
    nix::unistd::mkfifo(
        &root.join("p"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    set_times(
        &root.join("a"),
        (1_000_000_000, 111),
        (4_102_444_800, 999_999_999),
    );
    xattr(&root.join("a"), "user.k", b"v");
    let tree = scan(&root).unwrap();
    let image = tmp.path().join("root.ext4");
    build::build(&tree, &image).unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let script = format!(
        "mount -o loop,ro -t ext4 {image} {mnt} && cd {mnt} && stat -c '%n %i %h %f %u %g %X.%x %Y.%y' a b p && getfattr -n user.k --only-values a",
        image = image.display(),
        mnt = mnt.display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<&str> = text.lines().collect();
    let field = |line: &str, i: usize| line.split(' ').nth(i).unwrap_or_default().to_owned();
    assert_eq!(field(lines[0], 1), field(lines[1], 1), "one inode: {text}");
    assert_eq!(field(lines[0], 2), "2", "{text}");
    assert_eq!(field(lines[2], 3), "1180", "a fifo, 0600: {text}");
    assert!(lines[0].contains("2100-01-01 00:00:00.999999999"), "{text}");
    assert!(lines[0].contains("2001-09-09 01:46:40.000000111"), "{text}");
    assert_eq!(lines[3], "v");
}

#[test]
fn a_mount_point_inside_the_tree_is_refused() {
    // /dev is a devtmpfs whose /dev/pts and /dev/shm are file systems of their own.
    let dev = std::fs::metadata("/dev").unwrap().dev();
    if std::fs::metadata("/dev/pts")
        .map(|m| m.dev())
        .unwrap_or(dev)
        == dev
    {
        eprintln!("skipped: /dev/pts is no mount point here");
        return;
    }
    let err = scan(Path::new("/dev")).unwrap_err();
    assert!(matches!(err, Error::OtherFileSystem { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("is a mount point inside the root filesystem /dev")
    );
}

#[test]
fn a_plan_s_image_file_is_its_own_root_disk() {
    let image = tempfile::NamedTempFile::new().unwrap();
    let mut plan = Plan::container(image.path(), vec!["true".into()]);
    plan.isolation = plan::Isolation::Microvm;
    let disk = for_plan(&plan).unwrap();
    assert_eq!(disk.path(), image.path());
    assert!(!disk.built());
    drop(disk);
    assert!(image.path().exists(), "the Plan's image is never removed");
}

fn inode_number(stat: &str) -> &str {
    stat.split_whitespace().nth(1).unwrap_or_default()
}

fn xattr(path: &Path, name: &str, value: &[u8]) {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let c_name = std::ffi::CString::new(name).unwrap();
    // SAFETY: both strings are NUL-terminated and live across the call; value's pointer and
    // length describe one slice.
    let rc = unsafe {
        libc::lsetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "setxattr {name}: {}",
        std::io::Error::last_os_error()
    );
}

use std::os::unix::ffi::OsStrExt;
