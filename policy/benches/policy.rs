//! Evaluating each example of `examples/` to Plans, engine set-up included: what `capsule
//! run SCRIPT.rhai` spends before the launch. Goal: under 1 ms each.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use plan::Kvm;
use policy::{Inputs, Workload};

#[path = "../tests/common/mod.rs"]
mod common;

/// The tests' roomy hardware-KVM host, with a workload that prints.
fn inputs(vars: &[(&str, &str)]) -> Inputs {
    Inputs {
        host: common::facts(Kvm::Hardware),
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
        image_files: std::rc::Rc::new(common::PlainFiles),
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
