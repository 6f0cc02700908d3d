//! v2 freezing: `cgroup.freeze`, and `frozen` in `cgroup.events`.

use std::path::Path;

use crate::error::{Error, Result};
use crate::fs;
use crate::wait;

/// Freezes `dir` and its descendants and waits until `cgroup.events` says `frozen 1`. The write
/// only requests the freeze; tasks stop as they reach the kernel boundary. On timeout the
/// request is withdrawn so nothing stays half-frozen.
pub(crate) fn freeze(dir: &Path) -> Result<()> {
    set(dir, true)
}

/// Thaws `dir` and waits until `cgroup.events` says `frozen 0`.
pub(crate) fn thaw(dir: &Path) -> Result<()> {
    set(dir, false)
}

fn set(dir: &Path, frozen: bool) -> Result<()> {
    fs::write(&dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })?;
    let events = dir.join("cgroup.events");
    let reached = wait::poll_until(wait::TIMEOUT, || {
        let text = fs::read(&events)?;
        Ok(fs::keyed_u64(&events, &text, "frozen")? == Some(u64::from(frozen)))
    })?;
    if reached {
        return Ok(());
    }
    if frozen {
        fs::write(&dir.join("cgroup.freeze"), "0")?;
    }
    let what = if frozen {
        "cgroup.events frozen 1"
    } else {
        "cgroup.events frozen 0"
    };
    Err(Error::Timeout {
        path: dir.to_owned(),
        what,
        waited: wait::TIMEOUT,
    })
}

/// Whether `dir` has `cgroup.freeze` (Linux 5.2+).
pub(crate) fn can_freeze(dir: &Path) -> bool {
    dir.join("cgroup.freeze").exists()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{fixture, read};

    #[test]
    fn freeze_waits_for_frozen() {
        let dir = fixture(&["cgroup.freeze"]);
        std::fs::write(dir.path().join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        freeze(dir.path()).unwrap();
        assert_eq!(read(&dir, "cgroup.freeze"), "1");
    }
}
