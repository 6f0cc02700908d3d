//! The container's mount table as a list of operations.
//!
//! The parent turns a [`ContainerSpec`] into [`Op`]s with every string already a C string; the
//! child runs them in order with plain syscalls. Only the root filesystem itself is mounted at
//! a host path (under the launch's own state directory); every other path is a path inside
//! the container, resolved in its root by [`crate::resolve`] and mounted on through a file
//! descriptor. Each op carries a description the parent uses to explain a failure, so the
//! child only has to report an index and an errno.

use std::ffi::{CStr, CString};
use std::os::fd::RawFd;
use std::path::Path;

use libc::c_ulong;

use crate::Error;
use crate::resolve::{Create, Fd, FdPath, resolve};
use crate::spec::{ContainerSpec, MountKind};
use crate::sys::{cpath, cstring, errno};

#[derive(Debug)]
pub(crate) enum Op {
    /// mount(2) at a host path: the root filesystem, before anything is resolved in it.
    HostMount {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: c_ulong,
        data: Option<CString>,
    },
    /// Attaches the launcher's idmapped clone of the root filesystem (see
    /// [`crate::idmapped_root`]) at this host path or, when there is none, binds `source`
    /// there recursively, read-only if `readonly`.
    RootTree {
        source: CString,
        target: CString,
        readonly: bool,
    },
    /// Opens the assembled root at this host path: every later op resolves its paths in it.
    OpenRoot { path: CString },
    /// A new file system (proc, sysfs, tmpfs, ...) on `target`, a directory made if missing.
    Mount {
        source: CString,
        target: CString,
        fstype: CString,
        flags: c_ulong,
        data: Option<CString>,
    },
    /// Binds the host path `source` with everything mounted below it onto `target`, which
    /// is made as `create` says if missing.
    Bind {
        source: CString,
        target: CString,
        create: Create,
    },
    Mknod {
        dir: CString,
        name: CString,
        mode: u32,
        dev: u64,
    },
    Symlink {
        target: CString,
        dir: CString,
        name: CString,
    },
    /// Makes `path` and everything mounted below it read-only, keeping their other flags
    /// (mount_setattr(2) with `AT_RECURSIVE`). A missing path is skipped.
    ReadOnly { path: CString },
    /// Hides `path`: a directory behind an empty read-only tmpfs, a file behind the
    /// container's `/dev/null`. A missing path is skipped.
    Mask { path: CString, null: CString },
    /// Makes the directory `path` and its missing parents, owned by `owner` (uid, gid).
    Mkdir { path: CString, owner: (u32, u32) },
    /// Makes the root's own mount read-only, after every mount point in it exists.
    RootReadOnly,
    /// Makes the root's own mount `nodev`: in a user namespace, where mknod(2) is refused, the
    /// only device nodes in the root are the image's, which the container must not open.
    RootNoDev,
}

/// An op and the words that explain its failure.
#[derive(Debug)]
pub(crate) struct Step {
    pub op: Op,
    pub what: &'static str,
    pub subject: String,
}

/// Builds the ops that assemble the container's filesystem, in the order the child must run
/// them.
#[derive(Debug, Default)]
pub(crate) struct Planner {
    pub steps: Vec<Step>,
}

const NOSUID_NODEV_NOEXEC: c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

impl Planner {
    fn push(&mut self, op: Op, what: &'static str, subject: impl Into<String>) {
        self.steps.push(Step {
            op,
            what,
            subject: subject.into(),
        });
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
        let op = Op::HostMount {
            source: source.map(cstring).transpose()?,
            target: cstring(target)?,
            fstype: fstype.map(cstring).transpose()?,
            flags,
            data: data.map(cstring).transpose()?,
        };
        self.push(op, what, target);
        Ok(())
    }

    /// The root filesystem at the host path `target`, idmapped if the launcher can.
    pub fn root_tree(&mut self, source: &Path, target: &Path, readonly: bool) -> Result<(), Error> {
        let op = Op::RootTree {
            source: cpath(source)?,
            target: cpath(target)?,
            readonly,
        };
        self.push(
            op,
            "attach the root filesystem at",
            target.display().to_string(),
        );
        Ok(())
    }

