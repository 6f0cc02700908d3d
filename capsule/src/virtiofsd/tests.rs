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
    let id = state::new_id();
    let daemons = Daemons::start(&plan, &id).expect("started");
    let dir = daemons
        .dir
        .as_ref()
        .expect("a launch directory")
        .dir
        .clone();
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
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn a_daemon_that_cannot_start_is_an_error_from_its_log_and_leaves_nothing() {
    if !can_run() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let missing = data.path().join("missing");
    let plan = plan_sharing(&[(data.path(), "/data", false), (&missing, "/gone", false)]);
    let id = state::new_id();
    let error = Daemons::start(&plan, &id)
        .expect_err("no such directory")
        .to_string();
    assert!(error.contains(&missing.display().to_string()), "{error}");
    assert!(error.contains("exited at start"), "{error}");
    assert!(!state::state_root().join(format!("{id}-fs")).exists());
    let left = ::tests::leftovers();
    assert!(
        !left
            .iter()
            .any(|l| l.contains("virtiofsd") && l.contains(&id)),
        "{left:?}"
    );
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
    let daemons = Daemons::start(&plan, "x").expect("nothing to start");
    assert!(daemons.shares().is_empty());
    assert!(daemons.dir.is_none());
}
