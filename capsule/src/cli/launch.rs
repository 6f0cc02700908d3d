//! Launching checked Plans: one, or a group in this process, each member on a thread of its
//! own with its own [`StopHandle`]: the signals capsule receives reach every member that is
//! running, as a single launch's reach its workload. A failure becomes an Outcome with the
//! error in it.

use plan::{Host, Outcome, Plan, Timings};

use crate::{Launcher, SignalRouter, Stdin, StopHandle};

/// Launches `plans`, each already checked, together, or one after another when `sequential`
/// (stopping at the first that fails). Returns their Outcomes in order and the exit status:
/// the first non-zero.
pub(super) fn launch_group(
    launcher: &Launcher,
    host: &Host,
    router: &SignalRouter,
    plans: &[Plan],
    sequential: bool,
) -> (Vec<Outcome>, i32) {
    let mut outcomes = Vec::with_capacity(plans.len());
    let mut first_failure = None;
    if sequential {
        for plan in plans {
            let (outcome, code) = launch(launcher, plan, host, &router.launch(), Stdin::NULL);
            outcomes.push(outcome);
            if code != 0 {
                first_failure = Some(code);
                break;
            }
        }
    } else {
        std::thread::scope(|scope| {
            let members: Vec<_> = plans
                .iter()
                .map(|plan| {
                    let stop = router.launch();
                    scope.spawn(move || launch(launcher, plan, host, &stop, Stdin::NULL))
                })
                .collect();
            for member in members {
                // A member that panicked is a bug; its panic ends capsule as it would alone.
                let (outcome, code) = member
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p));
                outcomes.push(outcome);
                if code != 0 && first_failure.is_none() {
                    first_failure = Some(code);
                }
            }
        });
    }
    (outcomes, first_failure.unwrap_or(0))
}

/// Runs one checked Plan with its backend; a failure becomes an Outcome with the error in it.
pub(super) fn launch(
    launcher: &Launcher,
    plan: &Plan,
    host: &Host,
    stop: &StopHandle,
    stdin: Stdin,
) -> (Outcome, i32) {
    match launcher.run(plan, host, stop, stdin) {
        Ok(outcome) => {
            let code = outcome.exit_code;
            (outcome, code)
        }
        Err(e) => failed(plan, e),
    }
}

/// A launch that failed with `e`, reported and turned into its Outcome and exit status.
pub(super) fn failed(plan: &Plan, e: crate::Error) -> (Outcome, i32) {
    eprintln!("capsule: {e}");
    let code = e.exit_code() as i32;
    (failed_outcome(plan, code, e.to_string()), code)
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
        disks: Vec::new(),
    }
}