    /// From here on, paths are resolved inside the root mounted at `merged`.
    pub fn open_root(&mut self, merged: &Path) -> Result<(), Error> {
        let op = Op::OpenRoot {
            path: cpath(merged)?,
        };
        self.push(op, "open the root filesystem", merged.display().to_string());
        Ok(())
    }

    pub fn mount(
        &mut self,
        source: &str,
        dest: &str,
        fstype: &str,
        flags: c_ulong,
        data: Option<&str>,
    ) -> Result<(), Error> {
        let op = Op::Mount {
            source: cstring(source)?,
            target: cstring(dest)?,
            fstype: cstring(fstype)?,
            flags,
            data: data.map(cstring).transpose()?,
        };
        self.push(op, "mount", format!("{fstype} on {dest}"));
        Ok(())
    }

    fn bind(&mut self, source: &str, dest: &str, create: Create) -> Result<(), Error> {
        let op = Op::Bind {
            source: cstring(source)?,
            target: cstring(dest)?,
            create,
        };
        self.push(op, "bind mount", format!("{source} on {dest}"));
        Ok(())
    }

    /// The kernel file systems and `/dev` of runc's and crun's default config.
    pub fn defaults(&mut self, userns: bool) -> Result<(), Error> {
        self.mount("proc", "/proc", "proc", NOSUID_NODEV_NOEXEC, None)?;
        self.mount(
            "sysfs",
            "/sys",
            "sysfs",
            NOSUID_NODEV_NOEXEC | libc::MS_RDONLY,
            None,
        )?;
        self.mount(
            "tmpfs",
            "/dev",
            "tmpfs",
            libc::MS_NOSUID | libc::MS_STRICTATIME,
            Some("mode=755,size=65536k"),
        )?;
        self.devices(userns)?;
        // A gid= option names a host group that a user namespace may not map; crun drops it
        // there too.
        let pts = if userns {
            "newinstance,ptmxmode=0666,mode=0620"
        } else {
            "newinstance,ptmxmode=0666,mode=0620,gid=5"
        };
        self.mount(
            "devpts",
            "/dev/pts",
            "devpts",
            libc::MS_NOSUID | libc::MS_NOEXEC,
            Some(pts),
        )?;
        self.mount(
            "shm",
            "/dev/shm",
            "tmpfs",
            NOSUID_NODEV_NOEXEC,
            Some("mode=1777,size=65536k"),
        )?;
        self.mount("mqueue", "/dev/mqueue", "mqueue", NOSUID_NODEV_NOEXEC, None)
    }

    /// `/dev/null` and friends: made with mknod as real root, bound from the host in a user
    /// namespace (where mknod is refused).
    fn devices(&mut self, userns: bool) -> Result<(), Error> {
        for &(name, major, minor) in crate::dev::DEVICES {
            let dest = format!("/dev/{name}");
            if userns {
                self.bind(&dest, &dest, Create::File)?;
            } else {
                let op = Op::Mknod {
                    dir: cstring("/dev")?,
                    name: cstring(name)?,
                    mode: libc::S_IFCHR | 0o666,
                    dev: libc::makedev(major, minor),
                };
                self.push(op, "create device", dest);
            }
        }
        for &(link, target) in crate::dev::SYMLINKS {
            let op = Op::Symlink {
                target: cstring(target)?,
                dir: cstring("/dev")?,
                name: cstring(link.trim_start_matches("/dev/"))?,
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
                    let create = if meta.is_dir() {
                        Create::Dir { owner: None }
                    } else {
                        Create::File
                    };
                    self.bind(&source.to_string_lossy(), &dest, create)?;
                }
                MountKind::Tmpfs { size } => {
                    let data = size.map(|s| format!("size={s}"));
                    self.mount(
                        "tmpfs",
                        &dest,
                        "tmpfs",
                        libc::MS_NOSUID | libc::MS_NODEV,
                        data.as_deref(),
                    )?;
                }
                MountKind::Kernel { fstype, options } => {
                    let flags = if mount.readonly {
                        NOSUID_NODEV_NOEXEC | libc::MS_RDONLY
                    } else {
                        NOSUID_NODEV_NOEXEC
                    };
                    self.mount(fstype, &dest, fstype, flags, options.as_deref())?;
                    continue;
                }
            }
            // Read-only once every mount exists, so a read-only tmpfs can hold later mount
            // points.
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
            path: cstring(dest)?,
        };
        self.push(op, "make read-only", dest);
        Ok(())
    }

    pub fn mask(&mut self, dest: &str) -> Result<(), Error> {
        let op = Op::Mask {
            path: cstring(dest)?,
            null: cstring("/dev/null")?,
        };
        self.push(op, "mask", dest);
        Ok(())
    }

    /// The working directory, made (owned by the command's user) if the image lacks it, as
    /// runc does.
    pub fn workdir(&mut self, cwd: &Path, owner: (u32, u32)) -> Result<(), Error> {
        let op = Op::Mkdir {
            path: cpath(cwd)?,
            owner,
        };
        self.push(
            op,
            "create the working directory",
            cwd.display().to_string(),
        );
        Ok(())
    }

    pub fn root_readonly(&mut self) {
        self.push(Op::RootReadOnly, "make the root read-only", "/");
    }

    pub fn root_nodev(&mut self) {
        self.push(Op::RootNoDev, "make the root nodev", "/");
    }
}

