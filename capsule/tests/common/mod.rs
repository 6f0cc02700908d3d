//! What the launcher's policy tests share: fixed inputs, and a way to see errors as the CLI
//! prints them.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::rc::Rc;

use capsule::{InRoot, Launcher};
use plan::{Host, Kvm};
use policy::{Inputs, PolicyError, Workload};

/// Facts of a roomy host, the same on every machine.
pub fn facts(kvm: Kvm) -> Host {
    Host {
        kvm,
        cgroups: "v2".to_owned(),
        cpus: 8,
        memory_total: 16 << 30,
        memory_free: 8 << 30,
        arch: "x86_64".to_owned(),
        kernel: "6.1.0".to_owned(),
        rootless: false,
        subids: None,
        nr_open: 1 << 20,
    }
}

/// `-- sh -c true` in the root filesystem `/`, which exists everywhere.
pub fn inputs(kvm: Kvm) -> Inputs {
    Inputs {
        host: facts(kvm),
        workload: Workload {
            command: "sh".to_owned(),
            args: vec!["-c".to_owned(), "true".to_owned()],
            env: BTreeMap::new(),
            rootfs: Some("/".into()),
        },
        vars: BTreeMap::new(),
        image_files: Rc::new(InRoot),
    }
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

pub fn first_lines(e: &PolicyError) -> Vec<String> {
    match e.diagnostics() {
        [] => vec![e.to_string()],
        list => list
            .iter()
            .map(|d| d.to_string().lines().next().unwrap_or_default().to_owned())
            .collect(),
    }
}
