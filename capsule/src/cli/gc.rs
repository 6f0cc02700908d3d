use std::process::ExitCode;

use super::fail;

pub(super) fn gc() -> ExitCode {
    match crate::state::gc() {
        Ok(collected) => {
            for id in &collected.launches {
                println!("removed launch {id}");
            }
            for name in &collected.cgroups {
                println!("removed cgroup capsule/{name}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
