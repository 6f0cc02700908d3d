//! `import` reads modules from the script's own folder and nothing else.

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;

use common::{first_lines, inputs};
use plan::Kvm;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The errors of the script `main.rhai` in `dir`, with its folder shown as `dir`.
fn errors_of(dir: &Path, main: &str) -> Vec<String> {
    let script = dir.join("policies/main.rhai");
    write(&script, main);
    match policy::evaluate(&script, &inputs(Kvm::Hardware)) {
        Ok(_) => Vec::new(),
        Err(e) => first_lines(&e)
            .into_iter()
            .map(|l| l.replace(&dir.display().to_string(), "DIR"))
            .collect(),
    }
}

#[test]
fn modules_beside_the_script_and_below_it_import() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("policies/rules.rhai"),
        "fn cap(p) { p.pids(7); p }",
    );
    write(
        &dir.path().join("policies/lib/more.rhai"),
        "fn name() { \"lib\" }",
    );
    let main = "import \"rules\" as rules;\nimport \"lib/more\" as more;\nlet p = rules::cap(plan(workload));\np.hostname(more::name());\np";
    assert_eq!(errors_of(dir.path(), main), Vec::<String>::new());
}

#[test]
fn absolute_paths_and_paths_outside_the_folder_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("secret.rhai"), "fn x() { 1 }");
    std::fs::create_dir_all(dir.path().join("policies/lib")).unwrap();
    symlink(
        dir.path().join("secret.rhai"),
        dir.path().join("policies/link.rhai"),
    )
    .unwrap();
    let secret = dir.path().join("secret.rhai").canonicalize().unwrap();
    let shown = |s: &str| {
        s.replace(
            &dir.path().canonicalize().unwrap().display().to_string(),
            "DIR",
        )
    };
    let absolute = format!("import {:?} as s;\n1", secret.display().to_string());
    assert_eq!(
        errors_of(dir.path(), &absolute)
            .iter()
            .map(|l| shown(l))
            .collect::<Vec<_>>(),
        [
            "DIR/policies/main.rhai:1:8: import \"DIR/secret.rhai\": absolute paths are refused; a policy imports only modules from its own folder, e.g. import \"policy\" for policy.rhai beside it"
        ]
    );
    for escape in ["../secret", "link", "lib/../../secret"] {
        let errors: Vec<String> = errors_of(dir.path(), &format!("import {escape:?} as s;\n1"))
            .iter()
            .map(|l| shown(l))
            .collect();
        assert_eq!(
            errors,
            [format!(
                "DIR/policies/main.rhai:1:8: import {escape:?}: DIR/secret.rhai is outside the script's folder; a policy imports only modules from its own folder"
            )],
            "{escape}"
        );
    }
}

#[test]
fn cycles_and_errors_inside_modules_point_into_the_module() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("policies/a.rhai"), "import \"b\" as b;");
    write(&dir.path().join("policies/b.rhai"), "import \"a\" as a;");
    write(
        &dir.path().join("policies/bad.rhai"),
        "fn f(p) {\n    p.memory(\"lots\");\n    p\n}",
    );
    write(&dir.path().join("policies/broken.rhai"), "fn f( {");
    assert_eq!(
        errors_of(dir.path(), "import \"a\" as a;\n1"),
        [
            "DIR/policies/b.rhai:1:8: import \"a\": DIR/policies/a.rhai imports itself through a cycle of imports"
        ]
    );
    assert_eq!(
        errors_of(dir.path(), "import \"bad\" as bad;\nbad::f(plan(workload))"),
        [
            "DIR/policies/bad.rhai:2:7: resources.memory = \"lots\": \"lots\" is not a size: expected a number with an optional unit such as 256M or 1G"
        ]
    );
    assert_eq!(
        errors_of(dir.path(), "import \"broken\" as b;\n1"),
        [
            "DIR/policies/broken.rhai:1:7: Expecting ')' to close the parameters list of function 'f'"
        ]
    );
}
