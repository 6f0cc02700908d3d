//! Launching a group of Plans in this process, each member on a thread of its own with its
//! own [`StopHandle`](crate::StopHandle): the signals capsule receives reach every member
//! that is running, as a single launch's reach its workload.

use plan::{Host, Outcome, Plan};

use super::run::launch;
use crate::{Launcher, SignalRouter};

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
            let (outcome, code) = launch(launcher, plan, host, &router.launch());
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
                    scope.spawn(move || launch(launcher, plan, host, &stop))
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
