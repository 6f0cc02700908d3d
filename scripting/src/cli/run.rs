use std::path::Path;
use std::process::ExitCode;

use super::{LaunchArgs, PolicyArgs, fail, fail_policy, group};
use crate::validate::Host;
use crate::{Isolation, Outcome, Plan, Timings};

pub(super) fn run(
    plan_file: Option<&Path>,
    outcome_file: Option<&Path>,
    args: &LaunchArgs,
) -> ExitCode {
    let plan = match plan_file {
        Some(path) => read_plan(path),
        None => args.to_plan(),
    };
    let plan = match plan {
        Ok(plan) => plan,
        Err(e) => return fail(e),
    };
    let (outcome, code) = launch(&plan, &Host::detect());
    finish(outcome_file, &outcome, code)
}

/// `capsule run SCRIPT.rhai`: every Plan is validated, each problem pointing at its script
/// line, before any is launched; one Plan runs here, a group as child launches.
pub(super) fn run_script(
    script: &Path,
    outcome_file: Option<&Path>,
    policy: &PolicyArgs,
    args: &LaunchArgs,
) -> ExitCode {
    let host = Host::detect();
    let evaluation = match policy.evaluate(script, args, false) {
        Ok((evaluation, _)) => evaluation,
        Err(e) => return fail_policy(&e),
    };
    if let Err(e) = evaluation.validate(&host) {
        return fail_policy(&e);
    }
    match evaluation.plans().as_slice() {
        [plan] => {
            let (outcome, code) = launch(plan, &host);
            finish(outcome_file, &outcome, code)
        }
        plans => {
            let (outcomes, code) = group::launch(plans, evaluation.sequential());
            finish(outcome_file, &outcomes, code)
        }
    }
}

/// Runs one Plan with its backend; a failure becomes an Outcome with the error in it.
fn launch(plan: &Plan, host: &Host) -> (Outcome, i32) {
    let launched = match plan.isolation {
        Isolation::Microvm => crate::backend::microvm::run(plan, host),
        Isolation::Container | Isolation::Kata => crate::backend::container::run(plan, host),
    };
    match launched {
        Ok(outcome) => {
            let code = outcome.exit_code;
            (outcome, code)
        }
        Err(e) => {
            eprintln!("capsule: {e}");
            let code = e.exit_code() as i32;
            (failed_outcome(plan, code, e.to_string()), code)
        }
    }
}

/// Writes the Outcome(s) where `--outcome` asked, and exits with `code`.
fn finish(outcome_file: Option<&Path>, outcome: &impl serde::Serialize, code: i32) -> ExitCode {
    if let Some(path) = outcome_file {
        let json = serde_json::to_string_pretty(outcome).expect("an Outcome serialises");
        if let Err(e) = std::fs::write(path, json + "\n") {
            return fail(format!(
                "cannot write the outcome to {}: {e}",
                path.display()
            ));
        }
    }
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn read_plan(path: &Path) -> Result<Plan, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read plan {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("plan {}: {e}", path.display()))
}

pub(super) fn failed_outcome(plan: &Plan, code: i32, error: String) -> Outcome {
    Outcome {
        id: String::new(),
        isolation: plan.isolation,
        exit_code: code,
        signal: None,
        oom_killed: false,
        error: Some(error),
        timings: Timings::default(),
        peaks: Default::default(),
        violations: Vec::new(),
    }
}
