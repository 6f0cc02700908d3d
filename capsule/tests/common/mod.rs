//! What the launcher's policy tests share: the policy tests' fixed facts, inputs read with
//! the launcher's image reader, and the errors of checking a script as `capsule check` does.

#![allow(dead_code)]

use std::rc::Rc;

use capsule::{InRoot, Launcher};
use plan::{Host, Kvm};
use policy::Inputs;

// The policy crate's fixed facts and error lines; this file adds the launcher's reader and
// checks.
#[path = "../../../policy/tests/common/mod.rs"]
mod policy_common;

pub use policy_common::{facts, first_lines};

/// `-- sh -c true` in the root filesystem `/`, images read by the launcher's reader.
pub fn inputs(kvm: Kvm) -> Inputs {
    policy_common::inputs_reading(kvm, Rc::new(InRoot))
}

/// A host to validate against; no cgroup hierarchy is consulted when `rootless`.
pub fn host(kvm: Kvm, rootless: bool) -> Host {
    Host {
        rootless,
        ..facts(kvm)
    }
}

/// The first line (`file:line:col: message`) of each error of evaluating and validating
/// `script` against `host` with a launcher on a host without cgroups; empty when it is valid.
pub fn errors(script: &str, inputs: &Inputs, host: &Host) -> Vec<String> {
    let launcher = Launcher::with_cgroups(None);
    match policy::check_source("job.rhai", script, inputs, &|plan| {
        launcher.check(plan, host)
    }) {
        Ok(_) => Vec::new(),
        Err(e) => first_lines(&e),
    }
}
