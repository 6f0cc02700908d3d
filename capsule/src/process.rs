//! What every backend derives the same way from a Plan's process, so a workload sees the same
//! defaults as a container, in a microVM's guest and (later) in a container inside one.

use plan::{DEFAULT_PATH, Plan, Problem};

use crate::Error;
use crate::image_files::InRoot;

/// The hostname the workload sees: the Plan's, else the launch id (docker's default, the
/// container id), under every isolation.
pub(crate) fn hostname(plan: &Plan, id: &str) -> String {
    plan.hostname.clone().unwrap_or_else(|| id.to_owned())
}

/// The environment the command starts with: the Plan's `env`, plus docker's defaults for the
/// variables it lacks: `PATH` ([`DEFAULT_PATH`]), `HOSTNAME` (`hostname`) and `HOME` (the
/// user's home in the image's `/etc/passwd`, else `/`, as runc and crun set it). A value in
/// `env` always wins.
///
/// # Errors
///
/// [`plan::Error::Invalid`] when the image's `/etc/passwd` exists but cannot be read.
pub(crate) fn environment(plan: &Plan, hostname: &str) -> Result<Vec<String>, Error> {
    let process = &plan.process;
    let mut env = process.env.clone();
    let has = |env: &[String], key: &str| {
        env.iter()
            .any(|kv| kv.split_once('=').is_some_and(|(k, _)| k == key))
    };
    if !has(&env, "PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !has(&env, "HOSTNAME") {
        env.push(format!("HOSTNAME={hostname}"));
    }
    if !has(&env, "HOME") {
        let uid = process.user.uid;
        let home = plan::home_of(uid, &plan.root.path, &InRoot).map_err(|e| {
            Error::invalid(vec![Problem::new(
                "process.user",
                format!("process.user {uid}"),
                e.to_string(),
            )])
        })?;
        env.push(format!("HOME={home}"));
    }
    Ok(env)
}
