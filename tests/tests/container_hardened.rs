//! The hardened container (issue 11, section 4): the strict seccomp profile, and root inside
//! a `hardened(host)` container mapped to an unprivileged host range. Each test also runs
//! the launch that must succeed where the hardened one fails, so it proves it can fail.

use tests::env;

macro_rules! env_or_skip {
    () => {
        match env() {
            Some(env) => env,
            None => return,
        }
    };
}

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
