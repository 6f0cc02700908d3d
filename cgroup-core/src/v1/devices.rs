//! v1 `devices`: which device nodes the cgroup's processes may create and open.
//!
//! A new cgroup inherits its parent's list (everything, under capsule's parent); writing `a` to
//! `devices.deny` empties it, and each `devices.allow` line adds one rule back
//! (Documentation/admin-guide/cgroup-v1/devices.rst).

use std::path::Path;

use crate::error::Result;
use crate::fs;

/// The devices a container may use, as runc and crun allow them by default (the OCI runtime
/// spec's default devices): creating any node (`m`), and reading and writing `/dev/null`,
/// `zero`, `full`, `random`, `urandom`, `tty`, `console`, `ptmx` and the pseudo-terminals of
/// `/dev/pts`. Nothing else opens, whatever node a process makes or an image brings.
pub const OCI_DEFAULT_DEVICES: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

/// Denies every device in `dir`, then allows `rules` (`TYPE MAJOR:MINOR ACCESS` lines).
pub(crate) fn allow_only(dir: &Path, rules: &[&str]) -> Result<()> {
    fs::write(&dir.join("devices.deny"), "a")?;
    fs::write_each(&dir.join("devices.allow"), rules)
}
