//! Which cgroup layout the host has, read from `/proc/self/mountinfo`.
//!
//! - **v2**: one `cgroup2` mount (usually `/sys/fs/cgroup`) holding every controller.
//! - **v1**: one `cgroup` mount per hierarchy; a hierarchy may carry several controllers
//!   (`cpu,cpuacct` co-mounted, with `cpu` and `cpuacct` symlinks beside it). The controllers are
//!   read from the mount's super options, never guessed from directory names.
//! - **hybrid**: both; controllers live in the v1 hierarchies and the `cgroup2` mount
//!   (`/sys/fs/cgroup/unified`) has none, but still gives `cgroup.kill` and `cgroup.freeze`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::controller::Controller;
use crate::error::{Error, Result};
use crate::fs;

/// Where the kernel tells us what is mounted.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";

/// The v1 hierarchies: for each controller, the mount point of the hierarchy carrying it.
/// Co-mounted controllers (`cpu,cpuacct`) share a mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Mounts {
    mounts: BTreeMap<Controller, PathBuf>,
}

impl V1Mounts {
    /// The mount point of the hierarchy carrying `controller`, if mounted.
    pub fn mount(&self, controller: Controller) -> Option<&Path> {
        self.mounts.get(&controller).map(PathBuf::as_path)
    }

    /// The mounted controllers.
    pub fn controllers(&self) -> impl Iterator<Item = Controller> + '_ {
        self.mounts.keys().copied()
    }

    /// Each mount point once, even when several controllers share it.
    pub fn mount_points(&self) -> Vec<&Path> {
        let mut points: Vec<&Path> = self.mounts.values().map(PathBuf::as_path).collect();
        points.sort();
        points.dedup();
        points
    }
}

/// The `cgroup2` mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Mount {
    path: PathBuf,
}

impl V2Mount {
    /// Its mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The host's cgroup layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Only v1 hierarchies.
    V1(V1Mounts),
    /// Only the unified hierarchy, holding every controller.
    V2(V2Mount),
    /// v1 hierarchies hold the controllers; the v2 mount gives membership, freeze and kill.
    Hybrid(V1Mounts, V2Mount),
}

impl Layout {
    /// Reads a layout from the text of a `mountinfo` file (fields as in proc_pid_mountinfo(5):
    /// mount point, then filesystem type and super options after the `-`); `None` if it names
    /// no cgroup mount this crate can use.
    ///
    /// v1 mounts that carry none of our [`Controller`]s (`name=systemd`, `devices`, `net_cls`)
    /// are ignored. When a controller is mounted twice, the first mount wins.
    pub fn from_mountinfo(text: &str) -> Option<Layout> {
        let mut v1 = BTreeMap::new();
        let mut v2 = None;
        for mount in text.lines().filter_map(parse_mountinfo_line) {
            match mount.fs_type {
                "cgroup2" => {
                    v2.get_or_insert(mount.mount_point);
                }
                "cgroup" => {
                    for controller in mount
                        .super_options
                        .split(',')
                        .filter_map(Controller::from_v1_name)
                    {
                        v1.entry(controller)
                            .or_insert_with(|| mount.mount_point.clone());
                    }
                }
                _ => {}
            }
        }
        let v2 = v2.map(|path| V2Mount { path });
        match (v1.is_empty(), v2) {
            (true, Some(v2)) => Some(Layout::V2(v2)),
            (false, Some(v2)) => Some(Layout::Hybrid(V1Mounts { mounts: v1 }, v2)),
            (false, None) => Some(Layout::V1(V1Mounts { mounts: v1 })),
            (true, None) => None,
        }
    }

    /// `"v1"`, `"v2"` or `"hybrid"`.
    pub fn describe(&self) -> &'static str {
        match self {
            Layout::V1(_) => "v1",
            Layout::V2(_) => "v2",
            Layout::Hybrid(..) => "hybrid",
        }
    }

    /// The v1 hierarchies, if any.
    pub fn v1(&self) -> Option<&V1Mounts> {
        match self {
            Layout::V1(v1) | Layout::Hybrid(v1, _) => Some(v1),
            Layout::V2(_) => None,
        }
    }

    /// The v2 mount, if any.
    pub fn v2(&self) -> Option<&V2Mount> {
        match self {
            Layout::V2(v2) | Layout::Hybrid(_, v2) => Some(v2),
            Layout::V1(_) => None,
        }
    }
}

/// Detects the layout of this host from [`MOUNTINFO`]. Fails with [`Error::Read`] when the
/// file cannot be read and [`Error::NoCgroupFs`] when it names no cgroup mount.
pub fn detect() -> Result<Layout> {
    let path = Path::new(MOUNTINFO);
    let text = fs::read(path)?;
    Layout::from_mountinfo(&text).ok_or_else(|| Error::NoCgroupFs {
        path: path.to_owned(),
    })
}

