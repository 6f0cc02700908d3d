//! `docs/policy.md` is generated from the registered functions; this test fails when the
//! checked-in file is stale. `cargo xtask policy-doc` (or `UPDATE_DOCS=1` on this test)
//! rewrites it.

use std::path::Path;

#[test]
fn the_policy_reference_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/policy.md");
    let generated = policy::reference_markdown(ns_core::seccomp::STRICT_DENIED);
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &generated).expect("write docs/policy.md");
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == generated,
        "docs/policy.md is not what the registered functions generate; run `cargo xtask policy-doc`"
    );
}

#[test]
fn every_registered_function_is_documented() {
    let reference = policy::reference_markdown(ns_core::seccomp::STRICT_DENIED);
    for section in reference.split("\n### ").skip(1) {
        let (heading, body) = section.split_once('\n').unwrap_or((section, ""));
        assert!(
            body.trim().len() > 10,
            "{heading} has no description: give it a /// comment"
        );
    }
}
