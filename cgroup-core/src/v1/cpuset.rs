//! v1 `cpuset`: which CPUs and memory nodes.

use std::path::Path;

use crate::error::Result;
use crate::fs;
use crate::limits::Limits;

const FILES: [&str; 2] = ["cpuset.cpus", "cpuset.mems"];

/// Copies `cpuset.cpus` and `cpuset.mems` from `parent` into `dir` where `dir`'s are empty. A v1
/// cpuset starts with both empty (unless the parent set `cgroup.clone_children`), and the kernel
/// refuses to attach a task to it (`ENOSPC`) until both are set.
pub(crate) fn inherit(parent: &Path, dir: &Path) -> Result<()> {
    for name in FILES {
        let file = dir.join(name);
        if fs::read(&file)?.trim().is_empty() {
            let value = fs::read(&parent.join(name))?;
            fs::write(&file, value.trim())?;
        }
    }
    Ok(())
}

/// Writes the requested CPUs and nodes over the inherited ones.
pub(crate) fn apply(limits: &Limits, dir: &Path) -> Result<()> {
    for (name, value) in FILES
        .into_iter()
        .zip([&limits.cpuset_cpus, &limits.cpuset_mems])
    {
        if let Some(value) = value {
            fs::write(&dir.join(name), value)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{fixture, read};

    #[test]
    fn inherit_fills_empty_files_only() {
        let parent = fixture(&[]);
        std::fs::write(parent.path().join("cpuset.cpus"), "0-3\n").unwrap();
        std::fs::write(parent.path().join("cpuset.mems"), "0\n").unwrap();
        let dir = fixture(&["cpuset.cpus", "cpuset.mems"]);
        std::fs::write(dir.path().join("cpuset.mems"), "1\n").unwrap();
        inherit(parent.path(), dir.path()).unwrap();
        assert_eq!(read(&dir, "cpuset.cpus"), "0-3");
        assert_eq!(read(&dir, "cpuset.mems"), "1\n");
    }

    #[test]
    fn apply_writes_lists() {
        let dir = fixture(&["cpuset.cpus", "cpuset.mems"]);
        let limits = Limits {
            cpuset_cpus: Some("0-1,3".into()),
            cpuset_mems: Some("0".into()),
            ..Limits::default()
        };
        apply(&limits, dir.path()).unwrap();
        assert_eq!(read(&dir, "cpuset.cpus"), "0-1,3");
        assert_eq!(read(&dir, "cpuset.mems"), "0");
    }
}
