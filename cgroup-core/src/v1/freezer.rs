//! v1 `freezer`: `freezer.state` FROZEN / THAWED.

use std::path::Path;

use crate::error::{Error, Result};
use crate::fs;
use crate::wait;

/// Freezes every task in `dir` and its descendants, waiting until the kernel reports `FROZEN`.
///
/// While tasks are still being frozen the state reads `FREEZING`; like runc we write `FROZEN`
/// again on every poll, since a task that forked meanwhile can leave the freeze unfinished. If
/// the cgroup is not frozen in time it is thawed again, so no task is left half-frozen.
pub(crate) fn freeze(dir: &Path) -> Result<()> {
    let file = dir.join("freezer.state");
    let frozen = wait::poll_until(wait::TIMEOUT, || {
        fs::write(&file, "FROZEN")?;
        Ok(fs::read(&file)?.trim() == "FROZEN")
    })?;
    if frozen {
        return Ok(());
    }
    thaw(dir)?;
    Err(Error::Timeout {
        path: dir.to_owned(),
        what: "freezer.state FROZEN",
        waited: wait::TIMEOUT,
    })
}

/// Thaws the cgroup; the kernel does this at once.
pub(crate) fn thaw(dir: &Path) -> Result<()> {
    fs::write(&dir.join("freezer.state"), "THAWED")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{fixture, read};

    #[test]
    fn freeze_and_thaw_write_the_state() {
        // A plain file reads back what was written, as a freezer with nothing to freeze does.
        let dir = fixture(&["freezer.state"]);
        freeze(dir.path()).unwrap();
        assert_eq!(read(&dir, "freezer.state"), "FROZEN");
        thaw(dir.path()).unwrap();
        assert_eq!(read(&dir, "freezer.state"), "THAWED");
    }
}
