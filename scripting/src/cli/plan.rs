use std::process::ExitCode;

use super::{LaunchArgs, fail};

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
