//! Everything a script is given: the host, the workload from the command line, and the
//! `--set KEY=VALUE` pairs. A script reads these and nothing else of the outside world.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

use plan::ImageFiles;

use plan::Host;

/// What the command line asks to run: `capsule run job.rhai --rootfs DIR -e K=V -- CMD ARGS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workload {
    /// The first word after `--`, empty when none was given.
    pub command: String,
    /// The words after the command.
    pub args: Vec<String>,
    /// `-e KEY=VALUE` pairs.
    pub env: BTreeMap<String, String>,
    /// `--rootfs DIR`, made absolute.
    pub rootfs: Option<PathBuf>,
}

impl Workload {
    /// The command and its arguments as one argv.
    pub fn argv(&self) -> Vec<String> {
        if self.command.is_empty() {
            return Vec::new();
        }
        std::iter::once(self.command.clone())
            .chain(self.args.iter().cloned())
            .collect()
    }
}

/// One evaluation's inputs.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// Facts about the host, `host` in the script.
    pub host: Host,
    /// What the command line asks to run, `workload` in the script.
    pub workload: Workload,
    /// `--set KEY=VALUE` pairs, read by the script as `vars.KEY`.
    pub vars: BTreeMap<String, String>,
    /// How `user()` reads an image's `/etc/passwd` and `/etc/group`: the launcher's reader
    /// stays inside the image's root.
    pub image_files: Rc<dyn ImageFiles>,
}
