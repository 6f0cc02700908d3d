//! Random scripts into `capsule check`'s library entry point: whatever the text, the answer
//! is Plans or errors, never a panic, a hang past the engine's deadline, or a crash.
//!
//!   cargo xtask fuzz --seconds 60
//!
//! which installs cargo-fuzz if missing and runs, on the stable toolchain (no sanitizer:
//! AddressSanitizer needs nightly, and this target is safe Rust),
//!
//!   cd policy/fuzz && cargo fuzz run check --sanitizer none --debug-assertions \
//!       corpus/check ../../examples -- -max_total_time=60 -timeout=10
//!
//! libFuzzer grows `corpus/check` (git-ignored) and reads the examples as seeds beside it; a
//! crashing input lands in `artifacts/check/`. `cargo xtask ci` runs it for 30 s.

#![no_main]

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use libfuzzer_sys::fuzz_target;
use plan::{Host, ImageFiles, Kvm};
use policy::{Inputs, Workload};

/// The fuzz inputs name no image files to read.
#[derive(Debug)]
struct NoFiles;

impl ImageFiles for NoFiles {
    fn read(&self, _rootfs: &Path, _file: &str) -> std::io::Result<String> {
        Err(std::io::ErrorKind::NotFound.into())
    }
}

thread_local! {
    static INPUTS: Inputs = Inputs {
        host: Host {
            kvm: Kvm::Hardware,
            cgroups: "v2".to_owned(),
            cpus: 2,
            memory_total: 4 << 30,
            memory_free: 2 << 30,
            arch: "x86_64".to_owned(),
            kernel: "6.1.0".to_owned(),
            rootless: false,
            subids: None,
            nr_open: 1 << 20,
        },
        workload: Workload {
            command: "sh".to_owned(),
            args: vec!["-c".to_owned(), "true".to_owned()],
            env: BTreeMap::new(),
            rootfs: Some("/".into()),
        },
        vars: BTreeMap::from([("tenant".to_owned(), "acme".to_owned())]),
        image_files: Rc::new(NoFiles),
    };
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        // Validation is pure: the Plans are checked against the facts above, nothing of the
        // fuzzing host.
        INPUTS.with(|inputs| {
            let _ = policy::check_source("fuzz.rhai", text, inputs, &|plan| {
                let problems = plan::validate(plan, &inputs.host);
                if problems.is_empty() {
                    Ok(())
                } else {
                    Err(plan::Error::Invalid(problems))
                }
            });
        });
    }
});
