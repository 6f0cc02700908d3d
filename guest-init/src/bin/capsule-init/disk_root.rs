//! A root filesystem on a disk: the ext4 file system on the root device (or a host directory
//! over virtio-fs: `GuestRoot::Share`), mounted read-only, under an overlay whose upper layer is a tmpfs in guest RAM, so the command can write and
//! the image never changes (the container's semantics); a read-only root is the disk alone.
//!
//! The steps are data ([`steps`]), so what is mounted where is tested without a guest; [`run`]
//! carries them out.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::mount::{MsFlags, mount};
use nix::sys::stat::Mode;

use crate::Failure;
use crate::setup;

/// How long the init waits for the root device after loading the block driver: the driver
/// probes the virtio-mmio devices as it loads, so the device is there at once on a real
/// machine; the nested lab's emulated CPU is a hundred times slower.
pub const DEVICE_WAIT: Duration = Duration::from_secs(10);

/// The initramfs directory under which the layers are mounted.
pub const LAYERS: &str = "/capsule";
/// Where the disk's file system is mounted (read-only), under [`LAYERS`].
const LOWER: &str = "lower";
/// The tmpfs holding the overlay's upper and work directories.
const RW: &str = "rw";
const UPPER: &str = "rw/upper";
const WORK: &str = "rw/work";
/// The overlay: the root the command sees.
const MERGED: &str = "root";

/// One step of entering a disk root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Wait up to [`DEVICE_WAIT`] for the device node to appear.
    WaitFor(String),
    /// Create a directory (an existing one is fine).
    Mkdir(String),
    /// mount(2).
    Mount {
        source: String,
        target: String,
        fstype: &'static str,
        flags: MsFlags,
        data: String,
    },
    /// Give the second directory the first's mode and owner: the overlay's root takes them
    /// from its upper directory, which would otherwise be the tmpfs's root-owned 0755.
    CopyModeAndOwner { from: String, to: String },
    /// Make the directory the root ([`setup::switch_root`]).
    SwitchRoot(String),
}

