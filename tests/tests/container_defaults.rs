//! docker's and podman's defaults for the container process, beyond mounts: the default
//! environment (`HOME`, `HOSTNAME`), users and groups, `--ulimit` spellings of unlimited, the
//! swap limit that `--memory` implies, and capabilities added for a non-root user. Each test
//! asserts the value docker (or, where it says so, podman) gives, and every launch is followed
//! by the harness's check that nothing was left behind.

use std::path::PathBuf;

use tests::{Env, Launch, RootfsCopy, env_or_skip};

/// A private, writable copy of the busybox rootfs with its own `/etc/passwd` and
/// `/etc/group`, as the case scripts make them.
struct Image {
    copy: RootfsCopy,
}

impl Image {
    fn new(env: &Env, passwd: &str, group: &str) -> Image {
        let image = Image {
            copy: env.copy_rootfs(),
        };
        std::fs::write(image.path().join("etc/passwd"), passwd).expect("write passwd");
        std::fs::write(image.path().join("etc/group"), group).expect("write group");
        image
    }

    fn path(&self) -> PathBuf {
        self.copy.root()
    }

    /// `capsule run --rootfs <this image> FLAGS -- CMD`.
    fn launch(&self, env: &Env, flags: &[&str], cmd: &[&str]) -> Launch {
        env.run_on(&self.path(), flags, cmd)
    }

    /// [`Image::launch`]'s stdout, trimmed, after checking the launch succeeded.
    fn run(&self, env: &Env, flags: &[&str], cmd: &[&str]) -> String {
        let launch = self.launch(env, flags, cmd);
        assert_eq!(launch.code, 0, "{flags:?} {cmd:?}: {launch:?}");
        launch.stdout.trim().to_owned()
    }
}

/// `sh -c SCRIPT` in the busybox rootfs with `flags`: its trimmed stdout, after checking
/// the launch succeeded.
fn busybox_sh(env: &Env, flags: &[&str], script: &str) -> String {
    let launch = env.run(flags, &["sh", "-c", script]);
    assert_eq!(launch.code, 0, "{flags:?}: {launch:?}");
    launch.stdout.trim().to_owned()
}

/// Checks that a launch was refused before it started (docker's 125) with `message`.
fn assert_refused(launch: &Launch, message: &str) {
    assert_eq!(launch.code, 125, "{launch:?}");
    assert!(launch.stderr.contains(message), "{}", launch.stderr);
}

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n";
const GROUP: &str = "root:x:0:\nwheel:x:10:user\naudio:x:29:user\nnogroup:x:65534:\nuser:x:1000:\n";

/// Runs `sh -c SCRIPT` in `image` and returns its trimmed stdout.
fn sh(env: &Env, image: &Image, flags: &[&str], script: &str) -> String {
    image.run(env, flags, &["sh", "-c", script])
}

#[test]
fn home_comes_from_the_image_s_passwd_entry_else_slash() {
    let env = env_or_skip!();
    let image = Image::new(&env, PASSWD, GROUP);
    let home = |flags: &[&str]| sh(&env, &image, flags, "echo \"${HOME-<unset>}\"");
    assert_eq!(home(&[]), "/root");
    assert_eq!(home(&["-u", "user"]), "/home/user");
    assert_eq!(home(&["-u", "1000:1000"]), "/home/user");
    assert_eq!(home(&["-u", "4242"]), "/");
    assert_eq!(home(&["-u", "user", "-e", "HOME=/custom"]), "/custom");
}

#[test]
fn the_default_environment_is_docker_s() {
    let env = env_or_skip!();
    let image = Image::new(&env, PASSWD, GROUP);
    // docker run --hostname box busybox env: PATH, HOSTNAME, HOME and nothing of the caller.
    let got = sh(&env, &image, &["--hostname", "box"], "env | sort");
    assert_eq!(
        got,
        "HOME=/root\nHOSTNAME=box\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nPWD=/\nSHLVL=1"
    );
    // Without --hostname the hostname is the launch's id, and HOSTNAME names it too.
    let got = sh(
        &env,
        &image,
        &[],
        "[ \"$HOSTNAME\" = \"$(hostname)\" ] && echo same",
    );
    assert_eq!(got, "same");
    let got = sh(&env, &image, &["-e", "HOSTNAME=mine"], "echo $HOSTNAME");
    assert_eq!(got, "mine");
}

