//! The daemons' life: started with their sockets, stopped on drop and on a failed start with
//! nothing left (no process, no socket, no directory), a missing binary named with its fix.

use super::*;

fn plan_sharing(dirs: &[(&Path, &str, bool)]) -> Plan {
    let mut plan = Plan::container("/", vec!["true".into()]);
    plan.isolation = plan::Isolation::Microvm;
    plan.mounts = dirs
        .iter()
        .map(|(source, destination, readonly)| plan::Mount {
            destination: destination.into(),
            kind: MountType::Bind,
            source: Some(source.to_path_buf()),
            size: None,
            readonly: *readonly,
        })
        .collect();
    plan
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
        !status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'))
    })
}

fn can_run() -> bool {
    ::tests::require(
        find().is_ok(),
        "virtiofsd (cargo xtask virtiofsd, or $CAPSULE_VIRTIOFSD)",
    ) && ::tests::require(
        nix::unistd::geteuid().is_root(),
        "root (virtiofsd's namespace sandbox)",
    )
}

#[test]
fn daemons_serve_their_sockets_and_leave_nothing_when_dropped() {
    if !can_run() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let input = tempfile::tempdir().unwrap();
    let plan = plan_sharing(&[(data.path(), "/data", false), (input.path(), "/in", true)]);
    let launch = tempfile::tempdir().unwrap();
    let dir = launch.path().to_owned();
    let daemons = Daemons::start(&plan, &dir, None).expect("started");
    let pids: Vec<u32> = daemons.daemons.iter().map(|d| d.child.id()).collect();
    assert_eq!(
        daemons.shares(),
        [
            guest_init::Share {
                tag: "share0".into(),
                destination: "/data".into(),
                readonly: false
            },
            guest_init::Share {
                tag: "share1".into(),
                destination: "/in".into(),
                readonly: true
            },
        ]
    );
    for daemon in &daemons.daemons {
        assert!(
            daemon.socket.starts_with(&dir),
            "{}",
            daemon.socket.display()
        );
        assert!(daemon.socket.exists());
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", daemon.child.id())).unwrap();
        let readonly = cmdline.split(|&b| b == 0).any(|arg| arg == b"--readonly");
        assert_eq!(readonly, daemon.share.readonly, "--readonly only for :ro");
    }
    // The devices connect and negotiate with them.
    assert_eq!(daemons.devices().expect("devices").len(), 2);
    drop(daemons);
    for pid in pids {
        assert!(!alive(pid), "virtiofsd {pid} still runs");
    }
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(
        left.is_empty(),
        "{left:?} left behind in the launch directory"
    );
}

#[test]
fn a_daemon_that_cannot_start_is_an_error_from_its_log_and_leaves_nothing() {
    if !can_run() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let missing = data.path().join("missing");
    let plan = plan_sharing(&[(data.path(), "/data", false), (&missing, "/gone", false)]);
    let launch = tempfile::tempdir().unwrap();
    let error = Daemons::start(&plan, launch.path(), None)
        .expect_err("no such directory")
        .to_string();
    assert!(error.contains(&missing.display().to_string()), "{error}");
    assert!(error.contains("exited at start"), "{error}");
    let files: Vec<_> = std::fs::read_dir(launch.path()).unwrap().collect();
    assert!(files.is_empty(), "{files:?} left behind");
    // The daemon that did start (the first share's) was stopped again.
    let socket_dir = launch.path().to_string_lossy().into_owned();
    let running: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| std::fs::read(entry.ok()?.path().join("cmdline")).ok())
        .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
        .filter(|cmdline| cmdline.contains("virtiofsd") && cmdline.contains(&socket_dir))
        .collect();
    assert!(running.is_empty(), "{running:?}");
}

#[test]
fn the_binary_is_looked_for_in_order_and_a_missing_one_names_the_fix() {
    let home = tempfile::tempdir().unwrap();
    let on_path = tempfile::tempdir().unwrap();
    let env = |vars: Vec<(&'static str, OsString)>| {
        move |name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        }
    };
    let path = on_path.path().as_os_str().to_owned();
    let lookup = env(vec![("HOME", home.path().into()), ("PATH", path.clone())]);
    let error = find_in(&lookup).expect_err("none yet").to_string();
    assert!(error.contains("cargo xtask virtiofsd"), "{error}");
    std::fs::write(on_path.path().join("virtiofsd"), "").unwrap();
    assert_eq!(find_in(&lookup).unwrap(), on_path.path().join("virtiofsd"));
    let tools = home.path().join(".cache/capsule/tools/bin");
    std::fs::create_dir_all(&tools).unwrap();
    std::fs::write(tools.join("virtiofsd"), "").unwrap();
    assert_eq!(
        find_in(&lookup).unwrap(),
        tools.join("virtiofsd"),
        "xtask's before PATH"
    );
    let explicit = env(vec![
        ("HOME", home.path().into()),
        ("PATH", path),
        ("CAPSULE_VIRTIOFSD", "/nonexistent/virtiofsd".into()),
    ]);
    assert!(
        matches!(find_in(&explicit), Err(VirtiofsdError::Missing)),
        "an explicit binary that is not there is not replaced by another"
    );
}

#[test]
fn a_plan_without_binds_starts_nothing() {
    let mut plan = plan_sharing(&[]);
    plan.mounts.push(plan::Mount {
        destination: "/scratch".into(),
        kind: MountType::Tmpfs,
        source: None,
        size: None,
        readonly: false,
    });
    let launch = tempfile::tempdir().unwrap();
    let daemons = Daemons::start(&plan, launch.path(), None).expect("nothing to start");
    assert!(daemons.shares().is_empty());
    assert_eq!(std::fs::read_dir(launch.path()).unwrap().count(), 0);
}

#[test]
fn a_missing_virtiofsd_is_one_problem_whichever_shares_need_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = || Err(VirtiofsdError::Missing);
    let fields = |plan: &Plan| -> Vec<String> {
        problems_with(plan, &missing)
            .iter()
            .map(|p| p.field.clone())
            .collect()
    };
    let mut plan = plan_sharing(&[(dir.path(), "/data", false)]);
    assert_eq!(fields(&plan), ["mounts"]);
    plan.vm = Some(plan::VmSpec {
        root_via: RootVia::Virtiofs,
        ..Default::default()
    });
    assert_eq!(
        fields(&plan),
        ["mounts"],
        "the bind mounts and the root, once"
    );
    plan.mounts.clear();
    assert_eq!(fields(&plan), ["vm.rootVia"]);
    plan.vm = None;
    assert!(fields(&plan).is_empty(), "no share needs virtiofsd");
}
