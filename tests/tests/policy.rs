//! `capsule run SCRIPT.rhai`: the container examples of `examples/` launched on this host,
//! and `capsule check`. Every launch is followed by a check that nothing was left behind.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Stdio;

use tests::{Launch, assert_nothing_left, env_or_skip};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

/// `capsule run examples/SCRIPT --rootfs <busybox> FLAGS -- CMD` with an Outcome file.
fn run_example(env: &tests::Env, script: &str, flags: &[&str], cmd: &[&str]) -> Launch {
    let mut args = vec![
        example(script).display().to_string(),
        "--rootfs".to_owned(),
        env.rootfs.display().to_string(),
    ];
    args.extend(flags.iter().map(|f| f.to_string()));
    env.run_raw(&args, cmd)
}

#[test]
fn hello_runs_the_command_in_a_container_named_by_the_policy() {
    let env = env_or_skip!();
    let launch = run_example(
        &env,
        "hello.rhai",
        &[],
        &["sh", "-c", "hostname; echo $GREETING; exit 3"],
    );
    assert_eq!(launch.code, 3, "{launch:?}");
    assert_eq!(launch.stdout, "hello\nhello from capsule\n");
    assert_eq!(launch.outcome["isolation"], "container");
    assert_eq!(launch.outcome["exitCode"], 3);
}

#[test]
fn untrusted_code_gets_a_microvm_or_a_hardened_container() {
    let env = env_or_skip!();
    if kvm_is_hardware() {
        // The microVM launch itself is exercised by the lab (tests/microvm.rs).
        return;
    }
    let probe = "cat /proc/self/status | grep CapEff; touch /x 2>&1; touch /tmp/x && echo tmp ok";
    let launch = run_example(&env, "untrusted.rhai", &[], &["sh", "-c", probe]);
    assert_eq!(launch.code, 0, "{launch:?}");
    assert!(
        launch.stdout.contains("CapEff:\t0000000000000000"),
        "{}",
        launch.stdout
    );
    assert!(
        launch.stdout.contains("Read-only file system"),
        "{}",
        launch.stdout
    );
    assert!(launch.stdout.contains("tmp ok"), "{}", launch.stdout);
}

#[test]
fn resources_sizes_the_container_from_the_host() {
    let env = env_or_skip!();
    let script = "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes";
    let launch = run_example(
        &env,
        "resources.rhai",
        &["--set", "memory=64M"],
        &["sh", "-c", script],
    );
    assert_eq!(launch.code, 0, "{launch:?}");
    assert_eq!(launch.stdout.trim(), (64u64 << 20).to_string());
    let refused = run_example(&env, "resources.rhai", &["--set", "memory=100T"], &["true"]);
    assert_eq!(refused.code, 125, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("examples/resources.rhai:10:5: this host has"),
        "{}",
        refused.stderr
    );
}

#[test]
fn a_group_launches_both_workloads_and_reports_each() {
    let env = env_or_skip!();
    both_group_members_ran(&run_example(&env, "group.rhai", &[], &[]));
}

/// examples/group.rhai's two workloads both ran and succeeded.
fn both_group_members_ran(launch: &Launch) {
    assert_eq!(launch.code, 0, "{launch:?}");
    let mut lines: Vec<&str> = launch.stdout.lines().collect();
    lines.sort();
    assert_eq!(lines, ["consumer: consumer", "producer: producer"]);
    let outcomes = launch.outcome.as_array().expect("an Outcome per Plan");
    assert_eq!(outcomes.len(), 2);
    assert!(outcomes.iter().all(|o| o["exitCode"] == 0), "{outcomes:?}");
}

/// `capsule plan examples/SCRIPT --rootfs <busybox> FLAGS -- CMD` saved to a file, then
/// `capsule run --plan FILE`: a saved launch runs as the script would.
fn run_saved_plan(env: &tests::Env, script: &str, flags: &[&str], cmd: &[&str]) -> Launch {
    let dir = tempfile::tempdir().expect("tempdir");
    let saved = env
        .command()
        .arg("plan")
        .arg(example(script))
        .arg("--rootfs")
        .arg(&env.rootfs)
        .args(flags)
        .arg("--")
        .args(cmd)
        .output()
        .expect("capsule runs");
    assert_eq!(saved.status.code(), Some(0), "{saved:?}");
    let plan = dir.path().join("plan.json");
    std::fs::write(&plan, &saved.stdout).expect("write the plan");
    env.run_args([OsStr::new("--plan"), plan.as_os_str()])
}

#[test]
fn in_order_runs_each_step_after_the_last_and_stops_at_a_failure() {
    let env = env_or_skip!();
    steps_run_in_order_and_stop_at_a_failure(|set| {
        run_example(&env, "steps.rhai", set, &["sh", "-c", "echo serving"])
    });
}

