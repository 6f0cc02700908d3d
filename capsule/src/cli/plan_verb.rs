use std::path::Path;
use std::process::ExitCode;

use super::{LaunchArgs, PolicyArgs, fail, fail_policy};
use crate::Launcher;

pub(super) fn plan(args: &LaunchArgs) -> ExitCode {
    match args.to_plan() {
        Ok(plan) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&plan).expect("a Plan serialises")
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `capsule plan SCRIPT.rhai`: the script's Plans as JSON, unvalidated (as with flags), so a
/// Plan can be made for another host.
pub(super) fn plan_script(script: &Path, policy: &PolicyArgs, launch: &LaunchArgs) -> ExitCode {
    match policy.evaluate(script, launch, &Launcher::detect(), true) {
        Ok((evaluation, _)) => {
            print!("{}", evaluation.to_json());
            ExitCode::SUCCESS
        }
        Err(e) => fail_policy(&e),
    }
}
