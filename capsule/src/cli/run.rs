use std::path::Path;
use std::process::ExitCode;

use plan::{Host, Plan, Plans};

use super::launch::{failed, launch, launch_group};
use super::{LaunchArgs, PolicyArgs, fail, fail_policy};
use crate::{Launcher, SignalRouter, Stdin};

/// `capsule run [--plan PLAN.json] [FLAGS]`: one Plan runs with `stdin` (`-i`, `-t`), a
/// group's members without input.
pub(super) fn run(
    plan_file: Option<&Path>,
    outcome_file: Option<&Path>,
    args: &LaunchArgs,
    stdin: Stdin,
) -> ExitCode {
    let plans = match plan_file {
        Some(path) => read_plans(path),
        None => args.to_plan().map(|plan| Plans::One(Box::new(plan))),
    };
    let plans = match plans {
        Ok(plans) => plans,
        Err(e) => return fail(e),
    };
    let router = match route_signals() {
        Ok(router) => router,
        Err(code) => return code,
    };
    let launcher = Launcher::detect();
    let host = launcher.probe_host();
    match &plans {
        Plans::One(plan) => {
            // Signals from here on reach the launch, once it has a workload to signal.
            let stop = router.launch();
            let (outcome, code) = match launcher.check(plan, &host) {
                Ok(()) => launch(&launcher, plan, &host, &stop, stdin),
                Err(e) => failed(plan, e.into()),
            };
            finish(outcome_file, &outcome, code)
        }
        Plans::Together(group) | Plans::InOrder(group) => {
            // As for a script's group: every Plan is valid before any is launched, so an
            // in-order group never stops halfway over a problem that was known at the start.
            let path = plan_file.map_or_else(String::new, |p| p.display().to_string());
            if let Err(code) = validate_group(&launcher, &path, group, &host) {
                return code;
            }
            let (outcomes, code) =
                launch_group(&launcher, &host, &router, group, plans.sequential());
            finish(outcome_file, &outcomes, code)
        }
    }
}

/// Takes over the signals capsule forwards to its launches, from now until the router drops.
fn route_signals() -> Result<SignalRouter, ExitCode> {
    SignalRouter::install().map_err(|e| {
        fail(format!(
            "cannot install the signal handlers that forward to the launch: {e}"
        ))
    })
}

/// Validates each Plan of a saved group, reporting every problem with the Plan's place in
/// the file (a saved Plan has no script lines to point at).
fn validate_group(
    launcher: &Launcher,
    path: &str,
    plans: &[Plan],
    host: &Host,
) -> Result<(), ExitCode> {
    let mut valid = true;
    for (i, plan) in plans.iter().enumerate() {
        if let Err(e) = launcher.check(plan, host) {
            eprintln!("capsule: {path}: plan {i} of the group: {e}");
            valid = false;
        }
    }
    if valid {
        Ok(())
    } else {
        Err(ExitCode::from(crate::ExitCode::Runtime as u8))
    }
}

/// `capsule run SCRIPT.rhai`: every Plan is validated, each problem pointing at its script
/// line, before any is launched; one Plan runs here, a group as child launches.
pub(super) fn run_script(
    script: &Path,
    outcome_file: Option<&Path>,
    policy: &PolicyArgs,
    args: &LaunchArgs,
    stdin: Stdin,
) -> ExitCode {
    let launcher = Launcher::detect();
    let (evaluation, inputs) = match policy.evaluate(script, args, &launcher, false) {
        Ok(evaluated) => evaluated,
        Err(e) => return fail_policy(&e),
    };
    let host = inputs.host;
    if let Err(e) = evaluation.validate(&|plan| launcher.check(plan, &host)) {
        return fail_policy(&e);
    }
    let router = match route_signals() {
        Ok(router) => router,
        Err(code) => return code,
    };
    match evaluation.to_plans() {
        Plans::One(plan) => {
            let (outcome, code) = launch(&launcher, &plan, &host, &router.launch(), stdin);
            finish(outcome_file, &outcome, code)
        }
        plans => {
            let (outcomes, code) =
                launch_group(&launcher, &host, &router, plans.plans(), plans.sequential());
            finish(outcome_file, &outcomes, code)
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

/// Reads what `capsule plan` printed: one Plan, an array of Plans or an in-order group.
fn read_plans(path: &Path) -> Result<Plans, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read plan {}: {e}", path.display()))?;
    Plans::from_json(&text).map_err(|e| format!("plan {}: {e}", path.display()))
}
