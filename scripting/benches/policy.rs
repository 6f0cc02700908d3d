//! Evaluating each example of `examples/` to Plans, engine set-up included: what `capsule
//! run SCRIPT.rhai` spends before the launch. Goal: under 1 ms each.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use scripting::policy::{self, HostFacts, Inputs, Kvm, Workload};

fn inputs(vars: &[(&str, &str)]) -> Inputs {
    Inputs {
        host: HostFacts {
            kvm: Kvm::Hardware,
            cgroups: "v2".to_owned(),
            cpus: 8,
            memory_total: 16 << 30,
            memory_free: 8 << 30,
            arch: "x86_64".to_owned(),
            kernel: "6.1.0".to_owned(),
            rootless: false,
        },
        workload: Workload {
            command: "sh".to_owned(),
            args: vec!["-c".to_owned(), "echo hello".to_owned()],
            env: BTreeMap::new(),
            rootfs: Some(PathBuf::from("/srv/busybox")),
        },
        vars: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn examples(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let cases: [(&str, &[(&str, &str)]); 7] = [
        ("hello", &[]),
        ("untrusted", &[]),
        ("resources", &[("memory", "1G")]),
        ("group", &[]),
        ("batch", &[]),
        ("service", &[]),
        ("tenant", &[("tenant", "initech")]),
    ];
    for (name, vars) in cases {
        let script = dir.join(format!("{name}.rhai"));
        let inputs = inputs(vars);
        policy::evaluate(&script, &inputs).expect("the example evaluates");
        c.bench_function(&format!("evaluate {name}.rhai"), |b| {
            b.iter(|| policy::evaluate(black_box(&script), black_box(&inputs)).expect("evaluates"))
        });
    }
}

criterion_group!(benches, examples);
criterion_main!(benches);