/// What the root's read-only lower layer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lower<'a> {
    /// The ext4 file system on this block device.
    Disk(&'a str),
    /// The host directory of the virtio-fs device with this tag.
    Share(&'a str),
}

/// The steps that make `lower` the root, its layers mounted under `layers` ([`LAYERS`] in
/// the guest): read-only alone when `readonly`, else under a writable overlay in RAM.
pub fn steps(layers: &str, lower: Lower<'_>, readonly: bool) -> Vec<Step> {
    let at = |dir: &str| format!("{layers}/{dir}");
    let (source, fstype, wait) = match lower {
        Lower::Disk(device) => (device, "ext4", true),
        // The virtiofs driver registers its tags as it loads: nothing to wait for.
        Lower::Share(tag) => (tag, "virtiofs", false),
    };
    let mut steps = Vec::new();
    if wait {
        steps.push(Step::WaitFor(source.to_owned()));
    }
    steps.extend([
        Step::Mkdir(at(LOWER)),
        Step::Mount {
            source: source.to_owned(),
            target: at(LOWER),
            fstype,
            flags: MsFlags::MS_RDONLY,
            data: String::new(),
        },
    ]);
    if readonly {
        steps.push(Step::SwitchRoot(at(LOWER)));
        return steps;
    }
    steps.extend([
        Step::Mkdir(at(RW)),
        Step::Mount {
            source: "tmpfs".into(),
            target: at(RW),
            fstype: "tmpfs",
            flags: MsFlags::empty(),
            data: "mode=0755".into(),
        },
        Step::Mkdir(at(UPPER)),
        Step::Mkdir(at(WORK)),
        Step::CopyModeAndOwner {
            from: at(LOWER),
            to: at(UPPER),
        },
        Step::Mkdir(at(MERGED)),
        Step::Mount {
            source: "overlay".into(),
            target: at(MERGED),
            fstype: "overlay",
            flags: MsFlags::empty(),
            // index=on: copying up one name of a hard-linked file copies up the inode, so the
            // other names see the write (without it the link is split, the fault the root
            // disk exists to fix). The lower ext4 has file handles, the tmpfs upper xattrs;
            // virtiofs has no file handles, and overlayfs would refuse index=on over it.
            data: format!(
                "lowerdir={},upperdir={},workdir={}{}",
                at(LOWER),
                at(UPPER),
                at(WORK),
                if fstype == "ext4" { ",index=on" } else { "" }
            ),
        },
        Step::SwitchRoot(at(MERGED)),
    ]);
    steps
}

/// Carries out `steps` in order; the first that fails ends them, with a line naming it.
pub fn run(steps: &[Step]) -> Result<(), Failure> {
    for step in steps {
        match step {
            Step::WaitFor(device) => wait_for(device, DEVICE_WAIT)?,
            Step::Mkdir(dir) => setup::make_dir("creating", dir)?,
            Step::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => mount(
                Some(source.as_str()),
                target.as_str(),
                Some(*fstype),
                *flags,
                Some(data.as_str()),
            )
            .map_err(|e| {
                Failure::new(format_args!("mounting {source} ({fstype}) on"), target, e)
            })?,
            Step::CopyModeAndOwner { from, to } => copy_mode_and_owner(from, to)?,
            Step::SwitchRoot(dir) => setup::switch_root(dir)?,
        }
    }
    Ok(())
}

/// Polls for `device` for up to `timeout`: its driver creates it while the init waits.
pub fn wait_for(device: &str, timeout: Duration) -> Result<(), Failure> {
    let start = Instant::now();
    while !Path::new(device).exists() {
        if start.elapsed() > timeout {
            return Err(Failure::message(format!(
                "the root device {device} did not appear within {:?}: the VMM attached no disk, or its driver (virtio_mmio, virtio_blk) did not load",
                timeout
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

fn copy_mode_and_owner(from: &str, to: &str) -> Result<(), Failure> {
    let st = nix::sys::stat::stat(from).map_err(|e| Failure::new("reading", from, e))?;
    nix::unistd::chown(
        to,
        Some(nix::unistd::Uid::from_raw(st.st_uid)),
        Some(nix::unistd::Gid::from_raw(st.st_gid)),
    )
    .map_err(|e| Failure::new("setting the owner of", to, e))?;
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        to,
        Mode::from_bits_truncate(st.st_mode),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .map_err(|e| Failure::new("setting the mode of", to, e))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    use super::*;

    fn mounts(steps: &[Step]) -> Vec<(&str, &str, &str, bool, &str)> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Mount {
                    source,
                    target,
                    fstype,
                    flags,
                    data,
                } => Some((
                    source.as_str(),
                    target.as_str(),
                    *fstype,
                    flags.contains(MsFlags::MS_RDONLY),
                    data.as_str(),
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_writable_root_is_an_overlay_over_the_read_only_disk() {
        let steps = steps(LAYERS, Lower::Disk("/dev/vda"), false);
        assert_eq!(steps[0], Step::WaitFor("/dev/vda".into()));
        assert_eq!(
            mounts(&steps),
            [
                ("/dev/vda", "/capsule/lower", "ext4", true, ""),
                ("tmpfs", "/capsule/rw", "tmpfs", false, "mode=0755"),
                (
                    "overlay",
                    "/capsule/root",
                    "overlay",
                    false,
                    "lowerdir=/capsule/lower,upperdir=/capsule/rw/upper,workdir=/capsule/rw/work,index=on"
                ),
            ]
        );
        assert_eq!(
            steps.last(),
            Some(&Step::SwitchRoot("/capsule/root".into()))
        );
        // Every directory is made before it is mounted on or used, and the upper directory
        // takes the disk root's mode and owner before the overlay shows it.
        let at = |wanted: &Step| steps.iter().position(|s| s == wanted).unwrap();
        for dir in ["/capsule/lower", "/capsule/rw", "/capsule/root"] {
            let mounted = steps
                .iter()
                .position(|s| matches!(s, Step::Mount { target, .. } if target == dir))
                .unwrap();
            assert!(at(&Step::Mkdir(dir.into())) < mounted, "{dir}");
        }
        let copy = at(&Step::CopyModeAndOwner {
            from: "/capsule/lower".into(),
            to: "/capsule/rw/upper".into(),
        });
        assert!(at(&Step::Mkdir("/capsule/rw/upper".into())) < copy);
        assert!(copy < at(&Step::Mkdir("/capsule/root".into())));
    }

    #[test]
    fn a_root_on_a_share_is_the_same_overlay_over_virtiofs_without_index() {
        let steps = steps(LAYERS, Lower::Share("root"), false);
        assert!(!steps.iter().any(|s| matches!(s, Step::WaitFor(_))));
        assert_eq!(
            mounts(&steps),
            [
                ("root", "/capsule/lower", "virtiofs", true, ""),
                ("tmpfs", "/capsule/rw", "tmpfs", false, "mode=0755"),
                (
                    "overlay",
                    "/capsule/root",
                    "overlay",
                    false,
                    "lowerdir=/capsule/lower,upperdir=/capsule/rw/upper,workdir=/capsule/rw/work"
                ),
            ]
        );
        assert_eq!(
            steps.last(),
            Some(&Step::SwitchRoot("/capsule/root".into()))
        );
    }

    #[test]
    fn a_read_only_root_is_the_disk_alone() {
        assert_eq!(
            steps(LAYERS, Lower::Disk("/dev/vda"), true),
            [
                Step::WaitFor("/dev/vda".into()),
                Step::Mkdir("/capsule/lower".into()),
                Step::Mount {
                    source: "/dev/vda".into(),
                    target: "/capsule/lower".into(),
                    fstype: "ext4",
                    flags: MsFlags::MS_RDONLY,
                    data: String::new(),
                },
                Step::SwitchRoot("/capsule/lower".into()),
            ]
        );
    }

    #[test]
    fn the_upper_directory_takes_the_disk_root_s_mode_and_owner() {
        let tmp = tempfile::tempdir().unwrap();
        let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
        std::fs::create_dir(&lower).unwrap();
        std::fs::create_dir(&upper).unwrap();
        std::fs::set_permissions(&lower, std::fs::Permissions::from_mode(0o1750)).unwrap();
        copy_mode_and_owner(lower.to_str().unwrap(), upper.to_str().unwrap()).unwrap();
        let mode = std::fs::metadata(&upper).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o1750);
    }

    #[test]
    fn a_device_that_never_appears_is_a_clear_error() {
        let start = Instant::now();
        let wait = Duration::from_millis(50);
        let err = wait_for("/dev/capsule-no-such-disk", wait)
            .unwrap_err()
            .to_string();
        assert!(start.elapsed() >= wait);
        assert!(
            err.starts_with("the root device /dev/capsule-no-such-disk did not appear within 50ms"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        wait_for(dir.path().to_str().unwrap(), wait).unwrap();
    }

    /// The steps on the host's kernel, but the last (the switch, which would take the test's
    /// root): an ext4 image with a file, on a read-only loop device, mounted in a private
    /// mount namespace; the command's writes land in the overlay, the image stays as it was.
    /// Needs root, a loop device and mkfs.ext4; the part in the namespace is
    /// [`steps_in_a_mount_namespace`], run by this test's binary under `unshare --mount`.
    #[test]
    fn the_overlay_takes_the_writes_and_the_image_stays_unchanged() {
        if !nix::unistd::geteuid().is_root() || !Path::new("/dev/loop-control").exists() {
            eprintln!("skipped: needs root and loop devices");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let tree = tmp.path().join("tree");
        std::fs::create_dir(&tree).unwrap();
        std::fs::write(tree.join("hello"), b"from the image\n").unwrap();
        let image = tmp.path().join("root.ext4");
        let mkfs = Command::new("mkfs.ext4")
            .args(["-q", "-d"])
            .arg(&tree)
            .arg(&image)
            .arg("8M")
            .status()
            .unwrap();
        assert!(mkfs.success());
        // mkfs.ext4 -d leaves the root's mode at 0755 (capsule's image builder copies it).
        let debugfs = Command::new("debugfs")
            .args(["-w", "-R", "sif / mode 040750"])
            .arg(&image)
            .status()
            .unwrap();
        assert!(debugfs.success());
        let before = std::fs::read(&image).unwrap();
        let losetup = Command::new("losetup")
            .args(["--find", "--show", "--read-only"])
            .arg(&image)
            .output()
            .unwrap();
        assert!(losetup.status.success(), "{losetup:?}");
        let device = String::from_utf8(losetup.stdout).unwrap().trim().to_owned();
        let layers = tmp.path().join("layers");
        std::fs::create_dir(&layers).unwrap();
        let inner = Command::new("unshare")
            .args(["--mount", "--propagation", "private"])
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "disk_root::tests::steps_in_a_mount_namespace",
                "--ignored",
                "--nocapture",
            ])
            .env("CAPSULE_TEST_DEVICE", &device)
            .env("CAPSULE_TEST_LAYERS", &layers)
            .output()
            .unwrap();
        let _ = Command::new("losetup").arg("-d").arg(&device).status();
        let out = String::from_utf8_lossy(&inner.stdout);
        assert!(
            inner.status.success(),
            "{out}\n{}",
            String::from_utf8_lossy(&inner.stderr)
        );
        assert!(out.contains("1 passed"), "the inner test ran: {out}");
        assert!(
            std::fs::read(&image).unwrap() == before,
            "the image changed"
        );
    }

    /// The inside of [`the_overlay_takes_the_writes_and_the_image_stays_unchanged`].
    #[test]
    #[ignore = "run by the_overlay_takes_the_writes_and_the_image_stays_unchanged"]
    fn steps_in_a_mount_namespace() {
        let device = std::env::var("CAPSULE_TEST_DEVICE").unwrap();
        let layers = std::env::var("CAPSULE_TEST_LAYERS").unwrap();
        let mut all = steps(&layers, Lower::Disk(&device), false);
        assert_eq!(all.pop(), Some(Step::SwitchRoot(format!("{layers}/root"))));
        run(&all).unwrap();
        let root = Path::new(&layers).join("root");
        assert_eq!(
            std::fs::read(root.join("hello")).unwrap(),
            b"from the image\n"
        );
        std::fs::write(root.join("hello"), b"changed\n").unwrap();
        std::fs::write(root.join("new"), b"new\n").unwrap();
        assert_eq!(std::fs::read(root.join("hello")).unwrap(), b"changed\n");
        let lower = Path::new(&layers).join("lower");
        assert_eq!(
            std::fs::read(lower.join("hello")).unwrap(),
            b"from the image\n"
        );
        assert!(!lower.join("new").exists());
        let mode = std::fs::metadata(&root).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o750, "the root keeps the image's mode");

        // Read-only: the disk alone, and writes fail.
        let ro = Path::new(&layers).join("ro");
        let mut all = steps(ro.to_str().unwrap(), Lower::Disk(&device), true);
        all.pop();
        std::fs::create_dir(&ro).unwrap();
        run(&all).unwrap();
        let err = std::fs::write(ro.join("lower/x"), b"").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    }
}
