//! `capsule plan` of every example against fixed host facts, compared byte for byte with
//! the JSON (or, for a refusal, the error) under `tests/golden/`. `UPDATE_GOLDEN=1`
//! rewrites them; review the diff before committing it.

use std::path::{Path, PathBuf};
use std::process::Command;

struct Case {
    /// The golden file's name, without extension.
    name: &'static str,
    script: &'static str,
    host_facts: &'static str,
    set: &'static [&'static str],
}

const HARDWARE: &str = "host-hardware.json";
const SMALL: &str = "host-small.json";

const CASES: &[Case] = &[
    Case {
        name: "hello",
        script: "hello.rhai",
        host_facts: HARDWARE,
        set: &[],
    },
    Case {
        name: "untrusted.hardware",
        script: "untrusted.rhai",
        host_facts: HARDWARE,
        set: &[],
    },
    Case {
        name: "untrusted.pvm",
        script: "untrusted.rhai",
        host_facts: SMALL,
        set: &[],
    },
    Case {
        name: "kata.hardware",
        script: "kata.rhai",
        host_facts: HARDWARE,
        set: &[],
    },
    Case {
        name: "kata.pvm",
        script: "kata.rhai",
        host_facts: SMALL,
        set: &[],
    },
    Case {
        name: "resources",
        script: "resources.rhai",
        host_facts: HARDWARE,
        set: &["memory=1G"],
    },
    Case {
        name: "resources.refused",
        script: "resources.rhai",
        host_facts: SMALL,
        set: &[],
    },
    Case {
        name: "group",
        script: "group.rhai",
        host_facts: HARDWARE,
        set: &[],
    },
    Case {
        name: "steps",
        script: "steps.rhai",
        host_facts: HARDWARE,
        set: &[],
    },
    Case {
        name: "batch",
        script: "batch.rhai",
        host_facts: HARDWARE,
        set: &[],
    },
    Case {
        name: "service",
        script: "service.rhai",
        host_facts: HARDWARE,
        set: &[],
    },
    Case {
        name: "tenant.acme",
        script: "tenant.rhai",
        host_facts: HARDWARE,
        set: &["tenant=acme"],
    },
    Case {
        name: "tenant.initech",
        script: "tenant.rhai",
        host_facts: SMALL,
        set: &["tenant=initech"],
    },
    Case {
        name: "disks",
        script: "disks.rhai",
        host_facts: HARDWARE,
        set: &[],
    },
    Case {
        name: "tenant.missing",
        script: "tenant.rhai",
        host_facts: HARDWARE,
        set: &[],
    },
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `capsule plan examples/SCRIPT --host-facts ... --rootfs /srv/busybox -- sh -c 'echo hello'`
/// from the workspace root: stdout when it succeeds, else stderr.
fn plan(case: &Case) -> (bool, Vec<u8>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_capsule"));
    cmd.current_dir(workspace())
        .arg("plan")
        .arg(format!("examples/{}", case.script))
        .arg("--host-facts")
        .arg(format!("capsule/tests/golden/{}", case.host_facts))
        .args(["--rootfs", "/srv/busybox"]);
    for pair in case.set {
        cmd.args(["--set", pair]);
    }
    let output = cmd
        .args(["--", "sh", "-c", "echo hello"])
        .output()
        .expect("capsule runs");
    if output.status.success() {
        (true, output.stdout)
    } else {
        assert_eq!(output.status.code(), Some(125), "{}: {output:?}", case.name);
        (false, output.stderr)
    }
}

#[test]
fn examples_plan_to_their_golden_json() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut stale = Vec::new();
    for case in CASES {
        let (ok, bytes) = plan(case);
        let extension = if ok { "json" } else { "stderr" };
        let golden = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(format!("{}.{extension}", case.name));
        if update {
            std::fs::write(&golden, &bytes).expect("write the golden file");
        } else if std::fs::read(&golden).ok().as_deref() != Some(bytes.as_slice()) {
            stale.push(format!(
                "{}:\n{}",
                golden.display(),
                String::from_utf8_lossy(&bytes)
            ));
        }
    }
    assert!(
        stale.is_empty(),
        "output differs from the golden files (UPDATE_GOLDEN=1 rewrites them):\n{}",
        stale.join("\n")
    );
}

#[test]
fn the_same_inputs_give_the_same_bytes() {
    for case in CASES {
        assert_eq!(plan(case), plan(case), "{}", case.name);
    }
}

/// The launch order is part of `capsule plan`'s output, not only of the golden bytes: an
/// `in_order` group is `{"inOrder": [...]}` in script order, a group launched together a
/// plain array, one Plan an object.
#[test]
fn plan_output_keeps_the_group_s_launch_order() {
    let json = |name: &str| -> serde_json::Value {
        let case = CASES.iter().find(|c| c.name == name).expect("a case");
        let (ok, bytes) = plan(case);
        assert!(ok, "{name}: {}", String::from_utf8_lossy(&bytes));
        serde_json::from_slice(&bytes).expect("JSON")
    };
    let steps = json("steps");
    let members = steps["inOrder"]
        .as_array()
        .unwrap_or_else(|| panic!("an in_order group prints as {{\"inOrder\": [...]}}: {steps}"));
    let hostnames: Vec<_> = members.iter().map(|p| p["hostname"].clone()).collect();
    assert_eq!(hostnames, ["prepare", "main"]);
    assert_eq!(steps.as_object().map(|o| o.len()), Some(1), "{steps}");
    assert!(json("group").is_array());
    assert!(json("hello").get("isolation").is_some());
}