/// Runs the ops in order, with the idmapped root `tree` if the launcher made one; on
/// failure, the index of the failing step and errno.
pub(crate) fn run(steps: &[Step], tree: Option<Fd>) -> Result<(), (u32, i32)> {
    let mut root: Option<Fd> = None;
    let mut tree = tree;
    for (i, step) in steps.iter().enumerate() {
        run_op(&step.op, &mut root, &mut tree).map_err(|e| (i as u32, e))?;
    }
    Ok(())
}

fn check(rc: libc::c_int) -> Result<(), i32> {
    if rc == 0 { Ok(()) } else { Err(errno()) }
}

fn check_long(rc: libc::c_long) -> Result<libc::c_long, i32> {
    if rc < 0 { Err(errno()) } else { Ok(rc) }
}

/// A missing path is not an error for the ops that only act on what the image has.
fn skip_missing(result: Result<Fd, i32>) -> Result<Option<Fd>, i32> {
    match result {
        Ok(fd) => Ok(Some(fd)),
        Err(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

fn run_op(op: &Op, root: &mut Option<Fd>, tree: &mut Option<Fd>) -> Result<(), i32> {
    if let Op::HostMount {
        source,
        target,
        fstype,
        flags,
        data,
    } = op
    {
        return mount_host_path(
            source.as_deref(),
            target,
            fstype.as_deref(),
            *flags,
            data.as_deref(),
        );
    }
    if let Op::RootTree {
        source,
        target,
        readonly,
    } = op
    {
        if let Some(tree) = tree.take() {
            // SAFETY: `target` is NUL-terminated; the tree descriptor is ours.
            return check_long(unsafe {
                libc::syscall(
                    libc::SYS_move_mount,
                    tree.0,
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    target.as_ptr(),
                    libc::MOVE_MOUNT_F_EMPTY_PATH,
                )
            })
            .map(drop);
        }
        let rdonly = if *readonly { libc::MS_RDONLY } else { 0 };
        return mount_host_path(
            Some(source),
            target,
            None,
            libc::MS_BIND | libc::MS_REC | rdonly,
            None,
        );
    }
    if let Op::OpenRoot { path } = op {
        // SAFETY: `path` is NUL-terminated; the descriptor is owned by the returned `Fd`.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(errno());
        }
        *root = Some(Fd(fd));
        return Ok(());
    }
    let root = root.as_ref().map_or(Err(libc::EBADF), |fd| Ok(fd.0))?;
    match op {
        Op::HostMount { .. } | Op::RootTree { .. } | Op::OpenRoot { .. } => Ok(()),
        Op::Mount {
            source,
            target,
            fstype,
            flags,
            data,
        } => {
            let target = resolve(root, target, Create::Dir { owner: None })?;
            mount_on(&target, source, fstype, *flags, data.as_deref())
        }
        Op::Bind {
            source,
            target,
            create,
        } => {
            let target = resolve(root, target, *create)?;
            let tree = clone_tree(libc::AT_FDCWD, source.as_ptr(), 0)?;
            attach(tree.0, target.0)
        }
        Op::Mknod {
            dir,
            name,
            mode,
            dev,
        } => {
            let dir = resolve(root, dir, Create::Nothing)?;
            // SAFETY: `name` is a NUL-terminated plain name, created in `dir`.
            check(unsafe { libc::mknodat(dir.0, name.as_ptr(), *mode, *dev) })?;
            // The process umask must not narrow a device's 0666.
            // SAFETY: as above.
            check(unsafe { libc::fchmodat(dir.0, name.as_ptr(), *mode & 0o7777, 0) })
        }
        Op::Symlink { target, dir, name } => {
            let dir = resolve(root, dir, Create::Nothing)?;
            // SAFETY: both are NUL-terminated strings; the link is made in `dir`.
            match check(unsafe { libc::symlinkat(target.as_ptr(), dir.0, name.as_ptr()) }) {
                Err(libc::EEXIST) => Ok(()),
                other => other,
            }
        }
        Op::ReadOnly { path } => {
            let Some(target) = skip_missing(resolve(root, path, Create::Nothing))? else {
                return Ok(());
            };
            let tree = clone_tree(target.0, c"".as_ptr(), libc::AT_EMPTY_PATH)?;
            set_attr(tree.0, libc::MOUNT_ATTR_RDONLY, libc::AT_RECURSIVE)?;
            attach(tree.0, target.0)
        }
        Op::Mask { path, null } => {
            let Some(target) = skip_missing(resolve(root, path, Create::Nothing))? else {
                return Ok(());
            };
            // SAFETY: an all-zero `stat` is a valid value for fstat(2) to overwrite.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: `st` is writable for the call.
            check(unsafe { libc::fstat(target.0, &mut st) })?;
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                // SAFETY: NUL-terminated strings or null where mount(2) allows it.
                check(unsafe {
                    libc::mount(
                        c"tmpfs".as_ptr(),
                        FdPath::new(target.0).as_ptr(),
                        c"tmpfs".as_ptr(),
                        libc::MS_RDONLY,
                        std::ptr::null(),
                    )
                })
            } else {
                let null = resolve(root, null, Create::Nothing)?;
                let tree = clone_tree(null.0, c"".as_ptr(), libc::AT_EMPTY_PATH)?;
                attach(tree.0, target.0)
            }
        }
        Op::Mkdir { path, owner } => resolve(
            root,
            path,
            Create::Dir {
                owner: Some(*owner),
            },
        )
        .map(drop),
        // The root descriptor is the root of its mount: this makes that one mount read-only,
        // not the file systems mounted in it.
        Op::RootReadOnly => set_attr(root, libc::MOUNT_ATTR_RDONLY, 0),
        Op::RootNoDev => set_attr(root, libc::MOUNT_ATTR_NODEV, 0),
    }
}

/// mount(2) at the host path `target`; a read-only bind is remounted read-only, since a bind
/// mount ignores `MS_RDONLY` and friends on creation.
fn mount_host_path(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: c_ulong,
    data: Option<&CStr>,
) -> Result<(), i32> {
    let ptr = |s: Option<&CStr>| s.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: every pointer is a NUL-terminated string or null, as mount(2) allows for
    // source, fstype and data.
    check(unsafe {
        libc::mount(
            ptr(source),
            target.as_ptr(),
            ptr(fstype),
            flags,
            ptr(data).cast(),
        )
    })?;
    if flags & libc::MS_BIND != 0 && flags & libc::MS_RDONLY != 0 {
        remount_readonly(target)?;
    }
    Ok(())
}

/// mount(2) of a new file system on exactly the file `target` holds, whatever its path has
/// become since it was resolved.
fn mount_on(
    target: &Fd,
    source: &CStr,
    fstype: &CStr,
    flags: c_ulong,
    data: Option<&CStr>,
) -> Result<(), i32> {
    // SAFETY: NUL-terminated strings or null where mount(2) allows it.
    check(unsafe {
        libc::mount(
            source.as_ptr(),
            FdPath::new(target.0).as_ptr(),
            fstype.as_ptr(),
            flags,
            data.map_or(std::ptr::null(), |d| d.as_ptr()).cast(),
        )
    })
}

/// A detached copy of the mount tree at `path` (relative to `dir`), with everything mounted
/// below it (open_tree(2) with `OPEN_TREE_CLONE | AT_RECURSIVE`).
fn clone_tree(dir: RawFd, path: *const libc::c_char, flags: libc::c_int) -> Result<Fd, i32> {
    // SAFETY: `path` is NUL-terminated; the flags are open_tree(2)'s.
    let fd = check_long(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            dir,
            path,
            (libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC) as libc::c_int
                | libc::AT_RECURSIVE
                | flags,
        )
    })?;
    Ok(Fd(fd as RawFd))
}

