//! The hardened container (issue 11, section 4): the strict seccomp profile, and root inside
//! a `hardened(host)` container mapped to an unprivileged host range. Each test also runs
//! the launch that must succeed where the hardened one fails, so it proves it can fail.

use tests::env_or_skip;

/// Namespace creation (`unshare`, `setns`) and the mount API are open under the default
/// profile once `CAP_SYS_ADMIN` is added (as `docker run --cap-add SYS_ADMIN` opens them);
/// the strict profile keeps them shut with `EPERM` whatever the capabilities.
#[test]
fn strict_seccomp_denies_namespaces_and_mounts_even_with_cap_sys_admin() {
    let env = env_or_skip!();
    let probe = [
        "sh",
        "-c",
        "unshare -m true; echo unshare=$?; \
         nsenter -t 1 -m true; echo nsenter=$?; \
         mount -t tmpfs none /tmp; echo mount=$?",
    ];
    let default = env.run(&["--cap-add", "SYS_ADMIN", "--seccomp", "default"], &probe);
    assert_eq!(default.code, 0, "{default:?}");
    assert_eq!(
        default.stdout.split_whitespace().collect::<Vec<_>>(),
        ["unshare=0", "nsenter=0", "mount=0"],
        "{default:?}"
    );

    let strict = env.run(&["--cap-add", "SYS_ADMIN", "--seccomp", "strict"], &probe);
    assert_eq!(strict.code, 0, "{strict:?}");
    assert_eq!(
        strict.stdout.split_whitespace().collect::<Vec<_>>(),
        ["unshare=1", "nsenter=1", "mount=1"],
        "{strict:?}"
    );
    // busybox prints strerror(EPERM) for unshare(2) and setns(2), and its own sentence for a
    // mount(2) that failed with EPERM.
    assert_eq!(
        strict.stderr.matches("Operation not permitted").count(),
        2,
        "{strict:?}"
    );
    assert!(
        strict.stderr.contains("mount: permission denied"),
        "{strict:?}"
    );
}

/// Root in a container from `hardened(host)` is an unprivileged host id: it cannot read a
/// root-only host file (owner 0, mode 0600) bound in, nor write a root-owned one, while root
/// in a plain container can do both. Their folder is bound by the policy itself, the way a
/// script gives a hardened workload its data, onto a folder of the image (the root is
/// read-only).
#[test]
fn root_in_a_hardened_container_cannot_act_as_host_root() {
    use std::os::unix::fs::PermissionsExt;

    let env = env_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    // The container's root must be able to reach the files: only their own modes stop it.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let owned = dir.path().join("owned");
    std::fs::write(&owned, "host\n").unwrap();
    std::fs::set_permissions(&owned, std::fs::Permissions::from_mode(0o644)).unwrap();
    let script = dir.path().join("hardened.rhai");
    std::fs::write(
        &script,
        "let p = plan(workload);\n\
         p.bind(vars.data, \"/home/user\");\n\
         p.hardened(host);\n\
         p\n",
    )
    .unwrap();
    let probe = "cd /home/user; cat secret; echo read=$?; echo container >> owned; echo write=$?; \
                 id -u; cat /proc/self/uid_map";

    let plain = env.run(
        &["-v", &format!("{}:/home/user", dir.path().display())],
        &["sh", "-c", probe],
    );
    assert_eq!(plain.code, 0, "{plain:?}");
    let words: Vec<&str> = plain.stdout.split_whitespace().collect();
    assert_eq!(
        words,
        ["s3cret", "read=0", "write=0", "0", "0", "0", "4294967295"],
        "root in a plain container is host root: {plain:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&owned).unwrap(),
        "host\ncontainer\n"
    );
    std::fs::write(&owned, "host\n").unwrap();

    let hardened = env.run_args([
        script.as_os_str(),
        "--rootfs".as_ref(),
        env.rootfs.as_os_str(),
        "--set".as_ref(),
        format!("data={}", dir.path().display()).as_ref(),
        "--".as_ref(),
        "sh".as_ref(),
        "-c".as_ref(),
        probe.as_ref(),
    ]);
    assert_eq!(hardened.code, 0, "{hardened:?}");
    let words: Vec<&str> = hardened.stdout.split_whitespace().collect();
    let (outcome, map) = words.split_at(words.len() - 3);
    assert_eq!(
        outcome,
        ["read=1", "write=1", "0"],
        "root inside, but neither read nor write: {hardened:?}"
    );
    assert_eq!(map[0], "0", "{hardened:?}");
    let host_id: u32 = map[1].parse().unwrap();
    assert!(
        host_id >= 65_536,
        "root inside is an unprivileged host id: {hardened:?}"
    );
    assert_eq!(map[2], "65536", "{hardened:?}");
    assert_eq!(
        hardened.stderr.matches("Permission denied").count(),
        2,
        "{hardened:?}"
    );
    assert_eq!(std::fs::read_to_string(&owned).unwrap(), "host\n");
}

/// A device node the image ships (an image unpacked by host root keeps them) opens in no
/// container: the root is `nodev` (a plain container's overlay, a hardened container's
/// idmapped bind of the host's file system), while the nodes of the container's own `/dev`
/// open, so the probe can tell the two apart.
#[test]
fn the_images_device_nodes_do_not_open() {
    let env = env_or_skip!();
    let image = env.copy_rootfs();
    let node = std::ffi::CString::new(format!("{}/null2", image.root().display())).unwrap();
    // SAFETY: `node` is a NUL-terminated path; the node is the host's /dev/null (1:3).
    let made = unsafe { libc::mknod(node.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
    assert_eq!(made, 0, "mknod: {}", std::io::Error::last_os_error());
    // SAFETY: as above; mknod's mode is narrowed by the umask.
    assert_eq!(unsafe { libc::chmod(node.as_ptr(), 0o666) }, 0);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("hardened.rhai");
    std::fs::write(&script, "let p = plan(workload);\np.hardened(host);\np\n").unwrap();
    let probe = "for d in /null2 /dev/null; do (echo x > $d) 2>/dev/null && echo $d opened || echo $d refused; done";

    let plain = env.run_on(&image.root(), &[], &["sh", "-c", probe]);
    assert_eq!(
        plain.stdout, "/null2 refused\n/dev/null opened\n",
        "{plain:?}"
    );

    let hardened = env.run_args([
        script.as_os_str(),
        "--rootfs".as_ref(),
        image.root().as_os_str(),
        "--".as_ref(),
        "sh".as_ref(),
        "-c".as_ref(),
        probe.as_ref(),
    ]);
    assert_eq!(
        hardened.stdout, "/null2 refused\n/dev/null opened\n",
        "{hardened:?}"
    );
}
