//! Malformed and hostile scripts end in a clear error, in bounded time, and never panic.

mod common;

use std::time::{Duration, Instant};

use common::{first_lines, inputs};
use plan::Kvm;
use policy::PolicyError;

fn evaluate(script: &str) -> Result<policy::Evaluation, PolicyError> {
    policy::evaluate_source("job.rhai", script, None, &inputs(Kvm::Hardware))
}

fn error_of(script: &str) -> String {
    match evaluate(script) {
        Ok(_) => panic!("{script:?} was accepted"),
        Err(e) => first_lines(&e).join("\n"),
    }
}

#[test]
fn a_loop_that_never_ends_is_stopped_within_a_second() {
    for script in [
        "loop { }",
        "let x = 0;\nwhile true { x += 1; }",
        "fn f() { loop { let a = [1, 2, 3]; a.sort(); } }\nf()",
    ] {
        let start = Instant::now();
        let error = error_of(script);
        let took = start.elapsed();
        // The deadline is one second; the slack covers a loaded machine and a debug build.
        assert!(
            took < Duration::from_millis(1500),
            "{script}: stopped after {took:?}"
        );
        assert!(error.contains("look for a loop that never ends"), "{error}");
    }
}

#[test]
fn recursion_is_bounded() {
    assert_eq!(
        error_of("fn f(n) { f(n + 1) }\nf(0)"),
        "job.rhai:2:1: functions call each other more than 32 deep; look for recursion that never ends"
    );
}

#[test]
fn strings_arrays_and_maps_are_bounded() {
    let too_large = "is too large for a policy: strings hold at most 65536 bytes, arrays 4096 items, maps 4096 entries";
    assert_eq!(
        error_of("let s = \"x\";\nloop { s += s; }"),
        format!("job.rhai:2:10: Length of string {too_large}")
    );
    assert!(error_of("let a = [];\nloop { a.push(1); }").ends_with(too_large));
    // Rhai checks a map's size when it is passed around, not on each insertion by index:
    // a map growing in place is stopped by the deadline instead.
    let map = error_of("let m = #{};\nlet i = 0;\nloop { m[`k${i}`] = i; i += 1; }");
    assert!(
        map.ends_with(too_large) || map.ends_with("look for a loop that never ends"),
        "{map}"
    );
    let nested = format!("let x = {}1{};\nx", "(".repeat(200), ")".repeat(200));
    assert!(error_of(&nested).contains("Expression exceeds maximum complexity"));
}

#[test]
fn eval_is_disabled() {
    assert_eq!(
        error_of("let x = eval(\"1 + 1\");\nx"),
        "job.rhai:1:9: reserved keyword 'eval' is disabled"
    );
}

#[test]
fn a_script_that_returns_no_plan_says_what_it_should_return() {
    assert_eq!(
        error_of("42"),
        "job.rhai: the script's value is i64; end it with a Plan, an array of Plans (launched together) or in_order([...])"
    );
    assert_eq!(
        error_of("[]"),
        "job.rhai: the script's value is an empty array: there is nothing to launch"
    );
    assert_eq!(
        error_of("[plan(workload), 1]"),
        "job.rhai: the script's value is an array holding i64; every item must be a Plan"
    );
    assert_eq!(
        error_of("in_order([])"),
        "job.rhai:1:1: in_order([]) has no Plan to launch; give at least one"
    );
}

#[test]
fn unknown_functions_and_syntax_errors_point_at_the_place() {
    assert_eq!(
        error_of("let p = plan(workload);\np.mmeory(\"1G\");\np"),
        "job.rhai:2:3: no function mmeory (Plan, &str | ImmutableString | String); docs/policy.md lists capsule's functions and the types they take"
    );
    assert_eq!(
        error_of("let p = plan(workload)\np"),
        "job.rhai:2:1: Expecting ';' to terminate this statement"
    );
    assert_eq!(
        error_of("throw \"this host is too small\";"),
        "job.rhai:1:1: this host is too small"
    );
}

#[test]
fn scripts_cannot_import_without_a_folder() {
    assert_eq!(
        error_of("import \"policy\" as p;\n1"),
        "job.rhai:1:8: import \"policy\": this script has no folder to import from"
    );
}

#[test]
fn garbage_never_panics() {
    let inputs = [
        "\"unterminated",
        "let",
        "fn (",
        "}}}}",
        "p.memory(",
        "#{",
        "\u{feff}\u{0}\u{7f}",
        "let x = 1 / 0; x",
        "let x = 9223372036854775807 + 1; x",
        "[1][5]",
        "\"é\".sub_string(-5, 99)",
        "plan(workload).memory(\"1G\")",
        "import 42 as x;",
        "let p = plan(workload); p.cpus(1e308 * 10.0); p",
        "let p = plan(workload); p.tmpfs(\"/t\", -1); p",
        "let p = plan(workload); p.user(\"0:\"); p",
    ];
    for script in inputs {
        // Whatever the outcome, it is a value, not a panic.
        let _ = evaluate(script);
    }
}