/// `capsule plan` of an `in_order` group, saved and run with `--plan`, still runs the steps
/// in order and stops at the first failure: were the order lost, the second step would start
/// beside the failing first one.
#[test]
fn a_saved_in_order_group_keeps_its_order() {
    let env = env_or_skip!();
    steps_run_in_order_and_stop_at_a_failure(|set| {
        run_saved_plan(&env, "steps.rhai", set, &["sh", "-c", "echo serving"])
    });
}

/// `launch` runs examples/steps.rhai with the given `--set` flags.
fn steps_run_in_order_and_stop_at_a_failure(launch: impl Fn(&[&str]) -> Launch) {
    let ok = launch(&[]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert_eq!(ok.stdout, "preparing\nserving\n");
    assert_eq!(ok.outcome.as_array().map(Vec::len), Some(2), "{ok:?}");
    let failed = launch(&["--set", "prepare=echo broken; exit 3"]);
    assert_eq!(failed.code, 3, "{failed:?}");
    assert_eq!(failed.stdout, "broken\n");
    let outcomes = failed
        .outcome
        .as_array()
        .expect("an Outcome per launched Plan");
    assert_eq!(
        outcomes.len(),
        1,
        "the second step must not start: {outcomes:?}"
    );
}

#[test]
fn a_saved_group_launches_both_workloads() {
    let env = env_or_skip!();
    both_group_members_ran(&run_saved_plan(&env, "group.rhai", &[], &[]));
}

#[test]
fn a_saved_group_with_an_invalid_plan_launches_nothing() {
    let env = env_or_skip!();
    let saved = env
        .command()
        .arg("plan")
        .arg(example("steps.rhai"))
        .arg("--rootfs")
        .arg(&env.rootfs)
        .args(["--", "true"])
        .output()
        .expect("capsule runs");
    assert_eq!(saved.status.code(), Some(0), "{saved:?}");
    let mut group: serde_json::Value = serde_json::from_slice(&saved.stdout).unwrap();
    group["inOrder"][1]["process"]["cwd"] = "relative".into();
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    std::fs::write(&plan, group.to_string()).unwrap();
    let output = env
        .command()
        .args(["run", "--plan"])
        .arg(&plan)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(125), "{output:?}");
    // The first step would have printed "preparing" had it been launched.
    assert_eq!(String::from_utf8_lossy(&output.stdout), "");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("plan 1 of the group") && stderr.contains("process.cwd"),
        "{stderr}"
    );
    assert_nothing_left();
}

#[test]
fn scripts_sharing_a_module_both_get_its_rules() {
    let env = env_or_skip!();
    let probe = "echo $ORG; grep CapEff /proc/self/status; cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max";
    let batch = run_example(&env, "batch.rhai", &[], &["sh", "-c", probe]);
    assert_eq!(batch.code, 0, "{batch:?}");
    assert!(batch.stdout.starts_with("example\n"), "{}", batch.stdout);
    assert!(batch.stdout.trim_end().ends_with("128"), "{}", batch.stdout);
    // The service is hardened: in its user namespace the kernel refuses the v1 pids
    // hierarchy of a hybrid host, so the limit shows by forking past it (sh exits 2).
    let forks = "echo $ORG; grep CapEff /proc/self/status; \
                 i=0; while [ $i -lt 200 ]; do sleep 1 & i=$((i+1)); done";
    let service = run_example(&env, "service.rhai", &[], &["sh", "-c", forks]);
    assert_eq!(service.code, 2, "{service:?}");
    assert!(
        service.stdout.starts_with("example\n"),
        "{}",
        service.stdout
    );
    assert!(
        service.stdout.contains("CapEff:\t0000000000000000"),
        "{}",
        service.stdout
    );
    assert!(service.stderr.contains("can't fork"), "{}", service.stderr);
}

#[test]
fn the_tenant_comes_from_set() {
    let env = env_or_skip!();
    let acme = run_example(
        &env,
        "tenant.rhai",
        &["--set", "tenant=acme"],
        &["sh", "-c", "echo $TENANT; hostname"],
    );
    assert_eq!(acme.code, 0, "{acme:?}");
    assert_eq!(acme.stdout, "acme\nacme\n");
    let unknown = run_example(
        &env,
        "tenant.rhai",
        &["--set", "tenant=umbrella"],
        &["true"],
    );
    assert_eq!(unknown.code, 125);
    assert!(
        unknown.stderr.contains("unknown tenant \"umbrella\""),
        "{}",
        unknown.stderr
    );
}

