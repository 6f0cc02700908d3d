//! uid and gid maps of a user namespace (user_namespaces(7)), as data.

use serde::{Deserialize, Serialize};

/// `size` ids starting at `container_id` inside map to ids starting at `host_id` outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    /// The first id inside the namespace.
    pub container_id: u32,
    /// The host id `container_id` maps to.
    pub host_id: u32,
    /// How many consecutive ids the line maps.
    pub size: u32,
}

/// The `uid_map` and `gid_map` of one user namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMaps {
    /// The lines of `uid_map`.
    pub uids: Vec<IdMap>,
    /// The lines of `gid_map`.
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

    /// Whether `gid` inside the container has an id on the host.
    pub fn maps_gid(&self, gid: u32) -> bool {
        contains(&self.gids, gid)
    }

    /// The host uid and gid of the container's root, when both are mapped.
    pub fn host_root(&self) -> Option<(u32, u32)> {
        Some((to_host(&self.uids, 0)?, to_host(&self.gids, 0)?))
    }
}

pub(crate) fn contains(maps: &[IdMap], id: u32) -> bool {
    maps.iter().any(|m| {
        id >= m.container_id && u64::from(id) < u64::from(m.container_id) + u64::from(m.size)
    })
}

fn to_host(maps: &[IdMap], id: u32) -> Option<u32> {
    maps.iter()
        .find(|m| contains(std::slice::from_ref(m), id))
        .map(|m| m.host_id + (id - m.container_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootless_maps_only_root_inside() {
        let maps = IdMaps::rootless(1000, 1000);
        assert!(maps.maps_uid(0));
        assert!(!maps.maps_uid(1));
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
