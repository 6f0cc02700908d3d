use std::path::Path;
use std::process::ExitCode;

use super::{LaunchArgs, PolicyArgs, fail_policy};
use crate::Launcher;

/// `capsule check SCRIPT.rhai`: evaluate and validate; silent and 0 when the Plans are valid.
pub(super) fn check(script: &Path, policy: &PolicyArgs, launch: &LaunchArgs) -> ExitCode {
    let launcher = Launcher::detect();
    let checked =
        policy
            .evaluate(script, launch, &launcher, true)
            .and_then(|(evaluation, inputs)| {
                evaluation.validate(&|plan| launcher.check(plan, &inputs.host))
            });
    match checked {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail_policy(&e),
    }
}