struct MountEntry<'a> {
    mount_point: PathBuf,
    fs_type: &'a str,
    super_options: &'a str,
}

/// One line of mountinfo, see proc_pid_mountinfo(5):
/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`.
/// The optional fields end at the `-` separator; the mount point is field 5.
fn parse_mountinfo_line(line: &str) -> Option<MountEntry<'_>> {
    let mut fields = line.split(' ');
    let mount_point = fields.nth(4)?;
    let mut after_separator = fields.skip_while(|f| *f != "-").skip(1);
    let fs_type = after_separator.next()?;
    let _source = after_separator.next()?;
    let super_options = after_separator.next().unwrap_or("");
    Some(MountEntry {
        mount_point: PathBuf::from(unescape(mount_point)),
        fs_type,
        super_options,
    })
}

/// Undoes the kernel's octal escapes of space, tab, newline and backslash (`\040` etc.).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                let value = d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This host: every v1 controller on its own mount (cpu and cpuacct separate), a named
    /// systemd hierarchy, and cgroup2 at /sys/fs/cgroup/unified.
    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A systemd host on the unified hierarchy (Debian 12, Fedora).
    const PURE_V2: &str = "\
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
25 24 0:6 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
27 25 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    /// An older systemd host: v1 only, cpu and cpuacct co-mounted (the `cpu` and `cpuacct`
    /// symlinks are not mounts and do not show up), net_cls,net_prio too.
    const PURE_V1: &str = "\
24 18 0:21 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
25 24 0:22 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,name=systemd
28 24 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,cpu,cpuacct
29 24 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory
30 24 0:27 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,net_cls,net_prio
31 24 0:28 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,pids
32 24 0:29 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,freezer
33 24 0:30 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,blkio
34 24 0:31 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:19 - cgroup cgroup rw,cpuset
";

    #[test]
    fn hybrid_like_this_host() {
        let layout = Layout::from_mountinfo(HYBRID).unwrap();
        assert_eq!(layout.describe(), "hybrid");
        let v1 = layout.v1().unwrap();
        assert_eq!(
            v1.controllers().collect::<Vec<_>>(),
            Controller::ALL.to_vec()
        );
        assert_eq!(
            v1.mount(Controller::Cpu),
            Some(Path::new("/sys/fs/cgroup/cpu"))
        );
        assert_eq!(
            v1.mount(Controller::Cpuacct),
            Some(Path::new("/sys/fs/cgroup/cpuacct"))
        );
        assert_eq!(v1.mount_points().len(), 8);
        assert_eq!(
            layout.v2().unwrap().path(),
            Path::new("/sys/fs/cgroup/unified")
        );
    }

    #[test]
    fn pure_v2() {
        let layout = Layout::from_mountinfo(PURE_V2).unwrap();
        assert_eq!(
            layout,
            Layout::V2(V2Mount {
                path: "/sys/fs/cgroup".into()
            })
        );
        assert_eq!(layout.describe(), "v2");
    }

    #[test]
    fn pure_v1_with_cpu_and_cpuacct_co_mounted() {
        let layout = Layout::from_mountinfo(PURE_V1).unwrap();
        assert_eq!(layout.describe(), "v1");
        assert!(layout.v2().is_none());
        let v1 = layout.v1().unwrap();
        let both = Path::new("/sys/fs/cgroup/cpu,cpuacct");
        assert_eq!(v1.mount(Controller::Cpu), Some(both));
        assert_eq!(v1.mount(Controller::Cpuacct), Some(both));
        assert_eq!(
            v1.mount(Controller::Memory),
            Some(Path::new("/sys/fs/cgroup/memory"))
        );
        // Seven controllers on six mounts.
        assert_eq!(v1.controllers().count(), 7);
        assert_eq!(v1.mount_points().len(), 6);
    }

    #[test]
    fn named_hierarchy_alone_is_not_v1() {
        let text = "\
25 24 0:22 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
27 25 0:23 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";
        assert_eq!(Layout::from_mountinfo(text).unwrap().describe(), "v2");
        assert_eq!(
            Layout::from_mountinfo(&text[..text.find('\n').unwrap()]),
            None
        );
        assert_eq!(Layout::from_mountinfo(""), None);
    }

    #[test]
    fn escaped_mount_points_and_optional_fields() {
        let text =
            "40 31 0:37 / /mnt/my\\040cgroups rw,relatime shared:5 master:2 - cgroup2 none rw\n";
        let layout = Layout::from_mountinfo(text).unwrap();
        assert_eq!(layout.v2().unwrap().path(), Path::new("/mnt/my cgroups"));
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let text = "nonsense\n1 2 3\n41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(Layout::from_mountinfo(text).unwrap().describe(), "v2");
    }

    #[test]
    fn detect_this_host() {
        // Any Linux test host has some cgroup filesystem mounted.
        let layout = detect().unwrap();
        assert!(["v1", "v2", "hybrid"].contains(&layout.describe()));
    }
}
