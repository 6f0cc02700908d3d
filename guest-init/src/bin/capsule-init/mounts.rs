//! The Plan's mounts inside the guest's root, once it is entered: each virtio-fs share
//! (`mount -t virtiofs TAG DST`) and each tmpfs, read-only with MS_RDONLY when asked, their
//! mount points created in the root (in its overlay: the image never changes).
//!
//! Parents before children, as Docker orders a container's mounts: by the number of path
//! components of the destination, then as given.

use nix::mount::{MsFlags, mount};

use guest_init::GuestConfig;

use crate::Failure;

/// One mount inside the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: String,
    pub target: String,
    pub fstype: &'static str,
    pub flags: MsFlags,
    pub data: String,
}

/// The mounts `config` asks for, in the order they are made.
pub fn mounts(config: &GuestConfig) -> Vec<Mount> {
    let readonly = |ro: bool| {
        if ro {
            MsFlags::MS_RDONLY
        } else {
            MsFlags::empty()
        }
    };
    let shares = config.shares.iter().map(|share| Mount {
        source: share.tag.clone(),
        target: share.destination.clone(),
        fstype: "virtiofs",
        flags: readonly(share.readonly),
        data: String::new(),
    });
    let tmpfs = config.tmpfs.iter().map(|tmpfs| Mount {
        source: "tmpfs".into(),
        target: tmpfs.destination.clone(),
        fstype: "tmpfs",
        flags: readonly(tmpfs.readonly) | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        data: tmpfs.size.map_or_else(
            || "mode=1777".to_owned(),
            |size| format!("mode=1777,size={size}"),
        ),
    });
    let mut all: Vec<Mount> = shares.chain(tmpfs).collect();
    // Stable: equal depths keep the config's order.
    all.sort_by_key(|m| m.target.split('/').filter(|part| !part.is_empty()).count());
    all
}

/// Makes each mount of `config` in the current root; the first that fails ends them, with a
/// line naming it.
pub fn run(config: &GuestConfig) -> Result<(), Failure> {
    for m in mounts(config) {
        std::fs::create_dir_all(&m.target)
            .map_err(|e| Failure::message(format!("creating mount point {}: {e}", m.target)))?;
        mount(
            Some(m.source.as_str()),
            m.target.as_str(),
            Some(m.fstype),
            m.flags,
            Some(m.data.as_str()),
        )
        .map_err(|e| {
            Failure::new(
                format_args!("mounting {} ({}) on", m.source, m.fstype),
                &m.target,
                e,
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use guest_init::{Share, Tmpfs};

    use super::*;

    #[test]
    fn shares_and_tmpfs_mount_parents_first_read_only_when_asked() {
        let mut config = GuestConfig::new(vec!["true".into()]);
        config.shares = vec![
            Share {
                tag: "share1".into(),
                destination: "/data/in".into(),
                readonly: true,
            },
            Share {
                tag: "share0".into(),
                destination: "/out".into(),
                readonly: false,
            },
        ];
        config.tmpfs = vec![Tmpfs {
            destination: "/data".into(),
            size: Some(1 << 20),
            readonly: false,
        }];
        let made: Vec<_> = mounts(&config)
            .into_iter()
            .map(|m| {
                (
                    m.source,
                    m.target,
                    m.fstype,
                    m.flags.contains(MsFlags::MS_RDONLY),
                    m.data,
                )
            })
            .collect();
        assert_eq!(
            made,
            [
                (
                    "share0".into(),
                    "/out".into(),
                    "virtiofs",
                    false,
                    String::new()
                ),
                (
                    "tmpfs".into(),
                    "/data".into(),
                    "tmpfs",
                    false,
                    "mode=1777,size=1048576".into()
                ),
                (
                    "share1".into(),
                    "/data/in".into(),
                    "virtiofs",
                    true,
                    String::new()
                ),
            ]
        );
    }
}
