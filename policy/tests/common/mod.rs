//! What the policy tests share: fixed inputs and a way to see errors as the CLI prints them.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use plan::{Host, ImageFiles, Kvm};
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

/// The image's files as plain paths: the tests' images are trusted (the launcher's reader
/// stays inside the root; its own tests show that).
#[derive(Debug)]
pub struct PlainFiles;

impl ImageFiles for PlainFiles {
    fn read(&self, rootfs: &Path, file: &str) -> std::io::Result<String> {
        std::fs::read_to_string(rootfs.join(file.trim_start_matches('/')))
    }
}

/// `-- sh -c true` in the root filesystem `/`, which exists everywhere.
pub fn inputs(kvm: Kvm) -> Inputs {
    inputs_reading(kvm, Rc::new(PlainFiles))
}

/// [`inputs`] whose `user()` reads images with `image_files`.
pub fn inputs_reading(kvm: Kvm, image_files: Rc<dyn ImageFiles>) -> Inputs {
    Inputs {
        host: facts(kvm),
        workload: Workload {
            command: "sh".to_owned(),
            args: vec!["-c".to_owned(), "true".to_owned()],
            env: BTreeMap::new(),
            rootfs: Some("/".into()),
        },
        vars: BTreeMap::new(),
        image_files,
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