/// Sets the flag `attr_set` (a `MOUNT_ATTR_*`) on the mount `tree` is the root of (and on every
/// mount below it with `AT_RECURSIVE`), keeping its other flags, which in a user namespace may
/// be locked.
fn set_attr(tree: RawFd, attr_set: u64, recursive: libc::c_int) -> Result<(), i32> {
    let attr = libc::mount_attr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `attr` is a valid mount_attr of the size passed; the path is empty.
    check_long(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | recursive,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    })
    .map(drop)
}

/// Attaches the detached mount `tree` on the file `target` holds (move_mount(2)).
fn attach(tree: RawFd, target: RawFd) -> Result<(), i32> {
    // SAFETY: both descriptors are ours; the paths are empty as the flags say.
    check_long(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree,
            c"".as_ptr(),
            target,
            c"".as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH,
        )
    })
    .map(drop)
}

/// statvfs's "relatime" flag (Linux's `ST_RELATIME`), which the libc crate defines for glibc
/// only; the static `capsule` is built against musl.
const ST_RELATIME: libc::c_ulong = 0x1000;

/// Remounts the bind mount at `path` read-only, keeping its other flags: in a user
/// namespace the kernel refuses a remount that would clear a locked flag.
fn remount_readonly(path: &CStr) -> Result<(), i32> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    /// A path component swapped for a symlink after the target was resolved cannot redirect
    /// the mount: it lands on the directory that was resolved. The swap happens where a racer
    /// would make it, deterministically, between resolving and mounting.
    #[test]
    fn a_symlink_swapped_in_after_resolving_does_not_redirect_the_mount() {
        // SAFETY: geteuid has no preconditions.
        if !::tests::require(unsafe { libc::geteuid() } == 0, "root (mount namespaces)") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let host = dir.path().join("host");
        std::fs::create_dir_all(root.join("a/target")).unwrap();
        std::fs::create_dir_all(host.join("target")).unwrap();
        let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).unwrap();
        let (c_root, c_a, c_moved, c_host) = (
            c(&root),
            c(&root.join("a")),
            c(&root.join("moved")),
            c(&host),
        );
        let c_moved_target = c(&root.join("moved/target"));
        let c_host_target = c(&host.join("target"));
        // SAFETY: the child runs only syscalls on strings prepared above and our own
        // allocation-free functions, then exits; the parent waits for it.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: see above.
            unsafe {
                let code = (|| -> i32 {
                    if libc::unshare(libc::CLONE_NEWNS) != 0
                        || libc::mount(
                            std::ptr::null(),
                            c"/".as_ptr(),
                            std::ptr::null(),
                            libc::MS_REC | libc::MS_PRIVATE,
                            std::ptr::null(),
                        ) != 0
                    {
                        return 10;
                    }
                    let rootfd = libc::open(c_root.as_ptr(), libc::O_PATH | libc::O_DIRECTORY);
                    let Ok(target) = resolve(rootfd, c"/a/target", Create::Nothing) else {
                        return 11;
                    };
                    if libc::rename(c_a.as_ptr(), c_moved.as_ptr()) != 0
                        || libc::symlink(c_host.as_ptr(), c_a.as_ptr()) != 0
                    {
                        return 12;
                    }
                    if mount_on(&target, c"tmpfs", c"tmpfs", 0, None).is_err() {
                        return 13;
                    }
                    let mut st: libc::statfs = std::mem::zeroed();
                    if libc::statfs(c_moved_target.as_ptr(), &mut st) != 0
                        || st.f_type != libc::TMPFS_MAGIC
                    {
                        return 14;
                    }
                    if libc::statfs(c_host_target.as_ptr(), &mut st) != 0
                        || st.f_type == libc::TMPFS_MAGIC
                    {
                        return 15;
                    }
                    0
                })();
                libc::_exit(code);
            }
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status), "child status {status}");
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "10 namespace, 11 resolve, 12 swap, 13 mount, 14 not on the resolved directory, 15 on the swapped-in one"
        );
    }
}
