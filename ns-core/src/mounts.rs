//! The container's mount table as a list of operations.
//!
//! The parent turns a [`ContainerSpec`] into [`Op`]s with every path already absolute under
//! the new root and converted to a C string; the child runs them in order with plain libc
//! calls. Each op carries a description the parent uses to explain a failure, so the child only
//! has to report an index and an errno.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use libc::c_ulong;

use crate::Error;
use crate::spec::{ContainerSpec, MountKind};
use crate::sys::{cpath, cstring, errno, under};

#[derive(Debug)]
pub(crate) enum Op {
    Mount {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: c_ulong,
        data: Option<CString>,
    },
    /// Creates a directory (a mount point); an existing one is fine.
    Mkdir {
        path: CString,
    },
    /// Creates an empty file to bind a file onto; an existing one is fine.
    Touch {
        path: CString,
    },
    Mknod {
        path: CString,
        mode: u32,
        dev: u64,
    },
    Symlink {
        target: CString,
        link: CString,
    },
    /// Binds `path` onto itself and remounts it read-only, keeping the flags the kernel locks
    /// in a user namespace (nosuid, nodev, noexec, atime). A missing path is skipped.
    ReadOnly {
        path: CString,
    },
    /// Hides `path`: a directory behind an empty read-only tmpfs, a file behind `/dev/null`.
    /// A missing path is skipped.
    Mask {
        path: CString,
        null: CString,
    },
}

/// An op and the words that explain its failure.
#[derive(Debug)]
pub(crate) struct Step {
    pub op: Op,
    pub what: &'static str,
    pub subject: String,
}

/// Builds the ops that assemble the container's filesystem under `root` (the host directory
/// that will be pivoted into), in the order the child must run them.
pub(crate) struct Planner {
    pub steps: Vec<Step>,
    root: PathBuf,
}

const NOSUID_NODEV_NOEXEC: c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

impl Planner {
    pub fn new(root: &Path) -> Self {
        Planner {
            steps: Vec::new(),
            root: root.to_owned(),
        }
    }

    fn push(&mut self, op: Op, what: &'static str, subject: impl Into<String>) {
        self.steps.push(Step {
            op,
            what,
            subject: subject.into(),
        });
    }

    fn inside(&self, path: &str) -> Result<CString, Error> {
        cpath(&under(&self.root, Path::new(path)))
    }

    pub fn mount(
        &mut self,
        source: Option<&str>,
        dest: &str,
        fstype: Option<&str>,
        flags: c_ulong,
        data: Option<&str>,
    ) -> Result<(), Error> {
        let op = Op::Mount {
            source: source.map(cstring).transpose()?,
            target: self.inside(dest)?,
            fstype: fstype.map(cstring).transpose()?,
            flags,
            data: data.map(cstring).transpose()?,
        };
        self.push(
            op,
            "mount",
            format!("{} on {dest}", fstype.unwrap_or("bind")),
        );
        Ok(())
    }

    /// A mount whose target is a host path, before the pivot (the root filesystem itself).
    pub fn push_host_mount(
        &mut self,
        source: Option<&str>,
        target: &str,
        fstype: Option<&str>,
        flags: c_ulong,
        data: Option<&str>,
        what: &'static str,
    ) -> Result<(), Error> {
        let op = Op::Mount {
            source: source.map(cstring).transpose()?,
            target: cstring(target)?,
            fstype: fstype.map(cstring).transpose()?,
            flags,
            data: data.map(cstring).transpose()?,
        };
        self.push(op, what, target);
        Ok(())
    }

    pub fn mkdir(&mut self, dest: &str) -> Result<(), Error> {
        let op = Op::Mkdir {
            path: self.inside(dest)?,
        };
        self.push(op, "create mount point", dest);
        Ok(())
    }

