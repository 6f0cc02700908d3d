//! Launch state that outlives the `capsule` process: one directory per launch under
//! [`state_root`], holding `state.json` and, for a writable root, the overlay layers. If
//! `capsule` dies, [`gc`] finds launches whose owner is gone and removes what they left.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

/// `/run/capsule` for root; for a rootless user `$XDG_RUNTIME_DIR/capsule`, else
/// `<tmp>/capsule-<uid>`.
pub fn state_root() -> PathBuf {
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        return PathBuf::from("/run/capsule");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("capsule"),
        _ => std::env::temp_dir().join(format!("capsule-{uid}")),
    }
}

/// What `state.json` records about one launch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// The launch id.
    pub id: String,
    /// The `capsule` process that owns the launch, and its start time (to survive pid reuse).
    pub owner_pid: i32,
    /// The owner's start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub owner_start: u64,
    /// Whether the launch created cgroups named after `id`.
    pub cgroup: bool,
}

/// One launch's state directory; removed by [`Launch::remove`].
#[derive(Debug)]
pub struct Launch {
    /// The launch id.
    pub id: String,
    /// `<state root>/<id>`.
    pub dir: PathBuf,
}

impl Launch {
    /// Creates `<state_root>/<id>` and writes its `state.json`.
    pub fn create(id: &str, cgroup: bool) -> Result<Self, Error> {
        let root = state_root();
        std::fs::create_dir_all(&root)
            .map_err(|e| Error::io("cannot create the state directory", &root, e))?;
        let dir = root.join(id);
        std::fs::create_dir(&dir)
            .map_err(|e| Error::io("cannot create the launch directory", &dir, e))?;
        let pid = std::process::id() as i32;
        let state = State {
            id: id.to_owned(),
            owner_pid: pid,
            owner_start: start_time(pid).unwrap_or(0),
            cgroup,
        };
        let path = dir.join("state.json");
        let json = serde_json::to_vec_pretty(&state).expect("State serialises");
        let launch = Launch {
            id: id.to_owned(),
            dir,
        };
        std::fs::write(&path, json).map_err(|e| Error::io("cannot write", &path, e))?;
        Ok(launch)
    }

    /// Removes the directory and everything in it.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when it exists and cannot be removed.
    pub fn remove(&self) -> Result<(), Error> {
        let mut result = std::fs::remove_dir_all(&self.dir);
        if result
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
        {
            // overlayfs leaves its `work/work` directory with mode 000; an unprivileged owner
            // must give itself access back before it can empty it.
            restore_owner_access(&self.dir);
            result = std::fs::remove_dir_all(&self.dir);
        }
        match result {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(
                "cannot remove the launch directory",
                &self.dir,
                e,
            )),
            _ => Ok(()),
        }
    }
}

fn restore_owner_access(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                restore_owner_access(&entry.path());
            }
        }
    }
}

/// A short random launch id (12 hex digits, as docker's short ids).
pub fn new_id() -> String {
    let mut bytes = [0u8; 6];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into the buffer.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        // Without randomness, pid and time still make a collision unlikely.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes.copy_from_slice(&(t ^ u64::from(std::process::id()) << 32).to_le_bytes()[..6]);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The start time of `pid` in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in field 2 may hold spaces; the fields after it follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn owner_alive(state: &State) -> bool {
    start_time(state.owner_pid).is_some_and(|t| state.owner_start == 0 || t == state.owner_start)
}

/// What [`gc`] removed.
#[derive(Debug, Default, Serialize)]
pub struct Collected {
    /// Ids of the launches whose state was removed.
    pub launches: Vec<String>,
    /// The cgroup directories removed.
    pub cgroups: Vec<String>,
}

/// Removes the state and cgroups of every launch whose `capsule` process is gone, and every
/// capsule cgroup that no live launch owns. Live launches are left alone.
pub fn gc() -> Result<Collected, Error> {
    let mut collected = Collected::default();
    // Only root creates cgroups; a rootless launch has none to remove.
    let layout = if nix::unistd::geteuid().is_root() {
        cgroup_core::detect().ok()
    } else {
        None
    };
    let root = state_root();
    let mut live = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&root) {
        for entry in entries.flatten() {
            let dir = entry.path();
            let id = entry.file_name().to_string_lossy().into_owned();
            match read_state(&dir) {
                Some(state) if owner_alive(&state) => live.push(id),
                _ => {
                    if let Some(layout) = &layout {
                        remove_cgroup(layout, &id)?;
                    }
                    Launch {
                        id: id.clone(),
                        dir,
                    }
                    .remove()?;
                    collected.launches.push(id);
                }
            }
        }
    }
    if let Some(layout) = &layout {
        for name in cgroup_core::Cgroup::list(layout)? {
            if !live.contains(&name) && remove_cgroup(layout, &name)? {
                collected.cgroups.push(name);
            }
        }
    }
    Ok(collected)
}

fn read_state(dir: &Path) -> Option<State> {
    serde_json::from_slice(&std::fs::read(dir.join("state.json")).ok()?).ok()
}

/// Kills what runs in the capsule cgroup `name` and removes it; false if there was none.
fn remove_cgroup(layout: &cgroup_core::Layout, name: &str) -> Result<bool, Error> {
    match cgroup_core::Cgroup::open(layout, name)? {
        Some(cgroup) => {
            cgroup.remove()?;
            Ok(true)
        }
        None => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_twelve_hex_digits_and_differ() {
        let (a, b) = (new_id(), new_id());
        assert_eq!(a.len(), 12);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn own_process_is_alive_and_a_reused_pid_is_not() {
        let pid = std::process::id() as i32;
        let start = start_time(pid).unwrap();
        let mut state = State {
            id: "x".into(),
            owner_pid: pid,
            owner_start: start,
            cgroup: false,
        };
        assert!(owner_alive(&state));
        state.owner_start = start + 1;
        assert!(!owner_alive(&state));
    }
}