#[test]
fn an_image_s_passwd_symlinked_to_a_host_file_is_read_inside_the_root() {
    let env = env_or_skip!();
    let image = Image::new(&env, PASSWD, GROUP);
    // A host file outside the root that an image must not be able to read.
    let host = tempfile::tempdir().expect("tempdir");
    let host_passwd = host.path().join("passwd");
    std::fs::write(
        &host_passwd,
        "root:x:0:0::/host-secret:/bin/sh\nintruder:x:7:7::/x:/\n",
    )
    .expect("write host file");
    let passwd = image.path().join("etc/passwd");
    std::fs::remove_file(&passwd).expect("remove passwd");
    std::os::unix::fs::symlink(&host_passwd, &passwd).expect("symlink");
    // Inside the root the link's target does not exist: no entry, so HOME is "/".
    assert_eq!(sh(&env, &image, &[], "echo $HOME"), "/");
    assert_refused(
        &image.launch(&env, &["-u", "intruder"], &["true"]),
        "unknown user \"intruder\"",
    );
    // The image's own copy at the link's target is the one read.
    let inside = image
        .path()
        .join(host_passwd.strip_prefix("/").expect("absolute"));
    std::fs::create_dir_all(inside.parent().expect("parent")).expect("mkdir");
    std::fs::write(&inside, "root:x:0:0::/from-image:/bin/sh\n").expect("write");
    assert_eq!(sh(&env, &image, &[], "echo $HOME"), "/from-image");
}

#[test]
fn a_group_in_user_drops_the_supplementary_groups_and_group_add_adds() {
    let env = env_or_skip!();
    let image = Image::new(&env, PASSWD, GROUP);
    // `id -G`'s first number is the gid; /proc's Groups: line lists the supplementary ones.
    let ids = |flags: &[&str]| {
        sh(
            &env,
            &image,
            flags,
            "echo $(id -u) $(id -g) [$(grep ^Groups: /proc/self/status | cut -f2 | xargs)]",
        )
    };
    // The implicit form keeps the image's memberships (wheel 10, audio 29), as runc does.
    assert_eq!(ids(&["-u", "user"]), "1000 1000 [10 29]");
    assert_eq!(ids(&["-u", "1000"]), "1000 1000 [10 29]");
    // A group in the spec is the only group: docker/cli#3058, moby/moby#9360.
    assert_eq!(ids(&["-u", "user:user"]), "1000 1000 []");
    assert_eq!(ids(&["-u", "user:nogroup"]), "1000 65534 []");
    assert_eq!(ids(&["-u", "1000:1000"]), "1000 1000 []");
    // --group-add adds, by name or gid, to either form.
    assert_eq!(
        ids(&["-u", "user:user", "--group-add", "audio"]),
        "1000 1000 [29]"
    );
    assert_eq!(
        ids(&["-u", "user", "--group-add", "4242", "--group-add", "wheel"]),
        "1000 1000 [10 29 4242]"
    );
    assert_refused(
        &image.launch(&env, &["--group-add", "nosuchgroup"], &["true"]),
        "--group-add: unknown group \"nosuchgroup\"",
    );
}

