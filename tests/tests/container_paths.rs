//! Every path that comes from the image or the Plan stays inside the container's root: mount
//! destinations behind absolute or relative symlinks, `..`, symlinked parents and the working
//! directory. crun#111 is the report: crun created a file on the host through an image's
//! symlink. Each test gives the image a way out, checks the host is untouched and that the
//! container sees the mount where runc would put it (its securejoin resolves inside the root).

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use tests::{Env, Launch, RootfsCopy, env_or_skip};

/// A private copy of the busybox rootfs (so the image can be changed) next to a host
/// directory the image's symlinks point at, and a file to mount.
struct Image {
    copy: RootfsCopy,
}

impl Image {
    fn new(env: &Env) -> Self {
        let copy = env.copy_rootfs();
        std::fs::create_dir(copy.dir().join("host")).expect("host dir");
        std::fs::write(copy.dir().join("src-file"), "data\n").expect("source file");
        Image { copy }
    }

    fn root(&self) -> PathBuf {
        self.copy.root()
    }

    /// A host directory that nothing in a container may create anything in.
    fn host(&self) -> PathBuf {
        self.copy.dir().join("host")
    }

    fn src_file(&self) -> String {
        self.copy.dir().join("src-file").display().to_string()
    }

    fn link(&self, inside: &str, target: impl AsRef<Path>) {
        symlink(target, self.root().join(inside.trim_start_matches('/'))).expect("symlink");
    }

    fn run(&self, env: &Env, flags: &[&str], cmd: &[&str]) -> Launch {
        env.run_on(&self.root(), flags, cmd)
    }

    fn assert_host_untouched(&self) {
        let entries: Vec<_> = std::fs::read_dir(self.host())
            .expect("host dir")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(entries.is_empty(), "created on the host: {entries:?}");
    }
}

#[test]
fn destinations_behind_absolute_symlinks_are_mounted_inside_the_root() {
    let env = env_or_skip!();
    let image = Image::new(&env);
    image.link("/etc/evil-file", image.host().join("created-file"));
    image.link("/evil-dir", image.host());
    let volume = format!("{}:/etc/evil-file:ro", image.src_file());
    let bind = image.run(&env, &["-v", &volume], &["cat", "/etc/evil-file"]);
    assert_eq!(bind.stdout, "data\n", "{bind:?}");
    let tmpfs = image.run(
        &env,
        &["--tmpfs", "/evil-dir/sub"],
        &["stat", "-f", "-c", "%T", "/evil-dir/sub"],
    );
    assert_eq!(tmpfs.stdout.trim(), "tmpfs", "{tmpfs:?}");
    image.assert_host_untouched();
}

#[test]
fn relative_symlinks_and_dotdot_cannot_climb_out_of_the_root() {
    let env = env_or_skip!();
    let image = Image::new(&env);
    // Enough `..` to reach the host's / from the rootfs, then down to the host directory.
    let climb = format!("{}{}", "../".repeat(20), image.host().display());
    image.link("/climb", &climb);
    let tmpfs = image.run(
        &env,
        &["--tmpfs", "/climb/sub"],
        &["stat", "-f", "-c", "%T", "/climb/sub"],
    );
    assert_eq!(tmpfs.stdout.trim(), "tmpfs", "{tmpfs:?}");
    // `..` in the destination itself stops at the container's /.
    let dest = format!("/../../..{}/escaped", image.host().display());
    let volume = format!("{}:{dest}", image.src_file());
    let inside = format!("{}/escaped", image.host().display());
    let bind = image.run(&env, &["-v", &volume], &["cat", &inside]);
    assert_eq!(bind.stdout, "data\n", "{bind:?}");
    image.assert_host_untouched();
}

#[test]
fn a_symlinked_parent_directory_resolves_inside_the_root() {
    let env = env_or_skip!();
    let image = Image::new(&env);
    image.link("/conf", "/etc");
    let volume = format!("{}:/conf/extra", image.src_file());
    let launch = image.run(&env, &["-v", &volume], &["cat", "/etc/extra"]);
    assert_eq!(launch.stdout, "data\n", "{launch:?}");
    assert!(
        !image.root().join("etc/extra").exists(),
        "the mount point went to the overlay, not the image"
    );
}