#[test]
fn check_exits_zero_or_prints_the_errors_with_their_place() {
    let env = env_or_skip!();
    let ok = env
        .command()
        .arg("check")
        .arg(example("hello.rhai"))
        .arg("--rootfs")
        .arg(&env.rootfs)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("job.rhai");
    std::fs::write(
        &script,
        "let p = plan(workload);\np.isolation(\"kata\");\np\n",
    )
    .unwrap();
    let kata = env
        .command()
        .arg("run")
        .arg(&script)
        .arg("--rootfs")
        .arg(&env.rootfs)
        .args(["--", "true"])
        .output()
        .unwrap();
    // Where the guest kernel boots, kata is checked as any isolation (tests/kata.rs).
    if !kvm_is_hardware() {
        assert_eq!(kata.status.code(), Some(125));
        let stderr = String::from_utf8_lossy(&kata.stderr);
        let expected = format!(
            "capsule: {}:2:3: isolation \"kata\" cannot boot the stock guest kernel here: ",
            script.display()
        );
        assert!(stderr.starts_with(&expected), "{stderr}");
        assert!(
            stderr.ends_with("    p.isolation(\"kata\");\n      ^\n"),
            "{stderr}"
        );
    }
    assert_nothing_left();
}

fn kvm_is_hardware() -> bool {
    let module = |name: &str| std::path::Path::new("/sys/module").join(name).exists();
    !module("kvm_pvm") && (module("kvm_intel") || module("kvm_amd"))
}

/// A saved group of two containers, `first` and `second`, each running `script` with `$NAME`
/// set to its name; returns the file's directory and path.
fn saved_group(env: &tests::Env, script: &str) -> (tempfile::TempDir, PathBuf) {
    let member = |name: &str| {
        let plan = env
            .command()
            .args(["plan", "--rootfs"])
            .arg(&env.rootfs)
            .args(["-e", &format!("NAME={name}"), "--", "sh", "-c", script])
            .output()
            .expect("capsule runs");
        assert_eq!(plan.status.code(), Some(0), "{plan:?}");
        serde_json::from_slice::<serde_json::Value>(&plan.stdout).expect("a Plan")
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("group.json");
    let group = serde_json::Value::Array(vec![member("first"), member("second")]);
    std::fs::write(&path, group.to_string()).expect("write the group");
    (dir, path)
}

/// The members of a group run at once in one capsule process: none reads capsule's stdin
/// (they would race for it, and one would hang on a terminal), while a single launch does with
/// `-i`, and without it reads an empty stdin, as `docker run`.
#[test]
fn a_group_s_members_read_no_stdin_a_single_launch_reads_capsule_s_with_i() {
    let env = env_or_skip!();
    let run_with_input = |args: &[&OsStr]| {
        let mut child = env
            .command()
            .arg("run")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("capsule runs");
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(b"typed at the terminal\n")
            .expect("write stdin");
        let output = child.wait_with_output().expect("capsule ends");
        assert_nothing_left();
        output
    };
    let (_dir, group) = saved_group(&env, "echo \"$NAME read [$(cat)]\"");
    let output = run_with_input(&[OsStr::new("--plan"), group.as_os_str()]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let mut lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    assert_eq!(lines, ["first read []", "second read []"]);
    let rootfs = env.rootfs.as_os_str();
    let single = run_with_input(&[
        OsStr::new("-i"),
        OsStr::new("--rootfs"),
        rootfs,
        OsStr::new("--"),
        OsStr::new("cat"),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&single.stdout),
        "typed at the terminal\n"
    );
    let without_i = run_with_input(&[
        OsStr::new("--rootfs"),
        rootfs,
        OsStr::new("--"),
        OsStr::new("cat"),
    ]);
    assert_eq!(without_i.status.code(), Some(0), "{without_i:?}");
    assert_eq!(String::from_utf8_lossy(&without_i.stdout), "");
}

/// SIGTERM to capsule reaches every member of a group it runs, each through its own
/// container's init, and each reports its own status.
#[test]
fn sigterm_to_capsule_reaches_every_member_of_a_group() {
    let env = env_or_skip!();
    let script =
        "trap 'echo $NAME stopped; exit 7' TERM; echo $NAME ready; while :; do sleep 0.1; done";
    let (dir, group) = saved_group(&env, script);
    let outcome = dir.path().join("outcome.json");
    let mut child = env
        .command()
        .arg("run")
        .arg("--outcome")
        .arg(&outcome)
        .arg("--plan")
        .arg(&group)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("capsule runs");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped"));
    let mut ready = Vec::new();
    while ready.len() < 2 {
        let mut line = String::new();
        use std::io::BufRead as _;
        assert!(
            stdout.read_line(&mut line).expect("read stdout") > 0,
            "capsule ended before both members were ready: {ready:?}"
        );
        ready.push(line);
    }
    // SAFETY: kill(2) on the pid of the child we just spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("read stdout");
    let status = child.wait().expect("capsule ends");
    assert_eq!(status.code(), Some(7), "{rest}");
    assert!(
        rest.contains("first stopped") && rest.contains("second stopped"),
        "{rest}"
    );
    let outcomes: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&outcome).expect("outcome written")).unwrap();
    let codes: Vec<_> = outcomes
        .as_array()
        .expect("an Outcome per member")
        .iter()
        .map(|o| o["exitCode"].clone())
        .collect();
    assert_eq!(codes, [7, 7]);
    assert_nothing_left();
}