#[test]
fn every_spelling_of_unlimited_works_in_ulimit() {
    let env = env_or_skip!();
    // `ulimit -X; ulimit -H -X` for one resource, as the shell prints them.
    let limits = |ulimit: &str, flag: &str| {
        let script = format!("echo $(ulimit -{flag}) $(ulimit -H -{flag})");
        busybox_sh(&env, &["--ulimit", ulimit], &script)
    };
    // moby/moby#39125: -1 alone and as the hard limit (docker's go-units, podman).
    assert_eq!(limits("core=-1", "c"), "unlimited unlimited");
    assert_eq!(limits("stack=8388608:-1", "s"), "8192 unlimited");
    // go-units also takes "infinity"; the shell's own word is "unlimited".
    assert_eq!(limits("cpu=infinity", "t"), "unlimited unlimited");
    assert_eq!(
        limits("fsize=unlimited:unlimited", "f"),
        "unlimited unlimited"
    );
    assert_eq!(limits("core=0:unlimited", "c"), "0 unlimited");
    // What the kernel cannot give is refused before launch, saying why.
    assert_refused(
        &env.run(&["--ulimit", "nofile=-1"], &["true"]),
        "the kernel caps open files at fs.nr_open",
    );
    assert_refused(
        &env.run(&["--ulimit", "core=-1:5"], &["true"]),
        "soft limit unlimited is above hard limit 5",
    );
}

/// The container's own swap limit as its cgroup shows it: v1's memory plus swap
/// (`memsw <bytes>`) or v2's swap alone (`swap <bytes>`).
const SWAP_LIMIT: &str = "if [ -e /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes ]; \
    then echo memsw $(cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes); \
    else echo swap $(cat /sys/fs/cgroup/memory.swap.max); fi";

#[test]
fn memory_alone_limits_memory_plus_swap_to_twice_the_memory() {
    let env = env_or_skip!();
    let swap = |flags: &[&str]| busybox_sh(&env, flags, SWAP_LIMIT);
    // docker run --memory 64M: memory plus swap is 128M (v2: 64M of swap).
    let got = swap(&["--memory", "64M"]);
    assert!(
        got == format!("memsw {}", 128 << 20) || got == format!("swap {}", 64 << 20),
        "{got}"
    );
    // An explicit --memory-swap wins; -1 leaves swap unlimited (v1 shows the kernel's
    // "unlimited", a page-aligned i64::MAX).
    let got = swap(&["--memory", "64M", "--memory-swap", "96M"]);
    assert!(
        got == format!("memsw {}", 96 << 20) || got == format!("swap {}", 32 << 20),
        "{got}"
    );
    let got = swap(&["--memory", "64M", "--memory-swap", "-1"]);
    assert!(
        got == "memsw 9223372036854771712" || got == "swap max",
        "{got}"
    );
    // The Plan carries the value, so `capsule plan` shows what a launch applies.
    let plan = env
        .command()
        .args(["plan", "--rootfs"])
        .arg(&env.rootfs)
        .args(["--memory", "64M", "--", "true"])
        .output()
        .expect("capsule plan runs");
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("a Plan");
    assert_eq!(plan["resources"]["memorySwap"], 128 << 20, "{plan}");
}

/// Binds TCP port 80 (below the netns's ip_unprivileged_port_start, 1024) and prints
/// `bound` or `refused`, then the capability sets of the shell.
const BIND_80: &str = "nc -l -p 80 2>/dev/null & sleep 0.3; \
    if kill $! 2>/dev/null; then echo bound; else echo refused; fi; \
    grep -E '^Cap(Inh|Prm|Eff|Amb):' /proc/self/status | cut -f2 | xargs";

#[test]
fn cap_add_reaches_a_non_root_user_through_the_ambient_set_as_podman() {
    let env = env_or_skip!();
    let run = |flags: &[&str]| busybox_sh(&env, flags, BIND_80);
    // CAP_NET_BIND_SERVICE is bit 10: inheritable, permitted, effective and ambient.
    assert_eq!(
        run(&["-u", "1000:1000", "--cap-add", "NET_BIND_SERVICE"]),
        "bound\n0000000000000400 0000000000000400 0000000000000400 0000000000000400"
    );
    // Without --cap-add a non-root user keeps nothing across exec, as with docker and podman.
    assert_eq!(
        run(&["-u", "1000:1000"]),
        "refused\n0000000000000000 0000000000000000 0000000000000000 0000000000000000"
    );
    // Root keeps the default set (which has NET_BIND_SERVICE) and gets no ambient set.
    assert_eq!(
        run(&["--cap-add", "NET_ADMIN"]),
        "bound\n0000000000000000 00000000a80435fb 00000000a80435fb 0000000000000000"
    );
}
