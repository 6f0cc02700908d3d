use std::path::Path;
use std::process::ExitCode;

use super::{LaunchArgs, fail};
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
    let host = Host::detect();
    let launched = match plan.isolation {
        Isolation::Microvm => crate::backend::microvm::run(&plan, &host),
        Isolation::Container | Isolation::Kata => crate::backend::container::run(&plan, &host),
    };
    let (outcome, code) = match launched {
        Ok(outcome) => {
            let code = outcome.exit_code;
            (outcome, code)
        }
        Err(e) => {
            eprintln!("capsule: {e}");
            let code = e.exit_code() as i32;
            (failed_outcome(&plan, code, e.to_string()), code)
        }
    };
    if let Some(path) = outcome_file {
        let json = serde_json::to_string_pretty(&outcome).expect("an Outcome serialises");
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

fn failed_outcome(plan: &Plan, code: i32, error: String) -> Outcome {
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
