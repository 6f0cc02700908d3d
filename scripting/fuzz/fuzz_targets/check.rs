//! Random scripts into `capsule check`'s library entry point: whatever the text, the answer
//! is Plans or errors, never a panic, a hang past the engine's deadline, or a crash.
//!
//!   cargo xtask fuzz --seconds 60
//!
//! which installs cargo-fuzz if missing and runs, on the stable toolchain (no sanitizer:
//! AddressSanitizer needs nightly, and this target is safe Rust),
//!
//!   cd scripting/fuzz && cargo fuzz run check --sanitizer none --debug-assertions \
//!       corpus/check ../../examples -- -max_total_time=60 -timeout=10
//!
//! libFuzzer grows `corpus/check` (git-ignored) and reads the examples as seeds beside it; a
//! crashing input lands in `artifacts/check/`. `cargo xtask ci` runs it for 30 s.

#![no_main]

use std::collections::BTreeMap;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use scripting::policy::{self, HostFacts, Inputs, Kvm, Workload};

static INPUTS: LazyLock<Inputs> = LazyLock::new(|| Inputs {
    host: HostFacts {
        kvm: Kvm::Hardware,
        cgroups: "v2".to_owned(),
        cpus: 2,
        memory_total: 4 << 30,
        memory_free: 2 << 30,
        arch: "x86_64".to_owned(),
        kernel: "6.1.0".to_owned(),
        // Rootless: validation then consults no cgroup hierarchy of the fuzzing host.
        rootless: true,
        subids: None,
    },
    workload: Workload {
        command: "sh".to_owned(),
        args: vec!["-c".to_owned(), "true".to_owned()],
        env: BTreeMap::new(),
        rootfs: Some("/".into()),
    },
    vars: BTreeMap::from([("tenant".to_owned(), "acme".to_owned())]),
});

static HOST: LazyLock<scripting::Host> = LazyLock::new(|| INPUTS.host.validation_host());

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = policy::check_source("fuzz.rhai", text, &INPUTS, &HOST);
    }
});