    /// The kernel file systems and `/dev` of runc's and crun's default config.
    pub fn defaults(&mut self, userns: bool) -> Result<(), Error> {
        self.mkdir("/proc")?;
        self.mount(
            Some("proc"),
            "/proc",
            Some("proc"),
            NOSUID_NODEV_NOEXEC,
            None,
        )?;
        self.mkdir("/sys")?;
        self.mount(
            Some("sysfs"),
            "/sys",
            Some("sysfs"),
            NOSUID_NODEV_NOEXEC | libc::MS_RDONLY,
            None,
        )?;
        self.mkdir("/dev")?;
        self.mount(
            Some("tmpfs"),
            "/dev",
            Some("tmpfs"),
            libc::MS_NOSUID | libc::MS_STRICTATIME,
            Some("mode=755,size=65536k"),
        )?;
        self.devices(userns)?;
        self.mkdir("/dev/pts")?;
        // A gid= option names a host group that a user namespace may not map; crun drops it
        // there too.
        let pts = if userns {
            "newinstance,ptmxmode=0666,mode=0620"
        } else {
            "newinstance,ptmxmode=0666,mode=0620,gid=5"
        };
        self.mount(
            Some("devpts"),
            "/dev/pts",
            Some("devpts"),
            libc::MS_NOSUID | libc::MS_NOEXEC,
            Some(pts),
        )?;
        self.mkdir("/dev/shm")?;
        self.mount(
            Some("shm"),
            "/dev/shm",
            Some("tmpfs"),
            NOSUID_NODEV_NOEXEC,
            Some("mode=1777,size=65536k"),
        )?;
        self.mkdir("/dev/mqueue")?;
        self.mount(
            Some("mqueue"),
            "/dev/mqueue",
            Some("mqueue"),
            NOSUID_NODEV_NOEXEC,
            None,
        )
    }

    /// `/dev/null` and friends: made with mknod as real root, bound from the host in a user
    /// namespace (where mknod is refused).
    fn devices(&mut self, userns: bool) -> Result<(), Error> {
        for &(name, major, minor) in crate::dev::DEVICES {
            let dest = format!("/dev/{name}");
            if userns {
                let op = Op::Touch {
                    path: self.inside(&dest)?,
                };
                self.push(op, "create device bind target", dest.clone());
                self.mount(Some(&dest), &dest, None, libc::MS_BIND, None)?;
            } else {
                let op = Op::Mknod {
                    path: self.inside(&dest)?,
                    mode: libc::S_IFCHR | 0o666,
                    dev: libc::makedev(major, minor),
                };
                self.push(op, "create device", dest);
            }
        }
        for &(link, target) in crate::dev::SYMLINKS {
            let op = Op::Symlink {
                target: cstring(target)?,
                link: self.inside(link)?,
            };
            self.push(op, "create symlink", link);
        }
        Ok(())
    }

    /// The caller's extra mounts.
    pub fn extra(&mut self, spec: &ContainerSpec) -> Result<(), Error> {
        let mut readonly = Vec::new();
        for mount in &spec.mounts {
            let dest = mount.destination.to_string_lossy().into_owned();
            match &mount.kind {
                MountKind::Bind { source } => {
                    let meta = std::fs::metadata(source).map_err(|e| {
                        Error::Invalid(format!(
                            "bind mount source {} for {dest}: {e}",
                            source.display()
                        ))
                    })?;
                    if meta.is_dir() {
                        self.mkdir(&dest)?;
                    } else {
                        let op = Op::Touch {
                            path: self.inside(&dest)?,
                        };
                        self.push(op, "create mount point", dest.clone());
                    }
                    let source = source.to_string_lossy();
                    self.mount(
                        Some(&source),
                        &dest,
                        None,
                        libc::MS_BIND | libc::MS_REC,
                        None,
                    )?;
                }
                MountKind::Tmpfs { size } => {
                    self.mkdir(&dest)?;
                    let data = size.map(|s| format!("size={s}"));
                    self.mount(
                        Some("tmpfs"),
                        &dest,
                        Some("tmpfs"),
                        libc::MS_NOSUID | libc::MS_NODEV,
                        data.as_deref(),
                    )?;
                }
                MountKind::Kernel { fstype, options } => {
                    self.mkdir(&dest)?;
                    let flags = if mount.readonly {
                        NOSUID_NODEV_NOEXEC | libc::MS_RDONLY
                    } else {
                        NOSUID_NODEV_NOEXEC
                    };
                    self.mount(Some(fstype), &dest, Some(fstype), flags, options.as_deref())?;
                    continue;
                }
            }
            if mount.readonly {
                readonly.push(dest);
            }
        }
        for dest in readonly.iter().rev() {
            self.readonly(dest)?;
        }
        Ok(())
    }

    pub fn readonly(&mut self, dest: &str) -> Result<(), Error> {
        let op = Op::ReadOnly {
            path: self.inside(dest)?,
        };
        self.push(op, "remount read-only", dest);
        Ok(())
    }

    pub fn mask(&mut self, dest: &str) -> Result<(), Error> {
        let op = Op::Mask {
            path: self.inside(dest)?,
            null: self.inside("/dev/null")?,
        };
        self.push(op, "mask", dest);
        Ok(())
    }
}

/// Runs the ops in order; on failure, the index of the failing step and errno.
pub(crate) fn run(steps: &[Step]) -> Result<(), (u32, i32)> {
    for (i, step) in steps.iter().enumerate() {
        run_op(&step.op).map_err(|e| (i as u32, e))?;
    }
    Ok(())
}

