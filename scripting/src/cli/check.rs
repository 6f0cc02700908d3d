use std::path::Path;
use std::process::ExitCode;

use super::{LaunchArgs, PolicyArgs, fail_policy};

/// `capsule check SCRIPT.rhai`: evaluate and validate; silent and 0 when the Plans are valid.
pub(super) fn check(script: &Path, policy: &PolicyArgs, launch: &LaunchArgs) -> ExitCode {
    let checked = policy
        .evaluate(script, launch, true)
        .and_then(|(evaluation, inputs)| evaluation.validate(&inputs.host.validation_host()));
    match checked {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail_policy(&e),
    }
}