#[test]
fn a_missing_working_directory_is_created_for_the_user_inside_the_root() {
    let env = env_or_skip!();
    let image = Image::new(&env);
    let launch = image.run(
        &env,
        &["-u", "1000:1000", "-w", "/work/dir"],
        &["sh", "-c", "pwd; stat -c '%u %g' .; touch mine"],
    );
    assert_eq!(launch.stdout, "/work/dir\n1000 1000\n", "{launch:?}");
    assert!(!image.root().join("work").exists(), "source rootfs changed");
    // Also on a read-only root, and through a symlink that points at the host.
    image.link("/evil-dir", image.host());
    let readonly = image.run(
        &env,
        &["--read-only", "-w", "/evil-dir/work"],
        &["pwd", "-P"],
    );
    // The link's target, but in the container's root.
    let inside = format!("{}/work", image.host().display());
    assert_eq!(readonly.stdout.trim(), inside, "{readonly:?}");
    image.assert_host_untouched();
}

#[test]
fn a_read_only_root_takes_new_mount_points_without_changing_the_source() {
    let env = env_or_skip!();
    let image = Image::new(&env);
    let group = format!("{}:/etc/group:ro", image.src_file());
    let file = image.run(&env, &["--read-only", "-v", &group], &["cat", "/etc/group"]);
    assert_eq!(file.stdout, "data\n", "{file:?}");
    let dir = format!("{}:/new/volume", image.host().display());
    let launch = image.run(
        &env,
        &["--read-only", "--tmpfs", "/new/tmp", "-v", &dir],
        &[
            "sh",
            "-c",
            "stat -f -c %T /new/tmp; ls -d /new/volume; touch /x || echo refused",
        ],
    );
    assert_eq!(
        launch.stdout, "tmpfs\n/new/volume\nrefused\n",
        "the root stays read-only: {launch:?}"
    );
    assert!(
        launch.stderr.contains("Read-only file system"),
        "{launch:?}"
    );
    assert!(!image.root().join("new").exists(), "source rootfs changed");
}

#[test]
fn read_only_volumes_are_read_only_all_the_way_down() {
    let env = env_or_skip!();
    let image = Image::new(&env);
    let source = image.host();
    let sub = source.join("sub");
    std::fs::create_dir(&sub).expect("sub");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&sub)
        .status()
        .expect("mount runs");
    assert!(mounted.success());
    let volume = format!("{}:/mnt:ro", source.display());
    let launch = image.run(
        &env,
        &["-v", &volume],
        &["sh", "-c", "touch /mnt/top; touch /mnt/sub/inner; true"],
    );
    let written: Vec<_> = std::fs::read_dir(&sub)
        .expect("sub")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    let _ = std::process::Command::new("umount").arg(&sub).status();
    assert_eq!(
        launch.stderr.matches("Read-only file system").count(),
        2,
        "{launch:?}"
    );
    assert!(
        written.is_empty(),
        "written through the submount: {written:?}"
    );
}

/// The launcher reads the image's `/etc/passwd` as host root, outside any namespace: a device
/// node there would be opened on the host (a watchdog arms on open; `/dev/zero` never ends and
/// fills the launcher's memory) and a FIFO would block it forever. Only a regular file is read.
#[test]
fn an_image_passwd_that_is_not_a_regular_file_is_refused() {
    let env = env_or_skip!();
    let image = env.copy_rootfs();
    let passwd = image.root().join("etc/passwd");
    std::fs::remove_file(&passwd).unwrap();
    let node = std::ffi::CString::new(passwd.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `node` is a NUL-terminated path; the node is the host's /dev/null (1:3), which
    // reads as an empty file, so the launch would go on were it opened.
    let made = unsafe { libc::mknod(node.as_ptr(), libc::S_IFCHR | 0o644, libc::makedev(1, 3)) };
    assert_eq!(made, 0, "mknod: {}", std::io::Error::last_os_error());
    let launch = env.run_on(&image.root(), &[], &["true"]);
    assert_eq!(launch.code, 125, "{launch:?}");
    assert!(
        launch.stderr.contains("/etc/passwd") && launch.stderr.contains("not a regular file"),
        "{launch:?}"
    );
}
