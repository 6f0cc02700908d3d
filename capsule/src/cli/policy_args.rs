//! The flags of a policy script: `--set KEY=VALUE` and the hidden `--host-facts FILE.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;

use super::LaunchArgs;
use std::rc::Rc;

use policy::{Evaluation, Inputs, PolicyError};

use crate::{InRoot, Launcher, host};

/// The flags of a policy script.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Give the policy script KEY=VALUE, read as `vars.KEY` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
    set: Vec<(String, String)>,
    /// Evaluate against host facts from FILE.json instead of this host's (`capsule plan` and
    /// `check`; docs/policy.md lists the fields). For tests and planning for another host.
    #[arg(long, value_name = "FILE.json", hide = true)]
    host_facts: Option<PathBuf>,
}

fn parse_set(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{s:?}: expected KEY=VALUE, e.g. tenant=acme")),
    }
}

impl PolicyArgs {
    /// Flags that only make sense with a script, named for the error when given without.
    pub fn given(&self) -> Option<&'static str> {
        if !self.set.is_empty() {
            Some("--set")
        } else if self.host_facts.is_some() {
            Some("--host-facts")
        } else {
            None
        }
    }

    /// The script's inputs, this host's facts as `launcher` sees them; `may_inject` says
    /// whether `--host-facts` is allowed (not for `run`, which launches on this host whatever
    /// a file claims).
    pub fn inputs(
        &self,
        launch: &LaunchArgs,
        launcher: &Launcher,
        may_inject: bool,
    ) -> Result<Inputs, PolicyError> {
        let host = match &self.host_facts {
            Some(_) if !may_inject => {
                return Err(PolicyError::Refused(
                    "--host-facts is for `capsule plan` and `capsule check`; `capsule run` launches on this host and reads its facts".to_owned(),
                ));
            }
            Some(path) => host::load(path)?,
            None => launcher.probe_host(),
        };
        Ok(Inputs {
            host,
            workload: launch.workload().map_err(PolicyError::Refused)?,
            vars: self.set.iter().cloned().collect::<BTreeMap<_, _>>(),
            image_files: Rc::new(InRoot),
        })
    }

    /// Evaluates `script` with these flags.
    pub fn evaluate(
        &self,
        script: &Path,
        launch: &LaunchArgs,
        launcher: &Launcher,
        may_inject: bool,
    ) -> Result<(Evaluation, Inputs), PolicyError> {
        let inputs = self.inputs(launch, launcher, may_inject)?;
        Ok((policy::evaluate(script, &inputs)?, inputs))
    }
}