fn check(rc: libc::c_int) -> Result<(), i32> {
    if rc == 0 { Ok(()) } else { Err(errno()) }
}

fn opt_ptr(s: &Option<CString>) -> *const libc::c_char {
    s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr())
}

fn run_op(op: &Op) -> Result<(), i32> {
    match op {
        Op::Mount {
            source,
            target,
            fstype,
            flags,
            data,
        } => {
            // SAFETY: every pointer is a NUL-terminated string owned by `op` or null, as
            // mount(2) allows for source, fstype and data.
            let rc = unsafe {
                libc::mount(
                    opt_ptr(source),
                    target.as_ptr(),
                    opt_ptr(fstype),
                    *flags,
                    opt_ptr(data).cast(),
                )
            };
            check(rc)?;
            // A bind mount ignores MS_RDONLY and friends on creation; they need a remount.
            if *flags & libc::MS_BIND != 0 && *flags & libc::MS_RDONLY != 0 {
                remount_readonly(target)?;
            }
            Ok(())
        }
        Op::Mkdir { path } => {
            // SAFETY: `path` is a NUL-terminated string.
            match check(unsafe { libc::mkdir(path.as_ptr(), 0o755) }) {
                Err(libc::EEXIST) => Ok(()),
                other => other,
            }
        }
        Op::Touch { path } => {
            // SAFETY: `path` is a NUL-terminated string; the returned fd is closed below.
            let fd = unsafe {
                libc::open(
                    path.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o644,
                )
            };
            if fd < 0 {
                return Err(errno());
            }
            // SAFETY: `fd` was just opened by us and is not used again.
            unsafe { libc::close(fd) };
            Ok(())
        }
        Op::Mknod { path, mode, dev } => {
            // SAFETY: `path` is a NUL-terminated string.
            check(unsafe { libc::mknod(path.as_ptr(), *mode, *dev) })?;
            // The process umask must not narrow a device's 0666.
            // SAFETY: `path` is a NUL-terminated string.
            check(unsafe { libc::chmod(path.as_ptr(), *mode & 0o7777) })
        }
        Op::Symlink { target, link } => {
            // SAFETY: both are NUL-terminated strings.
            match check(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) }) {
                Err(libc::EEXIST) => Ok(()),
                other => other,
            }
        }
        Op::ReadOnly { path } => {
            // SAFETY: `path` is a NUL-terminated string, used as both source and target.
            let rc = unsafe {
                libc::mount(
                    path.as_ptr(),
                    path.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                )
            };
            match check(rc) {
                Err(libc::ENOENT) => Ok(()),
                Err(e) => Err(e),
                Ok(()) => remount_readonly(path),
            }
        }
        Op::Mask { path, null } => {
            // SAFETY: an all-zero `stat` is a valid value for stat(2) to overwrite.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: `path` is NUL-terminated and `st` is writable for the call.
            match check(unsafe { libc::stat(path.as_ptr(), &mut st) }) {
                Err(libc::ENOENT) => return Ok(()),
                other => other?,
            }
            let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
            // SAFETY: NUL-terminated strings or null where mount(2) allows it.
            let rc = unsafe {
                if is_dir {
                    libc::mount(
                        c"tmpfs".as_ptr(),
                        path.as_ptr(),
                        c"tmpfs".as_ptr(),
                        libc::MS_RDONLY,
                        std::ptr::null(),
                    )
                } else {
                    libc::mount(
                        null.as_ptr(),
                        path.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    )
                }
            };
            check(rc)
        }
    }
}

/// statvfs's "relatime" flag (Linux's `ST_RELATIME`), which the libc crate defines for glibc
/// only; the static `capsule` is built against musl.
const ST_RELATIME: libc::c_ulong = 0x1000;

/// Remounts the bind mount at `path` read-only, keeping its other flags: in a user
/// namespace the kernel refuses a remount that would clear a locked flag.
pub(crate) fn remount_readonly(path: &CString) -> Result<(), i32> {
    // SAFETY: an all-zero `statvfs` is a valid value for statvfs(3) to overwrite.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `st` is writable for the call.
    check(unsafe { libc::statvfs(path.as_ptr(), &mut st) })?;
    let kept = [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (ST_RELATIME, libc::MS_RELATIME),
    ]
    .iter()
    .filter(|(st_flag, _)| st.f_flag & st_flag != 0)
    .fold(0, |acc, (_, ms)| acc | ms);
    // SAFETY: `path` is NUL-terminated; source, type and data may be null for a remount.
    check(unsafe {
        libc::mount(
            std::ptr::null(),
            path.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | kept,
            std::ptr::null(),
        )
    })
}
