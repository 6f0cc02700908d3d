//! uid and gid maps of the container's user namespace (user_namespaces(7)).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;

/// `size` ids starting at `container_id` inside map to ids starting at `host_id` outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    pub container_id: u32,
    pub host_id: u32,
    pub size: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMaps {
    pub uids: Vec<IdMap>,
    pub gids: Vec<IdMap>,
}

impl IdMaps {
    /// The rootless mapping: the caller's own uid and gid become root inside, nothing else
    /// is mapped. The only mapping an unprivileged process may write itself.
    pub fn rootless(uid: u32, gid: u32) -> Self {
        let one = |host_id| IdMap {
            container_id: 0,
            host_id,
            size: 1,
        };
        IdMaps {
            uids: vec![one(uid)],
            gids: vec![one(gid)],
        }
    }

    /// Whether `uid` inside the container has an id on the host.
    pub fn maps_uid(&self, uid: u32) -> bool {
        contains(&self.uids, uid)
    }

    pub fn maps_gid(&self, gid: u32) -> bool {
        contains(&self.gids, gid)
    }

    /// The host uid and gid of the container's root, when both are mapped.
    pub fn host_root(&self) -> Option<(u32, u32)> {
        Some((to_host(&self.uids, 0)?, to_host(&self.gids, 0)?))
    }

    /// Writes the maps of the process `pid`, which has just entered a new user namespace.
    /// `setgroups` is denied first when the writer is unprivileged, as the kernel requires
    /// before an unprivileged gid_map.
    pub(crate) fn write(&self, pid: i32, privileged: bool) -> Result<(), Error> {
        let proc = Path::new("/proc").join(pid.to_string());
        if !privileged {
            write_file(&proc.join("setgroups"), "deny")?;
        }
        write_file(&proc.join("gid_map"), &render(&self.gids))?;
        write_file(&proc.join("uid_map"), &render(&self.uids))
    }
}

fn contains(maps: &[IdMap], id: u32) -> bool {
    maps.iter().any(|m| {
        id >= m.container_id && u64::from(id) < u64::from(m.container_id) + u64::from(m.size)
    })
}

fn to_host(maps: &[IdMap], id: u32) -> Option<u32> {
    maps.iter()
        .find(|m| contains(std::slice::from_ref(m), id))
        .map(|m| m.host_id + (id - m.container_id))
}

fn render(maps: &[IdMap]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size))
        .collect()
}

fn write_file(path: &Path, content: &str) -> Result<(), Error> {
    std::fs::write(path, content).map_err(|e| {
        Error::host(
            format!("cannot write {content:?} to {}", path.display()),
            nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootless_maps_only_root_inside() {
        let maps = IdMaps::rootless(1000, 1000);
        assert!(maps.maps_uid(0));
        assert!(!maps.maps_uid(1));
        assert_eq!(render(&maps.uids), "0 1000 1\n");
        assert_eq!(maps.host_root(), Some((1000, 1000)));
    }

    #[test]
    fn ranges_include_their_last_id_only() {
        let maps = [IdMap {
            container_id: 0,
            host_id: 100_000,
            size: 65_536,
        }];
        assert!(contains(&maps, 65_535));
        assert!(!contains(&maps, 65_536));
    }
}
